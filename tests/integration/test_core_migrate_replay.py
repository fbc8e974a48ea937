"""The schemas the integration tests get from `migrate` (Alembic's statements replayed) are the
schemas Alembic makes: the same tables, columns, keys, indexes, constraints and rows."""

from __future__ import annotations

import pprint

import pytest
import sqlalchemy as sa
from grpc_support import migrate

from wuye.core.catalog import load_specs
from wuye.core.migrate import upgrade

pytestmark = pytest.mark.integration


# What PostgreSQL's catalog says of a schema's tables: columns, indexes, constraints.
CATALOG_QUERIES = (
    """SELECT table_name, column_name, data_type, character_maximum_length, numeric_precision,
              is_nullable, column_default
         FROM information_schema.columns WHERE table_schema = %(schema)s
        ORDER BY table_name, ordinal_position""",
    """SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %(schema)s
        ORDER BY tablename, indexname""",
    """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE connamespace = %(schema)s::regnamespace ORDER BY 1, 2""",
)


def _schema_of(admin: sa.Engine, schema: str) -> str:
    """The catalog's description of the schema and every row of its tables, with the schema's
    name (in defaults and definitions) as <schema>."""
    with admin.connect() as connection:
        found = [
            connection.exec_driver_sql(query, {"schema": schema}).all()
            for query in CATALOG_QUERIES
        ]
        tables = sorted({row[0] for row in found[0]})
        found += [
            sorted(map(repr, connection.exec_driver_sql(f'SELECT * FROM "{schema}"."{t}"')))
            for t in tables
        ]
    return pprint.pformat(found).replace(schema, "<schema>")


@pytest.mark.parametrize("spec", load_specs(), ids=lambda spec: spec.name)
def test_a_replayed_migration_makes_the_schema_alembic_makes(spec, make_settings, _pg_admin):
    by_alembic = make_settings(spec.settings_type)
    upgrade(by_alembic, spec.migrations_dir)
    # The first `migrate` of a service in a run records Alembic's statements, the next replays.
    recorded, replayed = (
        make_settings(spec.settings_type, database_schema=f"{by_alembic.schema}_{suffix}")
        for suffix in ("a", "b")
    )
    try:
        for settings in (recorded, replayed):
            with _pg_admin.begin() as connection:
                connection.exec_driver_sql(f'CREATE SCHEMA "{settings.schema}"')
            migrate(settings, spec.migrations_dir)

        assert _schema_of(_pg_admin, replayed.schema) == _schema_of(_pg_admin, by_alembic.schema)
    finally:
        with _pg_admin.begin() as connection:
            for settings in (recorded, replayed):
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{settings.schema}" CASCADE')
