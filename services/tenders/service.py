"""Tenders as the platform runs it: settings, migrations, servicer, topics, and the timer that
moves tenders when their dates pass (it asks credit at the deadline, so it calls credit)."""

from __future__ import annotations

from pathlib import Path

from wuye.core.service import ServiceSpec, TimerSpec, one_servicer
from wuye.tenders.api import ROUTES, SERVICE_NAME, TendersApi
from wuye.tenders.commands import TOPICS, Tenders
from wuye.tenders.settings import TendersSettings
from wuye.tenders.v1 import tenders_service_pb2_grpc as pb_grpc

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
    timers=(
        TimerSpec(
            name="tender-dates",
            every_seconds=lambda settings: settings.timer_check_seconds,
            run=lambda settings, engine: Tenders(engine, settings).run_timers(),
        ),
    ),
    calls=("credit",),
)
