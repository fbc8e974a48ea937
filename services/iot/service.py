"""The IoT intake as the platform runs it: the serving process (gRPC and MQTT intake, with the
devices' state in memory and the writer's timers), the relay, and the consumer of the
registry's project events."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from wuye.core.consumer import Handler
from wuye.core.grpcserver import ServiceDefinition, district_scope
from wuye.core.service import ConsumerSpec, ServiceSpec
from wuye.iot import api, metrics
from wuye.iot.api import ROUTES, SERVICE_NAME, IntakeApi
from wuye.iot.commands import REGISTRY_TOPICS, TOPICS, Iot
from wuye.iot.intake import READING_TOPIC, Intake
from wuye.iot.mqtt import MqttIntake
from wuye.iot.settings import IotSettings
from wuye.iot.v1 import events_pb2 as events

_RAISED = events.AlarmRaised.DESCRIPTOR.full_name


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
        )
        if settings.iot_mqtt_url
        else None
    )

    def start() -> None:
        intake.start()
        if mqtt is not None:
            mqtt.start()

    def stop() -> None:
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
    """Reading observed → alarm event on Kafka, for each AlarmRaised the relay published."""
    for row in rows:
        if row.event_type == _RAISED:
            alarm = events.AlarmRaised.FromString(row.payload).alarm
            observed = alarm.observe_time.seconds + alarm.observe_time.nanos / 1e9
            metrics.ALARM_LATENCY.labels(metrics.alarm_kind(alarm)).observe(
                max(0.0, published - observed)
            )


def topic_configs(settings: IotSettings) -> dict[str, dict[str, str]]:
    retention_ms = settings.iot_readings_retention_days * 24 * 3600 * 1000
    return {READING_TOPIC: {"retention.ms": str(retention_ms)}}


SPEC = ServiceSpec(
    name="iot",
    settings_type=IotSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    definitions=definitions,
    topics=TOPICS,
    consumers=(ConsumerSpec(name="events", build=registry_events),),
    on_published=measure_alarm_latency,
    topic_configs=topic_configs,
)
