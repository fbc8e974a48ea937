"""The registry service as the platform runs it: settings, migrations, servicer, topics."""

from __future__ import annotations

from pathlib import Path

from wuye.core.service import ServiceSpec, one_servicer
from wuye.registry.api import ROUTES, SERVICE_NAME, RegistryApi
from wuye.registry.commands import TOPICS, Registry
from wuye.registry.settings import RegistrySettings
from wuye.registry.v1 import registry_service_pb2_grpc as pb_grpc

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
)
