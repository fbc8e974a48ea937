"""The rules of inspections (wuye.inspections.domain), without a database or a server: the draw
(deterministic in its seed, honouring the sampling rates, complaints' weights, the floor of a
round and of a year, triggers and conflicts of interest), its commitment and verification held
to the commitment published first, periods on the city's calendar, one round per district and
period, rates no lower than configured, rectification's deadlines and states, and the assessment
summary.

The statistical tests run the draw over a fixed set of seeds, so they are deterministic; their
tolerances are still chosen as if the seeds were random (at least five standard deviations), so
that they would keep passing with any other fixed set.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
from collections import Counter, defaultdict
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wuye.core.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Violations
from wuye.core.ids import credit_code_check_char
from wuye.core.standards import checklist
from wuye.inspections import domain, store
from wuye.inspections.domain import (
    UNSERVED,
    CheckResult,
    EnterpriseSummary,
    Entity,
    Inspector,
    Rectification,
    RectificationState,
    RoundSpec,
    RoundState,
    Selection,
)
from wuye.inspections.settings import DEFAULT_RATES, InspectionsSettings

DISTRICTS = ("150602", "150603", "150621")
CREATED_AT = "2026-03-02T08:30:00Z"
SEEDS = 1000


def credit_code(serial: int, district: str = "150602") -> str:
    first17 = f"91{district}MA{serial:07d}"
    return first17 + credit_code_check_char(first17)


def seed(n: int) -> bytes:
    return hashlib.sha256(f"seed-{n}".encode()).digest()


def entity(
    n: int,
    grade: str = "B",
    district: str = "150602",
    code: str | None = None,
    triggered: bool = False,
) -> Entity:
    served = code if code is not None else credit_code(n % 50, district)
    return Entity(
        project_id=f"{district}-P{n:08d}",
        project_type="RESIDENTIAL",
        district_code=district,
        credit_code=served if grade != UNSERVED else "",
        grade=grade if grade != UNSERVED else "",
        triggered=triggered,
    )


def inspector(n: int, districts=DISTRICTS, conflicts=()) -> Inspector:
    return Inspector(f"inspector-{n:03d}", f"检查员{n}", "鄂尔多斯市住建局", districts, conflicts)


def round_spec(
    entities,
    inspectors=None,
    rates=None,
    floor_rate: str = "0",
    per_check: int = 2,
    period: str = "2026",
    **more,
) -> RoundSpec:
    return RoundSpec(
        round_id="150602-Rabcdef012345",
        districts=DISTRICTS,
        period=period,
        rates=dict(DEFAULT_RATES if rates is None else rates),
        floor_rate=Decimal(floor_rate),
        inspectors_per_check=per_check,
        created_at=CREATED_AT,
        entities=tuple(entities),
        inspectors=tuple(inspectors if inspectors is not None else map(inspector, range(4))),
        **more,
    )


# -- the algorithm as domain.py's docstring writes it out, reimplemented independently


def _u(seed: bytes, label: str) -> int:
    return int.from_bytes(hmac.new(seed, label.encode(), hashlib.sha256).digest(), "big")


def reference_chosen(seed: bytes, spec: RoundSpec) -> dict[str, str]:
    def tickets(e: Entity) -> int:
        reached = [w for c, w in spec.complaint_weights if e.complaints >= c]
        return max(reached) if reached else 1

    def key(e: Entity) -> int:
        labels = ["entity:" + e.project_id]
        labels += [f"entity:{e.project_id}:{j}" for j in range(1, tickets(e))]
        return min(_u(seed, label) for label in labels)

    keys = {e.project_id: key(e) for e in spec.entities}
    chosen = {e.project_id: "triggered" for e in spec.entities if e.triggered}
    groups: dict[str, list[str]] = defaultdict(list)
    for e in spec.entities:
        if not e.triggered:
            groups[e.grade if e.credit_code else "UNSERVED"].append(e.project_id)
    for grade, ids in groups.items():
        ids.sort(key=keys.__getitem__)
        exact = Fraction(spec.rates.get(grade, Decimal(0))) * len(ids)
        count = math.floor(exact)
        if exact - count > Fraction(_u(seed, "stratum:" + grade), 2**256):
            count += 1
        chosen.update(dict.fromkeys(ids[:count], "sampled"))
    listed = len(spec.entities)
    needed = math.ceil(Fraction(spec.floor_rate) * listed)
    year = math.ceil(Fraction(spec.yearly_floor_rate) * listed) if spec.period[4:] != "H1" else 0
    earlier = set(spec.drawn_earlier) & set(keys)
    fresh = sorted((p for p in keys if p not in chosen and p not in earlier), key=keys.get)
    again = sorted((p for p in keys if p not in chosen and p in earlier), key=keys.get)
    for project_id in fresh + again:
        if len(chosen) >= needed and len(set(chosen) | earlier) >= year:
            break
        chosen[project_id] = "floor"
    return chosen


def eligible(spec: RoundSpec, project_id: str) -> list[Inspector]:
    e = next(e for e in spec.entities if e.project_id == project_id)
    return [
        i
        for i in spec.inspectors
        if e.district_code in i.districts and e.credit_code not in i.conflicts
    ]


def reference_draw(seed: bytes, spec: RoundSpec) -> list[Selection]:
    selections = []
    for project_id, reason in sorted(reference_chosen(seed, spec).items()):
        pool = sorted(
            eligible(spec, project_id),
            key=lambda i: _u(seed, f"inspector:{project_id}:{i.inspector_id}"),
        )
        ids = tuple(i.inspector_id for i in pool[: spec.inspectors_per_check])
        selections.append(Selection(project_id, reason, ids))
    return selections


# -- a city-sized list: strata whose expected counts are fractions, three districts

STRATA = {"C": 37, "B": 83, "A": 151, "AA": 230, "AAA": 64, "C_UNFILED": 11, UNSERVED: 23}


@cache
def stratified_spec() -> RoundSpec:
    entities = []
    n = 0
    for grade, size in STRATA.items():
        for _ in range(size):
            entities.append(entity(n, grade, DISTRICTS[n % 3]))
            n += 1
    return round_spec(entities)


@cache
def stratified_draws() -> tuple[tuple[Selection, ...], ...]:
    spec = stratified_spec()
    return tuple(tuple(domain.draw(seed(n), spec)) for n in range(SEEDS))


# -- determinism


def test_the_same_seed_and_lists_give_the_same_selection():
    spec = stratified_spec()
    first = domain.draw(seed(1), spec)
    # The lists as stored and read back (JSON in the rounds table) draw the same too.
    reread = store.spec_from_json(domain.canonical(spec))
    assert reread == spec
    assert domain.draw(seed(1), spec) == first == domain.draw(seed(1), reread)
    assert first == reference_draw(seed(1), spec)


def test_a_different_seed_gives_a_different_selection():
    draws = stratified_draws()[:200]
    assert len(set(draws)) == len(draws)


def test_the_selection_depends_on_the_lists_not_on_their_order():
    spec = stratified_spec()
    shuffled = replace(spec, entities=spec.entities[::-1], inspectors=spec.inspectors[::-1])
    assert domain.draw(seed(7), shuffled) == domain.draw(seed(7), spec)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    sizes=st.lists(st.integers(0, 12), min_size=7, max_size=7),
    floor_rate=st.sampled_from(["0", "0.025", "0.05", "0.3", "1"]),
    yearly=st.sampled_from(["0", "0.05", "0.4", "1"]),
    period=st.sampled_from(["2026", "2026H1", "2026H2"]),
    weights=st.sampled_from([(), ((1, 2),), ((1, 2), (3, 5))]),
    per_check=st.integers(2, 3),
    salt=st.binary(min_size=1, max_size=32),
)
def test_the_draw_is_the_algorithm_its_docstring_publishes(
    data, sizes, floor_rate, yearly, period, weights, per_check, salt
):
    entities = []
    n = 0
    for grade, size in zip(STRATA, sizes, strict=True):
        for _ in range(size):
            e = entity(n, grade, DISTRICTS[n % 3], triggered=data.draw(st.booleans()))
            entities.append(replace(e, complaints=data.draw(st.integers(0, 4))))
            n += 1
    rates = {
        g: Decimal(data.draw(st.sampled_from(["0", "0.01", "0.3", "0.5", "1"]))) for g in STRATA
    }
    earlier = data.draw(st.sets(st.sampled_from([e.project_id for e in entities] or [""])))
    spec = round_spec(
        entities,
        map(inspector, range(per_check + 1)),
        rates,
        floor_rate,
        per_check,
        period,
        yearly_floor_rate=Decimal(yearly),
        drawn_earlier=tuple(sorted(earlier)),
        complaint_weights=weights,
    )
    drawn = domain.draw(salt, spec)
    assert drawn == reference_draw(salt, spec)
    assert [s.project_id for s in drawn] == sorted({s.project_id for s in drawn})
    assert len(drawn) >= math.ceil(Fraction(Decimal(floor_rate)) * len(entities))
    if period != "2026H1":
        covered = {s.project_id for s in drawn} | (earlier & {e.project_id for e in entities})
        assert len(covered) >= math.ceil(Fraction(Decimal(yearly)) * len(entities))


def test_the_second_half_year_completes_the_yearly_floor_with_projects_not_yet_checked():
    entities = [entity(n, "AAA") for n in range(200)]
    rates = {**DEFAULT_RATES, "AAA": Decimal(0)}
    first_half = round_spec(entities, rates=rates, floor_rate="0.025", period="2026H1")
    drawn_first = [s.project_id for s in domain.draw(seed(1), first_half)]
    assert len(drawn_first) == 5  # 2.5% of 200
    second_half = replace(
        first_half,
        period="2026H2",
        yearly_floor_rate=Decimal("0.05"),
        drawn_earlier=tuple(drawn_first),
    )
    drawn_second = [s.project_id for s in domain.draw(seed(2), second_half)]
    # 5% of 200 over the year: five more, none of them checked in the first half.
    assert len(drawn_second) == 5 and not set(drawn_second) & set(drawn_first)
    # A higher yearly floor makes the second half draw what the year still lacks.
    stricter = replace(second_half, yearly_floor_rate=Decimal("0.10"))
    assert len(domain.draw(seed(2), stricter)) == 15
    # A first half-year does not answer for the year.
    assert len(domain.draw(seed(1), replace(first_half, yearly_floor_rate=Decimal("0.5")))) == 5


def test_more_complaints_mean_more_checks_within_a_grade():
    """200 grade-B projects, 20 drawn each time: those with 3 complaints (weight 3) are drawn
    far more often than the others, and the grade's count stays its rate's."""
    weights = ((1, 2), (3, 3))
    entities = [replace(entity(n, "B"), complaints=3 if n < 20 else 0) for n in range(200)]
    spec = round_spec(entities, complaint_weights=weights)
    complained = {e.project_id for e in entities[:20]}
    hits = Counter()
    for n in range(300):
        drawn = domain.draw(seed(n), spec)
        assert len(drawn) == 20
        hits.update("complained" if s.project_id in complained else "quiet" for s in drawn)
    # Per project: a quiet one about 10% of draws; a complained one about three times that.
    per_complained = hits["complained"] / (20 * 300)
    per_quiet = hits["quiet"] / (180 * 300)
    assert per_complained > 2 * per_quiet
    assert domain.weight(0, weights) == 1
    assert [domain.weight(c, weights) for c in (1, 2, 3, 9)] == [2, 2, 3, 3]


# -- sampling rates


def test_each_grade_is_sampled_at_its_rate():
    """Over 1000 seeds the mean number drawn of a grade of n projects is within 0.08 of rate·n
    (a mean share within 0.08/n of the rate): each draw takes floor(rate·n) or one more, so a
    draw's count varies by at most 0.5 around its mean, and the mean of 1000 by 0.016."""
    spec = stratified_spec()
    grade_of = {e.project_id: e.stratum for e in spec.entities}
    per_draw = [Counter(grade_of[s.project_id] for s in draw) for draw in stratified_draws()]
    for grade, size in STRATA.items():
        expected = Fraction(DEFAULT_RATES[grade]) * size
        counts = [c[grade] for c in per_draw]
        assert set(counts) <= {math.floor(expected), math.ceil(expected)}, grade
        mean = Fraction(sum(counts), len(counts))
        assert abs(mean - expected) <= Fraction(8, 100), (grade, float(mean), float(expected))
        assert abs(mean / size - Fraction(DEFAULT_RATES[grade])) <= Fraction(8, 100) / size


def test_within_a_grade_every_project_is_equally_likely_to_be_drawn():
    """Per-project inclusion counts over 1000 seeds, against the uniform expectation: Pearson's
    chi-square below df + 6·sqrt(2·df) (df = n - 1), and no project's count more than six
    binomial standard deviations from its expectation."""
    spec = stratified_spec()
    members: dict[str, list[str]] = defaultdict(list)
    for e in spec.entities:
        members[e.stratum].append(e.project_id)
    drawn = Counter(s.project_id for draw in stratified_draws() for s in draw)
    for grade, ids in members.items():
        expected = float(DEFAULT_RATES[grade]) * SEEDS
        chi2 = sum((drawn[p] - expected) ** 2 / expected for p in ids)
        df = len(ids) - 1
        assert chi2 < df + 6 * math.sqrt(2 * df), (grade, chi2, df)
        spread = 6 * math.sqrt(expected * (1 - float(DEFAULT_RATES[grade])))
        assert all(abs(drawn[p] - expected) < spread for p in ids), grade


def test_a_grade_at_rate_zero_is_drawn_only_to_reach_the_floor():
    entities = [entity(n, "AAA") for n in range(100)]
    rates = {**DEFAULT_RATES, "AAA": Decimal(0)}
    assert domain.draw(seed(1), round_spec(entities, rates=rates)) == []
    floored = domain.draw(seed(1), round_spec(entities, rates=rates, floor_rate="0.05"))
    assert [s.reason for s in floored] == ["floor"] * 5


# -- the floor


@pytest.mark.parametrize(("listed", "floor_rate"), [(599, "0.05"), (599, "0.025"), (41, "0.05")])
def test_the_floor_draws_at_least_its_share_of_all_listed_projects(listed, floor_rate):
    # Everyone AAA (1%): sampling alone falls short of the floor.
    spec = round_spec([entity(n, "AAA") for n in range(listed)], floor_rate=floor_rate)
    needed = math.ceil(Decimal(floor_rate) * listed)
    for n in range(50):
        drawn = domain.draw(seed(n), spec)
        reasons = Counter(s.reason for s in drawn)
        assert len(drawn) == needed
        assert reasons["sampled"] in (math.floor(listed / 100), math.ceil(listed / 100))
        assert reasons["floor"] == needed - reasons["sampled"]


def test_the_floor_adds_nothing_when_sampling_already_reaches_it():
    spec = round_spec([entity(n, "C") for n in range(100)], floor_rate="0.05")
    drawn = domain.draw(seed(3), spec)
    assert len(drawn) == 30
    assert {s.reason for s in drawn} == {"sampled"}


def test_triggered_projects_count_towards_the_floor():
    entities = [entity(n, "AAA", triggered=n < 4) for n in range(100)]
    drawn = domain.draw(seed(5), round_spec(entities, floor_rate="0.05"))
    reasons = Counter(s.reason for s in drawn)
    assert len(drawn) == 5 and reasons["triggered"] == 4


def test_a_round_may_raise_its_floor_and_inspectors_per_check_never_lower_them():
    yearly = Decimal("0.05")
    v = Violations()
    assert domain.round_floor("2026H1", yearly, None, v, "floor_rate") == Decimal("0.025")
    assert domain.round_floor("2026", yearly, Decimal("0.2"), v, "floor_rate") == Decimal("0.2")
    assert domain.inspectors_per_check(0, 2, 10, v, "inspectors_per_check") == 2
    assert domain.inspectors_per_check(4, 2, 10, v, "inspectors_per_check") == 4
    assert not v
    domain.round_floor("2026", yearly, Decimal("0.04"), v, "floor_rate")
    domain.inspectors_per_check(1, 2, 10, v, "inspectors_per_check")
    domain.inspectors_per_check(11, 2, 10, v, "inspectors_per_check")
    with pytest.raises(InvalidArgument) as refused:
        v.raise_if_any()
    assert [(f.field, f.description) for f in refused.value.violations] == [
        ("floor_rate", "must be from 0.05 (the configured floor) to 1"),
        ("inspectors_per_check", "a check needs 2 to 10 inspectors"),
        ("inspectors_per_check", "a check needs 2 to 10 inspectors"),
    ]


def test_floor_for_period_halves_the_yearly_floor_for_a_half_year():
    yearly = InspectionsSettings.model_fields["yearly_floor_rate"].default
    assert yearly == Decimal("0.05")
    assert domain.floor_for_period("2026", yearly) == Decimal("0.05")
    assert domain.floor_for_period("2026H1", yearly) == Decimal("0.025")
    assert domain.floor_for_period("2026H2", yearly) == Decimal("0.025")


# -- triggers


@settings(max_examples=60, deadline=None)
@given(salt=st.binary(min_size=1, max_size=32), triggered=st.sets(st.integers(0, 59), max_size=10))
def test_triggered_projects_are_always_drawn_whatever_their_grade(salt, triggered):
    entities = [entity(n, ("AAA", "AA", "A")[n % 3], triggered=n in triggered) for n in range(60)]
    drawn = {s.project_id: s.reason for s in domain.draw(salt, round_spec(entities))}
    for n in triggered:
        assert drawn[entities[n].project_id] == "triggered"
    assert sum(r == "triggered" for r in drawn.values()) == len(triggered)


# -- inspectors


_CODES = [credit_code(n) for n in range(6)]


@st.composite
def pools(draw):
    """Projects of a few enterprises in three districts, inspectors serving random districts with
    random conflicts, and how many inspectors a check needs."""
    per_check = draw(st.integers(2, 4))
    entities = [
        Entity(
            f"{d}-P{n:08d}",
            "OFFICE",
            d,
            code,
            "C" if code else "",
            draw(st.booleans()),
        )
        for n, (d, code) in enumerate(
            draw(
                st.lists(
                    st.tuples(st.sampled_from(DISTRICTS), st.sampled_from([*_CODES, ""])),
                    min_size=1,
                    max_size=25,
                )
            )
        )
    ]
    inspectors = [
        inspector(
            n,
            tuple(draw(st.sets(st.sampled_from(DISTRICTS), min_size=1))),
            tuple(draw(st.sets(st.sampled_from(_CODES), max_size=4))),
        )
        for n in range(draw(st.integers(0, 14)))
    ]
    rates = {g: Decimal("0.5") for g in DEFAULT_RATES}
    return round_spec(entities, inspectors, rates, "0.2", per_check)


@settings(max_examples=200, deadline=None)
@given(spec=pools(), salt=st.binary(min_size=1, max_size=32))
def test_each_check_gets_exactly_k_inspectors_of_its_district_none_with_a_conflict(spec, salt):
    chosen = reference_chosen(salt, spec)
    short = [p for p in sorted(chosen) if len(eligible(spec, p)) < spec.inspectors_per_check]
    if short:
        with pytest.raises(FailedPrecondition) as refused:
            domain.draw(salt, spec)
        assert refused.value.reason == "NOT_ENOUGH_INSPECTORS"
        assert refused.value.metadata["project_id"] == short[0]
        return
    by_id = {e.project_id: e for e in spec.entities}
    inspectors = {i.inspector_id: i for i in spec.inspectors}
    drawn = domain.draw(salt, spec)
    assert drawn == reference_draw(salt, spec)
    for s in drawn:
        project = by_id[s.project_id]
        assert len(s.inspector_ids) == len(set(s.inspector_ids)) == spec.inspectors_per_check
        for inspector_id in s.inspector_ids:
            assert project.district_code in inspectors[inspector_id].districts
            assert project.credit_code not in inspectors[inspector_id].conflicts


@pytest.mark.parametrize("weights", [((3, 2), (1, 3)), ((0, 2),), ((1, 0),)])
def test_complaint_weights_are_ascending_thresholds_of_positive_weights(weights):
    with pytest.raises(ValueError):
        InspectionsSettings(complaint_weights=weights)


def test_a_check_needs_at_least_two_inspectors_by_default():
    assert InspectionsSettings.model_fields["inspectors_per_check"].default == 2
    with pytest.raises(ValueError):
        InspectionsSettings(inspectors_per_check=1)


def test_a_drawn_project_without_enough_eligible_inspectors_stops_the_draw():
    code = credit_code(1)
    spec = round_spec(
        [entity(1, "C", code=code, triggered=True)],
        # Three in the district, but two of them are related to the enterprise.
        [inspector(1), inspector(2, conflicts=(code,)), inspector(3, conflicts=(code,))],
    )
    with pytest.raises(FailedPrecondition) as refused:
        domain.draw(seed(1), spec)
    assert refused.value.reason == "NOT_ENOUGH_INSPECTORS"
    assert "1 eligible" in refused.value.message
    # With a third inspector free of conflicts the same lists can be drawn.
    spec = replace(spec, inspectors=(*spec.inspectors, inspector(4)))
    [drawn] = domain.draw(seed(1), spec)
    assert set(drawn.inspector_ids) == {"inspector-001", "inspector-004"}


def test_inspectors_of_other_districts_are_never_sent():
    spec = round_spec(
        [entity(n, "C", "150603", triggered=True) for n in range(20)],
        [inspector(n, ("150602",)) for n in range(5)]
        + [inspector(n, ("150603", "150621")) for n in range(5, 8)],
        per_check=3,
    )
    for drawn in domain.draw(seed(2), spec):
        assert set(drawn.inspector_ids) == {"inspector-005", "inspector-006", "inspector-007"}


def test_inspectors_are_spread_over_checks_rather_than_always_the_same_pair():
    spec = round_spec(
        [entity(n, "C", triggered=True) for n in range(200)], map(inspector, range(10))
    )
    load = Counter(i for s in domain.draw(seed(4), spec) for i in s.inspector_ids)
    # 400 assignments over 10 inspectors: 40 each on average.
    assert len(load) == 10 and max(load.values()) < 70


# -- commitment and verification


def _honest(spec: RoundSpec | None = None, n: int = 11) -> tuple[bytes, str, RoundSpec, list]:
    spec = spec or round_spec(
        [entity(i, g, DISTRICTS[i % 3], triggered=i == 5) for i, g in enumerate(list(STRATA) * 4)],
        [inspector(1), inspector(2, conflicts=(credit_code(3),)), inspector(3)],
        floor_rate="0.05",
    )
    return seed(n), domain.commitment(seed(n), spec), spec, domain.draw(seed(n), spec)


def _changed_entity(spec: RoundSpec, **change) -> RoundSpec:
    return replace(spec, entities=(replace(spec.entities[0], **change), *spec.entities[1:]))


def _changed_inspector(spec: RoundSpec, **change) -> RoundSpec:
    return replace(spec, inspectors=(replace(spec.inspectors[0], **change), *spec.inspectors[1:]))


def test_an_honest_draw_verifies():
    assert domain.verify(*_honest()) == []


def test_the_commitment_is_the_published_formula():
    the_seed, commitment, spec, _ = _honest()
    assert commitment == hashlib.sha256(the_seed + domain.lists_digest(spec)).hexdigest()
    assert len(commitment) == 64


CHANGES = {
    "round id": lambda s: replace(s, round_id="150602-Rabcdef012346"),
    "districts": lambda s: replace(s, districts=s.districts[:2]),
    "period": lambda s: replace(s, period="2026H1"),
    "a rate": lambda s: replace(s, rates={**s.rates, "C": Decimal("0.31")}),
    "a rate's spelling": lambda s: replace(s, rates={**s.rates, "C": Decimal("0.300")}),
    "a grade's rate dropped": lambda s: replace(
        s, rates={g: r for g, r in s.rates.items() if g != "AAA"}
    ),
    "the floor": lambda s: replace(s, floor_rate=Decimal("0.06")),
    "inspectors per check": lambda s: replace(s, inspectors_per_check=3),
    "created_at": lambda s: replace(s, created_at="2026-03-02T08:30:01Z"),
    "algorithm version": lambda s: replace(s, algorithm_version=3),
    "a project id": lambda s: _changed_entity(s, project_id="150602-P99999999"),
    "a project type": lambda s: _changed_entity(s, project_type="OFFICE"),
    "a project district": lambda s: _changed_entity(s, district_code="150621"),
    "a credit code": lambda s: _changed_entity(s, credit_code=credit_code(49)),
    "a grade": lambda s: _changed_entity(s, grade="AAA"),
    "a trigger": lambda s: _changed_entity(s, triggered=True),
    "a project dropped": lambda s: replace(s, entities=s.entities[1:]),
    "projects reordered": lambda s: replace(s, entities=s.entities[::-1]),
    "an inspector id": lambda s: _changed_inspector(s, inspector_id="inspector-999"),
    "an inspector's name": lambda s: _changed_inspector(s, name="某人"),
    "an inspector's unit": lambda s: _changed_inspector(s, unit="康巴什区住建局"),
    "an inspector's districts": lambda s: _changed_inspector(s, districts=DISTRICTS[:1]),
    "an inspector's conflicts": lambda s: _changed_inspector(s, conflicts=(credit_code(7),)),
    "an inspector dropped": lambda s: replace(s, inspectors=s.inspectors[1:]),
    "a complaint count": lambda s: _changed_entity(s, complaints=2),
    "the yearly floor": lambda s: replace(s, yearly_floor_rate=Decimal("0.06")),
    "projects drawn earlier": lambda s: replace(s, drawn_earlier=(s.entities[0].project_id,)),
    "complaint weights": lambda s: replace(s, complaint_weights=((1, 2),)),
}


@pytest.mark.parametrize("what", CHANGES)
def test_any_change_to_the_lists_or_parameters_breaks_the_commitment(what):
    the_seed, commitment, spec, published = _honest()
    changed = CHANGES[what](spec)
    assert domain.commitment(the_seed, changed) != commitment
    problems = domain.verify(the_seed, commitment, changed, published)
    assert "the seed and lists do not match the export's commitment" in problems


def test_a_draw_is_held_to_the_commitment_published_when_its_round_was_created():
    the_seed, commitment, spec, published = _honest()
    assert domain.verify(the_seed, commitment, spec, published, commitment) == []
    # Forged: a new seed, its own commitment and its own draw agree with each other...
    forged_seed = seed(99)
    forged = domain.commitment(forged_seed, spec)
    forged_draw = domain.draw(forged_seed, spec)
    assert domain.verify(forged_seed, forged, spec, forged_draw) == []
    # ...but not with the commitment published first.
    problems = domain.verify(forged_seed, forged, spec, forged_draw, commitment)
    assert problems and problems[0].startswith("the export's commitment")
    assert commitment in problems[0]


@pytest.mark.parametrize("position", [0, 15, 31])
def test_another_seed_breaks_the_commitment(position):
    the_seed, commitment, spec, published = _honest()
    other = bytearray(the_seed)
    other[position] ^= 1
    assert domain.verify(bytes(other), commitment, spec, published)
    assert domain.verify(the_seed, commitment[:-1] + "0", spec, published)


def _reselected(published: list[Selection], index: int, **change) -> list[Selection]:
    changed = list(published)
    changed[index] = replace(changed[index], **change)
    return changed


SELECTION_CHANGES = {
    "an inspector swapped": lambda p: _reselected(p, 0, inspector_ids=("inspector-003", "x")),
    "inspectors in another order": lambda p: _reselected(
        p, 0, inspector_ids=p[0].inspector_ids[::-1]
    ),
    "a reason": lambda p: _reselected(
        p, 1, reason="floor" if p[1].reason == "sampled" else "sampled"
    ),
    "a project": lambda p: _reselected(p, 1, project_id="150602-P99999999"),
    "a selection dropped": lambda p: p[1:],
    "a selection added": lambda p: [*p, Selection("150602-P99999999", "sampled", ("a", "b"))],
    "a selection repeated": lambda p: [*p, p[-1]],
    "selections reordered": lambda p: p[::-1],
}


@pytest.mark.parametrize("what", SELECTION_CHANGES)
def test_any_change_to_the_published_selections_is_reported(what):
    the_seed, commitment, spec, published = _honest()
    assert len(published) > 3
    problems = domain.verify(the_seed, commitment, spec, SELECTION_CHANGES[what](published))
    assert problems
    assert "the seed and lists do not match the export's commitment" not in problems


def test_verify_reports_lists_that_cannot_be_drawn_instead_of_failing():
    spec = round_spec([entity(1, "C", triggered=True)], [inspector(1)])
    problems = domain.verify(seed(1), domain.commitment(seed(1), spec), spec, [])
    assert problems == [
        "the lists cannot be drawn: project 150602-P00000001 has 1 eligible inspectors, "
        "a check needs 2"
    ]


# -- rounds


def test_a_drawn_round_is_never_drawn_again():
    domain.check_drawable(RoundState.COMMITTED)
    with pytest.raises(FailedPrecondition) as refused:
        domain.check_drawable(RoundState.DRAWN)
    assert refused.value.reason == "ROUND_ALREADY_DRAWN"


@pytest.mark.parametrize("period", ["2026", "2026H1", "2026H2", "2000", "2100H2"])
def test_years_and_half_years_are_periods(period):
    v = Violations()
    domain.check_period(period, v, "period")
    assert not v


@pytest.mark.parametrize(
    "period",
    ["", "26", "1999", "2101", "2026H3", "2026h1", "2026Q1", "２０２６", "2026 ", "-202", "20x6"],
)
def test_other_strings_are_not_periods(period):
    v = Violations()
    domain.check_period(period, v, "period")
    with pytest.raises(InvalidArgument) as refused:
        v.raise_if_any()
    assert [f.field for f in refused.value.violations] == ["period"]


@given(st.text(max_size=8))
def test_check_period_never_fails_on_any_text(text):
    domain.check_period(text, Violations(), "period")


def test_periods_are_the_citys_calendar_not_utcs():
    city = ZoneInfo("Asia/Shanghai")
    assert domain.period_bounds("2026", city) == (
        dt.datetime(2026, 1, 1, tzinfo=city),
        dt.datetime(2027, 1, 1, tzinfo=city),
    )
    assert domain.period_bounds("2026H1", city) == (
        dt.datetime(2026, 1, 1, tzinfo=city),
        dt.datetime(2026, 7, 1, tzinfo=city),
    )
    start, end = domain.period_bounds("2026H2", city)
    assert (start, end) == (
        dt.datetime(2026, 7, 1, tzinfo=city),
        dt.datetime(2027, 1, 1, tzinfo=city),
    )
    # The first half-year ends at midnight in Ordos: 16:00 UTC on 30 June.
    assert start == dt.datetime(2026, 6, 30, 16, tzinfo=dt.UTC)


def test_a_year_takes_both_half_years_of_a_district():
    assert domain.period_halves("2026") == ("2026H1", "2026H2")
    assert domain.period_halves("2026H2") == ("2026H2",)
    domain.check_one_round_per_period({})
    with pytest.raises(FailedPrecondition) as refused:
        domain.check_one_round_per_period({("150602", "2026H1"): "150602-R1"})
    assert refused.value.reason == "ROUND_EXISTS_FOR_PERIOD"
    assert refused.value.metadata == {
        "round_id": "150602-R1",
        "district_code": "150602",
        "period": "2026H1",
    }


def test_a_round_may_raise_a_grades_rate_but_never_set_it_below_the_configured_one():
    v = Violations()
    rates = domain.merge_rates(
        DEFAULT_RATES,
        [(0, "C", Decimal("0.5")), (1, "B", Decimal("0.05")), (2, "D", Decimal("0.1"))],
        v,
        "rates",
    )
    assert rates == {**DEFAULT_RATES, "C": Decimal("0.5")}
    with pytest.raises(InvalidArgument) as refused:
        v.raise_if_any()
    found = {f.field: f.description for f in refused.value.violations}
    assert set(found) == {"rates[1].rate", "rates[2].grade"}
    assert "from 0.10 (the configured rate of B) to 1" in found["rates[1].rate"]
    v = Violations()
    domain.merge_rates(DEFAULT_RATES, [(0, "A", Decimal("1.01")), (1, "A", None)], v, "rates")
    with pytest.raises(InvalidArgument) as refused:
        v.raise_if_any()
    assert [f.field for f in refused.value.violations] == ["rates[0].rate"]


def test_conflicts_include_the_enterprises_of_declared_relatives():
    own, relatives_firm, strangers_firm = credit_code(1), credit_code(2), credit_code(3)
    linked = {"key-sister": [relatives_firm], "key-stranger": [strangers_firm]}
    assert domain.conflicts_of([own], ["key-sister", "key-unknown"], linked) == tuple(
        sorted([own, relatives_firm])
    )
    assert domain.conflicts_of([], [], linked) == ()


# -- checks and rectification


def test_an_inspector_records_only_checks_drawn_for_them():
    domain.check_inspector_assigned(("inspector-001", "inspector-002"), "inspector-002")
    with pytest.raises(PermissionDenied) as refused:
        domain.check_inspector_assigned(("inspector-001", "inspector-002"), "inspector-003")
    assert refused.value.reason == "CHECK_NOT_ASSIGNED"


def order(state: RectificationState, rectify_by: dt.date) -> Rectification:
    return Rectification(
        "150602-O1",
        "150602-K1",
        "150602-P1",
        credit_code(1),
        "150602",
        "R04",
        "消防通道堵塞",
        rectify_by,
        state,
    )


def test_an_open_order_is_overdue_the_day_after_its_deadline():
    deadline = dt.date(2026, 5, 31)
    assert not domain.overdue(order(RectificationState.OPEN, deadline), deadline)
    assert domain.overdue(order(RectificationState.OPEN, deadline), deadline + dt.timedelta(1))
    for state in (RectificationState.OVERDUE, RectificationState.CLOSED):
        assert not domain.overdue(order(state, deadline), deadline + dt.timedelta(30))


NOW = dt.datetime(2026, 6, 1, 9, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("state", "what", "after"),
    [
        (RectificationState.OPEN, domain.Reinspection.RECTIFIED, RectificationState.CLOSED),
        (RectificationState.OVERDUE, domain.Reinspection.RECTIFIED, RectificationState.CLOSED),
        (RectificationState.OPEN, domain.Reinspection.EXTENDED, RectificationState.OPEN),
        (RectificationState.OVERDUE, domain.Reinspection.EXTENDED, RectificationState.OPEN),
        (RectificationState.OPEN, domain.Reinspection.OVERDUE, RectificationState.OVERDUE),
    ],
)
def test_an_order_moves_only_as_its_transitions_allow(state, what, after):
    later = dt.date(2026, 7, 31)
    changed = domain.transition(order(state, dt.date(2026, 5, 31)), what, NOW, later)
    assert changed.state is after
    assert changed.closed_at == (NOW if after is RectificationState.CLOSED else None)
    expected_deadline = later if what is domain.Reinspection.EXTENDED else dt.date(2026, 5, 31)
    assert changed.rectify_by == expected_deadline


def test_a_closed_order_is_not_reinspected_and_an_overdue_one_not_made_overdue_again():
    for what in domain.Reinspection:
        with pytest.raises(FailedPrecondition) as refused:
            domain.transition(order(RectificationState.CLOSED, dt.date(2026, 5, 31)), what, NOW)
        assert refused.value.reason == "RECTIFICATION_CLOSED"
    with pytest.raises(FailedPrecondition) as refused:
        domain.transition(
            order(RectificationState.OVERDUE, dt.date(2026, 5, 31)),
            domain.Reinspection.OVERDUE,
            NOW,
        )
    assert refused.value.reason == "RECTIFICATION_NOT_OPEN"


def test_a_deadline_is_after_today_and_within_the_configured_days():
    today = dt.date(2026, 3, 10)
    for day, ok in [
        (today, False),
        (today + dt.timedelta(days=1), True),
        (today + dt.timedelta(days=30), True),
        (today + dt.timedelta(days=31), False),
    ]:
        v = Violations()
        domain.check_deadline(day, today, 30, v, "rectify_by")
        assert bool(v) is not ok, day
    v = Violations()
    domain.check_deadline(None, today, 30, v, "rectify_by")
    assert not v


def test_a_check_is_scored_against_its_checklist_and_its_findings_name_its_items():
    residential = checklist("residential")
    full = {item: item_.max_points for item, item_ in residential.items.items()}
    today = dt.date(2026, 3, 10)
    v = Violations()
    findings = [domain.Finding("R04", "消防通道被占用", today + dt.timedelta(days=7))]
    assert domain.score_check(residential, {**full, "R04": Decimal(8)}, findings, today, 30, v) == (
        Decimal("92.0")
    )
    assert not v
    bad = [
        domain.Finding("O01", "x"),
        domain.Finding("R04", "x", today),
    ]
    domain.score_check(residential, full, bad, today, 30, v)
    with pytest.raises(InvalidArgument) as refused:
        v.raise_if_any()
    assert [f.field for f in refused.value.violations] == [
        "findings[0].item_id",
        "findings[1].rectify_by",
    ]


# -- assessment


def test_summarise_totals_the_district_and_lists_enterprises_lowest_average_first():
    good, poor = credit_code(1), credit_code(2)
    results = [
        CheckResult(good, Decimal("92.5"), 0),
        CheckResult(good, Decimal("88.0"), 1),
        CheckResult(poor, Decimal("55.5"), 3),
        CheckResult("", Decimal("70.0"), 2),  # a project no enterprise serves
    ]
    checks, average, findings, enterprises = domain.summarise(results, {poor: 2})
    assert (checks, average, findings) == (4, Decimal("76.5"), 6)
    assert enterprises == [
        EnterpriseSummary(poor, 1, Decimal("55.5"), 3, 2),
        EnterpriseSummary(good, 2, Decimal("90.3"), 1, 0),
    ]


def test_summarise_of_nothing_is_zero():
    assert domain.summarise([], {}) == (0, Decimal(0), 0, [])


def test_summarise_orders_equal_averages_by_credit_code():
    a, b = sorted([credit_code(3), credit_code(4)])
    _, _, _, enterprises = domain.summarise(
        [CheckResult(b, Decimal(80), 0), CheckResult(a, Decimal(80), 0)], {}
    )
    assert [e.credit_code for e in enterprises] == [a, b]
