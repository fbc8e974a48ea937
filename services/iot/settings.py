"""IoT intake settings: alarm rules' defaults, GB 50440's limits and the intake's sizes. Every
number is a default (DOMAIN.md section 6) another city changes through WUYE_IOT_* variables
(JSON for the structured ones)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, model_validator

from wuye.core.settings import Settings
from wuye.iot import domain
from wuye.iot.domain import DeviceKind, threshold_problems


class Range(BaseModel, frozen=True):
    low: float
    high: float


# Every kind's ranges, as domain.py states them; a city sets its own.
DEFAULT_VALID_RANGES: dict[str, Range] = {
    kind.value: Range(low=low, high=high) for kind, (low, high) in domain.VALID_RANGES.items()
}
DEFAULT_THRESHOLDS: dict[str, Range] = {
    kind.value: Range(low=low, high=high) for kind, (low, high) in domain.DEFAULT_THRESHOLDS.items()
}


class IotSettings(Settings):
    service: str = "iot"
    # Every gateway's stream and every duty desk's watch holds a server thread while it is open
    # (they mostly wait, outside the GIL); calls beyond these are refused, not queued.
    grpc_workers: int = Field(default=1000, ge=1)
    grpc_max_concurrent_rpcs: int = Field(default=1000, ge=1)

    # The key every gateway's secret is derived from, and the one being rotated out.
    iot_gateway_key: SecretStr = SecretStr("")
    iot_gateway_previous_key: SecretStr = SecretStr("")
    # The MQTT broker gateways publish to (mqtt://[user:password@]host:port); empty: no MQTT.
    iot_mqtt_url: str = "mqtt://127.0.0.1:1883"
    # How long the broker keeps the intake's session, and the readings for it, while it is away.
    iot_mqtt_session_seconds: int = Field(default=3600, ge=0)
    # How soon after a batch by MQTT could not be stored the session is resumed, for the broker
    # to redeliver it.
    iot_mqtt_resume_seconds: float = Field(default=5.0, gt=0)
    # GB 50440 keeps records at least a year: the retention the readings topic is created with.
    iot_readings_retention_days: int = Field(default=366, ge=1)
    # How soon the intake looks again at the readings topic when Kafka did not answer.
    iot_topic_check_retry_seconds: float = Field(default=5.0, gt=0)

    # A batch Kafka has not taken this long after it was handed over fails back to its gateway,
    # which resends it (to a new producer).
    iot_kafka_timeout_seconds: float = Field(default=30.0, ge=1)
    iot_max_batch_readings: int = Field(default=1000, ge=1)
    # GB 50440: the gateway's clock may differ from the centre's by 5 s at most.
    iot_max_clock_skew_seconds: float = Field(default=5.0, gt=0)
    # A reading observed later than this beyond the centre's clock is refused.
    iot_max_future_seconds: float = Field(default=60.0, gt=0)
    # GB 50440: devices are patrolled at least every 2 h; also the default heartbeat.
    iot_max_heartbeat_seconds: int = Field(default=7200, ge=1)
    iot_min_heartbeat_seconds: int = Field(default=10, ge=1)
    # How often silence is looked for: a silent device is alarmed within its heartbeat plus this.
    iot_silence_check_seconds: float = Field(default=5.0, gt=0)
    # An alarm nobody acknowledged this long after it was raised is escalated.
    iot_escalate_after_seconds: float = Field(default=300.0, gt=0)
    iot_escalation_check_seconds: float = Field(default=5.0, gt=0)
    # Whether an alarm resolves by itself when its condition clears.
    iot_auto_resolve: bool = True
    # Device state is written down this often (and at shutdown), to be recovered at restart.
    iot_snapshot_seconds: float = Field(default=30.0, gt=0)
    # How long state changes and acknowledgements gather before one transaction writes them.
    iot_flush_seconds: float = Field(default=0.01, gt=0)
    # Batches a stream may have in the pipeline before the intake stops reading from it.
    iot_stream_window: int = Field(default=64, ge=1)
    # Per gateway, how many sequences below the highest seen are remembered (anti-replay window,
    # as in IPsec); an older batch of the same epoch is refused (SEQUENCE_TOO_OLD).
    iot_replay_window: int = Field(default=64, ge=8, le=64)
    # How far beyond the highest sequence of its epoch one batch may number itself: a gateway
    # that lost batches skips some, but a jump to near 2^63 would leave it no sequence to use.
    iot_max_sequence_step: int = Field(default=1_000_000, ge=1)
    # GB 50440: a device with more false alarms than this on one calendar day is escalated.
    iot_max_false_alarms_per_day: int = Field(default=5, ge=0)
    # An alarm watcher (WatchAlarms) this many changes behind is dropped; it watches again.
    iot_watch_queue: int = Field(default=1000, ge=1)
    # At most this many alarms are escalated in one transaction (the rest at the next check).
    iot_escalation_batch: int = Field(default=500, ge=1)
    # How soon a thread waiting for the GIL gets it. Python's default, 5 ms, measured best: at
    # 1 ms the intake's dozens of threads spent more time switching than alarms gained.
    iot_gil_switch_seconds: float = Field(default=0.005, gt=0)

    iot_valid_ranges: dict[str, Range] = DEFAULT_VALID_RANGES
    iot_default_thresholds: dict[str, Range] = DEFAULT_THRESHOLDS

    @model_validator(mode="after")
    def _every_kind_has_ranges(self) -> IotSettings:
        for kind in DeviceKind:
            valid = self.iot_valid_ranges.get(kind)
            normal = self.iot_default_thresholds.get(kind)
            if valid is None or normal is None:
                raise ValueError(f"{kind}: every device kind needs a valid range and thresholds")
            problems = threshold_problems(kind, normal.low, normal.high, valid.low, valid.high)
            if problems:
                field, why = problems[0]
                raise ValueError(f"{kind}: default {field} {why}")
        return self
