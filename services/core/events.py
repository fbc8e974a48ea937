"""The transactional outbox and its companions: events are rows written in the same transaction
as the state they describe, so nothing is published that was not committed and nothing
committed is lost while Kafka is away. Also the inbox (event ids a consumer has processed) and
idempotency keys of Create-like calls.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from google.protobuf.message import Message
from pydantic import SecretStr
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from wuye.core.context import current_or_none
from wuye.core.errors import AlreadyExists, DomainError
from wuye.core.pii import Pseudonymizer

# Created by each service's first two migrations (wuye.core.migrate.create_event_tables and
# create_event_order_tables).
event_metadata = sa.MetaData()
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

outbox = sa.Table(
    "outbox",
    event_metadata,
    sa.Column("id", _big_id, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("topic", sa.String(200), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("event_type", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("district", sa.String(12), nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # The event's place among its (topic, key)'s events, from event_versions; empty on events
    # written before versions existed.
    sa.Column("version", sa.BigInteger, nullable=True),
)

# The last version given to each (topic, key). Taking the next one locks the row until commit,
# so transactions emitting for one key commit, take outbox ids and get versions in one order.
event_versions = sa.Table(
    "event_versions",
    event_metadata,
    sa.Column("topic", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)

# The highest version each consumer has handled per (topic, key): anything not above it is a
# repeat or a stale replay.
inbox_versions = sa.Table(
    "inbox_versions",
    event_metadata,
    sa.Column("consumer", sa.String(100), primary_key=True),
    sa.Column("topic", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)

# One row: which relay may publish (holder), its fencing token (epoch, raised at every change of
# holder) and until when its lease runs.
outbox_lease = sa.Table(
    "outbox_lease",
    event_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

inbox = sa.Table(
    "inbox",
    event_metadata,
    sa.Column("consumer", sa.String(100), primary_key=True),
    sa.Column("event_id", sa.String(100), primary_key=True),
    # Indexed as in create_event_tables: housekeeping deletes by age.
    sa.Column("processed_at", sa.Float, nullable=False, index=True),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    event_metadata,
    sa.Column("method", sa.String(100), primary_key=True),
    sa.Column("request_id", sa.String(100), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("response", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Event:
    """One event to publish: `key` orders one aggregate's events; `subject` names the record."""

    topic: str
    key: str
    subject: str
    district: str
    message: Message

    @classmethod
    def of_aggregate(cls, topic: str, key: str, district: str, message: Message) -> Event:
        """An event of the aggregate `key` whose kind the topic names (`wuye.<service>.<kind>.v1`):
        its subject is `<kind>s/<key>`, e.g. `uses/U1` on `wuye.fund.use.v1`."""
        return cls(
            topic=topic,
            key=key,
            subject=f"{topic.split('.')[2]}s/{key}",
            district=district,
            message=message,
        )


def add_events(connection: Connection, events: Iterable[Event]) -> None:
    """Add `events` to the outbox of the connection's transaction, each with the next version of
    its (topic, key).

    Taking a version locks its (topic, key) row until the transaction ends, so transactions
    emitting for one key are serialised: their events get outbox ids and versions in the order
    they commit, which is the order the relay publishes them. On PostgreSQL the commit also
    wakes the relay (a notification, delivered at commit, as many as there were coalesced).
    """
    events = list(events)
    if not events:
        return
    request = current_or_none()
    trace_id = request.trace_id if request else ""
    now = time.time()
    rows = [
        {
            "event_id": str(uuid.uuid4()),
            "topic": e.topic,
            "key": e.key,
            "event_type": e.message.DESCRIPTOR.full_name,
            "subject": e.subject,
            "district": e.district,
            "trace_id": trace_id,
            "payload": e.message.SerializeToString(),
            "created_at": now,
        }
        for e in events
    ]
    if connection.dialect.name == "postgresql":
        columns = ("event_id", "topic", "key", "event_type", "subject", "district", "payload")
        connection.execute(
            _ADD_EVENTS_PG,
            {
                **{f"{column}s": [row[column] for row in rows] for column in columns},
                "trace_id": trace_id,
                "created_at": now,
            },
        )
        return
    versions = _take_versions_sqlite(connection, rows)
    for row in rows:
        row["version"] = versions[row["topic"], row["key"]]
        versions[row["topic"], row["key"]] += 1
    connection.execute(outbox.insert(), rows)


# The channel on which a schema's commits wake its relay; names are at most 63 bytes.
OUTBOX_CHANNEL = sa.func.left(sa.literal("wuye_outbox_") + sa.func.current_schema(), 63)

# On PostgreSQL one statement of one shape (arrays; compiled and prepared once) takes the
# versions, raises the notification and inserts the events. Version rows are taken in (topic,
# key) order, so transactions emitting for the same keys wait for each other rather than
# deadlock; outbox ids follow the events' order.
_ADD_EVENTS_PG = sa.text(
    """
    WITH adding AS (
        SELECT * FROM unnest(
            CAST(:event_ids AS varchar[]), CAST(:topics AS varchar[]), CAST(:keys AS varchar[]),
            CAST(:event_types AS varchar[]), CAST(:subjects AS varchar[]),
            CAST(:districts AS varchar[]), CAST(:payloads AS bytea[])
        ) WITH ORDINALITY AS e(event_id, topic, key, event_type, subject, district, payload, n)
    ),
    taken AS (
        INSERT INTO event_versions AS v (topic, key, version)
        SELECT topic, key, count(*) FROM adding GROUP BY topic, key ORDER BY topic, key
        ON CONFLICT (topic, key) DO UPDATE SET version = v.version + excluded.version
        RETURNING topic, key, version,
                  pg_notify(left('wuye_outbox_' || current_schema(), 63), '')
    )
    INSERT INTO outbox (event_id, topic, key, event_type, subject, district, trace_id, payload,
                        created_at, version)
    SELECT e.event_id, e.topic, e.key, e.event_type, e.subject, e.district, :trace_id,
           e.payload, :created_at,
           taken.version - count(*) OVER keyed + row_number() OVER (keyed ORDER BY e.n)
    FROM adding AS e JOIN taken USING (topic, key)
    WINDOW keyed AS (PARTITION BY e.topic, e.key)
    ORDER BY e.n
    """
)
_next_version = sqlite.insert(event_versions).values(
    topic=sa.bindparam("next_topic"),
    key=sa.bindparam("next_key"),
    version=sa.bindparam("next_count"),
)
_NEXT_VERSION_SQLITE = _next_version.on_conflict_do_update(
    index_elements=[event_versions.c.topic, event_versions.c.key],
    set_={"version": event_versions.c.version + _next_version.excluded.version},
).returning(event_versions.c.version)


def _take_versions_sqlite(connection: Connection, rows: list[dict]) -> dict[tuple[str, str], int]:
    """The first version of each (topic, key) among `rows`. SQLite has one writer at a time: the
    transaction holds the database from its start."""
    counts = Counter((row["topic"], row["key"]) for row in rows)
    return {
        (topic, key): connection.execute(
            _NEXT_VERSION_SQLITE,
            {"next_topic": topic, "next_key": key, "next_count": count},
        ).scalar_one()
        - count
        + 1
        for (topic, key), count in counts.items()
    }


R = TypeVar("R", bound=Message)


def run_idempotent(
    engine: Engine,
    *,
    pii_key: SecretStr,
    method: str,
    request_id: str,
    request: Message,
    response_type: type[R],
    command: Callable[[Connection], R],
) -> R:
    """Run `command` in one transaction, once per (method, request_id).

    A retry with the same id and the same request gets the first response (AIP-155); the same id
    with a different request is refused, since the caller has mixed up two requests. Requests
    hold whole ID numbers, and a mask leaves few enough candidates to try them all against a
    plain hash: the fingerprint is keyed with the PII key.
    """
    subject = (current_or_none().principal.subject if current_or_none() else "").encode()
    fingerprint = Pseudonymizer(pii_key.get_secret_value().encode(), purpose="idempotency").digest(
        subject + b"\0" + request.SerializeToString(deterministic=True)
    )
    key = (idempotency_keys.c.method == method) & (idempotency_keys.c.request_id == request_id)
    for attempt in range(2):
        seen = None
        try:
            with engine.begin() as connection:
                seen = connection.execute(
                    sa.select(idempotency_keys.c.fingerprint, idempotency_keys.c.response).where(
                        key
                    )
                ).first()
                if seen is not None:
                    if seen.fingerprint != fingerprint:
                        raise AlreadyExists(
                            "REQUEST_ID_REUSED",
                            f"request_id {request_id} was already used for a different request",
                            request_id=request_id,
                        )
                    return response_type.FromString(seen.response)
                response = command(connection)
                connection.execute(
                    idempotency_keys.insert().values(
                        method=method,
                        request_id=request_id,
                        fingerprint=fingerprint,
                        response=response.SerializeToString(),
                        created_at=time.time(),
                    )
                )
                return response
        except IntegrityError:
            # A concurrent request won a race on a unique key (this request_id, or a record's
            # natural key). Once more: now its committed rows decide the answer.
            if attempt:
                raise
        except DomainError:
            # Each statement reads what is committed when it starts: a concurrent retry of this
            # request may commit between our look-up and the command's reads, and the command
            # then refuses because of that retry's effect ("a filing awaits review"). If this
            # request id has been recorded meanwhile, its answer is ours.
            if attempt or seen is not None or not _recorded(engine, key):
                raise
    raise AssertionError("unreachable")


def purge_idempotency_keys(engine: Engine, older_than: float) -> int:
    """Forgets the answers recorded before `older_than` (epoch seconds); returns how many."""
    with engine.begin() as connection:
        return connection.execute(
            idempotency_keys.delete().where(idempotency_keys.c.created_at < older_than)
        ).rowcount


def _recorded(engine: Engine, key) -> bool:
    with engine.connect() as connection:
        return (
            connection.execute(sa.select(idempotency_keys.c.method).where(key)).first() is not None
        )
