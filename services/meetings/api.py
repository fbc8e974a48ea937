"""The gRPC face of joint meetings: requests in, use cases run, responses out."""

from __future__ import annotations

import datetime as dt
import re

from wuye.core.auth import AUTHORITIES, MAX_SUBJECT_LENGTH, Role, allow, public
from wuye.core.context import current
from wuye.core.errors import Violations
from wuye.core.events import run_idempotent
from wuye.core.grpcserver import Route
from wuye.core.ids import credit_code_problem
from wuye.core.paging import next_token, read_page
from wuye.core.text import text_problem
from wuye.core.wire import (
    check_request_id,
    check_text,
    date_of,
    enum_name,
    moment_of,
    timestamp,
    to_date,
)
from wuye.meetings.commands import (
    DistrictReport,
    Meetings,
    ResidentContact,
    Resolution,
    Tally,
    TaskSpec,
)
from wuye.meetings.domain import ALGORITHM_VERSION, Attendance, Case, Meeting, Minutes, Task, Unit
from wuye.meetings.v1 import meetings_service_pb2 as pb
from wuye.meetings.v1 import meetings_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["MeetingsService"].full_name

_AUTHORITY = tuple(AUTHORITIES)
_OFFICE = (Role.SUB_DISTRICT,)
# The roles member units act with.
_UNITS = (Role.MEMBER_UNIT, Role.ENTERPRISE, Role.OWNERS_COMMITTEE, Role.RESIDENTS_COMMITTEE)
_RAISERS = (Role.ENTERPRISE, Role.OWNERS_COMMITTEE, Role.RESIDENTS_COMMITTEE, Role.OWNER)
_READERS = (*_AUTHORITY, *_OFFICE, *_UNITS, Role.OWNER, Role.SERVICE)

ROUTES: dict[str, Route] = {
    "RaiseCase": Route(allow(*_RAISERS), "case.project_id"),
    "GetCase": Route(allow(*_READERS), "case_id"),
    "ListCases": Route(allow(*_READERS), "district_code"),
    "AcceptCase": Route(allow(*_OFFICE), "case_id"),
    "RejectCase": Route(allow(*_OFFICE), "case_id"),
    "ReferCase": Route(allow(*_OFFICE), "case_id"),
    "ReopenCase": Route(allow(*_RAISERS), "case_id"),
    # Only the cases' sub-district office convenes: their district is checked with them.
    "ConveneMeeting": Route(allow(*_OFFICE)),
    "GetMeeting": Route(allow(*_AUTHORITY, *_OFFICE, *_UNITS, Role.SERVICE), "meeting_id"),
    "RecordAttendance": Route(allow(*_OFFICE), "meeting_id"),
    "AdoptResolution": Route(allow(*_OFFICE), "meeting_id"),
    "CloseMeeting": Route(allow(*_OFFICE), "meeting_id"),
    "CompleteTask": Route(allow(*_UNITS), "task_id"),
    "AcceptTaskCompletion": Route(allow(*_OFFICE), "task_id"),
    "ReopenTask": Route(allow(*_OFFICE), "task_id"),
    "ListTasks": Route(allow(*_AUTHORITY, *_OFFICE, *_UNITS, Role.SERVICE), "district_code"),
    "DraftMinutes": Route(allow(*_OFFICE), "meeting_id"),
    "ProposeAmendment": Route(allow(*_UNITS), "minutes_id"),
    "SignMinutes": Route(allow(*_OFFICE, *_UNITS), "minutes_id"),
    # Signed minutes are public (anyone verifies them); drafts need a token of the district.
    "GetMinutes": Route(public(), "minutes_id"),
    "GetDistrictReport": Route(public(), "district_code"),
}

_ID = re.compile(r"\d{6}-[0-9A-Za-z_-]{1,64}", re.ASCII)
_PHONE = re.compile(r"\+?[0-9][0-9 -]{5,18}[0-9]", re.ASCII)
MAX_NAME_LENGTH = 50


def _enum(v: Violations, field: str, enum_type, prefix: str, number: int, required: bool) -> str:
    name = enum_name(enum_type, prefix, number)
    if not name and (number or required):
        v.add(field, f"must be one of {', '.join(enum_type.keys()[1:])}")
    return name


class MeetingsApi(pb_grpc.MeetingsServiceServicer):
    def __init__(self, meetings: Meetings) -> None:
        self._meetings = meetings
        self._settings = meetings.settings

    # ------------------------------------------------------------ checks of input

    def _text(self, v: Violations, field: str, value: str, required: bool = True, limit: int = 0):
        check_text(v, field, value, limit or self._settings.max_text_length, required)

    def _long_text(self, v: Violations, field: str, value: str, limit: int) -> None:
        """Text of several lines (a description, minutes): each line as one-line text is."""
        if not value.strip():
            v.add(field, "is required")
            return
        if len(value) > limit:
            v.add(field, f"must be at most {limit} characters, got {len(value)}")
            return
        for number, line in enumerate(value.split("\n"), start=1):
            problem = text_problem(line.removesuffix("\r"), limit, required=False)
            if problem:
                v.add(field, f"line {number}: {problem}")
                return

    @staticmethod
    def _id(v: Violations, field: str, value: str, required: bool = True) -> None:
        if value or required:
            v.check(bool(_ID.fullmatch(value)), field, "is not an id of this service")

    def _unit(self, v: Violations, field: str, unit: pb.MemberUnit) -> Unit:
        kinds = self._settings.unit_kinds
        v.check(unit.kind in kinds, f"{field}.kind", f"must be one of {', '.join(sorted(kinds))}")
        self._text(v, f"{field}.unit_id", unit.unit_id, limit=MAX_SUBJECT_LENGTH)
        if unit.kind == self._settings.enterprise_unit_kind and unit.unit_id:
            problem = credit_code_problem(unit.unit_id)
            v.check(problem is None, f"{field}.unit_id", f"is not a credit code: {problem}")
        self._text(v, f"{field}.name", unit.name, required=False)
        return Unit(unit.kind, unit.unit_id, unit.name)

    def _task_spec(self, v: Violations, field: str, task: pb.Task) -> TaskSpec:
        prefix = f"{field}." if field else ""
        unit = self._unit(v, f"{prefix}unit", task.unit)
        most = self._settings.max_task_working_days
        v.check(
            1 <= task.working_days <= most, f"{prefix}working_days", f"must be from 1 to {most}"
        )
        self._long_text(
            v, f"{prefix}done_when", task.done_when, self._settings.max_description_length
        )
        return TaskSpec(unit, task.working_days, task.done_when)

    def _page(self, request, filters):
        return read_page(
            request.page_size,
            request.page_token,
            filters,
            self._settings.page_size_default,
            self._settings.page_size_max,
        )

    # ------------------------------------------------------------ cases

    def RaiseCase(self, request: pb.RaiseCaseRequest, context) -> pb.RaiseCaseResponse:
        v = Violations()
        c = request.case
        check_request_id(v, request.request_id)
        self._id(v, "case.project_id", c.project_id)
        categories = self._settings.categories
        v.check(
            c.category in categories,
            "case.category",
            f"must be one of {', '.join(sorted(categories))}",
        )
        limit = self._settings.max_description_length
        self._long_text(v, "case.description", c.description, limit)
        if c.enterprise_attempts:
            self._long_text(v, "case.enterprise_attempts", c.enterprise_attempts, limit)
        resident = None
        if current().principal.role is Role.OWNER:
            # The problems are named, never the values: they are personal data.
            self._text(v, "case.resident.name", c.resident.name, limit=MAX_NAME_LENGTH)
            v.check(
                bool(_PHONE.fullmatch(c.resident.phone)),
                "case.resident.phone",
                "is required: a phone number of digits (spaces, dashes and a leading + allowed)",
            )
            resident = ResidentContact(c.resident.name, c.resident.phone)
        else:
            v.check(
                not c.HasField("resident"),
                "case.resident",
                "is given by a resident raising their own case only",
            )
        v.raise_if_any()

        def build(connection):
            raised = self._meetings.raise_case(
                connection,
                project_id=c.project_id,
                category=c.category,
                description=c.description,
                enterprise_attempts=c.enterprise_attempts,
                resident=resident,
            )
            return pb.RaiseCaseResponse(case=_case(raised))

        return run_idempotent(
            self._meetings.engine,
            pii_key=self._settings.pii_key,
            method="RaiseCase",
            request_id=request.request_id,
            request=request,
            response_type=pb.RaiseCaseResponse,
            command=build,
        )

    def GetCase(self, request: pb.GetCaseRequest, context) -> pb.GetCaseResponse:
        return pb.GetCaseResponse(case=_case(self._meetings.get_case(request.case_id)))

    def ListCases(self, request: pb.ListCasesRequest, context) -> pb.ListCasesResponse:
        v = Violations()
        self._text(v, "sub_district", request.sub_district, required=False)
        self._id(v, "project_id", request.project_id, required=False)
        if request.credit_code:
            problem = credit_code_problem(request.credit_code)
            v.check(problem is None, "credit_code", f"is not a credit code: {problem}")
        state = _enum(v, "state", pb.CaseState, "CASE_STATE", request.state, required=False)
        v.raise_if_any()
        filters = {
            "sub_district": request.sub_district,
            "project_id": request.project_id,
            "credit_code": request.credit_code,
            "state": state,
        }
        page = self._page(request, [request.district_code, filters])
        found = self._meetings.list_cases(request.district_code, filters, page.after, page.size + 1)
        return pb.ListCasesResponse(
            cases=[_case(c) for c in found[: page.size]],
            next_page_token=next_token(page, [c.case_id for c in found]),
        )

    def AcceptCase(self, request: pb.AcceptCaseRequest, context) -> pb.AcceptCaseResponse:
        return pb.AcceptCaseResponse(case=_case(self._meetings.accept_case(request.case_id)))

    def RejectCase(self, request: pb.RejectCaseRequest, context) -> pb.RejectCaseResponse:
        v = Violations()
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        return pb.RejectCaseResponse(
            case=_case(self._meetings.reject_case(request.case_id, request.reason))
        )

    def ReferCase(self, request: pb.ReferCaseRequest, context) -> pb.ReferCaseResponse:
        v = Violations()
        spec = self._task_spec(
            v,
            "",
            pb.Task(
                unit=request.unit, working_days=request.working_days, done_when=request.done_when
            ),
        )
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        case, task = self._meetings.refer_case(request.case_id, spec, request.reason)
        return pb.ReferCaseResponse(case=_case(case), task=_task(task))

    def ReopenCase(self, request: pb.ReopenCaseRequest, context) -> pb.ReopenCaseResponse:
        v = Violations()
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        return pb.ReopenCaseResponse(
            case=_case(self._meetings.reopen_case(request.case_id, request.reason))
        )

    # ------------------------------------------------------------ meetings

    def ConveneMeeting(self, request: pb.ConveneMeetingRequest, context):
        v = Violations()
        m = request.meeting
        settings = self._settings
        check_request_id(v, request.request_id)
        held_at = moment_of(v, "meeting.hold_time", m.hold_time, m.HasField("hold_time"))
        self._text(v, "meeting.place", m.place)
        if v.check(
            0 < len(m.case_ids) <= settings.max_cases_per_meeting,
            "meeting.case_ids",
            f"name 1 to {settings.max_cases_per_meeting} cases",
        ):
            for n, case_id in enumerate(m.case_ids):
                self._id(v, f"meeting.case_ids[{n}]", case_id)
        units: dict[str, Unit] = {}
        if v.check(
            0 < len(m.invitations) <= settings.max_units_per_meeting,
            "meeting.invitations",
            f"invite 1 to {settings.max_units_per_meeting} units",
        ):
            for n, invitation in enumerate(m.invitations):
                unit = self._unit(v, f"meeting.invitations[{n}].unit", invitation.unit)
                v.check(
                    unit.unit_id not in {u.unit_id for u in units.values()},
                    f"meeting.invitations[{n}].unit.unit_id",
                    "is invited twice",
                )
                units[unit.key] = unit
        v.raise_if_any()

        def build(connection):
            meeting = self._meetings.convene(
                connection,
                held_at=held_at,
                place=m.place,
                case_ids=tuple(dict.fromkeys(m.case_ids)),
                units=tuple(units.values()),
            )
            return pb.ConveneMeetingResponse(meeting=_meeting(meeting))

        return run_idempotent(
            self._meetings.engine,
            pii_key=self._settings.pii_key,
            method="ConveneMeeting",
            request_id=request.request_id,
            request=request,
            response_type=pb.ConveneMeetingResponse,
            command=build,
        )

    def GetMeeting(self, request: pb.GetMeetingRequest, context) -> pb.GetMeetingResponse:
        meeting, adopted = self._meetings.get_meeting(request.meeting_id)
        return pb.GetMeetingResponse(
            meeting=_meeting(meeting), resolutions=[_resolution(r) for r in adopted]
        )

    def RecordAttendance(self, request: pb.RecordAttendanceRequest, context):
        v = Violations()
        given: dict[str, Attendance] = {}
        v.check(
            0 < len(request.attendance) <= self._settings.max_units_per_meeting,
            "attendance",
            f"name 1 to {self._settings.max_units_per_meeting} units",
        )
        for n, item in enumerate(request.attendance[: self._settings.max_units_per_meeting]):
            self._text(v, f"attendance[{n}].unit_id", item.unit_id, limit=MAX_SUBJECT_LENGTH)
            v.check(item.unit_id not in given, f"attendance[{n}].unit_id", "is named twice")
            name = _enum(
                v, f"attendance[{n}].attendance", pb.Attendance, "ATTENDANCE", item.attendance, True
            )
            if name:
                given[item.unit_id] = Attendance(name)
        v.raise_if_any()
        meeting = self._meetings.record_attendance(request.meeting_id, given)
        return pb.RecordAttendanceResponse(meeting=_meeting(meeting))

    def AdoptResolution(self, request: pb.AdoptResolutionRequest, context):
        v = Violations()
        self._id(v, "case_id", request.case_id)
        self._long_text(v, "decision", request.decision, self._settings.max_description_length)
        most = self._settings.max_tasks_per_resolution
        specs = []
        if v.check(0 < len(request.tasks) <= most, "tasks", f"give 1 to {most} tasks"):
            specs = [self._task_spec(v, f"tasks[{n}]", t) for n, t in enumerate(request.tasks)]
        v.raise_if_any()
        adopted = self._meetings.adopt_resolution(
            request.meeting_id, request.case_id, request.decision, specs
        )
        return pb.AdoptResolutionResponse(resolution=_resolution(adopted))

    def CloseMeeting(self, request: pb.CloseMeetingRequest, context) -> pb.CloseMeetingResponse:
        return pb.CloseMeetingResponse(
            meeting=_meeting(self._meetings.close_meeting(request.meeting_id))
        )

    # ------------------------------------------------------------ tasks

    def CompleteTask(self, request: pb.CompleteTaskRequest, context) -> pb.CompleteTaskResponse:
        v = Violations()
        self._long_text(v, "note", request.note, self._settings.max_description_length)
        v.raise_if_any()
        return pb.CompleteTaskResponse(
            task=_task(self._meetings.complete_task(request.task_id, request.note))
        )

    def AcceptTaskCompletion(self, request: pb.AcceptTaskCompletionRequest, context):
        task, case = self._meetings.accept_task(request.task_id)
        return pb.AcceptTaskCompletionResponse(task=_task(task), case=_case(case))

    def ReopenTask(self, request: pb.ReopenTaskRequest, context) -> pb.ReopenTaskResponse:
        v = Violations()
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        return pb.ReopenTaskResponse(
            task=_task(self._meetings.reopen_task(request.task_id, request.reason))
        )

    def ListTasks(self, request: pb.ListTasksRequest, context) -> pb.ListTasksResponse:
        v = Violations()
        self._id(v, "case_id", request.case_id, required=False)
        self._text(v, "unit_id", request.unit_id, required=False, limit=MAX_SUBJECT_LENGTH)
        state = _enum(v, "state", pb.TaskState, "TASK_STATE", request.state, required=False)
        v.raise_if_any()
        filters = {"case_id": request.case_id, "unit_id": request.unit_id, "state": state}
        page = self._page(request, [request.district_code, filters])
        found = self._meetings.list_tasks(request.district_code, filters, page.after, page.size + 1)
        return pb.ListTasksResponse(
            tasks=[_task(t) for t in found[: page.size]],
            next_page_token=next_token(page, [t.task_id for t in found]),
        )

    # ------------------------------------------------------------ minutes

    def DraftMinutes(self, request: pb.DraftMinutesRequest, context) -> pb.DraftMinutesResponse:
        v = Violations()
        self._long_text(v, "text", request.text, self._settings.max_minutes_length)
        self._id(v, "amends_minutes_id", request.amends_minutes_id, required=False)
        v.raise_if_any()
        drafted = self._meetings.draft_minutes(
            request.meeting_id, request.text, request.amends_minutes_id
        )
        return pb.DraftMinutesResponse(minutes=minutes_message(drafted))

    def ProposeAmendment(self, request: pb.ProposeAmendmentRequest, context):
        v = Violations()
        self._long_text(v, "text", request.text, self._settings.max_description_length)
        v.raise_if_any()
        changed = self._meetings.propose_amendment(request.minutes_id, request.text)
        return pb.ProposeAmendmentResponse(minutes=minutes_message(changed))

    def SignMinutes(self, request: pb.SignMinutesRequest, context) -> pb.SignMinutesResponse:
        return pb.SignMinutesResponse(
            minutes=minutes_message(self._meetings.sign_minutes(request.minutes_id))
        )

    def GetMinutes(self, request: pb.GetMinutesRequest, context) -> pb.GetMinutesResponse:
        return pb.GetMinutesResponse(
            minutes=minutes_message(self._meetings.get_minutes(request.minutes_id))
        )

    # ------------------------------------------------------------ reports

    def GetDistrictReport(self, request: pb.GetDistrictReportRequest, context):
        v = Violations()
        v.check(
            request.district_code in self._settings.city_districts,
            "district_code",
            "is required: a district",
        )
        first = date_of(v, "start_date", request.start_date, request.HasField("start_date"))
        last = date_of(v, "end_date", request.end_date, request.HasField("end_date"))
        if first and last:
            most = self._settings.max_report_days
            v.check(
                first <= last and (last - first).days < most,
                "end_date",
                f"must be on or after start_date, at most {most} days on",
            )
        v.raise_if_any()
        report = self._meetings.district_report(request.district_code, first, last)
        return pb.GetDistrictReportResponse(
            report=_report(request.district_code, first, last, report)
        )


# ---------------------------------------------------------------- domain -> wire


def _unit(unit: Unit | None) -> pb.MemberUnit | None:
    return (
        None
        if unit is None
        else pb.MemberUnit(kind=unit.kind, unit_id=unit.unit_id, name=unit.name)
    )


def _case(c: Case) -> pb.Case:
    return pb.Case(
        case_id=c.case_id,
        project_id=c.project_id,
        district_code=c.district_code,
        sub_district=c.sub_district,
        credit_code=c.credit_code,
        category=c.category,
        description=c.description,
        enterprise_attempts=c.enterprise_attempts,
        state=pb.CaseState.Value(f"CASE_STATE_{c.state.value}"),
        raised_by_role=c.raised_by_role,
        raised_by=c.raised_by,
        resident=(
            pb.Resident(masked_name=c.masked_name, masked_phone=c.masked_phone)
            if c.masked_name
            else None
        ),
        reason=c.reason,
        referred_to=_unit(c.referred_to),
        raise_time=timestamp(c.raised_at),
        resolve_time=timestamp(c.resolved_at),
    )


def _meeting(m: Meeting) -> pb.Meeting:
    return pb.Meeting(
        meeting_id=m.meeting_id,
        district_code=m.district_code,
        sub_district=m.sub_district,
        hold_time=timestamp(m.held_at),
        place=m.place,
        case_ids=list(m.case_ids),
        invitations=[
            pb.Invitation(
                unit=_unit(i.unit),
                attendance=pb.Attendance.Value(f"ATTENDANCE_{i.attendance.value}")
                if i.attendance
                else pb.ATTENDANCE_UNSPECIFIED,
            )
            for i in m.invitations
        ],
        state=pb.MeetingState.Value(f"MEETING_STATE_{m.state.value}"),
        chair=m.chair,
    )


def _task(t: Task) -> pb.Task:
    return pb.Task(
        task_id=t.task_id,
        case_id=t.case_id,
        meeting_id=t.meeting_id,
        unit=_unit(t.unit),
        working_days=t.working_days,
        done_when=t.done_when,
        due_date=to_date(t.due),
        state=pb.TaskState.Value(f"TASK_STATE_{t.state.value}"),
        lateness=pb.Lateness.Value(f"LATENESS_{t.lateness.value}"),
        escalation_level=t.escalation_level,
        completion_note=t.completion_note,
        district_code=t.district_code,
    )


def _resolution(r: Resolution) -> pb.Resolution:
    return pb.Resolution(
        resolution_id=r.resolution_id,
        meeting_id=r.meeting_id,
        case_id=r.case_id,
        decision=r.decision,
        tasks=[_task(t) for t in r.tasks],
    )


def minutes_message(m: Minutes) -> pb.Minutes:
    message = pb.Minutes(
        minutes_id=m.minutes_id,
        meeting_id=m.meeting_id,
        district_code=m.district_code,
        place=m.place,
        text=m.text,
        amendments=[pb.Amendment(unit=_unit(a.unit), text=a.text) for a in m.amendments],
        amends_minutes_id=m.amends_minutes_id,
        state=pb.MinutesState.Value(f"MINUTES_STATE_{m.state.value}"),
        required_signers=list(m.required_signers),
        signatures=[
            pb.Signature(
                signer=s.signer,
                role=s.role,
                content_hash=s.content_hash,
                sign_time=timestamp(s.signed_at),
            )
            for s in m.signatures
        ],
        content_hash=m.content_hash,
        algorithm_version=ALGORITHM_VERSION,
    )
    message.hold_time.FromJsonString(m.hold_time)
    return message


def _tallies(tallies: list[Tally]) -> list[pb.TaskTally]:
    return [pb.TaskTally(key=t.key, on_time=t.on_time, overdue=t.overdue) for t in tallies]


def _report(district: str, first: dt.date, last: dt.date, r: DistrictReport) -> pb.DistrictReport:
    return pb.DistrictReport(
        district_code=district,
        start_date=to_date(first),
        end_date=to_date(last),
        cases_raised=r.cases_raised,
        cases_accepted=r.cases_accepted,
        cases_resolved=r.cases_resolved,
        median_days_to_resolution=r.median_days,
        tasks_by_unit_kind=_tallies(r.by_unit_kind),
        tasks_by_enterprise=_tallies(r.by_enterprise),
        absences=[pb.AbsenceTally(unit_kind=k, absences=n) for k, n in r.absences],
    )
