"""Kafka clients (librdkafka, through confluent-kafka) configured alike everywhere, and the
CloudEvents binary-mode headers every record carries.

librdkafka rather than a pure-Python client: its threads wait in C, so an idle consumer costs
about a tenth of what kafka-python's polling loop did (measured by make bench's idle suite), and
a record with CloudEvents headers costs the relay about a fifth of the CPU."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from wuye.core.settings import Settings

CONTENT_TYPE = b"application/protobuf"
# Bounded waits: a client that cannot reach the broker fails its request rather than hang.
_CONNECT_TIMEOUT_MS = 5_000
_RECONNECT_BACKOFF_MAX_MS = 2_000
_ADMIN_TIMEOUT_SECONDS = 15.0
# librdkafka's log level (syslog's numbers): warnings and worse, so a broker that went away is
# reported once per connection rather than at every reconnection attempt.
_LOG_LEVEL = 4


class PublishFailed(KafkaException):
    """Some records of a batch were not acknowledged; the relay keeps the batch and retries."""


class Publisher:
    """Publishes batches of records: they go out together and are all acknowledged, or the
    batch fails as a whole. The relay's producer, and the consumers' for dead letters; `role`
    names which in the broker's view (client.id)."""

    def __init__(self, settings: Settings, role: str = "relay", **overrides: object) -> None:
        config: dict[str, object] = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "client.id": f"wuye-{settings.service}-{role}",
            "log_level": _LOG_LEVEL,
            "acks": "all",
            # A retried request is not written twice, nor out of order.
            "enable.idempotence": True,
            "linger.ms": 2,
            "batch.size": 1024 * 1024,
            "queue.buffering.max.messages": 200_000,
            # Bounded: an unreachable broker fails the batch, which stays in the outbox.
            "message.timeout.ms": 10_000,
            "socket.connection.setup.timeout.ms": _CONNECT_TIMEOUT_MS,
            "reconnect.backoff.max.ms": _RECONNECT_BACKOFF_MAX_MS,
        }
        config.update(overrides)
        self._producer = Producer(config)

    def publish(
        self,
        records: Iterable[tuple[str, bytes, bytes, list[tuple[str, bytes]]]],
        timeout: float = 15.0,
    ) -> None:
        """Sends `records` and waits up to `timeout` seconds for all to be acknowledged."""
        failures: list[object] = []

        def delivered(error, _message) -> None:
            if error is not None:
                failures.append(error)

        for topic, key, value, headers in records:
            while True:
                try:
                    self._producer.produce(
                        topic, value=value, key=key, headers=headers, on_delivery=delivered
                    )
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    self._producer.poll(0.05)
        unsent = self._producer.flush(timeout=timeout)
        if unsent or failures:
            raise PublishFailed(
                f"{unsent} records unsent, {len(failures)} failed"
                + (f": {failures[0]}" if failures else "")
            )

    def close(self) -> None:
        # Nothing unacknowledged may linger to be sent later from a discarded producer.
        self._producer.purge()
        self._producer.flush(timeout=0)


def consumer_config(settings: Settings, group: str) -> dict[str, object]:
    """A member of consumer group `group` that commits offsets by hand (the core consumer
    commits after each handled batch)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": f"wuye-{settings.service}-{group}",
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "log_level": _LOG_LEVEL,
        # A new member is assigned its partitions after half the session (Tansu waits that
        # long for others to join): 6 s keeps a restart's pause at 3 s. Every heartbeat costs
        # the broker a write of the group's state, so no more often than the session allows.
        "session.timeout.ms": 6_000,
        "heartbeat.interval.ms": 2_000,
        # A topic created after the consumer subscribed (its producer's relay started later) is
        # assigned at the next metadata refresh: within a minute, not librdkafka's 5 minutes.
        # Not more often: each refresh lists every topic, which costs an idle broker more than
        # all the fetches and heartbeats (`make run` creates the topics before anything starts).
        "topic.metadata.refresh.interval.ms": 60_000,
        "fetch.wait.max.ms": settings.kafka_fetch_wait_ms,
        "socket.connection.setup.timeout.ms": _CONNECT_TIMEOUT_MS,
        "reconnect.backoff.max.ms": _RECONNECT_BACKOFF_MAX_MS,
    }


def make_consumer(settings: Settings, group: str, topics: Sequence[str]) -> Consumer:
    consumer = Consumer(consumer_config(settings, group))
    consumer.subscribe(list(topics))
    return consumer


def dead_letter_topic(topic: str) -> str:
    """Where consumers of `topic` send the events they cannot handle."""
    return f"{topic}.dlq"


def ensure_topics(
    settings: Settings,
    topics: Sequence[str],
    partitions: int | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Creates the topics that are missing, each with its dead-letter topic, with `partitions`
    (default: the settings'), the settings' replication factor and their `configs` (e.g.
    retention.ms); topics that exist are left as their operators set them."""
    admin = AdminClient(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "client.id": f"wuye-{settings.service}-admin",
            "log_level": _LOG_LEVEL,
            "socket.connection.setup.timeout.ms": _CONNECT_TIMEOUT_MS,
        }
    )
    existing = admin.list_topics(timeout=_ADMIN_TIMEOUT_SECONDS).topics
    wanted = [name for topic in topics for name in (topic, dead_letter_topic(topic))]
    missing = [t for t in wanted if t not in existing]
    if not missing:
        return
    created = admin.create_topics(
        [
            NewTopic(
                t,
                num_partitions=partitions or settings.kafka_topic_partitions,
                replication_factor=settings.kafka_replication_factor,
                config=dict((configs or {}).get(t, {})),
            )
            for t in missing
        ],
        request_timeout=_ADMIN_TIMEOUT_SECONDS,
    )
    for future in created.values():
        try:
            future.result(timeout=_ADMIN_TIMEOUT_SECONDS)
        except KafkaException as e:
            # Another process created it meanwhile.
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def cloudevent_headers(
    *,
    event_id: str,
    event_type: str,
    source: str,
    subject: str,
    time: float,
    district: str,
    trace_id: str,
    sequence: int | None = None,
) -> list[tuple[str, bytes]]:
    """The CloudEvents binary-mode headers. `sequence` (the event's version for its key) goes
    into the sequence extension, zero-padded as that extension wants a string that sorts."""
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_type", event_type.encode()),
        ("ce_source", source.encode()),
        ("ce_subject", subject.encode()),
        ("ce_time", dt.datetime.fromtimestamp(time, dt.UTC).isoformat().encode()),
        ("ce_district", district.encode()),
        ("content-type", CONTENT_TYPE),
    ]
    if trace_id:
        headers.append(("ce_traceid", trace_id.encode()))
    if sequence is not None:
        headers.append(("ce_sequence", f"{sequence:020d}".encode()))
    return headers


def header_map(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in headers or ()}
