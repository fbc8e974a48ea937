"""The IoT intake's own metrics, beside the RPC and event metrics every service has."""

from __future__ import annotations

import math

from prometheus_client import Counter, Gauge, Histogram

from wuye.core.metrics import LATENCY_BUCKETS
from wuye.core.wire import enum_name
from wuye.iot.v1 import intake_service_pb2 as pb

READINGS = Counter(
    "wuye_iot_readings",
    "Readings received, by district and outcome (accepted, rejected, duplicate).",
    ["district", "outcome"],
)
BATCHES = Counter(
    "wuye_iot_batches",
    "Batches received, by district, transport (grpc, mqtt) and outcome (accepted, duplicate, "
    "refused).",
    ["district", "transport", "outcome"],
)
BATCH_READINGS = Histogram(
    "wuye_iot_batch_readings",
    "Readings per batch.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
)
ACK_LATENCY = Histogram(
    "wuye_iot_ack_latency_seconds",
    "Time from receiving a batch to acknowledging it (durable on Kafka, alarms committed).",
    buckets=LATENCY_BUCKETS,
)
ALARMS = Counter(
    "wuye_iot_alarms",
    "Alarm transitions, by district, kind and transition (raised, acknowledged, resolved, "
    "escalated).",
    ["district", "kind", "transition"],
)
ALARM_LATENCY = Histogram(
    "wuye_iot_alarm_latency_seconds",
    "Time from observing the reading that raised an alarm to its event being on Kafka "
    "(measured by the relay).",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 20, 60),
)
ALARM_FORWARD_LATENCY = Histogram(
    "wuye_iot_alarm_forward_latency_seconds",
    "Time from raising an alarm (committed) to its event being on Kafka, measured by the relay "
    "(GB 50440: a confirmed alarm is forwarded within 3 s).",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 3, 5, 10, 30),
)
READINGS_RETENTION = Gauge(
    "wuye_iot_readings_retention_seconds",
    "How long the broker keeps the readings topic's records, as it reported at the intake's "
    "start (GB 50440: at least a year).",
)
READINGS_RETENTION.set(math.nan)  # not known until the intake has asked the broker
DEVICES = Gauge("wuye_iot_devices", "Devices this instance owns.", ["district"])
DEVICES_SILENT = Gauge(
    "wuye_iot_devices_silent", "Devices not heard for longer than their heartbeat.", ["district"]
)


def alarm_kind(alarm: pb.Alarm) -> str:
    return enum_name(pb.AlarmKind, "ALARM_KIND", alarm.kind)


def count_alarms(alarms: list[pb.Alarm], transition: str) -> None:
    for alarm in alarms:
        ALARMS.labels(alarm.district_code, alarm_kind(alarm), transition).inc()
