"""A throwaway registry deployment: a fresh PostgreSQL schema, migrated, dropped at the end, and
the WUYE_* environment that production processes read to reach it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa

from wuye.core.auth import Role, issue_token
from wuye.core.migrate import upgrade
from wuye.core.service import ServiceSpec
from wuye.core.settings import Settings
from wuye.registry.service import SPEC
from wuye.registry.settings import RegistrySettings

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Deployment:
    database_url: str
    schema: str
    token_secret: str
    pii_key: str
    kafka_bootstrap: str

    def env(self, **more: str | int) -> dict[str, str]:
        """Environment of a `python -m wuye.registry ...` process, as Helm would set it."""
        return process_env(self.settings(), **more)

    def settings(self) -> RegistrySettings:
        return RegistrySettings(
            database_url=self.database_url,
            database_schema=self.schema,
            token_secret=self.token_secret,
            pii_key=self.pii_key,
            kafka_bootstrap=self.kafka_bootstrap,
        )

    def admin_token(self) -> str:
        return issue_admin_token(self.token_secret)


def issue_admin_token(token_secret: str) -> str:
    """The bench's admin token for a deployment signing tokens with `token_secret`."""
    return issue_token(token_secret, subject="bench", role=Role.ADMIN)


S = TypeVar("S", bound=Settings)


def process_env(settings: Settings, **more: str | int) -> dict[str, str]:
    """Environment of a `python -m wuye.<service> ...` process reaching what `settings` name, as
    Helm would set it; `more` adds WUYE_<NAME> variables."""
    env = {
        "WUYE_DATABASE_URL": settings.database_url,
        "WUYE_DATABASE_SCHEMA": settings.schema,
        "WUYE_TOKEN_SECRET": settings.token_secret.get_secret_value(),
        "WUYE_PII_KEY": settings.pii_key.get_secret_value(),
        "WUYE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "WUYE_LOG_LEVEL": "INFO",
        # Benchmark traffic stays on the loopback interface.
        "WUYE_GRPC_HOST": "127.0.0.1",
        "WUYE_METRICS_HOST": "127.0.0.1",
    }
    env.update({f"WUYE_{name.upper()}": str(value) for name, value in more.items()})
    return env


@contextmanager
def migrated_schema(
    database_url: str, settings_type: type[S], spec: ServiceSpec, **overrides: str
) -> Iterator[S]:
    """Settings of a fresh PostgreSQL schema, migrated as `spec`'s service migrates, with fresh
    keys; the schema is dropped at the end, however the run ends."""
    settings = settings_type(
        database_url=database_url,
        database_schema=f"bench_{secrets.token_hex(4)}",
        token_secret=secrets.token_hex(32),
        pii_key=secrets.token_hex(32),
        **overrides,
    )
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        upgrade(settings, spec.migrations_dir)
        yield settings
    finally:
        with engine.begin() as connection:
            # Never hang the end of a run on a lock some stray session still holds.
            connection.exec_driver_sql("SET lock_timeout = '10s'")
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{settings.schema}" CASCADE')
        engine.dispose()


@contextmanager
def fresh_deployment(
    database_url: str, kafka_bootstrap: str = "127.0.0.1:9092"
) -> Iterator[Deployment]:
    with migrated_schema(
        database_url, RegistrySettings, SPEC, kafka_bootstrap=kafka_bootstrap
    ) as settings:
        yield Deployment(
            database_url=database_url,
            schema=settings.schema,
            token_secret=settings.token_secret.get_secret_value(),
            pii_key=settings.pii_key.get_secret_value(),
            kafka_bootstrap=kafka_bootstrap,
        )
