"""Tenders as the platform runs it: settings, migrations, servicer, topics, the consumer of the
registry's committees and voting's decisions (an owners' decision to hire an enterprise opens a
draft), and the timer that moves tenders when their dates pass (it asks credit at the deadline,
so it calls credit)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from wuye.core.consumer import Handler
from wuye.core.service import ConsumerSpec, ServiceSpec, TimerSpec, one_servicer
from wuye.tenders.api import ROUTES, SERVICE_NAME, TendersApi
from wuye.tenders.commands import EVENT_TOPICS, TOPICS, Tenders
from wuye.tenders.settings import TendersSettings
from wuye.tenders.v1 import tenders_service_pb2_grpc as pb_grpc


def events(settings: TendersSettings, engine: Engine) -> tuple[tuple[str, ...], dict[str, Handler]]:
    return EVENT_TOPICS, Tenders(engine, settings).handlers()


SPEC = ServiceSpec(
    name="tenders",
    settings_type=TendersSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    definitions=one_servicer(
        SERVICE_NAME,
        pb_grpc.add_TendersServiceServicer_to_server,
        ROUTES,
        lambda settings, engine: TendersApi(Tenders(engine, settings)),
    ),
    topics=TOPICS,
    consumers=(ConsumerSpec(name="events", build=events),),
    timers=(
        TimerSpec(
            name="tender-dates",
            every_seconds=lambda settings: settings.timer_check_seconds,
            run=lambda settings, engine: Tenders(engine, settings).run_timers(),
        ),
    ),
    calls=("credit",),
)
