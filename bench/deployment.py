"""A throwaway registry deployment: a fresh PostgreSQL schema, migrated, dropped at the end, and
the WUYE_* environment that production processes read to reach it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from wuye.core.auth import Role, issue_token
from wuye.core.migrate import upgrade
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
        env = {
            "WUYE_DATABASE_URL": self.database_url,
            "WUYE_DATABASE_SCHEMA": self.schema,
            "WUYE_TOKEN_SECRET": self.token_secret,
            "WUYE_PII_KEY": self.pii_key,
            "WUYE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "WUYE_LOG_LEVEL": "INFO",
            # Benchmark traffic stays on the loopback interface.
            "WUYE_GRPC_HOST": "127.0.0.1",
            "WUYE_METRICS_HOST": "127.0.0.1",
        }
        env.update({f"WUYE_{name.upper()}": str(value) for name, value in more.items()})
        return env

    def settings(self) -> RegistrySettings:
        return RegistrySettings(
            database_url=self.database_url,
            database_schema=self.schema,
            token_secret=self.token_secret,
            pii_key=self.pii_key,
            kafka_bootstrap=self.kafka_bootstrap,
        )

    def admin_token(self) -> str:
        return issue_token(self.token_secret, subject="bench", role=Role.ADMIN)


@contextmanager
def fresh_deployment(
    database_url: str, kafka_bootstrap: str = "127.0.0.1:9092"
) -> Iterator[Deployment]:
    deployment = Deployment(
        database_url=database_url,
        schema=f"bench_{secrets.token_hex(4)}",
        token_secret=secrets.token_hex(32),
        pii_key=secrets.token_hex(32),
        kafka_bootstrap=kafka_bootstrap,
    )
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        upgrade(deployment.settings(), SPEC.migrations_dir)
        yield deployment
    finally:
        with engine.begin() as connection:
            # Never hang the end of a run on a lock some stray session still holds.
            connection.exec_driver_sql("SET lock_timeout = '10s'")
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{deployment.schema}" CASCADE')
        engine.dispose()
