"""The rules of joint meetings (DOMAIN.md section 3): cases and tasks as state machines, deadlines
in working days that escalate by themselves, and minutes whose signed content can be proven
unchanged. Pure functions and dataclasses; no IO.

Minutes' content hash, algorithm version 1 (for anyone reimplementing the verifier):

1. Take the minutes as GetMinutes returns them and build a JSON object with exactly these keys:
   "algorithm_version" (the number 1), "minutes_id", "meeting_id", "district_code",
   "hold_time" (the meeting's time as protobuf JSON prints a Timestamp: RFC 3339 in UTC with a
   "Z", fractional seconds only when not zero, in 3, 6 or 9 digits), "place", "text",
   "amendments" (a list, in the order proposed, of objects {"unit_kind", "unit_id", "text"}),
   "amends_minutes_id" ("" for a first document) and "required_signers" (the list of signers,
   sorted by code point: the chair's sub-district office, then "KIND:unit_id" of each unit
   that attended).
2. Serialise it with keys sorted by code point, no insignificant whitespace (separators "," and
   ":"), non-ASCII characters as themselves, encoded in UTF-8.
3. The content hash is the lowercase hex SHA-256 of those bytes.
4. Signed minutes verify when their state is SIGNED, the recomputed hash equals the published
   one, and every required signer has signed exactly that hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from wuye.core.calendar import WorkingCalendar, WorkingDaysUnknown
from wuye.core.errors import FailedPrecondition, PermissionDenied

ALGORITHM_VERSION = 1
CHAIR = "CHAIR"

# ---------------------------------------------------------------- cases


class CaseState(StrEnum):
    RAISED = "RAISED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    REFERRED = "REFERRED"
    RESOLVING = "RESOLVING"
    RESOLVED = "RESOLVED"


class CaseAction(StrEnum):
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    REFER = "REFER"
    # A meeting adopts a resolution on it.
    ADOPT = "ADOPT"
    # Its last task was accepted.
    RESOLVE = "RESOLVE"
    REOPEN = "REOPEN"


CASE_TRANSITIONS: Mapping[tuple[CaseState, CaseAction], CaseState] = {
    (CaseState.RAISED, CaseAction.ACCEPT): CaseState.ACCEPTED,
    (CaseState.RAISED, CaseAction.REJECT): CaseState.REJECTED,
    (CaseState.RAISED, CaseAction.REFER): CaseState.REFERRED,
    # A unit that could not settle a referred case alone: the office takes it to a meeting.
    (CaseState.REFERRED, CaseAction.ACCEPT): CaseState.ACCEPTED,
    (CaseState.REFERRED, CaseAction.RESOLVE): CaseState.RESOLVED,
    (CaseState.ACCEPTED, CaseAction.ADOPT): CaseState.RESOLVING,
    (CaseState.RESOLVING, CaseAction.RESOLVE): CaseState.RESOLVED,
    # Back before a meeting.
    (CaseState.RESOLVED, CaseAction.REOPEN): CaseState.ACCEPTED,
}


def case_transition(state: CaseState, action: CaseAction) -> CaseState:
    """The state `action` takes a case in `state` to; FAILED_PRECONDITION if it may not."""
    after = CASE_TRANSITIONS.get((state, action))
    if after is None:
        raise FailedPrecondition(
            "CASE_STATE_FORBIDS",
            f"a case that is {state.value} cannot {action.value.lower()}",
            state=state.value,
            action=action.value,
        )
    return after


# ---------------------------------------------------------------- tasks


class TaskState(StrEnum):
    OPEN = "OPEN"
    DONE = "DONE"
    ACCEPTED = "ACCEPTED"


class TaskAction(StrEnum):
    COMPLETE = "COMPLETE"
    ACCEPT = "ACCEPT"
    REOPEN = "REOPEN"


TASK_TRANSITIONS: Mapping[tuple[TaskState, TaskAction], TaskState] = {
    (TaskState.OPEN, TaskAction.COMPLETE): TaskState.DONE,
    (TaskState.DONE, TaskAction.ACCEPT): TaskState.ACCEPTED,
    (TaskState.DONE, TaskAction.REOPEN): TaskState.OPEN,
}


def task_transition(state: TaskState, action: TaskAction) -> TaskState:
    after = TASK_TRANSITIONS.get((state, action))
    if after is None:
        raise FailedPrecondition(
            "TASK_STATE_FORBIDS",
            f"a task that is {state.value} cannot {action.value.lower()}",
            state=state.value,
            action=action.value,
        )
    return after


class Lateness(StrEnum):
    """How late an open task got; it only moves forward, one step at a time."""

    ON_TIME = "ON_TIME"
    OVERDUE = "OVERDUE"
    VERY_LATE = "VERY_LATE"


LATENESS_STEPS: tuple[Lateness, ...] = (Lateness.ON_TIME, Lateness.OVERDUE, Lateness.VERY_LATE)


def escalation_level(ladder: tuple[str, ...], lateness: Lateness) -> str:
    """Who follows a task up: the ladder's step as far up as the task is late."""
    return ladder[min(LATENESS_STEPS.index(lateness), len(ladder) - 1)]


def due_date(calendar: WorkingCalendar, start: dt.date, working_days: int) -> dt.date:
    """A task given `working_days` on `start` (the meeting's day) is due on the working_days-th
    working day after it."""
    return calendar.add_working_days(start, working_days)


def working_days_back(calendar: WorkingCalendar, day: dt.date, count: int) -> dt.date:
    """The `count`-th working day counted back from `day` (itself the first, if it is one)."""
    while True:
        if calendar.is_working_day(day):
            count -= 1
            if count <= 0:
                return day
        day -= dt.timedelta(days=1)


@dataclass(frozen=True)
class LateThresholds:
    """What the timer marks on `today`, as bounds on the due date, so that one query finds the
    tasks of each step however many there are:

    - overdue from the working day after the deadline: due < `overdue_before`;
    - very late `very_late_working_days` working days after it: due < `very_late_before`;
    - reminded `reminder_working_days` working days before it: due <= `remind_through`.
    """

    overdue_before: dt.date
    very_late_before: dt.date
    remind_through: dt.date | None


def late_thresholds(
    calendar: WorkingCalendar, today: dt.date, very_late_working_days: int, reminder_days: int
) -> LateThresholds:
    # The k-th working day after `due` is on or before today exactly when k working days lie in
    # (due, latest working day <= today]: when due is before the k-th working day counted back.
    try:
        remind_through = calendar.add_working_days(today, reminder_days)
    except WorkingDaysUnknown:
        # Late in a year whose successor is not announced yet: no reminders, but the days
        # behind are known, so lateness is still marked.
        remind_through = None
    return LateThresholds(
        overdue_before=working_days_back(calendar, today, 1),
        very_late_before=working_days_back(calendar, today, very_late_working_days),
        remind_through=remind_through,
    )


def lateness_on(due: dt.date, thresholds: LateThresholds) -> Lateness:
    if due < thresholds.very_late_before:
        return Lateness.VERY_LATE
    if due < thresholds.overdue_before:
        return Lateness.OVERDUE
    return Lateness.ON_TIME


# ---------------------------------------------------------------- units and who acts


@dataclass(frozen=True)
class Unit:
    kind: str
    unit_id: str
    name: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.unit_id}"


def unit_role(unit_kind: str, kind_roles: Mapping[str, str]) -> str:
    """The role of the bearer tokens a unit of `unit_kind` acts with."""
    return kind_roles.get(unit_kind, "member_unit")


def check_unit_acts(unit: Unit, role: str | None, subject: str, kind_roles: Mapping[str, str]):
    """A unit completes only its own tasks and signs only as itself."""
    if role != unit_role(unit.kind, kind_roles) or subject != unit.unit_id:
        raise PermissionDenied(
            "NOT_YOUR_TASK",
            f"only the unit {unit.key} may do this",
            unit_kind=unit.kind,
        )


def check_office(sub_district: str, role: str | None, subject: str) -> None:
    """Only the project's sub-district office convenes, adopts and follows up (authorities and
    operators act for any)."""
    if role == "sub_district" and subject != sub_district:
        raise PermissionDenied(
            "NOT_YOUR_SUB_DISTRICT",
            f"this belongs to the sub-district office of {sub_district}",
            sub_district=sub_district,
        )


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class Project:
    project_id: str
    district_code: str
    sub_district: str
    credit_code: str


@dataclass(frozen=True)
class Case:
    case_id: str
    project_id: str
    district_code: str
    sub_district: str
    credit_code: str
    category: str
    description: str
    enterprise_attempts: str
    state: CaseState
    raised_by_role: str
    raised_by: str
    masked_name: str = ""
    masked_phone: str = ""
    reason: str = ""
    referred_to: Unit | None = None
    raised_at: dt.datetime | None = None
    accepted_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None


def may_reopen(case: Case, now: dt.datetime, reopen_days: int) -> None:
    """Within `reopen_days` of its resolution a resolved case may be reopened."""
    case_transition(case.state, CaseAction.REOPEN)
    if case.resolved_at is None or now - case.resolved_at > dt.timedelta(days=reopen_days):
        raise FailedPrecondition(
            "REOPEN_PERIOD_OVER",
            f"a case may be reopened within {reopen_days} days of its resolution",
            reopen_days=str(reopen_days),
        )


@dataclass(frozen=True)
class Task:
    task_id: str
    case_id: str
    meeting_id: str
    district_code: str
    project_id: str
    unit: Unit
    working_days: int
    done_when: str
    due: dt.date
    state: TaskState = TaskState.OPEN
    lateness: Lateness = Lateness.ON_TIME
    escalation_level: str = ""
    completion_note: str = ""


def case_settled(task_states: Iterable[TaskState]) -> bool:
    """A case is resolved when every one of its tasks is done and accepted."""
    states = list(task_states)
    return bool(states) and all(s is TaskState.ACCEPTED for s in states)


# ---------------------------------------------------------------- meetings


class MeetingState(StrEnum):
    CONVENED = "CONVENED"
    CLOSED = "CLOSED"


class Attendance(StrEnum):
    PRESENT = "PRESENT"
    ABSENT_WITH_LEAVE = "ABSENT_WITH_LEAVE"
    ABSENT_WITHOUT_LEAVE = "ABSENT_WITHOUT_LEAVE"


@dataclass(frozen=True)
class Invitation:
    unit: Unit
    attendance: Attendance | None = None


@dataclass(frozen=True)
class Meeting:
    meeting_id: str
    district_code: str
    sub_district: str
    held_at: dt.datetime
    place: str
    case_ids: tuple[str, ...]
    invitations: tuple[Invitation, ...]
    state: MeetingState
    chair: str

    def invited(self, unit_key: str) -> Invitation | None:
        return next((i for i in self.invitations if i.unit.key == unit_key), None)


def check_hold_time(
    held_at: dt.datetime, now: dt.datetime, back_days: int, ahead_days: int
) -> str | None:
    """Why a meeting cannot be convened for `held_at`, or None."""
    if held_at < now - dt.timedelta(days=back_days):
        return f"a meeting held more than {back_days} days ago can no longer be recorded"
    if held_at > now + dt.timedelta(days=ahead_days):
        return f"must be within {ahead_days} days from now"
    return None


def check_open(meeting: Meeting) -> None:
    if meeting.state is not MeetingState.CONVENED:
        raise FailedPrecondition(
            "MEETING_CLOSED",
            f"meeting {meeting.meeting_id} is closed",
            meeting_id=meeting.meeting_id,
        )


def check_held(meeting: Meeting, now: dt.datetime) -> None:
    """Attendance and resolutions are records of a meeting that took place."""
    if meeting.held_at > now:
        raise FailedPrecondition(
            "MEETING_NOT_HELD_YET",
            f"meeting {meeting.meeting_id} is not held before {meeting.held_at.isoformat()}",
            meeting_id=meeting.meeting_id,
        )


# ---------------------------------------------------------------- minutes


class MinutesState(StrEnum):
    OPEN = "OPEN"
    SIGNING = "SIGNING"
    SIGNED = "SIGNED"


@dataclass(frozen=True)
class Amendment:
    unit: Unit
    text: str


@dataclass(frozen=True)
class Signature:
    signer: str
    role: str
    content_hash: str
    signed_at: dt.datetime


@dataclass(frozen=True)
class Minutes:
    minutes_id: str
    meeting_id: str
    district_code: str
    hold_time: str  # as protobuf JSON prints the meeting's Timestamp
    place: str
    text: str
    amendments: tuple[Amendment, ...] = ()
    amends_minutes_id: str = ""
    state: MinutesState = MinutesState.OPEN
    required_signers: tuple[str, ...] = ()
    signatures: tuple[Signature, ...] = ()
    content_hash: str = ""


def required_signers(meeting: Meeting) -> tuple[str, ...]:
    """The chair and every unit that attended, sorted."""
    present = [i.unit.key for i in meeting.invitations if i.attendance is Attendance.PRESENT]
    return tuple(sorted({meeting.chair, *present}))


def canonical_content(minutes: Minutes) -> bytes:
    """Step 1 and 2 of the algorithm in this module's docstring."""
    content = {
        "algorithm_version": ALGORITHM_VERSION,
        "minutes_id": minutes.minutes_id,
        "meeting_id": minutes.meeting_id,
        "district_code": minutes.district_code,
        "hold_time": minutes.hold_time,
        "place": minutes.place,
        "text": minutes.text,
        "amendments": [
            {"unit_kind": a.unit.kind, "unit_id": a.unit.unit_id, "text": a.text}
            for a in minutes.amendments
        ],
        "amends_minutes_id": minutes.amends_minutes_id,
        "required_signers": sorted(minutes.required_signers),
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(minutes: Minutes) -> str:
    return hashlib.sha256(canonical_content(minutes)).hexdigest()


def check_amendable(minutes: Minutes) -> None:
    if minutes.state is not MinutesState.OPEN:
        raise FailedPrecondition(
            "MINUTES_NOT_OPEN" if minutes.state is MinutesState.SIGNING else "MINUTES_SIGNED",
            f"minutes {minutes.minutes_id} are {minutes.state.value.lower()}: they no longer "
            "change; amend signed minutes with a new document that names them",
            minutes_id=minutes.minutes_id,
        )


def sign(minutes: Minutes, signer: str, role: str, meeting: Meeting, at: dt.datetime) -> Minutes:
    """Adds `signer`'s signature. The first signature freezes the content and who must sign;
    the last makes the minutes SIGNED, with their hash."""
    if minutes.state is MinutesState.SIGNED:
        raise FailedPrecondition(
            "MINUTES_SIGNED",
            f"minutes {minutes.minutes_id} are signed",
            minutes_id=minutes.minutes_id,
        )
    frozen = minutes
    if minutes.state is MinutesState.OPEN:
        frozen = replace(
            minutes, state=MinutesState.SIGNING, required_signers=required_signers(meeting)
        )
    if signer not in frozen.required_signers:
        raise PermissionDenied(
            "NOT_A_SIGNER",
            "only the chair and the units that attended sign the minutes",
            minutes_id=minutes.minutes_id,
        )
    if any(s.signer == signer for s in frozen.signatures):
        raise FailedPrecondition(
            "ALREADY_SIGNED", f"{signer} has signed these minutes", minutes_id=minutes.minutes_id
        )
    digest = content_hash(frozen)
    signatures = (*frozen.signatures, Signature(signer, role, digest, at))
    done = {s.signer for s in signatures} >= set(frozen.required_signers)
    return replace(
        frozen,
        signatures=signatures,
        state=MinutesState.SIGNED if done else MinutesState.SIGNING,
        content_hash=digest if done else "",
    )


def minutes_problems(minutes: Minutes, published_hash: str | None) -> list[str]:
    """Why an exported copy of minutes is not the signed one (step 4); empty if it is."""
    if minutes.state is not MinutesState.SIGNED:
        return [f"the minutes are {minutes.state.value.lower()}, not signed"]
    problems = []
    digest = content_hash(minutes)
    if digest != minutes.content_hash:
        problems.append(
            f"the content does not match its hash: it hashes to {digest}, the export says "
            f"{minutes.content_hash}"
        )
    if published_hash is not None and minutes.content_hash != published_hash:
        problems.append(
            f"the export's hash {minutes.content_hash} is not the published {published_hash}"
        )
    signed = {}
    for s in minutes.signatures:
        if s.signer in signed:
            problems.append(f"{s.signer} signed twice")
        signed[s.signer] = s.content_hash
    for signer in minutes.required_signers:
        if signer not in signed:
            problems.append(f"{signer} has not signed")
        elif signed[signer] != digest:
            problems.append(f"{signer} signed other content ({signed[signer]})")
    for signer in sorted(set(signed) - set(minutes.required_signers)):
        problems.append(f"{signer} signed but is not a signer")
    return problems


# ---------------------------------------------------------------- reports


def median_days(durations_seconds: list[int]) -> str:
    """The median of the durations, in days with one decimal ("" for none)."""
    if not durations_seconds:
        return ""
    ordered = sorted(durations_seconds)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        seconds = Decimal(ordered[middle])
    else:
        seconds = Decimal(ordered[middle - 1] + ordered[middle]) / 2
    return str((seconds / 86400).quantize(Decimal("0.1")))
