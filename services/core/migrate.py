"""Alembic migrations, one history per service, run by `python -m wuye.<service> migrate`
(a Job in Kubernetes, a step of `make run`), never at server start.

Every service shares one Alembic environment (migrations_env/ beside this module: env.py and
the template of a revision); a service keeps only its revisions, in <service>/migrations/versions.
The tables every service shares (outbox, inbox, idempotency keys, event order) are created by
these functions: the services that existed before a table did call the matching function from
a revision of their own (`create_event_tables` in 0001, `create_event_order_tables` in 0002); a
new service's first revision calls `create_core_tables` once and gets the current set.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from wuye.core.db import create_service_engine, is_postgres
from wuye.core.settings import Settings

ENVIRONMENT = Path(__file__).parent / "migrations_env"


def alembic_config(migrations_dir: Path) -> Config:
    """The shared environment, with the revisions of the service whose migrations are here."""
    config = Config()
    config.set_main_option("script_location", str(ENVIRONMENT))
    config.set_main_option("version_locations", str(migrations_dir / "versions"))
    # One location, so no separator is needed; paths may hold spaces.
    config.set_main_option("path_separator", "newline")
    return config


def upgrade(settings: Settings, migrations_dir: Path, revision: str = "head") -> None:
    engine = create_service_engine(settings)
    try:
        with engine.begin() as connection:
            schema = None
            if is_postgres(engine):
                schema = settings.schema
                connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            config = alembic_config(migrations_dir)
            config.attributes["connection"] = connection
            config.attributes["version_table_schema"] = schema
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def run_in_alembic() -> None:
    from alembic import context

    config = context.config
    context.configure(
        connection=config.attributes["connection"],
        version_table_schema=config.attributes.get("version_table_schema"),
    )
    with context.begin_transaction():
        context.run_migrations()


def _big_id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def create_event_tables(op) -> None:
    """Version 1 of the tables of wuye.core.events, for a service's first migration."""
    op.create_table(
        "outbox",
        sa.Column("id", _big_id(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("district", sa.String(12), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(100), primary_key=True),
        sa.Column("processed_at", sa.Float(), nullable=False, index=True),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("method", sa.String(100), primary_key=True),
        sa.Column("request_id", sa.String(100), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )


def create_event_order_tables(op) -> None:
    """Version 2 of the tables of wuye.core.events, for each service's second migration: the
    version each event carries for its (topic, key), what each consumer has seen of them, and
    the lease that lets one relay publish at a time."""
    op.add_column("outbox", sa.Column("version", sa.BigInteger(), nullable=True))
    op.create_table(
        "event_versions",
        sa.Column("topic", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "inbox_versions",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("topic", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    lease = op.create_table(
        "outbox_lease",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.bulk_insert(lease, [{"id": 1, "holder": "", "epoch": 0, "expires_at": 0.0}])


def create_core_tables(op) -> None:
    """Every table of wuye.core.events as the core uses it now, for a new service's first
    revision (the older services reached the same set in steps)."""
    create_event_tables(op)
    create_event_order_tables(op)


def drop_event_order_tables(op) -> None:
    for table in ("outbox_lease", "inbox_versions", "event_versions"):
        op.drop_table(table)
    op.drop_column("outbox", "version")
