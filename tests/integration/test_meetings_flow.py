"""Joint meetings on real PostgreSQL and Tansu, as the issue tells it: an owners' committee's
case is accepted; a meeting held ten days ago and recorded now adopts a resolution with a task
for the enterprise due two working days after the meeting; the timer finds it overdue and
escalates it; through the relay and Kafka, credit's consumer makes exactly one bad record of it,
also after a restart; the signed minutes refuse change and verify, and a copy with one character
changed does not. Then who may do what, and a resident's case from raising to reopening."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import json_format
from kafka_support import HandDriven
from sample_data import date
from sqlalchemy.engine import make_url
from test_meetings_support import (
    DONGSHENG,
    NOW,
    POLICE,
    WATER,
    MeetingsServer,
    enterprise_unit,
    meetings_servers,
    timestamp,
)

from wuye.core.auth import Role
from wuye.core.db import create_service_engine
from wuye.core.kafka import ensure_topics
from wuye.core.migrate import upgrade
from wuye.core.service import build_relay
from wuye.credit import store as credit_store
from wuye.credit.commands import Credit
from wuye.credit.service import SPEC as CREDIT_SPEC
from wuye.credit.settings import CreditSettings
from wuye.meetings.commands import TASK_TOPIC
from wuye.meetings.service import SPEC
from wuye.meetings.v1 import events_pb2 as ev
from wuye.meetings.v1 import meetings_service_pb2 as pb

pytestmark = pytest.mark.integration

POLL_TIMEOUT_SECONDS = 30.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def meetings(make_settings) -> Iterator[MeetingsServer]:
    with meetings_servers(make_settings) as start:
        yield start()


@pytest.fixture
def credit(make_settings, pg_url: str) -> Iterator[Credit]:
    """The credit service's commands in a schema of their own: credit keeps its own database."""
    schema = f"t_{uuid.uuid4().hex[:16]}_credit"
    settings = make_settings(CreditSettings, database_schema=schema)
    upgrade(settings, CREDIT_SPEC.migrations_dir)
    engine = create_service_engine(settings)
    yield Credit(engine, settings)
    engine.dispose()
    url = make_url(pg_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    admin = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql("SET LOCAL lock_timeout = '15s'")
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        admin.dispose()


def credit_consumer(credit: Credit) -> HandDriven:
    """Credit's production consumer on the meetings' task topic from its beginning."""
    topics, handlers = CREDIT_SPEC.consumers[0].build(credit.settings, credit.engine)
    assert TASK_TOPIC in topics and "wuye.meetings.v1.TaskOverdue" in handlers
    name = CREDIT_SPEC.consumers[0].name
    return HandDriven(credit.settings, credit.engine, name, [TASK_TOPIC], handlers)


def verify(path: Path, published: str | None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "wuye.meetings", "verify-minutes", str(path)]
    command += ["--hash", published] if published else []
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)


def test_the_issues_case_from_a_committee_to_a_bad_credit_record_and_verified_minutes(
    meetings, credit, start_loop, wait_until, tmp_path
):
    project_id, code, committee_id = meetings.project()
    enterprise = enterprise_unit(code)
    case = meetings.accepted_case(meetings.committee(committee_id), project_id)
    assert (case.state, case.raised_by_role, case.credit_code) == (
        pb.CASE_STATE_ACCEPTED,
        "owners_committee",
        code,
    )

    # Held on Monday 23 November, recorded ten days later.
    held = NOW - dt.timedelta(days=10)
    meeting = meetings.convene([case.case_id], [enterprise, WATER, POLICE], held)
    meetings.attendance(
        meeting.meeting_id,
        {
            code: pb.ATTENDANCE_PRESENT,
            WATER.unit_id: pb.ATTENDANCE_PRESENT,
            POLICE.unit_id: pb.ATTENDANCE_ABSENT_WITHOUT_LEAVE,
        },
    )
    resolution = meetings.adopt(meeting.meeting_id, case.case_id, [(enterprise, 2), (WATER, 10)])
    enterprise_task, water_task = resolution.tasks
    # Two working days after Monday 23 November: Wednesday the 25th; the water company's ten
    # end on Monday 7 December.
    assert (enterprise_task.due_date.month, enterprise_task.due_date.day) == (11, 25)
    assert (water_task.due_date.month, water_task.due_date.day) == (12, 7)

    # The timer: overdue since Thursday the 26th, escalated to the district; the water company
    # is reminded, its deadline being two working days away.
    changed = meetings.meetings.mark_overdue()
    assert changed == 2
    [overdue] = meetings.events(ev.TaskOverdue)
    assert (overdue.task_id, overdue.assigned_to_enterprise, overdue.credit_code) == (
        enterprise_task.task_id,
        True,
        code,
    )
    [escalated] = meetings.events(ev.TaskEscalated)
    assert (escalated.level, escalated.very_late) == ("DISTRICT", False)
    [reminder] = meetings.events(ev.TaskReminder)
    assert reminder.task_id == water_task.task_id
    # Run again: nothing new.
    assert meetings.meetings.mark_overdue() == 0
    [listed] = meetings.office.ListTasks(
        pb.ListTasksRequest(case_id=case.case_id, unit_id=code)
    ).tasks
    assert (listed.lateness, listed.escalation_level) == (pb.LATENESS_OVERDUE, "DISTRICT")

    # Through the relay and Kafka to credit's consumer: one bad record, also after a restart
    # that reads the topic again from its beginning.
    ensure_topics(meetings.settings, SPEC.topics, partitions=1)
    relay = build_relay(SPEC, meetings.settings, meetings.engine)
    start_loop(relay.run, "meetings-relay", after=[relay.close])

    def records() -> list:
        with credit.engine.connect() as connection:
            return credit_store.records_of(connection, f"enterprise:{code}")

    for _restart in range(2):
        with credit_consumer(credit) as driven:
            wait_until(
                lambda d=driven: d.at_end() and records(),
                timeout=POLL_TIMEOUT_SECONDS,
                what="the task topic read to its end and a credit record",
            )
        [record] = records()
        assert (record.record_type, record.direction.value) == ("MEETING_TASK_OVERDUE", "BAD")

    # The minutes: drafted, amended by an attending unit, not by the absent one, signed by the
    # chair and each attending unit, then frozen.
    drafted = meetings.office.DraftMinutes(
        pb.DraftMinutesRequest(
            meeting_id=meeting.meeting_id,
            text="一、3 号楼消防通道占用\n物业公司两个工作日内清理，供水公司检修消防水泵。",
        )
    ).minutes
    meetings.unit(WATER).ProposeAmendment(
        pb.ProposeAmendmentRequest(minutes_id=drafted.minutes_id, text="消防水泵压力复测报街道。")
    )
    absent = meetings.unit(POLICE).fails(
        "ProposeAmendment",
        pb.ProposeAmendmentRequest(minutes_id=drafted.minutes_id, text="补充"),
    )
    assert absent.reason == "NOT_AN_ATTENDING_UNIT"
    for signer in (meetings.office, meetings.unit(WATER), meetings.unit(enterprise)):
        signed = signer.SignMinutes(pb.SignMinutesRequest(minutes_id=drafted.minutes_id)).minutes
    assert signed.state == pb.MINUTES_STATE_SIGNED
    assert [s.signer for s in signed.signatures] == [
        "天骄街道",
        WATER.kind + ":" + WATER.unit_id,
        f"ENTERPRISE:{code}",
    ]
    [announced] = meetings.events(ev.MinutesSigned)
    assert announced.content_hash == signed.content_hash
    refused = meetings.unit(WATER).fails(
        "ProposeAmendment", pb.ProposeAmendmentRequest(minutes_id=signed.minutes_id, text="改")
    )
    assert (refused.code, refused.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MINUTES_SIGNED")
    again = meetings.office.fails(
        "DraftMinutes", pb.DraftMinutesRequest(meeting_id=meeting.meeting_id, text="重写")
    )
    assert again.reason == "MINUTES_EXIST"
    amending = meetings.office.DraftMinutes(
        pb.DraftMinutesRequest(
            meeting_id=meeting.meeting_id,
            text="更正：检修期限",
            amends_minutes_id=signed.minutes_id,
        )
    ).minutes
    assert (amending.amends_minutes_id, amending.state) == (
        signed.minutes_id,
        pb.MINUTES_STATE_OPEN,
    )

    # Anyone reads the signed minutes and checks a copy against the published hash.
    public = meetings.anonymous.GetMinutes(pb.GetMinutesRequest(minutes_id=signed.minutes_id))
    exported = json_format.MessageToJson(public)
    good, bad = tmp_path / "minutes.json", tmp_path / "changed.json"
    good.write_text(exported)
    document = json.loads(exported)
    document["minutes"]["text"] = document["minutes"]["text"].replace("两", "三", 1)
    bad.write_text(json.dumps(document, ensure_ascii=False))
    verified = verify(good, announced.content_hash)
    assert verified.returncode == 0 and verified.stdout.startswith("VERIFIED:"), verified
    changed_copy = verify(bad, announced.content_hash)
    assert changed_copy.returncode == 1 and "does not match its hash" in changed_copy.stdout
    assert meetings.anonymous.fails(
        "GetMinutes", pb.GetMinutesRequest(minutes_id=amending.minutes_id)
    ).reason == ("MINUTES_NOT_SIGNED")

    # The district's report over November and December: what the assessments read.
    report = meetings.anonymous.GetDistrictReport(
        pb.GetDistrictReportRequest(
            district_code=DONGSHENG,
            start_date=date(dt.date(2026, 11, 1)),
            end_date=date(dt.date(2026, 12, 31)),
        )
    ).report
    assert (report.cases_raised, report.cases_accepted, report.cases_resolved) == (1, 1, 0)
    assert [(t.key, t.on_time, t.overdue) for t in report.tasks_by_unit_kind] == [
        ("ENTERPRISE", 0, 1),
        ("WATER", 1, 0),
    ]
    assert [(t.key, t.overdue) for t in report.tasks_by_enterprise] == [(code, 1)]
    assert [(a.unit_kind, a.absences) for a in report.absences] == [("POLICE", 1)]


def test_who_may_do_what_and_a_residents_case_from_raising_to_reopening(meetings):
    project_id, code, _ = meetings.project()
    other_project, _, _ = meetings.project(sub_district="交通街道")
    enterprise = enterprise_unit(code)

    # An enterprise raises cases about its own projects only.
    denied = meetings.unit(enterprise).fails(
        "RaiseCase",
        pb.RaiseCaseRequest(
            request_id=str(uuid.uuid4()),
            case=pb.Case(project_id=other_project, category="FEES", description="欠费"),
        ),
    )
    assert denied.reason == "NOT_YOUR_PROJECT"

    # Bad input is refused field by field, naming no personal data, and stores nothing.
    bad = meetings.resident("owner-key-of-wang").fails(
        "RaiseCase",
        pb.RaiseCaseRequest(
            request_id=str(uuid.uuid4()),
            case=pb.Case(
                project_id=project_id,
                category="GOSSIP",
                description="噪声\x00",
                resident=pb.Resident(name="王小明", phone="138-x"),
            ),
        ),
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad.violations) == {"case.category", "case.description", "case.resident.phone"}
    assert "138-x" not in bad.message
    assert meetings.count("cases") == 0

    # A resident's name and phone: required, kept masked, never stored whole.
    resident = meetings.resident("owner-key-of-wang")
    case = meetings.raise_case(
        resident,
        project_id,
        category="NOISE",
        resident=pb.Resident(name="王小明", phone="13812345678"),
    )
    assert (case.resident.masked_name, case.resident.masked_phone) == ("王*明", "138****5678")
    assert (case.resident.name, case.resident.phone) == ("", "")
    with meetings.engine.connect() as connection:
        stored = json.dumps(
            [list(r) for r in connection.execute(sa.text("SELECT * FROM cases"))], default=str
        )
    assert "王小明" not in stored and "13812345678" not in stored
    # Another resident neither reads nor lists it; the committee lists its own only.
    stranger = meetings.resident("owner-key-of-li")
    assert stranger.fails("GetCase", pb.GetCaseRequest(case_id=case.case_id)).reason == (
        "NOT_YOUR_CASE"
    )
    assert stranger.ListCases(pb.ListCasesRequest(district_code=DONGSHENG)).cases == []
    assert [c.case_id for c in resident.ListCases(pb.ListCasesRequest()).cases] == [case.case_id]

    # Only the project's sub-district office accepts.
    other_office = meetings.client(Role.SUB_DISTRICT, "交通街道", [DONGSHENG])
    assert other_office.fails("AcceptCase", pb.AcceptCaseRequest(case_id=case.case_id)).reason == (
        "NOT_YOUR_SUB_DISTRICT"
    )
    meetings.office.AcceptCase(pb.AcceptCaseRequest(case_id=case.case_id))
    meeting = meetings.convene([case.case_id], [enterprise, WATER], NOW - dt.timedelta(hours=2))
    # A meeting more than the configured days back is not recorded.
    too_old = meetings.office.fails(
        "ConveneMeeting",
        pb.ConveneMeetingRequest(
            request_id=str(uuid.uuid4()),
            meeting=pb.Meeting(
                hold_time=timestamp(NOW - dt.timedelta(days=31)),
                place="天骄街道办事处",
                case_ids=[case.case_id],
                invitations=[pb.Invitation(unit=WATER)],
            ),
        ),
    )
    assert too_old.reason == "HOLD_TIME_OUT_OF_RANGE"
    [task] = meetings.adopt(meeting.meeting_id, case.case_id, [(enterprise, 5)]).tasks

    # A unit completes only its own task; the office accepts; the case is resolved.
    assert meetings.unit(WATER).fails(
        "CompleteTask", pb.CompleteTaskRequest(task_id=task.task_id, note="已清理")
    ).reason == ("NOT_YOUR_TASK")
    meetings.unit(enterprise).CompleteTask(
        pb.CompleteTaskRequest(task_id=task.task_id, note="已清理")
    )
    done = meetings.office.AcceptTaskCompletion(
        pb.AcceptTaskCompletionRequest(task_id=task.task_id)
    )
    assert (done.task.state, done.case.state) == (pb.TASK_STATE_ACCEPTED, pb.CASE_STATE_RESOLVED)

    # The resident reopens it within the configured days; nobody else may.
    assert stranger.fails(
        "ReopenCase", pb.ReopenCaseRequest(case_id=case.case_id, reason="仍有噪声")
    ).reason == ("NOT_YOUR_CASE")
    reopened = resident.ReopenCase(pb.ReopenCaseRequest(case_id=case.case_id, reason="仍有噪声"))
    assert reopened.case.state == pb.CASE_STATE_ACCEPTED
    assert [type(e).__name__ for e in meetings.events()] == [
        "CaseRaised",
        "CaseAccepted",
        "MeetingConvened",
        "ResolutionAdopted",
        "TaskCompleted",
        "TaskAccepted",
        "CaseResolved",
        "CaseReopened",
    ]
