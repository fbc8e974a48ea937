"""Rules of credit (DOMAIN.md section 2). Pure: no IO, no wire types.

A standing is a function of the subject's filing, its latest assessment and the set of its
records at a moment; nothing depends on the order in which records arrived, so a grade can
always be recomputed, and reproduced by hand from the report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from wuye.core.errors import FailedPrecondition, Violations
from wuye.core.standards import checklist, score_against

ONE_DECIMAL = Decimal("0.1")


class SubjectKind(StrEnum):
    ENTERPRISE = "ENTERPRISE"
    PRACTITIONER = "PRACTITIONER"


class Grade(StrEnum):
    AAA = "AAA"
    AA = "AA"
    A = "A"
    B = "B"
    C = "C"
    C_UNFILED = "C_UNFILED"


class Direction(StrEnum):
    GOOD = "GOOD"
    BAD = "BAD"


class Severity(StrEnum):
    NORMAL = "NORMAL"
    SERIOUS = "SERIOUS"


class Appeal(StrEnum):
    NONE = "NONE"
    PENDING = "PENDING"
    UPHELD = "UPHELD"
    DISMISSED = "DISMISSED"


class RecordStatus(StrEnum):
    ACTIVE = "ACTIVE"
    APPEALED = "APPEALED"
    REMOVED = "REMOVED"
    EXPIRED = "EXPIRED"


class FilingOutcome(StrEnum):
    """What an approved filing of the registry means for the subject's file."""

    FILED = "FILED"
    CHANGED = "CHANGED"
    EXITED = "EXITED"


class AssessorUnit(StrEnum):
    HOUSING_AUTHORITY = "HOUSING_AUTHORITY"
    SUB_DISTRICT = "SUB_DISTRICT"
    ASSOCIATION = "ASSOCIATION"
    MARKET_SUPERVISION = "MARKET_SUPERVISION"
    TAX = "TAX"
    OWNERS = "OWNERS"


class AssessmentCycle(StrEnum):
    ANNUAL = "ANNUAL"
    HALF_YEAR = "HALF_YEAR"


def subject_key(kind: SubjectKind, subject_id: str) -> str:
    return f"{kind.lower()}:{subject_id}"


@dataclass(frozen=True)
class SubjectFile:
    """What the credit service knows of a subject from the registry's events."""

    kind: SubjectKind
    subject_id: str
    name: str
    district_code: str
    filed_at: dt.datetime | None = None
    unfiled_at: dt.datetime | None = None

    @property
    def key(self) -> str:
        return subject_key(self.kind, self.subject_id)

    def filed(self, at: dt.datetime) -> bool:
        return (
            self.filed_at is not None
            and self.filed_at <= at
            and (self.unfiled_at is None or self.unfiled_at > at or self.unfiled_at < self.filed_at)
        )

    @property
    def last_filing_at(self) -> dt.datetime | None:
        known = [t for t in (self.filed_at, self.unfiled_at) if t is not None]
        return max(known) if known else None


def apply_filing(
    subject: SubjectFile, outcome: FilingOutcome, name: str, district: str, at: dt.datetime
) -> SubjectFile | None:
    """The file after an approved filing of `at`; None when the file already reflects a filing
    as recent (the same event delivered again, or an older one replayed), which changes nothing.
    """
    last = subject.last_filing_at
    if last is not None and at <= last:
        return None
    if outcome is FilingOutcome.EXITED:
        return replace(subject, unfiled_at=at)
    if outcome is FilingOutcome.FILED:
        return replace(subject, name=name, district_code=district, filed_at=at, unfiled_at=None)
    return replace(subject, name=name)


@dataclass(frozen=True)
class Record:
    record_id: str
    subject_key: str
    record_type: str
    direction: Direction
    points: Decimal
    severity: Severity
    occurred_at: dt.datetime
    # None for serious records: they stay until rectified.
    expires_at: dt.datetime | None
    source: str
    source_event_id: str = ""
    evidence_reference: str = ""
    reason: str = ""
    removed_at: dt.datetime | None = None
    rectified_at: dt.datetime | None = None
    appeal: Appeal = Appeal.NONE
    appeal_reason: str = ""
    appeal_decision: str = ""

    def in_force(self, at: dt.datetime) -> bool:
        return (
            self.occurred_at <= at
            and (self.expires_at is None or at < self.expires_at)
            and (self.removed_at is None or at < self.removed_at)
            and (self.rectified_at is None or at < self.rectified_at)
        )

    @property
    def signed_points(self) -> Decimal:
        return self.points if self.direction is Direction.GOOD else -self.points

    @property
    def serious_bad(self) -> bool:
        return self.severity is Severity.SERIOUS and self.direction is Direction.BAD


@dataclass(frozen=True)
class Assessment:
    assessment_id: str
    subject_key: str
    cycle: AssessmentCycle
    period: str
    base_score: Decimal
    assessed_at: dt.datetime


@dataclass(frozen=True)
class GradeRules:
    # Lower bound of each grade, from the highest.
    bounds: tuple[tuple[Grade, Decimal], ...]
    default_base: Decimal


@dataclass(frozen=True)
class AnnouncedStanding:
    """The standing last saved and announced, to tell whether a new one is news."""

    grade: Grade
    score: Decimal
    blacklisted: bool
    red_listed: bool


@dataclass(frozen=True)
class ListedSubject:
    """A subject as grade lists show it: its file and the standing last announced."""

    subject: SubjectFile
    standing: AnnouncedStanding
    updated_at: dt.datetime


@dataclass(frozen=True)
class FeedEntry:
    """One change of standing in the feed to the city credit platform."""

    sequence: int
    kind: SubjectKind
    subject_id: str
    district_code: str
    previous_grade: Grade
    standing: AnnouncedStanding
    changed_at: dt.datetime


@dataclass(frozen=True)
class Standing:
    grade: Grade
    score: Decimal
    blacklisted: bool
    red_listed: bool
    base: Decimal
    assessment: Assessment | None
    good: Decimal
    bad: Decimal
    in_force: tuple[Record, ...]
    past: tuple[Record, ...]
    filed: bool

    @property
    def serious_in_force(self) -> bool:
        return any(r.serious_bad for r in self.in_force)

    @property
    def blacklist_cause(self) -> str:
        if not self.blacklisted:
            return ""
        return "grade C" if self.grade is Grade.C else "a serious record in force"

    @property
    def explanation(self) -> str:
        if not self.filed:
            text = "no approved filing -> C (unfiled)"
        else:
            base = (
                f"assessment {self.assessment.assessment_id}" if self.assessment else "default base"
            )
            text = (
                f"{base} {self.base} + good {self.good} - bad {self.bad} = {self.score} "
                f"-> {self.grade}"
            )
        if self.blacklisted:
            text += f"; blacklisted ({self.blacklist_cause})"
        elif self.red_listed:
            text += "; red list (AAA)"
        return text

    @property
    def announced(self) -> AnnouncedStanding:
        return AnnouncedStanding(self.grade, self.score, self.blacklisted, self.red_listed)

    def differs_from(self, old: AnnouncedStanding | None) -> bool:
        """Whether this standing is news against the one last announced."""
        if old is None:
            return True
        if self.announced == old:
            return False
        # An unfiled subject's score means nothing: only its listing is announced.
        return not (
            self.grade is old.grade is Grade.C_UNFILED
            and (self.blacklisted, self.red_listed) == (old.blacklisted, old.red_listed)
        )


def grade_of(score: Decimal, bad_in_force: bool, rules: GradeRules) -> Grade:
    for grade, bound in rules.bounds:
        if score >= bound:
            return grade
    # Below the lowest band: C only when a bad record explains it (DOMAIN.md).
    return Grade.C if bad_in_force else Grade.B


def evaluate(
    subject: SubjectFile,
    assessment: Assessment | None,
    records: Iterable[Record],
    at: dt.datetime,
    rules: GradeRules,
) -> Standing:
    """The subject's standing at `at`, from its latest assessment before then and its records."""
    in_force: list[Record] = []
    past: list[Record] = []
    for record in records:
        if record.in_force(at):
            in_force.append(record)
        elif record.occurred_at <= at:
            past.append(record)
    in_force.sort(key=lambda r: (r.occurred_at, r.record_id))
    past.sort(key=lambda r: (r.occurred_at, r.record_id))
    good = sum((r.points for r in in_force if r.direction is Direction.GOOD), Decimal(0))
    bad = sum((r.points for r in in_force if r.direction is Direction.BAD), Decimal(0))
    base = assessment.base_score if assessment else rules.default_base
    score = (base + good - bad).quantize(ONE_DECIMAL, ROUND_HALF_UP)
    filed = subject.filed(at)
    if not filed:
        grade = Grade.C_UNFILED
    else:
        grade = grade_of(score, any(r.direction is Direction.BAD for r in in_force), rules)
    serious = any(r.serious_bad for r in in_force)
    # Blacklisted by grade C or by a serious record in force, filed or not: an enterprise that
    # left without filing, or never filed, is not spared by being out of the register.
    blacklisted = grade is Grade.C or serious
    return Standing(
        grade=grade,
        score=score,
        blacklisted=blacklisted,
        red_listed=grade is Grade.AAA and not blacklisted,
        base=base.quantize(ONE_DECIMAL, ROUND_HALF_UP),
        assessment=assessment,
        good=good.quantize(ONE_DECIMAL, ROUND_HALF_UP),
        bad=bad.quantize(ONE_DECIMAL, ROUND_HALF_UP),
        in_force=tuple(in_force),
        past=tuple(past),
        filed=filed,
    )


def latest_assessment(assessments: Iterable[Assessment], at: dt.datetime) -> Assessment | None:
    before = [a for a in assessments if a.assessed_at <= at]
    return max(before, key=lambda a: (a.assessed_at, a.assessment_id)) if before else None


def expiry(severity: Severity, occurred_at: dt.datetime, validity_days: int) -> dt.datetime | None:
    if severity is Severity.SERIOUS:
        return None
    return occurred_at + dt.timedelta(days=validity_days)


# ---------------------------------------------------------------- assessments


def check_assessors(units: list[AssessorUnit], minimum: int, v: Violations, field: str) -> None:
    v.check(len(units) >= minimum, field, f"an assessment group has at least {minimum} members")
    v.check(
        AssessorUnit.HOUSING_AUTHORITY in units,
        field,
        "an assessment group includes the housing authority",
    )


def check_period(
    cycle: AssessmentCycle, period: str, years: tuple[int, int], v: Violations, field: str
) -> None:
    """A period names a year within `years` (first, last), and for a half-year review its half."""
    year, half = period[:4], period[4:]
    first, last = years
    ok = year.isascii() and year.isdigit() and first <= int(year or 0) <= last
    if cycle is AssessmentCycle.ANNUAL:
        ok = ok and half == ""
        v.check(ok, field, "an annual period is a year, e.g. 2026")
    else:
        ok = ok and half in ("H1", "H2")
        v.check(ok, field, "a half-year period is e.g. 2026H1 or 2026H2")


def assessment_base(
    standard: str, scores: dict[str, Decimal], v: Violations, field: str
) -> Decimal:
    """An assessment's base score: its checklist's score (every item scored, each within its
    maximum), as a share of the maximum out of 100."""
    return score_against(checklist(standard), scores, v, field)


# ---------------------------------------------------------------- appeals


def check_appealable(record: Record) -> None:
    if record.removed_at is not None or record.appeal is not Appeal.NONE:
        raise FailedPrecondition(
            "RECORD_NOT_APPEALABLE",
            f"record {record.record_id} was already appealed",
            appeal=str(record.appeal),
        )
    if record.direction is not Direction.BAD:
        raise FailedPrecondition("RECORD_NOT_APPEALABLE", "only bad records are appealed")


def appealed(record: Record, reason: str) -> Record:
    check_appealable(record)
    return replace(record, appeal=Appeal.PENDING, appeal_reason=reason)


def decided(record: Record, uphold: bool, reason: str, now: dt.datetime) -> Record:
    """An upheld appeal removes the record from now on; a dismissed one leaves it counting."""
    check_decidable(record)
    return replace(
        record,
        appeal=Appeal.UPHELD if uphold else Appeal.DISMISSED,
        appeal_decision=reason,
        removed_at=now if uphold else None,
    )


def rectified(record: Record, evidence: str, now: dt.datetime) -> Record:
    check_rectifiable(record)
    return replace(record, rectified_at=now, evidence_reference=evidence)


def check_decidable(record: Record) -> None:
    if record.appeal is not Appeal.PENDING:
        raise FailedPrecondition(
            "APPEAL_NOT_PENDING",
            f"record {record.record_id} has no appeal awaiting a decision",
            appeal=str(record.appeal),
        )


def record_status(record: Record, standing: Standing | None) -> RecordStatus:
    """A record's status; without the standing it belongs to, whether it still counts is not
    known, and it is taken to count."""
    if record.removed_at is not None:
        return RecordStatus.REMOVED
    if standing is not None and record not in standing.in_force:
        return RecordStatus.EXPIRED
    if record.appeal is Appeal.PENDING:
        return RecordStatus.APPEALED
    return RecordStatus.ACTIVE


def check_rectifiable(record: Record) -> None:
    if record.severity is not Severity.SERIOUS or record.rectified_at or record.removed_at:
        raise FailedPrecondition(
            "RECORD_NOT_RECTIFIABLE",
            f"record {record.record_id} is not a serious record in force",
        )


# ---------------------------------------------------------------- events of other services


def event_matches(message, when: dict, when_below: dict) -> bool:
    """Whether an event of another service makes a record, per its rule's conditions."""
    for field, expected in when.items():
        if getattr(message, field) != expected:
            return False
    return all(getattr(message, field) < bound for field, bound in when_below.items())
