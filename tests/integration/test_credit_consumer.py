"""The credit service's consumer as `python -m wuye.credit consume events` runs it, against Tansu
and PostgreSQL: the registry's events, produced to the registry's topics with CloudEvents
headers, open the credit file and make records, and a replayed event changes nothing. Also
rules of other services' events plugged in through configuration."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from kafka_support import EventProducer, HandDriven
from test_credit_support import (
    DONGSHENG,
    ENTERPRISE_TOPIC,
    PROJECT_TOPIC,
    credit_servers,
    new_credit_code,
)

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
def producer(credit) -> Iterator[EventProducer]:
    with EventProducer(credit.settings) as producer:
        yield producer


def test_the_registrys_events_through_kafka_open_the_file_once_however_often_delivered(
    credit, producer, wait_until
):
    topics, _ = SPEC.consumers[0].build(credit.settings, credit.engine)
    assert {ENTERPRISE_TOPIC, PROJECT_TOPIC} <= set(topics)
    # The production wiring (topics and handlers) and client settings; the group join itself
    # is the core consumer tests' subject.
    driven = HandDriven.of(SPEC.consumers[0], credit.settings, credit.engine)
    produce = producer.produce
    try:
        code = new_credit_code()
        filing, filing_id = credit.filing_approved(code), str(uuid.uuid4())
        exited, exit_id = credit.exited(code, filed=False), str(uuid.uuid4())
        produce(ENTERPRISE_TOPIC, filing, code, filing_id)
        wait_until(
            lambda: driven.poll() >= 0 and credit.has_file(code),
            timeout=POLL_TIMEOUT_SECONDS,
            what="the credit file opened by FilingApproved",
        )
        opened = credit.admin.report(code)
        where = produce(PROJECT_TOPIC, exited, code, exit_id)
        wait_until(lambda: driven.past(PROJECT_TOPIC, *where), timeout=POLL_TIMEOUT_SECONDS)
        lowered = credit.admin.report(code)
        announced = credit.outbox_count()

        # The same events again (same ce_id), as after a producer retry or a rebalance.
        replays = [
            produce(ENTERPRISE_TOPIC, filing, code, filing_id),
            produce(PROJECT_TOPIC, exited, code, exit_id),
        ]
        for topic, where in zip((ENTERPRISE_TOPIC, PROJECT_TOPIC), replays, strict=True):
            wait_until(lambda t=topic, w=where: driven.past(t, *w), timeout=POLL_TIMEOUT_SECONDS)
        after = credit.admin.report(code)
    finally:
        driven.close()

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
