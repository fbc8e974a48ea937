"""The tenders migration creates exactly the tables the service's code uses."""

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from wuye.core.db import create_service_engine
from wuye.core.events import event_metadata
from wuye.core.migrate import upgrade
from wuye.tenders import store
from wuye.tenders.service import SPEC
from wuye.tenders.settings import TendersSettings

pytestmark = pytest.mark.integration


def test_the_migrated_tables_match_the_metadata_of_the_store(make_settings) -> None:
    settings = make_settings(TendersSettings)
    upgrade(settings, SPEC.migrations_dir)
    used = sa.MetaData()
    for table in (*store.metadata.sorted_tables, *event_metadata.sorted_tables):
        table.to_metadata(used)
    engine = create_service_engine(settings)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), used)
    finally:
        engine.dispose()
    assert differences == []
