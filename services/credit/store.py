"""Credit tables and the reads and writes of credit files (SQLAlchemy Core).

Points and scores are stored as integer tenths, exact on every database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from functools import cache

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from wuye.core.db import service_metadata, timestamp_column, utc
from wuye.credit.domain import (
    AnnouncedStanding,
    Appeal,
    Assessment,
    AssessmentCycle,
    Direction,
    FeedEntry,
    Grade,
    ListedSubject,
    Record,
    Severity,
    Standing,
    SubjectFile,
    SubjectKind,
)

metadata = service_metadata()
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


subjects = sa.Table(
    "subjects",
    metadata,
    sa.Column("subject_key", sa.String(80), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("filed_at", timestamp_column(), nullable=True),
    sa.Column("unfiled_at", timestamp_column(), nullable=True),
    # The standing last computed, for lists and to tell when it changes.
    sa.Column("grade", sa.String(16), nullable=False),
    sa.Column("score_tenths", sa.BigInteger, nullable=False),
    sa.Column("blacklisted", sa.Boolean, nullable=False),
    sa.Column("red_listed", sa.Boolean, nullable=False),
    sa.Column("updated_at", timestamp_column(), nullable=False),
)

assessments = sa.Table(
    "assessments",
    metadata,
    sa.Column("assessment_id", sa.String(32), primary_key=True),
    sa.Column("subject_key", sa.String(80), nullable=False, index=True),
    sa.Column("cycle", sa.String(16), nullable=False),
    sa.Column("period", sa.String(8), nullable=False),
    sa.Column("checklist", sa.String(16), nullable=False),
    sa.Column("assessors", sa.JSON, nullable=False),
    sa.Column("scores", sa.JSON, nullable=False),
    sa.Column("base_tenths", sa.BigInteger, nullable=False),
    sa.Column("assessed_at", timestamp_column(), nullable=False),
)

records = sa.Table(
    "records",
    metadata,
    sa.Column("record_id", sa.String(32), primary_key=True),
    sa.Column("subject_key", sa.String(80), nullable=False, index=True),
    sa.Column("record_type", sa.String(40), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("points_tenths", sa.BigInteger, nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("occurred_at", timestamp_column(), nullable=False),
    sa.Column("expires_at", timestamp_column(), nullable=True, index=True),
    sa.Column("source", sa.String(200), nullable=False),
    # The event that caused it: one record per event, however often it is delivered.
    sa.Column("source_event_id", sa.String(100), nullable=True, unique=True),
    sa.Column("evidence_reference", sa.String(200), nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("removed_at", timestamp_column(), nullable=True),
    sa.Column("rectified_at", timestamp_column(), nullable=True),
    sa.Column("appeal", sa.String(16), nullable=False),
    sa.Column("appeal_reason", sa.String(200), nullable=False),
    sa.Column("appeal_decision", sa.String(200), nullable=False),
)

grade_changes = sa.Table(
    "grade_changes",
    metadata,
    sa.Column("sequence", _big_id, primary_key=True, autoincrement=True),
    sa.Column("subject_key", sa.String(80), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject_id", sa.String(64), nullable=False),
    sa.Column("district_code", sa.String(6), nullable=False),
    sa.Column("previous_grade", sa.String(16), nullable=False),
    sa.Column("grade", sa.String(16), nullable=False),
    sa.Column("score_tenths", sa.BigInteger, nullable=False),
    sa.Column("blacklisted", sa.Boolean, nullable=False),
    sa.Column("red_listed", sa.Boolean, nullable=False),
    sa.Column("changed_at", timestamp_column(), nullable=False),
)

timer_marks = sa.Table(
    "timer_marks",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("mark", timestamp_column(), nullable=False),
)

TENTHS = Decimal(10)


def to_tenths(value: Decimal) -> int:
    return int(value * TENTHS)


@cache  # points and scores repeat: the same few values over and over
def from_tenths(value: int) -> Decimal:
    return (Decimal(value) / TENTHS).quantize(Decimal("0.1"))


# ---------------------------------------------------------------- subjects


def _subject(row) -> SubjectFile:
    return SubjectFile(
        kind=SubjectKind(row.kind),
        subject_id=row.subject_id,
        name=row.name,
        district_code=row.district_code,
        filed_at=utc(row.filed_at),
        unfiled_at=utc(row.unfiled_at),
    )


def get_subject(connection: Connection, key: str, *, lock: bool = False) -> SubjectFile | None:
    query = sa.select(subjects).where(subjects.c.subject_key == key)
    if lock:
        # Serialises recomputations of one subject, so a change is announced once.
        query = query.with_for_update()
    row = connection.execute(query).first()
    return _subject(row) if row else None


def _stored(row) -> AnnouncedStanding:
    return AnnouncedStanding(
        Grade(row.grade), from_tenths(row.score_tenths), row.blacklisted, row.red_listed
    )


def stored_standing(connection: Connection, key: str) -> AnnouncedStanding | None:
    row = connection.execute(
        sa.select(
            subjects.c.grade, subjects.c.score_tenths, subjects.c.blacklisted, subjects.c.red_listed
        ).where(subjects.c.subject_key == key)
    ).first()
    return _stored(row) if row else None


def lock_subjects(connection: Connection) -> None:
    """Hold every subject still while all are recomputed (PostgreSQL; SQLite's one writer is
    held already)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("LOCK TABLE subjects IN SHARE ROW EXCLUSIVE MODE")


def upsert_subject(connection: Connection, subject: SubjectFile, now: dt.datetime) -> None:
    """Create the file, or update what the registry says of the subject (standing untouched)."""
    values = {
        "name": subject.name,
        "district_code": subject.district_code,
        "filed_at": subject.filed_at,
        "unfiled_at": subject.unfiled_at,
    }
    updated = connection.execute(
        subjects.update().where(subjects.c.subject_key == subject.key).values(**values)
    ).rowcount
    if not updated:
        connection.execute(
            subjects.insert().values(
                subject_key=subject.key,
                kind=subject.kind.value,
                subject_id=subject.subject_id,
                grade=Grade.C_UNFILED.value,
                score_tenths=0,
                blacklisted=False,
                red_listed=False,
                updated_at=now,
                **values,
            )
        )


_save_standing = (
    subjects.update()
    .where(subjects.c.subject_key == sa.bindparam("k"))
    .values(
        grade=sa.bindparam("g"),
        score_tenths=sa.bindparam("s"),
        blacklisted=sa.bindparam("b"),
        red_listed=sa.bindparam("r"),
        updated_at=sa.bindparam("t"),
    )
)


def save_standings(
    connection: Connection, standings: list[tuple[str, Standing]], now: dt.datetime
) -> None:
    connection.execute(
        _save_standing,
        [
            {
                "k": key,
                "g": s.grade.value,
                "s": to_tenths(s.score),
                "b": s.blacklisted,
                "r": s.red_listed,
                "t": now,
            }
            for key, s in standings
        ],
    )


def list_standings(
    connection: Connection,
    kind: SubjectKind,
    districts: Iterable[str],
    grade: Grade | None,
    red_listed_only: bool,
    blacklisted_only: bool,
    after: str | None,
    limit: int,
) -> list[ListedSubject]:
    query = sa.select(subjects).where(
        (subjects.c.kind == kind.value) & subjects.c.district_code.in_(list(districts))
    )
    if grade is not None:
        query = query.where(subjects.c.grade == grade.value)
    if red_listed_only:
        query = query.where(subjects.c.red_listed)
    if blacklisted_only:
        query = query.where(subjects.c.blacklisted)
    if after is not None:
        query = query.where(subjects.c.subject_key > after)
    rows = connection.execute(query.order_by(subjects.c.subject_key).limit(limit))
    return [ListedSubject(_subject(row), _stored(row), utc(row.updated_at)) for row in rows]


# ---------------------------------------------------------------- records


_DIRECTIONS = {d.value: d for d in Direction}
_SEVERITIES = {s.value: s for s in Severity}
_APPEALS = {a.value: a for a in Appeal}


def _record(row) -> Record:
    # Unpacked by position (the table's columns are in Record's order): a full recomputation
    # reads hundreds of thousands of these.
    (
        record_id,
        subject_key,
        record_type,
        direction,
        points_tenths,
        severity,
        occurred_at,
        expires_at,
        source,
        source_event_id,
        evidence_reference,
        reason,
        removed_at,
        rectified_at,
        appeal,
        appeal_reason,
        appeal_decision,
    ) = row
    return Record(
        record_id,
        subject_key,
        record_type,
        _DIRECTIONS[direction],
        from_tenths(points_tenths),
        _SEVERITIES[severity],
        utc(occurred_at),
        utc(expires_at),
        source,
        source_event_id or "",
        evidence_reference,
        reason,
        utc(removed_at),
        utc(rectified_at),
        _APPEALS[appeal],
        appeal_reason,
        appeal_decision,
    )


def insert_record(connection: Connection, r: Record) -> bool:
    """Store a new record; False when it comes from an event that already made one (the
    event's id is the record's natural key), which is then left as it is."""
    insert = (postgresql if connection.dialect.name == "postgresql" else sqlite).insert(records)
    done = connection.execute(
        insert.values(
            record_id=r.record_id,
            subject_key=r.subject_key,
            record_type=r.record_type,
            direction=r.direction.value,
            points_tenths=to_tenths(r.points),
            severity=r.severity.value,
            occurred_at=r.occurred_at,
            expires_at=r.expires_at,
            source=r.source,
            source_event_id=r.source_event_id or None,
            evidence_reference=r.evidence_reference,
            reason=r.reason,
            removed_at=r.removed_at,
            rectified_at=r.rectified_at,
            appeal=r.appeal.value,
            appeal_reason=r.appeal_reason,
            appeal_decision=r.appeal_decision,
        )
        .on_conflict_do_nothing(index_elements=[records.c.source_event_id])
        .returning(records.c.record_id)
    )
    return done.first() is not None


def update_record(connection: Connection, r: Record) -> None:
    connection.execute(
        records.update()
        .where(records.c.record_id == r.record_id)
        .values(
            removed_at=r.removed_at,
            rectified_at=r.rectified_at,
            appeal=r.appeal.value,
            appeal_reason=r.appeal_reason,
            appeal_decision=r.appeal_decision,
        )
    )


def get_record(connection: Connection, record_id: str) -> Record | None:
    row = connection.execute(sa.select(records).where(records.c.record_id == record_id)).first()
    return _record(row) if row else None


def records_of(connection: Connection, key: str) -> list[Record]:
    return [
        _record(row)
        for row in connection.execute(sa.select(records).where(records.c.subject_key == key))
    ]


def all_records(connection: Connection) -> dict[str, list[Record]]:
    by_subject: dict[str, list[Record]] = {}
    for row in connection.execute(sa.select(records)).all():
        record = _record(row)
        by_subject.setdefault(record.subject_key, []).append(record)
    return by_subject


def subjects_with_expiries(
    connection: Connection, since: dt.datetime, until: dt.datetime
) -> list[str]:
    rows = connection.execute(
        sa.select(records.c.subject_key)
        .where((records.c.expires_at > since) & (records.c.expires_at <= until))
        .distinct()
    )
    return list(rows.scalars())


# ---------------------------------------------------------------- assessments


def _assessment(row) -> Assessment:
    return Assessment(
        assessment_id=row.assessment_id,
        subject_key=row.subject_key,
        cycle=AssessmentCycle(row.cycle),
        period=row.period,
        base_score=from_tenths(row.base_tenths),
        assessed_at=utc(row.assessed_at),
    )


def insert_assessment(
    connection: Connection, a: Assessment, checklist: str, assessors: list, scores: dict
) -> None:
    connection.execute(
        assessments.insert().values(
            assessment_id=a.assessment_id,
            subject_key=a.subject_key,
            cycle=a.cycle.value,
            period=a.period,
            checklist=checklist,
            assessors=assessors,
            scores=scores,
            base_tenths=to_tenths(a.base_score),
            assessed_at=a.assessed_at,
        )
    )


def assessments_of(connection: Connection, key: str) -> list[Assessment]:
    return [
        _assessment(row)
        for row in connection.execute(
            sa.select(assessments).where(assessments.c.subject_key == key)
        )
    ]


def all_assessments(connection: Connection) -> dict[str, list[Assessment]]:
    by_subject: dict[str, list[Assessment]] = {}
    for row in connection.execute(sa.select(assessments)):
        by_subject.setdefault(row.subject_key, []).append(_assessment(row))
    return by_subject


def all_subjects(connection: Connection) -> list[tuple[SubjectFile, AnnouncedStanding]]:
    return [(_subject(row), _stored(row)) for row in connection.execute(sa.select(subjects))]


# ---------------------------------------------------------------- the feed


def append_changes(
    connection: Connection,
    changes: list[tuple[SubjectFile, Grade, Standing]],
    now: dt.datetime,
) -> list[int]:
    """Append to the feed; returns the sequence numbers, in the order given."""
    if connection.dialect.name == "postgresql":
        # Sequence numbers must become visible in order, or a reader paging by sequence could
        # pass one committed late: one writer at a time, until its commit.
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext('credit.grade_changes'))")
        )
    rows = connection.execute(
        grade_changes.insert().returning(grade_changes.c.sequence, sort_by_parameter_order=True),
        [
            {
                "subject_key": subject.key,
                "kind": subject.kind.value,
                "subject_id": subject.subject_id,
                "district_code": subject.district_code,
                "previous_grade": previous.value,
                "grade": standing.grade.value,
                "score_tenths": to_tenths(standing.score),
                "blacklisted": standing.blacklisted,
                "red_listed": standing.red_listed,
                "changed_at": now,
            }
            for subject, previous, standing in changes
        ],
    )
    return [row.sequence for row in rows]


def changes_after(connection: Connection, sequence: int, limit: int) -> list[FeedEntry]:
    rows = connection.execute(
        sa.select(grade_changes)
        .where(grade_changes.c.sequence > sequence)
        .order_by(grade_changes.c.sequence)
        .limit(limit)
    )
    return [
        FeedEntry(
            sequence=row.sequence,
            kind=SubjectKind(row.kind),
            subject_id=row.subject_id,
            district_code=row.district_code,
            previous_grade=Grade(row.previous_grade),
            standing=_stored(row),
            changed_at=utc(row.changed_at),
        )
        for row in rows
    ]


# ---------------------------------------------------------------- timers


def timer_mark(connection: Connection, name: str) -> dt.datetime | None:
    row = connection.execute(
        sa.select(timer_marks.c.mark).where(timer_marks.c.name == name).with_for_update()
    ).first()
    return utc(row.mark) if row else None


def set_timer_mark(connection: Connection, name: str, mark: dt.datetime, *, new: bool) -> None:
    if new:
        connection.execute(timer_marks.insert().values(name=name, mark=mark))
    else:
        connection.execute(timer_marks.update().where(timer_marks.c.name == name).values(mark=mark))
