"""The IoT intake's migrations build exactly the tables its code uses (services/iot/store.py),
on PostgreSQL: a column or index the code expects and no migration creates fails here, not in
production."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from wuye.core.db import create_service_engine
from wuye.core.migrate import upgrade
from wuye.iot import store
from wuye.iot.service import SPEC
from wuye.iot.settings import IotSettings

pytestmark = pytest.mark.integration


def test_the_migrated_iot_tables_match_the_metadata_the_intake_uses(make_settings) -> None:
    settings = make_settings(IotSettings, iot_gateway_key="k")
    upgrade(settings, SPEC.migrations_dir)
    engine = create_service_engine(settings)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), store.metadata)
    finally:
        engine.dispose()

    # The event tables (outbox, inbox, ...) are the core's, compared by test_core_migrate.
    assert [d for d in differences if _table_of(d) in store.metadata.tables] == []


def _table_of(difference) -> str:
    """The table an autogenerate difference is about: ("add_column", schema, table, column),
    ("remove_index", index), ("modify_nullable", schema, table, column, ...), ..."""
    change = difference[0] if isinstance(difference, list) else difference
    if len(change) > 2 and isinstance(change[2], str):
        return change[2]
    item = change[1]
    return item.name if hasattr(item, "columns") and not hasattr(item, "table") else item.table.name
