"""Inspection tables, read models of other services' data, and their queries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import Connection

from wuye.core.db import service_metadata
from wuye.inspections.domain import (
    Entity,
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

# Read models, kept from the registry's and credit's events.
projects = sa.Table(
    "projects",
    metadata,
    sa.Column("project_id", sa.String(32), primary_key=True),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("project_type", sa.String(16), nullable=False),
    sa.Column("credit_code", sa.String(18), nullable=False),
)
grades = sa.Table(
    "grades",
    metadata,
    sa.Column("credit_code", sa.String(18), primary_key=True),
    sa.Column("grade", sa.String(16), nullable=False),
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


# ---------------------------------------------------------------- inspectors


def _inspector(row) -> Inspector:
    return Inspector(
        row.inspector_id, row.name, row.unit, tuple(row.districts), tuple(row.conflicts)
    )


def get_inspector(connection: Connection, inspector_id: str) -> Inspector | None:
    row = connection.execute(
        sa.select(inspectors).where(inspectors.c.inspector_id == inspector_id)
    ).first()
    return _inspector(row) if row else None


def insert_inspector(connection: Connection, i: Inspector, now: dt.datetime) -> None:
    connection.execute(
        inspectors.insert().values(
            inspector_id=i.inspector_id,
            name=i.name,
            unit=i.unit,
            districts=list(i.districts),
            conflicts=list(i.conflicts),
            created_at=now,
        )
    )


def inspector_pool(connection: Connection, districts: Iterable[str]) -> list[Inspector]:
    wanted = set(districts)
    rows = connection.execute(sa.select(inspectors).order_by(inspectors.c.inspector_id))
    return [i for i in map(_inspector, rows) if wanted & set(i.districts)]


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


def upsert_project(connection: Connection, project_id: str, **values: str) -> None:
    updated = connection.execute(
        projects.update().where(projects.c.project_id == project_id).values(**values)
    ).rowcount
    if not updated and {"district_code", "project_type"} <= values.keys():
        connection.execute(
            projects.insert().values(project_id=project_id, **{"credit_code": "", **values})
        )


def get_project(connection: Connection, project_id: str):
    return connection.execute(
        sa.select(projects).where(projects.c.project_id == project_id)
    ).first()


def set_grade(connection: Connection, credit_code: str, grade: str) -> None:
    updated = connection.execute(
        grades.update().where(grades.c.credit_code == credit_code).values(grade=grade)
    ).rowcount
    if not updated:
        connection.execute(grades.insert().values(credit_code=credit_code, grade=grade))


def entities(connection: Connection, districts: Iterable[str]) -> list[Entity]:
    pending = set(
        connection.execute(
            sa.select(triggers.c.project_id).where(triggers.c.round_id.is_(None))
        ).scalars()
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
        )
        for row in rows
    ]


def add_trigger(connection: Connection, project_id: str, reason: str, now: dt.datetime) -> int:
    connection.execute(
        triggers.insert().values(project_id=project_id, reason=reason, created_at=now)
    )
    return connection.execute(
        sa.select(sa.func.count()).where(
            (triggers.c.project_id == project_id) & triggers.c.round_id.is_(None)
        )
    ).scalar_one()


def take_triggers(connection: Connection, project_ids: Iterable[str], round_id: str) -> None:
    connection.execute(
        triggers.update()
        .where(triggers.c.project_id.in_(list(project_ids)) & triggers.c.round_id.is_(None))
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
        inspectors_per_check=data["inspectors_per_check"],
        created_at=data["created_at"],
        algorithm_version=data["algorithm_version"],
        entities=tuple(Entity(*e) for e in data["entities"]),
        inspectors=tuple(
            Inspector(i[0], i[1], i[2], tuple(i[3]), tuple(i[4])) for i in data["inspectors"]
        ),
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


def checks_of_round(connection: Connection, round_id: str) -> list:
    return list(
        connection.execute(
            sa.select(checks).where(checks.c.round_id == round_id).order_by(checks.c.position)
        )
    )


def get_check(connection: Connection, check_id: str, *, lock: bool = False):
    query = sa.select(checks).where(checks.c.check_id == check_id)
    if lock:
        query = query.with_for_update()
    return connection.execute(query).first()


def record_check(
    connection: Connection,
    check_id: str,
    *,
    scores: dict,
    findings: list,
    score_tenths: int,
    now: dt.datetime,
) -> None:
    connection.execute(
        checks.update()
        .where(checks.c.check_id == check_id)
        .values(scores=scores, findings=findings, score_tenths=score_tenths, recorded_at=now)
    )


def published(
    connection: Connection,
    district: str,
    credit_code: str,
    after: str | None,
    limit: int,
    districts: Iterable[str],
) -> list:
    query = sa.select(checks).where(checks.c.recorded_at.is_not(None))
    query = query.where(checks.c.district_code.in_([district] if district else list(districts)))
    if credit_code:
        query = query.where(checks.c.credit_code == credit_code)
    if after is not None:
        query = query.where(checks.c.check_id > after)
    return list(connection.execute(query.order_by(checks.c.check_id).limit(limit)))


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
