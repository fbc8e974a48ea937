"""The maintenance fund as the platform runs it: settings, migrations, servicer, topics, the
consumer of the registry's units and transfers, voting's decisions and the IoT intake's escalated
alarms, and the timers that escalate emergency requests not decided in time and flag accounts
to top up."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from wuye.core.consumer import Handler
from wuye.core.service import ConsumerSpec, ServiceSpec, TimerSpec, one_servicer
from wuye.fund.api import ROUTES, SERVICE_NAME, FundApi
from wuye.fund.commands import EVENT_TOPICS, TOPICS, Fund
from wuye.fund.settings import FundSettings
from wuye.fund.v1 import fund_service_pb2_grpc as pb_grpc


def events(settings: FundSettings, engine: Engine) -> tuple[tuple[str, ...], dict[str, Handler]]:
    return EVENT_TOPICS, Fund(engine, settings).handlers()


SPEC = ServiceSpec(
    name="fund",
    settings_type=FundSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    definitions=one_servicer(
        SERVICE_NAME,
        pb_grpc.add_FundServiceServicer_to_server,
        ROUTES,
        lambda settings, engine: FundApi(Fund(engine, settings)),
    ),
    topics=TOPICS,
    consumers=(ConsumerSpec(name="events", build=events),),
    timers=(
        TimerSpec(
            name="emergency-escalation",
            every_seconds=lambda settings: settings.fund_escalation_check_seconds,
            run=lambda settings, engine: Fund(engine, settings).escalate_overdue(),
        ),
        TimerSpec(
            name="top-up",
            every_seconds=lambda settings: settings.fund_top_up_check_seconds,
            run=lambda settings, engine: Fund(engine, settings).flag_top_ups(),
        ),
    ),
)
