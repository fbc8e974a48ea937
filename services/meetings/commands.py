"""Joint-meeting use cases; each writes its rows and its events in one transaction, taking the
row lock of the aggregate it changes before it reads the state it changes. Also the timer that
reminds, marks tasks overdue and very late and escalates them, the district report, and the
handlers of the registry's events (the projects and committees cases are about)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Connection, Engine

from wuye.core.auth import Role
from wuye.core.calendar import WorkingCalendar
from wuye.core.consumer import EventMeta, Handler
from wuye.core.context import current
from wuye.core.db import reader
from wuye.core.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from wuye.core.events import Event, add_events
from wuye.core.ids import new_id
from wuye.core.pii import Pseudonymizer, mask_name, mask_phone
from wuye.core.wire import timestamp, to_date
from wuye.meetings import domain, store
from wuye.meetings.domain import (
    Amendment,
    Attendance,
    Case,
    CaseAction,
    CaseState,
    Invitation,
    Lateness,
    Meeting,
    MeetingState,
    Minutes,
    MinutesState,
    Project,
    Task,
    TaskAction,
    Unit,
)
from wuye.meetings.settings import MeetingsSettings
from wuye.meetings.v1 import events_pb2 as ev
from wuye.registry.v1 import events_pb2 as registry_events

CASE_TOPIC = "wuye.meetings.case.v1"
MEETING_TOPIC = "wuye.meetings.meeting.v1"
TASK_TOPIC = "wuye.meetings.task.v1"
TOPICS = (CASE_TOPIC, MEETING_TOPIC, TASK_TOPIC)
READ_MODEL_TOPICS = ("wuye.registry.project.v1",)
# A resident's name and phone are keyed under this purpose.
RESIDENT_KEY_PURPOSE = "meetings-resident"
# Tasks the timer changes in one transaction: a long backlog is worked off in short ones.
TIMER_BATCH = 2000
# Roles that raise cases, and what they are called on a case.
RAISERS = frozenset({Role.ENTERPRISE, Role.OWNERS_COMMITTEE, Role.RESIDENTS_COMMITTEE, Role.OWNER})


def _moment(stamp: Timestamp) -> dt.datetime:
    return stamp.ToDatetime(tzinfo=dt.UTC)


def hold_time_text(moment: dt.datetime) -> str:
    """The meeting's time as protobuf JSON prints it: the form the minutes' content hashes."""
    return timestamp(moment).ToJsonString()


@dataclass(frozen=True)
class ResidentContact:
    name: str
    phone: str


@dataclass(frozen=True)
class Resolution:
    resolution_id: str
    meeting_id: str
    case_id: str
    decision: str
    tasks: tuple[Task, ...]


@dataclass(frozen=True)
class TaskSpec:
    unit: Unit
    working_days: int
    done_when: str


@dataclass(frozen=True)
class Tally:
    key: str
    on_time: int
    overdue: int


@dataclass(frozen=True)
class DistrictReport:
    cases_raised: int
    cases_accepted: int
    cases_resolved: int
    median_days: str
    by_unit_kind: list[Tally]
    by_enterprise: list[Tally]
    absences: list[tuple[str, int]]


class Meetings:
    def __init__(
        self,
        engine: Engine,
        settings: MeetingsSettings,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.engine = engine
        self.reader = reader(engine)
        self.settings = settings
        self.calendar = WorkingCalendar.of(settings)
        self.city = ZoneInfo(settings.city_timezone)
        self._clock = clock
        self._residents = Pseudonymizer(
            settings.pii_key.get_secret_value().encode(), purpose=RESIDENT_KEY_PURPOSE
        )

    def now(self) -> dt.datetime:
        return self._clock()

    def today(self) -> dt.date:
        return self.settings.local_date(self.now())

    # ------------------------------------------------------------ access

    def _office(self, district: str, sub_district: str) -> None:
        """The caller is the sub-district office of `sub_district` (or an authority or operator
        acting for the district)."""
        call = current()
        call.require_district(district)
        domain.check_office(sub_district, call.principal.role, call.principal.subject)

    def _unit_acts(self, unit: Unit) -> None:
        principal = current().principal
        if principal.role is not Role.ADMIN:
            domain.check_unit_acts(
                unit, principal.role, principal.subject, self.settings.unit_kind_roles
            )

    def _may_read_case(self, case: Case) -> None:
        """A raiser reads the cases it raised, an enterprise those about its projects; offices,
        authorities and units read the district's."""
        call = current()
        call.require_district(case.district_code)
        role, subject = call.principal.role, call.principal.subject
        if role in RAISERS and subject not in (
            case.raised_by,
            *([case.credit_code] if role is Role.ENTERPRISE else []),
        ):
            raise PermissionDenied("NOT_YOUR_CASE", "a case is read by those it concerns")

    def _case(self, connection: Connection, case_id: str, *, lock: bool = False) -> Case:
        case = store.get_case(connection, case_id, lock=lock)
        if case is None:
            raise NotFound("CASE_NOT_FOUND", f"no case {case_id}", case_id=case_id)
        return case

    def _meeting(self, connection: Connection, meeting_id: str, *, lock: bool = False) -> Meeting:
        meeting = store.get_meeting(connection, meeting_id, lock=lock)
        if meeting is None:
            raise NotFound("MEETING_NOT_FOUND", f"no meeting {meeting_id}", meeting_id=meeting_id)
        return meeting

    def _task(self, connection: Connection, task_id: str, *, lock: bool = False) -> Task:
        task = store.get_task(connection, task_id, lock=lock)
        if task is None:
            raise NotFound("TASK_NOT_FOUND", f"no task {task_id}", task_id=task_id)
        return task

    def _minutes(self, connection: Connection, minutes_id: str, *, lock: bool = False) -> Minutes:
        found = store.get_minutes(connection, minutes_id, lock=lock)
        if found is None:
            raise NotFound("MINUTES_NOT_FOUND", f"no minutes {minutes_id}", minutes_id=minutes_id)
        return found

    # ------------------------------------------------------------ cases

    def raise_case(
        self,
        connection: Connection,
        *,
        project_id: str,
        category: str,
        description: str,
        enterprise_attempts: str,
        resident: ResidentContact | None,
    ) -> Case:
        project = store.get_project(connection, project_id)
        if project is None:
            raise NotFound("PROJECT_NOT_FOUND", f"no project {project_id}", project_id=project_id)
        call = current()
        call.require_district(project.district_code)
        role, subject = call.principal.role, call.principal.subject
        self._check_raiser(connection, project, role, subject)
        now = self.now()
        case = Case(
            case_id=new_id(project.district_code, "J"),
            project_id=project_id,
            district_code=project.district_code,
            sub_district=project.sub_district,
            credit_code=project.credit_code,
            category=category,
            description=description,
            enterprise_attempts=enterprise_attempts,
            state=CaseState.RAISED,
            raised_by_role=str(role.value if role else ""),
            raised_by=subject,
            masked_name=mask_name(resident.name) if resident else "",
            masked_phone=mask_phone(resident.phone) if resident else "",
            raised_at=now,
        )
        store.insert_case(
            connection,
            case,
            self._residents.key_of(resident.name) if resident else "",
            self._residents.key_of(resident.phone) if resident else "",
        )
        add_events(
            connection,
            [
                Event.of_aggregate(
                    CASE_TOPIC,
                    case.case_id,
                    case.district_code,
                    ev.CaseRaised(
                        case_id=case.case_id,
                        project_id=project_id,
                        district_code=case.district_code,
                        category=category,
                        credit_code=case.credit_code,
                        raised_by_role=case.raised_by_role,
                        occur_time=timestamp(now),
                    ),
                )
            ],
        )
        return case

    @staticmethod
    def _check_raiser(connection: Connection, project: Project, role, subject: str) -> None:
        """An enterprise raises cases about the projects it serves, an owners' committee about
        its own project."""
        if role is Role.ENTERPRISE and subject != project.credit_code:
            raise PermissionDenied(
                "NOT_YOUR_PROJECT", "an enterprise raises cases about the projects it serves"
            )
        if role is Role.OWNERS_COMMITTEE and (
            store.committee_project(connection, subject) != project.project_id
        ):
            raise PermissionDenied(
                "NOT_YOUR_PROJECT", "an owners' committee raises cases about its own project"
            )

    def get_case(self, case_id: str) -> Case:
        with self.reader.connect() as connection:
            case = self._case(connection, case_id)
        self._may_read_case(case)
        return case

    def list_cases(
        self, district: str, filters: dict[str, str], after: str | None, limit: int
    ) -> list[Case]:
        call = current()
        districts = frozenset({district}) if district else call.visible_districts()
        role, subject = call.principal.role, call.principal.subject
        if role is Role.ENTERPRISE:
            filters = {**filters, "credit_code": subject}
        elif role in RAISERS:
            filters = {**filters, "raised_by": subject}
        with self.reader.connect() as connection:
            return store.list_cases(connection, districts, filters, after, limit)

    def _case_change(
        self,
        case_id: str,
        action: CaseAction,
        build_event: Callable[[Case, dt.datetime], object],
        **changes,
    ) -> Case:
        with self.engine.begin() as connection:
            case = self._case(connection, case_id, lock=True)
            self._office(case.district_code, case.sub_district)
            now = self.now()
            changed = replace(case, state=domain.case_transition(case.state, action), **changes)
            if action is CaseAction.ACCEPT:
                changed = replace(changed, accepted_at=now)
            store.update_case(connection, changed)
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        CASE_TOPIC, case_id, case.district_code, build_event(changed, now)
                    )
                ],
            )
        return changed

    def accept_case(self, case_id: str) -> Case:
        return self._case_change(
            case_id,
            CaseAction.ACCEPT,
            lambda c, now: ev.CaseAccepted(
                case_id=c.case_id,
                project_id=c.project_id,
                district_code=c.district_code,
                occur_time=timestamp(now),
            ),
        )

    def reject_case(self, case_id: str, reason: str) -> Case:
        return self._case_change(
            case_id,
            CaseAction.REJECT,
            lambda c, now: ev.CaseRejected(
                case_id=c.case_id,
                project_id=c.project_id,
                district_code=c.district_code,
                reason=reason,
                occur_time=timestamp(now),
            ),
            reason=reason,
        )

    def refer_case(self, case_id: str, spec: TaskSpec, reason: str) -> tuple[Case, Task]:
        with self.engine.begin() as connection:
            case = self._case(connection, case_id, lock=True)
            self._office(case.district_code, case.sub_district)
            now = self.now()
            changed = replace(
                case,
                state=domain.case_transition(case.state, CaseAction.REFER),
                reason=reason,
                referred_to=spec.unit,
            )
            task = self._new_task(case, "", spec, self.today())
            store.update_case(connection, changed)
            store.insert_tasks(connection, [task], "", now)
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        CASE_TOPIC,
                        case_id,
                        case.district_code,
                        ev.CaseReferred(
                            case_id=case_id,
                            project_id=case.project_id,
                            district_code=case.district_code,
                            task_id=task.task_id,
                            unit_kind=spec.unit.kind,
                            unit_id=spec.unit.unit_id,
                            occur_time=timestamp(now),
                        ),
                    )
                ],
            )
        return changed, task

    def reopen_case(self, case_id: str, reason: str) -> Case:
        call = current()
        with self.engine.begin() as connection:
            case = self._case(connection, case_id, lock=True)
            call.require_district(case.district_code)
            if call.principal.role is not Role.ADMIN and call.principal.subject != case.raised_by:
                raise PermissionDenied("NOT_YOUR_CASE", "only who raised a case reopens it")
            now = self.now()
            domain.may_reopen(case, now, self.settings.reopen_days)
            changed = replace(
                case,
                state=domain.case_transition(case.state, CaseAction.REOPEN),
                reason=reason,
                resolved_at=None,
            )
            store.update_case(connection, changed)
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        CASE_TOPIC,
                        case_id,
                        case.district_code,
                        ev.CaseReopened(
                            case_id=case_id,
                            project_id=case.project_id,
                            district_code=case.district_code,
                            reason=reason,
                            occur_time=timestamp(now),
                        ),
                    )
                ],
            )
        return changed

    # ------------------------------------------------------------ meetings

    def convene(
        self,
        connection: Connection,
        *,
        held_at: dt.datetime,
        place: str,
        case_ids: tuple[str, ...],
        units: tuple[Unit, ...],
    ) -> Meeting:
        found = store.get_cases(connection, case_ids)
        missing = [c for c in case_ids if c not in found]
        if missing:
            raise NotFound("CASE_NOT_FOUND", f"no case {missing[0]}", case_id=missing[0])
        first = found[case_ids[0]]
        for case in found.values():
            if (case.district_code, case.sub_district) != (first.district_code, first.sub_district):
                raise FailedPrecondition(
                    "CASES_OF_SEVERAL_SUB_DISTRICTS",
                    "a meeting takes the cases of one sub-district",
                    case_id=case.case_id,
                )
            if case.state is not CaseState.ACCEPTED:
                raise FailedPrecondition(
                    "CASE_NOT_ACCEPTED",
                    f"case {case.case_id} is {case.state.value}: only accepted cases go on the "
                    "agenda",
                    case_id=case.case_id,
                )
        self._office(first.district_code, first.sub_district)
        now = self.now()
        problem = domain.check_hold_time(
            held_at, now, self.settings.max_record_back_days, self.settings.max_convene_ahead_days
        )
        if problem:
            raise FailedPrecondition("HOLD_TIME_OUT_OF_RANGE", problem)
        meeting = Meeting(
            meeting_id=new_id(first.district_code, "M"),
            district_code=first.district_code,
            sub_district=first.sub_district,
            held_at=held_at,
            place=place,
            case_ids=case_ids,
            invitations=tuple(Invitation(u) for u in units),
            state=MeetingState.CONVENED,
            chair=current().principal.subject,
        )
        store.insert_meeting(connection, meeting, now)
        add_events(
            connection,
            [
                Event.of_aggregate(
                    MEETING_TOPIC,
                    meeting.meeting_id,
                    meeting.district_code,
                    ev.MeetingConvened(
                        meeting_id=meeting.meeting_id,
                        district_code=meeting.district_code,
                        sub_district=meeting.sub_district,
                        hold_time=timestamp(held_at),
                        case_ids=list(case_ids),
                        invited=[u.key for u in units],
                        occur_time=timestamp(now),
                    ),
                )
            ],
        )
        return meeting

    def get_meeting(self, meeting_id: str) -> tuple[Meeting, list[Resolution]]:
        with self.reader.connect() as connection:
            meeting = self._meeting(connection, meeting_id)
            current().require_district(meeting.district_code)
            adopted = store.resolutions_of(connection, meeting_id)
            tasks = store.tasks_of_resolutions(connection, [r[0] for r in adopted])
        return meeting, [
            Resolution(rid, meeting_id, case_id, decision, tuple(tasks[rid]))
            for rid, case_id, decision in adopted
        ]

    def _held_meeting(self, connection: Connection, meeting_id: str) -> Meeting:
        meeting = self._meeting(connection, meeting_id, lock=True)
        self._office(meeting.district_code, meeting.sub_district)
        domain.check_open(meeting)
        domain.check_held(meeting, self.now())
        return meeting

    def record_attendance(self, meeting_id: str, given: dict[str, Attendance]) -> Meeting:
        with self.engine.begin() as connection:
            meeting = self._held_meeting(connection, meeting_id)
            if any(
                s is not MinutesState.OPEN
                for s in store.minutes_states_of_meeting(connection, meeting_id)
            ):
                raise FailedPrecondition(
                    "ATTENDANCE_FROZEN",
                    "the minutes are being signed: who attended no longer changes",
                    meeting_id=meeting_id,
                )
            by_id = {i.unit.unit_id: i for i in meeting.invitations}
            unknown = [u for u in given if u not in by_id]
            if unknown:
                raise FailedPrecondition(
                    "UNIT_NOT_INVITED",
                    f"unit {unknown[0]} was not invited to meeting {meeting_id}",
                    unit_id=unknown[0],
                )
            now = self.now()
            newly_absent = [
                by_id[u].unit
                for u, a in given.items()
                if a is Attendance.ABSENT_WITHOUT_LEAVE and by_id[u].attendance is not a
            ]
            changed = replace(
                meeting,
                invitations=tuple(
                    replace(i, attendance=given.get(i.unit.unit_id, i.attendance))
                    for i in meeting.invitations
                ),
            )
            store.update_meeting(connection, changed)
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        MEETING_TOPIC,
                        meeting_id,
                        meeting.district_code,
                        ev.AbsenceRecorded(
                            meeting_id=meeting_id,
                            district_code=meeting.district_code,
                            unit_kind=u.kind,
                            unit_id=u.unit_id,
                            occur_time=timestamp(now),
                        ),
                    )
                    for u in newly_absent
                ],
            )
        return changed

    def _new_task(self, case: Case, meeting_id: str, spec: TaskSpec, start: dt.date) -> Task:
        return Task(
            task_id=new_id(case.district_code, "T"),
            case_id=case.case_id,
            meeting_id=meeting_id,
            district_code=case.district_code,
            project_id=case.project_id,
            unit=spec.unit,
            working_days=spec.working_days,
            done_when=spec.done_when,
            due=domain.due_date(self.calendar, start, spec.working_days),
            escalation_level=domain.escalation_level(
                self.settings.escalation_ladder, Lateness.ON_TIME
            ),
        )

    def adopt_resolution(
        self, meeting_id: str, case_id: str, decision: str, specs: list[TaskSpec]
    ) -> Resolution:
        with self.engine.begin() as connection:
            meeting = self._held_meeting(connection, meeting_id)
            if case_id not in meeting.case_ids:
                raise FailedPrecondition(
                    "CASE_NOT_ON_AGENDA",
                    f"case {case_id} is not on the agenda of meeting {meeting_id}",
                    case_id=case_id,
                )
            case = self._case(connection, case_id, lock=True)
            for spec in specs:
                if meeting.invited(spec.unit.key) is None:
                    raise FailedPrecondition(
                        "UNIT_NOT_INVITED",
                        f"unit {spec.unit.key} was not invited to meeting {meeting_id}",
                        unit_id=spec.unit.unit_id,
                    )
            now = self.now()
            changed = replace(case, state=domain.case_transition(case.state, CaseAction.ADOPT))
            meeting_day = self.calendar.local_date(meeting.held_at)
            tasks = [self._new_task(case, meeting_id, spec, meeting_day) for spec in specs]
            resolution_id = new_id(case.district_code, "D")
            store.update_case(connection, changed)
            store.insert_resolution(connection, resolution_id, meeting_id, case_id, decision, now)
            store.insert_tasks(connection, tasks, resolution_id, now)
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        MEETING_TOPIC,
                        meeting_id,
                        meeting.district_code,
                        ev.ResolutionAdopted(
                            resolution_id=resolution_id,
                            meeting_id=meeting_id,
                            case_id=case_id,
                            district_code=meeting.district_code,
                            task_ids=[t.task_id for t in tasks],
                            occur_time=timestamp(now),
                        ),
                    )
                ],
            )
        return Resolution(resolution_id, meeting_id, case_id, decision, tuple(tasks))

    def close_meeting(self, meeting_id: str) -> Meeting:
        with self.engine.begin() as connection:
            meeting = self._meeting(connection, meeting_id, lock=True)
            self._office(meeting.district_code, meeting.sub_district)
            domain.check_open(meeting)
            closed = replace(meeting, state=MeetingState.CLOSED)
            store.update_meeting(connection, closed)
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        MEETING_TOPIC,
                        meeting_id,
                        meeting.district_code,
                        ev.MeetingClosed(
                            meeting_id=meeting_id,
                            district_code=meeting.district_code,
                            occur_time=timestamp(self.now()),
                        ),
                    )
                ],
            )
        return closed

    # ------------------------------------------------------------ tasks

    def complete_task(self, task_id: str, note: str) -> Task:
        with self.engine.begin() as connection:
            task = self._task(connection, task_id, lock=True)
            current().require_district(task.district_code)
            self._unit_acts(task.unit)
            changed = replace(
                task,
                state=domain.task_transition(task.state, TaskAction.COMPLETE),
                completion_note=note,
            )
            store.update_task(connection, changed)
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        TASK_TOPIC,
                        task_id,
                        task.district_code,
                        ev.TaskCompleted(
                            task_id=task_id,
                            case_id=task.case_id,
                            district_code=task.district_code,
                            unit_kind=task.unit.kind,
                            unit_id=task.unit.unit_id,
                            occur_time=timestamp(self.now()),
                        ),
                    )
                ],
            )
        return changed

    def _followed_task(self, connection: Connection, task_id: str) -> tuple[Case, Task]:
        """The task, locked after its case (the order every command takes them in), if the
        caller is its case's sub-district office."""
        case_id = self._task(connection, task_id).case_id
        case = self._case(connection, case_id, lock=True)
        self._office(case.district_code, case.sub_district)
        return case, self._task(connection, task_id, lock=True)

    def accept_task(self, task_id: str) -> tuple[Task, Case]:
        with self.engine.begin() as connection:
            case, task = self._followed_task(connection, task_id)
            now = self.now()
            changed = replace(task, state=domain.task_transition(task.state, TaskAction.ACCEPT))
            store.update_task(connection, changed)
            events = [
                Event.of_aggregate(
                    TASK_TOPIC,
                    task_id,
                    task.district_code,
                    ev.TaskAccepted(
                        task_id=task_id,
                        case_id=task.case_id,
                        district_code=task.district_code,
                        occur_time=timestamp(now),
                    ),
                )
            ]
            states = [
                changed.state if t.task_id == task_id else t.state
                for t in store.tasks_of_case(connection, case.case_id)
            ]
            if domain.case_settled(states) and (case.state, CaseAction.RESOLVE) in (
                domain.CASE_TRANSITIONS
            ):
                case = replace(
                    case,
                    state=domain.case_transition(case.state, CaseAction.RESOLVE),
                    resolved_at=now,
                )
                store.update_case(connection, case)
                events.append(
                    Event.of_aggregate(
                        CASE_TOPIC,
                        case.case_id,
                        case.district_code,
                        ev.CaseResolved(
                            case_id=case.case_id,
                            project_id=case.project_id,
                            district_code=case.district_code,
                            occur_time=timestamp(now),
                        ),
                    )
                )
            add_events(connection, events)
        return changed, case

    def reopen_task(self, task_id: str, reason: str) -> Task:
        with self.engine.begin() as connection:
            _, task = self._followed_task(connection, task_id)
            changed = replace(task, state=domain.task_transition(task.state, TaskAction.REOPEN))
            store.update_task(connection, changed)
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        TASK_TOPIC,
                        task_id,
                        task.district_code,
                        ev.TaskReopened(
                            task_id=task_id,
                            case_id=task.case_id,
                            district_code=task.district_code,
                            reason=reason,
                            occur_time=timestamp(self.now()),
                        ),
                    )
                ],
            )
        return changed

    def list_tasks(
        self, district: str, filters: dict[str, str], after: str | None, limit: int
    ) -> list[Task]:
        call = current()
        districts = frozenset({district}) if district else call.visible_districts()
        role = call.principal.role
        if role not in (None, Role.ADMIN, Role.SERVICE, Role.SUB_DISTRICT) and not (
            call.principal.is_authority
        ):
            # A unit sees its own tasks.
            filters = {**filters, "unit_id": call.principal.subject}
        with self.reader.connect() as connection:
            return store.list_tasks(connection, districts, filters, after, limit)

    # ------------------------------------------------------------ the timer

    def mark_overdue(self) -> int:
        """Reminds units of deadlines near, marks open tasks overdue (the working day after
        the deadline) and very late, escalating each step; returns how many tasks changed."""
        settings = self.settings
        thresholds = domain.late_thresholds(
            self.calendar,
            self.today(),
            settings.very_late_working_days,
            settings.reminder_working_days,
        )
        changed = 0
        for lateness, before in (
            (Lateness.ON_TIME, thresholds.overdue_before),
            (Lateness.OVERDUE, thresholds.very_late_before),
        ):
            while count := self._late_batch(lateness, before):
                changed += count
        if thresholds.remind_through is not None:
            while count := self._reminder_batch(thresholds.remind_through):
                changed += count
        return changed

    def _late_batch(self, lateness: Lateness, before: dt.date) -> int:
        ladder = self.settings.escalation_ladder
        enterprise_kind = self.settings.enterprise_unit_kind
        step = domain.LATENESS_STEPS[domain.LATENESS_STEPS.index(lateness) + 1]
        level = domain.escalation_level(ladder, step)
        with self.engine.begin() as connection:
            late = store.mark_late(connection, lateness, before, step, level, TIMER_BATCH)
            if not late:
                return 0
            now = timestamp(self.now())
            events = []
            for t in late:
                due_date = to_date(t.due)
                if step is Lateness.OVERDUE:
                    enterprise = t.unit.kind == enterprise_kind
                    events.append(
                        Event.of_aggregate(
                            TASK_TOPIC,
                            t.task_id,
                            t.district_code,
                            ev.TaskOverdue(
                                task_id=t.task_id,
                                case_id=t.case_id,
                                project_id=t.project_id,
                                district_code=t.district_code,
                                unit_kind=t.unit.kind,
                                unit_id=t.unit.unit_id,
                                assigned_to_enterprise=enterprise,
                                credit_code=t.unit.unit_id if enterprise else "",
                                due_date=due_date,
                                reason=f"joint-meeting task {t.task_id} of case {t.case_id} "
                                f"was due {t.due.isoformat()}",
                                occur_time=now,
                            ),
                        )
                    )
                if level != domain.escalation_level(ladder, lateness):
                    events.append(
                        Event.of_aggregate(
                            TASK_TOPIC,
                            t.task_id,
                            t.district_code,
                            ev.TaskEscalated(
                                task_id=t.task_id,
                                case_id=t.case_id,
                                district_code=t.district_code,
                                unit_kind=t.unit.kind,
                                unit_id=t.unit.unit_id,
                                level=level,
                                very_late=step is Lateness.VERY_LATE,
                                due_date=due_date,
                                occur_time=now,
                            ),
                        )
                    )
            add_events(connection, events)
        return len(late)

    def _reminder_batch(self, through: dt.date) -> int:
        with self.engine.begin() as connection:
            due = store.mark_reminded(connection, through, TIMER_BATCH)
            if not due:
                return 0
            now = timestamp(self.now())
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        TASK_TOPIC,
                        t.task_id,
                        t.district_code,
                        ev.TaskReminder(
                            task_id=t.task_id,
                            case_id=t.case_id,
                            district_code=t.district_code,
                            unit_kind=t.unit.kind,
                            unit_id=t.unit.unit_id,
                            due_date=to_date(t.due),
                            occur_time=now,
                        ),
                    )
                    for t in due
                ],
            )
        return len(due)

    # ------------------------------------------------------------ minutes

    def draft_minutes(self, meeting_id: str, text: str, amends_minutes_id: str) -> Minutes:
        with self.engine.begin() as connection:
            meeting = self._meeting(connection, meeting_id, lock=True)
            self._office(meeting.district_code, meeting.sub_district)
            domain.check_held(meeting, self.now())
            states = store.minutes_states_of_meeting(connection, meeting_id)
            if any(s is not MinutesState.SIGNED for s in states):
                raise AlreadyExists(
                    "MINUTES_IN_PROGRESS",
                    f"meeting {meeting_id} has minutes not signed yet: amend or sign those",
                    meeting_id=meeting_id,
                )
            if amends_minutes_id:
                amended = self._minutes(connection, amends_minutes_id)
                if amended.meeting_id != meeting_id or amended.state is not MinutesState.SIGNED:
                    raise FailedPrecondition(
                        "NOT_AMENDABLE",
                        "a new document amends the signed minutes of the same meeting",
                        minutes_id=amends_minutes_id,
                    )
            elif states:
                raise AlreadyExists(
                    "MINUTES_EXIST",
                    f"meeting {meeting_id} has signed minutes: a change is a new document that "
                    "names them in amends_minutes_id",
                    meeting_id=meeting_id,
                )
            drafted = Minutes(
                minutes_id=new_id(meeting.district_code, "N"),
                meeting_id=meeting_id,
                district_code=meeting.district_code,
                hold_time=hold_time_text(meeting.held_at),
                place=meeting.place,
                text=text,
                amends_minutes_id=amends_minutes_id,
            )
            store.insert_minutes(connection, drafted, self.now())
        return drafted

    def _attending_unit(self, meeting: Meeting) -> Unit:
        """The unit the caller acts for, if it attended the meeting."""
        principal = current().principal
        for invitation in meeting.invitations:
            unit = invitation.unit
            if (
                invitation.attendance is Attendance.PRESENT
                and unit.unit_id == principal.subject
                and domain.unit_role(unit.kind, self.settings.unit_kind_roles)
                == str(principal.role.value if principal.role else "")
            ):
                return unit
        raise PermissionDenied(
            "NOT_AN_ATTENDING_UNIT", "only the units that attended the meeting may do this"
        )

    def propose_amendment(self, minutes_id: str, text: str) -> Minutes:
        with self.engine.begin() as connection:
            found = self._minutes(connection, minutes_id, lock=True)
            meeting = self._meeting(connection, found.meeting_id)
            current().require_district(meeting.district_code)
            unit = self._attending_unit(meeting)
            domain.check_amendable(found)
            if len(found.amendments) >= self.settings.max_amendments:
                raise FailedPrecondition(
                    "TOO_MANY_AMENDMENTS",
                    f"minutes take at most {self.settings.max_amendments} amendments",
                )
            changed = replace(found, amendments=(*found.amendments, Amendment(unit, text)))
            store.update_minutes(connection, changed)
        return changed

    def sign_minutes(self, minutes_id: str) -> Minutes:
        principal = current().principal
        with self.engine.begin() as connection:
            found = self._minutes(connection, minutes_id, lock=True)
            meeting = self._meeting(connection, found.meeting_id)
            current().require_district(meeting.district_code)
            if principal.role is Role.SUB_DISTRICT and principal.subject == meeting.chair:
                signer, role = meeting.chair, domain.CHAIR
            else:
                unit = self._attending_unit(meeting)
                signer, role = unit.key, unit.kind
            now = self.now()
            signed = domain.sign(found, signer, role, meeting, now)
            store.update_minutes(connection, signed)
            if signed.state is MinutesState.SIGNED:
                add_events(
                    connection,
                    [
                        Event.of_aggregate(
                            MEETING_TOPIC,
                            meeting.meeting_id,
                            meeting.district_code,
                            ev.MinutesSigned(
                                minutes_id=minutes_id,
                                meeting_id=meeting.meeting_id,
                                district_code=meeting.district_code,
                                content_hash=signed.content_hash,
                                signers=list(signed.required_signers),
                                amends_minutes_id=signed.amends_minutes_id,
                                occur_time=timestamp(now),
                            ),
                        )
                    ],
                )
        return signed

    def get_minutes(self, minutes_id: str) -> Minutes:
        """Signed minutes are public; drafts are read by the district's callers."""
        call = current()
        with self.reader.connect() as connection:
            found = self._minutes(connection, minutes_id)
        call.scope.check_served(found.district_code)
        if found.state is not MinutesState.SIGNED:
            if call.principal.role is None:
                raise PermissionDenied(
                    "MINUTES_NOT_SIGNED", "minutes are public once signed; sign in to read drafts"
                )
            call.require_district(found.district_code)
        return found

    # ------------------------------------------------------------ reports

    def district_report(self, district: str, first: dt.date, last: dt.date) -> DistrictReport:
        start = dt.datetime.combine(first, dt.time(), self.city)
        end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), self.city)
        with self.reader.connect() as connection:
            raised, accepted, resolved = store.case_counts(connection, district, start, end)
            tallies = store.task_tallies(connection, district, first, last)
            absences = store.absences(connection, district, start, end)
        enterprise_kind = self.settings.enterprise_unit_kind
        by_kind: dict[str, Counter] = {}
        by_enterprise: dict[str, Counter] = {}
        for kind, unit_id, lateness, count in tallies:
            late = "overdue" if lateness != Lateness.ON_TIME.value else "on_time"
            by_kind.setdefault(kind, Counter())[late] += count
            if kind == enterprise_kind:
                by_enterprise.setdefault(unit_id, Counter())[late] += count
        return DistrictReport(
            cases_raised=raised,
            cases_accepted=accepted,
            cases_resolved=len(resolved),
            median_days=domain.median_days(
                [int((done - opened).total_seconds()) for opened, done in resolved]
            ),
            by_unit_kind=_tallies(by_kind),
            by_enterprise=_tallies(by_enterprise),
            absences=sorted(absences.items()),
        )

    # ------------------------------------------------------------ events of other services
    # Each handler is idempotent by its own keys as well as by the inbox.

    def on_project_registered(self, connection: Connection, message, meta: EventMeta) -> None:
        store.add_project(
            connection,
            Project(message.project_id, message.district_code, message.sub_district, ""),
        )

    def on_enterprise_assigned(self, connection: Connection, message, meta: EventMeta) -> None:
        store.set_serving_enterprise(
            connection, message.project_id, message.credit_code, _moment(message.occur_time)
        )

    def on_enterprise_exited(self, connection: Connection, message, meta: EventMeta) -> None:
        store.set_serving_enterprise(
            connection,
            message.project_id,
            "",
            _moment(message.occur_time),
            exiting=message.credit_code,
        )

    def on_committee_formed(self, connection: Connection, message, meta: EventMeta) -> None:
        store.add_committee(connection, message.committee_id, message.project_id)

    def handlers(self) -> dict[str, Handler]:
        return {
            "wuye.registry.v1.ProjectRegistered": Handler(
                registry_events.ProjectRegistered, self.on_project_registered
            ),
            "wuye.registry.v1.EnterpriseAssigned": Handler(
                registry_events.EnterpriseAssigned, self.on_enterprise_assigned
            ),
            "wuye.registry.v1.EnterpriseExited": Handler(
                registry_events.EnterpriseExited, self.on_enterprise_exited
            ),
            "wuye.registry.v1.OwnersCommitteeFormed": Handler(
                registry_events.OwnersCommitteeFormed, self.on_committee_formed
            ),
        }


def _tallies(counts: dict[str, Counter]) -> list[Tally]:
    return [Tally(key, c["on_time"], c["overdue"]) for key, c in sorted(counts.items())]
