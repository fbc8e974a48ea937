"""The credit service's consumer as `python -m wuye.credit consume events` runs it, against Tansu
and PostgreSQL: the registry's events, produced to the registry's topics with CloudEvents
headers, open the credit file and make records, and a replayed event changes nothing. Also
rules of other services' events plugged in through configuration."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from kafka import KafkaProducer, TopicPartition
from test_credit_support import (
    CONSUMER_NAME,
    DONGSHENG,
    ENTERPRISE_TOPIC,
    PROJECT_TOPIC,
    credit_servers,
    new_credit_code,
)

from wuye.core.consumer import Consumer
from wuye.core.kafka import cloudevent_headers, ensure_topics, make_consumer, make_producer
from wuye.credit.service import SPEC
from wuye.credit.settings import EventRule, RecordType
from wuye.credit.v1 import credit_service_pb2 as pb
from wuye.registry.v1 import events_pb2 as registry_events

pytestmark = pytest.mark.integration

POLL_TIMEOUT_SECONDS = 30.0


@pytest.fixture
def start_credit(make_settings):
    with credit_servers(make_settings) as start:
        yield start


@pytest.fixture
def credit(start_credit):
    return start_credit()


@pytest.fixture
def producer(credit) -> Iterator[KafkaProducer]:
    producer = make_producer(credit.settings)
    yield producer
    producer.close(timeout=5)


def produce(producer: KafkaProducer, topic: str, message, key: str, event_id: str):
    """One event as the registry's relay publishes it; returns (partition, offset)."""
    headers = cloudevent_headers(
        event_id=event_id,
        event_type=message.DESCRIPTOR.full_name,
        source="/wuye/registry",
        subject=f"enterprises/{key}",
        time=time.time(),
        district=DONGSHENG,
        trace_id="",
    )
    sent = producer.send(
        topic, value=message.SerializeToString(), key=key.encode(), headers=headers
    ).get(timeout=10)
    return sent.partition, sent.offset


def test_the_registrys_events_through_kafka_open_the_file_once_however_often_delivered(
    credit, producer, wait_until
):
    topics, handlers = SPEC.consumers[0].build(credit.settings, credit.engine)
    assert {ENTERPRISE_TOPIC, PROJECT_TOPIC} <= set(topics)
    ensure_topics(credit.settings, topics, partitions=1)
    # The production wiring (topics and handlers) and client settings, in a group of this
    # test's own; partitions assigned by hand, since a first group join on Tansu takes from 3 to
    # 25 s (the join itself is the core consumer tests' subject).
    kafka = make_consumer(credit.settings, f"wuye.credit.test.{uuid.uuid4().hex[:8]}", topics)
    kafka.unsubscribe()
    kafka.assign(
        [TopicPartition(t, p) for t in topics for p in sorted(kafka.partitions_for_topic(t) or ())]
    )
    dead_letters = make_producer(credit.settings)
    consumer = Consumer(
        credit.engine,
        kafka,
        dead_letters,
        name=CONSUMER_NAME,
        handlers=handlers,
        max_attempts=credit.settings.consumer_max_attempts,
        inbox_retention_days=credit.settings.inbox_retention_days,
    )

    def consumed(topic: str, partition: int, offset: int) -> bool:
        """Poll once; whether the consumer has gone past (topic, partition, offset)."""
        consumer.poll_once(timeout_ms=200)
        tp = TopicPartition(topic, partition)
        return tp in kafka.assignment() and kafka.position(tp) > offset

    try:
        code = new_credit_code()
        filing, filing_id = credit.filing_approved(code), str(uuid.uuid4())
        exited, exit_id = credit.exited(code, filed=False), str(uuid.uuid4())
        produce(producer, ENTERPRISE_TOPIC, filing, code, filing_id)
        wait_until(
            lambda: consumer.poll_once(timeout_ms=200) >= 0 and credit.has_file(code),
            timeout=POLL_TIMEOUT_SECONDS,
            what="the credit file opened by FilingApproved",
        )
        opened = credit.admin.report(code)
        where = produce(producer, PROJECT_TOPIC, exited, code, exit_id)
        wait_until(lambda: consumed(PROJECT_TOPIC, *where), timeout=POLL_TIMEOUT_SECONDS)
        lowered = credit.admin.report(code)
        announced = credit.outbox_count()

        # The same events again (same ce_id), as after a producer retry or a rebalance.
        replays = [
            produce(producer, ENTERPRISE_TOPIC, filing, code, filing_id),
            produce(producer, PROJECT_TOPIC, exited, code, exit_id),
        ]
        for topic, where in zip((ENTERPRISE_TOPIC, PROJECT_TOPIC), replays, strict=True):
            wait_until(lambda t=topic, w=where: consumed(t, *w), timeout=POLL_TIMEOUT_SECONDS)
        after = credit.admin.report(code)
    finally:
        kafka.close()
        dead_letters.close(timeout=5)

    assert (opened.filed, opened.grade, opened.score) == (True, pb.GRADE_A, "70.0")
    assert (lowered.grade, lowered.score) == (pb.GRADE_B, "60.0")
    assert [r.source_event_id for r in lowered.records] == [exit_id]
    after.ClearField("as_of")
    lowered.ClearField("as_of")
    assert after == lowered
    assert credit.outbox_count() == announced
    assert len(credit.records_of(code)) == 1


def test_a_rule_for_another_event_plugs_in_through_configuration(start_credit):
    """A city adds a rule (an event, a condition, a record type) without code."""
    credit = start_credit(
        record_types={
            "CLEAN_HANDOVER": RecordType(direction="GOOD", points=Decimal("2.5"), validity_days=30)
        },
        event_rules=(
            EventRule(
                event="wuye.registry.v1.EnterpriseAssigned",
                topic=PROJECT_TOPIC,
                record_type="CLEAN_HANDOVER",
                when_below={"handover_items_failed": 1},
            ),
        ),
    )
    code = credit.open_file()

    def assigned(failed: int) -> registry_events.EnterpriseAssigned:
        return registry_events.EnterpriseAssigned(
            project_id=f"{DONGSHENG}-{uuid.uuid4().hex[:12]}",
            district_code=DONGSHENG,
            credit_code=code,
            handover_items=5,
            handover_items_failed=failed,
        )

    credit.deliver(assigned(0), topic=PROJECT_TOPIC)
    credit.deliver(assigned(2), topic=PROJECT_TOPIC)
    # The default rules are replaced, not added to.
    credit.deliver(credit.exited(code, filed=False), topic=PROJECT_TOPIC)

    report = credit.admin.report(code)
    assert [(r.record_type, r.direction, r.points) for r in report.records] == [
        ("CLEAN_HANDOVER", pb.DIRECTION_GOOD, "2.5")
    ]
    assert (report.score, report.grade) == ("72.5", pb.GRADE_A)
    topics, _ = SPEC.consumers[0].build(credit.settings, credit.engine)
    assert PROJECT_TOPIC in topics
