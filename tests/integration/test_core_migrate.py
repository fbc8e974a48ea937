"""The tables every service's first two migrations create, and a new service's first creates at
once, are the tables the core's code uses."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations

from wuye.core.db import create_service_engine
from wuye.core.events import event_metadata
from wuye.core.migrate import create_core_tables, create_event_order_tables, create_event_tables

pytestmark = pytest.mark.integration


def test_the_migrated_event_tables_match_the_metadata_the_core_uses(make_settings) -> None:
    engine = create_service_engine(make_settings(service="coretest"))
    try:
        with engine.begin() as connection:
            operations = Operations(MigrationContext.configure(connection))
            create_event_tables(operations)
            create_event_order_tables(operations)
            differences = compare_metadata(MigrationContext.configure(connection), event_metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_a_new_service_gets_the_same_core_tables_in_one_call(make_settings) -> None:
    engine = create_service_engine(make_settings(service="coretest"))
    try:
        with engine.begin() as connection:
            create_core_tables(Operations(MigrationContext.configure(connection)))
            differences = compare_metadata(MigrationContext.configure(connection), event_metadata)
    finally:
        engine.dispose()
    assert differences == []
