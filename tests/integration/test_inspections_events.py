"""Inspections among the other services, against real PostgreSQL and Tansu: the registry's and
credit's events reach the lists through the consumer `python -m wuye.inspections consume events`
runs; a failed check and an overdue rectification become bad records in the credit service
(which keeps its own database); an event of another service triggers an inspection by a
configured rule."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from kafka_support import EventProducer, HandDriven
from sqlalchemy.engine import make_url
from test_inspections_support import (
    CONSUMER_NAME,
    DONGSHENG,
    GRADE_TOPIC,
    PRACTITIONER_TOPIC,
    PROJECT_TOPIC,
    InspectionsServer,
    enterprise_assigned,
    grade_changed,
    inspections_servers,
    new_credit_code,
    project_registered,
    scores,
    timestamp,
)

from wuye.core.consumer import EventMeta, message_class
from wuye.core.db import create_service_engine
from wuye.core.events import inbox
from wuye.core.ids import new_id
from wuye.core.kafka import ensure_topics
from wuye.core.migrate import upgrade
from wuye.core.service import build_relay
from wuye.credit import store as credit_store
from wuye.credit.commands import Credit
from wuye.credit.service import SPEC as CREDIT_SPEC
from wuye.credit.settings import CreditSettings
from wuye.credit.v1 import credit_service_pb2 as credit_pb
from wuye.inspections import store
from wuye.inspections.commands import CHECK_TOPIC, RECTIFICATION_TOPIC, Inspections
from wuye.inspections.service import SPEC
from wuye.inspections.settings import TriggerRule
from wuye.inspections.v1 import events_pb2 as ev
from wuye.iot.v1 import events_pb2 as iot_events
from wuye.iot.v1 import intake_service_pb2 as iot_pb
from wuye.registry.v1 import events_pb2 as registry_events

pytestmark = pytest.mark.integration

POLL_TIMEOUT_SECONDS = 30.0
ALARM_TOPIC = "wuye.iot.alarm.v1"
TODAY = dt.datetime(2026, 3, 10, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def start_inspections(make_settings):
    with inspections_servers(make_settings) as start:
        yield start


@pytest.fixture
def inspections(start_inspections) -> InspectionsServer:
    server = start_inspections()
    server.clock.set(TODAY)
    return server


@pytest.fixture
def credit_schema(pg_url: str) -> Iterator[str]:
    """A second schema of this test's own: credit keeps its own database."""
    name = f"t_{uuid.uuid4().hex[:16]}_credit"
    yield name
    url = make_url(pg_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL lock_timeout = '15s'")
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        engine.dispose()


@pytest.fixture
def credit(make_settings, credit_schema) -> Iterator[Credit]:
    settings = make_settings(CreditSettings, database_schema=credit_schema)
    upgrade(settings, CREDIT_SPEC.migrations_dir)
    engine = create_service_engine(settings)
    yield Credit(engine, settings)
    engine.dispose()


def listed(inspections: InspectionsServer) -> dict[str, object]:
    with inspections.engine.connect() as connection:
        since = inspections.clock() - dt.timedelta(days=365)
        return {e.project_id: e for e in store.entities(connection, [DONGSHENG], since)}


# ---------------------------------------------------------------- the read model, over Kafka


def test_the_registrys_and_credits_events_through_kafka_fill_the_lists(inspections, wait_until):
    topics, handlers = SPEC.consumers[0].build(inspections.settings, inspections.engine)
    assert {PROJECT_TOPIC, GRADE_TOPIC} <= set(topics)
    driven = HandDriven(inspections.settings, inspections.engine, CONSUMER_NAME, topics, handlers)
    producer = EventProducer(inspections.settings)
    try:
        project, code = new_id(DONGSHENG), new_credit_code()
        now = inspections.clock()
        sent = [
            (PROJECT_TOPIC, project, project_registered(project, DONGSHENG, 2, now)),
            (PROJECT_TOPIC, project, enterprise_assigned(project, DONGSHENG, code, now)),
            (GRADE_TOPIC, f"enterprise:{code}", grade_changed(code, DONGSHENG, 4, now)),
        ]
        ids = [str(uuid.uuid4()) for _ in sent]
        for (topic, key, message), event_id in zip(sent, ids, strict=True):
            producer.produce(topic, message, key, event_id)

        def graded():
            driven.poll()
            entity = listed(inspections).get(project)
            return entity is not None and entity.grade == "B"

        wait_until(graded, timeout=POLL_TIMEOUT_SECONDS, what="the project listed with grade B")
        # The same events again (same ce_id): each was handled once.
        for (topic, key, message), event_id in zip(sent, ids, strict=True):
            producer.produce(topic, message, key, event_id)
        with inspections.engine.connect() as connection:
            handled = sa.select(sa.func.count()).where(inbox.c.event_id.in_(ids))
            wait_until(
                lambda: driven.poll() == 0 and connection.execute(handled).scalar_one() == 3,
                timeout=POLL_TIMEOUT_SECONDS,
            )
    finally:
        driven.close()
        producer.close()

    entity = listed(inspections)[project]
    assert (entity.project_type, entity.credit_code, entity.grade) == ("OFFICE", code, "B")
    created = inspections.create_round()
    assert [(e.project_id, e.grade) for e in created.entities] == [(project, "B")]


def test_events_replayed_after_the_inbox_forgot_them_change_nothing(inspections, wait_until):
    """Each handler recognises an event it has handled by its own keys: process the events,
    let newer ones change the project and the grade, purge the inbox (as its retention does),
    deliver the old events again (same ce_id): nothing changes, nothing is added or announced
    twice, and every replay is handled rather than dead-lettered (a dead letter leaves no inbox
    row)."""
    topics, handlers = SPEC.consumers[0].build(inspections.settings, inspections.engine)
    assert {PRACTITIONER_TOPIC, ALARM_TOPIC} <= set(topics)
    driven = HandDriven(inspections.settings, inspections.engine, CONSUMER_NAME, topics, handlers)
    producer = EventProducer(inspections.settings)
    project, old, new = new_id(DONGSHENG), new_credit_code(), new_credit_code()
    t0 = inspections.clock()
    t1 = t0 + dt.timedelta(hours=1)
    alarm = iot_pb.Alarm(id="A1", project_id=project, district_code=DONGSHENG)

    def deliver(events) -> None:
        """Produce the events and wait until the consumer has handled every one."""
        for topic, key, message, event_id in events:
            producer.produce(topic, message, key, event_id)
        ids = [event_id for *_, event_id in events]
        seen = sa.select(sa.func.count()).where(
            (inbox.c.consumer == CONSUMER_NAME) & inbox.c.event_id.in_(ids)
        )

        def handled() -> bool:
            driven.poll()
            with inspections.engine.connect() as connection:
                return connection.execute(seen).scalar_one() == len(ids)

        wait_until(handled, timeout=POLL_TIMEOUT_SECONDS, what=f"{len(ids)} events handled")

    def state() -> tuple:
        with inspections.engine.connect() as connection:
            project_row = store.get_project(connection, project)
            grade = connection.execute(
                sa.select(store.grades.c.grade).where(store.grades.c.credit_code == old)
            ).scalar_one()
        return (
            project_row.credit_code,
            grade,
            inspections.count("complaints", project_id=project),
            inspections.count("triggers", project_id=project),
            inspections.count("enterprise_persons"),
            len(inspections.events(ev.InspectionTriggered)),
        )

    registered, assigned, graded, linked, complaint, escalated = (
        str(uuid.uuid4()) for _ in range(6)
    )
    first = [
        (PROJECT_TOPIC, project, project_registered(project, DONGSHENG, 1, t0), registered),
        (PROJECT_TOPIC, project, enterprise_assigned(project, DONGSHENG, old, t0), assigned),
        (GRADE_TOPIC, old, grade_changed(old, DONGSHENG, credit_pb.GRADE_B, t0), graded),
        (
            PRACTITIONER_TOPIC,
            "W1",
            registry_events.PractitionerRegistered(
                practitioner_id=new_id(DONGSHENG, "W"),
                credit_code=old,
                district_code=DONGSHENG,
                person_key="0123456789abcdef0123456789abcdef",
            ),
            linked,
        ),
    ]
    # After the project is known: a complaint (an alarm raised) and a trigger (escalated).
    alarms = [
        (ALARM_TOPIC, "A1", iot_events.AlarmRaised(alarm=alarm), complaint),
        (
            ALARM_TOPIC,
            "A1",
            iot_events.AlarmEscalated(alarm=alarm, project_id=project),
            escalated,
        ),
    ]
    exited = registry_events.EnterpriseExited(
        project_id=project,
        district_code=DONGSHENG,
        credit_code=old,
        filed=True,
        occur_time=timestamp(t1),
    )
    later = [
        (PROJECT_TOPIC, project, exited, str(uuid.uuid4())),
        (
            PROJECT_TOPIC,
            project,
            enterprise_assigned(project, DONGSHENG, new, t1),
            str(uuid.uuid4()),
        ),
        (GRADE_TOPIC, old, grade_changed(old, DONGSHENG, credit_pb.GRADE_C, t1), str(uuid.uuid4())),
    ]
    try:
        deliver(first)
        deliver(alarms)
        assert state() == (old, "B", 1, 1, 1, 1)
        # Later the enterprise leaves, another takes over, and the first one's grade falls.
        deliver(later)
        after = state()
        assert after == (new, "C", 1, 1, 1, 1)

        # The inbox forgets (retention), and the first events come again, as they were.
        with inspections.engine.begin() as connection:
            connection.execute(inbox.delete().where(inbox.c.consumer == CONSUMER_NAME))
        deliver(first + alarms)
        assert state() == after
    finally:
        driven.close()
        producer.close()


# ---------------------------------------------------------------- into credit


def failed_and_overdue(inspections: InspectionsServer) -> tuple[str, str, str]:
    """Two checks of one enterprise's projects, one failed (score < 60) with a finding left
    unrectified past its deadline, one passed; returns the enterprise's credit code and the
    failed and passed check ids."""
    code = new_credit_code()
    for _ in range(2):
        inspections.register_inspector()
    for _ in range(2):
        inspections.project(credit_code=code, grade=credit_pb.GRADE_A)
    drawn = inspections.draw(inspections.create_round(floor_rate="1").round_id)
    failed, passed = drawn.selections
    zero = dict.fromkeys(["R01", "R02", "R03", "R04"], "0")
    inspections.record(failed, scores(**zero), [inspections.finding(days=3)])
    assert inspections.record(passed).check.score == "100.0"
    inspections.clock.advance(days=4)
    assert Inspections(inspections.engine, inspections.settings, inspections.clock).mark_overdue()
    return code, failed.check_id, passed.check_id


def test_a_failed_check_and_an_overdue_rectification_are_bad_credit_records(inspections, credit):
    code, failed, _ = failed_and_overdue(inspections)
    rows = inspections.outbox_rows()
    handlers = credit.handlers()
    with credit.engine.begin() as connection:
        for row in rows:
            handler = handlers.get(row.event_type)
            if handler is None:
                continue  # RoundDrawn, RectificationOpened: credit does not read them
            connection.execute(
                inbox.insert().values(
                    consumer="events", event_id=row.event_id, processed_at=time.time()
                )
            )
            meta = EventMeta(
                row.event_id,
                row.event_type,
                "/wuye/inspections",
                row.subject,
                row.district,
                "",
                row.topic,
                0,
                0,
            )
            handler.handle(connection, handler.message_type.FromString(row.payload), meta)
        records = credit_store.records_of(connection, f"enterprise:{code}")

    # Credit's rules read the topics inspections writes them to.
    rules = {r.event: r.topic for r in credit.settings.event_rules}
    assert rules["wuye.inspections.v1.CheckRecorded"] == CHECK_TOPIC
    assert rules["wuye.inspections.v1.RectificationOverdue"] == RECTIFICATION_TOPIC
    by_type = {r.event_type: r.topic for r in rows}
    assert by_type["wuye.inspections.v1.CheckRecorded"] == CHECK_TOPIC
    assert by_type["wuye.inspections.v1.RectificationOverdue"] == RECTIFICATION_TOPIC

    failed_event = next(
        r.event_id
        for r in rows
        if r.event_type == "wuye.inspections.v1.CheckRecorded"
        and ev.CheckRecorded.FromString(r.payload).check_id == failed
    )
    overdue_event = next(
        r.event_id for r in rows if r.event_type == "wuye.inspections.v1.RectificationOverdue"
    )
    # The passed check makes no record.
    assert sorted((r.record_type, r.source_event_id) for r in records) == sorted(
        [("INSPECTION_FAILED", failed_event), ("RECTIFICATION_OVERDUE", overdue_event)]
    )
    assert all(r.direction.value == "BAD" for r in records)


def test_the_same_flow_over_kafka_relay_to_credits_consumer(
    inspections, credit, start_loop, wait_until
):
    code, _, _ = failed_and_overdue(inspections)
    ensure_topics(inspections.settings, SPEC.topics, partitions=1)
    relay = build_relay(SPEC, inspections.settings, inspections.engine)
    start_loop(relay.run, "inspections-relay", after=[relay.close])

    topics, handlers = CREDIT_SPEC.consumers[0].build(credit.settings, credit.engine)
    assert {CHECK_TOPIC, RECTIFICATION_TOPIC} <= set(topics)
    topics = tuple(t for t in topics if t.startswith("wuye.inspections."))
    driven = HandDriven(
        credit.settings, credit.engine, CREDIT_SPEC.consumers[0].name, topics, handlers
    )

    def recorded() -> list[str]:
        driven.poll()
        with credit.engine.connect() as connection:
            records = credit_store.records_of(connection, f"enterprise:{code}")
        return sorted(r.record_type for r in records) == [
            "INSPECTION_FAILED",
            "RECTIFICATION_OVERDUE",
        ]

    try:
        wait_until(recorded, timeout=POLL_TIMEOUT_SECONDS, what="two bad records in credit")
    finally:
        driven.close()
    # The relay emptied the outbox.
    wait_until(lambda: inspections.outbox_rows() == [], timeout=POLL_TIMEOUT_SECONDS)


# ---------------------------------------------------------------- triggers by rule


def test_an_event_of_another_service_triggers_an_inspection_by_a_configured_rule(
    start_inspections,
):
    rule = TriggerRule(event="wuye.registry.v1.DisclosureUpdated", topic=PROJECT_TOPIC)
    inspections = start_inspections(trigger_rules=(rule,))
    topics, handlers = SPEC.consumers[0].build(inspections.settings, inspections.engine)
    assert PROJECT_TOPIC in topics and rule.event in handlers
    for _ in range(2):
        inspections.register_inspector()
    project = inspections.project(credit_code=None, grade=credit_pb.GRADE_AAA)
    quiet = [inspections.project(credit_code=None, grade=credit_pb.GRADE_AAA) for _ in range(9)]

    inspections.deliver(
        registry_events.DisclosureUpdated(project_id=project, district_code=DONGSHENG)
    )
    # A project this instance does not know is not a trigger.
    inspections.deliver(
        registry_events.DisclosureUpdated(project_id=new_id(DONGSHENG), district_code=DONGSHENG)
    )

    created = inspections.create_round()
    assert [e.project_id for e in created.entities if e.triggered] == [project]
    drawn = {s.project_id: s.reason for s in inspections.draw(created.round_id).selections}
    assert drawn[project] == "triggered"
    assert set(drawn) <= {project, *quiet}


def test_the_default_alarm_rule_waits_for_the_iot_service_or_triggers(start_inspections):
    inspections = start_inspections()
    topics, handlers = SPEC.consumers[0].build(inspections.settings, inspections.engine)
    assert "wuye.iot.alarm.v1" in topics
    alarm = message_class("wuye.iot.v1.AlarmEscalated")
    if alarm is None:
        # Not deployed yet: the rule waits, the rest of the consumer works.
        assert "wuye.iot.v1.AlarmEscalated" not in handlers
        assert "wuye.registry.v1.ProjectRegistered" in handlers
        return
    project = inspections.project(credit_code=None)
    inspections.deliver(alarm(project_id=project), topic="wuye.iot.alarm.v1")
    assert [e.project_id for e in inspections.create_round().entities if e.triggered] == [project]
