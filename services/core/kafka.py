"""Kafka clients (kafka-python) configured alike everywhere, and the CloudEvents binary-mode
headers every record carries."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from confluent_kafka import Producer as ConfluentProducer
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from wuye.core.settings import Settings

CONTENT_TYPE = b"application/protobuf"


def make_producer(settings: Settings, **overrides) -> KafkaProducer:
    config = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "client_id": f"wuye-{settings.service}",
        "acks": "all",
        "linger_ms": 2,
        "batch_size": 512 * 1024,
        "max_request_size": 8 * 1024 * 1024,
        # No buffer_memory: kafka-python 3 dropped that option and refuses unknown configs.
        # Bounded waits: the relay keeps events in the outbox and retries; it must not hang.
        "max_block_ms": 5000,
        "request_timeout_ms": 10000,
        "delivery_timeout_ms": 30000,
        "retry_backoff_ms": 200,
        "reconnect_backoff_max_ms": 2000,
    }
    config.update(overrides)
    # Building a producer waits for a broker this long (30 s by default): no longer than a send.
    config.setdefault("bootstrap_timeout_ms", config["max_block_ms"])
    return KafkaProducer(**config)


class PublishFailed(KafkaError):
    """Some records of a batch were not acknowledged; the relay keeps the batch and retries."""


class OutboxProducer:
    """The relay's producer: librdkafka (confluent-kafka), which costs about a fifth of
    kafka-python's CPU per record with CloudEvents headers (measured by make bench); the relay
    is bound by exactly that cost. Records of a batch go out together and are all acknowledged,
    or the batch fails as a whole."""

    def __init__(self, settings: Settings, **overrides: object) -> None:
        config: dict[str, object] = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "client.id": f"wuye-{settings.service}-relay",
            "acks": "all",
            # A retried request is not written twice, nor out of order.
            "enable.idempotence": True,
            "linger.ms": 2,
            "batch.size": 1024 * 1024,
            "queue.buffering.max.messages": 200_000,
            # Bounded: an unreachable broker fails the batch, which stays in the outbox.
            "message.timeout.ms": 10_000,
            "socket.connection.setup.timeout.ms": 5_000,
            "reconnect.backoff.max.ms": 2_000,
        }
        config.update(overrides)
        self._producer = ConfluentProducer(config)

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


def make_consumer(
    settings: Settings, group: str, topics: Sequence[str], **overrides
) -> KafkaConsumer:
    config = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "client_id": f"wuye-{settings.service}-{group}",
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # Short sessions: with longer ones the first group join takes ~25 s on Tansu.
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
        "max_poll_records": 500,
        "reconnect_backoff_max_ms": 2000,
        # A topic created after the consumer subscribed (its producer's relay started later) is
        # assigned at the next metadata refresh: within 10 s, not kafka-python's 5 minutes.
        "metadata_max_age_ms": 10_000,
    }
    config.update(overrides)
    consumer = KafkaConsumer(**config)
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
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap.split(","), client_id="wuye-admin"
    )
    try:
        existing = set(admin.list_topics())
        wanted = [name for topic in topics for name in (topic, dead_letter_topic(topic))]
        missing = [t for t in wanted if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    [
                        NewTopic(
                            t,
                            num_partitions=partitions or settings.kafka_topic_partitions,
                            replication_factor=settings.kafka_replication_factor,
                            topic_configs=dict((configs or {}).get(t, {})),
                        )
                        for t in missing
                    ]
                )
    finally:
        admin.close()


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
