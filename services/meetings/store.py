"""Joint-meeting tables, the read model of projects and committees, and their queries."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from wuye.core.db import service_metadata
from wuye.meetings.domain import (
    Amendment,
    Attendance,
    Case,
    CaseState,
    Invitation,
    Lateness,
    Meeting,
    MeetingState,
    Minutes,
    MinutesState,
    Project,
    Signature,
    Task,
    TaskState,
    Unit,
)

metadata = service_metadata()


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


# Read models, kept from the registry's events.
projects = sa.Table(
    "projects",
    metadata,
    sa.Column("project_id", sa.String(32), primary_key=True),
    sa.Column("district_code", sa.String(6), nullable=False),
    sa.Column("sub_district", sa.String(200), nullable=False),
    sa.Column("credit_code", sa.String(18), nullable=False),
    # When the assignment or exit that set credit_code happened: an older one replayed is stale.
    sa.Column("assigned_at", _time(), nullable=True),
)
committees = sa.Table(
    "committees",
    metadata,
    sa.Column("committee_id", sa.String(32), primary_key=True),
    sa.Column("project_id", sa.String(32), nullable=False),
)

cases = sa.Table(
    "cases",
    metadata,
    sa.Column("case_id", sa.String(32), primary_key=True),
    sa.Column("project_id", sa.String(32), nullable=False, index=True),
    sa.Column("district_code", sa.String(6), nullable=False),
    sa.Column("sub_district", sa.String(200), nullable=False),
    sa.Column("credit_code", sa.String(18), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("enterprise_attempts", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("raised_by_role", sa.String(32), nullable=False),
    sa.Column("raised_by", sa.String(128), nullable=False, index=True),
    # A resident's name and phone: keyed hashes and masked forms, never the whole.
    sa.Column("name_key", sa.String(32), nullable=False),
    sa.Column("phone_key", sa.String(32), nullable=False),
    sa.Column("masked_name", sa.String(200), nullable=False),
    sa.Column("masked_phone", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(2000), nullable=False),
    sa.Column("referred_to", sa.JSON, nullable=True),
    sa.Column("raised_at", _time(), nullable=False),
    sa.Column("accepted_at", _time(), nullable=True),
    sa.Column("resolved_at", _time(), nullable=True),
    sa.Index(None, "district_code", "raised_at"),
    sa.Index(None, "district_code", "resolved_at"),
)

meetings = sa.Table(
    "meetings",
    metadata,
    sa.Column("meeting_id", sa.String(32), primary_key=True),
    sa.Column("district_code", sa.String(6), nullable=False),
    sa.Column("sub_district", sa.String(200), nullable=False),
    sa.Column("held_at", _time(), nullable=False),
    sa.Column("place", sa.String(200), nullable=False),
    sa.Column("case_ids", sa.JSON, nullable=False),
    # [{kind, unit_id, name, attendance}]
    sa.Column("invitations", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("chair", sa.String(128), nullable=False),
    sa.Column("created_at", _time(), nullable=False),
    sa.Index(None, "district_code", "held_at"),
)

resolutions = sa.Table(
    "resolutions",
    metadata,
    sa.Column("resolution_id", sa.String(32), primary_key=True),
    sa.Column("meeting_id", sa.String(32), nullable=False, index=True),
    sa.Column("case_id", sa.String(32), nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("adopted_at", _time(), nullable=False),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("task_id", sa.String(32), primary_key=True),
    sa.Column("case_id", sa.String(32), nullable=False, index=True),
    # Empty for a referral.
    sa.Column("meeting_id", sa.String(32), nullable=False),
    sa.Column("resolution_id", sa.String(32), nullable=False),
    sa.Column("district_code", sa.String(6), nullable=False),
    sa.Column("project_id", sa.String(32), nullable=False),
    sa.Column("unit_kind", sa.String(64), nullable=False),
    sa.Column("unit_id", sa.String(128), nullable=False, index=True),
    sa.Column("unit_name", sa.String(200), nullable=False),
    sa.Column("working_days", sa.Integer, nullable=False),
    sa.Column("done_when", sa.String(2000), nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("lateness", sa.String(16), nullable=False),
    sa.Column("escalation_level", sa.String(64), nullable=False),
    sa.Column("completion_note", sa.String(2000), nullable=False),
    sa.Column("reminded", sa.Boolean, nullable=False),
    sa.Column("created_at", _time(), nullable=False),
    # The timer's queries: open tasks by lateness and due date.
    sa.Index(None, "state", "lateness", "due_date"),
    sa.Index(None, "district_code", "due_date"),
)

minutes = sa.Table(
    "minutes",
    metadata,
    sa.Column("minutes_id", sa.String(32), primary_key=True),
    sa.Column("meeting_id", sa.String(32), nullable=False, index=True),
    sa.Column("district_code", sa.String(6), nullable=False),
    sa.Column("hold_time", sa.String(40), nullable=False),
    sa.Column("place", sa.String(200), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    # [{kind, unit_id, name, text}]
    sa.Column("amendments", sa.JSON, nullable=False),
    sa.Column("amends_minutes_id", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("required_signers", sa.JSON, nullable=False),
    # [{signer, role, content_hash, signed_at}]
    sa.Column("signatures", sa.JSON, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("created_at", _time(), nullable=False),
)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _insert_new(connection: Connection, table: sa.Table, row: dict) -> bool:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(row).on_conflict_do_nothing()
    return connection.execute(statement).rowcount == 1


def _get(connection: Connection, table: sa.Table, key: str, lock: bool):
    query = sa.select(table).where(table.primary_key.columns[0] == key)
    if lock:
        query = query.with_for_update()
    return connection.execute(query).first()


# ---------------------------------------------------------------- projects


def add_project(connection: Connection, project: Project) -> None:
    _insert_new(
        connection,
        projects,
        {
            "project_id": project.project_id,
            "district_code": project.district_code,
            "sub_district": project.sub_district,
            "credit_code": project.credit_code,
        },
    )


def set_serving_enterprise(
    connection: Connection, project_id: str, credit_code: str, at: dt.datetime, exiting: str = ""
) -> None:
    """The project's enterprise from an assignment (or "" from an exit of `exiting`), unless a
    later change was applied already."""
    query = (
        projects.update()
        .where(projects.c.project_id == project_id)
        .where(sa.or_(projects.c.assigned_at.is_(None), projects.c.assigned_at <= at))
    )
    if exiting:
        query = query.where(projects.c.credit_code == exiting)
    connection.execute(query.values(credit_code=credit_code, assigned_at=at))


def get_project(connection: Connection, project_id: str) -> Project | None:
    row = _get(connection, projects, project_id, False)
    if row is None:
        return None
    return Project(row.project_id, row.district_code, row.sub_district, row.credit_code)


def add_committee(connection: Connection, committee_id: str, project_id: str) -> None:
    _insert_new(connection, committees, {"committee_id": committee_id, "project_id": project_id})


def committee_project(connection: Connection, committee_id: str) -> str | None:
    return connection.execute(
        sa.select(committees.c.project_id).where(committees.c.committee_id == committee_id)
    ).scalar_one_or_none()


# ---------------------------------------------------------------- cases


def _unit_json(unit: Unit | None) -> dict | None:
    return None if unit is None else {"kind": unit.kind, "unit_id": unit.unit_id, "name": unit.name}


def _unit_of(value: dict | None) -> Unit | None:
    return None if value is None else Unit(value["kind"], value["unit_id"], value["name"])


def _case(row) -> Case:
    return Case(
        case_id=row.case_id,
        project_id=row.project_id,
        district_code=row.district_code,
        sub_district=row.sub_district,
        credit_code=row.credit_code,
        category=row.category,
        description=row.description,
        enterprise_attempts=row.enterprise_attempts,
        state=CaseState(row.state),
        raised_by_role=row.raised_by_role,
        raised_by=row.raised_by,
        masked_name=row.masked_name,
        masked_phone=row.masked_phone,
        reason=row.reason,
        referred_to=_unit_of(row.referred_to),
        raised_at=_utc(row.raised_at),
        accepted_at=_utc(row.accepted_at),
        resolved_at=_utc(row.resolved_at),
    )


def insert_case(connection: Connection, case: Case, name_key: str, phone_key: str) -> None:
    connection.execute(
        cases.insert().values(
            case_id=case.case_id,
            project_id=case.project_id,
            district_code=case.district_code,
            sub_district=case.sub_district,
            credit_code=case.credit_code,
            category=case.category,
            description=case.description,
            enterprise_attempts=case.enterprise_attempts,
            state=case.state.value,
            raised_by_role=case.raised_by_role,
            raised_by=case.raised_by,
            name_key=name_key,
            phone_key=phone_key,
            masked_name=case.masked_name,
            masked_phone=case.masked_phone,
            reason=case.reason,
            referred_to=None,
            raised_at=case.raised_at,
        )
    )


def get_case(connection: Connection, case_id: str, *, lock: bool = False) -> Case | None:
    row = _get(connection, cases, case_id, lock)
    return None if row is None else _case(row)


def get_cases(connection: Connection, case_ids: Iterable[str]) -> dict[str, Case]:
    """The cases by id, each row locked, in id order (so concurrent meetings wait, not
    deadlock)."""
    rows = connection.execute(
        sa.select(cases)
        .where(cases.c.case_id.in_(sorted(set(case_ids))))
        .order_by(cases.c.case_id)
        .with_for_update()
    )
    return {row.case_id: _case(row) for row in rows}


def update_case(connection: Connection, case: Case) -> None:
    connection.execute(
        cases.update()
        .where(cases.c.case_id == case.case_id)
        .values(
            state=case.state.value,
            reason=case.reason,
            referred_to=_unit_json(case.referred_to),
            accepted_at=case.accepted_at,
            resolved_at=case.resolved_at,
        )
    )


def list_cases(
    connection: Connection,
    districts: frozenset[str],
    filters: dict[str, str],
    after: str | None,
    limit: int,
) -> list[Case]:
    query = sa.select(cases).where(cases.c.district_code.in_(sorted(districts)))
    for column, value in filters.items():
        if value:
            query = query.where(cases.c[column] == value)
    if after is not None:
        query = query.where(cases.c.case_id > after)
    rows = connection.execute(query.order_by(cases.c.case_id).limit(limit))
    return [_case(row) for row in rows]


# ---------------------------------------------------------------- meetings


def _meeting(row) -> Meeting:
    return Meeting(
        meeting_id=row.meeting_id,
        district_code=row.district_code,
        sub_district=row.sub_district,
        held_at=_utc(row.held_at),
        place=row.place,
        case_ids=tuple(row.case_ids),
        invitations=tuple(
            Invitation(
                Unit(i["kind"], i["unit_id"], i["name"]),
                Attendance(i["attendance"]) if i["attendance"] else None,
            )
            for i in row.invitations
        ),
        state=MeetingState(row.state),
        chair=row.chair,
    )


def _invitations_json(invitations: Iterable[Invitation]) -> list[dict]:
    return [
        {**_unit_json(i.unit), "attendance": i.attendance.value if i.attendance else ""}
        for i in invitations
    ]


def insert_meeting(connection: Connection, meeting: Meeting, now: dt.datetime) -> None:
    connection.execute(
        meetings.insert().values(
            meeting_id=meeting.meeting_id,
            district_code=meeting.district_code,
            sub_district=meeting.sub_district,
            held_at=meeting.held_at,
            place=meeting.place,
            case_ids=list(meeting.case_ids),
            invitations=_invitations_json(meeting.invitations),
            state=meeting.state.value,
            chair=meeting.chair,
            created_at=now,
        )
    )


def get_meeting(connection: Connection, meeting_id: str, *, lock: bool = False) -> Meeting | None:
    row = _get(connection, meetings, meeting_id, lock)
    return None if row is None else _meeting(row)


def update_meeting(connection: Connection, meeting: Meeting) -> None:
    connection.execute(
        meetings.update()
        .where(meetings.c.meeting_id == meeting.meeting_id)
        .values(invitations=_invitations_json(meeting.invitations), state=meeting.state.value)
    )


def insert_resolution(
    connection: Connection,
    resolution_id: str,
    meeting_id: str,
    case_id: str,
    decision: str,
    now: dt.datetime,
) -> None:
    connection.execute(
        resolutions.insert().values(
            resolution_id=resolution_id,
            meeting_id=meeting_id,
            case_id=case_id,
            decision=decision,
            adopted_at=now,
        )
    )


def resolutions_of(connection: Connection, meeting_id: str) -> list[tuple[str, str, str]]:
    """(resolution_id, case_id, decision) of a meeting, in the order adopted."""
    rows = connection.execute(
        sa.select(resolutions.c.resolution_id, resolutions.c.case_id, resolutions.c.decision)
        .where(resolutions.c.meeting_id == meeting_id)
        .order_by(resolutions.c.adopted_at, resolutions.c.resolution_id)
    )
    return [tuple(row) for row in rows]


# ---------------------------------------------------------------- tasks


def _task(row) -> Task:
    return Task(
        task_id=row.task_id,
        case_id=row.case_id,
        meeting_id=row.meeting_id,
        district_code=row.district_code,
        project_id=row.project_id,
        unit=Unit(row.unit_kind, row.unit_id, row.unit_name),
        working_days=row.working_days,
        done_when=row.done_when,
        due=row.due_date,
        state=TaskState(row.state),
        lateness=Lateness(row.lateness),
        escalation_level=row.escalation_level,
        completion_note=row.completion_note,
    )


def insert_tasks(
    connection: Connection, new: list[Task], resolution_id: str, now: dt.datetime
) -> None:
    if not new:
        return
    connection.execute(
        tasks.insert(),
        [
            {
                "task_id": t.task_id,
                "case_id": t.case_id,
                "meeting_id": t.meeting_id,
                "resolution_id": resolution_id,
                "district_code": t.district_code,
                "project_id": t.project_id,
                "unit_kind": t.unit.kind,
                "unit_id": t.unit.unit_id,
                "unit_name": t.unit.name,
                "working_days": t.working_days,
                "done_when": t.done_when,
                "due_date": t.due,
                "state": t.state.value,
                "lateness": t.lateness.value,
                "escalation_level": t.escalation_level,
                "completion_note": t.completion_note,
                "reminded": False,
                "created_at": now,
            }
            for t in new
        ],
    )


def get_task(connection: Connection, task_id: str, *, lock: bool = False) -> Task | None:
    row = _get(connection, tasks, task_id, lock)
    return None if row is None else _task(row)


def update_task(connection: Connection, task: Task) -> None:
    connection.execute(
        tasks.update()
        .where(tasks.c.task_id == task.task_id)
        .values(state=task.state.value, completion_note=task.completion_note)
    )


def tasks_of_case(connection: Connection, case_id: str) -> list[Task]:
    rows = connection.execute(
        sa.select(tasks).where(tasks.c.case_id == case_id).order_by(tasks.c.task_id)
    )
    return [_task(row) for row in rows]


def tasks_of_resolutions(connection: Connection, resolution_ids: list[str]) -> dict[str, list]:
    found: dict[str, list[Task]] = {r: [] for r in resolution_ids}
    rows = connection.execute(
        sa.select(tasks)
        .where(tasks.c.resolution_id.in_(resolution_ids))
        .order_by(tasks.c.created_at, tasks.c.task_id)
    )
    for row in rows:
        found[row.resolution_id].append(_task(row))
    return found


def list_tasks(
    connection: Connection,
    districts: frozenset[str],
    filters: dict[str, str],
    after: str | None,
    limit: int,
) -> list[Task]:
    query = sa.select(tasks).where(tasks.c.district_code.in_(sorted(districts)))
    for column, value in filters.items():
        if value:
            query = query.where(tasks.c[column] == value)
    if after is not None:
        query = query.where(tasks.c.task_id > after)
    rows = connection.execute(query.order_by(tasks.c.task_id).limit(limit))
    return [_task(row) for row in rows]


def _open_on_time_or(lateness: Lateness):
    return sa.and_(tasks.c.state == TaskState.OPEN.value, tasks.c.lateness == lateness.value)


def _take(connection: Connection, which, values: dict, limit: int) -> list[Task]:
    """Sets `values` on up to `limit` tasks `which` selects, taking them in one statement
    (skipping those another timer holds); returns them as changed."""
    chosen = (
        sa.select(tasks.c.task_id)
        .where(which)
        .order_by(tasks.c.task_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = connection.execute(
        tasks.update()
        .where(tasks.c.task_id.in_(chosen.scalar_subquery()))
        .values(**values)
        .returning(*tasks.columns)
    )
    return [_task(row) for row in rows]


def mark_late(
    connection: Connection,
    lateness: Lateness,
    due_before: dt.date,
    late: Lateness,
    level: str,
    limit: int,
) -> list[Task]:
    """Open tasks of `lateness` due before `due_before` become `late`, followed up at `level`;
    returns them."""
    return _take(
        connection,
        sa.and_(_open_on_time_or(lateness), tasks.c.due_date < due_before),
        {"lateness": late.value, "escalation_level": level},
        limit,
    )


def mark_reminded(connection: Connection, due_through: dt.date, limit: int) -> list[Task]:
    """Open, on-time tasks due by `due_through` not reminded yet are marked reminded; returns
    them."""
    return _take(
        connection,
        sa.and_(
            _open_on_time_or(Lateness.ON_TIME),
            tasks.c.due_date <= due_through,
            sa.not_(tasks.c.reminded),
        ),
        {"reminded": True},
        limit,
    )


# ---------------------------------------------------------------- minutes


def _minutes(row) -> Minutes:
    return Minutes(
        minutes_id=row.minutes_id,
        meeting_id=row.meeting_id,
        district_code=row.district_code,
        hold_time=row.hold_time,
        place=row.place,
        text=row.text,
        amendments=tuple(
            Amendment(Unit(a["kind"], a["unit_id"], a["name"]), a["text"]) for a in row.amendments
        ),
        amends_minutes_id=row.amends_minutes_id,
        state=MinutesState(row.state),
        required_signers=tuple(row.required_signers),
        signatures=tuple(
            Signature(
                s["signer"],
                s["role"],
                s["content_hash"],
                dt.datetime.fromisoformat(s["signed_at"]),
            )
            for s in row.signatures
        ),
        content_hash=row.content_hash,
    )


def _minutes_values(m: Minutes) -> dict:
    return {
        "amendments": [{**_unit_json(a.unit), "text": a.text} for a in m.amendments],
        "state": m.state.value,
        "required_signers": list(m.required_signers),
        "signatures": [
            {
                "signer": s.signer,
                "role": s.role,
                "content_hash": s.content_hash,
                "signed_at": s.signed_at.isoformat(),
            }
            for s in m.signatures
        ],
        "content_hash": m.content_hash,
    }


def insert_minutes(connection: Connection, m: Minutes, now: dt.datetime) -> None:
    connection.execute(
        minutes.insert().values(
            minutes_id=m.minutes_id,
            meeting_id=m.meeting_id,
            district_code=m.district_code,
            hold_time=m.hold_time,
            place=m.place,
            text=m.text,
            amends_minutes_id=m.amends_minutes_id,
            created_at=now,
            **_minutes_values(m),
        )
    )


def get_minutes(connection: Connection, minutes_id: str, *, lock: bool = False) -> Minutes | None:
    row = _get(connection, minutes, minutes_id, lock)
    return None if row is None else _minutes(row)


def update_minutes(connection: Connection, m: Minutes) -> None:
    connection.execute(
        minutes.update().where(minutes.c.minutes_id == m.minutes_id).values(**_minutes_values(m))
    )


def minutes_states_of_meeting(connection: Connection, meeting_id: str) -> list[MinutesState]:
    rows = connection.execute(sa.select(minutes.c.state).where(minutes.c.meeting_id == meeting_id))
    return [MinutesState(row.state) for row in rows]


# ---------------------------------------------------------------- reports


def case_counts(
    connection: Connection, district: str, start: dt.datetime, end: dt.datetime
) -> tuple[int, int, list[tuple[dt.datetime, dt.datetime]]]:
    """Cases raised and accepted in [start, end), and (raised, resolved) of those resolved."""

    def count(column) -> int:
        return connection.execute(
            sa.select(sa.func.count())
            .select_from(cases)
            .where(cases.c.district_code == district)
            .where(column >= start)
            .where(column < end)
        ).scalar_one()

    resolved = connection.execute(
        sa.select(cases.c.raised_at, cases.c.resolved_at)
        .where(cases.c.district_code == district)
        .where(cases.c.resolved_at >= start)
        .where(cases.c.resolved_at < end)
    )
    return (
        count(cases.c.raised_at),
        count(cases.c.accepted_at),
        [(_utc(r.raised_at), _utc(r.resolved_at)) for r in resolved],
    )


def task_tallies(
    connection: Connection, district: str, first: dt.date, last: dt.date
) -> list[tuple[str, str, str, int]]:
    """(unit kind, unit id, lateness, tasks) of the tasks due in [first, last]."""
    rows = connection.execute(
        sa.select(tasks.c.unit_kind, tasks.c.unit_id, tasks.c.lateness, sa.func.count())
        .where(tasks.c.district_code == district)
        .where(tasks.c.due_date >= first)
        .where(tasks.c.due_date <= last)
        .group_by(tasks.c.unit_kind, tasks.c.unit_id, tasks.c.lateness)
    )
    return [tuple(row) for row in rows]


def absences(
    connection: Connection, district: str, start: dt.datetime, end: dt.datetime
) -> Counter[str]:
    """Invited units absent without leave, by kind, at the meetings held in [start, end)."""
    rows = connection.execute(
        sa.select(meetings.c.invitations)
        .where(meetings.c.district_code == district)
        .where(meetings.c.held_at >= start)
        .where(meetings.c.held_at < end)
    )
    absent = Attendance.ABSENT_WITHOUT_LEAVE.value
    return Counter(i["kind"] for (invited,) in rows for i in invited if i["attendance"] == absent)
