"""Every change of a credit file is announced, once, in the order it was made; decisions that
exclude each other, made at the same moment against PostgreSQL, commit once; the rules of the
black list and of records made from events, as DOMAIN.md states them."""

from __future__ import annotations

from functools import partial

import grpc
import pytest
from grpc_support import at_once
from test_credit_support import PROJECT_TOPIC, credit_servers, enterprise, request_id

from wuye.credit.v1 import credit_service_pb2 as pb
from wuye.credit.v1 import events_pb2 as ev
from wuye.registry.v1 import registry_service_pb2 as registry_pb

pytestmark = pytest.mark.integration

FAILED = grpc.StatusCode.FAILED_PRECONDITION
ROUNDS = 15


@pytest.fixture
def credit(make_settings):
    with credit_servers(make_settings) as start:
        yield start()


def record_ids(events) -> list[str]:
    return [e.record.record_id for e in events]


# ---------------------------------------------------------------- every change is announced


def test_a_record_an_authority_adds_is_announced_before_the_standing_it_changes(credit):
    code = credit.open_file()

    added = credit.record(code, "AWARD").record

    [announced] = credit.events(ev.RecordAdded)
    assert announced.subject == enterprise(code)
    assert announced.record == added
    assert announced.record.status == pb.RECORD_STATUS_ACTIVE
    penalty = credit.record(code, "ADMINISTRATIVE_PENALTY").record
    # The opening of the file, then each record before the standing it changed.
    kinds = [type(e).__name__ for e in credit.events(ev.RecordAdded, ev.GradeChanged)]
    assert kinds == ["GradeChanged", *["RecordAdded", "GradeChanged"] * 2]
    assert record_ids(credit.events(ev.RecordAdded)) == [added.record_id, penalty.record_id]


def test_an_appeal_its_decision_and_a_rectification_are_each_announced(credit):
    code = credit.open_file()
    breach = credit.record(code, "CONTRACT_BREACH").record
    penalty = credit.record(code, "ADMINISTRATIVE_PENALTY").record

    credit.enterprise(code).AppealRecord(
        pb.AppealRecordRequest(record_id=breach.record_id, reason="已按合同履行")
    )
    credit.authority().DecideAppeal(
        pb.DecideAppealRequest(record_id=breach.record_id, uphold=True, reason="复核属实")
    )
    credit.authority().MarkRectified(
        pb.MarkRectifiedRequest(record_id=penalty.record_id, evidence_reference="整改验收单")
    )

    [appealed] = credit.events(ev.RecordAppealed)
    [decided] = credit.events(ev.AppealDecided)
    [rectified] = credit.events(ev.RecordRectified)
    assert (appealed.record.record_id, appealed.record.status) == (
        breach.record_id,
        pb.RECORD_STATUS_APPEALED,
    )
    assert appealed.record.appeal_reason == "已按合同履行"
    assert (decided.upheld, decided.record.status) == (True, pb.RECORD_STATUS_REMOVED)
    assert (rectified.record.record_id, rectified.record.status) == (
        penalty.record_id,
        pb.RECORD_STATUS_EXPIRED,
    )
    assert rectified.record.evidence_reference == "整改验收单"


def test_an_assessment_is_announced_with_its_base_score(credit):
    code = credit.open_file()

    created = credit.assess(code).assessment

    [recorded] = credit.events(ev.AssessmentRecorded)
    assert recorded.subject == enterprise(code)
    assert (recorded.assessment_id, recorded.base_score, recorded.period) == (
        created.assessment_id,
        "100.0",
        "2026",
    )
    assert recorded.cycle == pb.ASSESSMENT_CYCLE_ANNUAL


# ---------------------------------------------------------------- races


def test_of_two_appeals_of_one_record_at_the_same_moment_exactly_one_commits(credit):
    code = credit.open_file()
    client = credit.enterprise(code)
    for _ in range(ROUNDS):
        record_id = credit.record(code, "COMPLAINT_VERIFIED").record.record_id
        request = pb.AppealRecordRequest(record_id=record_id, reason="投诉不实")

        results = at_once(*[partial(client.AppealRecord, request)] * 2)

        refusals = [r for r in results if not isinstance(r, pb.AppealRecordResponse)]
        assert len(refusals) == 1, results
        assert (refusals[0].code, refusals[0].reason) == (FAILED, "RECORD_NOT_APPEALABLE")
        assert record_ids(credit.events(ev.RecordAppealed)).count(record_id) == 1


def test_of_an_appeal_upheld_and_dismissed_at_the_same_moment_exactly_one_commits(credit):
    code = credit.open_file()
    authority = credit.authority()
    for _ in range(ROUNDS):
        record_id = credit.record(code, "COMPLAINT_VERIFIED").record.record_id
        credit.enterprise(code).AppealRecord(
            pb.AppealRecordRequest(record_id=record_id, reason="投诉不实")
        )

        upheld, dismissed = at_once(
            *(
                partial(
                    authority.DecideAppeal,
                    pb.DecideAppealRequest(record_id=record_id, uphold=uphold, reason="复核"),
                )
                for uphold in (True, False)
            )
        )

        decisions = [r for r in (upheld, dismissed) if isinstance(r, pb.DecideAppealResponse)]
        refusals = [r for r in (upheld, dismissed) if not isinstance(r, pb.DecideAppealResponse)]
        assert len(decisions) == len(refusals) == 1, (upheld, dismissed)
        assert (refusals[0].code, refusals[0].reason) == (FAILED, "APPEAL_NOT_PENDING")
        announced = [e for e in credit.events(ev.AppealDecided) if e.record.record_id == record_id]
        assert [e.upheld for e in announced] == [decisions[0] is upheld]


# ---------------------------------------------------------------- DOMAIN.md's rules


def test_an_exited_enterprise_with_a_serious_record_in_force_is_blacklisted(credit):
    code = credit.open_file()
    credit.deliver(credit.filing_approved(code, kind=registry_pb.FILING_KIND_EXIT))

    report = credit.record(code, "ADMINISTRATIVE_PENALTY").report

    assert (report.filed, report.grade, report.blacklisted) == (False, pb.GRADE_C_UNFILED, True)
    [listed] = credit.events(ev.Blacklisted)
    assert (listed.subject, listed.cause) == (enterprise(code), "a serious record in force")
    assert credit.admin.ListGrades(
        pb.ListGradesRequest(blacklisted_only=True, grade=pb.GRADE_C_UNFILED)
    ).grades[0].subject == enterprise(code)


def test_an_unfiled_exit_keeps_the_reason_the_registry_gave(credit):
    code = credit.open_file()
    exited = credit.exited(code, filed=False)
    exited.reason = "未办理退出手续擅自撤离"

    credit.deliver(exited, topic=PROJECT_TOPIC)

    [record] = credit.admin.report(code).records
    assert (record.record_type, record.reason) == ("UNFILED_EXIT", "未办理退出手续擅自撤离")
    [announced] = credit.events(ev.RecordAdded)
    assert announced.record.reason == "未办理退出手续擅自撤离"


def test_a_manual_record_keeps_the_request_id_answer(credit):
    """A retried RecordCreditEvent announces its record once."""
    code = credit.open_file()
    request = pb.RecordCreditEventRequest(
        request_id=request_id(),
        subject=enterprise(code),
        record_type="AWARD",
        evidence_reference="表彰文件",
        reason="年度优秀",
    )

    first = credit.admin.RecordCreditEvent(request)
    again = credit.admin.RecordCreditEvent(request)

    assert again == first
    assert record_ids(credit.events(ev.RecordAdded)) == [first.record.record_id]
