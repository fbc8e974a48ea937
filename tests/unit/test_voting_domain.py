"""Rules of owners' voting (wuye.voting.domain): who is on the roll, the hash-chained log, and the
Art. 278 count at every boundary, held by hypothesis to a slow reference written apart from it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wuye.core.errors import FailedPrecondition, InvalidArgument, Violations
from wuye.voting import domain
from wuye.voting.domain import (
    Channel,
    Choice,
    CountingRules,
    LogEntry,
    Matter,
    MatterClass,
    MatterDraft,
    MatterType,
    RollUnit,
    Threshold,
    Voter,
    VoteRules,
    VoteSpec,
    VoteState,
)

YES, NO, ABSTAIN = Choice.YES, Choice.NO, Choice.ABSTAIN
OPEN = dt.datetime(2026, 6, 1, 1, 0, tzinfo=dt.UTC)
CLOSE = OPEN + dt.timedelta(days=14)
SPECIAL = Matter("M1", MatterType.RAISE_FUND, MatterClass.SPECIAL, "续筹维修资金", "每平方米 30 元")
ORDINARY = Matter("M2", MatterType.HIRE_ENTERPRISE, MatterClass.ORDINARY, "续聘物业", "续聘三年")


DEFAULT_RULES = CountingRules()


def vote(
    rules: CountingRules = DEFAULT_RULES, matters: tuple[Matter, ...] = (SPECIAL, ORDINARY)
) -> VoteSpec:
    return VoteSpec(
        vote_id="150602-V0123456789ab",
        project_id="150602-P00000001",
        district_code="150602",
        title="2026 年业主共同决定",
        open_time=OPEN,
        close_time=CLOSE,
        rules=rules,
        matters=matters,
    )


def owners(*areas: int, vote_id: str = "150602-V0123456789ab") -> tuple[Voter, ...]:
    """One unit per owner; owner n holds areas[n] cm². Ordered as the areas are given."""
    name = domain.pseudonymizer(b"pii key", vote_id).key_of
    units = [RollUnit(f"U{n}", area, f"owner-{n}") for n, area in enumerate(areas)]
    by_key = {v.owner_keys[0]: v for v in domain.build_roll(units, name)}
    return tuple(by_key[f"owner-{n}"] for n in range(len(areas)))


def log(
    spec: VoteSpec, roll: tuple[Voter, ...], ballots: list[tuple[Voter, dict[str, Choice]]]
) -> list[LogEntry]:
    """The chained log of `ballots`, one minute apart, in the given order."""
    head = domain.roll_digest(spec, domain.published_roll(roll))
    entries = []
    for n, (voter, choices) in enumerate(ballots, start=1):
        entry = domain.append_ballot(
            spec,
            head,
            n,
            voter,
            tuple(choices.items()),
            OPEN + dt.timedelta(minutes=n),
            Channel.ONLINE,
        )
        entries.append(entry)
        head = entry.entry_hash
    return entries


def tally(spec: VoteSpec, roll: tuple[Voter, ...], ballots) -> domain.VoteResult:
    return domain.count(spec, domain.published_roll(roll), log(spec, roll, ballots))


def matter_result(spec, roll, ballots, matter_id="M1") -> domain.MatterResult:
    result = tally(spec, roll, ballots)
    return next(m for m in result.matters if m.matter_id == matter_id)


# ---------------------------------------------------------------- thresholds


def test_inclusive_threshold_is_met_at_the_fraction_itself():
    two_thirds = Threshold(Fraction(2, 3), inclusive=True)
    assert two_thirds.met(2, 3)
    assert two_thirds.met(200, 300)
    assert not two_thirds.met(199, 300)


def test_strict_threshold_is_not_met_at_the_fraction_itself():
    half = Threshold(Fraction(1, 2), inclusive=False)
    assert not half.met(1, 2)
    assert half.met(50_001, 100_000)


def test_threshold_compares_exactly_where_a_float_would_round():
    # 2/3 of 3 * 10**17 + 1 is not an integer; as floats both sides round to the same value.
    whole = 3 * 10**17 + 1
    just_under = 2 * 10**17
    assert just_under / whole == pytest.approx(2 / 3, abs=1e-15)
    assert not Threshold(Fraction(2, 3), True).met(just_under, whole)
    assert Threshold(Fraction(2, 3), True).met(just_under + 1, whole)


@pytest.mark.parametrize("text", ["2/4", "0/3", "4/3", "2/3 ", "+2/3", "2.0/3", "", "1/0"])
def test_a_fraction_not_as_published_is_refused(text):
    with pytest.raises(ValueError):
        domain.parse_fraction(text)


@pytest.mark.parametrize("text", ["2/3", "3/4", "1/2", "1/1"])
def test_a_fraction_as_published_reads_back(text):
    assert domain.format_fraction(domain.parse_fraction(text)) == text


# ---------------------------------------------------------------- the roll


def test_one_buyer_of_several_units_is_one_owner_with_their_summed_area():
    units = [
        RollUnit("U1", 8_937_00, "buyer-a"),
        RollUnit("U2", 12_050_00, "buyer-a"),
        RollUnit("U3", 3_000_00, "buyer-a"),
        RollUnit("U4", 9_000_00, "buyer-b"),
    ]
    roll = domain.build_roll(units, lambda identity: f"p-{identity}")
    assert {(v.owner_keys, v.area_cm2, v.unit_ids) for v in roll} == {
        (("buyer-a",), 23_987_00, ("U1", "U2", "U3")),
        (("buyer-b",), 9_000_00, ("U4",)),
    }


def test_the_developers_unsold_units_are_one_owner_whatever_their_keys():
    units = [
        RollUnit("U1", 100_00, "dev-key-1", developer_unsold=True),
        RollUnit("U2", 200_00, "dev-key-2", developer_unsold=True),
        RollUnit("U3", 300_00, "dev-key-1", developer_unsold=True),
        RollUnit("U4", 400_00, "buyer"),
    ]
    roll = domain.build_roll(units, lambda identity: f"p-{identity}")
    developer = next(v for v in roll if "dev-key-1" in v.owner_keys)
    assert developer.owner_keys == ("dev-key-1", "dev-key-2")
    assert developer.area_cm2 == 600_00
    assert len(roll) == 2


def test_the_developer_counts_once_by_headcount_in_the_count():
    units = [RollUnit(f"D{n}", 100, "dev", developer_unsold=True) for n in range(5)]
    units.append(RollUnit("U1", 100, "buyer"))
    roll = domain.build_roll(units, domain.pseudonymizer(b"k", "v").key_of)
    developer = next(v for v in roll if v.owner_keys == ("dev",))
    result = matter_result(vote(), roll, [(developer, {"M1": YES})])
    assert (result.participating_owners, result.participating_area_cm2) == (1, 500)
    assert result.yes_owners == 1
    assert domain.count(vote(), domain.published_roll(roll), []).roll_owners == 2


def test_pseudonyms_are_keyed_per_vote_and_hide_the_owner_key():
    first = domain.pseudonymizer(b"pii key", "150602-V1").key_of("owner-key")
    assert first == domain.pseudonymizer(b"pii key", "150602-V1").key_of("owner-key")
    assert first != domain.pseudonymizer(b"pii key", "150602-V2").key_of("owner-key")
    assert first != domain.pseudonymizer(b"another key", "150602-V1").key_of("owner-key")
    assert first not in hashlib.sha256(b"owner-key").hexdigest()
    assert "owner-key" not in first


def test_a_unit_without_area_cannot_be_on_a_roll():
    with pytest.raises(ValueError, match="U9"):
        domain.build_roll([RollUnit("U9", 0, "k")], str)


def test_the_roll_digest_covers_parameters_matters_rules_and_weights():
    roll = domain.published_roll(owners(100, 200))
    digest = domain.roll_digest(vote(), roll)
    heavier = domain.published_roll([*roll[:1], domain.RollEntry(roll[1].pseudonym, 201)])
    reworded = dataclasses.replace(SPECIAL, text="每平方米 31 元")
    assert digest != domain.roll_digest(vote(), heavier)
    assert digest != domain.roll_digest(vote(matters=(reworded, ORDINARY)), roll)
    assert digest != domain.roll_digest(vote(CountingRules(non_voters_follow_majority=True)), roll)
    assert digest == domain.roll_digest(vote(), tuple(reversed(roll)))


# ---------------------------------------------------------------- the log


def test_each_entry_links_to_the_one_before_and_the_first_to_the_roll_digest():
    spec, roll = vote(), owners(100, 200)
    entries = log(spec, roll, [(roll[0], {"M1": YES}), (roll[1], {"M1": NO})])
    assert entries[0].previous_hash == domain.roll_digest(spec, domain.published_roll(roll))
    assert entries[1].previous_hash == entries[0].entry_hash
    assert [e.entry_hash == domain.entry_hash(spec.vote_id, e) for e in entries] == [True, True]


def test_an_entry_hashes_to_the_digest_logs_already_published_carry():
    """Receipts handed out and logs exported stay valid only while these bytes stay the same."""
    entry = LogEntry(
        sequence=7,
        pseudonym='p"seudo\\nymé\n',
        area_cm2=12_345_600,
        choices=(("M1", YES), ("M2", ABSTAIN)),
        cast_time=dt.datetime(2026, 6, 1, 1, 0, 0, 1, tzinfo=dt.UTC),
        channel=Channel.PAPER,
        paper_reference="纸质表决票 第 017 号\t\x01",
        previous_hash="ab" * 32,
        entry_hash="",
    )
    assert (
        domain.entry_hash("150602-V0123456789ab", entry)
        == "9b9ed6e7072bcb5589b27db6a3bd9fad15f804f761d542b20fe718ada6e08a39"
    )


def canonical_hash(value: object) -> str:
    """H(x) of the algorithm, spelled as its docstring states it."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@settings(max_examples=300, deadline=None)
@given(
    vote_id=st.text(),
    entry=st.builds(
        LogEntry,
        sequence=st.integers(1, 2**63 - 1),
        pseudonym=st.text(),
        area_cm2=st.integers(1, 2**63 - 1),
        choices=st.lists(st.tuples(st.text(), st.sampled_from(Choice))).map(tuple),
        cast_time=st.datetimes(timezones=st.just(dt.UTC)),
        channel=st.sampled_from(Channel),
        paper_reference=st.text(),
        previous_hash=st.text(),
        entry_hash=st.just(""),
    ),
)
def test_an_entry_hash_is_h_of_the_object_step_2_names(vote_id, entry):
    expected = canonical_hash(
        {
            "vote_id": vote_id,
            "sequence": entry.sequence,
            "pseudonym": entry.pseudonym,
            "area_cm2": entry.area_cm2,
            "choices": [[matter_id, choice.value] for matter_id, choice in entry.choices],
            "cast_time": domain.micros(entry.cast_time),
            "channel": entry.channel.value,
            "paper_reference": entry.paper_reference,
            "previous_hash": entry.previous_hash,
        }
    )
    assert domain.entry_hash(vote_id, entry) == expected


def test_a_receipt_of_a_replaced_ballot_is_in_the_log_but_not_counted():
    spec, roll = vote(), owners(100, 200)
    entries = log(
        spec, roll, [(roll[0], {"M1": NO}), (roll[1], {"M1": NO}), (roll[0], {"M1": YES})]
    )
    replaced = domain.check_receipt(entries, entries[0].entry_hash)
    assert replaced == domain.ReceiptStatus(True, last_ballot=False, sequence=1, replaced_by=3)
    assert domain.check_receipt(entries, entries[2].entry_hash).last_ballot
    assert not domain.check_receipt(entries, "0" * 64).in_log


# ---------------------------------------------------------------- the count at its boundaries


def test_quorum_of_exactly_two_thirds_of_area_and_owners_holds():
    roll = owners(100, 100, 100)
    result = matter_result(vote(), roll, [(roll[0], {"M2": YES}), (roll[1], {"M2": YES})], "M2")
    assert result.quorum_reached and result.passed


def test_quorum_one_square_centimetre_short_of_two_thirds_fails():
    roll = owners(100, 100, 101)
    result = matter_result(vote(), roll, [(roll[0], {"M2": YES}), (roll[1], {"M2": YES})], "M2")
    assert result.participating_area_cm2 * 3 < 2 * 301
    assert not result.quorum_reached and not result.passed


def test_quorum_needs_two_thirds_of_owners_as_well_as_of_area():
    roll = owners(1000, 10, 10)
    result = matter_result(vote(), roll, [(roll[0], {"M2": YES})], "M2")
    assert result.participating_area_cm2 * 3 >= 2 * 1020
    assert not result.quorum_reached


def test_special_matter_passes_at_exactly_three_quarters():
    roll = owners(100, 100, 100, 100)
    ballots = [(roll[0], {"M1": YES}), (roll[1], {"M1": YES}), (roll[2], {"M1": YES})]
    result = matter_result(vote(), roll, [*ballots, (roll[3], {"M1": NO})])
    assert (result.yes_owners, result.participating_owners) == (3, 4)
    assert result.passed


def test_special_matter_just_under_three_quarters_of_area_fails():
    roll = owners(100, 100, 100, 101)
    ballots = [(roll[0], {"M1": YES}), (roll[1], {"M1": YES}), (roll[2], {"M1": YES})]
    result = matter_result(vote(), roll, [*ballots, (roll[3], {"M1": NO})])
    assert result.yes_owners * 4 == 3 * result.participating_owners
    assert not result.passed


def test_ordinary_matter_fails_at_exactly_one_half_and_passes_above():
    roll = owners(100, 100, 100, 100)
    even = [(roll[n], {"M2": YES if n < 2 else NO}) for n in range(4)]
    assert not matter_result(vote(), roll, even, "M2").passed
    more = [(roll[n], {"M2": YES if n < 3 else NO}) for n in range(4)]
    assert matter_result(vote(), roll, more, "M2").passed


def test_a_majority_of_area_without_a_majority_of_owners_fails():
    roll = owners(1000, 10, 10)
    ballots = [(roll[0], {"M2": YES}), (roll[1], {"M2": NO}), (roll[2], {"M2": NO})]
    result = matter_result(vote(), roll, ballots, "M2")
    assert result.quorum_reached and result.yes_area_cm2 * 2 > result.participating_area_cm2
    assert not result.passed


def test_a_majority_of_owners_without_a_majority_of_area_fails():
    roll = owners(1000, 10, 10)
    ballots = [(roll[0], {"M2": NO}), (roll[1], {"M2": YES}), (roll[2], {"M2": YES})]
    assert not matter_result(vote(), roll, ballots, "M2").passed


def test_abstentions_take_part_for_the_quorum_but_are_not_yes():
    roll = owners(100, 100, 100)
    ballots = [(roll[0], {"M2": YES}), (roll[1], {"M2": ABSTAIN}), (roll[2], {"M2": ABSTAIN})]
    result = matter_result(vote(), roll, ballots, "M2")
    assert result.quorum_reached
    assert (result.abstain_owners, result.abstain_area_cm2) == (2, 200)
    assert not result.passed


def test_a_re_vote_replaces_the_owners_earlier_ballot():
    roll = owners(100, 100, 100)
    ballots = [
        (roll[0], {"M2": NO}),
        (roll[1], {"M2": YES}),
        (roll[2], {"M2": NO}),
        (roll[0], {"M2": YES}),
    ]
    result = tally(vote(), roll, ballots)
    assert (result.ballots, result.counted_ballots) == (4, 3)
    m2 = result.matters[1]
    assert (m2.yes_owners, m2.no_owners, m2.participating_owners) == (2, 1, 3)
    assert m2.passed


def test_a_re_vote_without_a_matter_withdraws_the_owner_from_it():
    roll = owners(100, 100, 100)
    ballots = [(roll[0], {"M1": YES, "M2": YES}), (roll[0], {"M1": YES})]
    result = tally(vote(), roll, ballots)
    assert result.matters[0].participating_owners == 1
    assert result.matters[1].participating_owners == 0


def test_zero_turnout_has_no_quorum_and_passes_nothing():
    result = tally(vote(), owners(100, 200, 300), [])
    assert (result.ballots, result.counted_ballots, result.roll_owners) == (0, 0, 3)
    assert all(not m.quorum_reached and not m.passed for m in result.matters)
    assert all(m.participating_area_cm2 == m.participating_owners == 0 for m in result.matters)


def test_non_voters_follow_the_majority_only_when_the_rule_is_on():
    roll = owners(100, 100, 100)
    ballots = [(roll[0], {"M2": YES})]
    assert not matter_result(vote(), roll, ballots, "M2").passed
    following = matter_result(
        vote(CountingRules(non_voters_follow_majority=True)), roll, ballots, "M2"
    )
    assert following.deemed_choice is YES
    assert (following.deemed_owners, following.deemed_area_cm2) == (2, 200)
    assert (following.yes_owners, following.participating_owners) == (3, 3)
    assert following.quorum_reached and following.passed


def test_non_voters_follow_nobody_when_the_participants_are_split():
    roll = owners(100, 100, 100, 100)
    rules = CountingRules(non_voters_follow_majority=True)
    ballots = [(roll[0], {"M2": YES}), (roll[1], {"M2": NO})]
    result = matter_result(vote(rules), roll, ballots, "M2")
    assert result.deemed_choice is None and result.deemed_owners == 0
    assert not result.quorum_reached


# ---------------------------------------------------------------- creating a vote, casting


def test_matters_are_numbered_and_classed_by_the_rules():
    drafts = [
        MatterDraft(MatterType.USE_FUND, "更换电梯", "从维修资金支出", 12_000_000, ("U1", "U2")),
        MatterDraft(MatterType.REBUILD, "改建车棚", "拆除旧车棚"),
    ]
    v = Violations()
    matters = domain.plan_matters(drafts, VoteRules(), v)
    assert not v
    assert [(m.matter_id, m.matter_class) for m in matters] == [
        ("M1", MatterClass.ORDINARY),
        ("M2", MatterClass.SPECIAL),
    ]
    stricter = VoteRules(special_matters=frozenset(MatterType))
    assert (
        domain.plan_matters(drafts, stricter, Violations())[0].matter_class is MatterClass.SPECIAL
    )


def test_bad_matters_are_named_field_by_field():
    drafts = [
        MatterDraft(None, "标题", "正文"),
        MatterDraft(MatterType.RAISE_FUND, " ", "正文"),
        MatterDraft(MatterType.COVENANT, "管理规约", "修订", 500, ("U1",)),
    ]
    v = Violations()
    domain.plan_matters(drafts, VoteRules(), v)
    with pytest.raises(InvalidArgument) as caught:
        v.raise_if_any()
    fields = [f.field for f in caught.value.violations]
    assert fields == [
        "vote.matters[0].type",
        "vote.matters[1].title",
        "vote.matters[1].fund_amount_fen",
        "vote.matters[2].fund_amount_fen",
        "vote.matters[2].unit_ids",
    ]


def test_a_vote_opens_no_sooner_than_the_notice_period():
    created = OPEN - dt.timedelta(days=15)
    on_time = Violations()
    domain.check_schedule(created, OPEN, CLOSE, VoteRules(), on_time)
    assert not on_time
    early = Violations()
    domain.check_schedule(created + dt.timedelta(seconds=1), OPEN, CLOSE, VoteRules(), early)
    with pytest.raises(InvalidArgument, match=r"vote\.open_time: owners get 15 days"):
        early.raise_if_any()


def test_a_voting_period_outside_its_bounds_is_refused():
    created = OPEN - dt.timedelta(days=30)
    v = Violations()
    domain.check_schedule(created, OPEN, OPEN + dt.timedelta(days=61), VoteRules(), v)
    with pytest.raises(InvalidArgument, match=r"vote\.close_time"):
        v.raise_if_any()


def test_choices_are_checked_and_put_in_the_votes_order():
    v = Violations()
    chosen = domain.check_choices(vote(), [("M2", NO), ("M1", YES)], v, "choices")
    assert not v and chosen == (("M1", YES), ("M2", NO))
    bad = Violations()
    domain.check_choices(vote(), [("M1", YES), ("M1", NO), ("M9", YES), ("M2", None)], bad, "c")
    with pytest.raises(InvalidArgument) as caught:
        bad.raise_if_any()
    assert [f.field for f in caught.value.violations] == [
        "c[1].matter_id",
        "c[2].matter_id",
        "c[3].choice",
    ]


def test_an_empty_ballot_is_refused():
    v = Violations()
    domain.check_choices(vote(), [], v, "choices")
    assert v


@pytest.mark.parametrize(
    ("state", "now"),
    [
        (VoteState.OPEN, OPEN - dt.timedelta(microseconds=1)),
        (VoteState.OPEN, CLOSE),
        (VoteState.SCHEDULED, OPEN + dt.timedelta(days=1)),
        (VoteState.CANCELLED, OPEN + dt.timedelta(days=1)),
    ],
)
def test_ballots_are_refused_outside_an_open_voting_period(state, now):
    with pytest.raises(FailedPrecondition) as caught:
        domain.check_open(vote(), state, now)
    assert caught.value.reason == "VOTE_NOT_OPEN"


def test_a_ballot_is_accepted_from_the_opening_instant():
    domain.check_open(vote(), VoteState.OPEN, OPEN)


def test_a_closed_vote_cannot_open_or_be_cancelled():
    assert domain.transition("V", VoteState.SCHEDULED, VoteState.OPEN) is VoteState.OPEN
    for target in (VoteState.OPEN, VoteState.CANCELLED):
        with pytest.raises(FailedPrecondition) as caught:
            domain.transition("V", VoteState.CLOSED, target)
        assert caught.value.reason == "VOTE_CLOSED"


def test_a_decision_may_be_challenged_for_one_year():
    assert domain.challenge_deadline(dt.date(2026, 6, 15), VoteRules()) == dt.date(2027, 6, 15)
    assert domain.challenge_deadline(dt.date(2028, 2, 29), VoteRules()) == dt.date(2029, 2, 28)


# ---------------------------------------------------------------- properties


def reference_count(spec: VoteSpec, roll: tuple[Voter, ...], entries: list[LogEntry]):
    """A slow count written from DOMAIN.md alone: for each matter and each owner, look for the
    owner's last ballot from the end of the log; compare shares as Fractions."""
    results = []
    total_area = sum(v.area_cm2 for v in roll)
    for matter in spec.matters:
        votes: dict[Choice, list[int]] = {YES: [], NO: [], ABSTAIN: []}
        absent = []
        for voter in roll:
            last = next((e for e in reversed(entries) if e.pseudonym == voter.pseudonym), None)
            choice = dict(last.choices).get(matter.matter_id) if last else None
            (votes[choice] if choice else absent).append(voter.area_cm2)
        deemed = None
        if spec.rules.non_voters_follow_majority:
            for side, other in ((YES, NO), (NO, YES)):
                wins_count = len(votes[side]) > len(votes[other])
                if wins_count and sum(votes[side]) > sum(votes[other]):
                    deemed = side
            if deemed:
                votes[deemed] = votes[deemed] + absent
        taking_part = votes[YES] + votes[NO] + votes[ABSTAIN]

        def reaches(share: Fraction, threshold: Threshold) -> bool:
            if threshold.inclusive:
                return share >= threshold.fraction
            return share > threshold.fraction

        quorum = reaches(Fraction(sum(taking_part), total_area), spec.rules.quorum) and reaches(
            Fraction(len(taking_part), len(roll)), spec.rules.quorum
        )
        majority = (
            spec.rules.special_majority
            if matter.matter_class is MatterClass.SPECIAL
            else spec.rules.ordinary_majority
        )
        passed = (
            quorum
            and len(taking_part) > 0
            and reaches(Fraction(sum(votes[YES]), sum(taking_part)), majority)
            and reaches(Fraction(len(votes[YES]), len(taking_part)), majority)
        )
        results.append(
            (
                matter.matter_id,
                (len(votes[YES]), sum(votes[YES])),
                (len(votes[NO]), sum(votes[NO])),
                (len(votes[ABSTAIN]), sum(votes[ABSTAIN])),
                deemed,
                quorum,
                passed,
            )
        )
    return results


def as_reference(result: domain.VoteResult):
    return [
        (
            m.matter_id,
            (m.yes_owners, m.yes_area_cm2),
            (m.no_owners, m.no_area_cm2),
            (m.abstain_owners, m.abstain_area_cm2),
            m.deemed_choice,
            m.quorum_reached,
            m.passed,
        )
        for m in result.matters
    ]


thresholds = st.builds(
    Threshold,
    st.fractions(min_value=Fraction(1, 10), max_value=1, max_denominator=12),
    st.booleans(),
)
rules_strategy = st.one_of(
    st.just(CountingRules()),
    st.builds(CountingRules, thresholds, thresholds, thresholds, st.booleans()),
)


@st.composite
def votes(draw):
    classes = draw(st.lists(st.sampled_from(list(MatterClass)), min_size=1, max_size=3))
    matters = tuple(
        Matter(f"M{n + 1}", MatterType.OTHER_MAJOR, c, "t", "x") for n, c in enumerate(classes)
    )
    spec = vote(draw(rules_strategy), matters)
    # Small areas make ties and exact thresholds likely; a few owners hold several units.
    areas = draw(st.lists(st.integers(1, 6), min_size=1, max_size=8))
    roll = owners(*areas)
    choice_maps = st.fixed_dictionaries(
        {m.matter_id: st.sampled_from(list(Choice)) for m in matters}
    )
    ballots = draw(st.lists(st.tuples(st.sampled_from(roll), choice_maps), max_size=25))
    return spec, roll, ballots


@settings(max_examples=300, deadline=None)
@given(votes())
def test_the_count_matches_a_slow_reference(case):
    spec, roll, ballots = case
    entries = log(spec, roll, ballots)
    result = domain.count(spec, domain.published_roll(roll), entries)
    assert as_reference(result) == reference_count(spec, roll, entries)
    assert result.counted_ballots == len({b[0] for b in ballots})


@settings(max_examples=200, deadline=None)
@given(votes(), st.randoms(use_true_random=False))
def test_the_count_does_not_depend_on_the_order_entries_are_read_in(case, rng: random.Random):
    spec, roll, ballots = case
    entries = log(spec, roll, ballots)
    shuffled = list(entries)
    rng.shuffle(shuffled)
    published = domain.published_roll(roll)
    assert domain.count(spec, published, shuffled) == domain.count(spec, published, entries)
