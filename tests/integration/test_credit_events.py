"""The credit file as the registry's events make it, against real PostgreSQL: the consumer's
handlers run in a transaction with the inbox row (as the Consumer runs them), their effect is
read back through the gRPC API, and every change of a standing is announced once, in the outbox
and in the feed. Also the expiry timer and recomputation."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa
from confluent_kafka import Message
from sample_data import request_id
from test_credit_support import (
    CONSUMER_NAME,
    DONGSHENG,
    ENTERPRISE_TOPIC,
    PROJECT_TOPIC,
    credit_servers,
    enterprise,
    new_credit_code,
    timestamp,
)

from wuye.core.auth import Role
from wuye.core.consumer import Consumer
from wuye.core.events import inbox
from wuye.core.kafka import cloudevent_headers
from wuye.core.service import run_timers
from wuye.credit import store
from wuye.credit.commands import Credit
from wuye.credit.service import SPEC
from wuye.credit.settings import CreditSettings
from wuye.credit.v1 import credit_service_pb2 as pb
from wuye.credit.v1 import events_pb2 as ev
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.registry.v1 import registry_service_pb2 as registry_pb

pytestmark = pytest.mark.integration


@pytest.fixture
def start_credit(make_settings):
    with credit_servers(make_settings) as start:
        yield start


@pytest.fixture
def credit(start_credit):
    return start_credit()


def without_as_of(report: pb.CreditReport) -> pb.CreditReport:
    report.ClearField("as_of")
    return report


def changes(credit) -> list[tuple[str, str]]:
    """(previous grade, grade) of every GradeChanged in the outbox, by name."""
    return [
        (pb.Grade.Name(e.change.previous_grade), pb.Grade.Name(e.change.grade))
        for e in credit.events(ev.GradeChanged)
    ]


# ---------------------------------------------------------------- filing


def test_an_approved_filing_opens_the_credit_file_with_grade_a_at_the_default_base(credit):
    code = credit.open_file()

    report = credit.admin.report(code)

    assert report.filed
    assert report.subject == enterprise(code)
    assert report.name == f"鄂尔多斯{code[-4:]}物业服务有限公司"
    assert report.district_code == DONGSHENG
    assert (report.grade, report.score) == (pb.GRADE_A, "70.0")
    assert (report.base.assessment_id, report.base.score) == ("", "70.0")
    assert not report.base.HasField("assess_time")
    assert list(report.records) == [] and list(report.past_records) == []
    assert (report.good_points, report.bad_points) == ("0.0", "0.0")
    assert report.explanation == "default base 70.0 + good 0.0 - bad 0.0 = 70.0 -> A"
    [announced] = credit.events()
    assert announced.change.subject == enterprise(code)
    assert (announced.change.previous_grade, announced.change.grade) == (
        pb.GRADE_C_UNFILED,
        pb.GRADE_A,
    )
    assert (announced.change.score, announced.change.feed_version) == ("70.0", 1)


def test_an_enterprise_whose_market_exit_is_approved_is_c_unfiled_again(credit):
    code = credit.open_file()

    credit.deliver(credit.filing_approved(code, kind=registry_pb.FILING_KIND_EXIT))

    report = credit.admin.report(code)
    assert not report.filed
    assert report.grade == pb.GRADE_C_UNFILED
    assert report.explanation == "no approved filing -> C (unfiled)"
    assert changes(credit)[-1] == ("GRADE_A", "GRADE_C_UNFILED")


def test_an_approved_change_filing_renames_without_changing_the_grade(credit):
    code = credit.open_file()

    credit.deliver(
        credit.filing_approved(code, kind=registry_pb.FILING_KIND_CHANGE, name="新名称物业公司")
    )

    report = credit.admin.report(code)
    assert (report.name, report.grade) == ("新名称物业公司", pb.GRADE_A)
    assert len(credit.events()) == 1


# ---------------------------------------------------------------- project exits


def test_an_exit_without_filing_is_a_bad_credit_record_that_lowers_the_grade(credit):
    code = credit.open_file()

    event_id = credit.exit_project(code, filed=False)

    report = credit.admin.report(code)
    [record] = report.records
    assert record.record_type == "UNFILED_EXIT"
    assert (record.direction, record.points, record.severity) == (
        pb.DIRECTION_BAD,
        "10.0",
        pb.SEVERITY_NORMAL,
    )
    assert record.status == pb.RECORD_STATUS_ACTIVE
    assert record.source_event_id == event_id
    assert record.source == f"wuye.registry.v1.EnterpriseExited {event_id}"
    occurred = record.occur_time.ToDatetime(dt.UTC)
    assert record.expire_time.ToDatetime(dt.UTC) == occurred + dt.timedelta(days=365)
    assert (report.score, report.grade, report.bad_points) == ("60.0", pb.GRADE_B, "10.0")
    assert report.explanation == "default base 70.0 + good 0.0 - bad 10.0 = 60.0 -> B"
    assert changes(credit) == [("GRADE_C_UNFILED", "GRADE_A"), ("GRADE_A", "GRADE_B")]


def test_an_exit_with_filing_makes_no_record(credit):
    code = credit.open_file()
    before = credit.outbox_count()

    credit.exit_project(code, filed=True)

    report = credit.admin.report(code)
    assert list(report.records) == []
    assert (report.grade, report.score) == (pb.GRADE_A, "70.0")
    assert credit.outbox_count() == before


def test_a_second_unfiled_exit_makes_grade_c_and_blacklists(credit):
    code = credit.open_file()

    credit.exit_project(code)
    credit.exit_project(code)

    report = credit.admin.report(code)
    assert (report.score, report.grade, report.blacklisted) == ("50.0", pb.GRADE_C, True)
    [blacklisted] = credit.events(ev.Blacklisted)
    assert blacklisted.subject == enterprise(code)
    assert (blacklisted.district_code, blacklisted.cause) == (DONGSHENG, "grade C")
    assert blacklisted.sequence == credit.events(ev.GradeChanged)[-1].change.sequence


def test_an_exit_before_the_filing_is_kept_for_the_file_opened_later(credit):
    code = new_credit_code()

    credit.exit_project(code)
    unfiled = credit.admin.report(code)
    credit.open_file(credit_code=code)
    filed = credit.admin.report(code)

    assert (unfiled.filed, unfiled.grade) == (False, pb.GRADE_C_UNFILED)
    assert [r.record_type for r in unfiled.records] == ["UNFILED_EXIT"]
    assert (filed.filed, filed.grade, filed.score) == (True, pb.GRADE_B, "60.0")


# ---------------------------------------------------------------- idempotency


def _process(consumer: Consumer, message, event_id: str, topic: str) -> str:
    """One Kafka record through Consumer.process, as poll_once hands it over."""
    headers = cloudevent_headers(
        event_id=event_id,
        event_type=message.DESCRIPTOR.full_name,
        source="/wuye/registry",
        subject="",
        time=time.time(),
        district=DONGSHENG,
        trace_id="",
    )
    record = Message(
        topic=topic,
        partition=0,
        offset=0,
        key=None,
        value=message.SerializeToString(),
        headers=headers,
    )
    return consumer.process(record)


def test_a_replayed_event_changes_nothing(credit):
    consumer = Consumer(
        credit.engine,
        None,
        None,
        name=CONSUMER_NAME,
        handlers=credit.handlers,
        max_attempts=1,
        inbox_retention_days=1,
        inbox_purge_seconds=3600,
    )
    code = new_credit_code()
    filing = credit.filing_approved(code)
    exited = credit.exited(code, filed=False)
    filing_id, exit_id = str(uuid.uuid4()), str(uuid.uuid4())

    first = [
        _process(consumer, filing, filing_id, ENTERPRISE_TOPIC),
        _process(consumer, exited, exit_id, PROJECT_TOPIC),
    ]
    before = (without_as_of(credit.admin.report(code)), credit.outbox_count())
    records = credit.records_of(code)
    again = [
        _process(consumer, filing, filing_id, ENTERPRISE_TOPIC),
        _process(consumer, exited, exit_id, PROJECT_TOPIC),
    ]

    assert first == ["handled", "handled"]
    assert again == ["duplicate", "duplicate"]
    assert (without_as_of(credit.admin.report(code)), credit.outbox_count()) == before
    assert credit.records_of(code) == records and len(records) == 1


def test_an_event_replayed_after_its_inbox_row_is_gone_is_a_duplicate_by_its_own_keys(credit):
    """Below the inbox: once housekeeping has purged the inbox rows, a replay is still
    recognised, by the record's natural key (the event it came from) and by the filing's time,
    and changes nothing; it is not a poison message."""
    consumer = Consumer(
        credit.engine,
        None,
        None,
        name=CONSUMER_NAME,
        handlers=credit.handlers,
        max_attempts=1,
        inbox_retention_days=1,
        inbox_purge_seconds=3600,
    )
    code = new_credit_code()
    events = [
        (credit.filing_approved(code), str(uuid.uuid4()), ENTERPRISE_TOPIC),
        (credit.exited(code, filed=False), str(uuid.uuid4()), PROJECT_TOPIC),
        (
            credit.filing_approved(code, kind=registry_pb.FILING_KIND_EXIT),
            str(uuid.uuid4()),
            ENTERPRISE_TOPIC,
        ),
    ]
    first = [_process(consumer, *event) for event in events]
    before = (without_as_of(credit.admin.report(code)), credit.outbox_count())
    records = credit.records_of(code)

    with credit.engine.begin() as connection:
        connection.execute(inbox.delete())
    again = [_process(consumer, *event) for event in events]

    assert first == again == ["handled", "handled", "handled"]
    assert before[0].filed is False and len(records) == 1
    assert (without_as_of(credit.admin.report(code)), credit.outbox_count()) == before
    assert credit.records_of(code) == records


# ---------------------------------------------------------------- practitioners


def test_a_registered_practitioner_gets_a_credit_file(credit):
    person_key = uuid.uuid4().hex
    credit.deliver(
        registry_events.PractitionerRegistered(
            practitioner_id=f"{DONGSHENG}-P{uuid.uuid4().hex[:12]}",
            person_key=person_key,
            credit_code=new_credit_code(),
            district_code=DONGSHENG,
        ),
        topic="wuye.registry.practitioner.v1",
    )

    report = credit.admin.GetCreditReport(
        pb.GetCreditReportRequest(
            subject=pb.Subject(kind=pb.SUBJECT_KIND_PRACTITIONER, id=person_key)
        )
    ).report
    assert (report.filed, report.grade, report.district_code) == (True, pb.GRADE_A, DONGSHENG)


# ---------------------------------------------------------------- the feed


def test_every_change_is_in_the_outbox_and_in_the_feed_in_order(credit):
    codes = [credit.open_file() for _ in range(3)]
    credit.exit_project(codes[0])
    credit.record(codes[1], "AWARD")

    feed = credit.admin.ExportCreditFeed(pb.ExportCreditFeedRequest(after_sequence=0))

    announced = [e.change for e in credit.events(ev.GradeChanged)]
    assert list(feed.changes) == announced
    assert [c.sequence for c in feed.changes] == sorted({c.sequence for c in feed.changes})
    assert [(c.subject.id, pb.Grade.Name(c.grade), c.score) for c in feed.changes] == [
        (codes[0], "GRADE_A", "70.0"),
        (codes[1], "GRADE_A", "70.0"),
        (codes[2], "GRADE_A", "70.0"),
        (codes[0], "GRADE_B", "60.0"),
        (codes[1], "GRADE_A", "75.0"),
    ]
    assert feed.last_sequence == feed.changes[-1].sequence


def test_the_feed_pages_from_a_cursor(credit):
    for _ in range(5):
        credit.open_file()
    service = credit.client(Role.SERVICE, "city-credit-platform")

    pages, after = [], 0
    for _ in range(10):
        page = service.ExportCreditFeed(
            pb.ExportCreditFeedRequest(after_sequence=after, page_size=2)
        )
        if not page.changes:
            assert page.last_sequence == after
            break
        pages.append([c.sequence for c in page.changes])
        after = page.last_sequence
        assert after == page.changes[-1].sequence

    assert [len(p) for p in pages] == [2, 2, 1]
    everything = [s for p in pages for s in p]
    assert everything == sorted(everything) and len(set(everything)) == 5
    # A cursor in the middle gives what follows it.
    tail = service.ExportCreditFeed(pb.ExportCreditFeedRequest(after_sequence=everything[2]))
    assert [c.sequence for c in tail.changes] == everything[3:]


def test_the_feed_is_for_authorities_and_services_only(credit):
    code = credit.open_file()

    enterprise_call = credit.enterprise(code).fails(
        "ExportCreditFeed", pb.ExportCreditFeedRequest()
    )
    anonymous_call = credit.anonymous.fails("ExportCreditFeed", pb.ExportCreditFeedRequest())
    negative = credit.admin.fails("ExportCreditFeed", pb.ExportCreditFeedRequest(after_sequence=-1))

    assert enterprise_call.code.name == "PERMISSION_DENIED"
    assert anonymous_call.code.name == "UNAUTHENTICATED"
    assert negative.code.name == "INVALID_ARGUMENT" and "after_sequence" in negative.violations


# ---------------------------------------------------------------- expiry


def test_an_expired_record_drops_out_when_the_timer_runs_and_the_change_is_announced_once(credit):
    code = credit.open_file()
    credit.exit_project(code)
    [record] = credit.admin.report(code).records
    expires = record.expire_time.ToDatetime(dt.UTC)
    assert credit.credit.expire_due() == 0

    credit.clock.offset = expires - dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    assert credit.credit.expire_due() == 0
    still = credit.admin.report(code)
    credit.clock.offset = expires - dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    announced_before = len(credit.events(ev.GradeChanged))
    expired = credit.credit.expire_due()
    after = credit.admin.report(code)
    again = credit.credit.expire_due()

    assert (still.grade, [r.record_id for r in still.records]) == (pb.GRADE_B, [record.record_id])
    assert expired == 1 and again == 0
    assert (after.grade, after.score, list(after.records)) == (pb.GRADE_A, "70.0", [])
    assert [(r.record_id, r.status) for r in after.past_records] == [
        (record.record_id, pb.RECORD_STATUS_EXPIRED)
    ]
    assert len(credit.events(ev.GradeChanged)) == announced_before + 1
    assert changes(credit)[-1] == ("GRADE_B", "GRADE_A")
    # As it stood before the expiry, it still shows the record.
    then = credit.admin.report(code, as_of=expires - dt.timedelta(seconds=1))
    assert (then.grade, [r.record_id for r in then.records]) == (pb.GRADE_B, [record.record_id])


def test_the_timer_runs_each_expiry_once_even_when_it_runs_late(credit):
    codes = [credit.open_file() for _ in range(3)]
    for code in codes:
        credit.exit_project(code)
    credit.clock.advance(days=400)

    first = credit.credit.expire_due()
    second = credit.credit.expire_due()

    assert (first, second) == (3, 0)
    assert [credit.admin.report(c).grade for c in codes] == [pb.GRADE_A] * 3


def test_a_timer_in_another_replica_finds_nothing_left_to_do(credit):
    code = credit.open_file()
    credit.exit_project(code)
    credit.clock.advance(days=366)
    other = Credit(credit.engine, credit.settings, clock=credit.clock)

    assert credit.credit.expire_due() == 1
    assert other.expire_due() == 0
    assert credit.admin.report(code).grade == pb.GRADE_A


def test_the_services_timer_drops_a_record_the_moment_it_expires(
    start_credit, start_loop, wait_until
):
    """The timer as `python -m wuye.credit timers` runs it, on the real clock."""
    credit = start_credit(expiry_check_seconds=0.05)
    code = credit.open_file()
    validity = credit.settings.record_types["CONTRACT_BREACH"].validity_days
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    recorded = credit.admin.RecordCreditEvent(
        pb.RecordCreditEventRequest(
            request_id=request_id(),
            subject=enterprise(code),
            record_type="CONTRACT_BREACH",
            evidence_reference="合同纠纷判决书",
            reason="违约",
            occur_time=timestamp(expires - dt.timedelta(days=validity)),
        )
    ).report
    assert recorded.grade == pb.GRADE_B
    [timer] = SPEC.timers
    start_loop(lambda stop: run_timers(SPEC.timers, credit.settings, credit.engine, stop), "timer")

    wait_until(
        lambda: credit.events(ev.GradeChanged)[-1].change.grade == pb.GRADE_A,
        timeout=15,
        what="the expiry announced",
    )

    assert timer.every_seconds(credit.settings) == 0.05
    last = credit.events(ev.GradeChanged)[-1].change
    assert last.change_time.ToDatetime(dt.UTC) >= expires
    assert credit.admin.report(code).grade == pb.GRADE_A
    assert changes(credit)[-2:] == [("GRADE_A", "GRADE_B"), ("GRADE_B", "GRADE_A")]


# ---------------------------------------------------------------- recomputation


def test_recomputing_everything_changes_nothing_when_nothing_changed(credit):
    for _ in range(3):
        credit.exit_project(credit.open_file())
    credit.record(credit.open_file(), "ADMINISTRATIVE_PENALTY")
    before = credit.outbox_count()

    assert credit.credit.recompute_all() == 0
    assert credit.outbox_count() == before


def test_recomputing_after_a_change_of_rules_regrades_and_announces(credit, make_settings):
    codes = [credit.open_file() for _ in range(2)]
    credit.exit_project(codes[1])
    stricter = make_settings(
        CreditSettings, grade_bounds={"AAA": 90, "AA": 80, "A": 65, "B": 50}, default_base_score=66
    )
    regraded = Credit(credit.engine, stricter, clock=credit.clock)

    assert regraded.recompute_all() == 2
    assert regraded.recompute_all() == 0
    with credit.engine.connect() as connection:
        standings = [store.stored_standing(connection, f"enterprise:{c}") for c in codes]
    assert [(s.grade.value, s.score) for s in standings] == [
        ("A", Decimal(66)),
        ("B", Decimal(56)),
    ]
    assert changes(credit)[-2:] == [("GRADE_A", "GRADE_A"), ("GRADE_B", "GRADE_B")]


def test_the_stored_standing_is_the_one_the_report_shows(credit):
    codes = [credit.open_file() for _ in range(2)]
    credit.exit_project(codes[0])
    credit.assess(codes[1])

    with credit.engine.connect() as connection:
        rows = {row.subject_id: row for row in connection.execute(sa.select(store.subjects))}
    for code in codes:
        report = credit.admin.report(code)
        row = rows[code]
        assert pb.Grade.Value(f"GRADE_{row.grade}") == report.grade
        assert str(store.from_tenths(row.score_tenths)) == report.score
        assert (row.blacklisted, row.red_listed) == (report.blacklisted, report.red_listed)
