"""Inspection tables, read models of other services' data, and their queries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from wuye.core.db import service_metadata
from wuye.inspections.domain import (
    Check,
    Entity,
    Finding,
    Inspector,
    Rectification,
    RectificationState,
    RoundSpec,
    RoundState,
    canonical,
)

metadata = service_metadata()
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


inspectors = sa.Table(
    "inspectors",
    metadata,
    sa.Column("inspector_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("unit", sa.String(200), nullable=False),
    sa.Column("districts", sa.JSON, nullable=False),
    sa.Column("conflicts", sa.JSON, nullable=False),
    sa.Column("created_at", _time(), nullable=False),
)
# An inspector's declared relatives, as the registry keys persons (never the ID number).
inspector_relatives = sa.Table(
    "inspector_relatives",
    metadata,
    sa.Column("inspector_id", sa.String(64), primary_key=True),
    sa.Column("person_key", sa.String(32), primary_key=True),
    sa.Column("masked_id_number", sa.String(18), nullable=False),
)

# Read models, kept from the registry's and credit's events.
projects = sa.Table(
    "projects",
    metadata,
    sa.Column("project_id", sa.String(32), primary_key=True),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("project_type", sa.String(16), nullable=False),
    sa.Column("credit_code", sa.String(18), nullable=False),
    # When the assignment or exit that set credit_code happened: an older one replayed is stale.
    sa.Column("assigned_at", _time(), nullable=True),
)
grades = sa.Table(
    "grades",
    metadata,
    sa.Column("credit_code", sa.String(18), primary_key=True),
    sa.Column("grade", sa.String(16), nullable=False),
    # The credit feed's sequence of the change that set it: an older one replayed is stale.
    sa.Column("sequence", sa.BigInteger, nullable=False, server_default="0"),
)
# Persons linked to enterprises (the registry's practitioners), by their keyed hash.
enterprise_persons = sa.Table(
    "enterprise_persons",
    metadata,
    sa.Column("practitioner_id", sa.String(32), primary_key=True),
    sa.Column("person_key", sa.String(32), nullable=False, index=True),
    sa.Column("credit_code", sa.String(18), nullable=False),
)
complaints = sa.Table(
    "complaints",
    metadata,
    sa.Column("source_event_id", sa.String(100), primary_key=True),
    sa.Column("project_id", sa.String(32), nullable=False),
    sa.Column("received_at", _time(), nullable=False),
    sa.Index(None, "project_id", "received_at"),
)

triggers = sa.Table(
    "triggers",
    metadata,
    sa.Column("trigger_id", _big_id, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(32), nullable=False, index=True),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("created_at", _time(), nullable=False),
    # The round whose list took it in; empty while pending.
    sa.Column("round_id", sa.String(32), nullable=True),
    # The event that asked for it, if one did: the same event handled again adds nothing.
    sa.Column("source_event_id", sa.String(100), nullable=True, unique=True),
)

rounds = sa.Table(
    "rounds",
    metadata,
    sa.Column("round_id", sa.String(32), primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    # Secret until the draw reveals it.
    sa.Column("seed", sa.String(64), nullable=False),
    sa.Column("seed_commitment", sa.String(64), nullable=False),
    sa.Column("created_at", _time(), nullable=False),
    sa.Column("drawn_at", _time(), nullable=True),
)
# The half-years each district's round takes: one round per district and period.
round_periods = sa.Table(
    "round_periods",
    metadata,
    sa.Column("district_code", sa.String(6), primary_key=True),
    sa.Column("half_year", sa.String(6), primary_key=True),
    sa.Column("round_id", sa.String(32), nullable=False),
)

checks = sa.Table(
    "checks",
    metadata,
    sa.Column("check_id", sa.String(32), primary_key=True),
    sa.Column("round_id", sa.String(32), nullable=False, index=True),
    sa.Column("project_id", sa.String(32), nullable=False),
    sa.Column("project_type", sa.String(16), nullable=False),
    sa.Column("credit_code", sa.String(18), nullable=False, index=True),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("reason", sa.String(16), nullable=False),
    sa.Column("inspector_ids", sa.JSON, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("scores", sa.JSON, nullable=True),
    sa.Column("findings", sa.JSON, nullable=True),
    sa.Column("score_tenths", sa.BigInteger, nullable=True),
    sa.Column("recorded_at", _time(), nullable=True, index=True),
)

rectifications = sa.Table(
    "rectifications",
    metadata,
    sa.Column("order_id", sa.String(32), primary_key=True),
    sa.Column("check_id", sa.String(32), nullable=False),
    sa.Column("project_id", sa.String(32), nullable=False),
    sa.Column("credit_code", sa.String(18), nullable=False),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("item_id", sa.String(16), nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("rectify_by", sa.Date, nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("opened_at", _time(), nullable=False),
    sa.Column("overdue_at", _time(), nullable=True),
    sa.Column("closed_at", _time(), nullable=True),
)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _insert_new(connection: Connection, table: sa.Table, rows: list[dict]) -> int:
    """Insert the rows whose keys are not taken yet; returns how many were."""
    if not rows:
        return 0
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(rows).on_conflict_do_nothing()
    # Counted from what is returned: a multi-row insert's rowcount is not reported.
    return len(connection.execute(statement.returning(*table.primary_key.columns)).all())


# ---------------------------------------------------------------- inspectors


def _inspector(row) -> Inspector:
    return Inspector(
        row.inspector_id, row.name, row.unit, tuple(row.districts), tuple(row.conflicts)
    )


def insert_inspector(
    connection: Connection, i: Inspector, relatives: dict[str, str], now: dt.datetime
) -> bool:
    """Adds the inspector and their relatives (person key -> masked ID number); False, adding
    nothing, if the id is taken."""
    added = _insert_new(
        connection,
        inspectors,
        [
            {
                "inspector_id": i.inspector_id,
                "name": i.name,
                "unit": i.unit,
                "districts": list(i.districts),
                "conflicts": list(i.conflicts),
                "created_at": now,
            }
        ],
    )
    if added:
        _insert_new(
            connection,
            inspector_relatives,
            [
                {"inspector_id": i.inspector_id, "person_key": key, "masked_id_number": masked}
                for key, masked in relatives.items()
            ],
        )
    return bool(added)


def masked_relatives(connection: Connection, inspector_ids: Iterable[str]) -> dict[str, list]:
    r = inspector_relatives.c
    rows = connection.execute(
        sa.select(r.inspector_id, r.masked_id_number)
        .where(r.inspector_id.in_(list(inspector_ids)))
        .order_by(r.inspector_id, r.masked_id_number)
    )
    found: dict[str, list] = {}
    for row in rows:
        found.setdefault(row.inspector_id, []).append(row.masked_id_number)
    return found


def inspector_pool(
    connection: Connection, districts: Iterable[str]
) -> list[tuple[Inspector, list[str], dict[str, list[str]]]]:
    """Each inspector of `districts` with their relatives' keys, and the enterprises each of
    those persons is linked to."""
    wanted = set(districts)
    rows = connection.execute(sa.select(inspectors).order_by(inspectors.c.inspector_id))
    pool = [i for i in map(_inspector, rows) if wanted & set(i.districts)]
    relatives: dict[str, list[str]] = {}
    for row in connection.execute(sa.select(inspector_relatives)):
        relatives.setdefault(row.inspector_id, []).append(row.person_key)
    keys = {k for ks in relatives.values() for k in ks}
    linked: dict[str, list[str]] = {}
    if keys:
        for row in connection.execute(
            sa.select(enterprise_persons).where(enterprise_persons.c.person_key.in_(keys))
        ):
            linked.setdefault(row.person_key, []).append(row.credit_code)
    return [(i, relatives.get(i.inspector_id, []), linked) for i in pool]


def list_inspectors(
    connection: Connection, district: str, after: str | None, limit: int
) -> list[Inspector]:
    query = sa.select(inspectors).order_by(inspectors.c.inspector_id)
    if after is not None:
        query = query.where(inspectors.c.inspector_id > after)
    found = []
    for row in connection.execute(query):
        inspector = _inspector(row)
        if not district or district in inspector.districts:
            found.append(inspector)
            if len(found) == limit:
                break
    return found


# ---------------------------------------------------------------- read models


def add_project(connection: Connection, project_id: str, district: str, project_type: str):
    """A project the registry announced; announced again, it keeps what it has learnt since."""
    updated = connection.execute(
        projects.update()
        .where(projects.c.project_id == project_id)
        .values(district_code=district, project_type=project_type)
    ).rowcount
    if not updated:
        _insert_new(
            connection,
            projects,
            [
                {
                    "project_id": project_id,
                    "district_code": district,
                    "project_type": project_type,
                    "credit_code": "",
                }
            ],
        )


def set_serving_enterprise(
    connection: Connection, project_id: str, credit_code: str, at: dt.datetime, *, exiting: str = ""
) -> None:
    """The enterprise serving the project since `at` ("" after an exit of `exiting`), unless a
    later assignment or exit is already known: a replayed older event changes nothing."""
    p = projects.c
    later_known = p.assigned_at.is_not(None) & (p.assigned_at > at)
    query = projects.update().where((p.project_id == project_id) & ~later_known)
    if exiting:
        query = query.where(p.credit_code == exiting)
    connection.execute(query.values(credit_code=credit_code, assigned_at=at))


def get_project(connection: Connection, project_id: str, *, lock: bool = False):
    query = sa.select(projects).where(projects.c.project_id == project_id)
    if lock:
        query = query.with_for_update()
    return connection.execute(query).first()


def set_grade(connection: Connection, credit_code: str, grade: str, sequence: int) -> None:
    """The grade of the credit feed's change `sequence`, unless a later one is already known."""
    connection.execute(
        grades.update()
        .where((grades.c.credit_code == credit_code) & (grades.c.sequence < sequence))
        .values(grade=grade, sequence=sequence)
    )
    _insert_new(
        connection, grades, [{"credit_code": credit_code, "grade": grade, "sequence": sequence}]
    )


def link_person(
    connection: Connection, practitioner_id: str, person_key: str, credit_code: str
) -> None:
    _insert_new(
        connection,
        enterprise_persons,
        [
            {
                "practitioner_id": practitioner_id,
                "person_key": person_key,
                "credit_code": credit_code,
            }
        ],
    )


def add_complaint(
    connection: Connection, source_event_id: str, project_id: str, at: dt.datetime
) -> None:
    _insert_new(
        connection,
        complaints,
        [{"source_event_id": source_event_id, "project_id": project_id, "received_at": at}],
    )


def entities(
    connection: Connection, districts: Iterable[str], complaints_since: dt.datetime
) -> list[Entity]:
    pending = set(
        connection.execute(
            sa.select(triggers.c.project_id).where(triggers.c.round_id.is_(None))
        ).scalars()
    )
    counted = dict(
        connection.execute(
            sa.select(complaints.c.project_id, sa.func.count())
            .where(complaints.c.received_at >= complaints_since)
            .group_by(complaints.c.project_id)
        ).all()
    )
    rows = connection.execute(
        sa.select(projects, grades.c.grade)
        .select_from(projects.outerjoin(grades, grades.c.credit_code == projects.c.credit_code))
        .where(projects.c.district_code.in_(list(districts)))
        .order_by(projects.c.project_id)
    )
    return [
        Entity(
            project_id=row.project_id,
            project_type=row.project_type,
            district_code=row.district_code,
            credit_code=row.credit_code,
            grade=(row.grade or "C_UNFILED") if row.credit_code else "",
            triggered=row.project_id in pending,
            complaints=counted.get(row.project_id, 0),
        )
        for row in rows
    ]


def add_trigger(
    connection: Connection,
    project_id: str,
    reason: str,
    now: dt.datetime,
    source_event_id: str | None = None,
) -> tuple[bool, int]:
    """Adds a pending trigger, once per source event; returns whether it was added, and the
    project's pending triggers."""
    added = _insert_new(
        connection,
        triggers,
        [
            {
                "project_id": project_id,
                "reason": reason,
                "created_at": now,
                "source_event_id": source_event_id,
            }
        ],
    )
    pending = connection.execute(
        sa.select(sa.func.count()).where(
            (triggers.c.project_id == project_id) & triggers.c.round_id.is_(None)
        )
    ).scalar_one()
    return bool(added), pending


def take_triggers(
    connection: Connection, project_ids: Iterable[str], round_id: str, listed_at: dt.datetime
) -> None:
    """The pending triggers the round listed (those before its creation) are spent by it; later
    ones wait for the next round."""
    t = triggers.c
    connection.execute(
        triggers.update()
        .where(
            t.project_id.in_(list(project_ids)) & t.round_id.is_(None) & (t.created_at <= listed_at)
        )
        .values(round_id=round_id)
    )


# ---------------------------------------------------------------- rounds


def spec_from_json(data: dict) -> RoundSpec:
    return RoundSpec(
        round_id=data["round_id"],
        districts=tuple(data["districts"]),
        period=data["period"],
        rates={grade: Decimal(rate) for grade, rate in data["rates"].items()},
        floor_rate=Decimal(data["floor_rate"]),
        yearly_floor_rate=Decimal(data["yearly_floor_rate"]),
        inspectors_per_check=data["inspectors_per_check"],
        created_at=data["created_at"],
        algorithm_version=data["algorithm_version"],
        entities=tuple(Entity(*e) for e in data["entities"]),
        inspectors=tuple(
            Inspector(i[0], i[1], i[2], tuple(i[3]), tuple(i[4])) for i in data["inspectors"]
        ),
        drawn_earlier=tuple(data["drawn_earlier"]),
        complaint_weights=tuple((c, w) for c, w in data["complaint_weights"]),
    )


def rounds_holding(
    connection: Connection, districts: Iterable[str], halves: Iterable[str]
) -> dict[tuple[str, str], str]:
    """The rounds that hold any of these districts' half-years, by (district, half-year)."""
    r = round_periods.c
    rows = connection.execute(
        sa.select(r.district_code, r.half_year, r.round_id).where(
            r.district_code.in_(list(districts)) & r.half_year.in_(list(halves))
        )
    )
    return {(row.district_code, row.half_year): row.round_id for row in rows}


def hold_periods(
    connection: Connection, round_id: str, districts: Iterable[str], halves: Iterable[str]
) -> None:
    """Raises IntegrityError if a concurrent round took one of them first."""
    connection.execute(
        round_periods.insert(),
        [
            {"district_code": d, "half_year": h, "round_id": round_id}
            for d in districts
            for h in halves
        ],
    )


def drawn_this_year(connection: Connection, districts: Iterable[str], year: str) -> list[str]:
    """Projects of `districts` drawn by the rounds of `year` so far."""
    wanted = list(districts)
    earlier = sa.select(round_periods.c.round_id).where(
        round_periods.c.district_code.in_(wanted) & round_periods.c.half_year.startswith(year)
    )
    return list(
        connection.execute(
            sa.select(checks.c.project_id)
            .where(checks.c.round_id.in_(earlier) & checks.c.district_code.in_(wanted))
            .distinct()
            .order_by(checks.c.project_id)
        ).scalars()
    )


def insert_round(
    connection: Connection, spec: RoundSpec, seed: str, seed_commitment: str, now: dt.datetime
) -> None:
    connection.execute(
        rounds.insert().values(
            round_id=spec.round_id,
            spec=canonical(spec),
            state=RoundState.COMMITTED.value,
            seed=seed,
            seed_commitment=seed_commitment,
            created_at=now,
        )
    )


def get_round(connection: Connection, round_id: str, *, lock: bool = False):
    query = sa.select(rounds).where(rounds.c.round_id == round_id)
    if lock:
        query = query.with_for_update()
    return connection.execute(query).first()


def mark_drawn(connection: Connection, round_id: str, now: dt.datetime) -> None:
    connection.execute(
        rounds.update()
        .where(rounds.c.round_id == round_id)
        .values(state=RoundState.DRAWN.value, drawn_at=now)
    )


# ---------------------------------------------------------------- checks


def insert_checks(connection: Connection, rows: list[dict]) -> None:
    if rows:
        connection.execute(checks.insert(), rows)


def _check(row) -> Check:
    return Check(
        check_id=row.check_id,
        round_id=row.round_id,
        project_id=row.project_id,
        project_type=row.project_type,
        credit_code=row.credit_code,
        district_code=row.district_code,
        reason=row.reason,
        inspector_ids=tuple(row.inspector_ids),
        scores={k: Decimal(v) for k, v in row.scores.items()} if row.scores else None,
        findings=tuple(
            Finding(
                f["item_id"],
                f["description"],
                dt.date.fromisoformat(f["rectify_by"]) if f["rectify_by"] else None,
            )
            for f in row.findings or ()
        ),
        score=Decimal(row.score_tenths) / 10 if row.score_tenths is not None else None,
        recorded_at=_utc(row.recorded_at),
    )


def checks_of_round(connection: Connection, round_id: str) -> list[Check]:
    return [
        _check(row)
        for row in connection.execute(
            sa.select(checks).where(checks.c.round_id == round_id).order_by(checks.c.position)
        )
    ]


def get_check(connection: Connection, check_id: str, *, lock: bool = False) -> Check | None:
    query = sa.select(checks).where(checks.c.check_id == check_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).first()
    return _check(row) if row else None


def record_check(connection: Connection, check: Check) -> None:
    connection.execute(
        checks.update()
        .where(checks.c.check_id == check.check_id)
        .values(
            scores={k: str(v) for k, v in check.scores.items()},
            findings=[
                {
                    "item_id": f.item_id,
                    "description": f.description,
                    "rectify_by": f.rectify_by.isoformat() if f.rectify_by else None,
                }
                for f in check.findings
            ],
            score_tenths=int(check.score * 10),
            recorded_at=check.recorded_at,
        )
    )


def published(
    connection: Connection,
    district: str,
    credit_code: str,
    after: str | None,
    limit: int,
    districts: Iterable[str],
) -> list[Check]:
    query = sa.select(checks).where(checks.c.recorded_at.is_not(None))
    query = query.where(checks.c.district_code.in_([district] if district else list(districts)))
    if credit_code:
        query = query.where(checks.c.credit_code == credit_code)
    if after is not None:
        query = query.where(checks.c.check_id > after)
    return [
        _check(row) for row in connection.execute(query.order_by(checks.c.check_id).limit(limit))
    ]


def recorded_between(
    connection: Connection, district: str, start: dt.datetime, end: dt.datetime
) -> list:
    return list(
        connection.execute(
            sa.select(checks.c.credit_code, checks.c.score_tenths, checks.c.findings).where(
                (checks.c.district_code == district)
                & (checks.c.recorded_at >= start)
                & (checks.c.recorded_at < end)
            )
        )
    )


# ---------------------------------------------------------------- rectification


def _order(row) -> Rectification:
    return Rectification(
        order_id=row.order_id,
        check_id=row.check_id,
        project_id=row.project_id,
        credit_code=row.credit_code,
        district_code=row.district_code,
        item_id=row.item_id,
        description=row.description,
        rectify_by=row.rectify_by,
        state=RectificationState(row.state),
        closed_at=_utc(row.closed_at),
    )


def insert_orders(connection: Connection, orders: list[Rectification], now: dt.datetime) -> None:
    if orders:
        connection.execute(
            rectifications.insert(),
            [
                {
                    "order_id": o.order_id,
                    "check_id": o.check_id,
                    "project_id": o.project_id,
                    "credit_code": o.credit_code,
                    "district_code": o.district_code,
                    "item_id": o.item_id,
                    "description": o.description,
                    "rectify_by": o.rectify_by,
                    "state": o.state.value,
                    "opened_at": now,
                }
                for o in orders
            ],
        )


def get_order(connection: Connection, order_id: str, *, lock: bool = False) -> Rectification | None:
    query = sa.select(rectifications).where(rectifications.c.order_id == order_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).first()
    return _order(row) if row else None


def update_order(connection: Connection, o: Rectification, **extra) -> None:
    connection.execute(
        rectifications.update()
        .where(rectifications.c.order_id == o.order_id)
        .values(state=o.state.value, rectify_by=o.rectify_by, closed_at=o.closed_at, **extra)
    )


def due_orders(connection: Connection, today: dt.date) -> list[Rectification]:
    """Open orders past their deadline, locked; those another replica holds are skipped."""
    rows = connection.execute(
        sa.select(rectifications)
        .where(
            (rectifications.c.state == RectificationState.OPEN.value)
            & (rectifications.c.rectify_by < today)
        )
        .with_for_update(skip_locked=True)
    )
    return [_order(row) for row in rows]


def list_orders(
    connection: Connection,
    districts: Iterable[str],
    state: RectificationState | None,
    after: str | None,
    limit: int,
) -> list[Rectification]:
    query = sa.select(rectifications).where(rectifications.c.district_code.in_(list(districts)))
    if state is not None:
        query = query.where(rectifications.c.state == state.value)
    if after is not None:
        query = query.where(rectifications.c.order_id > after)
    return [
        _order(r)
        for r in connection.execute(query.order_by(rectifications.c.order_id).limit(limit))
    ]


def order_counts_between(
    connection: Connection, district: str, start: dt.datetime, end: dt.datetime
) -> tuple[int, int, int, dict[str, int]]:
    """Orders opened, closed and gone overdue in the period, and overdue ones by enterprise."""
    r = rectifications.c
    in_district = r.district_code == district

    def count(column) -> int:
        return connection.execute(
            sa.select(sa.func.count()).where(in_district & (column >= start) & (column < end))
        ).scalar_one()

    overdue_rows = connection.execute(
        sa.select(r.credit_code, sa.func.count())
        .where(in_district & (r.overdue_at >= start) & (r.overdue_at < end))
        .group_by(r.credit_code)
    )
    return count(r.opened_at), count(r.closed_at), count(r.overdue_at), dict(overdue_rows.all())
