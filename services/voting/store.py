"""Voting tables: read models of the registry's projects, committees and units; votes, their
frozen rolls and their hash-chained ballot logs; and their queries.

Times the algorithm hashes (open, close, cast) are kept as integer microseconds since the epoch,
so that what the database returns is exactly what was hashed on every engine."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import psycopg
import sqlalchemy as sa
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, Engine

from wuye.core.db import service_metadata
from wuye.voting import domain
from wuye.voting.domain import (
    Channel,
    Choice,
    CountedBallot,
    CountingRules,
    LogEntry,
    Matter,
    MatterClass,
    MatterResult,
    MatterType,
    RollEntry,
    RollUnit,
    Threshold,
    Voter,
    VoteResult,
    VoteSpec,
    VoteState,
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
)
# Committees the registry recorded: the acting one of a project may call votes.
committees = sa.Table(
    "committees",
    metadata,
    sa.Column("committee_id", sa.String(32), primary_key=True),
    sa.Column("project_id", sa.String(32), nullable=False, index=True),
    sa.Column("acting", sa.Boolean, nullable=False),
)
units = sa.Table(
    "units",
    metadata,
    sa.Column("unit_id", sa.String(32), primary_key=True),
    sa.Column("project_id", sa.String(32), nullable=False, index=True),
    sa.Column("area_cm2", sa.BigInteger, nullable=False),
    sa.Column("owner_kind", sa.String(20), nullable=False),
    sa.Column("owner_key", sa.String(32), nullable=False),
)

votes = sa.Table(
    "votes",
    metadata,
    sa.Column("vote_id", sa.String(32), primary_key=True),
    sa.Column("project_id", sa.String(32), nullable=False, index=True),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    # The VoteSpec as stored: title, times, rules and matters (see _spec_row).
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("open_at", _time(), nullable=False),
    sa.Column("close_at", _time(), nullable=False),
    sa.Column("created_at", _time(), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    # From the opening.
    sa.Column("roll_digest", sa.String(64), nullable=False, server_default=""),
    sa.Column("roll_owners", sa.Integer, nullable=False, server_default="0"),
    sa.Column("roll_area_cm2", sa.BigInteger, nullable=False, server_default="0"),
    # The log's head: its last entry's sequence, hash and cast time (the roll digest and 0
    # before the first ballot).
    sa.Column("sequence", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("head", sa.String(64), nullable=False, server_default=""),
    sa.Column("last_cast_micros", sa.BigInteger, nullable=False, server_default="0"),
    # From the close.
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("closed_at", _time(), nullable=True),
    sa.Column("cancelled_at", _time(), nullable=True),
    sa.Column("cancel_reason", sa.String(200), nullable=False, server_default=""),
)
# The frozen roll: one row per owner, and the units and owner keys that vote as each.
roll = sa.Table(
    "roll",
    metadata,
    sa.Column("vote_id", sa.String(32), primary_key=True),
    sa.Column("pseudonym", sa.String(32), primary_key=True),
    sa.Column("area_cm2", sa.BigInteger, nullable=False),
    sa.Column("unit_count", sa.Integer, nullable=False),
)
roll_units = sa.Table(
    "roll_units",
    metadata,
    sa.Column("vote_id", sa.String(32), primary_key=True),
    sa.Column("unit_id", sa.String(32), primary_key=True),
    sa.Column("owner_key", sa.String(32), nullable=False),
    sa.Column("pseudonym", sa.String(32), nullable=False),
    sa.Index(None, "vote_id", "owner_key"),
)
ballots = sa.Table(
    "ballots",
    metadata,
    sa.Column("vote_id", sa.String(32), primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("pseudonym", sa.String(32), nullable=False),
    sa.Column("area_cm2", sa.BigInteger, nullable=False),
    # [[matter_id, choice], ...] in the vote's order of matters.
    sa.Column("choices", sa.JSON, nullable=False),
    sa.Column("cast_micros", sa.BigInteger, nullable=False),
    sa.Column("channel", sa.String(8), nullable=False),
    sa.Column("paper_reference", sa.String(200), nullable=False),
    sa.Column("previous_hash", sa.String(64), nullable=False),
    sa.Column("entry_hash", sa.String(64), nullable=False),
    # The caller's request id: a retried CastBallot answers the ballot it already cast.
    sa.Column("request_id", sa.String(100), nullable=False),
    sa.Index(None, "vote_id", "pseudonym"),
    sa.Index(None, "vote_id", "entry_hash", unique=True),
)


# ---------------------------------------------------------------- read models


def add_project(connection: Connection, project_id: str, district: str) -> None:
    _upsert(connection, projects, {"project_id": project_id, "district_code": district})


def project_district(connection: Connection, project_id: str) -> str | None:
    return connection.execute(
        sa.select(projects.c.district_code).where(projects.c.project_id == project_id)
    ).scalar_one_or_none()


def add_committee(
    connection: Connection, committee_id: str, project_id: str, ended_committee_id: str
) -> None:
    _upsert(
        connection,
        committees,
        {"committee_id": committee_id, "project_id": project_id, "acting": True},
    )
    if ended_committee_id:
        connection.execute(
            committees.update()
            .where(committees.c.committee_id == ended_committee_id)
            .values(acting=False)
        )


def acts_for(connection: Connection, committee_id: str, project_id: str) -> bool:
    return (
        connection.execute(
            sa.select(committees.c.committee_id).where(
                (committees.c.committee_id == committee_id)
                & (committees.c.project_id == project_id)
                & committees.c.acting
            )
        ).first()
        is not None
    )


def put_units(connection: Connection, project_id: str, given: Iterable[RollUnit]) -> None:
    """Units as the registry last announced them: a transfer replaces the owner."""
    for unit in given:
        _upsert(
            connection,
            units,
            {
                "unit_id": unit.unit_id,
                "project_id": project_id,
                "area_cm2": unit.area_cm2,
                "owner_kind": domain.DEVELOPER_UNSOLD if unit.developer_unsold else "OWNER",
                "owner_key": unit.owner_key,
            },
        )


def has_units(connection: Connection, project_id: str) -> bool:
    return (
        connection.execute(
            sa.select(units.c.unit_id).where(units.c.project_id == project_id).limit(1)
        ).first()
        is not None
    )


def project_units(connection: Connection, project_id: str) -> list[RollUnit]:
    rows = connection.execute(
        sa.select(units).where(units.c.project_id == project_id).order_by(units.c.unit_id)
    )
    return [
        RollUnit(
            unit_id=row.unit_id,
            area_cm2=row.area_cm2,
            owner_key=row.owner_key,
            developer_unsold=row.owner_kind == domain.DEVELOPER_UNSOLD,
        )
        for row in rows
    ]


def _upsert(connection: Connection, table: sa.Table, values: dict) -> None:
    keys = [c.name for c in table.primary_key.columns]
    where = sa.and_(*(table.c[k] == values[k] for k in keys))
    updated = connection.execute(
        table.update().where(where).values({k: v for k, v in values.items() if k not in keys})
    )
    if updated.rowcount == 0:
        connection.execute(table.insert().values(values))


# ---------------------------------------------------------------- votes


@dataclass(frozen=True)
class StoredVote:
    spec: VoteSpec
    state: VoteState
    created_at: dt.datetime
    created_by: str
    roll_digest: str
    roll_owners: int
    roll_area_cm2: int
    sequence: int
    head: str
    last_cast_micros: int
    result: VoteResult | None
    closed_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    cancel_reason: str


def _threshold_json(t: Threshold) -> list:
    return t.canonical()


def _threshold(value: list) -> Threshold:
    return Threshold(domain.parse_fraction(value[0]), value[1])


def _spec_row(spec: VoteSpec) -> dict:
    return {
        "algorithm_version": spec.algorithm_version,
        "title": spec.title,
        "open_time": domain.micros(spec.open_time),
        "close_time": domain.micros(spec.close_time),
        "rules": spec.rules.canonical(),
        "matters": [m.canonical() for m in spec.matters],
    }


def _time_of(micros: int) -> dt.datetime:
    return domain.EPOCH + dt.timedelta(microseconds=micros)


def _spec(row) -> VoteSpec:
    s = row.spec
    rules = s["rules"]
    return VoteSpec(
        vote_id=row.vote_id,
        project_id=row.project_id,
        district_code=row.district_code,
        title=s["title"],
        open_time=_time_of(s["open_time"]),
        close_time=_time_of(s["close_time"]),
        rules=CountingRules(
            quorum=_threshold(rules["quorum"]),
            special_majority=_threshold(rules["special_majority"]),
            ordinary_majority=_threshold(rules["ordinary_majority"]),
            non_voters_follow_majority=rules["non_voters_follow_majority"],
        ),
        matters=tuple(
            Matter(
                matter_id=m["matter_id"],
                type=MatterType(m["type"]),
                matter_class=MatterClass(m["matter_class"]),
                title=m["title"],
                text=m["text"],
                fund_amount_fen=m["fund_amount_fen"],
                unit_ids=tuple(m["unit_ids"]),
            )
            for m in s["matters"]
        ),
        algorithm_version=s["algorithm_version"],
    )


def _result_row(result: VoteResult) -> dict:
    return {
        "roll_area_cm2": result.roll_area_cm2,
        "roll_owners": result.roll_owners,
        "ballots": result.ballots,
        "counted_ballots": result.counted_ballots,
        "matters": [
            {
                **{
                    name: getattr(m, name)
                    for name in MatterResult.__dataclass_fields__
                    if name not in ("matter_class", "deemed_choice")
                },
                "matter_class": m.matter_class.value,
                "deemed_choice": m.deemed_choice.value if m.deemed_choice else None,
            }
            for m in result.matters
        ],
    }


def _result(value) -> VoteResult | None:
    if value is None:
        return None
    r = value
    return VoteResult(
        roll_area_cm2=r["roll_area_cm2"],
        roll_owners=r["roll_owners"],
        ballots=r["ballots"],
        counted_ballots=r["counted_ballots"],
        matters=tuple(
            MatterResult(
                **{
                    **m,
                    "matter_class": MatterClass(m["matter_class"]),
                    "deemed_choice": Choice(m["deemed_choice"]) if m["deemed_choice"] else None,
                }
            )
            for m in r["matters"]
        ),
    )


def _vote(row) -> StoredVote:
    return StoredVote(
        spec=_spec(row),
        state=VoteState(row.state),
        created_at=row.created_at,
        created_by=row.created_by,
        roll_digest=row.roll_digest,
        roll_owners=row.roll_owners,
        roll_area_cm2=row.roll_area_cm2,
        sequence=row.sequence,
        head=row.head,
        last_cast_micros=row.last_cast_micros,
        result=_result(row.result),
        closed_at=row.closed_at,
        cancelled_at=row.cancelled_at,
        cancel_reason=row.cancel_reason,
    )


def insert_vote(
    connection: Connection, spec: VoteSpec, created_at: dt.datetime, created_by: str
) -> None:
    connection.execute(
        votes.insert().values(
            vote_id=spec.vote_id,
            project_id=spec.project_id,
            district_code=spec.district_code,
            state=VoteState.SCHEDULED.value,
            spec=_spec_row(spec),
            open_at=spec.open_time,
            close_at=spec.close_time,
            created_at=created_at,
            created_by=created_by,
        )
    )


def get_vote(connection: Connection, vote_id: str, *, lock: bool = False) -> StoredVote | None:
    """The vote; with `lock`, its row held until the transaction ends (a statement of its own,
    so that what is read after it is read after the lock was granted)."""
    if lock:
        connection.execute(
            sa.select(votes.c.vote_id).where(votes.c.vote_id == vote_id).with_for_update()
        )
    row = connection.execute(sa.select(votes).where(votes.c.vote_id == vote_id)).first()
    return _vote(row) if row is not None else None


def list_votes(
    connection: Connection,
    districts: frozenset[str],
    project_id: str,
    state: VoteState | None,
    after: str | None,
    limit: int,
) -> list[StoredVote]:
    query = sa.select(votes).where(votes.c.district_code.in_(sorted(districts)))
    if project_id:
        query = query.where(votes.c.project_id == project_id)
    if state is not None:
        query = query.where(votes.c.state == state.value)
    if after is not None:
        query = query.where(votes.c.vote_id > after)
    rows = connection.execute(query.order_by(votes.c.vote_id).limit(limit))
    return [_vote(row) for row in rows]


def due_votes(connection: Connection, state: VoteState, column: str, now: dt.datetime) -> list[str]:
    """Votes in `state` whose open_at or close_at (`column`) has come."""
    rows = connection.execute(
        sa.select(votes.c.vote_id)
        .where((votes.c.state == state.value) & (votes.c[column] <= now))
        .order_by(votes.c[column])
    )
    return [row.vote_id for row in rows]


def count_open(connection: Connection) -> int:
    return connection.execute(
        sa.select(sa.func.count()).select_from(votes).where(votes.c.state == VoteState.OPEN.value)
    ).scalar_one()


def open_vote(
    connection: Connection,
    vote_id: str,
    voters: Sequence[Voter],
    members: Sequence[tuple[str, str, str]],
    digest: str,
) -> None:
    """Freezes the roll (its owners, and each unit's owner key and owner's pseudonym as
    `members`) and records its digest as the log's first link."""
    connection.execute(
        roll.insert(),
        [
            {
                "vote_id": vote_id,
                "pseudonym": v.pseudonym,
                "area_cm2": v.area_cm2,
                "unit_count": len(v.unit_ids),
            }
            for v in voters
        ],
    )
    connection.execute(
        roll_units.insert(),
        [
            {"vote_id": vote_id, "unit_id": unit_id, "owner_key": key, "pseudonym": pseudonym}
            for unit_id, key, pseudonym in members
        ],
    )
    connection.execute(
        votes.update()
        .where(votes.c.vote_id == vote_id)
        .values(
            state=VoteState.OPEN.value,
            roll_digest=digest,
            roll_owners=len(voters),
            roll_area_cm2=sum(v.area_cm2 for v in voters),
            head=digest,
        )
    )


def cancel_vote(connection: Connection, vote_id: str, now: dt.datetime, reason: str) -> None:
    connection.execute(
        votes.update()
        .where(votes.c.vote_id == vote_id)
        .values(state=VoteState.CANCELLED.value, cancelled_at=now, cancel_reason=reason)
    )


def close_vote(connection: Connection, vote_id: str, now: dt.datetime, result: VoteResult) -> None:
    connection.execute(
        votes.update()
        .where(votes.c.vote_id == vote_id)
        .values(state=VoteState.CLOSED.value, closed_at=now, result=_result_row(result))
    )


# ---------------------------------------------------------------- the roll and the log


@dataclass(frozen=True)
class RollMember:
    pseudonym: str
    area_cm2: int
    unit_count: int


def voter_by_owner_key(connection: Connection, vote_id: str, owner_key: str) -> RollMember | None:
    return _member(connection, vote_id, roll_units.c.owner_key == owner_key)


def frozen_roll(connection: Connection, vote_id: str) -> dict[str, RollMember] | None:
    """The roll frozen when the vote opened, by the owner key of each of its units (a unit of the
    developer's unsold ones votes as their one owner); None while the vote has no roll."""
    state = connection.execute(
        sa.select(votes.c.state).where(votes.c.vote_id == vote_id)
    ).scalar_one_or_none()
    # The roll is written with the state OPEN in one transaction: read after it, it is whole.
    if state not in (VoteState.OPEN.value, VoteState.CLOSED.value):
        return None
    rows = connection.execute(
        sa.select(roll_units.c.owner_key, roll.c.pseudonym, roll.c.area_cm2, roll.c.unit_count)
        .join(
            roll_units,
            (roll_units.c.vote_id == roll.c.vote_id) & (roll_units.c.pseudonym == roll.c.pseudonym),
        )
        .where(roll.c.vote_id == vote_id)
        .order_by(roll_units.c.unit_id)
    )
    owners: dict[str, RollMember] = {}
    members: dict[str, RollMember] = {}
    for owner_key, pseudonym, area_cm2, unit_count in rows:
        owner = owners.get(pseudonym)
        if owner is None:
            owner = owners[pseudonym] = RollMember(pseudonym, area_cm2, unit_count)
        members.setdefault(owner_key, owner)
    return members


def voter_by_unit(connection: Connection, vote_id: str, unit_id: str) -> RollMember | None:
    return _member(connection, vote_id, roll_units.c.unit_id == unit_id)


def _member(connection: Connection, vote_id: str, which) -> RollMember | None:
    row = connection.execute(
        sa.select(roll.c.pseudonym, roll.c.area_cm2, roll.c.unit_count)
        .join(
            roll_units,
            (roll_units.c.vote_id == roll.c.vote_id) & (roll_units.c.pseudonym == roll.c.pseudonym),
        )
        .where((roll.c.vote_id == vote_id) & which)
        .limit(1)
    ).first()
    return RollMember(row.pseudonym, row.area_cm2, row.unit_count) if row else None


def roll_entries(connection: Connection, vote_id: str) -> list[RollEntry]:
    rows = connection.execute(
        sa.select(roll.c.pseudonym, roll.c.area_cm2)
        .where(roll.c.vote_id == vote_id)
        .order_by(roll.c.pseudonym)
    )
    return [RollEntry(row.pseudonym, row.area_cm2) for row in rows]


_CHANNEL_OF = {c.value: c for c in Channel}
_CHOICE_OF = {c.value: c for c in Choice}


def _entry(row) -> LogEntry:
    return LogEntry(
        sequence=row.sequence,
        pseudonym=row.pseudonym,
        area_cm2=row.area_cm2,
        choices=tuple((m, _CHOICE_OF[c]) for m, c in row.choices),
        cast_time=_time_of(row.cast_micros),
        channel=_CHANNEL_OF[row.channel],
        paper_reference=row.paper_reference,
        previous_hash=row.previous_hash,
        entry_hash=row.entry_hash,
    )


# ---------------------------------------------------------------- appending to a log


@dataclass(frozen=True)
class Head:
    """What an append needs of its vote: whether it takes ballots, and the log's last entry."""

    state: VoteState
    sequence: int
    head: str
    last_cast_micros: int


@dataclass(frozen=True)
class Earlier:
    """An owner's ballot already in the log, as far as a new ballot needs it."""

    sequence: int
    entry_hash: str
    request_id: str


# What an append makes of its batch: from the head, the batch's owners' ballots already in the
# log (oldest first) and a reader of one entry by sequence, the entries to add, each with its
# request id.
Extend = Callable[
    [Head, dict[str, list[Earlier]], Callable[[int], LogEntry]], list[tuple[LogEntry, str]]
]

# An entry's columns as the appender writes them (besides vote_id), with their types.
_ENTRY_COLUMNS = (
    ("sequence", "bigint"),
    ("pseudonym", "text"),
    ("area_cm2", "bigint"),
    ("choices", "json"),
    ("cast_micros", "bigint"),
    ("channel", "text"),
    ("paper_reference", "text"),
    ("previous_hash", "text"),
    ("entry_hash", "text"),
    ("request_id", "text"),
)
_NAMES = ", ".join(name for name, _ in _ENTRY_COLUMNS)

# PostgreSQL: the transaction's start, the lock and the reads as one message, the writes and the
# commit as another (parameters bound by psycopg, so that one message may hold several
# statements).
_OPEN_SQL = (
    "BEGIN;"
    " SELECT state, sequence, head, last_cast_micros FROM votes WHERE vote_id = %(vote_id)s"
    " FOR UPDATE;"
    # An index lookup per owner: read as one condition on a growing log whose statistics lag,
    # the planner scanned the vote's every ballot (OFFSET 0 keeps the lookup per owner).
    " SELECT b.pseudonym, b.sequence, b.entry_hash, b.request_id"
    " FROM json_array_elements_text(%(pseudonyms)s::json) AS owner (pseudonym),"
    " LATERAL (SELECT pseudonym, sequence, entry_hash, request_id FROM ballots"
    " WHERE vote_id = %(vote_id)s AND pseudonym = owner.pseudonym OFFSET 0) AS b"
    " ORDER BY b.sequence"
)
_ENTRY_SQL = "SELECT * FROM ballots WHERE vote_id = %(vote_id)s AND sequence = %(sequence)s"
# The entries as one JSON array (encoded in C): one statement whatever their number, the head
# moved in the same statement.
_APPEND_SQL = (
    f"WITH appended AS (INSERT INTO ballots (vote_id, {_NAMES}) SELECT %(vote_id)s, {_NAMES}"
    " FROM json_to_recordset(%(entries)s::json)"
    f" AS e({', '.join(f'{name} {kind}' for name, kind in _ENTRY_COLUMNS)}))"
    " UPDATE votes SET sequence = %(sequence)s, head = %(head)s,"
    " last_cast_micros = %(last_cast_micros)s WHERE vote_id = %(vote_id)s;"
    " COMMIT"
)


def _entry_row(entry: LogEntry, request_id: str) -> dict:
    return {
        "sequence": entry.sequence,
        "pseudonym": entry.pseudonym,
        "area_cm2": entry.area_cm2,
        "choices": [[m, c.value] for m, c in entry.choices],
        "cast_micros": domain.micros(entry.cast_time),
        "channel": entry.channel.value,
        "paper_reference": entry.paper_reference,
        "previous_hash": entry.previous_hash,
        "entry_hash": entry.entry_hash,
        "request_id": request_id,
    }


def _earlier(rows: Iterable[tuple[str, int, str, str]]) -> dict[str, list[Earlier]]:
    found: dict[str, list[Earlier]] = {}
    for pseudonym, sequence, entry_hash, request_id in rows:
        found.setdefault(pseudonym, []).append(Earlier(sequence, entry_hash, request_id))
    return found


class LogWriter:
    """Appends batches of entries to votes' logs, a transaction a batch under the vote's row
    lock (the chain stays single whatever the number of servers). For one thread, the
    appender's: on PostgreSQL it keeps a connection of its own and talks to the database twice
    a batch, since every wait for the database is a wait for the GIL on its return; elsewhere
    it goes through SQLAlchemy."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._connection: psycopg.Connection | None = None

    def append(
        self, vote_id: str, pseudonyms: Iterable[str], extend: Extend
    ) -> list[tuple[LogEntry, str]]:
        """Entries `extend` makes of the vote's head and its owners' earlier ballots, appended
        (none if it makes none, or raises)."""
        owners = sorted(set(pseudonyms))
        if self._postgres:
            return self._append_postgres(vote_id, owners, extend)
        with self._engine.begin() as connection:
            row = connection.execute(
                sa.select(votes.c.state, votes.c.sequence, votes.c.head, votes.c.last_cast_micros)
                .where(votes.c.vote_id == vote_id)
                .with_for_update()
            ).one()
            earlier = _earlier(
                connection.execute(
                    sa.select(
                        ballots.c.pseudonym,
                        ballots.c.sequence,
                        ballots.c.entry_hash,
                        ballots.c.request_id,
                    )
                    .where((ballots.c.vote_id == vote_id) & ballots.c.pseudonym.in_(owners))
                    .order_by(ballots.c.sequence)
                )
            )
            new = extend(
                Head(VoteState(row.state), row.sequence, row.head, row.last_cast_micros),
                earlier,
                lambda sequence: log_entries(connection, vote_id, sequence - 1, 1)[0],
            )
            if new:
                connection.execute(
                    ballots.insert(), [{"vote_id": vote_id, **_entry_row(*n)} for n in new]
                )
                connection.execute(
                    votes.update().where(votes.c.vote_id == vote_id).values(**_head_of(new))
                )
        return new

    def _append_postgres(
        self, vote_id: str, owners: list[str], extend: Extend
    ) -> list[tuple[LogEntry, str]]:
        connection = self._connection
        if connection is None:
            pooled = self._engine.raw_connection()
            pooled.detach()  # the appender's own, for as long as it lives
            connection = self._connection = pooled.dbapi_connection
            # Its transactions are begun and committed by the statements it sends.
            connection.autocommit = True
        try:
            cursor = psycopg.ClientCursor(connection)
            cursor.execute(_OPEN_SQL, {"vote_id": vote_id, "pseudonyms": json.dumps(owners)})
            cursor.nextset()
            state, sequence, head, last_cast_micros = cursor.fetchone()
            cursor.nextset()
            new = extend(
                Head(VoteState(state), sequence, head, last_cast_micros),
                _earlier(cursor.fetchall()),
                lambda at: self._entry(connection, vote_id, at),
            )
            if new:
                entries = json.dumps([_entry_row(*n) for n in new])
                cursor.execute(
                    _APPEND_SQL, {"vote_id": vote_id, "entries": entries, **_head_of(new)}
                )
            else:
                cursor.execute("ROLLBACK")
        except Exception:
            # Whatever failed, the transaction did: the next batch starts on a new connection.
            self._connection = None
            connection.close()
            raise
        return new

    @staticmethod
    def _entry(connection: psycopg.Connection, vote_id: str, sequence: int) -> LogEntry:
        cursor = connection.cursor(row_factory=namedtuple_row)
        cursor.execute(_ENTRY_SQL, {"vote_id": vote_id, "sequence": sequence})
        return _entry(cursor.fetchone())

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _head_of(new: Sequence[tuple[LogEntry, str]]) -> dict:
    last = new[-1][0]
    return {
        "sequence": last.sequence,
        "head": last.entry_hash,
        "last_cast_micros": domain.micros(last.cast_time),
    }


def entries_of(connection: Connection, vote_id: str, pseudonym: str) -> list[LogEntry]:
    """An owner's entries in the log, oldest first."""
    rows = connection.execute(
        sa.select(ballots)
        .where((ballots.c.vote_id == vote_id) & (ballots.c.pseudonym == pseudonym))
        .order_by(ballots.c.sequence)
    )
    return [_entry(row) for row in rows]


def entry_by_hash(connection: Connection, vote_id: str, entry_hash: str) -> LogEntry | None:
    row = connection.execute(
        sa.select(ballots).where(
            (ballots.c.vote_id == vote_id) & (ballots.c.entry_hash == entry_hash)
        )
    ).first()
    return _entry(row) if row is not None else None


def last_sequence_of(connection: Connection, vote_id: str, pseudonym: str) -> int:
    return connection.execute(
        sa.select(sa.func.max(ballots.c.sequence)).where(
            (ballots.c.vote_id == vote_id) & (ballots.c.pseudonym == pseudonym)
        )
    ).scalar_one()


def counted_ballots(connection: Connection, vote_id: str) -> list[CountedBallot]:
    """The log as the count reads it: sequence, owner and choices of every entry. The choices
    come as their text: a vote's ballots repeat a few combinations, each decoded once."""
    decoded: dict[str, tuple[tuple[str, Choice], ...]] = {}
    counted = []
    rows = connection.execute(
        sa.select(ballots.c.sequence, ballots.c.pseudonym, sa.cast(ballots.c.choices, sa.Text))
        .where(ballots.c.vote_id == vote_id)
        .order_by(ballots.c.sequence)
    )
    for sequence, pseudonym, text in rows:
        choices = decoded.get(text)
        if choices is None:
            choices = decoded[text] = tuple((m, _CHOICE_OF[c]) for m, c in json.loads(text))
        counted.append(CountedBallot(sequence, pseudonym, choices))
    return counted


def log_entries(
    connection: Connection, vote_id: str, after: int = 0, limit: int | None = None
) -> list[LogEntry]:
    query = (
        sa.select(ballots)
        .where((ballots.c.vote_id == vote_id) & (ballots.c.sequence > after))
        .order_by(ballots.c.sequence)
    )
    if limit is not None:
        query = query.limit(limit)
    return [_entry(row) for row in connection.execute(query)]


def iter_log(connection: Connection, vote_id: str, part: int) -> Iterator[list[LogEntry]]:
    """The log in parts of `part` entries."""
    after = 0
    while True:
        entries = log_entries(connection, vote_id, after, part)
        if not entries:
            return
        yield entries
        after = entries[-1].sequence
