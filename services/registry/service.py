"""The registry service as the platform runs it: settings, migrations, servicer, topics."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from wuye.core.grpcserver import ServiceDefinition
from wuye.core.service import ServiceSpec
from wuye.registry.api import ROUTES, SERVICE_NAME, RegistryApi
from wuye.registry.commands import TOPICS, Registry
from wuye.registry.settings import RegistrySettings
from wuye.registry.v1 import registry_service_pb2_grpc as pb_grpc


def definitions(settings: RegistrySettings, engine: Engine) -> list[ServiceDefinition]:
    return [
        ServiceDefinition(
            full_name=SERVICE_NAME,
            add_to_server=pb_grpc.add_RegistryServiceServicer_to_server,
            servicer=RegistryApi(Registry(engine, settings)),
            routes=ROUTES,
        )
    ]


SPEC = ServiceSpec(
    name="registry",
    settings_type=RegistrySettings,
    migrations_dir=Path(__file__).parent / "migrations",
    definitions=definitions,
    topics=TOPICS,
)
