"""The credit service as the platform runs it: settings, migrations, servicer, topics, the
consumer of other services' events and the expiry timer."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from wuye.core.consumer import Handler
from wuye.core.service import ConsumerSpec, ServiceSpec, TimerSpec, one_servicer
from wuye.credit.api import ROUTES, SERVICE_NAME, CreditApi
from wuye.credit.commands import TOPICS, Credit
from wuye.credit.settings import CreditSettings
from wuye.credit.v1 import credit_service_pb2_grpc as pb_grpc

REGISTRY_TOPICS = ("wuye.registry.enterprise.v1", "wuye.registry.practitioner.v1")


def events(settings: CreditSettings, engine: Engine) -> tuple[tuple[str, ...], dict[str, Handler]]:
    topics = tuple(
        dict.fromkeys([*REGISTRY_TOPICS, *(rule.topic for rule in settings.event_rules)])
    )
    return topics, Credit(engine, settings).handlers()


SPEC = ServiceSpec(
    name="credit",
    settings_type=CreditSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    definitions=one_servicer(
        SERVICE_NAME,
        pb_grpc.add_CreditServiceServicer_to_server,
        ROUTES,
        lambda settings, engine: CreditApi(Credit(engine, settings)),
    ),
    topics=TOPICS,
    consumers=(ConsumerSpec(name="events", build=events),),
    timers=(
        TimerSpec(
            name="record-expiry",
            every_seconds=lambda settings: settings.expiry_check_seconds,
            run=lambda settings, engine: Credit(engine, settings).expire_due(),
        ),
    ),
)
