"""The gRPC face of the credit service: requests in, use cases run, reports out."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from google.protobuf.timestamp_pb2 import Timestamp

from wuye.core.auth import AUTHORITIES, Role, allow, public
from wuye.core.errors import Violations
from wuye.core.events import run_idempotent
from wuye.core.grpcserver import Route
from wuye.core.ids import credit_code_problem
from wuye.core.paging import next_token, read_page
from wuye.core.wire import check_request_id, check_text, enum_name, timestamp
from wuye.credit import domain
from wuye.credit.commands import (
    Credit,
    grade_change_message,
    grade_number,
    record_message,
    subject_message,
)
from wuye.credit.domain import (
    AssessmentCycle,
    AssessorUnit,
    Grade,
    Standing,
    SubjectFile,
    SubjectKind,
)
from wuye.credit.v1 import credit_service_pb2 as pb
from wuye.credit.v1 import credit_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CreditService"].full_name

_AUTHORITY = tuple(AUTHORITIES)

ROUTES: dict[str, Route] = {
    "GetCreditReport": Route(allow(*_AUTHORITY, Role.ENTERPRISE, Role.INSPECTOR, Role.SERVICE)),
    "ListGrades": Route(public(), "district_code"),
    "CreateAssessment": Route(allow(*_AUTHORITY)),
    "RecordCreditEvent": Route(allow(*_AUTHORITY)),
    "AppealRecord": Route(allow(*_AUTHORITY, Role.ENTERPRISE), "record_id"),
    "DecideAppeal": Route(allow(*_AUTHORITY), "record_id"),
    "MarkRectified": Route(allow(*_AUTHORITY), "record_id"),
    "ExportCreditFeed": Route(allow(*_AUTHORITY, Role.SERVICE)),
}

_CHECKLISTS = {
    pb.CHECKLIST_RESIDENTIAL: "residential",
    pb.CHECKLIST_OFFICE: "office",
    pb.CHECKLIST_COMMERCIAL: "commercial",
    pb.CHECKLIST_HOSPITAL: "hospital",
}
_PERSON_KEY_LENGTH = 32


def _decimal(v: Violations, field: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value.as_tuple().exponent < -1 or not text.isascii():
        v.add(field, "must be a decimal number with at most one decimal, e.g. 8.5")
        return Decimal(0)
    return value


class CreditApi(pb_grpc.CreditServiceServicer):
    def __init__(self, credit: Credit) -> None:
        self._credit = credit
        self._settings = credit.settings

    # -- shared checks

    def _subject(self, v: Violations, field: str, subject: pb.Subject) -> SubjectKind | None:
        kind_name = enum_name(pb.SubjectKind, "SUBJECT_KIND", subject.kind)
        if not kind_name:
            v.add(f"{field}.kind", "must be SUBJECT_KIND_ENTERPRISE or SUBJECT_KIND_PRACTITIONER")
            return None
        kind = SubjectKind(kind_name)
        if kind is SubjectKind.ENTERPRISE:
            problem = credit_code_problem(subject.id) if subject.id else "is required"
            v.check(problem is None, f"{field}.id", f"is not a valid credit code: {problem}")
        else:
            v.check(
                len(subject.id) == _PERSON_KEY_LENGTH
                and subject.id.isalnum()
                and subject.id.isascii(),
                f"{field}.id",
                "must be the practitioner's person_key from the registry",
            )
        return kind

    def _text(self, v: Violations, field: str, value: str, required: bool = True) -> None:
        check_text(v, field, value, self._settings.max_text_length, required)

    def _past(
        self, v: Violations, field: str, stamp: Timestamp, present: bool
    ) -> dt.datetime | None:
        if not present:
            return None
        try:
            moment = stamp.ToDatetime(dt.UTC)
        except (ValueError, OverflowError):
            v.add(field, "is not a valid time")
            return None
        v.check(moment <= self._credit.now(), field, "must not be in the future")
        return moment

    # ------------------------------------------------------------ reads

    def GetCreditReport(self, request: pb.GetCreditReportRequest, context):
        v = Violations()
        kind = self._subject(v, "subject", request.subject)
        as_of = self._past(v, "as_of", request.as_of, request.HasField("as_of"))
        v.raise_if_any()
        subject, standing, at = self._credit.report(kind, request.subject.id, as_of)
        return pb.GetCreditReportResponse(report=_report(subject, standing, at))

    def ListGrades(self, request: pb.ListGradesRequest, context) -> pb.ListGradesResponse:
        v = Violations()
        grade_name = enum_name(pb.Grade, "GRADE", request.grade)
        v.check(request.grade == 0 or bool(grade_name), "grade", "is not a grade")
        kind_name = enum_name(pb.SubjectKind, "SUBJECT_KIND", request.subject_kind)
        v.check(request.subject_kind == 0 or bool(kind_name), "subject_kind", "is not a kind")
        v.raise_if_any()
        kind = SubjectKind(kind_name) if kind_name else SubjectKind.ENTERPRISE
        filters = [
            request.district_code,
            request.grade,
            request.red_listed_only,
            request.blacklisted_only,
            kind.value,
        ]
        page = read_page(
            request.page_size,
            request.page_token,
            filters,
            self._settings.page_size_default,
            self._settings.page_size_max,
        )
        listed = self._credit.list_grades(
            kind,
            request.district_code,
            Grade(grade_name) if grade_name else None,
            request.red_listed_only,
            request.blacklisted_only,
            page.after,
            page.size + 1,
        )
        return pb.ListGradesResponse(
            grades=[
                pb.GradeSummary(
                    subject=subject_message(x.subject.kind, x.subject.subject_id),
                    name=x.subject.name,
                    district_code=x.subject.district_code,
                    score=str(x.standing.score),
                    grade=grade_number(x.standing.grade),
                    blacklisted=x.standing.blacklisted,
                    red_listed=x.standing.red_listed,
                    update_time=timestamp(x.updated_at),
                )
                for x in listed[: page.size]
            ],
            next_page_token=next_token(page, [x.subject.key for x in listed]),
        )

    def ExportCreditFeed(self, request: pb.ExportCreditFeedRequest, context):
        v = Violations()
        v.check(request.after_sequence >= 0, "after_sequence", "must not be negative")
        v.check(request.page_size >= 0, "page_size", "must not be negative")
        v.raise_if_any()
        limit = min(
            request.page_size or self._settings.page_size_default, self._settings.feed_page_max
        )
        entries = self._credit.feed(request.after_sequence, limit)
        return pb.ExportCreditFeedResponse(
            changes=[grade_change_message(entry) for entry in entries],
            last_sequence=entries[-1].sequence if entries else request.after_sequence,
        )

    # ------------------------------------------------------------ authorities' acts

    def CreateAssessment(self, request: pb.CreateAssessmentRequest, context):
        v = Violations()
        check_request_id(v, request.request_id)
        a = request.assessment
        kind = self._subject(v, "assessment.subject", a.subject)
        cycle_name = enum_name(pb.AssessmentCycle, "ASSESSMENT_CYCLE", a.cycle)
        if v.check(bool(cycle_name), "assessment.cycle", "must be ANNUAL or HALF_YEAR"):
            domain.check_period(
                AssessmentCycle(cycle_name),
                a.period,
                self._settings.assessment_years,
                v,
                "assessment.period",
            )
        units: list[AssessorUnit] = []
        for i, assessor in enumerate(a.assessors):
            unit = enum_name(pb.AssessorUnit, "ASSESSOR_UNIT", assessor.unit)
            if v.check(bool(unit), f"assessment.assessors[{i}].unit", "is not an assessor unit"):
                units.append(AssessorUnit(unit))
            self._text(v, f"assessment.assessors[{i}].name", assessor.name)
        domain.check_assessors(
            units, self._settings.assessment_min_assessors, v, "assessment.assessors"
        )
        standard = _CHECKLISTS.get(a.checklist)
        base = Decimal(0)
        scores: dict[str, Decimal] = {}
        if v.check(standard is not None, "assessment.checklist", "name one of the four standards"):
            for i, item in enumerate(a.scores):
                score = _decimal(v, f"assessment.scores[{i}].score", item.score)
                v.check(
                    item.item_id not in scores, f"assessment.scores[{i}].item_id", "is scored twice"
                )
                scores[item.item_id] = score
            if not v:
                base = domain.assessment_base(standard, scores, v, "assessment.scores")
        v.raise_if_any()

        def build(connection):
            assessment, subject, standing = self._credit.create_assessment(
                connection,
                kind,
                a.subject.id,
                cycle=AssessmentCycle(cycle_name),
                period=a.period,
                checklist=standard,
                base_score=base,
                assessors=[
                    {"unit": u.value, "name": x.name}
                    for u, x in zip(units, a.assessors, strict=True)
                ],
                scores={k: str(s) for k, s in scores.items()},
            )
            answer = pb.Assessment()
            answer.CopyFrom(a)
            answer.assessment_id = assessment.assessment_id
            answer.base_score = str(assessment.base_score)
            answer.assess_time.CopyFrom(timestamp(assessment.assessed_at))
            return pb.CreateAssessmentResponse(
                assessment=answer, report=_report(subject, standing, assessment.assessed_at)
            )

        return run_idempotent(
            self._credit.engine,
            pii_key=self._settings.pii_key,
            method="CreateAssessment",
            request_id=request.request_id,
            request=request,
            response_type=pb.CreateAssessmentResponse,
            command=build,
        )

    def RecordCreditEvent(self, request: pb.RecordCreditEventRequest, context):
        v = Violations()
        check_request_id(v, request.request_id)
        kind = self._subject(v, "subject", request.subject)
        rule = self._settings.record_types.get(request.record_type)
        if rule is None or not rule.manual:
            manual = sorted(name for name, r in self._settings.record_types.items() if r.manual)
            v.add("record_type", f"must be one of the manual record types: {', '.join(manual)}")
        self._text(v, "evidence_reference", request.evidence_reference)
        self._text(v, "reason", request.reason)
        occurred = self._past(v, "occur_time", request.occur_time, request.HasField("occur_time"))
        v.raise_if_any()

        def build(connection):
            record, subject, standing = self._credit.record_manual(
                connection,
                kind,
                request.subject.id,
                request.record_type,
                evidence_reference=request.evidence_reference,
                reason=request.reason,
                occurred_at=occurred,
            )
            return pb.RecordCreditEventResponse(
                record=record_message(record, standing),
                report=_report(subject, standing, self._credit.now()),
            )

        return run_idempotent(
            self._credit.engine,
            pii_key=self._settings.pii_key,
            method="RecordCreditEvent",
            request_id=request.request_id,
            request=request,
            response_type=pb.RecordCreditEventResponse,
            command=build,
        )

    def AppealRecord(self, request: pb.AppealRecordRequest, context) -> pb.AppealRecordResponse:
        v = Violations()
        v.check(bool(request.record_id), "record_id", "is required")
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        record = self._credit.appeal(request.record_id, request.reason)
        return pb.AppealRecordResponse(record=record_message(record, None))

    def DecideAppeal(self, request: pb.DecideAppealRequest, context) -> pb.DecideAppealResponse:
        v = Violations()
        v.check(bool(request.record_id), "record_id", "is required")
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        record, subject, standing = self._credit.decide_appeal(
            request.record_id, request.uphold, request.reason
        )
        return pb.DecideAppealResponse(
            record=record_message(record, standing),
            report=_report(subject, standing, self._credit.now()),
        )

    def MarkRectified(self, request: pb.MarkRectifiedRequest, context) -> pb.MarkRectifiedResponse:
        v = Violations()
        v.check(bool(request.record_id), "record_id", "is required")
        self._text(v, "evidence_reference", request.evidence_reference)
        v.raise_if_any()
        record, subject, standing = self._credit.mark_rectified(
            request.record_id, request.evidence_reference
        )
        return pb.MarkRectifiedResponse(
            record=record_message(record, standing),
            report=_report(subject, standing, self._credit.now()),
        )


# ---------------------------------------------------------------- domain -> wire


def _report(subject: SubjectFile, standing: Standing, at: dt.datetime) -> pb.CreditReport:
    a = standing.assessment
    return pb.CreditReport(
        subject=subject_message(subject.kind, subject.subject_id),
        name=subject.name,
        district_code=subject.district_code,
        filed=standing.filed,
        score=str(standing.score),
        grade=grade_number(standing.grade),
        blacklisted=standing.blacklisted,
        red_listed=standing.red_listed,
        base=pb.BaseScore(
            assessment_id=a.assessment_id if a else "",
            score=str(standing.base),
            assess_time=timestamp(a.assessed_at) if a else None,
        ),
        records=[record_message(r, standing) for r in standing.in_force],
        past_records=[record_message(r, standing) for r in standing.past],
        good_points=str(standing.good),
        bad_points=str(standing.bad),
        explanation=standing.explanation,
        as_of=timestamp(at),
    )
