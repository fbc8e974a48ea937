"""The fund's tables and the functions that read and write them: unit accounts (learned from the
registry), the append-only ledger (entries and their postings), uses with their payments and
per-unit shares, what each unit owes each use, and the interest periods allocated."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql

from wuye.core.db import service_metadata, timestamp_column, utc
from wuye.fund.domain import (
    AccountKind,
    Decision,
    DepositKind,
    Emergency,
    EmergencyKind,
    EmergencyRequester,
    Entry,
    EntryKind,
    LedgerAccount,
    Payment,
    Posting,
    Share,
    UnitAccount,
    Use,
    UseOrigin,
    UseState,
    WorksKind,
)

metadata = service_metadata()
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_ID = 32
_ENTRY_ID = 64

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("unit_id", sa.String(_ID), primary_key=True),
    sa.Column("project_id", sa.String(_ID), nullable=False, index=True),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("unit_number", sa.String(64), nullable=False),
    sa.Column("area_cm2", sa.BigInteger, nullable=False),
    # The registry's owner key: an owner's token names it; no name, no ID number.
    sa.Column("owner_key", sa.String(128), nullable=False, index=True),
    sa.Column("balance_fen", sa.BigInteger, nullable=False),
    sa.Column("first_deposit_fen", sa.BigInteger, nullable=False),
    sa.Column("owed_fen", sa.BigInteger, nullable=False),
    sa.Column("deposited_fen", sa.BigInteger, nullable=False),
    sa.Column("interest_fen", sa.BigInteger, nullable=False),
    sa.Column("used_fen", sa.BigInteger, nullable=False),
    sa.Column("top_up_required", sa.Boolean, nullable=False),
    sa.Column("opened_at", timestamp_column(), nullable=False),
)

entries = sa.Table(
    "entries",
    metadata,
    # The order entries were posted in: the ledger is read newest first by it.
    sa.Column("seq", _big_id, primary_key=True, autoincrement=True),
    sa.Column("entry_id", sa.String(_ENTRY_ID), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("project_id", sa.String(_ID), nullable=False, index=True),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("use_id", sa.String(_ID), nullable=False),
    sa.Column("period", sa.String(32), nullable=False),
    # An entry is reversed at most once: the database holds to it as well.
    sa.Column("reverses", sa.String(_ENTRY_ID), nullable=True, unique=True),
    sa.Column("reason", sa.String(200), nullable=False),
    # DEPOSIT entries: FIRST or TOP_UP.
    sa.Column("deposit_kind", sa.String(8), nullable=True),
    sa.Column("posted_at", timestamp_column(), nullable=False),
)

postings = sa.Table(
    "postings",
    metadata,
    sa.Column("entry_id", sa.String(_ENTRY_ID), primary_key=True),
    sa.Column("line", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("account_kind", sa.String(8), nullable=False),
    sa.Column("project_id", sa.String(_ID), nullable=False, index=True),
    # Empty for the project's bank account.
    sa.Column("unit_id", sa.String(_ID), nullable=False, index=True),
    # Debits positive, credits negative.
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
)

uses = sa.Table(
    "uses",
    metadata,
    sa.Column("use_id", sa.String(_ID), primary_key=True),
    sa.Column("project_id", sa.String(_ID), nullable=False, index=True),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("state", sa.String(24), nullable=False, index=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("budget_fen", sa.BigInteger, nullable=False),
    sa.Column("works_kind", sa.String(24), nullable=True),
    sa.Column("unit_ids", sa.JSON, nullable=False),
    sa.Column("decision", sa.JSON, nullable=True),
    sa.Column("emergency", sa.JSON, nullable=True),
    # "<vote_id>/<matter_id>": a decision opens one use, however often it is delivered.
    sa.Column("decision_key", sa.String(120), nullable=True, unique=True),
    # An alarm opens one draft.
    sa.Column("alarm_id", sa.String(64), nullable=True, unique=True),
    sa.Column("paid_fen", sa.BigInteger, nullable=False),
    sa.Column("owed_fen", sa.BigInteger, nullable=False),
    sa.Column("payments", sa.Integer, nullable=False),
    sa.Column("final_cost_fen", sa.BigInteger, nullable=True),
    sa.Column("reason", sa.String(200), nullable=False),
    # Emergency requests: the last day approval is due (the escalation timer reads it).
    sa.Column("approve_by", sa.Date, nullable=True, index=True),
    sa.Column("opened_at", timestamp_column(), nullable=False),
    sa.Column("notified_at", timestamp_column(), nullable=True),
    sa.Column("escalated_at", timestamp_column(), nullable=True),
    sa.Column("approved_at", timestamp_column(), nullable=True),
    sa.Column("completed_at", timestamp_column(), nullable=True),
)

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("use_id", sa.String(_ID), primary_key=True),
    sa.Column("stage", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("debited_fen", sa.BigInteger, nullable=False),
    sa.Column("owed_fen", sa.BigInteger, nullable=False),
    sa.Column("entry_id", sa.String(_ENTRY_ID), nullable=False),
    sa.Column("bank_reference", sa.String(200), nullable=False),
    sa.Column("paid_at", timestamp_column(), nullable=False),
)

shares = sa.Table(
    "shares",
    metadata,
    sa.Column("use_id", sa.String(_ID), primary_key=True),
    sa.Column("stage", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("unit_id", sa.String(_ID), primary_key=True),
    sa.Column("unit_number", sa.String(64), nullable=False),
    sa.Column("area_cm2", sa.BigInteger, nullable=False),
    sa.Column("share_fen", sa.BigInteger, nullable=False),
    sa.Column("debited_fen", sa.BigInteger, nullable=False),
    sa.Column("owed_fen", sa.BigInteger, nullable=False),
)

# What each unit still owes each use: its shares' owed parts less what it settled since.
unit_owed = sa.Table(
    "unit_owed",
    metadata,
    sa.Column("unit_id", sa.String(_ID), primary_key=True),
    sa.Column("use_id", sa.String(_ID), primary_key=True),
    sa.Column("owed_fen", sa.BigInteger, nullable=False),
    sa.Column("since", timestamp_column(), nullable=False),
)

# A period's interest is allocated once per scope (a project or a district).
interest_periods = sa.Table(
    "interest_periods",
    metadata,
    sa.Column("scope", sa.String(_ID), primary_key=True),
    sa.Column("period", sa.String(32), primary_key=True),
    sa.Column("interest_fen", sa.BigInteger, nullable=False),
    sa.Column("accounts", sa.Integer, nullable=False),
    sa.Column("allocated_at", timestamp_column(), nullable=False),
)


def _insert_rows(connection: Connection, table: sa.Table, rows: list[dict]) -> None:
    """Inserts rows of the same keys. On PostgreSQL in one statement, each column's values one
    array (unnest), as ColumnUpdate updates: a payment across 20,000 units writes as many shares
    and postings, and a statement a row, even pipelined, took seconds."""
    if not rows:
        return
    if connection.dialect.name != "postgresql":
        connection.execute(table.insert(), rows)
        return
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    names = list(rows[0])
    arrays = ", ".join(f"CAST(:{n} AS {table.c[n].type.compile(dialect)}[])" for n in names)
    statement = sa.text(
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)}"
        f" ({', '.join(quote(n) for n in names)}) SELECT * FROM unnest({arrays})"
    )
    connection.execute(statement, {n: [row[n] for row in rows] for n in names})


# ---------------------------------------------------------------- accounts


@dataclass(frozen=True)
class AccountView:
    """An account as read: the rule's account and what is kept beside it."""

    account: UnitAccount
    owner_key: str
    deposited_fen: int
    interest_fen: int
    used_fen: int
    top_up_required: bool
    opened_at: dt.datetime


def _account(row) -> UnitAccount:
    return UnitAccount(
        row.unit_id,
        row.project_id,
        row.district_code,
        row.unit_number,
        row.area_cm2,
        row.balance_fen,
        row.first_deposit_fen,
        row.owed_fen,
    )


def _view(row) -> AccountView:
    return AccountView(
        _account(row),
        row.owner_key,
        row.deposited_fen,
        row.interest_fen,
        row.used_fen,
        row.top_up_required,
        utc(row.opened_at),
    )


def open_accounts(connection: Connection, rows: list[dict]) -> list[str]:
    """Opens the accounts not open yet (a unit's account is opened once); returns the unit ids
    opened."""
    if not rows:
        return []
    ids = [row["unit_id"] for row in rows]
    existing = set(
        connection.execute(sa.select(accounts.c.unit_id).where(accounts.c.unit_id.in_(ids)))
        .scalars()
        .all()
    )
    fresh = [row for row in rows if row["unit_id"] not in existing]
    zero = dict.fromkeys(
        (
            "balance_fen",
            "first_deposit_fen",
            "owed_fen",
            "deposited_fen",
            "interest_fen",
            "used_fen",
        ),
        0,
    )
    if fresh:
        _insert_rows(
            connection, accounts, [{**zero, "top_up_required": False, **row} for row in fresh]
        )
    return [row["unit_id"] for row in fresh]


def set_owner(connection: Connection, unit_id: str, owner_key: str) -> bool:
    return bool(
        connection.execute(
            accounts.update().where(accounts.c.unit_id == unit_id).values(owner_key=owner_key)
        ).rowcount
    )


def get_account(connection: Connection, unit_id: str, *, lock: bool = False) -> AccountView | None:
    query = sa.select(accounts).where(accounts.c.unit_id == unit_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).first()
    return _view(row) if row else None


def lock_accounts(connection: Connection, unit_ids: Iterable[str]) -> dict[str, UnitAccount]:
    """The accounts of `unit_ids` that exist, their rows locked in unit order (two commands
    charging overlapping units then wait for each other rather than deadlock)."""
    ids = sorted(set(unit_ids))
    query = sa.select(accounts).order_by(accounts.c.unit_id).with_for_update()
    if connection.dialect.name == "postgresql":
        # One array parameter: an IN of thousands of parameters costs more to build than to run.
        named = sa.cast(sa.bindparam("ids", ids), postgresql.ARRAY(sa.String))
        queries = [query.where(accounts.c.unit_id == sa.any_(named))]
    else:
        queries = [
            query.where(accounts.c.unit_id.in_(ids[n : n + 5000])) for n in range(0, len(ids), 5000)
        ]
    found: dict[str, UnitAccount] = {}
    for batch in queries:
        found.update((row.unit_id, _account(row)) for row in connection.execute(batch))
    return found


def project_accounts(
    connection: Connection, project_id: str, *, lock: bool = False
) -> dict[str, UnitAccount]:
    query = (
        sa.select(accounts).where(accounts.c.project_id == project_id).order_by(accounts.c.unit_id)
    )
    if lock:
        query = query.with_for_update()
    return {row.unit_id: _account(row) for row in connection.execute(query)}


def scope_accounts(
    connection: Connection, project_id: str, district_code: str, *, lock: bool = False
) -> dict[str, UnitAccount]:
    """The accounts of a project, or of a district."""
    column = accounts.c.project_id if project_id else accounts.c.district_code
    query = (
        sa.select(accounts)
        .where(column == (project_id or district_code))
        .order_by(accounts.c.unit_id)
    )
    if lock:
        query = query.with_for_update()
    return {row.unit_id: _account(row) for row in connection.execute(query)}


def list_accounts(
    connection: Connection,
    districts: frozenset[str],
    project_id: str,
    district_code: str,
    top_up_required: bool,
    after: str | None,
    limit: int,
) -> list[AccountView]:
    query = sa.select(accounts).where(accounts.c.district_code.in_(sorted(districts)))
    if project_id:
        query = query.where(accounts.c.project_id == project_id)
    if district_code:
        query = query.where(accounts.c.district_code == district_code)
    if top_up_required:
        query = query.where(accounts.c.top_up_required.is_(True))
    if after:
        query = query.where(accounts.c.unit_id > after)
    rows = connection.execute(query.order_by(accounts.c.unit_id).limit(limit))
    return [_view(row) for row in rows]


def _shift(column: str, by: int) -> object:
    return accounts.c[column] + by


def change_account(
    connection: Connection,
    account: UnitAccount,
    top_up_required: bool,
    *,
    deposited: int = 0,
    interest: int = 0,
    used: int = 0,
) -> None:
    """Writes `account`'s balance, first deposit and owed amount, moving its totals by the
    amounts given."""
    connection.execute(
        accounts.update()
        .where(accounts.c.unit_id == account.unit_id)
        .values(
            balance_fen=account.balance_fen,
            first_deposit_fen=account.first_deposit_fen,
            owed_fen=account.owed_fen,
            top_up_required=top_up_required,
            deposited_fen=_shift("deposited_fen", deposited),
            interest_fen=_shift("interest_fen", interest),
            used_fen=_shift("used_fen", used),
        )
    )


# Many accounts changed in one statement, each column's values as one array (ColumnUpdate's
# way, with the totals moved by increments rather than set).
_CHANGE_ACCOUNTS_PG = sa.text(
    """
    UPDATE accounts AS a
    SET balance_fen = w.balance, owed_fen = w.owed, top_up_required = w.flag,
        interest_fen = a.interest_fen + w.interest, used_fen = a.used_fen + w.used
    FROM unnest(CAST(:keys AS varchar[]), CAST(:balances AS bigint[]), CAST(:owed AS bigint[]),
                CAST(:flags AS boolean[]), CAST(:interest AS bigint[]), CAST(:used AS bigint[]))
         AS w(key, balance, owed, flag, interest, used)
    WHERE a.unit_id = w.key
    """
)
_CHANGE_ACCOUNTS = (
    accounts.update()
    .where(accounts.c.unit_id == sa.bindparam("key"))
    .values(
        balance_fen=sa.bindparam("balance"),
        owed_fen=sa.bindparam("owe"),
        top_up_required=sa.bindparam("flag"),
        interest_fen=accounts.c.interest_fen + sa.bindparam("gain"),
        used_fen=accounts.c.used_fen + sa.bindparam("spent"),
    )
)


def change_accounts(connection: Connection, changes: Sequence[tuple[dict, UnitAccount]]) -> None:
    """Writes many accounts: each (increments, account) with the increments' keys among
    interest and used, and "top_up_required"."""
    if not changes:
        return
    if connection.dialect.name == "postgresql":
        connection.execute(
            _CHANGE_ACCOUNTS_PG,
            {
                "keys": [a.unit_id for _, a in changes],
                "balances": [a.balance_fen for _, a in changes],
                "owed": [a.owed_fen for _, a in changes],
                "flags": [i["top_up_required"] for i, _ in changes],
                "interest": [i.get("interest", 0) for i, _ in changes],
                "used": [i.get("used", 0) for i, _ in changes],
            },
        )
        return
    connection.execute(
        _CHANGE_ACCOUNTS,
        [
            {
                "key": account.unit_id,
                "balance": account.balance_fen,
                "owe": account.owed_fen,
                "flag": increments["top_up_required"],
                "gain": increments.get("interest", 0),
                "spent": increments.get("used", 0),
            }
            for increments, account in changes
        ],
    )


def unflagged_below(connection: Connection, share: Fraction, *, limit: int) -> list[AccountView]:
    """Accounts below `share` of their first deposit not flagged yet, locked (skipping those
    another timer holds)."""
    query = (
        sa.select(accounts)
        .where(
            accounts.c.top_up_required.is_(False),
            accounts.c.first_deposit_fen > 0,
            accounts.c.balance_fen * share.denominator
            < accounts.c.first_deposit_fen * share.numerator,
        )
        .order_by(accounts.c.unit_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [_view(row) for row in connection.execute(query)]


def flag_top_up(connection: Connection, unit_ids: list[str]) -> None:
    if unit_ids:
        connection.execute(
            accounts.update().where(accounts.c.unit_id.in_(unit_ids)).values(top_up_required=True)
        )


# ---------------------------------------------------------------- the ledger


def insert_entries(
    connection: Connection,
    posted: Iterable[Entry],
    at: dt.datetime,
    deposit_kind: DepositKind | None = None,
) -> None:
    posted = list(posted)
    if not posted:
        return
    connection.execute(
        entries.insert(),
        [
            {
                "entry_id": e.entry_id,
                "kind": e.kind.value,
                "project_id": e.project_id,
                "district_code": e.district_code,
                "use_id": e.use_id,
                "period": e.period,
                "reverses": e.reverses or None,
                "reason": e.reason,
                "deposit_kind": deposit_kind.value if deposit_kind else None,
                "posted_at": at,
            }
            for e in posted
        ],
    )
    _insert_rows(
        connection,
        postings,
        [
            {
                "entry_id": e.entry_id,
                "line": line,
                "account_kind": p.account.kind.value,
                "project_id": p.account.project_id,
                "unit_id": p.account.unit_id,
                "amount_fen": p.amount_fen,
            }
            for e in posted
            for line, p in enumerate(e.postings)
        ],
    )


@dataclass(frozen=True)
class EntryView:
    entry: Entry
    seq: int
    posted_at: dt.datetime
    deposit_kind: DepositKind | None
    reversed_by: str


def _postings_of(connection: Connection, entry_ids: list[str]) -> dict[str, list[Posting]]:
    found: dict[str, list[Posting]] = {entry_id: [] for entry_id in entry_ids}
    for start in range(0, len(entry_ids), 5000):
        rows = connection.execute(
            sa.select(postings)
            .where(postings.c.entry_id.in_(entry_ids[start : start + 5000]))
            .order_by(postings.c.entry_id, postings.c.line)
        )
        for row in rows:
            account = LedgerAccount(AccountKind(row.account_kind), row.project_id, row.unit_id)
            found[row.entry_id].append(Posting(account, row.amount_fen))
    return found


def _entry_views(connection: Connection, rows: list) -> list[EntryView]:
    ids = [row.entry_id for row in rows]
    legs = _postings_of(connection, ids)
    reversed_by = dict(
        connection.execute(
            sa.select(entries.c.reverses, entries.c.entry_id).where(entries.c.reverses.in_(ids))
        ).all()
    )
    return [
        EntryView(
            Entry(
                entry_id=row.entry_id,
                kind=EntryKind(row.kind),
                project_id=row.project_id,
                district_code=row.district_code,
                postings=tuple(legs[row.entry_id]),
                use_id=row.use_id,
                period=row.period,
                reverses=row.reverses or "",
                reason=row.reason,
            ),
            row.seq,
            utc(row.posted_at),
            DepositKind(row.deposit_kind) if row.deposit_kind else None,
            reversed_by.get(row.entry_id, ""),
        )
        for row in rows
    ]


def get_entry(connection: Connection, entry_id: str) -> EntryView | None:
    row = connection.execute(sa.select(entries).where(entries.c.entry_id == entry_id)).first()
    return _entry_views(connection, [row])[0] if row else None


def list_entries(
    connection: Connection, project_id: str, unit_id: str, before: int | None, limit: int
) -> list[EntryView]:
    """Newest first: a project's entries, or those touching a unit's account."""
    query = sa.select(entries)
    if unit_id:
        touching = sa.select(postings.c.entry_id).where(postings.c.unit_id == unit_id)
        query = query.where(entries.c.entry_id.in_(touching))
    else:
        query = query.where(entries.c.project_id == project_id)
    if before is not None:
        query = query.where(entries.c.seq < before)
    rows = connection.execute(query.order_by(entries.c.seq.desc()).limit(limit)).all()
    return _entry_views(connection, rows)


def ledger_of(connection: Connection, project_id: str, district_code: str) -> list[Entry]:
    """Every entry of a project, a district, or (neither) the city."""
    query = sa.select(entries).order_by(entries.c.seq)
    if project_id:
        query = query.where(entries.c.project_id == project_id)
    elif district_code:
        query = query.where(entries.c.district_code == district_code)
    return [view.entry for view in _entry_views(connection, connection.execute(query).all())]


def accounts_of(connection: Connection, project_id: str, district_code: str) -> list[UnitAccount]:
    query = sa.select(accounts)
    if project_id:
        query = query.where(accounts.c.project_id == project_id)
    elif district_code:
        query = query.where(accounts.c.district_code == district_code)
    return [_account(row) for row in connection.execute(query)]


def project_districts(connection: Connection, project_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(project_ids))
    found: dict[str, str] = {}
    for table in (accounts, entries):
        rows = connection.execute(
            sa.select(table.c.project_id, table.c.district_code)
            .where(table.c.project_id.in_(ids))
            .distinct()
        )
        found.update((project, district) for project, district in rows)
    return found


def hold_interest_period(
    connection: Connection, scope: str, period: str, interest_fen: int, count: int, at
) -> str:
    """Records the period as allocated for the scope (a project, or a district), unless it is
    already, for the scope or one that overlaps it (the project's district, a district's
    projects, whose ids start with its code); then answers the scope that holds it."""
    district = scope[:6]
    overlapping = (
        interest_periods.c.scope.in_([scope, district])
        if scope != district
        else sa.or_(
            interest_periods.c.scope == district,
            interest_periods.c.scope.startswith(f"{district}-", autoescape=True),
        )
    )
    held = connection.execute(
        sa.select(interest_periods.c.scope).where(overlapping, interest_periods.c.period == period)
    ).first()
    if held:
        return held.scope
    connection.execute(
        interest_periods.insert().values(
            scope=scope, period=period, interest_fen=interest_fen, accounts=count, allocated_at=at
        )
    )
    return ""


def _total(column) -> sa.ColumnElement:
    """A sum of fen as an integer (PostgreSQL sums bigints as numeric)."""
    return sa.cast(sa.func.coalesce(sa.func.sum(column), 0), sa.BigInteger)


def project_summary(connection: Connection, project_id: str):
    """A project's totals (None if the fund knows nothing of it)."""
    totals = connection.execute(
        sa.select(
            sa.func.count().label("accounts"),
            sa.func.min(accounts.c.district_code).label("district_code"),
            _total(accounts.c.balance_fen).label("balance_fen"),
            _total(accounts.c.deposited_fen).label("deposited_fen"),
            _total(accounts.c.interest_fen).label("interest_fen"),
            _total(accounts.c.used_fen).label("used_fen"),
            _total(accounts.c.owed_fen).label("owed_fen"),
            sa.func.count().filter(accounts.c.top_up_required.is_(True)).label("top_ups"),
        ).where(accounts.c.project_id == project_id)
    ).one()
    counted = connection.execute(
        sa.select(
            sa.func.count().label("uses"),
            sa.func.count().filter(uses.c.state == UseState.COMPLETED.value).label("completed"),
        ).where(uses.c.project_id == project_id)
    ).one()
    if not totals.accounts and not counted.uses:
        return None
    return totals, counted


# ---------------------------------------------------------------- uses


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def _decision_json(decision: Decision) -> dict:
    return {
        "vote_id": decision.vote_id,
        "matter_id": decision.matter_id,
        "matter_type": decision.matter_type,
        "title": decision.title,
        "passed": decision.passed,
        "amount_fen": decision.amount_fen,
        "unit_ids": list(decision.unit_ids),
        "decision_date": decision.decision_date.isoformat(),
        "participating_area_cm2": decision.participating_area_cm2,
        "participating_owners": decision.participating_owners,
        "yes_area_cm2": decision.yes_area_cm2,
        "yes_owners": decision.yes_owners,
    }


def _decision_of(data: dict) -> Decision:
    return Decision(
        **{
            **data,
            "unit_ids": tuple(data["unit_ids"]),
            "decision_date": dt.date.fromisoformat(data["decision_date"]),
        }
    )


def _emergency_json(emergency: Emergency) -> dict:
    return {
        "kind": emergency.kind.value,
        "requester": emergency.requester.value if emergency.requester else None,
        "evidence": list(emergency.evidence),
        "extremely_urgent": emergency.extremely_urgent,
        "requested_on": emergency.requested_on.isoformat() if emergency.requested_on else None,
        "approve_by": emergency.approve_by.isoformat() if emergency.approve_by else None,
        "alarm_id": emergency.alarm_id,
    }


def _emergency_of(data: dict) -> Emergency:
    return Emergency(
        kind=EmergencyKind(data["kind"]),
        requester=EmergencyRequester(data["requester"]) if data["requester"] else None,
        evidence=tuple(data["evidence"]),
        extremely_urgent=data["extremely_urgent"],
        requested_on=_date(data["requested_on"]),
        approve_by=_date(data["approve_by"]),
        alarm_id=data["alarm_id"],
    )


@dataclass(frozen=True)
class UseView:
    use: Use
    opened_at: dt.datetime
    notified_at: dt.datetime | None
    escalated_at: dt.datetime | None
    approved_at: dt.datetime | None
    completed_at: dt.datetime | None


def _use(row) -> Use:
    return Use(
        use_id=row.use_id,
        project_id=row.project_id,
        district_code=row.district_code,
        title=row.title,
        origin=UseOrigin(row.origin),
        state=UseState(row.state),
        budget_fen=row.budget_fen,
        unit_ids=tuple(row.unit_ids),
        works_kind=WorksKind(row.works_kind) if row.works_kind else None,
        decision=_decision_of(row.decision) if row.decision else None,
        emergency=_emergency_of(row.emergency) if row.emergency else None,
        paid_fen=row.paid_fen,
        owed_fen=row.owed_fen,
        payments=row.payments,
        final_cost_fen=row.final_cost_fen,
        reason=row.reason,
    )


def _use_view(row) -> UseView:
    return UseView(
        _use(row),
        utc(row.opened_at),
        utc(row.notified_at),
        utc(row.escalated_at),
        utc(row.approved_at),
        utc(row.completed_at),
    )


def _use_values(use: Use) -> dict:
    return {
        "state": use.state.value,
        "title": use.title,
        "budget_fen": use.budget_fen,
        "works_kind": use.works_kind.value if use.works_kind else None,
        "unit_ids": list(use.unit_ids),
        "emergency": _emergency_json(use.emergency) if use.emergency else None,
        "paid_fen": use.paid_fen,
        "owed_fen": use.owed_fen,
        "payments": use.payments,
        "final_cost_fen": use.final_cost_fen,
        "reason": use.reason,
        "approve_by": use.emergency.approve_by if use.emergency else None,
    }


def decision_key(decision: Decision) -> str:
    return f"{decision.vote_id}/{decision.matter_id}"


def insert_use(connection: Connection, use: Use, at: dt.datetime, **times: dt.datetime) -> None:
    connection.execute(
        uses.insert().values(
            use_id=use.use_id,
            project_id=use.project_id,
            district_code=use.district_code,
            origin=use.origin.value,
            decision=_decision_json(use.decision) if use.decision else None,
            decision_key=decision_key(use.decision) if use.decision else None,
            alarm_id=(use.emergency.alarm_id or None) if use.emergency else None,
            opened_at=at,
            **_use_values(use),
            **times,
        )
    )


def update_use(connection: Connection, use: Use, **times: dt.datetime) -> None:
    connection.execute(
        uses.update().where(uses.c.use_id == use.use_id).values(**_use_values(use), **times)
    )


def get_use(connection: Connection, use_id: str, *, lock: bool = False) -> UseView | None:
    query = sa.select(uses).where(uses.c.use_id == use_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).first()
    return _use_view(row) if row else None


def use_exists(connection: Connection, *, decision: str = "", alarm_id: str = "") -> bool:
    column, value = (uses.c.decision_key, decision) if decision else (uses.c.alarm_id, alarm_id)
    return connection.execute(sa.select(uses.c.use_id).where(column == value)).first() is not None


def list_uses(
    connection: Connection,
    districts: frozenset[str],
    project_id: str,
    district_code: str,
    origin: UseOrigin | None,
    state: UseState | None,
    after: str | None,
    limit: int,
    *,
    published_only: bool = False,
) -> list[UseView]:
    query = sa.select(uses).where(uses.c.district_code.in_(sorted(districts)))
    if project_id:
        query = query.where(uses.c.project_id == project_id)
    if district_code:
        query = query.where(uses.c.district_code == district_code)
    if origin is not None:
        query = query.where(uses.c.origin == origin.value)
    if state is not None:
        query = query.where(uses.c.state == state.value)
    if published_only:
        # domain.is_published: the owners' decisions from their opening, emergencies once done.
        query = query.where(
            sa.or_(
                uses.c.origin == UseOrigin.DECISION.value,
                uses.c.state == UseState.COMPLETED.value,
            )
        )
    if after:
        query = query.where(uses.c.use_id > after)
    rows = connection.execute(query.order_by(uses.c.use_id).limit(limit))
    return [_use_view(row) for row in rows]


def overdue_requests(connection: Connection, today: dt.date, limit: int) -> list[UseView]:
    """Emergency requests awaiting approval after their deadline, locked (skipping those another
    timer holds)."""
    query = (
        sa.select(uses)
        .where(
            uses.c.state == UseState.PENDING_APPROVAL.value,
            uses.c.origin == UseOrigin.EMERGENCY.value,
            uses.c.approve_by < today,
        )
        .order_by(uses.c.use_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [_use_view(row) for row in connection.execute(query)]


# ---------------------------------------------------------------- payments and what is owed


@dataclass(frozen=True)
class PaymentView:
    payment: Payment
    entry_id: str
    debited_fen: int
    owed_fen: int
    paid_at: dt.datetime


def insert_payment(
    connection: Connection,
    use_id: str,
    payment: Payment,
    entry_id: str,
    bank_reference: str,
    at: dt.datetime,
) -> None:
    connection.execute(
        payments.insert().values(
            use_id=use_id,
            stage=payment.stage,
            amount_fen=payment.amount_fen,
            debited_fen=payment.debited_fen,
            owed_fen=payment.owed_fen,
            entry_id=entry_id if payment.entry else "",
            bank_reference=bank_reference,
            paid_at=at,
        )
    )
    _insert_rows(
        connection,
        shares,
        [
            {
                "use_id": use_id,
                "stage": payment.stage,
                "unit_id": s.unit_id,
                "unit_number": s.unit_number,
                "area_cm2": s.area_cm2,
                "share_fen": s.share_fen,
                "debited_fen": s.debited_fen,
                "owed_fen": s.owed_fen,
            }
            for s in payment.shares
        ],
    )
    owing = [s for s in payment.shares if s.owed_fen]
    if not owing:
        return
    held = dict(
        connection.execute(
            sa.select(unit_owed.c.unit_id, unit_owed.c.owed_fen).where(
                unit_owed.c.use_id == use_id,
                unit_owed.c.unit_id.in_([s.unit_id for s in owing]),
            )
        ).all()
    )
    fresh = [s for s in owing if s.unit_id not in held]
    if fresh:
        _insert_rows(
            connection,
            unit_owed,
            [
                {"unit_id": s.unit_id, "use_id": use_id, "owed_fen": s.owed_fen, "since": at}
                for s in fresh
            ],
        )
    more = [s for s in owing if s.unit_id in held]
    if more:
        connection.execute(
            unit_owed.update()
            .where(
                unit_owed.c.use_id == use_id,
                unit_owed.c.unit_id == sa.bindparam("key"),
            )
            .values(owed_fen=unit_owed.c.owed_fen + sa.bindparam("more")),
            [{"key": s.unit_id, "more": s.owed_fen} for s in more],
        )


def owed_by_unit(connection: Connection, unit_id: str) -> list[tuple[str, int]]:
    """(use id, fen) the unit owes, oldest first."""
    return [
        (use_id, owed)
        for use_id, owed in connection.execute(
            sa.select(unit_owed.c.use_id, unit_owed.c.owed_fen)
            .where(unit_owed.c.unit_id == unit_id, unit_owed.c.owed_fen > 0)
            .order_by(unit_owed.c.since, unit_owed.c.use_id)
        )
    ]


def settle(connection: Connection, unit_id: str, use: Use, paid_fen: int) -> None:
    connection.execute(
        unit_owed.update()
        .where(unit_owed.c.unit_id == unit_id, unit_owed.c.use_id == use.use_id)
        .values(owed_fen=unit_owed.c.owed_fen - paid_fen)
    )
    connection.execute(
        uses.update().where(uses.c.use_id == use.use_id).values(owed_fen=use.owed_fen)
    )


def payments_of(
    connection: Connection, use_ids: list[str], *, with_shares: bool
) -> dict[str, list[PaymentView]]:
    found: dict[str, list[PaymentView]] = {use_id: [] for use_id in use_ids}
    if not use_ids:
        return found
    split: dict[tuple[str, int], list[Share]] = {}
    if with_shares:
        rows = connection.execute(
            sa.select(shares)
            .where(shares.c.use_id.in_(use_ids))
            .order_by(shares.c.use_id, shares.c.stage, shares.c.unit_id)
        )
        for row in rows:
            split.setdefault((row.use_id, row.stage), []).append(
                Share(
                    row.unit_id,
                    row.unit_number,
                    row.area_cm2,
                    row.share_fen,
                    row.debited_fen,
                    row.owed_fen,
                )
            )
    rows = connection.execute(
        sa.select(payments)
        .where(payments.c.use_id.in_(use_ids))
        .order_by(payments.c.use_id, payments.c.stage)
    )
    for row in rows:
        found[row.use_id].append(
            PaymentView(
                Payment(
                    row.stage,
                    row.amount_fen,
                    tuple(split.get((row.use_id, row.stage), ())),
                    None,
                ),
                row.entry_id,
                row.debited_fen,
                row.owed_fen,
                utc(row.paid_at),
            )
        )
    return found
