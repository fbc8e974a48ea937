"""Rules of tenders: the state machine (every step from every state), scoring, the flags of an
abnormally low price, the committee's rules and its draw, and its verifier."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st

from wuye.core.errors import FailedPrecondition, InvalidArgument, Violations
from wuye.tenders import domain, verify
from wuye.tenders.api import tender_message
from wuye.tenders.domain import (
    Bid,
    BidContent,
    CreditStanding,
    Expert,
    Periods,
    State,
    Step,
    Tender,
    Weights,
)
from wuye.tenders.v1 import tenders_service_pb2 as pb

NOW = dt.datetime(2026, 12, 3, 8, tzinfo=dt.UTC)
CODES = [f"91150602MA0{n:06d}X" for n in range(40)]
PERIODS = Periods(
    min_tendering=dt.timedelta(days=20),
    enquiry=dt.timedelta(days=10),
    change_notice=dt.timedelta(days=15),
    standstill_working_days=3,
    standstill_shortest=dt.timedelta(0),
    filing=dt.timedelta(days=15),
    contract=dt.timedelta(days=30),
)


def tender(state: State = State.DRAFT, **changes) -> Tender:
    base = Tender(
        tender_id="150602-Tabc",
        district_code="150602",
        project_id="150602-P1",
        buyer="developer",
        title="前期物业服务",
        scope="住宅",
        service_standard="二级",
        max_price_fen=1_000_000,
        weights=Weights(40, 40, 20),
        price_method="LOWEST_FULL_MARKS",
        documents_hash="0" * 64,
        committee_size=5,
        representatives=("rep-1",),
        state=state,
        created_at=NOW,
    )
    return replace(base, **changes) if changes else base


# ---------------------------------------------------------------- the state machine


@pytest.mark.parametrize(("state", "step"), list(itertools.product(State, Step)))
def test_every_step_from_every_state_is_allowed_exactly_as_the_table_says(state, step) -> None:
    allowed = domain.TRANSITIONS.get((state, step))
    if allowed is None:
        with pytest.raises(FailedPrecondition) as refused:
            domain.transition(tender(state), step)
        assert refused.value.reason == f"TENDER_{state.value}"
    else:
        assert domain.transition(tender(state), step).state is allowed


def test_the_table_is_prozorros_life() -> None:
    path = [Step.PUBLISH, Step.END_ENQUIRIES, Step.OPEN, Step.DRAW_COMMITTEE, Step.AWARD]
    t = tender()
    for step in [*path, Step.COMPLETE]:
        t = domain.transition(t, step)
    assert t.state is State.COMPLETE
    terminal = {State.COMPLETE, State.CANCELLED}
    assert not [key for key in domain.TRANSITIONS if key[0] in terminal]
    # Cancelled from every live state, never from an ended one.
    cancellable = {s for (s, step) in domain.TRANSITIONS if step is Step.CANCEL}
    assert cancellable == set(State) - {State.COMPLETE, State.CANCELLED, State.UNSUCCESSFUL}


@pytest.mark.parametrize("step", list(Step))
def test_a_suspended_tender_moves_only_by_its_complaints_decision(step) -> None:
    suspended = tender(State.AWARDED, suspended=True)
    if step in (Step.REEVALUATE, Step.CANCEL):
        assert domain.transition(suspended, step).state in (State.EVALUATION, State.CANCELLED)
    else:
        with pytest.raises(FailedPrecondition) as refused:
            domain.transition(suspended, step)
        assert refused.value.reason == "TENDER_SUSPENDED"


def test_timers_end_enquiries_open_at_the_deadline_and_stop_while_suspended() -> None:
    t = tender(State.ENQUIRIES, enquiry_end=NOW, bid_deadline=NOW + dt.timedelta(days=1))
    assert domain.due_step(t, NOW - dt.timedelta(seconds=1)) is None
    assert domain.due_step(t, NOW) is Step.END_ENQUIRIES
    t = domain.transition(t, Step.END_ENQUIRIES)
    assert domain.next_due(t) == t.bid_deadline
    assert domain.due_step(t, t.bid_deadline) is Step.OPEN
    assert domain.due_step(replace(t, suspended=True), t.bid_deadline) is None


def test_missed_deadlines_are_flagged_once_and_not_while_suspended() -> None:
    awarded = tender(State.AWARDED, winner=CODES[0], **domain.award_dates(NOW, NOW, PERIODS))
    later = NOW + dt.timedelta(days=31)
    assert domain.missed_deadlines(awarded, later) == ["FILING", "CONTRACT"]
    assert domain.missed_deadlines(replace(awarded, missed=("FILING",)), later) == ["CONTRACT"]
    assert domain.missed_deadlines(replace(awarded, suspended=True), later) == []
    assert domain.missed_deadlines(awarded, NOW + dt.timedelta(days=16)) == ["FILING"]


# ---------------------------------------------------------------- dates


def test_a_deadline_closer_than_the_minimum_tendering_period_is_refused() -> None:
    v = Violations()
    domain.publication_dates(NOW, NOW + dt.timedelta(days=19), PERIODS, v, "bid_deadline")
    with pytest.raises(InvalidArgument) as refused:
        v.raise_if_any()
    assert "at least 20 days" in refused.value.message
    v = Violations()
    end = domain.publication_dates(NOW, NOW + dt.timedelta(days=20), PERIODS, v, "bid_deadline")
    assert not v and end == NOW + dt.timedelta(days=10)


def test_zero_periods_let_a_tender_run_at_once() -> None:
    zero = Periods(*(dt.timedelta(0),) * 3, 0, *(dt.timedelta(0),) * 3)
    v = Violations()
    end = domain.publication_dates(NOW, NOW + dt.timedelta(seconds=5), zero, v, "bid_deadline")
    assert not v and end == NOW


def test_a_late_change_to_the_documents_moves_the_deadline() -> None:
    deadline = NOW + dt.timedelta(days=10)
    assert domain.amended_deadline(NOW, deadline, PERIODS) == NOW + dt.timedelta(days=15)
    early = NOW + dt.timedelta(days=16)
    assert domain.amended_deadline(NOW, early, PERIODS) == early


def test_bids_after_the_deadline_or_over_the_maximum_are_refused() -> None:
    t = tender(State.TENDERING, bid_deadline=NOW)
    with pytest.raises(FailedPrecondition) as late:
        domain.check_bid_window(t, NOW)
    assert late.value.reason == "BID_DEADLINE_PASSED"
    domain.check_bid_window(t, NOW - dt.timedelta(seconds=1))
    v = Violations()
    domain.check_price(1_000_001, 1_000_000, v, "price_fen")
    assert v


# ---------------------------------------------------------------- credit at bid time


def standing(grade: str = "A", score: str = "75", **changes) -> CreditStanding:
    values = {
        "grade": grade,
        "score": Decimal(score),
        "filed": True,
        "blacklisted": False,
        "serious_records": 0,
        "explanation": f"base 70.0 + good 5.0 - bad 0.0 = {score} -> {grade}",
    }
    return CreditStanding(**{**values, **changes})


def test_blacklisted_and_unfiled_enterprises_are_refused_with_their_grade() -> None:
    with pytest.raises(FailedPrecondition) as black:
        domain.check_may_bid(CODES[0], standing("C", "55", blacklisted=True))
    assert black.value.reason == "BIDDER_BLACKLISTED" and "grade C" in black.value.message
    with pytest.raises(FailedPrecondition) as serious:
        domain.check_may_bid(CODES[0], standing("B", "65", blacklisted=True, serious_records=1))
    assert "1 serious record" in serious.value.message and "grade B" in serious.value.message
    with pytest.raises(FailedPrecondition) as unfiled:
        domain.check_may_bid(CODES[0], standing("C_UNFILED", "0", filed=False))
    assert unfiled.value.reason == "BIDDER_UNFILED"
    domain.check_may_bid(CODES[0], standing())


# ---------------------------------------------------------------- sealed bids


def test_a_receipt_is_the_hash_of_the_sealed_content_which_round_trips() -> None:
    content = BidContent("150602-T1", CODES[0], 900_000, ("a" * 64,), 12, "ff" * 16)
    text = content.sealed_text()
    assert BidContent.from_text(text) == content
    assert domain.receipt_of(text) == hashlib.sha256(text).hexdigest()
    other = replace(content, salt="ee" * 16)
    assert domain.receipt_of(other.sealed_text()) != domain.receipt_of(text)


def test_prozorros_flags_of_an_abnormally_low_price() -> None:
    below = Fraction(40, 100), Fraction(30, 100)
    assert domain.abnormally_low({"a": 100, "b": 100, "c": 100}, *below) == set()
    # 50 is 50% under the others' average.
    assert domain.abnormally_low({"a": 50, "b": 100, "c": 100}, *below) == {"a"}
    # 65 is 35% under the next price (100), but not 40% under the average of the others (110).
    assert domain.abnormally_low({"a": 65, "b": 100, "c": 120}, *below) == {"a"}
    assert domain.abnormally_low({"a": 75, "b": 100, "c": 100}, *below) == set()


# ---------------------------------------------------------------- scoring


def opened(code: str, price: int, score: str = "75", at: int = 0) -> Bid:
    return Bid(
        credit_code=code,
        receipt="r",
        submitted_at=NOW + dt.timedelta(seconds=at),
        content=BidContent("150602-T1", code, price, ("a" * 64,), 10, "00"),
        standing=standing(score=score),
    )


def test_the_score_weighs_price_technical_plan_and_credit() -> None:
    bids = [opened(CODES[0], 800_000, "90"), opened(CODES[1], 1_000_000, "70")]
    scores = {CODES[0]: {"m1": Decimal(60)}, CODES[1]: {"m1": Decimal(100)}}
    ranked = domain.rank(bids, scores, Weights(40, 40, 20), "LOWEST_FULL_MARKS")
    by_code = {r.credit_code: r for r in ranked}
    first, second = by_code[CODES[0]], by_code[CODES[1]]
    assert first.price_score == 100 and second.price_score == 80
    assert first.technical_score == 60 and second.technical_score == 100
    assert first.credit_score == 90 and second.credit_score == 70
    assert first.total == Fraction(40 * 100 + 40 * 60 + 20 * 90, 100)
    assert second.total == Fraction(40 * 80 + 40 * 100 + 20 * 70, 100)
    assert [r.credit_code for r in ranked] == [CODES[1], CODES[0]]
    # Only price counts: the cheaper wins.
    assert (
        domain.rank(bids, scores, Weights(100, 0, 0), "LOWEST_FULL_MARKS")[0].credit_code
        == (CODES[0])
    )


def test_the_technical_score_is_the_members_mean_and_rejected_bids_are_not_ranked() -> None:
    rejected = replace(opened(CODES[2], 500_000), rejection="blacklisted")
    bids = [opened(CODES[0], 800_000), rejected]
    scores = {CODES[0]: {"m1": Decimal("70.5"), "m2": Decimal(80)}}
    (only,) = domain.rank(bids, scores, Weights(0, 100, 0), "LOWEST_FULL_MARKS")
    assert only.technical_score == Fraction(1505, 20) and only.scored_by == 2
    assert domain.rank([rejected], {}, Weights(0, 100, 0), "LOWEST_FULL_MARKS") == []


def test_ties_go_to_the_higher_credit_then_the_lower_price_then_the_earlier_bid() -> None:
    w = Weights(0, 100, 0)
    same = {c: {"m": Decimal(80)} for c in CODES[:3]}
    ranked = domain.rank(
        [opened(CODES[0], 900, "70", 2), opened(CODES[1], 900, "80", 3), opened(CODES[2], 800)],
        same,
        w,
        "LOWEST_FULL_MARKS",
    )
    assert [r.credit_code for r in ranked] == [CODES[1], CODES[2], CODES[0]]
    early_late = domain.rank(
        [opened(CODES[0], 900, at=5), opened(CODES[1], 900, at=1)], same, w, "LOWEST_FULL_MARKS"
    )
    assert [r.credit_code for r in early_late] == [CODES[1], CODES[0]]


def test_credit_counts_within_0_and_100_and_weights_add_up_to_100() -> None:
    assert domain.credit_score(standing(score="105")) == 100
    assert domain.credit_score(standing(score="-3")) == 0
    v = Violations()
    domain.check_weights(Weights(50, 40, 20), v, "weights")
    assert v
    v = Violations()
    domain.check_weights(Weights(50, 30, 20), v, "weights")
    assert not v


def test_the_award_waits_for_every_members_score() -> None:
    t = tender(State.EVALUATION, committee_size=2)
    half = domain.rank(
        [opened(CODES[0], 900)], {CODES[0]: {"m1": 1}}, Weights(40, 40, 20), "LOWEST_FULL_MARKS"
    )
    with pytest.raises(FailedPrecondition) as refused:
        domain.winner_of(t, half)
    assert refused.value.reason == "EVALUATION_INCOMPLETE"


# ---------------------------------------------------------------- the committee


@pytest.mark.parametrize(
    ("size", "representatives", "ok"),
    [
        (5, 1, True),
        (5, 0, True),
        (5, 2, False),
        (4, 0, False),
        (3, 0, False),
        (7, 2, True),
        (9, 3, True),
        (9, 4, False),
    ],
)
def test_a_committee_has_5_or_more_an_odd_number_and_two_thirds_experts(
    size, representatives, ok
) -> None:
    v = Violations()
    domain.check_committee(size, representatives, 5, Fraction(2, 3), v, "committee_size")
    assert (not v) is ok


def pool_of(n: int, conflicted: dict[int, str] | None = None) -> list[Expert]:
    conflicted = conflicted or {}
    return [
        Expert(
            f"expert-{i:02d}", ("物业",), ("150602",), (conflicted[i],) if i in conflicted else ()
        )
        for i in range(n)
    ]


def test_same_seed_and_lists_give_the_same_committee_and_another_seed_another() -> None:
    lists = domain.committee_lists(tender(), CODES[:3], pool_of(30))
    seed = bytes(range(32))
    assert domain.draw_committee(seed, lists) == domain.draw_committee(
        seed, json.loads(json.dumps(lists))
    )
    assert len(domain.draw_committee(seed, lists)) == 4
    others = {domain.draw_committee(bytes([n]) * 32, lists) for n in range(5)}
    assert len(others) > 1


@given(
    seed=st.binary(min_size=32, max_size=32),
    conflicted=st.dictionaries(st.integers(0, 11), st.sampled_from(CODES[:4]), max_size=6),
)
def test_an_expert_in_conflict_with_a_bidder_is_never_drawn(seed, conflicted) -> None:
    lists = domain.committee_lists(
        tender(committee_size=5, representatives=()), CODES[:3], pool_of(12, conflicted)
    )
    drawn = domain.draw_committee(seed, lists)
    blocked = {f"expert-{i:02d}" for i, code in conflicted.items() if code in CODES[:3]}
    assert len(drawn) == 5 and not blocked & set(drawn)


def test_too_few_eligible_experts_is_refused_and_other_districts_do_not_count() -> None:
    outside = [Expert("far", (), ("150603",), ())]
    lists = domain.committee_lists(tender(), CODES[:3], [*pool_of(3), *outside])
    assert [e[0] for e in lists["pool"]] == ["expert-00", "expert-01", "expert-02"]
    with pytest.raises(FailedPrecondition) as refused:
        domain.draw_committee(bytes(32), lists)
    assert refused.value.reason == "NOT_ENOUGH_EXPERTS"


def test_the_verifier_recomputes_a_drawn_committee_and_refuses_a_changed_one(
    tmp_path, capsys
) -> None:
    lists = domain.committee_lists(tender(), CODES[:3], pool_of(10, {0: CODES[1]}))
    seed = bytes(range(32))
    commitment = domain.commitment(seed, lists)
    experts = domain.draw_committee(seed, lists)
    assert domain.verify_committee(seed, commitment, lists, experts, commitment) == []
    swapped = (*experts[:-1], "expert-00")
    assert domain.verify_committee(seed, commitment, lists, swapped, commitment)
    assert domain.verify_committee(bytes(32), commitment, lists, experts, None)

    drawn = tender(
        State.EVALUATION,
        seed=seed.hex(),
        seed_commitment=commitment,
        committed_at=NOW,
        lists=lists,
        experts=experts,
    )
    export = tmp_path / "tender.json"
    export.write_text(json_format.MessageToJson(pb.GetTenderResponse(tender=tender_message(drawn))))
    assert verify.main([str(export), "--commitment", commitment]) == 0
    assert capsys.readouterr().out.startswith("VERIFIED:")
    assert verify.main([str(export), "--commitment", "a" * 64]) == 1
    assert "published at the bid deadline" in capsys.readouterr().out
    export.write_text("[]")
    assert verify.main([str(export)]) == 2
