"""The outbox relay: publishes committed events to Kafka in commit order, then deletes them.

At-least-once: a crash between Kafka's acknowledgement and the delete publishes a batch again;
consumers drop the repeats by ce_id. On PostgreSQL one relay per schema is active at a time
(an advisory lock), so replicas can stand by without reordering events.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib
from collections.abc import Callable

import sqlalchemy as sa
from kafka.errors import KafkaError
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError

from wuye.core import metrics
from wuye.core.db import is_postgres, reader
from wuye.core.events import outbox
from wuye.core.kafka import OutboxProducer, cloudevent_headers
from wuye.core.logs import log

logger = logging.getLogger("wuye.relay")

_SELECT = sa.select(
    outbox.c.id,
    outbox.c.event_id,
    outbox.c.topic,
    outbox.c.key,
    outbox.c.event_type,
    outbox.c.subject,
    outbox.c.district,
    outbox.c.trace_id,
    outbox.c.payload,
    outbox.c.created_at,
).order_by(outbox.c.id)


class Relay:
    def __init__(
        self,
        engine: Engine,
        new_producer: Callable[[], OutboxProducer],
        *,
        source: str,
        lock_name: str,
        batch_size: int,
        poll_seconds: float,
        gauge_seconds: float = 1.0,
        on_published: Callable[[list, float], None] | None = None,
    ) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._new_producer = new_producer
        self._producer: OutboxProducer | None = None
        self._source = source
        self._batch_size = batch_size
        self._select = _SELECT.limit(batch_size)
        self._poll_seconds = poll_seconds
        self._gauge_seconds = gauge_seconds
        # PostgreSQL takes the batch's ids as one array: an IN list of thousands of bound values
        # costs more to compile than the delete itself.
        self._delete = (
            outbox.delete().where(
                outbox.c.id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.BigInteger)))
            )
            if is_postgres(engine)
            else outbox.delete().where(outbox.c.id.in_(sa.bindparam("ids", expanding=True)))
        )
        self._lock_key = zlib.crc32(f"wuye-outbox:{lock_name}".encode()) & 0x7FFFFFFF
        self._leader: sa.Connection | None = None
        self._gauges_at = 0.0
        # Told of each batch Kafka acknowledged (rows, when): a service's own measurements.
        self._on_published = on_published

    def publish_batch(self) -> int:
        """Publish up to one batch; returns how many events Kafka acknowledged."""
        with self._reader.connect() as connection:
            rows = connection.execute(self._select).all()
        if not rows:
            return 0
        self._ready_producer().publish(
            (
                row.topic,
                row.key.encode(),
                row.payload,
                cloudevent_headers(
                    event_id=row.event_id,
                    event_type=row.event_type,
                    source=self._source,
                    subject=row.subject,
                    time=row.created_at,
                    district=row.district,
                    trace_id=row.trace_id,
                ),
            )
            for row in rows
        )
        acknowledged = time.time()
        with self._engine.begin() as connection:
            connection.execute(self._delete, {"ids": [row.id for row in rows]})
        by_topic: dict[str, int] = {}
        for row in rows:
            by_topic[row.topic] = by_topic.get(row.topic, 0) + 1
            metrics.OUTBOX_LATENCY.observe(max(0.0, acknowledged - row.created_at))
        for topic, count in by_topic.items():
            metrics.OUTBOX_PUBLISHED.labels(topic).inc(count)
        if self._on_published is not None:
            self._on_published(rows, acknowledged)
        return len(rows)

    def update_gauges(self) -> None:
        if self._leader is not None:
            # The advisory lock lives as long as this session: make sure it still does.
            self._leader.execute(sa.text("SELECT 1"))
            self._leader.commit()
        with self._engine.connect() as connection:
            count, oldest = connection.execute(
                sa.select(sa.func.count(), sa.func.min(outbox.c.created_at))
            ).one()
        metrics.OUTBOX_BACKLOG.set(count)
        metrics.OUTBOX_OLDEST_AGE.set(time.time() - oldest if oldest else 0.0)

    def _is_leader(self) -> bool:
        if not is_postgres(self._engine):
            return True
        if self._leader is not None:
            return True
        connection = self._engine.connect()
        acquired = connection.execute(
            sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self._lock_key}
        ).scalar()
        connection.commit()
        if acquired:
            self._leader = connection
            log(logger, "relay is the active one", lock=self._lock_key)
            return True
        connection.close()
        return False

    def _drop_leadership(self) -> None:
        if self._leader is not None:
            # The advisory lock belongs to the database session: end the session itself. Merely
            # closing would return it to the pool still holding the lock, and no other relay
            # could take over until this process exits.
            with contextlib.suppress(DBAPIError):
                self._leader.invalidate()
            with contextlib.suppress(DBAPIError):
                self._leader.close()
            self._leader = None

    def run(self, stop: threading.Event) -> None:
        backoff = self._poll_seconds
        while not stop.is_set():
            try:
                if not self._is_leader():
                    # A standby reports nothing waiting: the active relay reports the backlog.
                    metrics.OUTBOX_BACKLOG.set(0)
                    metrics.OUTBOX_OLDEST_AGE.set(0)
                    stop.wait(1.0)
                    continue
                if time.monotonic() - self._gauges_at >= self._gauge_seconds:
                    self.update_gauges()
                    self._gauges_at = time.monotonic()
                published = self.publish_batch()
                backoff = self._poll_seconds
                if published < self._batch_size:
                    stop.wait(self._poll_seconds)
            except (KafkaError, DBAPIError) as e:
                metrics.OUTBOX_PUBLISH_FAILURES.inc()
                log(
                    logger,
                    "publish failed, will retry",
                    logging.WARNING,
                    error=repr(e)[:300],
                    retry_in_s=round(backoff, 2),
                )
                if isinstance(e, DBAPIError):
                    self._drop_leadership()
                else:
                    self._discard_producer()
                stop.wait(backoff)
                backoff = min(backoff * 2 + 0.1, 5.0)
        self.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None
        self._drop_leadership()

    def _ready_producer(self) -> OutboxProducer:
        if self._producer is None:
            self._producer = self._new_producer()
        return self._producer

    def _discard_producer(self) -> None:
        """After a failure start afresh: a new producer re-reads the cluster's metadata and
        opens a new idempotent session, where the old one may stay fenced for good (a broker
        that restarted does not know its producer id)."""
        if self._producer is not None:
            with contextlib.suppress(KafkaError, OSError):
                self._producer.close()
            self._producer = None
