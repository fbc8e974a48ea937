"""The event consumer: poll, handle each event in its own transaction, commit the offset after.

Each handler's transaction also records the event id in the inbox, so a redelivered event
changes nothing. An event that carries its version for its key (`ce_sequence`) is handled only if
that version is above the highest this consumer has handled for the key: a repeat, or an older
event replayed after a newer one (even one older than the inbox remembers), is skipped as stale.
A database outage is waited out (the event is retried from its offset); an
event that keeps failing, or cannot be decoded, goes to `<topic>.dlq` with the error, and the
consumer moves on.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka import Message as Record
from google.protobuf.message import DecodeError, Message
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from wuye.core import metrics
from wuye.core.db import is_postgres
from wuye.core.errors import DomainError
from wuye.core.events import inbox, inbox_versions
from wuye.core.kafka import Publisher, dead_letter_topic, header_map
from wuye.core.logs import log

logger = logging.getLogger("wuye.consumer")
# Records handled between two offset commits at most.
MAX_POLL_RECORDS = 500
LAG_EVERY_SECONDS = 10.0


@dataclass(frozen=True)
class EventMeta:
    event_id: str
    event_type: str
    source: str
    subject: str
    district: str
    time: str
    topic: str
    partition: int
    offset: int
    # The event's version for its (topic, key); None from producers that do not number events.
    version: int | None = None


@dataclass(frozen=True)
class Handler:
    message_type: type[Message]
    handle: Callable[[Connection, Message, EventMeta], None]


def log_refused(meta: EventMeta, refused: DomainError, outcome: str) -> None:
    """An event the rules refuse to act on: handled (retrying changes nothing), stores nothing,
    and says why. `outcome` is what did not happen ("decision opens no tender")."""
    log(
        logger,
        outcome,
        logging.WARNING,
        event_id=meta.event_id,
        event_type=meta.event_type,
        reason=refused.reason,
        message=refused.message,
    )


def message_class(full_name: str) -> type[Message] | None:
    """The generated class of another service's event type, if that service's protos are
    installed (wuye.<service>.v1.<Event> lives in wuye.<service>.v1.events_pb2): rules naming
    events of services not yet deployed wait instead of failing."""
    package, _, name = full_name.rpartition(".")
    try:
        module = importlib.import_module(f"{package}.events_pb2")
    except ImportError:
        return None
    return getattr(module, name, None)


def configured_handlers(
    rules: Iterable[tuple[str, Callable[[Connection, Message, EventMeta], None]]],
) -> dict[str, Handler]:
    """Handlers for other services' events named in configuration, by event type. An event
    whose protos are not installed yet is left out with a warning, and takes effect once they
    are."""
    found: dict[str, Handler] = {}
    for event_type, handle in rules:
        message_type = message_class(event_type)
        if message_type is None:
            log(
                logger,
                "event type not available yet; its rule waits",
                logging.WARNING,
                event_type=event_type,
            )
            continue
        found[event_type] = Handler(message_type, handle)
    return found


def _is_transient(error: Exception) -> bool:
    return isinstance(error, DBAPIError) and (
        error.connection_invalidated
        or isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError)
    )


class Consumer:
    def __init__(
        self,
        engine: Engine,
        kafka: KafkaConsumer,
        dead_letters: Publisher,
        *,
        name: str,
        handlers: dict[str, Handler],
        max_attempts: int,
        inbox_retention_days: int,
        inbox_purge_seconds: float,
    ) -> None:
        self._engine = engine
        self._kafka = kafka
        self._dead_letters = dead_letters
        self._name = name
        self._handlers = handlers
        self._max_attempts = max_attempts
        self._retention_seconds = inbox_retention_days * 86400
        self._purge_seconds = inbox_purge_seconds
        self._failures: dict[tuple[str, int, int], int] = {}
        self._lag_due = self._purge_due = 0.0
        insert = (postgresql.insert if is_postgres(engine) else sqlite.insert)(inbox_versions)
        self._raise_mark = (
            insert.values(
                consumer=sa.bindparam("consumer"),
                topic=sa.bindparam("topic"),
                key=sa.bindparam("key"),
                version=sa.bindparam("version"),
            )
            .on_conflict_do_update(
                index_elements=[
                    inbox_versions.c.consumer,
                    inbox_versions.c.topic,
                    inbox_versions.c.key,
                ],
                set_={"version": insert.excluded.version},
                where=inbox_versions.c.version < insert.excluded.version,
            )
            .returning(inbox_versions.c.version)
        )

    # -- one event

    def _meta(self, record: Record) -> EventMeta:
        headers = header_map(record.headers())
        position = f"{record.topic()}/{record.partition()}/{record.offset()}"
        event_id = headers.get("ce_id") or position
        return EventMeta(
            event_id=event_id,
            event_type=headers.get("ce_type", ""),
            source=headers.get("ce_source", ""),
            subject=headers.get("ce_subject", ""),
            district=headers.get("ce_district", ""),
            time=headers.get("ce_time", ""),
            topic=record.topic(),
            partition=record.partition(),
            offset=record.offset(),
            version=_version(headers.get("ce_sequence")),
        )

    def process(self, record: Record) -> str:
        """Handle one record; returns the outcome. Raises only on a transient failure."""
        meta = self._meta(record)
        handler = self._handlers.get(meta.event_type)
        if handler is None:
            return "ignored"
        try:
            message = handler.message_type.FromString(record.value() or b"")
        except DecodeError as e:
            self._dead_letter(record, e, attempts=1)
            return "dead_lettered"
        position = (record.topic(), record.partition(), record.offset())
        try:
            with self._engine.begin() as connection:
                if not self._is_newer(connection, record, meta):
                    log(
                        logger,
                        "stale event skipped",
                        logging.DEBUG,
                        topic=record.topic(),
                        offset=record.offset(),
                        version=meta.version,
                    )
                    return "stale"
                connection.execute(
                    inbox.insert().values(
                        consumer=self._name, event_id=meta.event_id, processed_at=time.time()
                    )
                )
                handler.handle(connection, message, meta)
        except IntegrityError as e:
            if self._already_processed(meta.event_id):
                return "duplicate"
            return self._failed(record, position, e)
        except Exception as e:
            if _is_transient(e):
                raise
            return self._failed(record, position, e)
        self._failures.pop(position, None)
        return "handled"

    def _is_newer(self, connection: Connection, record: Record, meta: EventMeta) -> bool:
        """Raises this consumer's high-water mark for the record's key to the event's version;
        whether it was below (the event is news). Unnumbered events always are."""
        if meta.version is None or record.key() is None:
            return True
        key = record.key().decode("utf-8", "replace")
        raised = connection.execute(
            self._raise_mark,
            {"consumer": self._name, "topic": record.topic(), "key": key, "version": meta.version},
        ).first()
        return raised is not None

    def _already_processed(self, event_id: str) -> bool:
        with self._engine.connect() as connection:
            return (
                connection.execute(
                    sa.select(inbox.c.event_id).where(
                        (inbox.c.consumer == self._name) & (inbox.c.event_id == event_id)
                    )
                ).first()
                is not None
            )

    def _failed(self, record: Record, position, error: Exception) -> str:
        attempts = self._failures.get(position, 0) + 1
        if attempts < self._max_attempts:
            self._failures[position] = attempts
            log(
                logger,
                "handler failed, will retry",
                logging.WARNING,
                topic=record.topic(),
                offset=record.offset(),
                attempt=attempts,
                error=repr(error)[:300],
            )
            raise _RetryLater(min(0.05 * 2**attempts, 2.0))
        self._failures.pop(position, None)
        self._dead_letter(record, error, attempts)
        return "dead_lettered"

    def _dead_letter(self, record: Record, error: Exception, attempts: int) -> None:
        headers = [
            *(record.headers() or ()),
            ("wuye_error", repr(error)[:1000].encode()),
            ("wuye_source_topic", record.topic().encode()),
            ("wuye_source_partition", str(record.partition()).encode()),
            ("wuye_source_offset", str(record.offset()).encode()),
            ("wuye_attempts", str(attempts).encode()),
            ("wuye_consumer", self._name.encode()),
        ]
        self._dead_letters.publish(
            [(dead_letter_topic(record.topic()), record.key(), record.value(), headers)], timeout=30
        )
        log(
            logger,
            "event dead-lettered",
            logging.ERROR,
            topic=record.topic(),
            offset=record.offset(),
            error=repr(error)[:300],
        )

    # -- the loop

    def poll_once(self, timeout_ms: int = 500, stop: threading.Event | None = None) -> int:
        """Handle what one poll returns and commit it; returns the records handled. A retry's
        pause ends early when `stop` is set."""
        first = self._kafka.poll(timeout_ms / 1000)
        if first is None:
            return 0
        # The rest of what was fetched, without waiting for more.
        records = [first, *self._kafka.consume(MAX_POLL_RECORDS - 1, 0)]
        done = 0
        offsets: dict[tuple[str, int], int] = {}
        held: set[tuple[str, int]] = set()
        retry_in = 0.0
        for record in records:
            if record.error() is not None:
                self._report(record.error())
                continue
            partition = (record.topic(), record.partition())
            if partition in held:
                continue
            try:
                outcome = self.process(record)
            except (_RetryLater, DBAPIError, KafkaException) as e:
                # Come back to this record: later ones of the partition must wait for it.
                self._kafka.seek(TopicPartition(*partition, record.offset()))
                held.add(partition)
                retry_in = max(retry_in, e.delay if isinstance(e, _RetryLater) else 1.0)
                if not isinstance(e, _RetryLater):
                    log(
                        logger,
                        "database or broker unavailable, will retry",
                        logging.WARNING,
                        error=repr(e)[:300],
                    )
                continue
            metrics.CONSUMED.labels(record.topic(), outcome).inc()
            offsets[partition] = record.offset() + 1
            done += 1
        if offsets:
            self._kafka.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=False,
            )
        if retry_in:
            (stop or threading.Event()).wait(retry_in)
        return done

    @staticmethod
    def _report(error) -> None:
        """A fetch's error: the client retries those itself (a topic not created yet, a broker
        away); fatal ones stop the loop."""
        if error.fatal():
            raise KafkaException(error)
        log(logger, "fetch failed, will retry", logging.WARNING, error=str(error)[:300])

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._lag_due:
            self._lag_due = now + LAG_EVERY_SECONDS
            self._report_lag()
        if now >= self._purge_due:
            self._purge_due = now + self._purge_seconds
            with self._engine.begin() as connection:
                connection.execute(
                    inbox.delete().where(
                        (inbox.c.consumer == self._name)
                        & (inbox.c.processed_at < time.time() - self._retention_seconds)
                    )
                )

    def _report_lag(self) -> None:
        # Only the partitions assigned now: those lost in a rebalance are another member's.
        metrics.CONSUMER_LAG.clear()
        for partition in self._kafka.position(self._kafka.assignment()):
            # The high watermark of the last fetch: no request to the broker.
            _low, end = self._kafka.get_watermark_offsets(partition, cached=True)
            if end >= 0 and partition.offset >= 0:
                lag = max(0, end - partition.offset)
                metrics.CONSUMER_LAG.labels(partition.topic, str(partition.partition)).set(lag)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once(stop=stop)
                self._housekeeping()
            except (KafkaException, DBAPIError) as e:
                log(logger, "consumer loop error, will retry", logging.WARNING, error=repr(e)[:300])
                stop.wait(1.0)
        self._kafka.close()
        self._dead_letters.close()


def _version(header: str | None) -> int | None:
    """The version in a `ce_sequence` header; None where there is none, or it is no number."""
    try:
        return int(header) if header else None
    except ValueError:
        return None


class _RetryLater(Exception):
    def __init__(self, delay: float) -> None:
        super().__init__(f"retry in {delay:.2f}s")
        self.delay = delay
