"""The registry service as the platform runs it: settings, migrations, servicer, topics, and
the consumer of the tenders' contracts."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from wuye.core.consumer import Handler
from wuye.core.service import ConsumerSpec, ServiceSpec, one_servicer
from wuye.registry.api import ROUTES, SERVICE_NAME, RegistryApi
from wuye.registry.commands import READ_TOPICS, TOPICS, Registry
from wuye.registry.settings import RegistrySettings
from wuye.registry.v1 import registry_service_pb2_grpc as pb_grpc


def events(
    settings: RegistrySettings, engine: Engine
) -> tuple[tuple[str, ...], dict[str, Handler]]:
    return READ_TOPICS, Registry(engine, settings).handlers()


SPEC = ServiceSpec(
    name="registry",
    settings_type=RegistrySettings,
    migrations_dir=Path(__file__).parent / "migrations",
    definitions=one_servicer(
        SERVICE_NAME,
        pb_grpc.add_RegistryServiceServicer_to_server,
        ROUTES,
        lambda settings, engine: RegistryApi(Registry(engine, settings)),
    ),
    topics=TOPICS,
    consumers=(ConsumerSpec(name="events", build=events),),
)
