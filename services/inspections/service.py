"""Inspections as the platform runs it: settings, migrations, servicer, topics, the consumer of
registry, credit and IoT events (read models, triggers, complaints), and the
overdue-rectification timer."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from wuye.core.consumer import Handler
from wuye.core.service import ConsumerSpec, ServiceSpec, TimerSpec, one_servicer
from wuye.inspections.api import ROUTES, SERVICE_NAME, InspectionsApi
from wuye.inspections.commands import READ_MODEL_TOPICS, TOPICS, Inspections
from wuye.inspections.settings import InspectionsSettings
from wuye.inspections.v1 import inspections_service_pb2_grpc as pb_grpc


def events(
    settings: InspectionsSettings, engine: Engine
) -> tuple[tuple[str, ...], dict[str, Handler]]:
    rules = (*settings.trigger_rules, *settings.complaint_rules)
    topics = (*READ_MODEL_TOPICS, *(rule.topic for rule in rules))
    return tuple(dict.fromkeys(topics)), Inspections(engine, settings).handlers()


SPEC = ServiceSpec(
    name="inspections",
    settings_type=InspectionsSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    definitions=one_servicer(
        SERVICE_NAME,
        pb_grpc.add_InspectionsServiceServicer_to_server,
        ROUTES,
        lambda settings, engine: InspectionsApi(Inspections(engine, settings)),
    ),
    topics=TOPICS,
    consumers=(ConsumerSpec(name="events", build=events),),
    timers=(
        TimerSpec(
            name="rectification-overdue",
            every_seconds=lambda settings: settings.overdue_check_seconds,
            run=lambda settings, engine: Inspections(engine, settings).mark_overdue(),
        ),
    ),
)
