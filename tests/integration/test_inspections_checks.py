"""Checks, rectification and publication against real PostgreSQL, through the gRPC API: an
assigned inspector scores a drawn project against the checklist of its type, findings open
rectification orders with deadlines, re-inspection closes or keeps them, the overdue timer
announces each overdue order once, results are published without a token, and the district
assessment rolls it all up."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.type import date_pb2
from test_inspections_support import (
    DONGSHENG,
    KANGBASHI,
    date,
    inspections_servers,
    new_credit_code,
    scores,
)

from wuye.core.auth import Role
from wuye.credit.v1 import credit_service_pb2 as credit_pb
from wuye.inspections.commands import Inspections
from wuye.inspections.service import SPEC
from wuye.inspections.v1 import events_pb2 as ev
from wuye.inspections.v1 import inspections_service_pb2 as pb
from wuye.registry.v1 import registry_service_pb2 as registry_pb

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
OPEN = pb.RECTIFICATION_STATE_OPEN
OVERDUE = pb.RECTIFICATION_STATE_OVERDUE
CLOSED = pb.RECTIFICATION_STATE_CLOSED


# A fixed day, far from the ends of its half-year, so periods and deadlines never straddle one.
TODAY = dt.datetime(2026, 3, 10, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def inspections(make_settings):
    with inspections_servers(make_settings) as start:
        server = start()
        server.clock.set(TODAY)
        yield server


@pytest.fixture
def selection(inspections) -> pb.Selection:
    """A drawn check of a Dongsheng residential project, two inspectors assigned."""
    [drawn] = inspections.drawn_round(projects=1, inspectors=3).selections
    return drawn


# ---------------------------------------------------------------- recording a check


def test_the_assigned_inspector_records_a_check_and_it_is_announced(inspections, selection):
    first, second = selection.inspector_ids
    recorded = inspections.inspector(second).RecordCheck(
        pb.RecordCheckRequest(check_id=selection.check_id, scores=scores(R04="8", R08="12.5"))
    )

    check = recorded.check
    assert (check.check_id, check.project_id) == (selection.check_id, selection.project_id)
    assert list(check.inspector_ids) == [first, second]
    # (100 - 8 - 3.5) of 100 points
    assert check.score == "88.5"
    assert {s.item_id: s.score for s in check.scores}["R08"] == "12.5"
    assert check.record_time.seconds > 0
    assert list(recorded.rectifications) == []

    [announced] = inspections.events(ev.CheckRecorded)
    assert (announced.check_id, announced.project_id, announced.score, announced.findings) == (
        selection.check_id,
        selection.project_id,
        88.5,
        0,
    )
    assert announced.credit_code == check.credit_code != ""
    assert announced.district_code == DONGSHENG

    # Results stand: never recorded twice, not even by the other inspector.
    again = inspections.inspector(first).fails(
        "RecordCheck", pb.RecordCheckRequest(check_id=selection.check_id, scores=scores())
    )
    assert (again.code, again.reason) == (PRECONDITION, "CHECK_ALREADY_RECORDED")
    assert len(inspections.events(ev.CheckRecorded)) == 1


def test_only_the_inspectors_drawn_for_a_check_may_record_it(inspections, selection):
    request = pb.RecordCheckRequest(check_id=selection.check_id, scores=scores())
    not_drawn = inspections.register_inspector("insp-not-drawn").inspector_id
    refused = inspections.inspector(not_drawn).fails("RecordCheck", request)
    assert (refused.code, refused.reason) == (DENIED, "CHECK_NOT_ASSIGNED")
    # Refused before the request is checked: nothing of the checklist is told.
    empty = pb.RecordCheckRequest(check_id=selection.check_id)
    refused = inspections.inspector(not_drawn).fails("RecordCheck", empty)
    assert (refused.code, refused.reason) == (DENIED, "CHECK_NOT_ASSIGNED")
    # Drawn, but acting for another district.
    elsewhere = inspections.inspector(selection.inspector_ids[0], KANGBASHI)
    assert elsewhere.fails("RecordCheck", request).reason == "DISTRICT_OUT_OF_SCOPE"
    for role in (Role.ENTERPRISE, Role.SUB_DISTRICT, Role.SERVICE):
        assert inspections.client(role).fails("RecordCheck", request).reason == ("ROLE_NOT_ALLOWED")
    assert inspections.anonymous.fails("RecordCheck", request).code == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert inspections.events(ev.CheckRecorded) == []
    missing = inspections.admin.fails(
        "RecordCheck", pb.RecordCheckRequest(check_id=f"{DONGSHENG}-Kffffffffffff")
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "CHECK_NOT_FOUND")


def test_a_check_scores_every_item_of_its_checklist_within_its_maximum(inspections, selection):
    inspector = inspections.inspector(selection.inspector_ids[0])

    def violations(values, findings=()) -> dict[str, str]:
        refused = inspector.fails(
            "RecordCheck",
            pb.RecordCheckRequest(
                check_id=selection.check_id, scores=values, findings=list(findings)
            ),
        )
        assert refused.code == INVALID
        return refused.violations

    missing = violations(scores({"R01": "10", "R02": "12"}))
    assert missing == {"scores": "items not scored: R03, R04, R05, R06, R07, R08"}
    above = violations(scores(R04="16.5"))
    assert above == {"scores": "R04 scores 0 to 16, got 16.5"}
    # An office's items are not a residential project's.
    foreign = violations(scores(O01="5"))
    assert "'O01' is not an item of the residential checklist" in foreign["scores"]
    assert set(violations([*scores(), pb.ItemScore(item_id="R01", score="1")])) == {
        "scores[8].item_id"
    }
    assert set(violations(scores(R01="-1", R02="ten", R03="NaN", R05="1E-999999999"))) == {
        "scores[0].score",
        "scores[1].score",
        "scores[2].score",
        "scores[4].score",
    }
    today = inspections.clock.today()
    assert set(
        violations(
            scores(),
            [
                pb.Finding(item_id="O01", description="x"),
                pb.Finding(item_id="R04", description=""),
                pb.Finding(item_id="R04", description="过期", rectify_by=date(today)),
                pb.Finding(
                    item_id="R04",
                    description="无效日期",
                    rectify_by=date_pb2.Date(year=2026, month=2, day=30),
                ),
            ],
        )
    ) == {
        "findings[0].item_id",
        "findings[1].description",
        "findings[2].rectify_by",
        "findings[3].rectify_by",
    }
    too_many = [inspections.finding(days=None)] * (inspections.settings.max_findings + 1)
    assert "findings" in violations(scores(), too_many)
    assert inspections.events(ev.CheckRecorded, ev.RectificationOpened) == []


def test_a_project_is_scored_against_the_checklist_of_its_type(inspections):
    for _ in range(2):
        inspections.register_inspector()
    inspections.project(credit_code=None, project_type=registry_pb.PROJECT_TYPE_HOSPITAL)
    [selection] = inspections.draw(inspections.create_round(floor_rate="1").round_id).selections
    inspector = inspections.inspector(selection.inspector_ids[0])
    refused = inspector.fails(
        "RecordCheck", pb.RecordCheckRequest(check_id=selection.check_id, scores=scores())
    )
    # (One field, several violations: the message names each.)
    assert "'R01' is not an item of the hospital checklist" in refused.message
    assert "items not scored: H01, H02, H03, H04, H05, H06, H07, H08" in refused.message
    hospital = {f"H0{n}": "0" for n in range(1, 9)}
    assert (
        inspector.RecordCheck(
            pb.RecordCheckRequest(check_id=selection.check_id, scores=scores(hospital))
        ).check.score
        == "0.0"
    )


# ---------------------------------------------------------------- rectification


def test_findings_with_a_deadline_open_rectification_orders(inspections, selection):
    recorded = inspections.record(
        selection,
        scores(R04="6", R06="9"),
        [
            inspections.finding("R04", days=7),
            inspections.finding("R06", days=30),
            inspections.finding("R06", days=None),  # noted, nothing to rectify
        ],
    )
    orders = list(recorded.rectifications)
    assert [(o.item_id, o.state) for o in orders] == [("R04", OPEN), ("R06", OPEN)]
    today = inspections.clock.today()
    assert [o.rectify_by for o in orders] == [
        date(today + dt.timedelta(days=7)),
        date(today + dt.timedelta(days=30)),
    ]
    assert all(o.check_id == selection.check_id for o in orders)
    assert [f.item_id for f in recorded.check.findings] == ["R04", "R06", "R06"]
    assert not recorded.check.findings[2].HasField("rectify_by")

    opened = inspections.events(ev.RectificationOpened)
    assert [(e.order_id, e.rectify_by) for e in opened] == [
        (o.order_id, o.rectify_by) for o in orders
    ]
    [check] = inspections.events(ev.CheckRecorded)
    assert (check.score, check.findings) == (87.0, 3)

    listed = inspections.inspector(selection.inspector_ids[1]).ListRectifications(
        pb.ListRectificationsRequest(district_code=DONGSHENG, state=OPEN)
    )
    assert list(listed.rectifications) == sorted(orders, key=lambda o: o.order_id)


def test_reinspection_closes_an_order_or_keeps_it_open_with_a_new_deadline(inspections, selection):
    [order] = inspections.record(selection, findings=[inspections.finding()]).rectifications
    inspector = inspections.inspector(selection.inspector_ids[0])
    today = inspections.clock.today()

    no_deadline = inspector.fails(
        "RecordReinspection", pb.RecordReinspectionRequest(order_id=order.order_id)
    )
    assert set(no_deadline.violations) == {"rectify_by"}
    past = inspector.fails(
        "RecordReinspection",
        pb.RecordReinspectionRequest(order_id=order.order_id, rectify_by=date(today)),
    )
    assert set(past.violations) == {"rectify_by"}

    later = today + dt.timedelta(days=20)
    kept = inspector.RecordReinspection(
        pb.RecordReinspectionRequest(
            order_id=order.order_id, rectified=False, note="仍未整改", rectify_by=date(later)
        )
    ).rectification
    assert (kept.state, kept.rectify_by, kept.HasField("close_time")) == (
        OPEN,
        date(later),
        False,
    )
    assert inspections.events(ev.RectificationClosed) == []
    # The new deadline is announced: the enterprise and credit see it.
    [extended] = inspections.events(ev.RectificationExtended)
    assert (extended.order_id, extended.previous_rectify_by, extended.rectify_by) == (
        order.order_id,
        order.rectify_by,
        date(later),
    )
    assert extended.credit_code == order.credit_code != ""
    too_far = inspector.fails(
        "RecordReinspection",
        pb.RecordReinspectionRequest(
            order_id=order.order_id,
            rectify_by=date(
                today + dt.timedelta(days=inspections.settings.max_rectification_days + 1)
            ),
        ),
    )
    assert set(too_far.violations) == {"rectify_by"}

    closed = inspector.RecordReinspection(
        pb.RecordReinspectionRequest(order_id=order.order_id, rectified=True, note="已整改")
    ).rectification
    assert closed.state == CLOSED and closed.close_time.seconds > 0
    [announced] = inspections.events(ev.RectificationClosed)
    assert (announced.order_id, announced.credit_code) == (order.order_id, order.credit_code)

    again = inspector.fails(
        "RecordReinspection", pb.RecordReinspectionRequest(order_id=order.order_id, rectified=True)
    )
    assert (again.code, again.reason) == (PRECONDITION, "RECTIFICATION_CLOSED")
    missing = inspector.fails(
        "RecordReinspection",
        pb.RecordReinspectionRequest(order_id=f"{DONGSHENG}-Offffffffffff", rectified=True),
    )
    assert (missing.code, missing.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "RECTIFICATION_NOT_FOUND",
    )
    assert len(inspections.events(ev.RectificationClosed)) == 1


def test_an_order_past_its_deadline_becomes_overdue_and_is_announced_once(inspections, selection):
    [due, later] = inspections.record(
        selection, findings=[inspections.finding(days=3), inspections.finding("R06", days=10)]
    ).rectifications
    clock = inspections.clock
    timer = Inspections(inspections.engine, inspections.settings, clock=clock)
    assert timer.mark_overdue() == 0
    clock.advance(days=3)
    assert timer.mark_overdue() == 0  # due today: not late yet
    clock.advance(days=1)
    assert timer.mark_overdue() == 1
    assert timer.mark_overdue() == 0
    clock.advance(days=30)
    assert timer.mark_overdue() == 1

    overdue = inspections.events(ev.RectificationOverdue)
    assert [(e.order_id, e.rectify_by) for e in overdue] == [
        (due.order_id, due.rectify_by),
        (later.order_id, later.rectify_by),
    ]
    assert overdue[0].credit_code == due.credit_code != ""
    listed = inspections.admin.ListRectifications(
        pb.ListRectificationsRequest(district_code=DONGSHENG, state=OVERDUE)
    )
    assert [o.order_id for o in listed.rectifications] == [
        o.order_id for o in sorted([due, later], key=lambda o: o.order_id)
    ]

    # Rectified late, it still closes; the overdue record stays announced.
    closed = inspections.admin.RecordReinspection(
        pb.RecordReinspectionRequest(order_id=due.order_id, rectified=True)
    ).rectification
    assert closed.state == CLOSED
    assert timer.mark_overdue() == 0
    # The platform's timer (on the real clock) finds nothing more to announce either.
    [platform_timer] = SPEC.timers
    assert platform_timer.run(inspections.settings, inspections.engine) == 0
    assert len(inspections.events(ev.RectificationOverdue)) == 2


# ---------------------------------------------------------------- publication


def test_results_are_published_without_a_token_and_without_personal_data(inspections):
    drawn = inspections.drawn_round(projects=3, inspectors=2)
    by_project = {s.project_id: s for s in drawn.selections}
    for n, selection in enumerate(drawn.selections):
        findings = [inspections.finding("R04", days=None)] * n
        inspections.record(selection, scores(R04=str(16 - n)), findings)

    published = inspections.anonymous.ListPublishedResults(
        pb.ListPublishedResultsRequest(district_code=DONGSHENG)
    )
    results = list(published.results)
    assert len(results) == 3
    for result in results:
        selection = by_project[result.project_id]
        assert result.check_id == selection.check_id
        assert result.project_type == "RESIDENTIAL"
        assert result.record_time.seconds > 0
    assert sorted((r.score, r.findings, r.findings_summary) for r in results) == [
        ("100.0", 0, ""),
        ("98.0", 2, "R04"),
        ("99.0", 1, "R04"),
    ]
    # No inspector, no name, no description of what was found.
    raw = published.SerializeToString()
    for inspector in drawn.inspectors:
        assert inspector.inspector_id.encode() not in raw
        assert inspector.name.encode() not in raw
    assert "消防".encode() not in raw

    one = results[0]
    by_enterprise = inspections.anonymous.ListPublishedResults(
        pb.ListPublishedResultsRequest(credit_code=one.credit_code)
    )
    assert [r.check_id for r in by_enterprise.results] == [one.check_id]
    first = inspections.anonymous.ListPublishedResults(pb.ListPublishedResultsRequest(page_size=2))
    rest = inspections.anonymous.ListPublishedResults(
        pb.ListPublishedResultsRequest(page_size=2, page_token=first.next_page_token)
    )
    assert [r.check_id for r in [*first.results, *rest.results]] == sorted(
        r.check_id for r in results
    )
    assert rest.next_page_token == ""
    refused = inspections.anonymous.fails(
        "ListPublishedResults", pb.ListPublishedResultsRequest(credit_code="nonsense")
    )
    assert set(refused.violations) == {"credit_code"}
    assert not inspections.anonymous.ListPublishedResults(
        pb.ListPublishedResultsRequest(district_code=KANGBASHI)
    ).results


def test_the_assessment_report_rolls_up_a_district_over_its_period(inspections):
    good, poor = new_credit_code(), new_credit_code()
    for _ in range(2):
        inspections.register_inspector()
    for code in (good, good, poor):
        inspections.project(credit_code=code, grade=credit_pb.GRADE_A)
    inspections.project(credit_code="")  # self-managed: in the totals, not in the list
    drawn = inspections.draw(inspections.create_round(floor_rate="1").round_id)
    credit_of = {e.project_id: e.credit_code for e in drawn.entities}
    values = {good: ["R01", "R02"], poor: ["R04"], "": []}
    orders = []
    for selection in drawn.selections:
        code = credit_of[selection.project_id]
        items = values[code]
        values[code] = []  # the second check of `good` is clean
        zeroed = scores(**dict.fromkeys(items, "0"))
        recorded = inspections.record(
            selection, zeroed, [inspections.finding(i, days=5) for i in items]
        )
        orders += recorded.rectifications
    closed = next(o for o in orders if o.credit_code == good)
    inspections.admin.RecordReinspection(
        pb.RecordReinspectionRequest(order_id=closed.order_id, rectified=True)
    )
    inspections.clock.advance(days=6)
    assert (
        Inspections(
            inspections.engine, inspections.settings, clock=inspections.clock
        ).mark_overdue()
        == 2
    )
    inspections.clock.advance(days=-6)

    year = "2026"
    report = inspections.anonymous.GetAssessmentReport(
        pb.GetAssessmentReportRequest(district_code=DONGSHENG, period=year)
    ).report
    # Scores: good 78.0 and 100.0, poor 84.0, the self-managed project 100.0.
    assert (report.district_code, report.period, report.checks, report.average_score) == (
        DONGSHENG,
        year,
        4,
        "90.5",
    )
    assert (report.findings, report.rectifications_opened) == (3, 3)
    assert (report.rectifications_closed, report.rectifications_overdue) == (1, 2)
    assert [
        (e.credit_code, e.checks, e.average_score, e.findings, e.rectifications_overdue)
        for e in report.enterprises
    ] == [(poor, 1, "84.0", 1, 1), (good, 2, "89.0", 2, 1)]

    half = inspections.anonymous.GetAssessmentReport(
        pb.GetAssessmentReportRequest(district_code=DONGSHENG, period="2026H1")
    ).report
    assert (half.checks, half.average_score, half.rectifications_overdue) == (4, "90.5", 2)
    empty = inspections.anonymous.GetAssessmentReport(
        pb.GetAssessmentReportRequest(district_code=DONGSHENG, period="2026H2")
    ).report
    assert (empty.checks, empty.average_score, list(empty.enterprises)) == (0, "0", [])
    elsewhere = inspections.anonymous.GetAssessmentReport(
        pb.GetAssessmentReportRequest(district_code=KANGBASHI, period=year)
    ).report
    assert elsewhere.checks == 0
    refused = inspections.anonymous.fails(
        "GetAssessmentReport", pb.GetAssessmentReportRequest(period="2026Q1")
    )
    assert set(refused.violations) == {"district_code", "period"}


def test_report_periods_are_the_citys_calendar_not_utcs(inspections):
    # 17:00 UTC on 30 June is already 1 July, 01:00, in Ordos: the second half-year.
    inspections.clock.set(dt.datetime(2026, 6, 30, 17, tzinfo=dt.UTC))
    [selection] = inspections.drawn_round(projects=1, inspectors=2, period="2026H2").selections
    inspections.record(selection)

    def checks(period: str) -> int:
        return inspections.anonymous.GetAssessmentReport(
            pb.GetAssessmentReportRequest(district_code=DONGSHENG, period=period)
        ).report.checks

    assert (checks("2026H1"), checks("2026H2"), checks("2026")) == (0, 1, 1)
