"""Rules of the maintenance fund (DOMAIN.md sections 4 and 4b; 住宅专项维修资金管理办法, 2007).
Pure: no IO, no wire types. Money is integer fen, areas integer cm², rates Fractions.

Apportionment, written out so that anyone can recompute a published share. To split T fen
(T >= 0) among keys k with integer weights w_k >= 0 (a payment: exclusive areas in cm²;
interest: balances in fen), W = sum of w_k > 0:
1. each key's exact share is T * w_k / W; write T * w_k = q_k * W + r_k with 0 <= r_k < W;
2. each key gets q_k (the exact share rounded down); L = T - sum of q_k fen are left, L < the
   number of keys with r_k > 0;
3. the L keys first in the order "larger r_k first, then the smaller key (Unicode code points)"
   get one fen more.
The parts add up to T exactly, no part is a fen or more from its exact share, and the order the
keys come in changes nothing (the tie-break is the key, not a position).

The ledger is double-entry: every entry's postings sum to zero, debits positive and credits
negative. A project's bank account (an asset) has the balance debits - credits; a unit's
sub-account (owners' money held) credits - debits. Entries are never edited: a correction is an
entry with every posting negated. Hence the invariant reconcile() checks: for every project,
and so for the city, the sum of its unit balances equals its bank account's book balance, to
the fen; and the book balance equals the bank's statement when one is given.

A use of the fund is opened by the owners' decision (a passed USE_FUND matter) or requested as
an emergency (no vote; the owners notified first, approval due within working days); it moves
only along USE_TRANSITIONS, and transition() returns the events each move causes. Payments
charge the benefiting units by exclusive area: an account pays its share as far as its balance
goes and owes the rest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType
from typing import NamedTuple

from wuye.core.errors import FailedPrecondition, Violations

CM2_PER_M2 = 10_000

# The days after which something is due, counted in the city's working days: the core
# calendar's WorkingCalendar.add_working_days, or any function with its meaning.
AddWorkingDays = Callable[[dt.date, int], dt.date]


class DepositKind(StrEnum):
    FIRST = "FIRST"
    TOP_UP = "TOP_UP"


class EntryKind(StrEnum):
    DEPOSIT = "DEPOSIT"
    INTEREST = "INTEREST"
    WORKS_PAYMENT = "WORKS_PAYMENT"
    REVERSAL = "REVERSAL"


class AccountKind(StrEnum):
    BANK = "BANK"
    UNIT = "UNIT"


class WorksKind(StrEnum):
    COMMON_PARTS = "COMMON_PARTS"
    COMMON_FACILITIES = "COMMON_FACILITIES"
    UNDER_WARRANTY = "UNDER_WARRANTY"
    UTILITY_EQUIPMENT = "UTILITY_EQUIPMENT"
    CAUSED_DAMAGE = "CAUSED_DAMAGE"
    SERVICE_CONTRACT = "SERVICE_CONTRACT"


# Art. 25: what the fund never pays, and why.
NOT_PAYABLE: Mapping[WorksKind, str] = MappingProxyType(
    {
        WorksKind.UNDER_WARRANTY: "works under the developer's or builder's warranty are theirs "
        "to pay (Art. 25 (1))",
        WorksKind.UTILITY_EQUIPMENT: "utilities' own pipes and equipment are the utilities' to "
        "repair (Art. 25 (2))",
        WorksKind.CAUSED_DAMAGE: "damage someone caused is paid by whoever caused it (Art. 25 (3))",
        WorksKind.SERVICE_CONTRACT: "repairs the property-service contract covers are the "
        "enterprise's to pay (Art. 25 (4))",
    }
)


class EmergencyKind(StrEnum):
    ROOF_LEAK = "ROOF_LEAK"
    DANGEROUS_LIFT_FAULT = "DANGEROUS_LIFT_FAULT"
    HIGH_RISE_WATER_PUMP = "HIGH_RISE_WATER_PUMP"
    FACADE_AT_RISK = "FACADE_AT_RISK"
    DRAIN_FAILURE = "DRAIN_FAILURE"
    FIRE_SYSTEM_FAULT = "FIRE_SYSTEM_FAULT"


# The emergencies that need no owners' vote (DOMAIN.md section 4), as the notice names them.
EMERGENCY_KINDS: Mapping[EmergencyKind, str] = MappingProxyType(
    {
        EmergencyKind.ROOF_LEAK: "屋面防水损坏造成渗漏",
        EmergencyKind.DANGEROUS_LIFT_FAULT: "电梯故障危及人身安全",
        EmergencyKind.HIGH_RISE_WATER_PUMP: "高层住宅水泵损坏导致供水中断",
        EmergencyKind.FACADE_AT_RISK: "楼体外立面五分之一以上有脱落危险",
        EmergencyKind.DRAIN_FAILURE: "专用排水设施功能障碍",
        EmergencyKind.FIRE_SYSTEM_FAULT: "消防系统功能障碍",
    }
)


class EmergencyRequester(StrEnum):
    OWNERS_COMMITTEE = "OWNERS_COMMITTEE"
    ENTERPRISE = "ENTERPRISE"
    SUB_DISTRICT = "SUB_DISTRICT"


# ---------------------------------------------------------------- the rules' numbers


@dataclass(frozen=True)
class FundRules:
    """What a city configures; defaults from DOMAIN.md sections 4 and 4b."""

    # Share of the construction-and-installation cost per m² each m² deposits first (Art. 7);
    # a district (banner) may set its own within the bounds.
    deposit_rate: Fraction = Fraction(5, 100)
    district_deposit_rates: Mapping[str, Fraction] = field(default_factory=dict)
    deposit_rate_bounds: tuple[Fraction, Fraction] = (Fraction(5, 100), Fraction(8, 100))
    # A unit is asked to top up when its balance falls below this share of its first deposit.
    top_up_below: Fraction = Fraction(30, 100)
    # An emergency's first payment is at most this share of its approved budget.
    emergency_first_payment_limit: Fraction = Fraction(60, 100)
    # A final cost over the approved budget by more than this share needs a new approval.
    overrun_tolerance: Fraction = Fraction(10, 100)
    # An emergency request is decided within these working days after the day it is made;
    # an extremely urgent one within these (0: the same day).
    emergency_approval_working_days: int = 2
    extremely_urgent_approval_working_days: int = 0
    emergency_kinds: frozenset[EmergencyKind] = frozenset(EmergencyKind)
    emergency_requesters: frozenset[EmergencyRequester] = frozenset(EmergencyRequester)
    # IoT alarm kinds (as the intake names them) that show a fire-system fault: an escalated
    # one opens an emergency draft.
    fire_system_fault_alarms: frozenset[str] = frozenset({"LOW_PRESSURE", "DEVICE_SILENT"})

    def __post_init__(self) -> None:
        low, high = self.deposit_rate_bounds
        if not 0 < low <= high < 1:
            raise ValueError(f"deposit rate bounds {low}..{high} are not within (0, 1)")
        for where, rate in [("city", self.deposit_rate), *self.district_deposit_rates.items()]:
            if not low <= rate <= high:
                raise ValueError(f"the {where} deposit rate {rate} is outside {low}..{high}")
        for name in ("top_up_below", "emergency_first_payment_limit", "overrun_tolerance"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        urgent = self.extremely_urgent_approval_working_days
        if not 0 <= urgent <= self.emergency_approval_working_days:
            raise ValueError("an extremely urgent request cannot have longer than a plain one")
        frozen = MappingProxyType(dict(self.district_deposit_rates))
        object.__setattr__(self, "district_deposit_rates", frozen)

    def deposit_rate_for(self, district_code: str) -> Fraction:
        return self.district_deposit_rates.get(district_code, self.deposit_rate)


# ---------------------------------------------------------------- apportionment


def apportion(total_fen: int, weights: Mapping[str, int]) -> dict[str, int]:
    """`total_fen` split among the keys of `weights` by the largest-remainder method (the
    algorithm in this module's docstring). Raises ValueError for a negative total or weight, or
    weights that sum to zero."""
    if total_fen < 0:
        raise ValueError(f"cannot apportion a negative amount ({total_fen})")
    keys, values = list(weights), list(weights.values())
    if values and min(values) < 0:
        raise ValueError(f"{keys[values.index(min(values))]} has a negative weight")
    whole = sum(values)
    if whole == 0:
        raise ValueError("nothing to apportion by: the weights sum to zero")
    # Whole lists at a time: a million accounts take a few passes, not a loop of divmods.
    products = [total_fen * weight for weight in values]
    parts = [product // whole for product in products]
    remainders = [product % whole for product in products]
    left = total_fen - sum(parts)
    if left:
        # The left-th largest remainder: those above it all get a fen; of those equal to it,
        # the smaller keys take what is left.
        cut = sorted(remainders, reverse=True)[left - 1]
        above = [i for i, remainder in enumerate(remainders) if remainder > cut]
        tied = sorted((keys[i], i) for i, remainder in enumerate(remainders) if remainder == cut)
        for i in above + [i for _, i in tied[: left - len(above)]]:
            parts[i] += 1
    return dict(zip(keys, parts, strict=True))


def allocate_interest(interest_fen: int, balances: Mapping[str, int]) -> dict[str, int]:
    """A period's interest across unit accounts in proportion to their balances."""
    if not any(balances.values()):
        raise FailedPrecondition(
            "NO_BALANCE_FOR_INTEREST",
            "no account in scope holds a balance: interest is shared by balances",
        )
    return apportion(interest_fen, balances)


# ---------------------------------------------------------------- deposits and the top-up


def round_half_up(value: Fraction) -> int:
    """To the nearest integer, halves up (四舍五入); amounts of money here are never negative."""
    if value < 0:
        raise ValueError("only non-negative amounts are rounded here")
    return (2 * value.numerator + value.denominator) // (2 * value.denominator)


def first_deposit_fen(area_cm2: int, cost_fen_per_m2: int, rate: Fraction) -> int:
    """Art. 7: rate × construction cost per m² × the unit's area, to the nearest fen (halves
    up)."""
    if area_cm2 <= 0 or cost_fen_per_m2 <= 0:
        raise ValueError("a first deposit needs a positive area and construction cost")
    return round_half_up(rate * cost_fen_per_m2 * area_cm2 / CM2_PER_M2)


def needs_top_up(balance_fen: int, first_deposit: int, rules: FundRules) -> bool:
    """Below the threshold share of the first deposit (at it is enough). A unit that made no
    first deposit yet has nothing to top up."""
    share = rules.top_up_below
    return first_deposit > 0 and balance_fen * share.denominator < share.numerator * first_deposit


# ---------------------------------------------------------------- the ledger


# Accounts and postings are named tuples: immutable values like the dataclasses here, and an
# interest allocation makes two of them for each of a million accounts, several times faster.
class LedgerAccount(NamedTuple):
    kind: AccountKind
    project_id: str
    # UNIT accounts only.
    unit_id: str = ""


class Posting(NamedTuple):
    account: LedgerAccount
    # Debits positive, credits negative.
    amount_fen: int


@dataclass(frozen=True)
class Entry:
    entry_id: str
    kind: EntryKind
    project_id: str
    district_code: str
    postings: tuple[Posting, ...]
    use_id: str = ""
    period: str = ""
    reverses: str = ""
    reason: str = ""

    @property
    def balanced(self) -> bool:
        return sum(p.amount_fen for p in self.postings) == 0 and all(
            p.account.project_id == self.project_id for p in self.postings
        )


def bank(project_id: str) -> LedgerAccount:
    return LedgerAccount(AccountKind.BANK, project_id)


def balance_change(posting: Posting) -> int:
    """What a posting does to its account's balance: a debit raises the bank's, a credit a
    unit's."""
    if posting.account.kind is AccountKind.BANK:
        return posting.amount_fen
    return -posting.amount_fen


@dataclass(frozen=True)
class UnitAccount:
    """A unit's sub-account (分户账), kept by unit and not by owner: when the unit is sold the
    balance stays with it (Art. 28). Its balance never goes below zero: what it could not pay of
    a share is `owed_fen`."""

    unit_id: str
    project_id: str
    district_code: str
    unit_number: str
    area_cm2: int
    balance_fen: int = 0
    first_deposit_fen: int = 0
    owed_fen: int = 0

    @property
    def ledger_account(self) -> LedgerAccount:
        return LedgerAccount(AccountKind.UNIT, self.project_id, self.unit_id)

    def charged(self, debited_fen: int, owed_fen: int) -> UnitAccount:
        """The account after a share: `debited_fen` paid from the balance, `owed_fen` owed.
        Built directly: a payment charges tens of thousands of accounts, and
        dataclasses.replace costs several times more."""
        return UnitAccount(
            self.unit_id,
            self.project_id,
            self.district_code,
            self.unit_number,
            self.area_cm2,
            self.balance_fen - debited_fen,
            self.first_deposit_fen,
            self.owed_fen + owed_fen,
        )


def _money_in(
    entry_id: str,
    kind: EntryKind,
    project_id: str,
    district_code: str,
    credits: Sequence[Posting],
    period: str = "",
) -> Entry:
    """Money into one project's units (`credits`): the bank's account debited with their sum."""
    debit = Posting(bank(project_id), -sum(p.amount_fen for p in credits))
    return Entry(entry_id, kind, project_id, district_code, (debit, *credits), period=period)


def record_deposit(
    account: UnitAccount,
    kind: DepositKind | None,
    entry_id: str,
    rules: FundRules,
    amount_fen: int = 0,
    cost_fen_per_m2: int = 0,
) -> tuple[UnitAccount, Entry, int]:
    """A deposit into a unit's account: the account after it, its entry and its amount. A first
    deposit is computed from the construction cost when one is given."""
    v = Violations()
    v.check(kind is not None, "kind", "is FIRST or TOP_UP")
    if kind is DepositKind.FIRST and cost_fen_per_m2:
        v.check(amount_fen == 0, "amount_fen", "give the construction cost or the amount, not both")
        v.check(cost_fen_per_m2 > 0, "construction_cost_fen_per_m2", "must be positive")
        if not v:
            rate = rules.deposit_rate_for(account.district_code)
            amount_fen = first_deposit_fen(account.area_cm2, cost_fen_per_m2, rate)
    else:
        v.check(amount_fen > 0, "amount_fen", "a deposit is a positive number of fen")
    v.raise_if_any()
    if kind is DepositKind.FIRST and account.first_deposit_fen:
        raise FailedPrecondition(
            "FIRST_DEPOSIT_MADE",
            f"unit {account.unit_number} made its first deposit already: record a top-up",
            unit_id=account.unit_id,
        )
    credit = Posting(account.ledger_account, -amount_fen)
    entry = _money_in(
        entry_id, EntryKind.DEPOSIT, account.project_id, account.district_code, [credit]
    )
    after = replace(account, balance_fen=account.balance_fen + amount_fen)
    if kind is DepositKind.FIRST:
        after = replace(after, first_deposit_fen=amount_fen)
    return after, entry, amount_fen


def interest_entries(
    entry_id_prefix: str, period: str, parts: Mapping[str, int], accounts: Mapping[str, UnitAccount]
) -> tuple[Entry, ...]:
    """The entries crediting allocated interest: one per project, `<prefix>-<project_id>`."""
    # A million accounts make two million tuples: built with tuple.__new__, as NamedTuple's own
    # _make does, rather than through the generated __new__ (a Python call each), and the enum
    # member looked up once.
    unit, make = AccountKind.UNIT, tuple.__new__
    credits: dict[str, list[Posting]] = {}
    districts: dict[str, str] = {}
    for unit_id, part in parts.items():
        if part:
            account = accounts[unit_id]
            project_id = account.project_id
            postings = credits.get(project_id)
            if postings is None:
                postings = credits[project_id] = []
                districts[project_id] = account.district_code
            ledger_account = make(LedgerAccount, (unit, project_id, unit_id))
            postings.append(make(Posting, (ledger_account, -part)))
    return tuple(
        _money_in(
            f"{entry_id_prefix}-{project_id}",
            EntryKind.INTEREST,
            project_id,
            districts[project_id],
            credits[project_id],
            period,
        )
        for project_id in sorted(credits)
    )


# What ReverseEntry corrects: a works payment belongs to its use, whose published payments and
# shares a reversal of the entry alone would contradict.
CORRECTABLE_KINDS = frozenset({EntryKind.DEPOSIT, EntryKind.INTEREST})


def check_correctable(entry: Entry) -> None:
    if entry.kind not in CORRECTABLE_KINDS and entry.kind is not EntryKind.REVERSAL:
        raise FailedPrecondition(
            "ENTRY_NOT_CORRECTABLE",
            f"entry {entry.entry_id} pays use {entry.use_id}'s works: a payment stays with its "
            "use and is not reversed on its own",
            entry_id=entry.entry_id,
        )


def reversal(original: Entry, entry_id: str, reason: str, reversed_ids: Iterable[str]) -> Entry:
    """The correction of `original`: every posting negated. An entry is reversed at most once,
    and a reversal is corrected by a new entry, not reversed."""
    if original.kind is EntryKind.REVERSAL:
        raise FailedPrecondition(
            "ENTRY_IS_REVERSAL",
            f"entry {original.entry_id} is a reversal: post the correct entry again instead",
            entry_id=original.entry_id,
        )
    if original.entry_id in set(reversed_ids):
        raise FailedPrecondition(
            "ENTRY_REVERSED",
            f"entry {original.entry_id} is reversed already",
            entry_id=original.entry_id,
        )
    return Entry(
        entry_id=entry_id,
        kind=EntryKind.REVERSAL,
        project_id=original.project_id,
        district_code=original.district_code,
        postings=tuple(Posting(p.account, -p.amount_fen) for p in original.postings),
        use_id=original.use_id,
        period=original.period,
        reverses=original.entry_id,
        reason=reason,
    )


def post(entry: Entry, balances: Mapping[LedgerAccount, int]) -> dict[LedgerAccount, int]:
    """The balances of the accounts `entry` touches once it is posted; refused if it would take
    a unit's account below zero. `balances` holds at least those accounts (absent: zero)."""
    if not entry.balanced:
        raise ValueError(f"entry {entry.entry_id} does not balance within its project")
    after: dict[LedgerAccount, int] = {}
    for posting in entry.postings:
        account = posting.account
        before = after.get(account, balances.get(account, 0))
        after[account] = before + balance_change(posting)
    for account, balance in after.items():
        if account.kind is AccountKind.UNIT and balance < 0:
            raise FailedPrecondition(
                "INSUFFICIENT_BALANCE",
                f"entry {entry.entry_id} would leave unit {account.unit_id}'s account "
                f"{-balance} fen below zero",
                unit_id=account.unit_id,
            )
    return after


def ledger_balances(entries: Iterable[Entry]) -> dict[LedgerAccount, int]:
    """Every account's balance derived from the entries alone."""
    balances: dict[LedgerAccount, int] = {}
    for entry in entries:
        for posting in entry.postings:
            account = posting.account
            balances[account] = balances.get(account, 0) + balance_change(posting)
    return balances


@dataclass(frozen=True)
class ProjectReconciliation:
    project_id: str
    book_balance_fen: int
    unit_balances_fen: int
    bank_statement_fen: int | None = None
    # Units whose recorded balance differs from the one their entries give.
    drifted_unit_ids: tuple[str, ...] = ()

    @property
    def reconciled(self) -> bool:
        return (
            self.book_balance_fen == self.unit_balances_fen
            and self.bank_statement_fen in (None, self.book_balance_fen)
            and not self.drifted_unit_ids
        )


@dataclass(frozen=True)
class Reconciliation:
    projects: tuple[ProjectReconciliation, ...]
    unbalanced_entry_ids: tuple[str, ...]

    @property
    def book_balance_fen(self) -> int:
        return sum(p.book_balance_fen for p in self.projects)

    @property
    def unit_balances_fen(self) -> int:
        return sum(p.unit_balances_fen for p in self.projects)

    @property
    def reconciled(self) -> bool:
        return not self.unbalanced_entry_ids and all(p.reconciled for p in self.projects)


def reconcile(
    entries: Iterable[Entry],
    accounts: Iterable[UnitAccount],
    bank_statements: Mapping[str, int] | None = None,
) -> Reconciliation:
    """The invariant, project by project: the recorded unit balances sum to the bank account's
    book balance; each recorded balance equals what its entries give; every entry balances
    within its project; and the book equals the bank's statement where one is given."""
    entries = list(entries)
    derived = ledger_balances(entries)
    statements = bank_statements or {}
    books: dict[str, int] = {}
    units: dict[str, int] = {}
    drifted: dict[str, list[str]] = {}
    for account, balance in derived.items():
        if account.kind is AccountKind.BANK:
            books[account.project_id] = balance
    seen: set[LedgerAccount] = set()
    for account in accounts:
        seen.add(account.ledger_account)
        units[account.project_id] = units.get(account.project_id, 0) + account.balance_fen
        if derived.get(account.ledger_account, 0) != account.balance_fen:
            drifted.setdefault(account.project_id, []).append(account.unit_id)
    for account, balance in derived.items():
        # Money on the books of a unit nobody keeps an account for has drifted too.
        if account.kind is AccountKind.UNIT and account not in seen and balance:
            drifted.setdefault(account.project_id, []).append(account.unit_id)
    project_ids = sorted({*books, *units, *statements, *drifted})
    return Reconciliation(
        projects=tuple(
            ProjectReconciliation(
                project_id=project_id,
                book_balance_fen=books.get(project_id, 0),
                unit_balances_fen=units.get(project_id, 0),
                bank_statement_fen=statements.get(project_id),
                drifted_unit_ids=tuple(sorted(drifted.get(project_id, ()))),
            )
            for project_id in project_ids
        ),
        unbalanced_entry_ids=tuple(e.entry_id for e in entries if not e.balanced),
    )


# ---------------------------------------------------------------- uses of the fund


class UseOrigin(StrEnum):
    DECISION = "DECISION"
    EMERGENCY = "EMERGENCY"


class UseState(StrEnum):
    DRAFT = "DRAFT"
    PENDING_APPROVAL = "PENDING_APPROVAL"
    ESCALATED = "ESCALATED"
    APPROVED = "APPROVED"
    REAPPROVAL_REQUIRED = "REAPPROVAL_REQUIRED"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


class UseAction(StrEnum):
    # A draft opened from an alarm is filed with evidence and a budget.
    SUBMIT = "SUBMIT"
    # An emergency request passed its approval deadline undecided.
    ESCALATE = "ESCALATE"
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    CANCEL = "CANCEL"
    PAY = "PAY"
    COMPLETE = "COMPLETE"
    # The final cost exceeds the approved budget by more than the tolerance.
    OVERRUN = "OVERRUN"


class UseEventType(StrEnum):
    USE_OPENED = "USE_OPENED"
    EMERGENCY_DRAFTED = "EMERGENCY_DRAFTED"
    EMERGENCY_REQUESTED = "EMERGENCY_REQUESTED"
    EMERGENCY_ESCALATED = "EMERGENCY_ESCALATED"
    USE_APPROVED = "USE_APPROVED"
    EMERGENCY_APPROVED = "EMERGENCY_APPROVED"
    USE_REJECTED = "USE_REJECTED"
    USE_CANCELLED = "USE_CANCELLED"
    WORKS_PAID = "WORKS_PAID"
    REAPPROVAL_REQUIRED = "REAPPROVAL_REQUIRED"
    USE_COMPLETED = "USE_COMPLETED"


_S, _A = UseState, UseAction
# The use's state machine: (state, action) -> the state it leads to; nothing else is allowed.
USE_TRANSITIONS: Mapping[tuple[UseState, UseAction], UseState] = MappingProxyType(
    {
        (_S.DRAFT, _A.SUBMIT): _S.PENDING_APPROVAL,
        (_S.DRAFT, _A.CANCEL): _S.CANCELLED,
        (_S.PENDING_APPROVAL, _A.ESCALATE): _S.ESCALATED,
        (_S.PENDING_APPROVAL, _A.APPROVE): _S.APPROVED,
        (_S.PENDING_APPROVAL, _A.REJECT): _S.REJECTED,
        (_S.PENDING_APPROVAL, _A.CANCEL): _S.CANCELLED,
        (_S.ESCALATED, _A.APPROVE): _S.APPROVED,
        (_S.ESCALATED, _A.REJECT): _S.REJECTED,
        (_S.ESCALATED, _A.CANCEL): _S.CANCELLED,
        (_S.APPROVED, _A.PAY): _S.APPROVED,
        (_S.APPROVED, _A.COMPLETE): _S.COMPLETED,
        (_S.APPROVED, _A.OVERRUN): _S.REAPPROVAL_REQUIRED,
        # The works are done and partly paid: the overrun is approved, or the use stays open.
        (_S.REAPPROVAL_REQUIRED, _A.APPROVE): _S.APPROVED,
    }
)

# The event each action announces; APPROVE's depends on the use (see _event_of).
_ACTION_EVENTS: Mapping[UseAction, UseEventType] = MappingProxyType(
    {
        _A.SUBMIT: UseEventType.EMERGENCY_REQUESTED,
        _A.ESCALATE: UseEventType.EMERGENCY_ESCALATED,
        _A.APPROVE: UseEventType.USE_APPROVED,
        _A.REJECT: UseEventType.USE_REJECTED,
        _A.CANCEL: UseEventType.USE_CANCELLED,
        _A.PAY: UseEventType.WORKS_PAID,
        _A.COMPLETE: UseEventType.USE_COMPLETED,
        _A.OVERRUN: UseEventType.REAPPROVAL_REQUIRED,
    }
)


@dataclass(frozen=True)
class Decision:
    """The owners' decision a use rests on, as the voting service announced it."""

    vote_id: str
    matter_id: str
    matter_type: str
    title: str
    passed: bool
    amount_fen: int
    # Empty: the whole project.
    unit_ids: tuple[str, ...]
    decision_date: dt.date
    participating_area_cm2: int = 0
    participating_owners: int = 0
    yes_area_cm2: int = 0
    yes_owners: int = 0


# The voting service's matter type for using the fund (Civil Code Art. 278 (5)).
USE_FUND_MATTER = "USE_FUND"


@dataclass(frozen=True)
class Emergency:
    kind: EmergencyKind
    requester: EmergencyRequester | None = None
    evidence: tuple[str, ...] = ()
    extremely_urgent: bool = False
    requested_on: dt.date | None = None
    approve_by: dt.date | None = None
    alarm_id: str = ""


@dataclass(frozen=True)
class Use:
    use_id: str
    project_id: str
    district_code: str
    title: str
    origin: UseOrigin
    state: UseState
    # The approved budget; before approval the decided or requested amount.
    budget_fen: int
    # The units that benefit and share the cost.
    unit_ids: tuple[str, ...]
    works_kind: WorksKind | None = None
    decision: Decision | None = None
    emergency: Emergency | None = None
    # Payments' amounts in total, units' owed shares included; and those owed shares.
    paid_fen: int = 0
    owed_fen: int = 0
    payments: int = 0
    final_cost_fen: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class Share:
    unit_id: str
    unit_number: str
    area_cm2: int
    share_fen: int
    debited_fen: int
    owed_fen: int


@dataclass(frozen=True)
class Payment:
    stage: int
    amount_fen: int
    shares: tuple[Share, ...]
    # None when no account could pay anything.
    entry: Entry | None

    @property
    def debited_fen(self) -> int:
        return sum(s.debited_fen for s in self.shares)

    @property
    def owed_fen(self) -> int:
        return sum(s.owed_fen for s in self.shares)


@dataclass(frozen=True)
class UseEvent:
    type: UseEventType
    use: Use
    occur_time: dt.datetime
    payment: Payment | None = None


@dataclass(frozen=True)
class UseChange:
    """What a command on a use commits: the use, its events, and for a payment the accounts it
    changed and those now asked to top up."""

    use: Use
    events: tuple[UseEvent, ...]
    payment: Payment | None = None
    accounts: tuple[UnitAccount, ...] = ()
    top_up_requested: tuple[UnitAccount, ...] = ()


def transition(
    use: Use,
    action: UseAction,
    at: dt.datetime,
    payment: Payment | None = None,
    **changes: object,
) -> tuple[Use, tuple[UseEvent, ...]]:
    """The one way a use changes state: `action` must be allowed from its state; the use with
    `changes` applied and the events the change causes."""
    after = replace(use, state=allowed(use, action), **changes)
    if action is UseAction.PAY or payment is None:
        return after, (UseEvent(_event_of(action, use), after, at, payment),)
    # A completion's settlement is a payment too, announced before the completion.
    return after, (
        UseEvent(UseEventType.WORKS_PAID, after, at, payment),
        UseEvent(_event_of(action, use), after, at),
    )


def allowed(use: Use, action: UseAction) -> UseState:
    """The state `action` leads `use` to; refused if its state does not allow it."""
    to = USE_TRANSITIONS.get((use.state, action))
    if to is None:
        raise FailedPrecondition(
            f"USE_{use.state.value}",
            f"use {use.use_id} is {_words(use.state)}: it cannot {_words(action)}",
            use_id=use.use_id,
        )
    return to


def _event_of(action: UseAction, before: Use) -> UseEventType:
    if (
        action is UseAction.APPROVE
        and before.origin is UseOrigin.EMERGENCY
        and before.state is not UseState.REAPPROVAL_REQUIRED
    ):
        return UseEventType.EMERGENCY_APPROVED
    return _ACTION_EVENTS[action]


def _words(name: StrEnum) -> str:
    return name.value.lower().replace("_", " ")


def check_works_kind(kind: WorksKind | None, v: Violations, where: str) -> None:
    if v.check(kind is not None, where, "name the works' kind"):
        reason = NOT_PAYABLE.get(kind)
        v.check(reason is None, where, f"the fund never pays this: {reason}")


def check_units(
    project_id: str, unit_ids: Sequence[str], accounts: Mapping[str, UnitAccount]
) -> None:
    """A use charges at least one unit, and every one has an account in the use's project."""
    if not unit_ids:
        raise FailedPrecondition(
            "NO_BENEFITING_UNITS", f"project {project_id} has no unit account to share the cost"
        )
    for unit_id in unit_ids:
        account = accounts.get(unit_id)
        if account is None:
            raise FailedPrecondition(
                "UNIT_HAS_NO_ACCOUNT", f"unit {unit_id} has no fund account", unit_id=unit_id
            )
        if account.project_id != project_id:
            raise FailedPrecondition(
                "UNIT_OF_ANOTHER_PROJECT",
                f"unit {unit_id} belongs to project {account.project_id}, not {project_id}",
                unit_id=unit_id,
            )


def open_decided_use(
    use_id: str,
    project_id: str,
    district_code: str,
    decision: Decision,
    accounts: Mapping[str, UnitAccount],
    at: dt.datetime,
) -> UseChange:
    """A use the owners decided, awaiting approval. `accounts`: the project's unit accounts."""
    if decision.matter_type != USE_FUND_MATTER:
        raise FailedPrecondition(
            "NOT_A_FUND_USE",
            f"matter {decision.matter_id} of vote {decision.vote_id} decides "
            f"{decision.matter_type}, not a use of the fund",
            vote_id=decision.vote_id,
        )
    if not decision.passed or decision.amount_fen <= 0:
        raise FailedPrecondition(
            "DECISION_NOT_PASSED",
            f"matter {decision.matter_id} of vote {decision.vote_id} did not pass with an "
            "amount: the fund is used only as the owners decided",
            vote_id=decision.vote_id,
        )
    unit_ids = decision.unit_ids or tuple(
        sorted(u for u, a in accounts.items() if a.project_id == project_id)
    )
    check_units(project_id, unit_ids, accounts)
    use = Use(
        use_id=use_id,
        project_id=project_id,
        district_code=district_code,
        title=decision.title,
        origin=UseOrigin.DECISION,
        state=UseState.PENDING_APPROVAL,
        budget_fen=decision.amount_fen,
        unit_ids=tuple(unit_ids),
        decision=decision,
    )
    return UseChange(use, (UseEvent(UseEventType.USE_OPENED, use, at),))


def draft_from_alarm(
    use_id: str,
    project_id: str,
    district_code: str,
    alarm_id: str,
    alarm_kind: str,
    project_unit_ids: Sequence[str],
    rules: FundRules,
    at: dt.datetime,
) -> UseChange | None:
    """An escalated alarm showing a fire-system fault opens an emergency draft for the whole
    project; any other alarm opens nothing (None)."""
    if alarm_kind not in rules.fire_system_fault_alarms:
        return None
    use = Use(
        use_id=use_id,
        project_id=project_id,
        district_code=district_code,
        title=EMERGENCY_KINDS[EmergencyKind.FIRE_SYSTEM_FAULT],
        origin=UseOrigin.EMERGENCY,
        state=UseState.DRAFT,
        budget_fen=0,
        unit_ids=tuple(project_unit_ids),
        emergency=Emergency(EmergencyKind.FIRE_SYSTEM_FAULT, alarm_id=alarm_id),
    )
    return UseChange(use, (UseEvent(UseEventType.EMERGENCY_DRAFTED, use, at),))


@dataclass(frozen=True)
class EmergencyFiling:
    """An emergency request as filed; None where the request left an enumeration unspecified."""

    title: str
    kind: EmergencyKind | None
    requester: EmergencyRequester | None
    works_kind: WorksKind | None
    budget_fen: int
    # Empty: every unit of the project.
    unit_ids: tuple[str, ...]
    evidence: tuple[str, ...]
    extremely_urgent: bool = False


def approval_deadline(
    requested_on: dt.date,
    extremely_urgent: bool,
    rules: FundRules,
    add_working_days: AddWorkingDays,
) -> dt.date:
    days = (
        rules.extremely_urgent_approval_working_days
        if extremely_urgent
        else rules.emergency_approval_working_days
    )
    return add_working_days(requested_on, days)


def request_emergency(
    use_id: str,
    project_id: str,
    district_code: str,
    filing: EmergencyFiling,
    accounts: Mapping[str, UnitAccount],
    rules: FundRules,
    at: dt.datetime,
    requested_on: dt.date,
    add_working_days: AddWorkingDays,
    draft: Use | None = None,
) -> UseChange:
    """An emergency request, or a draft completed into one (which keeps its own id): the owners
    are notified at once (EMERGENCY_REQUESTED) and the approval falls due. `requested_on` is the
    city's day of `at`; `accounts` the project's unit accounts."""
    v = Violations()
    v.check(bool(filing.title.strip()), "title", "must not be empty")
    if v.check(filing.kind is not None, "kind", "name the emergency"):
        v.check(
            filing.kind in rules.emergency_kinds,
            "kind",
            "is not an emergency here: the use needs the owners' vote",
        )
    if v.check(filing.requester is not None, "requester", "say who requests"):
        v.check(
            filing.requester in rules.emergency_requesters,
            "requester",
            "may not request an emergency use here",
        )
    check_works_kind(filing.works_kind, v, "works_kind")
    v.check(filing.budget_fen > 0, "budget_fen", "a budget is a positive number of fen")
    v.check(bool(filing.evidence), "evidence", "an emergency is shown by its evidence")
    v.check(len(set(filing.unit_ids)) == len(filing.unit_ids), "unit_ids", "names a unit twice")
    v.raise_if_any()
    unit_ids = filing.unit_ids or tuple(
        sorted(u for u, a in accounts.items() if a.project_id == project_id)
    )
    check_units(project_id, unit_ids, accounts)
    emergency = Emergency(
        kind=filing.kind,
        requester=filing.requester,
        evidence=filing.evidence,
        extremely_urgent=filing.extremely_urgent,
        requested_on=requested_on,
        approve_by=approval_deadline(
            requested_on, filing.extremely_urgent, rules, add_working_days
        ),
        alarm_id=draft.emergency.alarm_id if draft and draft.emergency else "",
    )
    details = {
        "title": filing.title.strip(),
        "works_kind": filing.works_kind,
        "budget_fen": filing.budget_fen,
        "unit_ids": tuple(unit_ids),
        "emergency": emergency,
    }
    if draft is not None:
        if draft.project_id != project_id or draft.origin is not UseOrigin.EMERGENCY:
            raise FailedPrecondition(
                "NOT_A_DRAFT_OF_PROJECT",
                f"use {draft.use_id} is not an emergency draft of project {project_id}",
                use_id=draft.use_id,
            )
        use, events = transition(draft, UseAction.SUBMIT, at, **details)
        return UseChange(use, events)
    use = Use(
        use_id=use_id,
        project_id=project_id,
        district_code=district_code,
        origin=UseOrigin.EMERGENCY,
        state=UseState.PENDING_APPROVAL,
        **details,
    )
    return UseChange(use, (UseEvent(UseEventType.EMERGENCY_REQUESTED, use, at),))


def is_overdue(use: Use, today: dt.date) -> bool:
    """An emergency request still undecided after its approval deadline."""
    return (
        use.state is UseState.PENDING_APPROVAL
        and use.emergency is not None
        and use.emergency.approve_by is not None
        and today > use.emergency.approve_by
    )


def escalate(use: Use, today: dt.date, at: dt.datetime) -> UseChange:
    """The timer's escalation of an emergency request not decided in time."""
    if not is_overdue(use, today):
        raise FailedPrecondition(
            "USE_NOT_OVERDUE",
            f"use {use.use_id} is not an emergency request past its approval deadline",
            use_id=use.use_id,
        )
    return UseChange(*transition(use, UseAction.ESCALATE, at))


def first_payment_limit_fen(use: Use, rules: FundRules) -> int | None:
    """The most an emergency's first payment may be (rounded down: a limit is never exceeded);
    None for a use without that limit."""
    if use.origin is not UseOrigin.EMERGENCY:
        return None
    limit = rules.emergency_first_payment_limit * use.budget_fen
    return limit.numerator // limit.denominator


def approve(
    use: Use, works_kind: WorksKind | None, budget_fen: int, rules: FundRules, at: dt.datetime
) -> UseChange:
    """The authority's approval, naming the works' kind (never one of Art. 25's) and the budget:
    at most the amount decided or requested; a re-approval's at least the final cost."""
    allowed(use, UseAction.APPROVE)
    v = Violations()
    check_works_kind(works_kind, v, "works_kind")
    if use.state is UseState.REAPPROVAL_REQUIRED:
        v.check(
            budget_fen >= (use.final_cost_fen or 0),
            "budget_fen",
            f"a re-approval covers the final cost of {use.final_cost_fen} fen",
        )
    else:
        v.check(
            0 < budget_fen <= use.budget_fen,
            "budget_fen",
            f"between 1 and the {use.budget_fen} fen decided or requested",
        )
    v.raise_if_any()
    return UseChange(
        *transition(use, UseAction.APPROVE, at, works_kind=works_kind, budget_fen=budget_fen)
    )


def reject(use: Use, reason: str, at: dt.datetime) -> UseChange:
    return UseChange(*transition(use, UseAction.REJECT, at, reason=_reason(reason)))


def cancel(use: Use, reason: str, at: dt.datetime) -> UseChange:
    return UseChange(*transition(use, UseAction.CANCEL, at, reason=_reason(reason)))


def _reason(reason: str) -> str:
    v = Violations()
    v.check(bool(reason.strip()), "reason", "say why")
    v.raise_if_any()
    return reason.strip()


def apportion_payment(
    use: Use,
    amount_fen: int,
    stage: int,
    entry_id: str,
    accounts: Mapping[str, UnitAccount],
    rules: FundRules,
) -> tuple[Payment, tuple[UnitAccount, ...], tuple[UnitAccount, ...]]:
    """A payment's shares by exclusive area, debited from the benefiting units' accounts as far
    as each balance goes; the rest of a share is owed by its unit, never a negative balance.
    Answers the payment, the changed accounts and those that fell below the top-up threshold."""
    check_units(use.project_id, use.unit_ids, accounts)
    parts = apportion(amount_fen, {u: accounts[u].area_cm2 for u in use.unit_ids})
    shares: list[Share] = []
    changed: list[UnitAccount] = []
    top_ups: list[UnitAccount] = []
    postings: list[Posting] = []
    for unit_id in use.unit_ids:
        account, part = accounts[unit_id], parts[unit_id]
        debited = min(part, account.balance_fen)
        shares.append(
            Share(unit_id, account.unit_number, account.area_cm2, part, debited, part - debited)
        )
        if not part:
            continue
        after = account.charged(debited, part - debited)
        changed.append(after)
        if debited:
            postings.append(Posting(account.ledger_account, debited))
        if needs_top_up(after.balance_fen, after.first_deposit_fen, rules) and not needs_top_up(
            account.balance_fen, account.first_deposit_fen, rules
        ):
            top_ups.append(after)
    entry = None
    if postings:
        paid_out = sum(p.amount_fen for p in postings)
        entry = Entry(
            entry_id=entry_id,
            kind=EntryKind.WORKS_PAYMENT,
            project_id=use.project_id,
            district_code=use.district_code,
            postings=(Posting(bank(use.project_id), -paid_out), *postings),
            use_id=use.use_id,
        )
    return Payment(stage, amount_fen, tuple(shares), entry), tuple(changed), tuple(top_ups)


def pay_works(
    use: Use,
    amount_fen: int,
    entry_id: str,
    accounts: Mapping[str, UnitAccount],
    rules: FundRules,
    at: dt.datetime,
) -> UseChange:
    """A stage of an approved use's works: at most the approved budget in total, an emergency's
    first payment at most its limit."""
    v = Violations()
    v.check(amount_fen > 0, "amount_fen", "a payment is a positive number of fen")
    v.raise_if_any()
    allowed(use, UseAction.PAY)
    if use.paid_fen + amount_fen > use.budget_fen:
        raise FailedPrecondition(
            "PAYMENT_OVER_BUDGET",
            f"use {use.use_id} has {use.budget_fen - use.paid_fen} fen of its approved "
            f"{use.budget_fen} left to pay, not {amount_fen}",
            use_id=use.use_id,
        )
    limit = first_payment_limit_fen(use, rules)
    if use.payments == 0 and limit is not None and amount_fen > limit:
        raise FailedPrecondition(
            "FIRST_PAYMENT_OVER_LIMIT",
            f"an emergency's first payment is at most {rules.emergency_first_payment_limit} of "
            f"its budget: {limit} fen",
            use_id=use.use_id,
        )
    return _paid(use, UseAction.PAY, amount_fen, entry_id, accounts, rules, at)


def _paid(
    use: Use,
    action: UseAction,
    amount_fen: int,
    entry_id: str,
    accounts: Mapping[str, UnitAccount],
    rules: FundRules,
    at: dt.datetime,
    **changes: object,
) -> UseChange:
    payment, changed, top_ups = apportion_payment(
        use, amount_fen, use.payments + 1, entry_id, accounts, rules
    )
    after, events = transition(
        use,
        action,
        at,
        payment,
        paid_fen=use.paid_fen + amount_fen,
        owed_fen=use.owed_fen + payment.owed_fen,
        payments=payment.stage,
        **changes,
    )
    return UseChange(after, events, payment, changed, top_ups)


def settle_owed(
    account: UnitAccount, use: Use, owed_on_use: int, entry_id: str
) -> tuple[UnitAccount, Use, Entry | None]:
    """A unit pays what it owes of `use`'s shares (`owed_on_use`, from the use's payments) out of
    its balance, as far as the balance goes, to the use's works: after a top-up, say. The
    account and the use after it, and the entry (None when nothing could be paid)."""
    if account.project_id != use.project_id or account.unit_id not in use.unit_ids:
        raise FailedPrecondition(
            "UNIT_NOT_CHARGED_BY_USE",
            f"unit {account.unit_id} shares no cost of use {use.use_id}",
            unit_id=account.unit_id,
        )
    if not 0 <= owed_on_use <= min(account.owed_fen, use.owed_fen):
        raise ValueError(f"unit {account.unit_id} cannot owe {owed_on_use} fen of {use.use_id}")
    paid = min(owed_on_use, account.balance_fen)
    if not paid:
        return account, use, None
    entry = Entry(
        entry_id=entry_id,
        kind=EntryKind.WORKS_PAYMENT,
        project_id=use.project_id,
        district_code=use.district_code,
        postings=(Posting(bank(use.project_id), -paid), Posting(account.ledger_account, paid)),
        use_id=use.use_id,
    )
    return account.charged(paid, -paid), replace(use, owed_fen=use.owed_fen - paid), entry


def overruns(budget_fen: int, final_cost_fen: int, rules: FundRules) -> bool:
    """The final cost exceeds the budget by more than the tolerance (exactly at it does not)."""
    return final_cost_fen > budget_fen * (1 + rules.overrun_tolerance)


def complete(
    use: Use,
    final_cost_fen: int,
    entry_id: str,
    accounts: Mapping[str, UnitAccount],
    rules: FundRules,
    at: dt.datetime,
) -> UseChange:
    """The works' final cost: what remains of it after the payments is paid (the settlement)
    and the use completes; a cost over the budget beyond the tolerance waits for re-approval."""
    v = Violations()
    v.check(
        final_cost_fen >= use.paid_fen and final_cost_fen > 0,
        "final_cost_fen",
        f"at least the {use.paid_fen} fen paid already",
    )
    v.raise_if_any()
    allowed(use, UseAction.COMPLETE)
    if overruns(use.budget_fen, final_cost_fen, rules):
        return UseChange(*transition(use, UseAction.OVERRUN, at, final_cost_fen=final_cost_fen))
    settlement = final_cost_fen - use.paid_fen
    if not settlement:
        return UseChange(*transition(use, UseAction.COMPLETE, at, final_cost_fen=final_cost_fen))
    return _paid(
        use,
        UseAction.COMPLETE,
        settlement,
        entry_id,
        accounts,
        rules,
        at,
        final_cost_fen=final_cost_fen,
    )


def is_published(use: Use) -> bool:
    """A use the owners decided is public from its opening (their decision already is); an
    emergency use once its works are done (published afterwards, DOMAIN.md section 4)."""
    if use.origin is UseOrigin.DECISION:
        return True
    return use.state is UseState.COMPLETED
