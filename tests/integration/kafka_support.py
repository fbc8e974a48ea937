"""Events through Kafka in a test: a service's production consumer driven by hand, and events
produced as another service's relay publishes them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import KafkaException, Producer, TopicPartition
from sqlalchemy import Engine

from wuye.core.consumer import Consumer, Handler
from wuye.core.kafka import Publisher, cloudevent_headers, consumer_config, ensure_topics
from wuye.core.service import ConsumerSpec
from wuye.core.settings import Settings

DONGSHENG = "150602"
POLL_MS = 200
KAFKA_TIMEOUT_SECONDS = 10.0


class HandDriven:
    """The production Consumer on `topics` from their beginning, in a group of the test's own,
    its partitions assigned by hand (a first group join on Tansu takes half the session): the
    test polls it when it wants the next events handled."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        name: str,
        topics: Sequence[str],
        handlers: dict[str, Handler],
    ) -> None:
        ensure_topics(settings, topics, partitions=1)
        group = f"wuye.{settings.service}.test.{uuid.uuid4().hex[:8]}"
        self.kafka = KafkaConsumer(consumer_config(settings, group))
        assigned = []
        for topic in topics:
            found = self.kafka.list_topics(topic, timeout=KAFKA_TIMEOUT_SECONDS).topics[topic]
            assigned += [TopicPartition(topic, p) for p in sorted(found.partitions)]
        self.kafka.assign(assigned)
        self.consumer = Consumer(
            engine,
            self.kafka,
            Publisher(settings, role="dead-letters"),
            name=name,
            handlers=handlers,
            max_attempts=settings.consumer_max_attempts,
            inbox_retention_days=settings.inbox_retention_days,
            inbox_purge_seconds=settings.inbox_purge_seconds,
        )

    @classmethod
    def of(cls, spec: ConsumerSpec, settings: Settings, engine: Engine) -> HandDriven:
        """The service's declared consumer `spec`: its topics and handlers as deployed."""
        topics, handlers = spec.build(settings, engine)
        return cls(settings, engine, spec.name, topics, handlers)

    def poll(self) -> int:
        """Handles what one poll brings; returns how many events."""
        return self.consumer.poll_once(timeout_ms=POLL_MS)

    def past(self, topic: str, partition: int, offset: int) -> bool:
        """Polls once; whether the consumer has gone past (topic, partition, offset)."""
        self.poll()
        [position] = self.kafka.position([TopicPartition(topic, partition)])
        return position.offset > offset

    def at_end(self) -> bool:
        """Polls once; whether the consumer has read every partition to its end."""
        self.poll()
        positions = self.kafka.position(self.kafka.assignment())
        return all(
            p.offset >= self.kafka.get_watermark_offsets(p, timeout=KAFKA_TIMEOUT_SECONDS)[1]
            for p in positions
        )

    def close(self) -> None:
        self.kafka.close()

    def __enter__(self) -> HandDriven:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


class EventProducer:
    """Publishes events as a relay does, with CloudEvents headers, each acknowledged before
    `produce` returns its (partition, offset)."""

    def __init__(self, settings: Settings) -> None:
        self._producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 0})

    def produce(
        self,
        topic: str,
        message,
        key: str,
        event_id: str | None = None,
        *,
        district: str = DONGSHENG,
    ) -> tuple[int, int]:
        headers = cloudevent_headers(
            event_id=event_id or str(uuid.uuid4()),
            event_type=message.DESCRIPTOR.full_name,
            source=f"/wuye/{topic.split('.')[1]}",
            subject=key,
            time=time.time(),
            district=district,
            trace_id="",
        )
        return self.send(topic, message.SerializeToString(), key, headers)

    def send(
        self, topic: str, value: bytes, key: str, headers: list[tuple[str, bytes]]
    ) -> tuple[int, int]:
        """One record as given; returns where it was written."""
        reports = []
        self._producer.produce(
            topic,
            value=value,
            key=key.encode(),
            headers=headers,
            on_delivery=lambda error, record: reports.append((error, record)),
        )
        self._producer.flush(KAFKA_TIMEOUT_SECONDS)
        [(error, record)] = reports
        if error is not None:
            raise KafkaException(error)
        return record.partition(), record.offset()

    def close(self) -> None:
        self._producer.flush(KAFKA_TIMEOUT_SECONDS)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
