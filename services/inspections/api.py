"""The gRPC face of inspections: requests in, use cases run, responses out."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from google.type import date_pb2

from wuye.core.auth import AUTHORITIES, Role, allow, public
from wuye.core.errors import Violations
from wuye.core.events import run_idempotent
from wuye.core.grpcserver import Route
from wuye.core.ids import credit_code_problem, resident_id_problem
from wuye.core.paging import next_token, read_page
from wuye.core.standards import checklist
from wuye.core.wire import check_request_id, check_text
from wuye.inspections import domain
from wuye.inspections.commands import Inspections, timestamp
from wuye.inspections.domain import (
    Check,
    Finding,
    Inspector,
    Rectification,
    RectificationState,
    Round,
)
from wuye.inspections.v1 import inspections_service_pb2 as pb
from wuye.inspections.v1 import inspections_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InspectionsService"].full_name

_AUTHORITY = tuple(AUTHORITIES)

ROUTES: dict[str, Route] = {
    "RegisterInspector": Route(allow(*_AUTHORITY)),
    "ListInspectors": Route(allow(*_AUTHORITY, Role.INSPECTOR), "district_code"),
    "CreateRound": Route(allow(*_AUTHORITY)),
    "DrawRound": Route(allow(*_AUTHORITY), "round_id"),
    # The draw is public (一公开): anyone may fetch and verify a round.
    "GetRound": Route(public(), "round_id"),
    "TriggerInspection": Route(allow(*_AUTHORITY, Role.SUB_DISTRICT), "project_id"),
    "RecordCheck": Route(allow(*_AUTHORITY, Role.INSPECTOR), "check_id"),
    "RecordReinspection": Route(allow(*_AUTHORITY, Role.INSPECTOR), "order_id"),
    "ListRectifications": Route(allow(*_AUTHORITY, Role.INSPECTOR, Role.SERVICE), "district_code"),
    "ListPublishedResults": Route(public(), "district_code"),
    "GetAssessmentReport": Route(public(), "district_code"),
}


def _decimal(v: Violations, field: str, text: str, places: int) -> Decimal | None:
    """A finite decimal number with at most `places` digits after the point, or None with a
    violation."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not text.isascii() or not value.is_finite() or value.as_tuple().exponent < -places:
        v.add(field, f"must be a decimal number, at most {places} decimal places")
        return None
    return value


def _bounded(
    v: Violations, field: str, text: str, low: Decimal, high: Decimal, places: int
) -> Decimal:
    value = _decimal(v, field, text, places)
    if value is None:
        return low
    if not v.check(low <= value <= high, field, f"must be from {low} to {high}"):
        return low
    return value


def _date(v: Violations, field: str, value: date_pb2.Date) -> dt.date | None:
    try:
        return dt.date(value.year, value.month, value.day)
    except ValueError:
        v.add(field, "is not a valid calendar date")
        return None


def _score(score: Decimal) -> str:
    return str(score.quantize(Decimal("0.1")))


def _to_date(day: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


class InspectionsApi(pb_grpc.InspectionsServiceServicer):
    def __init__(self, inspections: Inspections) -> None:
        self._inspections = inspections
        self._settings = inspections.settings
        self._city = dict(inspections.settings.city_districts)

    def _text(
        self, v: Violations, field: str, value: str, required: bool = True, limit: int = 0
    ) -> None:
        check_text(v, field, value, limit or self._settings.max_text_length, required)

    def _districts(self, v: Violations, field: str, codes) -> tuple[str, ...]:
        v.check(0 < len(codes) <= len(self._city), field, "name at least one district")
        for i, code in enumerate(codes):
            v.check(code in self._city, f"{field}[{i}]", f"{code[:10]!r} is not a district")
        return tuple(dict.fromkeys(codes))

    def _page(self, request, filters):
        return read_page(
            request.page_size,
            request.page_token,
            filters,
            self._settings.page_size_default,
            self._settings.page_size_max,
        )

    # ------------------------------------------------------------ inspectors

    def RegisterInspector(self, request: pb.RegisterInspectorRequest, context):
        v = Violations()
        i = request.inspector
        limits = self._settings
        self._text(
            v, "inspector.inspector_id", i.inspector_id, limit=limits.max_inspector_id_length
        )
        self._text(v, "inspector.name", i.name)
        self._text(v, "inspector.unit", i.unit)
        districts = self._districts(v, "inspector.district_codes", i.district_codes)
        for n, code in enumerate(i.conflicts[: limits.max_conflicts]):
            problem = credit_code_problem(code)
            v.check(
                problem is None, f"inspector.conflicts[{n}]", f"is not a credit code: {problem}"
            )
        v.check(
            len(i.conflicts) <= limits.max_conflicts,
            "inspector.conflicts",
            f"at most {limits.max_conflicts}",
        )
        for n, relative in enumerate(i.relatives[: limits.max_relatives]):
            # The problem is named, never the number: it is personal data.
            problem = resident_id_problem(relative.id_number)
            v.check(
                problem is None,
                f"inspector.relatives[{n}].id_number",
                f"is not a resident ID number: {problem}",
            )
        v.check(
            len(i.relatives) <= limits.max_relatives,
            "inspector.relatives",
            f"at most {limits.max_relatives}",
        )
        v.raise_if_any()
        inspector, masked = self._inspections.register_inspector(
            Inspector(i.inspector_id, i.name, i.unit, districts, tuple(dict.fromkeys(i.conflicts))),
            list(dict.fromkeys(r.id_number for r in i.relatives)),
        )
        return pb.RegisterInspectorResponse(inspector=_inspector(inspector, masked))

    def ListInspectors(self, request: pb.ListInspectorsRequest, context):
        page = self._page(request, [request.district_code])
        found = self._inspections.list_inspectors(request.district_code, page.after, page.size + 1)
        return pb.ListInspectorsResponse(
            inspectors=[_inspector(i, masked) for i, masked in found[: page.size]],
            next_page_token=next_token(page, [i.inspector_id for i, _ in found]),
        )

    # ------------------------------------------------------------ rounds

    def CreateRound(self, request: pb.CreateRoundRequest, context) -> pb.CreateRoundResponse:
        v = Violations()
        check_request_id(v, request.request_id)
        districts = self._districts(v, "district_codes", request.district_codes)
        domain.check_period(request.period, v, "period")
        places = self._settings.max_decimal_places
        rates = domain.merge_rates(
            self._settings.sampling_rates,
            [
                (n, r.grade, _decimal(v, f"rates[{n}].rate", r.rate, places))
                for n, r in enumerate(request.rates)
            ],
            v,
            "rates",
        )
        floor = domain.round_floor(
            request.period,
            self._settings.yearly_floor_rate,
            _decimal(v, "floor_rate", request.floor_rate, places) if request.floor_rate else None,
            v,
            "floor_rate",
        )
        per_check = domain.inspectors_per_check(
            request.inspectors_per_check,
            self._settings.inspectors_per_check,
            self._settings.max_inspectors_per_check,
            v,
            "inspectors_per_check",
        )
        v.raise_if_any()

        def build(connection):
            created = self._inspections.create_round(
                connection,
                districts=districts,
                period=request.period,
                rates=rates,
                floor_rate=floor,
                inspectors_per_check=per_check,
            )
            return pb.CreateRoundResponse(round=round_message(created))

        return run_idempotent(
            self._inspections.engine,
            pii_key=self._settings.pii_key,
            method="CreateRound",
            request_id=request.request_id,
            request=request,
            response_type=pb.CreateRoundResponse,
            command=build,
        )

    def DrawRound(self, request: pb.DrawRoundRequest, context) -> pb.DrawRoundResponse:
        drawn = self._inspections.draw_round(request.round_id)
        return pb.DrawRoundResponse(round=round_message(drawn))

    def GetRound(self, request: pb.GetRoundRequest, context) -> pb.GetRoundResponse:
        found = self._inspections.get_round(request.round_id)
        return pb.GetRoundResponse(round=round_message(found))

    def TriggerInspection(self, request: pb.TriggerInspectionRequest, context):
        v = Violations()
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        pending = self._inspections.trigger(request.project_id, request.reason)
        return pb.TriggerInspectionResponse(project_id=request.project_id, pending_triggers=pending)

    # ------------------------------------------------------------ checks

    def RecordCheck(self, request: pb.RecordCheckRequest, context) -> pb.RecordCheckResponse:
        check = self._inspections.check_to_record(request.check_id)
        standard = checklist(check.project_type.lower())
        v = Violations()
        settings = self._settings
        scores: dict[str, Decimal] = {}
        for n, item in enumerate(request.scores[: len(standard.items) + 1]):
            v.check(item.item_id not in scores, f"scores[{n}].item_id", "is scored twice")
            scores[item.item_id] = _bounded(
                v,
                f"scores[{n}].score",
                item.score,
                Decimal(0),
                standard.max_total,
                settings.max_decimal_places,
            )
        v.check(
            len(request.findings) <= settings.max_findings,
            "findings",
            f"at most {settings.max_findings}",
        )
        findings = []
        for n, finding in enumerate(request.findings[: settings.max_findings]):
            self._text(
                v,
                f"findings[{n}].description",
                finding.description,
                limit=settings.max_description_length,
            )
            by = None
            if finding.HasField("rectify_by"):
                by = _date(v, f"findings[{n}].rectify_by", finding.rectify_by)
            findings.append(Finding(finding.item_id, finding.description, by))
        score = domain.score_check(
            standard,
            scores,
            findings,
            self._inspections.today(),
            settings.max_rectification_days,
            v,
        )
        v.raise_if_any()
        recorded, orders = self._inspections.record_check(
            request.check_id, scores=scores, score=score, findings=findings
        )
        return pb.RecordCheckResponse(
            check=_check(recorded), rectifications=[_order(o) for o in orders]
        )

    def RecordReinspection(self, request: pb.RecordReinspectionRequest, context):
        v = Violations()
        self._text(
            v, "note", request.note, required=False, limit=self._settings.max_description_length
        )
        deadline = None
        if not request.rectified and v.check(
            request.HasField("rectify_by"),
            "rectify_by",
            "a new deadline is required when not rectified",
        ):
            deadline = _date(v, "rectify_by", request.rectify_by)
            domain.check_deadline(
                deadline,
                self._inspections.today(),
                self._settings.max_rectification_days,
                v,
                "rectify_by",
            )
        v.raise_if_any()
        order = self._inspections.reinspect(request.order_id, request.rectified, deadline)
        return pb.RecordReinspectionResponse(rectification=_order(order))

    def ListRectifications(self, request: pb.ListRectificationsRequest, context):
        v = Violations()
        name = (
            pb.RectificationState.Name(request.state)
            if request.state in pb.RectificationState.values()
            else ""
        )
        v.check(bool(name), "state", "is not a rectification state")
        v.raise_if_any()
        state = (
            None
            if request.state == 0
            else RectificationState(name.removeprefix("RECTIFICATION_STATE_"))
        )
        page = self._page(request, [request.district_code, request.state])
        found = self._inspections.list_orders(
            request.district_code, state, page.after, page.size + 1
        )
        return pb.ListRectificationsResponse(
            rectifications=[_order(o) for o in found[: page.size]],
            next_page_token=next_token(page, [o.order_id for o in found]),
        )

    # ------------------------------------------------------------ publication

    def ListPublishedResults(self, request: pb.ListPublishedResultsRequest, context):
        v = Violations()
        if request.credit_code:
            problem = credit_code_problem(request.credit_code)
            v.check(problem is None, "credit_code", f"is not a credit code: {problem}")
        v.raise_if_any()
        page = self._page(request, [request.district_code, request.credit_code])
        found = self._inspections.published(
            request.district_code, request.credit_code, page.after, page.size + 1
        )
        return pb.ListPublishedResultsResponse(
            results=[
                pb.PublishedResult(
                    check_id=c.check_id,
                    project_id=c.project_id,
                    project_type=c.project_type,
                    district_code=c.district_code,
                    credit_code=c.credit_code,
                    score=_score(c.score),
                    findings=len(c.findings),
                    findings_summary=" ".join(sorted({f.item_id for f in c.findings})),
                    record_time=timestamp(c.recorded_at),
                )
                for c in found[: page.size]
            ],
            next_page_token=next_token(page, [c.check_id for c in found]),
        )

    def GetAssessmentReport(self, request: pb.GetAssessmentReportRequest, context):
        v = Violations()
        v.check(request.district_code in self._city, "district_code", "is required: a district")
        domain.check_period(request.period, v, "period")
        v.raise_if_any()
        checks, average, findings, opened, closed, overdue, enterprises = (
            self._inspections.assessment_report(request.district_code, request.period)
        )
        return pb.GetAssessmentReportResponse(
            report=pb.AssessmentReport(
                district_code=request.district_code,
                period=request.period,
                checks=checks,
                average_score=str(average),
                findings=findings,
                rectifications_opened=opened,
                rectifications_closed=closed,
                rectifications_overdue=overdue,
                enterprises=[
                    pb.EnterpriseSummary(
                        credit_code=e.credit_code,
                        checks=e.checks,
                        average_score=str(e.average),
                        findings=e.findings,
                        rectifications_overdue=e.overdue,
                    )
                    for e in enterprises
                ],
            )
        )


# ---------------------------------------------------------------- domain -> wire


def _inspector(i: Inspector, masked_relatives: list[str] = ()) -> pb.Inspector:
    return pb.Inspector(
        inspector_id=i.inspector_id,
        name=i.name,
        unit=i.unit,
        district_codes=list(i.districts),
        conflicts=list(i.conflicts),
        relatives=[pb.Relative(masked_id_number=m) for m in masked_relatives],
    )


def round_message(r: Round) -> pb.Round:
    spec = r.spec
    message = pb.Round(
        round_id=spec.round_id,
        district_codes=list(spec.districts),
        period=spec.period,
        rates=[pb.SamplingRate(grade=g, rate=str(rate)) for g, rate in sorted(spec.rates.items())],
        floor_rate=str(spec.floor_rate),
        yearly_floor_rate=str(spec.yearly_floor_rate),
        inspectors_per_check=spec.inspectors_per_check,
        state=pb.RoundState.Value(f"ROUND_STATE_{r.state.value}"),
        seed_commitment=r.seed_commitment,
        seed=r.seed,
        entities=[
            pb.Entity(
                project_id=e.project_id,
                project_type=e.project_type,
                district_code=e.district_code,
                credit_code=e.credit_code,
                grade=e.grade,
                triggered=e.triggered,
                complaints=e.complaints,
            )
            for e in spec.entities
        ],
        inspectors=[_inspector(i) for i in spec.inspectors],
        selections=[
            pb.Selection(
                project_id=c.project_id,
                reason=c.reason,
                inspector_ids=list(c.inspector_ids),
                check_id=c.check_id,
            )
            for c in r.checks
        ],
        algorithm_version=spec.algorithm_version,
        drawn_earlier=list(spec.drawn_earlier),
        complaint_weights=[
            pb.ComplaintWeight(complaints=c, weight=w) for c, w in spec.complaint_weights
        ],
    )
    message.create_time.FromJsonString(spec.created_at)
    return message


def _check(c: Check) -> pb.Check:
    return pb.Check(
        check_id=c.check_id,
        round_id=c.round_id,
        project_id=c.project_id,
        credit_code=c.credit_code,
        district_code=c.district_code,
        inspector_ids=list(c.inspector_ids),
        scores=[pb.ItemScore(item_id=k, score=str(s)) for k, s in sorted((c.scores or {}).items())],
        findings=[
            pb.Finding(
                item_id=f.item_id,
                description=f.description,
                rectify_by=_to_date(f.rectify_by) if f.rectify_by else None,
            )
            for f in c.findings
        ],
        score=_score(c.score) if c.score is not None else "",
        record_time=timestamp(c.recorded_at) if c.recorded_at else None,
    )


def _order(o: Rectification) -> pb.Rectification:
    return pb.Rectification(
        order_id=o.order_id,
        check_id=o.check_id,
        project_id=o.project_id,
        credit_code=o.credit_code,
        district_code=o.district_code,
        item_id=o.item_id,
        description=o.description,
        rectify_by=_to_date(o.rectify_by),
        state=pb.RectificationState.Value(f"RECTIFICATION_STATE_{o.state.value}"),
        close_time=timestamp(o.closed_at) if o.closed_at else None,
    )
