"""Joint meetings as the platform runs it: settings, migrations, servicer, topics, the consumer
of the registry's events (the projects and committees cases are about) and the task timer
(reminders, overdue and very late tasks, escalation)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from wuye.core.consumer import Handler
from wuye.core.service import ConsumerSpec, ServiceSpec, TimerSpec, one_servicer
from wuye.meetings.api import ROUTES, SERVICE_NAME, MeetingsApi
from wuye.meetings.commands import READ_MODEL_TOPICS, TOPICS, Meetings
from wuye.meetings.settings import MeetingsSettings
from wuye.meetings.v1 import meetings_service_pb2_grpc as pb_grpc


def events(
    settings: MeetingsSettings, engine: Engine
) -> tuple[tuple[str, ...], dict[str, Handler]]:
    return READ_MODEL_TOPICS, Meetings(engine, settings).handlers()


SPEC = ServiceSpec(
    name="meetings",
    settings_type=MeetingsSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    definitions=one_servicer(
        SERVICE_NAME,
        pb_grpc.add_MeetingsServiceServicer_to_server,
        ROUTES,
        lambda settings, engine: MeetingsApi(Meetings(engine, settings)),
    ),
    topics=TOPICS,
    consumers=(ConsumerSpec(name="events", build=events),),
    timers=(
        TimerSpec(
            name="task-deadlines",
            every_seconds=lambda settings: settings.task_check_seconds,
            run=lambda settings, engine: Meetings(engine, settings).mark_overdue(),
        ),
    ),
)
