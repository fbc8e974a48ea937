"""The rules of credit (wuye.credit.domain), without a database or a server: grades, the black
and red lists, expiry, as-of evaluation, assessments' base scores, appeals and event rules."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import replace
from decimal import Decimal
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wuye.core.errors import FailedPrecondition, InvalidArgument, Violations
from wuye.core.ids import credit_code_check_char
from wuye.core.standards import Checklist, ChecklistItem, checklist, score_against
from wuye.credit import domain
from wuye.credit.domain import (
    Appeal,
    Assessment,
    AssessmentCycle,
    AssessorUnit,
    Direction,
    FilingOutcome,
    Grade,
    GradeRules,
    Record,
    RecordStatus,
    Severity,
    SubjectFile,
    SubjectKind,
)
from wuye.credit.settings import CreditSettings
from wuye.registry.v1 import events_pb2 as registry_events

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
FILED_AT = NOW - dt.timedelta(days=400)
CODE = "91150602MA0N00001" + credit_code_check_char("91150602MA0N00001")
KEY = domain.subject_key(SubjectKind.ENTERPRISE, CODE)


def default_rules() -> GradeRules:
    """The rules Credit builds from the default settings (DOMAIN.md section 2)."""
    bounds = CreditSettings.model_fields["grade_bounds"].default
    base = CreditSettings.model_fields["default_base_score"].default
    ordered = sorted(((Grade(g), b) for g, b in bounds.items()), key=lambda p: p[1], reverse=True)
    return GradeRules(bounds=tuple(ordered), default_base=base)


RULES = default_rules()


def subject(filed_at: dt.datetime | None = FILED_AT, unfiled_at: dt.datetime | None = None):
    return SubjectFile(
        SubjectKind.ENTERPRISE, CODE, "东胜物业", "150602", filed_at=filed_at, unfiled_at=unfiled_at
    )


_ids = iter(range(10**9))


def record(
    direction: Direction = Direction.BAD,
    points: str | Decimal = "10",
    *,
    severity: Severity = Severity.NORMAL,
    occurred_at: dt.datetime = NOW - dt.timedelta(days=10),
    validity_days: int = 365,
    **changes,
) -> Record:
    made = Record(
        record_id=f"150602-R{next(_ids):012d}",
        subject_key=KEY,
        record_type="UNFILED_EXIT" if direction is Direction.BAD else "AWARD",
        direction=direction,
        points=Decimal(points),
        severity=severity,
        occurred_at=occurred_at,
        expires_at=domain.expiry(severity, occurred_at, validity_days),
        source="test",
    )
    return replace(made, **changes)


def good(points: str = "5", **changes) -> Record:
    return record(Direction.GOOD, points, **changes)


def serious(points: str = "15", **changes) -> Record:
    return record(Direction.BAD, points, severity=Severity.SERIOUS, **changes)


def assessment(base: str, assessed_at: dt.datetime = NOW - dt.timedelta(days=30), aid: str = "a"):
    return Assessment(
        assessment_id=f"150602-S{aid}",
        subject_key=KEY,
        cycle=AssessmentCycle.ANNUAL,
        period="2026",
        base_score=Decimal(base),
        assessed_at=assessed_at,
    )


def evaluate(records=(), base: str | None = None, at: dt.datetime = NOW, who=None):
    return domain.evaluate(
        who or subject(), assessment(base) if base else None, list(records), at, RULES
    )


def violations_of(check) -> dict[str, str]:
    v = Violations()
    check(v)
    try:
        v.raise_if_any()
    except InvalidArgument as e:
        return {violation.field: violation.description for violation in e.violations}
    return {}


# ---------------------------------------------------------------- defaults


def test_the_default_bands_base_and_record_types_are_those_of_domain_md():
    assert RULES.bounds == (
        (Grade.AAA, Decimal(85)),
        (Grade.AA, Decimal(80)),
        (Grade.A, Decimal(70)),
        (Grade.B, Decimal(60)),
    )
    assert RULES.default_base == Decimal(70)
    types = CreditSettings.model_fields["record_types"].default
    assert types["UNFILED_EXIT"].direction == "BAD" and types["UNFILED_EXIT"].validity_days == 365
    assert types["ADMINISTRATIVE_PENALTY"].severity == "SERIOUS"
    assert not types["UNFILED_EXIT"].manual and types["ADMINISTRATIVE_PENALTY"].manual


# ---------------------------------------------------------------- grades


@pytest.mark.parametrize(
    ("base", "grade"),
    [
        ("100", Grade.AAA),
        ("85", Grade.AAA),
        ("84.9", Grade.AA),
        ("80", Grade.AA),
        ("79.9", Grade.A),
        ("70", Grade.A),
        ("69.9", Grade.B),
        ("60", Grade.B),
        ("59.9", Grade.B),
        ("0", Grade.B),
    ],
)
def test_the_score_falls_in_its_band_at_the_boundaries(base, grade):
    standing = evaluate(base=base)

    assert standing.score == Decimal(base)
    assert standing.grade is grade


def test_below_60_is_c_only_with_a_bad_record_in_force():
    with_bad = evaluate([record(points="10")], base="69.9")
    expired_bad = evaluate([record(points="10", occurred_at=NOW - dt.timedelta(days=366))], "59.9")

    assert (with_bad.score, with_bad.grade) == (Decimal("59.9"), Grade.C)
    assert (expired_bad.score, expired_bad.grade) == (Decimal("59.9"), Grade.B)


def test_exactly_60_with_a_bad_record_is_b():
    standing = evaluate([record(points="10")], base="70")

    assert (standing.score, standing.grade) == (Decimal("60.0"), Grade.B)


def test_the_score_is_base_plus_good_minus_bad_and_says_so():
    standing = evaluate([good("5"), good("2.5"), record(points="10")], base="80")

    assert (standing.base, standing.good, standing.bad) == (Decimal("80.0"), Decimal("7.5"), 10)
    assert standing.score == Decimal("77.5")
    assert standing.grade is Grade.A
    assert standing.explanation == ("assessment 150602-Sa 80.0 + good 7.5 - bad 10.0 = 77.5 -> A")


def test_without_an_assessment_the_default_base_applies():
    standing = evaluate([])

    assert standing.assessment is None
    assert (standing.base, standing.score, standing.grade) == (Decimal(70), Decimal(70), Grade.A)
    assert standing.explanation.startswith("default base 70.0")


# ---------------------------------------------------------------- filing


def test_a_subject_never_filed_is_c_unfiled():
    standing = evaluate([good("50")], who=subject(filed_at=None))

    assert standing.grade is Grade.C_UNFILED
    assert not standing.filed and not standing.red_listed
    assert standing.explanation == "no approved filing -> C (unfiled)"


def test_before_its_filing_a_subject_is_c_unfiled_and_from_it_on_graded():
    filed_at = NOW - dt.timedelta(days=1)
    who = subject(filed_at=filed_at)

    assert evaluate(at=filed_at - dt.timedelta(microseconds=1), who=who).grade is Grade.C_UNFILED
    assert evaluate(at=filed_at, who=who).grade is Grade.A


def test_after_its_exit_a_subject_is_c_unfiled_again():
    unfiled_at = NOW - dt.timedelta(days=1)
    who = subject(unfiled_at=unfiled_at)

    assert evaluate(at=unfiled_at - dt.timedelta(seconds=1), who=who).grade is Grade.A
    assert evaluate(at=unfiled_at, who=who).grade is Grade.C_UNFILED
    assert evaluate(at=NOW, who=who).grade is Grade.C_UNFILED


def test_an_exit_older_than_the_filing_does_not_unfile():
    who = subject(filed_at=NOW - dt.timedelta(days=1), unfiled_at=NOW - dt.timedelta(days=5))

    assert evaluate(who=who).grade is Grade.A


# ---------------------------------------------------------------- black and red lists


def test_grade_c_is_blacklisted():
    standing = evaluate([record(points="20")], base="70")

    assert standing.grade is Grade.C
    assert standing.blacklisted and not standing.red_listed
    assert "blacklisted" in standing.explanation


def test_a_serious_bad_record_blacklists_even_with_a_high_score():
    standing = evaluate([serious("5")], base="100")

    assert (standing.score, standing.grade) == (Decimal("95.0"), Grade.AAA)
    assert standing.blacklisted
    assert not standing.red_listed


def test_aaa_not_blacklisted_is_red_listed():
    standing = evaluate([record(points="5")], base="90")

    assert standing.grade is Grade.AAA
    assert standing.red_listed and not standing.blacklisted
    assert standing.explanation.endswith("; red list (AAA)")


def test_an_unfiled_enterprise_with_a_serious_record_in_force_is_blacklisted():
    standing = evaluate([serious("5")], base="90", who=subject(filed_at=None))

    assert standing.grade is Grade.C_UNFILED
    assert standing.blacklisted and not standing.red_listed
    assert standing.blacklist_cause == "a serious record in force"
    assert standing.explanation.endswith("; blacklisted (a serious record in force)")


def test_an_exited_enterprise_with_a_serious_record_in_force_is_blacklisted():
    who = subject(unfiled_at=NOW - dt.timedelta(days=1))

    assert evaluate([serious("5")], who=who).blacklisted
    assert not evaluate([record(points="5")], who=who).blacklisted


def test_an_unfiled_enterprise_without_a_serious_record_is_not_blacklisted():
    standing = evaluate([record(points="30")], who=subject(filed_at=None))

    assert standing.grade is Grade.C_UNFILED and not standing.blacklisted


def test_a_rectified_serious_record_no_longer_blacklists():
    standing = evaluate([serious("5", rectified_at=NOW - dt.timedelta(days=1))], base="90")

    assert not standing.blacklisted and standing.red_listed
    assert [r.record_type for r in standing.past] == ["UNFILED_EXIT"]


# ---------------------------------------------------------------- expiry, removal, rectification


def test_a_normal_record_expires_after_its_validity_and_a_serious_one_never():
    occurred = NOW - dt.timedelta(days=3)

    assert domain.expiry(Severity.NORMAL, occurred, 365) == occurred + dt.timedelta(days=365)
    assert domain.expiry(Severity.SERIOUS, occurred, 365) is None
    assert serious(occurred_at=NOW - dt.timedelta(days=4000)).in_force(NOW)


def test_a_record_counts_until_the_instant_it_expires():
    r = record(points="10")
    assert r.expires_at is not None

    before = evaluate([r], at=r.expires_at - dt.timedelta(microseconds=1))
    at_expiry = evaluate([r], at=r.expires_at)

    assert before.in_force == (r,) and before.score == Decimal(60)
    assert at_expiry.in_force == () and at_expiry.past == (r,) and at_expiry.score == Decimal(70)


@pytest.mark.parametrize("when", ["removed_at", "rectified_at"])
def test_a_removed_or_rectified_record_counts_until_that_moment(when):
    moment = NOW - dt.timedelta(days=2)
    r = serious("15", **{when: moment})

    assert r.in_force(moment - dt.timedelta(microseconds=1))
    assert not r.in_force(moment)
    assert evaluate([r], at=moment - dt.timedelta(seconds=1)).blacklisted
    assert not evaluate([r], at=moment).blacklisted


# ---------------------------------------------------------------- as of a moment


def test_a_record_after_as_of_does_not_count_and_is_not_listed():
    as_of = NOW - dt.timedelta(days=20)
    later = record(points="10", occurred_at=as_of + dt.timedelta(seconds=1))
    earlier = good("5", occurred_at=as_of - dt.timedelta(days=1))

    then = evaluate([later, earlier], at=as_of)

    assert then.in_force == (earlier,)
    assert then.past == ()
    assert then.score == Decimal(75)


def test_as_of_uses_the_assessment_in_force_then():
    old = assessment("90", NOW - dt.timedelta(days=200), "old")
    new = assessment("75", NOW - dt.timedelta(days=10), "new")

    assert domain.latest_assessment([new, old], NOW - dt.timedelta(days=100)) == old
    assert domain.latest_assessment([old, new], NOW) == new
    assert domain.latest_assessment([old, new], NOW - dt.timedelta(days=300)) is None
    assert domain.latest_assessment([], NOW) is None


def test_an_assessment_counts_from_the_instant_it_is_made_and_ties_go_to_the_larger_id():
    moment = NOW - dt.timedelta(days=1)
    a, b = assessment("70", moment, "a"), assessment("90", moment, "b")

    assert domain.latest_assessment([b, a], moment) == b
    assert domain.latest_assessment([a, b], moment - dt.timedelta(microseconds=1)) is None


# ---------------------------------------------------------------- properties

MOMENTS = st.integers(-800, 40).map(lambda days: NOW + dt.timedelta(days=days))
POINTS = st.integers(1, 300).map(lambda tenths: Decimal(tenths) / 10)


@st.composite
def records(draw, direction=None):
    d = draw(st.sampled_from(Direction)) if direction is None else direction
    severity = draw(st.sampled_from(Severity))
    occurred = draw(MOMENTS)
    made = record(
        d,
        draw(POINTS),
        severity=severity,
        occurred_at=occurred,
        validity_days=draw(st.integers(1, 730)),
    )
    removed = draw(st.none() | MOMENTS)
    rectified = draw(st.none() | MOMENTS) if severity is Severity.SERIOUS else None
    return replace(made, removed_at=removed, rectified_at=rectified)


BASES = st.integers(0, 1000).map(lambda tenths: Decimal(tenths) / 10)


def _key(standing):
    return (
        standing.grade,
        standing.score,
        standing.blacklisted,
        standing.red_listed,
        standing.good,
        standing.bad,
        standing.in_force,
        standing.past,
    )


@given(st.lists(records(), max_size=12), BASES, st.randoms(use_true_random=False))
def test_the_standing_never_depends_on_the_order_of_records(rs, base, rnd: random.Random):
    shuffled = list(rs)
    rnd.shuffle(shuffled)

    assert _key(evaluate(rs, str(base))) == _key(evaluate(shuffled, str(base)))


@given(st.lists(records(), max_size=10), BASES, records(Direction.GOOD))
def test_adding_a_good_record_never_lowers_the_score(rs, base, extra):
    before = evaluate(rs, str(base))
    after = evaluate([*rs, extra], str(base))

    assert after.score >= before.score
    assert after.blacklisted <= before.blacklisted


@given(st.lists(records(), max_size=10), BASES, records(Direction.BAD))
def test_adding_a_bad_record_never_raises_the_score(rs, base, extra):
    before = evaluate(rs, str(base))
    after = evaluate([*rs, extra], str(base))

    assert after.score <= before.score
    assert after.red_listed <= before.red_listed


@given(st.lists(records(), max_size=10), BASES)
def test_expired_removed_or_future_records_never_count(rs, base):
    standing = evaluate(rs, str(base))
    counting = [r for r in rs if r.in_force(NOW)]

    for r in rs:
        gone = (r.expires_at is not None and r.expires_at <= NOW) or (
            r.removed_at is not None and r.removed_at <= NOW
        )
        if gone or r.occurred_at > NOW:
            assert r not in standing.in_force
    assert standing.score == (base + sum(r.signed_points for r in counting)).quantize(
        Decimal("0.1")
    )
    assert _key(standing) == _key(evaluate(counting + list(standing.past), str(base)))


# ---------------------------------------------------------------- assessments' base score
# (the checklist scoring the credit service's CreateAssessment uses for the base)

RESIDENTIAL = checklist("residential")


def full_marks(c: Checklist) -> dict[str, Decimal]:
    return {item_id: item.max_points for item_id, item in c.items.items()}


def test_full_marks_on_every_standard_make_a_base_of_100():
    for standard in ("residential", "office", "commercial", "hospital"):
        c = checklist(standard)
        v = Violations()
        assert score_against(c, full_marks(c), v, "scores") == Decimal("100.0")
        assert not v


def test_every_item_must_be_scored():
    scores = full_marks(RESIDENTIAL)
    del scores["R03"], scores["R07"]

    found = violations_of(lambda v: score_against(RESIDENTIAL, scores, v, "scores"))

    assert "R03" in found["scores"] and "R07" in found["scores"]


@pytest.mark.parametrize(("item", "score"), [("R01", "-0.1"), ("R01", "10.1"), ("R04", "17")])
def test_an_item_scores_between_zero_and_its_maximum(item, score):
    scores = {**full_marks(RESIDENTIAL), item: Decimal(score)}

    found = violations_of(lambda v: score_against(RESIDENTIAL, scores, v, "scores"))

    assert item in found["scores"]


def test_an_item_not_on_the_checklist_is_refused():
    scores = {**full_marks(RESIDENTIAL), "H01": Decimal(5)}

    found = violations_of(lambda v: score_against(RESIDENTIAL, scores, v, "scores"))

    assert "'H01'" in found["scores"]


def test_zero_and_maximum_are_in_bounds():
    scores = {**full_marks(RESIDENTIAL), "R01": Decimal(0)}
    v = Violations()

    assert score_against(RESIDENTIAL, scores, v, "scores") == Decimal("90.0")
    assert not v


def _checklist(*maxima: int) -> Checklist:
    items = {f"X{i}": ChecklistItem(f"X{i}", f"item {i}", Decimal(m)) for i, m in enumerate(maxima)}
    return Checklist("test", items)


def test_the_base_is_the_share_of_the_maximum_out_of_100():
    c = _checklist(10, 10, 10)  # out of 30
    v = Violations()

    base = score_against(c, {"X0": Decimal(10), "X1": Decimal(5), "X2": Decimal(5)}, v, "s")

    assert base == Decimal("66.7")  # 20 / 30 * 100, to one decimal
    assert not v


@pytest.mark.parametrize(("x0", "expected"), [("0.1", "0.1"), ("0.3", "0.2"), ("0.2", "0.1")])
def test_the_base_rounds_half_up_to_one_decimal(x0, expected):
    c = _checklist(100, 100)  # out of 200: 0.1 -> 0.05, 0.3 -> 0.15

    base = score_against(c, {"X0": Decimal(x0), "X1": Decimal(0)}, Violations(), "s")

    assert base == Decimal(expected)


# ---------------------------------------------------------------- periods and assessors


@pytest.mark.parametrize(
    ("cycle", "period", "ok"),
    [
        (AssessmentCycle.ANNUAL, "2026", True),
        (AssessmentCycle.ANNUAL, "2000", True),
        (AssessmentCycle.ANNUAL, "2100", True),
        (AssessmentCycle.ANNUAL, "1999", False),
        (AssessmentCycle.ANNUAL, "2101", False),
        (AssessmentCycle.ANNUAL, "2026H1", False),
        (AssessmentCycle.ANNUAL, "", False),
        (AssessmentCycle.ANNUAL, "20a6", False),
        (AssessmentCycle.ANNUAL, "٢٠٢٦", False),
        (AssessmentCycle.HALF_YEAR, "2026H1", True),
        (AssessmentCycle.HALF_YEAR, "2026H2", True),
        (AssessmentCycle.HALF_YEAR, "2026H3", False),
        (AssessmentCycle.HALF_YEAR, "2026", False),
        (AssessmentCycle.HALF_YEAR, "2026h1", False),
        (AssessmentCycle.HALF_YEAR, "2026H1 ", False),
    ],
)
def test_a_period_is_a_year_or_a_half_year_of_the_cycle(cycle, period, ok):
    found = violations_of(lambda v: domain.check_period(cycle, period, (2000, 2100), v, "period"))

    assert (found == {}) is ok, found


def test_an_assessment_group_has_enough_members_and_the_housing_authority():
    unit = AssessorUnit

    def check(units, minimum=3):
        return violations_of(lambda v: domain.check_assessors(units, minimum, v, "assessors"))

    assert check([unit.HOUSING_AUTHORITY, unit.SUB_DISTRICT, unit.OWNERS]) == {}
    assert "at least 3" in check([unit.HOUSING_AUTHORITY, unit.OWNERS])["assessors"]
    assert "housing authority" in check([unit.TAX, unit.OWNERS, unit.ASSOCIATION])["assessors"]
    assert check([unit.HOUSING_AUTHORITY], minimum=1) == {}


# ---------------------------------------------------------------- appeals and rectification


def _reason(check, r: Record) -> str:
    with pytest.raises(FailedPrecondition) as raised:
        check(r)
    return raised.value.reason


def test_a_bad_record_not_yet_appealed_may_be_appealed():
    domain.check_appealable(record())
    domain.check_appealable(serious())


@pytest.mark.parametrize(
    "r",
    [
        good(),
        record(appeal=Appeal.PENDING),
        record(appeal=Appeal.DISMISSED),
        record(appeal=Appeal.UPHELD, removed_at=NOW),
        record(removed_at=NOW),
    ],
    ids=["good", "pending", "dismissed", "upheld", "removed"],
)
def test_a_good_removed_or_already_appealed_record_is_not_appealable(r):
    assert _reason(domain.check_appealable, r) == "RECORD_NOT_APPEALABLE"


def test_only_a_pending_appeal_is_decided():
    domain.check_decidable(record(appeal=Appeal.PENDING))
    for appeal in (Appeal.NONE, Appeal.UPHELD, Appeal.DISMISSED):
        assert _reason(domain.check_decidable, record(appeal=appeal)) == "APPEAL_NOT_PENDING"


def test_only_a_serious_record_in_force_is_rectified():
    domain.check_rectifiable(serious())
    for r in (record(), serious(rectified_at=NOW), serious(removed_at=NOW)):
        assert _reason(domain.check_rectifiable, r) == "RECORD_NOT_RECTIFIABLE"


# ---------------------------------------------------------------- events of other services


def test_an_unfiled_exit_matches_the_rule_and_a_filed_one_does_not():
    unfiled = registry_events.EnterpriseExited(credit_code=CODE, filed=False)
    filed = registry_events.EnterpriseExited(credit_code=CODE, filed=True)

    assert domain.event_matches(unfiled, {"filed": False}, {})
    assert not domain.event_matches(filed, {"filed": False}, {})


def test_a_rule_without_conditions_matches_every_event():
    assert domain.event_matches(registry_events.EnterpriseExited(), {}, {})


@pytest.mark.parametrize(("score", "matches"), [(59.9, True), (60, False), (95, False)])
def test_a_bound_matches_values_strictly_below_it(score, matches):
    assert domain.event_matches(SimpleNamespace(score=score), {}, {"score": 60}) is matches


def test_every_condition_must_hold():
    event = SimpleNamespace(score=10, kind="X", filed=False)

    assert domain.event_matches(event, {"kind": "X", "filed": False}, {"score": 60})
    assert not domain.event_matches(event, {"kind": "Y", "filed": False}, {"score": 60})
    assert not domain.event_matches(event, {"kind": "X"}, {"score": 5})


# ---------------------------------------------------------------- record status


def test_a_record_is_active_appealed_removed_or_expired():
    r = record(points="5")
    standing = evaluate([r])
    expired = record(points="5", occurred_at=NOW - dt.timedelta(days=400))

    assert domain.record_status(r, standing) is RecordStatus.ACTIVE
    appealed = replace(r, appeal=Appeal.PENDING)
    assert domain.record_status(appealed, evaluate([appealed])) is RecordStatus.APPEALED
    assert domain.record_status(replace(r, removed_at=NOW), None) is RecordStatus.REMOVED
    assert domain.record_status(expired, evaluate([expired])) is RecordStatus.EXPIRED
    # Without its standing, a record is taken to count.
    assert domain.record_status(expired, None) is RecordStatus.ACTIVE


def test_an_appeal_is_made_once_and_decided_once():
    r = record(points="5")
    pending = domain.appealed(r, "处罚依据有误")
    upheld = domain.decided(pending, True, "复核属实", NOW)

    assert (pending.appeal, pending.appeal_reason) == (Appeal.PENDING, "处罚依据有误")
    assert (upheld.appeal, upheld.removed_at) == (Appeal.UPHELD, NOW)
    assert domain.decided(pending, False, "维持", NOW).removed_at is None
    with pytest.raises(FailedPrecondition):
        domain.appealed(pending, "again")
    with pytest.raises(FailedPrecondition):
        domain.decided(upheld, False, "again", NOW)


# ---------------------------------------------------------------- the registry's filings


def test_an_approved_filing_applies_once_and_an_older_one_changes_nothing():
    filed_at = NOW - dt.timedelta(days=10)
    exited_at = NOW - dt.timedelta(days=1)
    fresh = SubjectFile(SubjectKind.ENTERPRISE, CODE, "", "150602")

    filed = domain.apply_filing(fresh, FilingOutcome.FILED, "东胜物业", "150602", filed_at)
    assert filed is not None and filed.filed(NOW)
    exited = domain.apply_filing(filed, FilingOutcome.EXITED, "", "150602", exited_at)
    assert exited is not None and not exited.filed(NOW)

    # The same approval delivered again, or the initial one replayed after the exit.
    assert domain.apply_filing(exited, FilingOutcome.EXITED, "", "150602", exited_at) is None
    assert domain.apply_filing(exited, FilingOutcome.FILED, "东胜物业", "150602", filed_at) is None
    refiled = domain.apply_filing(exited, FilingOutcome.FILED, "东胜物业", "150602", NOW)
    assert refiled is not None and refiled.filed(NOW)


# ---------------------------------------------------------------- what is announced


def test_a_standing_is_news_when_its_grade_score_or_listing_changes():
    standing = evaluate([record(points="5")])
    same = standing.announced

    assert standing.differs_from(None)
    assert not standing.differs_from(same)
    assert standing.differs_from(replace(same, score=same.score + 1))
    assert standing.differs_from(replace(same, blacklisted=True))


def test_an_unfiled_subjects_score_alone_is_no_news_but_its_listing_is():
    standing = evaluate([record(points="5")], who=subject(filed_at=None))
    before = replace(standing.announced, score=Decimal(0))

    assert not standing.differs_from(before)
    assert evaluate([serious("5")], who=subject(filed_at=None)).differs_from(before)
