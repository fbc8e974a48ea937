"""ColumnUpdate on SQLite, the embedded default (PostgreSQL's array form is exercised by the
IoT integration tests: replay windows and snapshots survive a restart)."""

from __future__ import annotations

import sqlalchemy as sa

from wuye.core.db import ColumnUpdate


def test_column_update_writes_each_row_by_its_key_on_sqlite() -> None:
    engine = sa.create_engine("sqlite://")
    metadata = sa.MetaData()
    table = sa.Table(
        "windows",
        metadata,
        sa.Column("gateway_id", sa.String, primary_key=True),
        sa.Column("highest", sa.BigInteger),
        sa.Column("skewed", sa.Boolean),
    )
    metadata.create_all(engine)
    update = ColumnUpdate(engine, table, "gateway_id", ["highest", "skewed"])

    with engine.begin() as connection:
        connection.execute(
            table.insert(),
            [{"gateway_id": g, "highest": 0, "skewed": False} for g in ("a", "b", "c")],
        )
        update.run(connection, [("a", 2**62, True), ("c", 7, False)])
        update.run(connection, [])

    with engine.connect() as connection:
        rows = connection.execute(sa.select(table).order_by(table.c.gateway_id)).all()
    assert [tuple(r) for r in rows] == [("a", 2**62, True), ("b", 0, False), ("c", 7, False)]
