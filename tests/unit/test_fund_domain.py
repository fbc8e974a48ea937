"""Rules of the maintenance fund (wuye.fund.domain): exact apportionment and interest held by
hypothesis to a slow reference in Fractions, first deposits and the top-up, the use's state
machine at every (state, action), payment limits at their boundaries, and the ledger's invariant
after random sequences of operations."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
from dataclasses import replace
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wuye.core.errors import FailedPrecondition, InvalidArgument
from wuye.fund import domain
from wuye.fund.domain import (
    AccountKind,
    Decision,
    DepositKind,
    EmergencyFiling,
    EmergencyKind,
    EmergencyRequester,
    EntryKind,
    FundRules,
    LedgerAccount,
    Posting,
    UnitAccount,
    Use,
    UseAction,
    UseEventType,
    UseOrigin,
    UseState,
    WorksKind,
)

RULES = FundRules()
AT = dt.datetime(2026, 6, 5, 2, 0, tzinfo=dt.UTC)
FRIDAY = dt.date(2026, 6, 5)
PROJECT, OTHER_PROJECT, DISTRICT = "150602-P00000001", "150602-P00000002", "150602"


def reference_apportion(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Written apart from the domain's: exact Fractions, their floors, and the fen left over to
    the largest fractional parts (ties: the smaller key)."""
    whole = sum(weights.values())
    exact = {key: Fraction(total * weight, whole) for key, weight in weights.items()}
    floors = {key: math.floor(share) for key, share in exact.items()}
    left = total - sum(floors.values())
    ranked = sorted(weights, key=lambda key: (floors[key] - exact[key], key))
    favoured = set(ranked[:left])
    return {key: floors[key] + (key in favoured) for key in weights}


# Small weights as often as large ones: equal remainders, where the tie-break decides, are common.
weight_maps = st.dictionaries(
    st.text(alphabet="0123456789-ABC", min_size=1, max_size=6),
    st.integers(min_value=0, max_value=20) | st.integers(min_value=0, max_value=10**7),
    min_size=1,
    max_size=40,
).filter(lambda weights: sum(weights.values()) > 0)
totals = st.integers(min_value=0, max_value=10**10)


# ---------------------------------------------------------------- apportionment


@settings(max_examples=400)
@given(totals, weight_maps)
def test_apportionment_equals_the_reference_and_sums_to_the_whole(total, weights):
    parts = domain.apportion(total, weights)
    assert parts == reference_apportion(total, weights)
    assert sum(parts.values()) == total


@settings(max_examples=400)
@given(totals, weight_maps)
def test_no_part_is_a_fen_or_more_from_its_exact_share(total, weights):
    whole = sum(weights.values())
    for key, part in domain.apportion(total, weights).items():
        assert abs(part - Fraction(total * weights[key], whole)) < 1


@settings(max_examples=200)
@given(totals, weight_maps, st.randoms(use_true_random=False))
def test_the_order_of_the_units_never_matters(total, weights, rnd):
    keys = list(weights)
    rnd.shuffle(keys)
    shuffled = {key: weights[key] for key in keys}
    assert domain.apportion(total, shuffled) == domain.apportion(total, weights)


def test_leftover_fen_go_to_the_largest_remainders_then_the_smaller_key():
    # 100 / 3 = 33 r 1 each: one fen left, the smallest key takes it.
    assert domain.apportion(100, {"b": 1, "a": 1, "c": 1}) == {"a": 34, "b": 33, "c": 33}
    # 10 by 1:2:7 is exact; 11 by 1:2:7: 1.1, 2.2, 7.7 -> the 0.7 remainder takes the fen.
    assert domain.apportion(10, {"x": 1, "y": 2, "z": 7}) == {"x": 1, "y": 2, "z": 7}
    assert domain.apportion(11, {"x": 1, "y": 2, "z": 7}) == {"x": 1, "y": 2, "z": 8}


def test_a_unit_of_zero_weight_gets_nothing():
    assert domain.apportion(7, {"a": 0, "b": 3, "c": 3}) == {"a": 0, "b": 4, "c": 3}


@pytest.mark.parametrize(
    ("total", "weights", "message"),
    [
        (-1, {"a": 1}, "negative amount"),
        (5, {"a": 1, "b": -1}, "negative weight"),
        (5, {"a": 0}, "sum to zero"),
        (5, {}, "sum to zero"),
    ],
)
def test_apportioning_refuses_what_has_no_exact_split(total, weights, message):
    with pytest.raises(ValueError, match=message):
        domain.apportion(total, weights)


@settings(max_examples=200)
@given(
    st.integers(min_value=0, max_value=10**9),
    st.dictionaries(
        st.text(alphabet="0123456789", min_size=1, max_size=5),
        st.integers(min_value=0, max_value=10**9),
        min_size=1,
        max_size=40,
    ).filter(lambda balances: any(balances.values())),
)
def test_interest_follows_balances_exactly(interest, balances):
    parts = domain.allocate_interest(interest, balances)
    assert sum(parts.values()) == interest
    assert parts == reference_apportion(interest, balances)
    assert all(parts[unit] == 0 for unit, balance in balances.items() if balance == 0)


def test_interest_without_any_balance_is_refused():
    with pytest.raises(FailedPrecondition) as refused:
        domain.allocate_interest(100, {"u1": 0, "u2": 0})
    assert refused.value.reason == "NO_BALANCE_FOR_INTEREST"


# ---------------------------------------------------------------- deposits and the top-up


def account(unit_id: str = "u1", area_cm2: int = 893_700, **fields) -> UnitAccount:
    defaults = dict(
        project_id=PROJECT, district_code=DISTRICT, unit_number=f"1-1-{unit_id}", balance_fen=0
    )
    return UnitAccount(unit_id=unit_id, area_cm2=area_cm2, **{**defaults, **fields})


def test_first_deposit_is_the_rate_of_the_construction_cost_times_the_area():
    # 5% of 2,000 yuan/m² over 89.37 m²: 8,937 yuan.
    assert domain.first_deposit_fen(893_700, 200_000, Fraction(5, 100)) == 893_700


@pytest.mark.parametrize(
    ("area_cm2", "cost", "expected"),
    [(1, 100_000, 1), (1, 99_999, 0), (3, 100_000, 2), (1, 300_000, 2)],
)
def test_first_deposit_rounds_to_the_nearest_fen_halves_up(area_cm2, cost, expected):
    # 5% × cost × area / 10,000: 0.5 -> 1, 0.49999 -> 0, 1.5 -> 2, 1.5 -> 2.
    assert domain.first_deposit_fen(area_cm2, cost, Fraction(5, 100)) == expected


def test_record_first_deposit_uses_the_districts_rate():
    rules = FundRules(district_deposit_rates={"150603": Fraction(8, 100)})
    plain, entry, amount = domain.record_deposit(
        account(), DepositKind.FIRST, "e1", rules, cost_fen_per_m2=200_000
    )
    assert (amount, plain.balance_fen, plain.first_deposit_fen) == (893_700, 893_700, 893_700)
    kangbashi, _, amount = domain.record_deposit(
        account(district_code="150603"), DepositKind.FIRST, "e2", rules, cost_fen_per_m2=200_000
    )
    assert amount == kangbashi.first_deposit_fen == 1_429_920
    assert entry.balanced and entry.kind is EntryKind.DEPOSIT
    assert domain.post(entry, {}) == {
        LedgerAccount(AccountKind.BANK, PROJECT): 893_700,
        LedgerAccount(AccountKind.UNIT, PROJECT, "u1"): 893_700,
    }


def test_a_second_first_deposit_and_bad_amounts_are_refused():
    paid = account(balance_fen=10, first_deposit_fen=10)
    with pytest.raises(FailedPrecondition) as refused:
        domain.record_deposit(paid, DepositKind.FIRST, "e", RULES, amount_fen=5)
    assert refused.value.reason == "FIRST_DEPOSIT_MADE"
    with pytest.raises(InvalidArgument) as invalid:
        domain.record_deposit(paid, DepositKind.TOP_UP, "e", RULES, amount_fen=0)
    assert [v.field for v in invalid.value.violations] == ["amount_fen"]
    with pytest.raises(InvalidArgument) as invalid:
        domain.record_deposit(
            account(), DepositKind.FIRST, "e", RULES, amount_fen=5, cost_fen_per_m2=100
        )
    assert [v.field for v in invalid.value.violations] == ["amount_fen"]
    with pytest.raises(InvalidArgument) as invalid:
        domain.record_deposit(paid, None, "e", RULES, amount_fen=5)
    assert [v.field for v in invalid.value.violations] == ["kind"]
    top_up, _, _ = domain.record_deposit(paid, DepositKind.TOP_UP, "e", RULES, amount_fen=5)
    assert (top_up.balance_fen, top_up.first_deposit_fen) == (15, 10)


def test_rates_outside_the_legal_bounds_are_refused():
    with pytest.raises(ValueError, match="outside"):
        FundRules(deposit_rate=Fraction(4, 100))
    with pytest.raises(ValueError, match="150621"):
        FundRules(district_deposit_rates={"150621": Fraction(9, 100)})


def test_top_up_is_asked_below_the_threshold_not_at_it():
    # 30% of 1,000 fen is 300: 300 is enough, 299 is not.
    assert not domain.needs_top_up(300, 1_000, RULES)
    assert domain.needs_top_up(299, 1_000, RULES)
    # 30% of 1,001 is 300.3: 300 is below it.
    assert domain.needs_top_up(300, 1_001, RULES)
    assert not domain.needs_top_up(0, 0, RULES)


# ---------------------------------------------------------------- the use's state machine

S, A = UseState, UseAction
# Written out apart from the domain's table: every allowed move; all others are refused.
ALLOWED = {
    (S.DRAFT, A.SUBMIT): S.PENDING_APPROVAL,
    (S.DRAFT, A.CANCEL): S.CANCELLED,
    (S.PENDING_APPROVAL, A.ESCALATE): S.ESCALATED,
    (S.PENDING_APPROVAL, A.APPROVE): S.APPROVED,
    (S.PENDING_APPROVAL, A.REJECT): S.REJECTED,
    (S.PENDING_APPROVAL, A.CANCEL): S.CANCELLED,
    (S.ESCALATED, A.APPROVE): S.APPROVED,
    (S.ESCALATED, A.REJECT): S.REJECTED,
    (S.ESCALATED, A.CANCEL): S.CANCELLED,
    (S.APPROVED, A.PAY): S.APPROVED,
    (S.APPROVED, A.COMPLETE): S.COMPLETED,
    (S.APPROVED, A.OVERRUN): S.REAPPROVAL_REQUIRED,
    (S.REAPPROVAL_REQUIRED, A.APPROVE): S.APPROVED,
}
EVENTS = {
    A.SUBMIT: UseEventType.EMERGENCY_REQUESTED,
    A.ESCALATE: UseEventType.EMERGENCY_ESCALATED,
    A.REJECT: UseEventType.USE_REJECTED,
    A.CANCEL: UseEventType.USE_CANCELLED,
    A.PAY: UseEventType.WORKS_PAID,
    A.COMPLETE: UseEventType.USE_COMPLETED,
    A.OVERRUN: UseEventType.REAPPROVAL_REQUIRED,
}


def use(state: UseState = S.APPROVED, origin: UseOrigin = UseOrigin.DECISION, **fields) -> Use:
    defaults = dict(
        use_id="U1",
        project_id=PROJECT,
        district_code=DISTRICT,
        title="3号楼屋面防水",
        budget_fen=100_000,
        unit_ids=("u1", "u2", "u3"),
        works_kind=WorksKind.COMMON_PARTS,
    )
    return Use(origin=origin, state=state, **{**defaults, **fields})


@pytest.mark.parametrize(("state", "action"), list(itertools.product(UseState, UseAction)))
def test_every_transition_is_allowed_or_refused_as_the_table_says(state, action):
    before = use(state)
    if (state, action) in ALLOWED:
        after, events = domain.transition(before, action, AT)
        assert after.state is ALLOWED[state, action]
        assert [e.type for e in events] == [EVENTS.get(action, UseEventType.USE_APPROVED)]
        assert all(e.use == after and e.occur_time == AT for e in events)
    else:
        with pytest.raises(FailedPrecondition) as refused:
            domain.transition(before, action, AT)
        assert refused.value.reason == f"USE_{state.value}"
        assert refused.value.metadata == {"use_id": "U1"}


def test_the_tables_agree():
    assert dict(domain.USE_TRANSITIONS) == ALLOWED


def test_approving_an_emergency_announces_an_emergency_approval_and_whether_late():
    on_time = domain.approve(
        use(S.PENDING_APPROVAL, UseOrigin.EMERGENCY), WorksKind.COMMON_FACILITIES, 50_000, RULES, AT
    )
    assert [e.type for e in on_time.events] == [UseEventType.EMERGENCY_APPROVED]
    assert (on_time.use.budget_fen, on_time.use.works_kind) == (
        50_000,
        WorksKind.COMMON_FACILITIES,
    )
    reapproved = domain.approve(
        use(S.REAPPROVAL_REQUIRED, UseOrigin.EMERGENCY, final_cost_fen=120_000),
        WorksKind.COMMON_PARTS,
        120_000,
        RULES,
        AT,
    )
    assert [e.type for e in reapproved.events] == [UseEventType.USE_APPROVED]


@pytest.mark.parametrize("kind", sorted(domain.NOT_PAYABLE))
def test_art_25_works_are_refused_at_approval_and_request(kind):
    with pytest.raises(InvalidArgument) as refused:
        domain.approve(use(S.PENDING_APPROVAL), kind, 100_000, RULES, AT)
    assert [v.field for v in refused.value.violations] == ["works_kind"]
    assert "Art. 25" in refused.value.violations[0].description
    with pytest.raises(InvalidArgument) as refused:
        request(filing(works_kind=kind))
    assert [v.field for v in refused.value.violations] == ["works_kind"]


def test_approval_budget_is_at_most_the_decided_amount():
    with pytest.raises(InvalidArgument) as refused:
        domain.approve(use(S.PENDING_APPROVAL), WorksKind.COMMON_PARTS, 100_001, RULES, AT)
    assert [v.field for v in refused.value.violations] == ["budget_fen"]
    with pytest.raises(InvalidArgument):
        domain.approve(
            use(S.REAPPROVAL_REQUIRED, final_cost_fen=130_000),
            WorksKind.COMMON_PARTS,
            129_999,
            RULES,
            AT,
        )


def test_the_state_is_checked_before_the_arguments():
    with pytest.raises(FailedPrecondition) as refused:
        domain.approve(use(S.DRAFT, UseOrigin.EMERGENCY, budget_fen=0), None, 0, RULES, AT)
    assert refused.value.reason == "USE_DRAFT"
    with pytest.raises(FailedPrecondition) as refused:
        domain.complete(use(S.COMPLETED), 100_000, "e", PROJECT_ACCOUNTS, RULES, AT)
    assert refused.value.reason == "USE_COMPLETED"


def test_reject_and_cancel_say_why():
    with pytest.raises(InvalidArgument):
        domain.reject(use(S.PENDING_APPROVAL), "  ", AT)
    rejected = domain.reject(use(S.PENDING_APPROVAL), "预算不实", AT)
    assert (rejected.use.state, rejected.use.reason) == (S.REJECTED, "预算不实")
    with pytest.raises(FailedPrecondition) as refused:
        domain.cancel(use(S.APPROVED), "撤回", AT)
    assert refused.value.reason == "USE_APPROVED"


# ---------------------------------------------------------------- opening uses


def accounts_of(*units: UnitAccount) -> dict[str, UnitAccount]:
    return {unit.unit_id: unit for unit in units}


PROJECT_ACCOUNTS = accounts_of(
    account("u1", 10_000, balance_fen=50_000, first_deposit_fen=50_000),
    account("u2", 20_000, balance_fen=50_000, first_deposit_fen=50_000),
    account("u3", 30_000, balance_fen=20_000, first_deposit_fen=50_000),
    account("x1", 10_000, project_id=OTHER_PROJECT, balance_fen=50_000),
)


def decision(**fields) -> Decision:
    defaults = dict(
        vote_id="150602-V0001",
        matter_id="M1",
        matter_type="USE_FUND",
        title="更换2号楼电梯",
        passed=True,
        amount_fen=90_000,
        unit_ids=(),
        decision_date=dt.date(2026, 5, 20),
    )
    return Decision(**{**defaults, **fields})


def test_a_passed_fund_decision_opens_a_use_for_the_whole_project():
    opened = domain.open_decided_use("U1", PROJECT, DISTRICT, decision(), PROJECT_ACCOUNTS, AT)
    assert opened.use.state is S.PENDING_APPROVAL
    assert opened.use.unit_ids == ("u1", "u2", "u3")
    assert opened.use.budget_fen == 90_000
    assert [e.type for e in opened.events] == [UseEventType.USE_OPENED]
    assert domain.is_published(opened.use)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"passed": False}, "DECISION_NOT_PASSED"),
        ({"matter_type": "RAISE_FUND"}, "NOT_A_FUND_USE"),
        ({"unit_ids": ("u1", "x1")}, "UNIT_OF_ANOTHER_PROJECT"),
        ({"unit_ids": ("u9",)}, "UNIT_HAS_NO_ACCOUNT"),
    ],
)
def test_a_use_without_a_passed_decision_for_own_units_is_refused(fields, reason):
    with pytest.raises(FailedPrecondition) as refused:
        domain.open_decided_use("U1", PROJECT, DISTRICT, decision(**fields), PROJECT_ACCOUNTS, AT)
    assert refused.value.reason == reason


def plain_weekdays(start: dt.date, days: int) -> dt.date:
    """Working days without holidays, for tests: Monday to Friday."""
    day = start
    while days:
        day += dt.timedelta(days=1)
        days -= day.weekday() < 5
    return day


def filing(**fields) -> EmergencyFiling:
    defaults = dict(
        title="2号楼电梯困人",
        kind=EmergencyKind.DANGEROUS_LIFT_FAULT,
        requester=EmergencyRequester.OWNERS_COMMITTEE,
        works_kind=WorksKind.COMMON_FACILITIES,
        budget_fen=80_000,
        unit_ids=("u1", "u2"),
        evidence=("photo-2026-06-05-01",),
    )
    return EmergencyFiling(**{**defaults, **fields})


def request(f: EmergencyFiling, draft: Use | None = None, rules: FundRules = RULES):
    return domain.request_emergency(
        "U2", PROJECT, DISTRICT, f, PROJECT_ACCOUNTS, rules, AT, FRIDAY, plain_weekdays, draft
    )


def test_an_emergency_request_notifies_owners_and_is_due_in_two_working_days():
    requested = request(filing())
    assert requested.use.state is S.PENDING_APPROVAL
    assert [e.type for e in requested.events] == [UseEventType.EMERGENCY_REQUESTED]
    # Friday's request is due on Tuesday.
    assert requested.use.emergency.approve_by == dt.date(2026, 6, 9)
    assert not domain.is_published(requested.use)
    urgent = request(filing(extremely_urgent=True))
    assert urgent.use.emergency.approve_by == FRIDAY


def test_an_emergency_request_names_everything_it_needs():
    with pytest.raises(InvalidArgument) as refused:
        request(
            filing(
                title="",
                kind=None,
                requester=None,
                works_kind=None,
                budget_fen=0,
                evidence=(),
                unit_ids=("u1", "u1"),
            )
        )
    assert [v.field for v in refused.value.violations] == [
        "title",
        "kind",
        "requester",
        "works_kind",
        "budget_fen",
        "evidence",
        "unit_ids",
    ]
    only_lifts = FundRules(emergency_kinds=frozenset({EmergencyKind.DANGEROUS_LIFT_FAULT}))
    with pytest.raises(InvalidArgument) as refused:
        request(filing(kind=EmergencyKind.ROOF_LEAK), rules=only_lifts)
    assert [v.field for v in refused.value.violations] == ["kind"]


def test_an_undecided_request_escalates_after_its_deadline_only():
    requested = request(filing()).use
    with pytest.raises(FailedPrecondition) as refused:
        domain.escalate(requested, dt.date(2026, 6, 9), AT)
    assert refused.value.reason == "USE_NOT_OVERDUE"
    escalated = domain.escalate(requested, dt.date(2026, 6, 10), AT)
    assert escalated.use.state is S.ESCALATED
    assert [e.type for e in escalated.events] == [UseEventType.EMERGENCY_ESCALATED]
    assert not domain.is_overdue(escalated.use, dt.date(2026, 6, 30))
    late = domain.approve(escalated.use, WorksKind.COMMON_FACILITIES, 80_000, RULES, AT)
    assert [e.type for e in late.events] == [UseEventType.EMERGENCY_APPROVED]


def test_a_draft_of_another_project_is_not_completed_here():
    drafted = domain.draft_from_alarm(
        "U3", OTHER_PROJECT, DISTRICT, "A1", "LOW_PRESSURE", ("x1",), RULES, AT
    )
    with pytest.raises(FailedPrecondition) as refused:
        request(filing(kind=EmergencyKind.FIRE_SYSTEM_FAULT), draft=drafted.use)
    assert refused.value.reason == "NOT_A_DRAFT_OF_PROJECT"


def test_a_fire_system_alarm_opens_a_draft_that_a_request_completes():
    assert (
        domain.draft_from_alarm(
            "U3", PROJECT, DISTRICT, "A1", "FIRE_LANE_BLOCKED", ("u1",), RULES, AT
        )
        is None
    )
    drafted = domain.draft_from_alarm(
        "U3", PROJECT, DISTRICT, "A1", "LOW_PRESSURE", ("u1", "u2", "u3"), RULES, AT
    )
    assert drafted.use.state is S.DRAFT
    assert drafted.use.emergency.kind is EmergencyKind.FIRE_SYSTEM_FAULT
    assert [e.type for e in drafted.events] == [UseEventType.EMERGENCY_DRAFTED]
    submitted = request(filing(kind=EmergencyKind.FIRE_SYSTEM_FAULT), draft=drafted.use)
    assert submitted.use.use_id == "U3"
    assert submitted.use.state is S.PENDING_APPROVAL
    assert submitted.use.emergency.alarm_id == "A1"
    assert [e.type for e in submitted.events] == [UseEventType.EMERGENCY_REQUESTED]


# ---------------------------------------------------------------- payments


def test_a_payment_is_apportioned_by_area_and_debited():
    paid = domain.pay_works(use(), 60_000, "e1", PROJECT_ACCOUNTS, RULES, AT)
    # Areas 1:2:3 of 60,000: 10,000, 20,000, 30,000; u3 holds only 20,000.
    assert [(s.unit_id, s.share_fen, s.debited_fen, s.owed_fen) for s in paid.payment.shares] == [
        ("u1", 10_000, 10_000, 0),
        ("u2", 20_000, 20_000, 0),
        ("u3", 30_000, 20_000, 10_000),
    ]
    balances = {a.unit_id: (a.balance_fen, a.owed_fen) for a in paid.accounts}
    assert balances == {"u1": (40_000, 0), "u2": (30_000, 0), "u3": (0, 10_000)}
    assert (paid.use.paid_fen, paid.use.owed_fen, paid.use.payments) == (60_000, 10_000, 1)
    assert [(e.type, e.payment) for e in paid.events] == [(UseEventType.WORKS_PAID, paid.payment)]
    assert paid.payment.entry.balanced
    assert domain.post(paid.payment.entry, balances_of()) == {
        LedgerAccount(AccountKind.BANK, PROJECT): 120_000 - 50_000,
        LedgerAccount(AccountKind.UNIT, PROJECT, "u1"): 40_000,
        LedgerAccount(AccountKind.UNIT, PROJECT, "u2"): 30_000,
        LedgerAccount(AccountKind.UNIT, PROJECT, "u3"): 0,
    }
    # u3 fell from 40% of its first deposit to nothing: its owner is asked to top up.
    assert [a.unit_id for a in paid.top_up_requested] == ["u3"]


def test_what_a_unit_owes_is_paid_from_a_later_balance_as_far_as_it_goes():
    paid = domain.pay_works(use(), 60_000, "e1", PROJECT_ACCOUNTS, RULES, AT)
    owing = accounts_of(*paid.accounts)["u3"]
    topped_up = replace(owing, balance_fen=4_000)
    partly, after_use, entry = domain.settle_owed(topped_up, paid.use, 10_000, "e2")
    assert (partly.balance_fen, partly.owed_fen, after_use.owed_fen) == (0, 6_000, 6_000)
    assert entry.balanced and entry.use_id == "U1"
    assert domain.post(entry, {domain.bank(PROJECT): 4_000, topped_up.ledger_account: 4_000}) == {
        domain.bank(PROJECT): 0,
        topped_up.ledger_account: 0,
    }
    assert domain.settle_owed(partly, after_use, 6_000, "e3") == (partly, after_use, None)
    with pytest.raises(FailedPrecondition) as refused:
        domain.settle_owed(PROJECT_ACCOUNTS["x1"], paid.use, 0, "e4")
    assert refused.value.reason == "UNIT_NOT_CHARGED_BY_USE"


def balances_of() -> dict[LedgerAccount, int]:
    units = [a for a in PROJECT_ACCOUNTS.values() if a.project_id == PROJECT]
    return {domain.bank(PROJECT): sum(a.balance_fen for a in units)} | {
        a.ledger_account: a.balance_fen for a in units
    }


def test_payments_never_exceed_the_approved_budget():
    first = domain.pay_works(use(), 70_000, "e1", PROJECT_ACCOUNTS, RULES, AT).use
    with pytest.raises(FailedPrecondition) as refused:
        domain.pay_works(first, 30_001, "e2", PROJECT_ACCOUNTS, RULES, AT)
    assert refused.value.reason == "PAYMENT_OVER_BUDGET"
    rest = domain.pay_works(first, 30_000, "e2", PROJECT_ACCOUNTS, RULES, AT)
    assert rest.use.paid_fen == 100_000


def test_an_emergencys_first_payment_is_at_most_its_share_of_the_budget():
    emergency = use(origin=UseOrigin.EMERGENCY, budget_fen=100_001)
    # 60% of 100,001 fen is 60,000.6: 60,000 may be paid first, 60,001 not.
    with pytest.raises(FailedPrecondition) as refused:
        domain.pay_works(emergency, 60_001, "e1", PROJECT_ACCOUNTS, RULES, AT)
    assert refused.value.reason == "FIRST_PAYMENT_OVER_LIMIT"
    first = domain.pay_works(emergency, 60_000, "e1", PROJECT_ACCOUNTS, RULES, AT).use
    second = domain.pay_works(first, 40_001, "e2", PROJECT_ACCOUNTS, RULES, AT).use
    assert second.paid_fen == 100_001
    # A decided use has no first-payment limit.
    assert domain.pay_works(use(), 100_000, "e1", PROJECT_ACCOUNTS, RULES, AT).use.payments == 1


@pytest.mark.parametrize("state", [s for s in UseState if s is not S.APPROVED])
def test_only_an_approved_use_is_paid(state):
    with pytest.raises(FailedPrecondition) as refused:
        domain.pay_works(use(state), 1, "e1", PROJECT_ACCOUNTS, RULES, AT)
    assert refused.value.reason == f"USE_{state.value}"


def test_a_payment_charging_another_projects_unit_is_refused():
    with pytest.raises(FailedPrecondition) as refused:
        domain.pay_works(use(unit_ids=("u1", "x1")), 100, "e1", PROJECT_ACCOUNTS, RULES, AT)
    assert refused.value.reason == "UNIT_OF_ANOTHER_PROJECT"


def test_completion_pays_the_rest_of_a_final_cost_within_the_tolerance():
    paid = domain.pay_works(use(), 60_000, "e1", PROJECT_ACCOUNTS, RULES, AT)
    # 10% over the 100,000 budget is allowed; the settlement pays 110,000 - 60,000.
    done = domain.complete(paid.use, 110_000, "e2", accounts_of(*paid.accounts), RULES, AT)
    assert done.use.state is S.COMPLETED
    assert (done.use.final_cost_fen, done.use.paid_fen) == (110_000, 110_000)
    assert done.payment.amount_fen == 50_000 and done.payment.stage == 2
    assert [e.type for e in done.events] == [UseEventType.WORKS_PAID, UseEventType.USE_COMPLETED]
    exact = domain.complete(paid.use, 60_000, "e2", PROJECT_ACCOUNTS, RULES, AT)
    assert exact.payment is None and exact.use.state is S.COMPLETED


def test_a_final_cost_over_the_tolerance_waits_for_a_new_approval():
    over = domain.complete(use(), 110_001, "e1", PROJECT_ACCOUNTS, RULES, AT)
    assert over.use.state is S.REAPPROVAL_REQUIRED and over.payment is None
    assert [e.type for e in over.events] == [UseEventType.REAPPROVAL_REQUIRED]
    again = domain.approve(over.use, WorksKind.COMMON_PARTS, 110_001, RULES, AT).use
    done = domain.complete(again, 110_001, "e1", PROJECT_ACCOUNTS, RULES, AT)
    assert done.use.state is S.COMPLETED and done.use.paid_fen == 110_001
    with pytest.raises(InvalidArgument):
        domain.complete(done.use, 100, "e2", PROJECT_ACCOUNTS, RULES, AT)


# ---------------------------------------------------------------- the ledger


def test_a_districts_interest_is_one_balanced_entry_per_project():
    accounts = accounts_of(*PROJECT_ACCOUNTS.values())
    parts = domain.allocate_interest(1_001, {u: a.balance_fen for u, a in accounts.items()})
    entries = domain.interest_entries("I2026", "2026", parts, accounts)
    assert [(e.entry_id, e.project_id) for e in entries] == [
        (f"I2026-{PROJECT}", PROJECT),
        (f"I2026-{OTHER_PROJECT}", OTHER_PROJECT),
    ]
    assert all(e.balanced and e.period == "2026" for e in entries)
    credited = domain.ledger_balances(entries)
    assert sum(credited[domain.bank(p)] for p in (PROJECT, OTHER_PROJECT)) == 1_001
    assert credited[accounts["x1"].ledger_account] == parts["x1"]


def test_a_reversal_negates_its_entry_once_and_never_overdraws():
    start = account("u1", balance_fen=0)
    after, deposit, _ = domain.record_deposit(
        start, DepositKind.TOP_UP, "e1", RULES, amount_fen=500
    )
    undo = domain.reversal(deposit, "e2", "录入错误", reversed_ids=())
    assert undo.reverses == "e1" and undo.kind is EntryKind.REVERSAL
    assert [p.amount_fen for p in undo.postings] == [-p.amount_fen for p in deposit.postings]
    assert domain.ledger_balances([deposit, undo]) == {
        domain.bank(PROJECT): 0,
        after.ledger_account: 0,
    }
    with pytest.raises(FailedPrecondition) as refused:
        domain.reversal(deposit, "e3", "again", reversed_ids={"e1"})
    assert refused.value.reason == "ENTRY_REVERSED"
    with pytest.raises(FailedPrecondition) as refused:
        domain.reversal(undo, "e3", "again", reversed_ids=())
    assert refused.value.reason == "ENTRY_IS_REVERSAL"
    # The deposit was spent: reversing it would overdraw the unit.
    with pytest.raises(FailedPrecondition) as refused:
        domain.post(undo, {domain.bank(PROJECT): 200, after.ledger_account: 200})
    assert refused.value.reason == "INSUFFICIENT_BALANCE"


def test_reconcile_finds_every_kind_of_drift():
    after, deposit, _ = domain.record_deposit(account(), DepositKind.TOP_UP, "e1", RULES, 700)
    sound = domain.reconcile([deposit], [after])
    assert sound.reconciled and sound.book_balance_fen == sound.unit_balances_fen == 700
    drifted = domain.reconcile([deposit], [replace(after, balance_fen=701)])
    assert not drifted.reconciled
    assert drifted.projects[0].drifted_unit_ids == ("u1",)
    assert (drifted.projects[0].book_balance_fen, drifted.projects[0].unit_balances_fen) == (
        700,
        701,
    )
    lopsided = replace(deposit, entry_id="e2", postings=(Posting(domain.bank(PROJECT), 5),))
    broken = domain.reconcile([deposit, lopsided], [after])
    assert broken.unbalanced_entry_ids == ("e2",) and not broken.reconciled
    statement = domain.reconcile([deposit], [after], bank_statements={PROJECT: 699})
    assert not statement.reconciled
    assert domain.reconcile([deposit], [after], bank_statements={PROJECT: 700}).reconciled
    forgotten = domain.reconcile([deposit], [])
    assert forgotten.projects[0].drifted_unit_ids == ("u1",)


UNITS = [
    account(f"{project[-1]}{n}", area, project_id=project)
    for project in (PROJECT, OTHER_PROJECT)
    for n, area in enumerate((893_700, 1_205_000, 640_050, 1_000_000))
]
operations = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.integers(0, 7), st.integers(1, 10**7)),
        st.tuples(st.just("interest"), st.sampled_from(["city", PROJECT]), st.integers(0, 10**5)),
        st.tuples(st.just("pay"), st.integers(0, 1), st.integers(1, 10**7)),
        st.tuples(st.just("reverse"), st.integers(0, 10**6), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_the_ledger_reconciles_after_any_sequence_of_operations(ops):
    accounts = {unit.unit_id: unit for unit in UNITS}
    entries: list[domain.Entry] = []
    reversed_ids: set[str] = set()
    uses = [
        use(
            use_id=f"U{n}",
            project_id=project,
            unit_ids=tuple(sorted(u.unit_id for u in UNITS if u.project_id == project)),
            budget_fen=10**12,
        )
        for n, project in enumerate((PROJECT, OTHER_PROJECT))
    ]

    def apply(entry: domain.Entry) -> None:
        posted = domain.post(entry, domain.ledger_balances(entries))
        entries.append(entry)
        for ledger_account, balance in posted.items():
            if ledger_account.kind is AccountKind.UNIT:
                unit = accounts[ledger_account.unit_id]
                accounts[unit.unit_id] = replace(unit, balance_fen=balance)

    for n, (op, target, amount) in enumerate(ops):
        entry_id = f"e{n}"
        if op == "deposit":
            unit = accounts[UNITS[target].unit_id]
            _, entry, _ = domain.record_deposit(unit, DepositKind.TOP_UP, entry_id, RULES, amount)
            apply(entry)
        elif op == "interest":
            scope = [a for a in accounts.values() if target in ("city", a.project_id)]
            balances = {a.unit_id: a.balance_fen for a in scope}
            if not any(balances.values()):
                continue
            parts = domain.allocate_interest(amount, balances)
            for entry in domain.interest_entries(entry_id, "2026", parts, accounts):
                apply(entry)
        elif op == "pay":
            paid = domain.pay_works(uses[target], amount, entry_id, accounts, RULES, AT)
            uses[target] = paid.use
            if paid.payment.entry is not None:
                domain.post(paid.payment.entry, domain.ledger_balances(entries))
                entries.append(paid.payment.entry)
            accounts.update((a.unit_id, a) for a in paid.accounts)
            assert paid.payment.debited_fen + paid.payment.owed_fen == amount
        elif entries:
            original = entries[target % len(entries)]
            try:
                undo = domain.reversal(original, entry_id, "更正", reversed_ids)
                apply(undo)
            except FailedPrecondition as refused:
                assert refused.reason in {
                    "ENTRY_REVERSED",
                    "ENTRY_IS_REVERSAL",
                    "INSUFFICIENT_BALANCE",
                }
                continue
            reversed_ids.add(original.entry_id)
        result = domain.reconcile(entries, accounts.values())
        assert result.reconciled, result
        assert all(a.balance_fen >= 0 for a in accounts.values())
    result = domain.reconcile(entries, accounts.values())
    assert result.reconciled
    assert result.book_balance_fen == sum(a.balance_fen for a in accounts.values())


# ---------------------------------------------------------------- at scale (correctness only)


def test_a_large_project_apportions_exactly():
    rnd = random.Random(20260605)
    areas = {f"u{n:05d}": rnd.randint(300_000, 2_000_000) for n in range(20_000)}
    parts = domain.apportion(987_654_321, areas)
    assert sum(parts.values()) == 987_654_321
    whole = sum(areas.values())
    assert all(abs(parts[u] - Fraction(987_654_321 * a, whole)) < 1 for u, a in areas.items())
