"""The credit service's gRPC API over a real socket and PostgreSQL: assessments, manual records,
appeals, rectification, reports (now and as of a moment) and the public list of grades, with who
may do what."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from test_credit_support import (
    DONGSHENG,
    KANGBASHI,
    RESIDENTIAL_MAX,
    assessment_request,
    credit_servers,
    enterprise,
    new_credit_code,
    request_id,
    timestamp,
)

from wuye.core.auth import Role
from wuye.credit.v1 import credit_service_pb2 as pb
from wuye.credit.v1 import events_pb2 as ev
from wuye.registry.v1 import events_pb2 as registry_events

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
FAILED = grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture
def start_credit(make_settings):
    with credit_servers(make_settings) as start:
        yield start


@pytest.fixture
def credit(start_credit):
    return start_credit()


# ---------------------------------------------------------------- assessments


def test_an_assessment_becomes_the_base_score_in_place_of_the_default(credit):
    code = credit.open_file()
    scores = {**RESIDENTIAL_MAX, "R04": "8", "R08": "8.5"}  # 100 - 8 - 7.5

    created = credit.authority().CreateAssessment(assessment_request(code, scores))

    assessment, report = created.assessment, created.report
    assert assessment.assessment_id.startswith(f"{DONGSHENG}-S")
    assert assessment.base_score == "84.5"
    assert assessment.HasField("assess_time")
    assert (report.base.assessment_id, report.base.score) == (assessment.assessment_id, "84.5")
    assert (report.score, report.grade) == ("84.5", pb.GRADE_AA)
    assert report.explanation.startswith(f"assessment {assessment.assessment_id} 84.5 + ")
    assert credit.admin.report(code).base == report.base


def test_a_retried_assessment_is_made_once(credit):
    code = credit.open_file()
    request = assessment_request(code, {**RESIDENTIAL_MAX, "R01": "0"})
    authority = credit.authority()

    first = authority.CreateAssessment(request)
    before = credit.outbox_count()
    second = authority.CreateAssessment(request)

    assert second == first
    assert credit.outbox_count() == before


def test_reaching_aaa_through_an_assessment_puts_the_enterprise_on_the_red_list(credit):
    code = credit.open_file()

    report = credit.assess(code).report

    assert (report.score, report.grade) == ("100.0", pb.GRADE_AAA)
    assert report.red_listed and not report.blacklisted
    [red] = credit.events(ev.RedListed)
    assert (red.subject, red.district_code) == (enterprise(code), DONGSHENG)
    assert red.sequence == credit.events(ev.GradeChanged)[-1].change.sequence
    assert credit.events(ev.Blacklisted) == []


def test_an_assessment_must_score_every_item_within_its_maximum(credit):
    code = credit.open_file()
    scores = {k: v for k, v in RESIDENTIAL_MAX.items() if k != "R07"}
    scores["R04"] = "16.5"

    failure = credit.admin.fails("CreateAssessment", assessment_request(code, scores))

    assert failure.code == INVALID
    problems = failure.violations["assessment.scores"]
    assert "R07" in failure.message and "R04" in failure.message, problems


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            lambda r: r.assessment.scores.append(pb.ChecklistScore(item_id="X9", score="1")),
            "scores",
        ),
        (lambda r: setattr(r.assessment.scores[0], "score", "8.25"), "scores[0].score"),
        (lambda r: setattr(r.assessment.scores[0], "score", "ten"), "scores[0].score"),
        (lambda r: setattr(r.assessment.scores[1], "item_id", "R01"), "scores[1].item_id"),
        (lambda r: setattr(r.assessment, "period", "2026H1"), "period"),
        (lambda r: setattr(r.assessment, "cycle", 0), "cycle"),
        (lambda r: setattr(r.assessment, "checklist", 0), "checklist"),
        (lambda r: setattr(r.assessment.assessors[0], "unit", 99), "assessors[0].unit"),
        (lambda r: setattr(r.assessment.assessors[0], "name", " "), "assessors[0].name"),
        (lambda r: setattr(r.assessment.subject, "kind", 0), "subject.kind"),
        (lambda r: setattr(r.assessment.subject, "id", "91150602MA0N00001X"), "subject.id"),
    ],
)
def test_an_invalid_assessment_is_refused_naming_the_field(credit, change, field):
    request = assessment_request(credit.open_file())
    change(request)

    failure = credit.admin.fails("CreateAssessment", request)

    assert failure.code == INVALID
    assert f"assessment.{field}" in failure.violations, failure.violations


def test_an_assessment_group_without_the_housing_authority_is_refused(credit):
    code = credit.open_file()
    units = (pb.ASSESSOR_UNIT_SUB_DISTRICT, pb.ASSESSOR_UNIT_TAX, pb.ASSESSOR_UNIT_OWNERS)
    too_few = (pb.ASSESSOR_UNIT_HOUSING_AUTHORITY, pb.ASSESSOR_UNIT_OWNERS)

    without = credit.admin.fails("CreateAssessment", assessment_request(code, units=units))
    small = credit.admin.fails("CreateAssessment", assessment_request(code, units=too_few))

    assert without.code == INVALID
    assert "housing authority" in without.violations["assessment.assessors"]
    assert small.code == INVALID
    assert "at least 3" in small.violations["assessment.assessors"]
    assert list(credit.admin.report(code).records) == []
    assert credit.admin.report(code).base.assessment_id == ""


def test_only_authorities_assess_and_only_in_their_districts(credit):
    code = credit.open_file()

    by_enterprise = credit.enterprise(code).fails("CreateAssessment", assessment_request(code))
    elsewhere = credit.authority(KANGBASHI).fails("CreateAssessment", assessment_request(code))
    unknown = credit.admin.fails("CreateAssessment", assessment_request(new_credit_code()))

    assert by_enterprise.code == DENIED
    assert (elsewhere.code, elsewhere.reason) == (DENIED, "DISTRICT_OUT_OF_SCOPE")
    assert (unknown.code, unknown.reason) == (grpc.StatusCode.NOT_FOUND, "NO_CREDIT_FILE")


# ---------------------------------------------------------------- manual records


def test_an_authority_records_a_good_record_with_its_evidence(credit):
    code = credit.open_file()

    recorded = credit.record(code, "AWARD", credit.authority())

    record, report = recorded.record, recorded.report
    assert (record.record_type, record.direction, record.points) == (
        "AWARD",
        pb.DIRECTION_GOOD,
        "5.0",
    )
    assert record.evidence_reference.startswith("东住建罚字")
    assert record.reason == "检查发现"
    assert record.source == f"district_authority:authority-{DONGSHENG}"
    assert record.status == pb.RECORD_STATUS_ACTIVE
    assert (report.score, report.good_points, report.grade) == ("75.0", "5.0", pb.GRADE_A)
    assert list(credit.admin.report(code).records) == [record]


def test_a_serious_record_blacklists_even_with_a_high_score(credit):
    code = credit.open_file()
    credit.assess(code)

    report = credit.record(code, "ADMINISTRATIVE_PENALTY").report

    assert (report.score, report.grade) == ("85.0", pb.GRADE_AAA)
    assert report.blacklisted and not report.red_listed
    [record] = report.records
    assert record.severity == pb.SEVERITY_SERIOUS and not record.HasField("expire_time")
    [blacklisted] = credit.events(ev.Blacklisted)
    assert blacklisted.cause == "a serious record in force"
    assert credit.events(ev.GradeChanged)[-1].change.blacklisted


def test_blacklisted_is_announced_on_entering_the_blacklist_only(credit):
    code = credit.open_file()

    credit.record(code, "ADMINISTRATIVE_PENALTY")
    credit.record(code, "ADMINISTRATIVE_PENALTY")
    credit.record(code, "AWARD")

    assert len(credit.events(ev.Blacklisted)) == 1
    assert len(credit.events(ev.GradeChanged)) == 4


def test_a_retried_manual_record_is_recorded_once(credit):
    code = credit.open_file()
    request = pb.RecordCreditEventRequest(
        request_id=request_id(),
        subject=enterprise(code),
        record_type="COMPLAINT_VERIFIED",
        evidence_reference="投诉核实单 3 号",
        reason="投诉属实",
    )

    first = credit.admin.RecordCreditEvent(request)
    second = credit.admin.RecordCreditEvent(request)
    request.reason = "另一件事"
    reused = credit.admin.fails("RecordCreditEvent", request)

    assert second == first
    assert [r.record_id for r in credit.admin.report(code).records] == [first.record.record_id]
    assert (reused.code, reused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


def test_concurrent_records_of_one_enterprise_each_count_and_are_announced_in_order(credit):
    code = credit.open_file()
    authority = credit.authority()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: credit.record(code, "AWARD", authority), range(8)))

    report = credit.admin.report(code)
    assert (report.score, len(report.records)) == ("110.0", 8)
    feed = credit.admin.ExportCreditFeed(pb.ExportCreditFeedRequest()).changes
    assert [c.score for c in feed] == [f"{70 + 5 * n}.0" for n in range(9)]
    assert [e.change for e in credit.events(ev.GradeChanged)] == list(feed)


def test_a_penalty_dropping_the_score_below_60_blacklists_for_grade_c(credit):
    code = credit.open_file()

    report = credit.record(code, "ADMINISTRATIVE_PENALTY").report

    assert (report.score, report.grade, report.blacklisted) == ("55.0", pb.GRADE_C, True)
    [blacklisted] = credit.events(ev.Blacklisted)
    assert blacklisted.cause == "grade C"


@pytest.mark.parametrize("record_type", ["UNFILED_EXIT", "ALARM_ESCALATED", "NOPE", ""])
def test_only_manual_record_types_are_recorded_by_hand(credit, record_type):
    code = credit.open_file()

    failure = credit.admin.fails(
        "RecordCreditEvent",
        pb.RecordCreditEventRequest(
            request_id=request_id(),
            subject=enterprise(code),
            record_type=record_type,
            evidence_reference="E-1",
            reason="r",
        ),
    )

    assert failure.code == INVALID
    assert "AWARD" in failure.violations["record_type"]
    assert "UNFILED_EXIT" not in failure.violations["record_type"]


def test_a_manual_record_needs_evidence_a_reason_and_a_past_time(credit):
    code = credit.open_file()
    request = pb.RecordCreditEventRequest(
        subject=enterprise(code),
        record_type="AWARD",
        occur_time=timestamp(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)),
    )

    failure = credit.admin.fails("RecordCreditEvent", request)

    assert failure.code == INVALID
    assert {"request_id", "evidence_reference", "reason", "occur_time"} <= set(failure.violations)


def test_a_record_dated_in_the_past_counts_from_then(credit):
    code = credit.open_file()
    a_year_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=366)
    request = pb.RecordCreditEventRequest(
        request_id=request_id(),
        subject=enterprise(code),
        record_type="CONTRACT_BREACH",
        evidence_reference="合同纠纷判决书",
        reason="违约",
        occur_time=timestamp(a_year_ago),
    )

    recorded = credit.admin.RecordCreditEvent(request)

    assert recorded.record.status == pb.RECORD_STATUS_EXPIRED
    assert (recorded.report.grade, list(recorded.report.records)) == (pb.GRADE_A, [])
    assert [r.record_type for r in recorded.report.past_records] == ["CONTRACT_BREACH"]


@pytest.mark.parametrize("role", [Role.ENTERPRISE, Role.INSPECTOR, Role.SERVICE, Role.SUB_DISTRICT])
def test_only_authorities_record_credit_events(credit, role):
    code = credit.open_file()

    failure = credit.client(role, code).fails(
        "RecordCreditEvent",
        pb.RecordCreditEventRequest(
            request_id=request_id(),
            subject=enterprise(code),
            record_type="AWARD",
            evidence_reference="E-1",
            reason="r",
        ),
    )

    assert (failure.code, failure.reason) == (DENIED, "ROLE_NOT_ALLOWED")
    assert list(credit.admin.report(code).records) == []


def test_an_authority_records_only_in_its_districts(credit):
    code = credit.open_file(KANGBASHI)

    failure = credit.authority(DONGSHENG).fails(
        "RecordCreditEvent",
        pb.RecordCreditEventRequest(
            request_id=request_id(),
            subject=enterprise(code),
            record_type="AWARD",
            evidence_reference="E-1",
            reason="r",
        ),
    )

    assert (failure.code, failure.reason) == (DENIED, "DISTRICT_OUT_OF_SCOPE")


# ---------------------------------------------------------------- appeals


def _bad_record(credit, code: str) -> pb.CreditRecord:
    return credit.record(code, "CONTRACT_BREACH").record


def test_an_enterprise_appeals_its_own_record_and_no_other(credit):
    code, other = credit.open_file(), credit.open_file()
    record = _bad_record(credit, code)

    by_other = credit.enterprise(other).fails(
        "AppealRecord", pb.AppealRecordRequest(record_id=record.record_id, reason="不是我们")
    )
    appealed = credit.enterprise(code).AppealRecord(
        pb.AppealRecordRequest(record_id=record.record_id, reason="已按合同履行")
    )
    twice = credit.enterprise(code).fails(
        "AppealRecord", pb.AppealRecordRequest(record_id=record.record_id, reason="再次申诉")
    )

    assert (by_other.code, by_other.reason) == (DENIED, "NOT_YOUR_RECORD")
    assert appealed.record.status == pb.RECORD_STATUS_APPEALED
    assert appealed.record.appeal_reason == "已按合同履行"
    assert (twice.code, twice.reason) == (FAILED, "RECORD_NOT_APPEALABLE")
    # While appealed, it still counts.
    report = credit.admin.report(code)
    assert report.grade == pb.GRADE_B
    assert [r.status for r in report.records] == [pb.RECORD_STATUS_APPEALED]


def test_a_good_record_is_not_appealed(credit):
    code = credit.open_file()
    award = credit.record(code, "AWARD").record

    failure = credit.enterprise(code).fails(
        "AppealRecord", pb.AppealRecordRequest(record_id=award.record_id, reason="?")
    )

    assert (failure.code, failure.reason) == (FAILED, "RECORD_NOT_APPEALABLE")


def test_appealing_an_unknown_record_is_not_found(credit):
    failure = credit.admin.fails(
        "AppealRecord", pb.AppealRecordRequest(record_id=f"{DONGSHENG}-Rnosuchrecord", reason="x")
    )

    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "RECORD_NOT_FOUND")


def test_an_upheld_appeal_removes_the_record_and_restores_the_grade(credit):
    code = credit.open_file()
    record = _bad_record(credit, code)
    credit.enterprise(code).AppealRecord(
        pb.AppealRecordRequest(record_id=record.record_id, reason="证据不足")
    )

    decided = credit.authority().DecideAppeal(
        pb.DecideAppealRequest(record_id=record.record_id, uphold=True, reason="证据不足,撤销")
    )

    assert decided.record.status == pb.RECORD_STATUS_REMOVED
    assert decided.record.appeal_decision == "证据不足,撤销"
    report = credit.admin.report(code)
    assert (report.grade, report.score, list(report.records)) == (pb.GRADE_A, "70.0", [])
    assert [(r.record_id, r.status) for r in report.past_records] == [
        (record.record_id, pb.RECORD_STATUS_REMOVED)
    ]
    last = credit.events(ev.GradeChanged)[-1].change
    assert (last.previous_grade, last.grade) == (pb.GRADE_B, pb.GRADE_A)


def test_a_dismissed_appeal_keeps_the_record_and_is_decided_once(credit):
    code = credit.open_file()
    record = _bad_record(credit, code)
    credit.enterprise(code).AppealRecord(
        pb.AppealRecordRequest(record_id=record.record_id, reason="不服")
    )
    before = credit.outbox_count()

    decided = credit.authority().DecideAppeal(
        pb.DecideAppealRequest(record_id=record.record_id, uphold=False, reason="证据确凿")
    )
    again = credit.authority().fails(
        "DecideAppeal",
        pb.DecideAppealRequest(record_id=record.record_id, uphold=True, reason="改判"),
    )

    assert decided.record.status == pb.RECORD_STATUS_ACTIVE
    assert (decided.report.grade, decided.report.score) == (pb.GRADE_B, "60.0")
    assert (again.code, again.reason) == (FAILED, "APPEAL_NOT_PENDING")
    assert credit.admin.report(code).grade == pb.GRADE_B
    # The decision is announced once; the standing did not change, so no grade event.
    assert credit.outbox_count() == before + 1
    [announced] = credit.events(ev.AppealDecided)
    assert (announced.record.record_id, announced.upheld) == (record.record_id, False)
    assert announced.record.appeal_decision == "证据确凿"


def test_only_authorities_decide_appeals_and_only_pending_ones(credit):
    code = credit.open_file()
    record = _bad_record(credit, code)
    request = pb.DecideAppealRequest(record_id=record.record_id, uphold=True, reason="x")

    not_appealed = credit.admin.fails("DecideAppeal", request)
    credit.enterprise(code).AppealRecord(
        pb.AppealRecordRequest(record_id=record.record_id, reason="不服")
    )
    by_enterprise = credit.enterprise(code).fails("DecideAppeal", request)
    elsewhere = credit.authority(KANGBASHI).fails("DecideAppeal", request)

    assert (not_appealed.code, not_appealed.reason) == (FAILED, "APPEAL_NOT_PENDING")
    assert (by_enterprise.code, by_enterprise.reason) == (DENIED, "ROLE_NOT_ALLOWED")
    assert elsewhere.code == DENIED
    assert credit.admin.report(code).grade == pb.GRADE_B


# ---------------------------------------------------------------- rectification


def test_rectifying_a_serious_record_ends_the_blacklisting(credit):
    code = credit.open_file()
    credit.assess(code)
    penalty = credit.record(code, "ADMINISTRATIVE_PENALTY").record

    rectified = credit.authority().MarkRectified(
        pb.MarkRectifiedRequest(record_id=penalty.record_id, evidence_reference="整改验收单 12 号")
    )

    assert rectified.record.status == pb.RECORD_STATUS_EXPIRED
    assert rectified.record.HasField("rectify_time")
    assert rectified.record.evidence_reference == "整改验收单 12 号"
    report = credit.admin.report(code)
    assert (report.blacklisted, report.red_listed, report.score) == (False, True, "100.0")
    assert [r.record_id for r in report.past_records] == [penalty.record_id]
    # Red-listed by the assessment, off while blacklisted, back on once rectified.
    assert len(credit.events(ev.RedListed)) == 2
    assert len(credit.events(ev.Blacklisted)) == 1


def test_only_a_serious_record_in_force_is_rectified(credit):
    code = credit.open_file()
    normal = _bad_record(credit, code)
    penalty = credit.record(code, "ADMINISTRATIVE_PENALTY").record
    authority = credit.authority()
    authority.MarkRectified(
        pb.MarkRectifiedRequest(record_id=penalty.record_id, evidence_reference="整改验收单")
    )

    for record_id in (normal.record_id, penalty.record_id):
        request = pb.MarkRectifiedRequest(record_id=record_id, evidence_reference="整改验收单")
        failure = authority.fails("MarkRectified", request)
        assert (failure.code, failure.reason) == (FAILED, "RECORD_NOT_RECTIFIABLE")
    by_enterprise = credit.enterprise(code).fails(
        "MarkRectified",
        pb.MarkRectifiedRequest(record_id=penalty.record_id, evidence_reference="x"),
    )
    assert by_enterprise.code == DENIED


# ---------------------------------------------------------------- reports


def test_an_enterprise_reads_its_own_report_and_no_other(credit):
    code, other = credit.open_file(), credit.open_file()

    own = credit.enterprise(code).report(code)
    refused = credit.enterprise(code).fails(
        "GetCreditReport", pb.GetCreditReportRequest(subject=enterprise(other))
    )
    anonymous = credit.anonymous.fails(
        "GetCreditReport", pb.GetCreditReportRequest(subject=enterprise(code))
    )

    assert (own.subject.id, own.grade) == (code, pb.GRADE_A)
    assert (refused.code, refused.reason) == (DENIED, "NOT_YOUR_REPORT")
    assert anonymous.code == grpc.StatusCode.UNAUTHENTICATED


def test_inspectors_and_services_read_any_report_in_their_districts(credit):
    code = credit.open_file()

    by_inspector = credit.client(Role.INSPECTOR, "inspector-1", [DONGSHENG]).report(code)
    by_service = credit.client(Role.SERVICE, "tenders").report(code)
    elsewhere = credit.authority(KANGBASHI).fails(
        "GetCreditReport", pb.GetCreditReportRequest(subject=enterprise(code))
    )

    assert by_inspector.grade == by_service.grade == pb.GRADE_A
    assert (elsewhere.code, elsewhere.reason) == (DENIED, "DISTRICT_OUT_OF_SCOPE")


def test_a_report_without_a_file_is_not_found(credit):
    failure = credit.admin.fails(
        "GetCreditReport", pb.GetCreditReportRequest(subject=enterprise(new_credit_code()))
    )

    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "NO_CREDIT_FILE")


def test_a_report_as_of_a_past_moment_shows_the_grade_then(credit):
    code = credit.open_file()
    credit.clock.advance(days=10)
    filed_a_while = credit.clock()
    credit.clock.advance(days=10)
    credit.exit_project(code)
    credit.clock.advance(days=10)

    now = credit.admin.report(code)
    then = credit.admin.report(code, as_of=filed_a_while)
    before_filing = credit.admin.report(code, as_of=filed_a_while - dt.timedelta(days=11))

    assert (now.grade, len(now.records)) == (pb.GRADE_B, 1)
    assert (then.grade, then.score, list(then.records)) == (pb.GRADE_A, "70.0", [])
    assert then.as_of == timestamp(filed_a_while)
    assert before_filing.grade == pb.GRADE_C_UNFILED


def test_a_report_as_of_the_future_is_refused(credit):
    code = credit.open_file()
    request = pb.GetCreditReportRequest(
        subject=enterprise(code), as_of=timestamp(credit.clock() + dt.timedelta(days=1))
    )

    failure = credit.admin.fails("GetCreditReport", request)

    assert failure.code == INVALID and "as_of" in failure.violations


# ---------------------------------------------------------------- the public list of grades


def _grades(client, **filters) -> list[pb.GradeSummary]:
    return list(client.ListGrades(pb.ListGradesRequest(**filters)).grades)


def test_anyone_reads_enterprises_grades_without_a_token(credit):
    codes = sorted(credit.open_file() for _ in range(2))
    credit.exit_project(codes[1])

    grades = _grades(credit.anonymous)

    assert [(g.subject.id, g.grade, g.score) for g in grades] == [
        (codes[0], pb.GRADE_A, "70.0"),
        (codes[1], pb.GRADE_B, "60.0"),
    ]
    assert all(g.subject.kind == pb.SUBJECT_KIND_ENTERPRISE for g in grades)
    assert grades[0].name == f"鄂尔多斯{codes[0][-4:]}物业服务有限公司"
    assert grades[0].HasField("update_time")


def test_grades_filter_by_district_grade_blacklist_and_red_list(credit):
    plain = credit.open_file()
    red = credit.open_file()
    credit.assess(red)
    black = credit.open_file()
    credit.record(black, "ADMINISTRATIVE_PENALTY")
    elsewhere = credit.open_file(KANGBASHI)

    def ids(**filters) -> list[str]:
        return sorted(g.subject.id for g in _grades(credit.anonymous, **filters))

    assert ids() == sorted([plain, red, black, elsewhere])
    assert ids(district_code=KANGBASHI) == [elsewhere]
    assert ids(district_code=DONGSHENG) == sorted([plain, red, black])
    assert ids(grade=pb.GRADE_A) == sorted([plain, elsewhere])
    assert ids(grade=pb.GRADE_AAA) == [red]
    assert ids(red_listed_only=True) == [red]
    assert ids(blacklisted_only=True) == [black]
    assert ids(grade=pb.GRADE_C, blacklisted_only=True, district_code=DONGSHENG) == [black]
    assert ids(grade=pb.GRADE_AA) == []


def test_grades_come_in_pages(credit):
    codes = sorted(credit.open_file() for _ in range(5))

    seen, token, pages = [], "", 0
    while True:
        page = credit.anonymous.ListGrades(
            pb.ListGradesRequest(grade=pb.GRADE_A, page_size=2, page_token=token)
        )
        seen += [g.subject.id for g in page.grades]
        pages += 1
        token = page.next_page_token
        if not token:
            break
        assert pages < 10

    assert (seen, pages) == (codes, 3)
    other_filters = credit.anonymous.fails(
        "ListGrades",
        pb.ListGradesRequest(
            grade=pb.GRADE_B,
            page_size=2,
            page_token=credit.anonymous.ListGrades(
                pb.ListGradesRequest(grade=pb.GRADE_A, page_size=2)
            ).next_page_token,
        ),
    )
    assert other_filters.code == INVALID and "page_token" in other_filters.violations


def test_practitioners_grades_are_for_authorities_only(credit):
    person_key = "f" * 32
    credit.deliver(
        registry_events.PractitionerRegistered(
            practitioner_id=f"{DONGSHENG}-P0123456789ab",
            person_key=person_key,
            credit_code=new_credit_code(),
            district_code=DONGSHENG,
        ),
        topic="wuye.registry.practitioner.v1",
    )
    request = pb.ListGradesRequest(subject_kind=pb.SUBJECT_KIND_PRACTITIONER)

    anonymous = credit.anonymous.fails("ListGrades", request)
    by_enterprise = credit.enterprise(new_credit_code()).fails("ListGrades", request)
    by_authority = list(credit.authority().ListGrades(request).grades)

    assert (anonymous.code, anonymous.reason) == (DENIED, "PRACTITIONER_GRADES_RESTRICTED")
    assert by_enterprise.code == DENIED
    assert [(g.subject.kind, g.subject.id) for g in by_authority] == [
        (pb.SUBJECT_KIND_PRACTITIONER, person_key)
    ]
    # And the public list of enterprises does not show them.
    assert _grades(credit.anonymous) == []


def test_listing_grades_of_an_unknown_district_or_grade_is_refused(credit):
    unknown_district = credit.anonymous.fails("ListGrades", pb.ListGradesRequest(district_code="9"))
    unknown_grade = credit.anonymous.fails("ListGrades", pb.ListGradesRequest(grade=42))
    negative = credit.anonymous.fails("ListGrades", pb.ListGradesRequest(page_size=-1))

    assert unknown_district.code == INVALID and "district_code" in unknown_district.violations
    assert unknown_grade.code == INVALID and "grade" in unknown_grade.violations
    assert negative.code == INVALID and "page_size" in negative.violations


def test_an_instance_serving_one_district_refuses_the_others(start_credit):
    credit = start_credit(districts=(DONGSHENG,))
    code = credit.open_file(DONGSHENG)

    listed = _grades(credit.anonymous, district_code=DONGSHENG)
    failure = credit.anonymous.fails("ListGrades", pb.ListGradesRequest(district_code=KANGBASHI))

    assert [g.subject.id for g in listed] == [code]
    assert (failure.code, failure.reason) == (FAILED, "DISTRICT_NOT_SERVED")
