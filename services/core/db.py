"""Engines for a service's own database: a SQLite file (embedded default) or PostgreSQL, where
each service keeps its tables in a schema of its own."""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections import namedtuple
from pathlib import Path

import psycopg
import sqlalchemy as sa
from sqlalchemy import Engine, MetaData, Select, create_engine, event
from sqlalchemy.engine import make_url

from wuye.core.settings import Settings


def create_service_engine(settings: Settings) -> Engine:
    url = make_url(settings.resolved_database_url())
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            # pysqlite's own transaction handling defers BEGIN; turn it off and take the write
            # lock up front (below) so concurrent writers queue on the busy timeout instead of
            # failing to upgrade a read lock.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection) -> None:
            if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.get_backend_name() == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        options = {
            "pool_size": settings.database_pool_size,
            "max_overflow": settings.database_pool_size,
            "pool_recycle": 1800,
            "connect_args": {"options": f"-c search_path={settings.schema}"},
        }
        engine = create_engine(url, **options)
        _readers[engine] = create_engine(url, isolation_level="AUTOCOMMIT", **options)
        return engine
    raise ValueError(f"unsupported database {url.get_backend_name()!r}: use sqlite or postgresql")


# PostgreSQL engines' companions for reads, made with them (see reader()).
_readers: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def reader(engine: Engine) -> Engine:
    """An engine for reads that need no transaction: one round trip per query instead of three
    (BEGIN, the query, ROLLBACK), which is most of a simple Get's cost on PostgreSQL. Its pool
    stays in autocommit; switching a shared pool's connections per checkout costs more."""
    return _readers.get(engine) or engine.execution_options(isolation_level="AUTOCOMMIT")


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def timestamp_column() -> sa.DateTime:
    """Times are stored with their zone, and are always UTC."""
    return sa.DateTime(timezone=True)


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """A stored time, zone attached: SQLite hands times back without one."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def service_metadata() -> MetaData:
    """Metadata with constraint names fixed by convention, so migrations can name them."""
    return MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class KeyLookup:
    """A read of one row by key, for the hottest Gets: the statement is compiled once and, on
    PostgreSQL, run prepared on a connection each server thread keeps for it. SQLAlchemy's
    execution machinery, pool checkout included, otherwise costs about twice what psycopg and
    the query cost (make bench)."""

    def __init__(self, engine: Engine, statement: Select) -> None:
        self._reader = reader(engine)
        self._statement = statement
        self._raw = is_postgres(engine)
        self._sql = str(statement.compile(dialect=engine.dialect)) if self._raw else ""
        self._row = namedtuple("Row", [column.key for column in statement.selected_columns])
        self._local = threading.local()

    def first(self, **params: object):
        """The row (attribute access by column name), or None."""
        if not self._raw:
            with self._reader.connect() as connection:
                return connection.execute(self._statement, params).first()
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            pooled = self._reader.raw_connection()
            pooled.detach()  # this thread's own, for as long as it lives
            cursor = self._local.cursor = pooled.dbapi_connection.cursor()
        try:
            cursor.execute(self._sql, params, prepare=True)
            row = cursor.fetchone()
        except psycopg.OperationalError:
            # A broken connection: the next call opens a new one.
            self._local.cursor = None
            raise
        return self._row._make(row) if row else None


class ColumnUpdate:
    """Updates many rows of a table in one statement, each column's new values sent as one
    array (PostgreSQL's unnest): for writes done many times a second (the IoT intake's replay
    windows), where a statement a row, even pipelined, costs more than the database's work.
    SQLite, the embedded default, has no arrays: there it is a statement a row. Runs in the
    caller's transaction."""

    def __init__(self, engine: Engine, table: sa.Table, key: str, columns: list[str]) -> None:
        names = self._names = [key, *columns]
        self._arrays = is_postgres(engine)
        if not self._arrays:
            self._statement = (
                table.update()
                .where(table.c[key] == sa.bindparam(f"row_{key}"))
                .values({c: sa.bindparam(f"row_{c}") for c in columns})
            )
            return
        dialect = engine.dialect
        quote = dialect.identifier_preparer.quote
        arrays = ", ".join(f"%({n})s::{table.c[n].type.compile(dialect)}[]" for n in names)
        self._sql = (
            f"UPDATE {dialect.identifier_preparer.format_table(table)} AS t"
            f" SET {', '.join(f'{quote(n)} = w.{quote(n)}' for n in columns)}"
            f" FROM unnest({arrays}) AS w({', '.join(quote(n) for n in names)})"
            f" WHERE t.{quote(key)} = w.{quote(key)}"
        )

    def run(self, connection: sa.Connection, rows: list[tuple]) -> None:
        """`rows`: (key, *columns) each, in the order given at construction."""
        if not rows:
            return
        if not self._arrays:
            params = [{f"row_{n}": v for n, v in zip(self._names, r, strict=True)} for r in rows]
            connection.execute(self._statement, params)
            return
        columns = dict(zip(self._names, map(list, zip(*rows, strict=True)), strict=True))
        with connection.connection.dbapi_connection.cursor() as cursor:
            cursor.execute(self._sql, columns)
