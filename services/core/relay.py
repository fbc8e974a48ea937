"""The outbox relay: publishes committed events to Kafka in commit order, then deletes them.

At-least-once: a crash between Kafka's acknowledgement and the delete publishes a batch again;
consumers drop the repeats (each event carries its version for its key, `ce_sequence`).

One relay per schema publishes at a time: the holder of the outbox lease, a row with the
holder, a fencing token (`epoch`, raised whenever the lease changes hands) and an expiry on the
database's clock. The holder renews the lease before it publishes a batch, and again in the
transaction that deletes the batch, which holds the lease's row until it commits: a relay whose
lease another took cannot delete, stops publishing and stands by. A relay that dies leaves its
lease to expire; one that stops hands it over at once. Every record carries the epoch it was
published under (`wuye_relay_epoch`). A publish is given half the lease, so the lease outlives
the publishes of its holder unless its process is frozen for longer than that.

The relay sleeps while nothing is committed. On PostgreSQL a commit that adds events notifies
(add_events) and the relay listens on a connection of its own; on SQLite the kernel tells it
(inotify) when the database's files are written. Either way it also looks every `poll_seconds`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import socket
import struct
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import psycopg
import sqlalchemy as sa
from confluent_kafka import KafkaException
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError

from wuye.core import metrics
from wuye.core.db import is_postgres, reader
from wuye.core.events import OUTBOX_CHANNEL, outbox, outbox_lease
from wuye.core.kafka import Publisher, cloudevent_headers
from wuye.core.logs import log
from wuye.core.stop import Stop

logger = logging.getLogger("wuye.relay")

EPOCH_HEADER = "wuye_relay_epoch"
_LEASE_ID = 1
# After a failed round the relay waits this long, doubling up to the most.
_RETRY_FIRST_SECONDS = 0.05
_RETRY_MOST_SECONDS = 5.0

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
    outbox.c.version,
).order_by(outbox.c.id)


# Why a wait for commits ended.
Wakeup = Literal["commit", "poll", "stop"]


class LeaseLost(Exception):
    """Another relay holds the outbox lease now: this one must not publish or delete."""


class OutboxLease:
    """The outbox lease's statements, judged on the database's clock so that the relays' own
    clocks do not matter."""

    def __init__(self, engine: Engine, seconds: float) -> None:
        self.seconds = seconds
        self.holder = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        if is_postgres(engine):
            now = sa.cast(sa.func.extract("epoch", sa.func.clock_timestamp()), sa.Float)
            insert = postgresql.insert(outbox_lease)
        else:
            now = sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)", sa.Float)
            insert = sqlite.insert(outbox_lease)
        until = now + sa.bindparam("seconds", type_=sa.Float)
        self._take = (
            insert.values(
                id=_LEASE_ID, holder=sa.bindparam("lease_holder"), epoch=1, expires_at=until
            )
            .on_conflict_do_update(
                index_elements=[outbox_lease.c.id],
                set_={
                    "holder": insert.excluded.holder,
                    "epoch": outbox_lease.c.epoch + 1,
                    "expires_at": insert.excluded.expires_at,
                },
                where=outbox_lease.c.expires_at < now,
            )
            .returning(outbox_lease.c.epoch)
        )
        held = (
            (outbox_lease.c.id == _LEASE_ID)
            & (outbox_lease.c.holder == sa.bindparam("lease_holder"))
            & (outbox_lease.c.epoch == sa.bindparam("lease_epoch"))
        )
        self._renew = outbox_lease.update().where(held).values(expires_at=until)
        self._release = outbox_lease.update().where(held).values(expires_at=0.0)

    def take(self, connection: sa.Connection) -> int | None:
        """The new epoch if the lease was free (expired or released) and is now ours."""
        return connection.execute(
            self._take, {"lease_holder": self.holder, "seconds": self.seconds}
        ).scalar()

    def renew(self, connection: sa.Connection, epoch: int) -> None:
        """Extends the lease held under `epoch`; in a transaction, also holds its row until the
        commit, so nobody takes it meanwhile. Raises LeaseLost if it is someone else's."""
        renewed = connection.execute(
            self._renew,
            {"lease_holder": self.holder, "lease_epoch": epoch, "seconds": self.seconds},
        )
        if renewed.rowcount != 1:
            raise LeaseLost(f"the outbox lease of epoch {epoch} has passed to another relay")

    def release(self, connection: sa.Connection, epoch: int) -> None:
        connection.execute(
            self._release, {"lease_holder": self.holder, "lease_epoch": epoch, "seconds": 0}
        )


class Relay:
    def __init__(
        self,
        engine: Engine,
        new_producer: Callable[[], Publisher],
        *,
        source: str,
        batch_size: int,
        poll_seconds: float,
        lease_seconds: float,
        gauge_seconds: float = 1.0,
        on_published: Callable[[list, float], None] | None = None,
    ) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._new_producer = new_producer
        self._producer: Publisher | None = None
        self._source = source
        self._batch_size = batch_size
        self._select = _SELECT.limit(batch_size)
        self._poll_seconds = poll_seconds
        self._gauge_seconds = gauge_seconds
        self._lease = OutboxLease(engine, lease_seconds)
        self._epoch: int | None = None
        # When the lease held is renewed even with nothing to publish (monotonic clock).
        self._renew_at = 0.0
        self._commits: Notifications | FileWrites = (
            Notifications(engine) if is_postgres(engine) else FileWrites(engine)
        )
        # Why the active relay woke each time it waited: "commit" or "poll".
        self.wakeups: Counter[str] = Counter()
        # PostgreSQL takes the batch's ids as one array: an IN list of thousands of bound values
        # costs more to compile than the delete itself.
        self._delete = (
            outbox.delete().where(
                outbox.c.id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.BigInteger)))
            )
            if is_postgres(engine)
            else outbox.delete().where(outbox.c.id.in_(sa.bindparam("ids", expanding=True)))
        )
        self._gauges_at = 0.0
        # Told of each batch Kafka acknowledged (rows, when): a service's own measurements.
        self._on_published = on_published

    @property
    def epoch(self) -> int | None:
        """The fencing token of the lease this relay holds, if it holds it."""
        return self._epoch

    def hold_lease(self) -> bool:
        """Takes the lease if it is free, or renews ours; whether this relay may publish."""
        with self._reader.connect() as connection:
            if self._epoch is None:
                self._epoch = self._lease.take(connection)
                if self._epoch is not None:
                    log(logger, "relay is the active one", epoch=self._epoch)
            else:
                try:
                    self._lease.renew(connection, self._epoch)
                except LeaseLost as e:
                    self._lose_lease(e)
        self._renewed()
        return self._epoch is not None

    @property
    def _idle_renewal_seconds(self) -> float:
        """An idle holder renews its lease once half of it has passed: the other half is the
        margin for a renewal that is slow to land."""
        return self._lease.seconds / 2

    def _renewed(self) -> None:
        self._renew_at = time.monotonic() + self._idle_renewal_seconds

    def publish_batch(self) -> int:
        """Publish up to one batch if this relay holds the lease (taking it if it is free);
        returns how many events Kafka acknowledged and this relay deleted. If the lease passed
        to another relay meanwhile, the batch stays for the new holder and this relay stands
        by.

        The lease is renewed before each batch; with nothing to publish, only once half of it
        has passed (on SQLite each renewal is a write, which the relay then looks at again)."""
        renew_first = self._epoch is None or time.monotonic() >= self._renew_at
        if renew_first and not self.hold_lease():
            return 0
        try:
            rows = self._look()
            # A batch goes out under a lease renewed just before.
            if not rows or (not renew_first and not self.hold_lease()):
                return 0
            return self._publish(rows, self._epoch)
        except LeaseLost as e:
            self._lose_lease(e)
            return 0

    def _look(self) -> list:
        """The outbox's first batch; reports the backlog."""
        # Listening starts before the outbox is read: a commit after the read wakes the relay.
        self._commits.start()
        rows = self._first_batch()
        if not rows and self._commits.settle():
            rows = self._first_batch()
        if len(rows) < self._batch_size:
            metrics.OUTBOX_BACKLOG.set(len(rows))
            oldest = min((row.created_at for row in rows), default=None)
            metrics.OUTBOX_OLDEST_AGE.set(time.time() - oldest if oldest else 0.0)
        elif time.monotonic() - self._gauges_at >= self._gauge_seconds:
            self.update_gauges()  # more wait than a batch holds: counted, at most this often
            self._gauges_at = time.monotonic()
        return rows

    def _first_batch(self) -> list:
        with self._reader.connect() as connection:
            return connection.execute(self._select).all()

    def _publish(self, rows: list, epoch: int) -> int:
        epoch_header = (EPOCH_HEADER, str(epoch).encode())
        self._ready_producer().publish(
            (
                (
                    row.topic,
                    row.key.encode(),
                    row.payload,
                    [
                        *cloudevent_headers(
                            event_id=row.event_id,
                            event_type=row.event_type,
                            source=self._source,
                            subject=row.subject,
                            time=row.created_at,
                            district=row.district,
                            trace_id=row.trace_id,
                            sequence=row.version,
                        ),
                        epoch_header,
                    ],
                )
                for row in rows
            ),
            timeout=self._lease.seconds / 2,
        )
        acknowledged = time.time()
        with self._engine.begin() as connection:
            self._lease.renew(connection, epoch)
            connection.execute(self._delete, {"ids": [row.id for row in rows]})
        self._renewed()
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
        with self._reader.connect() as connection:
            count, oldest = connection.execute(
                sa.select(sa.func.count(), sa.func.min(outbox.c.created_at))
            ).one()
        metrics.OUTBOX_BACKLOG.set(count)
        metrics.OUTBOX_OLDEST_AGE.set(time.time() - oldest if oldest else 0.0)

    def run(self, stop: Stop) -> None:
        backoff = _RETRY_FIRST_SECONDS
        while not stop.is_set():
            try:
                # The holder of the lease reports the backlog as it looks, before it publishes:
                # also while publishing fails.
                published = self.publish_batch()
                backoff = _RETRY_FIRST_SECONDS
                if self._epoch is None:
                    # A standby reports nothing waiting.
                    metrics.OUTBOX_BACKLOG.set(0)
                    metrics.OUTBOX_OLDEST_AGE.set(0)
                    stop.wait(self._poll_seconds)
                    continue
                if published < self._batch_size:
                    woken = self._commits.wait(
                        stop, min(self._poll_seconds, self._idle_renewal_seconds)
                    )
                    if woken != "stop":
                        self.wakeups[woken] += 1
                        metrics.RELAY_WAKEUPS.labels(woken).inc()
            except (KafkaException, DBAPIError) as e:
                metrics.OUTBOX_PUBLISH_FAILURES.inc()
                log(
                    logger,
                    "publish failed, will retry",
                    logging.WARNING,
                    error=repr(e)[:300],
                    retry_in_s=round(backoff, 2),
                )
                if isinstance(e, KafkaException):
                    self._discard_producer()
                stop.wait(backoff)
                backoff = min(backoff * 2, _RETRY_MOST_SECONDS)
        self.close()

    def close(self) -> None:
        if self._epoch is not None:
            # Hand the lease over now rather than let a standby wait for it to expire.
            with contextlib.suppress(DBAPIError), self._engine.begin() as connection:
                self._lease.release(connection, self._epoch)
        self._stand_by()

    def _lose_lease(self, error: LeaseLost) -> None:
        log(logger, "lost the outbox lease; standing by", logging.WARNING, error=str(error))
        self._stand_by()

    def _stand_by(self) -> None:
        self._epoch = None
        self._discard_producer()
        self._commits.close()

    def _ready_producer(self) -> Publisher:
        if self._producer is None:
            self._producer = self._new_producer()
        return self._producer

    def _discard_producer(self) -> None:
        """After a failure start afresh: a new producer re-reads the cluster's metadata and
        opens a new idempotent session, where the old one may stay fenced for good (a broker
        that restarted does not know its producer id). Nothing it still holds is sent."""
        if self._producer is not None:
            with contextlib.suppress(KafkaException, OSError):
                self._producer.close()
            self._producer = None


def _poll_of(descriptor: int, stop: Stop) -> select.poll:
    """A poll(2) that returns when `descriptor` is readable or the stop is requested."""
    waiting = select.poll()
    waiting.register(descriptor, select.POLLIN)
    waiting.register(stop, select.POLLIN)
    return waiting

class Notifications:
    """PostgreSQL: the notifications add_events raises at commit, on a connection kept for
    them (LISTEN belongs to a session)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: sa.Connection | None = None

    def start(self) -> None:
        if self._connection is not None:
            return
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            channel = connection.execute(sa.select(OUTBOX_CHANNEL)).scalar_one()
            connection.exec_driver_sql(f'LISTEN "{channel}"')
        except BaseException:
            connection.invalidate()
            connection.close()
            raise
        self._connection = connection

    def settle(self) -> bool:
        """A notification arrives after its commit: nothing is ever half-visible."""
        return False

    def wait(self, stop: Stop, timeout: float) -> Wakeup:
        """Until a commit notifies, `stop` is set, or `timeout` seconds have passed: asleep in
        one poll of the connection's socket and the stop request meanwhile."""
        if self._connection is None:
            return "stop" if stop.wait(timeout) else "poll"
        driver = self._connection.connection.driver_connection
        waiting = _poll_of(driver.fileno(), stop)
        deadline = time.monotonic() + timeout
        try:
            while not stop.is_set():
                # Several commits may have notified: one look at the outbox serves them all.
                if list(driver.notifies(timeout=0)):
                    return "commit"
                left = deadline - time.monotonic()
                if left <= 0:
                    return "poll"
                waiting.poll(left * 1000)
        except psycopg.Error as e:
            log(logger, "lost the notifications' connection", logging.WARNING, error=repr(e)[:300])
            self.close()
            return "poll"
        return "stop"

    def close(self) -> None:
        if self._connection is not None:
            # The session must end: returned to the pool it would keep listening.
            with contextlib.suppress(DBAPIError):
                self._connection.invalidate()
            with contextlib.suppress(DBAPIError):
                self._connection.close()
            self._connection = None


# inotify(7): the events the watch asks for, the flags of its descriptor, and the fixed part of
# each event read from it (wd, mask, cookie, name length; the name follows).
_IN_MODIFY = 0x2
_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_Q_OVERFLOW = 0x4000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_INOTIFY_EVENT = struct.Struct("iIII")


def _watch_folder(folder: Path, mask: int) -> int:
    """A non-blocking inotify descriptor reporting the `mask` events of `folder`'s files."""
    libc = ctypes.CDLL(None, use_errno=True)
    descriptor = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if descriptor < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    if libc.inotify_add_watch(descriptor, os.fsencode(folder), mask) < 0:
        error = ctypes.get_errno()
        os.close(descriptor)
        raise OSError(error, f"cannot watch {folder}")
    return descriptor


class FileWrites:
    """SQLite: a commit appends to the database's write-ahead log (or, checkpointed, writes the
    file itself), and the kernel reports each write (inotify) to a descriptor the relay waits
    on: no look at the outbox and no timer while nothing is written. The watch is on the
    database's folder, so a log that is deleted and made again is still seen; writes to other
    files there (other services' databases) are read and passed over.

    A write is seen before its commit is visible: SQLite updates the log's index after the
    log. A look after a write that finds nothing therefore waits for the writer's lock once
    (`settle`) and looks again, so that no commit is left to the safety poll."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        database = Path(engine.url.database or "")
        self._folder = database.parent
        self._names = {database.name.encode(), f"{database.name}-wal".encode()}
        self._descriptor: int | None = None
        self._unwatchable = False
        self._written = False

    def start(self) -> None:
        """Called before each look at the outbox, which sees every commit reported so far: those
        reports are read now. Otherwise the relay's own writes (the lease it renews before the
        look, the rows it deletes after) would wake it again at once, and again."""
        if self._descriptor is not None:
            self._written = self._database_written() or self._written
            return
        if self._unwatchable:
            return
        try:
            self._descriptor = _watch_folder(self._folder, _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO)
            # A commit may have been under way, unseen, as the watch began.
            self._written = True
        except (AttributeError, OSError) as e:  # no inotify here, or no instance left
            log(
                logger,
                "cannot watch the database for commits; the relay polls",
                logging.WARNING,
                error=repr(e)[:300],
            )
            self._unwatchable = True

    def settle(self) -> bool:
        """If a write woke the relay: waits until no transaction is writing (SQLite's write
        lock, taken and given back), after which whatever it committed is visible."""
        if not self._written:
            return False
        self._written = False
        with self._engine.begin():
            pass
        return True

    def wait(self, stop: Stop, timeout: float) -> Wakeup:
        """Until the database's files are written, `stop` is set, or `timeout` seconds have
        passed: asleep in one poll of the watch and the stop request meanwhile."""
        if self._descriptor is None:
            return "stop" if stop.wait(timeout) else "poll"
        waiting = _poll_of(self._descriptor, stop)
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return "poll"
            if waiting.poll(left * 1000) and self._database_written():
                self._written = True
                return "commit"
        return "stop"

    def _database_written(self) -> bool:
        """Reads every event queued; whether one was a write to the database's files."""
        written = False
        while True:
            try:
                chunk = os.read(self._descriptor, 64 * 1024)
            except BlockingIOError:
                return written
            offset = 0
            while offset < len(chunk):
                _, mask, _, length = _INOTIFY_EVENT.unpack_from(chunk, offset)
                start = offset + _INOTIFY_EVENT.size
                name = chunk[start : start + length].rstrip(b"\0")
                written = written or name in self._names or bool(mask & _IN_Q_OVERFLOW)
                offset = start + length

    def close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
        self._written = False
