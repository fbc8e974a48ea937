"""The IoT intake as the platform runs it: the serving process (gRPC and MQTT intake, with the
devices' state in memory and the writer's timers), the relay, and the consumer of the
registry's project events."""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource
from sqlalchemy import Engine

from wuye.core.consumer import Handler
from wuye.core.grpcserver import ServiceDefinition, district_scope
from wuye.core.logs import log
from wuye.core.service import ConsumerSpec, ServiceSpec
from wuye.iot import api, metrics
from wuye.iot.api import ROUTES, SERVICE_NAME, IntakeApi
from wuye.iot.commands import REGISTRY_TOPICS, TOPICS, Iot
from wuye.iot.intake import READING_TOPIC, Intake
from wuye.iot.mqtt import MqttIntake
from wuye.iot.settings import IotSettings
from wuye.iot.v1 import events_pb2 as events

_RAISED = events.AlarmRaised.DESCRIPTOR.full_name
logger = logging.getLogger("wuye.iot")


def definitions(settings: IotSettings, engine: Engine) -> list[ServiceDefinition]:
    scope = district_scope(settings)
    intake = Intake(settings, engine, scope)
    deployment = f"{settings.resolved_database_url()}#{settings.schema}"
    mqtt = (
        MqttIntake(
            settings.iot_mqtt_url,
            intake,
            scope.served,
            deployment,
            settings.iot_mqtt_session_seconds,
            settings.iot_mqtt_resume_seconds,
        )
        if settings.iot_mqtt_url
        else None
    )

    stopping = threading.Event()

    def start() -> None:
        intake.start()
        stopping.clear()
        threading.Thread(
            target=keep_readings_retention,
            args=(settings, stopping),
            name="iot-retention",
            daemon=True,
        ).start()
        if mqtt is not None:
            mqtt.start()

    def stop() -> None:
        stopping.set()
        if mqtt is not None:
            mqtt.stop()
        intake.stop()

    return [
        ServiceDefinition(
            full_name=SERVICE_NAME,
            add_to_server=api.add_to_server,
            servicer=IntakeApi(Iot(engine, settings, intake)),
            routes=ROUTES,
            start=start,
            stop=stop,
        )
    ]


def registry_events(
    settings: IotSettings, engine: Engine
) -> tuple[tuple[str, ...], dict[str, Handler]]:
    return REGISTRY_TOPICS, Iot(engine, settings).handlers()


def measure_alarm_latency(rows: list, published: float) -> None:
    """For each AlarmRaised the relay published: reading observed → on Kafka (GB 50440's 10 s
    from the gateway), and alarm raised → on Kafka (its 3 s to forward a confirmed alarm)."""
    for row in rows:
        if row.event_type == _RAISED:
            alarm = events.AlarmRaised.FromString(row.payload).alarm
            kind = metrics.alarm_kind(alarm)
            for histogram, since in (
                (metrics.ALARM_LATENCY, alarm.observe_time),
                (metrics.ALARM_FORWARD_LATENCY, alarm.raise_time),
            ):
                moment = since.seconds + since.nanos / 1e9
                histogram.labels(kind).observe(max(0.0, published - moment))


def topic_configs(settings: IotSettings) -> dict[str, dict[str, str]]:
    return {READING_TOPIC: {"retention.ms": str(_retention_seconds(settings) * 1000)}}


def _retention_seconds(settings: IotSettings) -> int:
    return settings.iot_readings_retention_days * 24 * 3600


def readings_retention_seconds(settings: IotSettings) -> float | None:
    """How long the broker keeps the readings topic's records (inf: for ever); None when the
    broker does not say."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    resource = ConfigResource("topic", READING_TOPIC)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    entry = configs.get("retention.ms")
    if entry is None or entry.value is None:
        return None
    milliseconds = int(entry.value)
    return math.inf if milliseconds < 0 else milliseconds / 1000


def check_readings_retention(settings: IotSettings) -> float | None:
    """Creates the service's topics where missing (the readings topic with GB 50440's year,
    whoever comes first: the relay or this intake), then reports the readings topic's retention
    (metric wuye_iot_readings_retention_seconds), warning when it keeps less than required."""
    SPEC.ensure_topics(settings)
    kept = readings_retention_seconds(settings)
    required = _retention_seconds(settings)
    if kept is None:
        log(
            logger,
            "the broker does not report the readings topic's retention; check it keeps "
            "records as long as required",
            logging.WARNING,
            topic=READING_TOPIC,
            required_seconds=required,
        )
        return None
    metrics.READINGS_RETENTION.set(kept)
    if kept < required:
        log(
            logger,
            "the readings topic keeps records for less than required (GB 50440: a year)",
            logging.WARNING,
            topic=READING_TOPIC,
            retention_seconds=kept,
            required_seconds=required,
        )
    return kept


def keep_readings_retention(settings: IotSettings, stop: threading.Event) -> None:
    """check_readings_retention once the broker answers: the intake starts without waiting for
    Kafka, and takes no batch while Kafka is away anyway. Retries wait twice as long each time,
    up to 10 minutes (a broker that refuses this client's admin requests says so every time)."""
    wait = settings.iot_topic_check_retry_seconds
    while not stop.is_set():
        try:
            check_readings_retention(settings)
            return
        except KafkaException as e:
            log(
                logger,
                "readings topic not checked yet, will retry",
                logging.WARNING,
                error=repr(e)[:200],
                retry_seconds=wait,
            )
            stop.wait(wait)
            wait = min(wait * 2, 600.0)


SPEC = ServiceSpec(
    name="iot",
    settings_type=IotSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    definitions=definitions,
    topics=TOPICS,
    consumers=(ConsumerSpec(name="events", build=registry_events),),
    on_published=measure_alarm_latency,
    topic_configs=topic_configs,
    # Device state lives in the memory of the instance serving a district, and the escalation
    # and silence timers run there too: one pod per instance, no `timers` part.
    single_owner=True,
    chart_values={
        # The key gateways' secrets derive from; `previous` while one is rotated out
        # (deploy/README.md, "Gateway keys").
        "serveSecrets": {
            "WUYE_IOT_GATEWAY_KEY": {"name": "wuye-iot-gateway-keys", "key": "current"},
            "WUYE_IOT_GATEWAY_PREVIOUS_KEY": {
                "name": "wuye-iot-gateway-keys",
                "key": "previous",
                "optional": True,
            },
        },
        "networkPolicy": {
            # Gateways are outside the cluster: anyone may reach the intake's gRPC port.
            "grpcFrom": [],
            # The MQTT broker (with networkPolicy.restrictEgress).
            "egress": [{"ports": [{"port": 1883, "protocol": "TCP"}]}],
        },
        # mqtt://host:1883; empty: gateways post over gRPC only.
        "env": {"WUYE_IOT_MQTT_URL": ""},
    },
)
