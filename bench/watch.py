"""Reading a topic as the benches' clock sees it: each record the moment librdkafka hands it
over, in a thread, from the topic's current end (or its beginning)."""

from __future__ import annotations

import threading
import time
import uuid

from confluent_kafka import Consumer, Message, TopicPartition


class TopicWatch:
    """Subclasses say what a record means in `seen`."""

    def __init__(self, bootstrap: str, topic: str, *, from_beginning: bool = False) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex}",  # never committed: assigned by hand
                "enable.auto.commit": False,
                # Hand over each fetch at once rather than waiting to fill it.
                "fetch.wait.max.ms": 5,
            }
        )
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assignment = []
        for partition in partitions:
            start = 0
            if not from_beginning:
                _low, start = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
            assignment.append(TopicPartition(topic, partition, start))
        self._consumer.assign(assignment)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"watch-{topic}", daemon=True)

    def start(self) -> TopicWatch:
        self._thread.start()
        return self

    def seen(self, message: Message, arrived_at: float) -> None:
        raise NotImplementedError

    def _read(self) -> None:
        while not self._stop.is_set():
            # poll, not consume: consume waits out its timeout to fill a batch.
            message = self._consumer.poll(0.05)
            if message is None or message.error():
                continue
            self.seen(message, time.time())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()
