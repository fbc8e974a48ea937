"""Rules of inspections (DOMAIN.md section 7). Pure: no IO, no wire types.

The draw is a pure function of a seed and the lists published when the round was created, so
anyone can recompute it, and another process (a tender's expert committee) can reuse it.
Algorithm version 2, written out so it can be reimplemented:

* key(label) and u(label), the lists digest and the commitment are the core's
  (wuye.core.draw): key(label) = HMAC-SHA256(seed, label) read as a big-endian integer;
  u(label) = key / 2^256.
* A project's weight w comes from its complaints in the window before the round's creation:
  the weight of the largest threshold of `complaint_weights` ([complaints, weight] pairs) that
  its count reaches, else 1. Its key is the smallest of w tickets: key("entity:" + project_id)
  and, for j = 1 .. w-1, key("entity:" + project_id + ":" + j). Smaller keys are drawn first,
  so within its group a project with w tickets is drawn as if it were listed w times.
* Triggered projects are drawn first, reason "triggered".
* The other projects are grouped by grade (a project no enterprise serves: "UNSERVED"). In each
  group of n, sorted by key, the first c are drawn, reason "sampled": c = floor(rate * n), plus
  one if frac(rate * n) > u("stratum:" + grade). Exact fractions, so each group's expected
  share is exactly its rate.
* The floor, reason "floor": projects join while fewer than ceil(floor_rate * N) of all N
  listed projects are drawn and, when the round's period closes its year (a year, or a second
  half-year), while fewer than ceil(yearly_floor_rate * N) are drawn by this round and the
  year's earlier rounds together (`drawn_earlier`, the listed projects they drew). Those
  joining are the undrawn projects not drawn earlier this year, by key, then the others, by key.
* Each drawn project gets the k inspectors with the smallest key("inspector:" + project_id +
  ":" + inspector_id) among those who serve its district and have no conflict with its
  enterprise (the inspector's own, or a declared relative's, frozen into `conflicts`).
* The commitment is SHA-256 of the seed's bytes followed by the lists digest: SHA-256 of the
  canonical JSON (sorted keys, no spaces, UTF-8) of the round's parameters and lists. It is
  published when the round is created, before anyone knows the seed; a verifier holds an
  export to the commitment as published then, not to the one the export carries.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from fractions import Fraction
from zoneinfo import ZoneInfo

from wuye.core import draw as public_draw
from wuye.core.errors import FailedPrecondition, PermissionDenied, Violations
from wuye.core.standards import Checklist, score_against

ALGORITHM_VERSION = 2
UNSERVED = "UNSERVED"


class RoundState(StrEnum):
    COMMITTED = "COMMITTED"
    DRAWN = "DRAWN"


class RectificationState(StrEnum):
    OPEN = "OPEN"
    OVERDUE = "OVERDUE"
    CLOSED = "CLOSED"


@dataclass(frozen=True)
class Entity:
    project_id: str
    project_type: str
    district_code: str
    credit_code: str
    grade: str
    triggered: bool = False
    # Complaints about the project in the window before the round's creation.
    complaints: int = 0

    @property
    def stratum(self) -> str:
        return self.grade if self.credit_code else UNSERVED


@dataclass(frozen=True)
class Inspector:
    inspector_id: str
    name: str
    unit: str
    districts: tuple[str, ...]
    # Credit codes of enterprises the inspector may not inspect.
    conflicts: tuple[str, ...]


@dataclass(frozen=True)
class Selection:
    project_id: str
    reason: str
    inspector_ids: tuple[str, ...]


@dataclass(frozen=True)
class RoundSpec:
    """What a round is drawn from: parameters and the lists frozen at its creation."""

    round_id: str
    districts: tuple[str, ...]
    period: str
    rates: dict[str, Decimal]
    floor_rate: Decimal
    inspectors_per_check: int
    created_at: str  # RFC 3339, as published
    entities: tuple[Entity, ...]
    inspectors: tuple[Inspector, ...]
    yearly_floor_rate: Decimal = Decimal(0)
    # Listed projects the year's earlier rounds drew.
    drawn_earlier: tuple[str, ...] = ()
    # (complaints, weight) thresholds, ascending.
    complaint_weights: tuple[tuple[int, int], ...] = ()
    algorithm_version: int = ALGORITHM_VERSION


# ---------------------------------------------------------------- commitment


def canonical(spec: RoundSpec) -> dict:
    """The round's parameters and lists as plain JSON values: what the commitment covers, and
    what is stored."""
    return {
        "algorithm_version": spec.algorithm_version,
        "round_id": spec.round_id,
        "districts": list(spec.districts),
        "period": spec.period,
        "rates": {grade: str(rate) for grade, rate in sorted(spec.rates.items())},
        "floor_rate": str(spec.floor_rate),
        "yearly_floor_rate": str(spec.yearly_floor_rate),
        "inspectors_per_check": spec.inspectors_per_check,
        "created_at": spec.created_at,
        "entities": [
            [
                e.project_id,
                e.project_type,
                e.district_code,
                e.credit_code,
                e.grade,
                e.triggered,
                e.complaints,
            ]
            for e in spec.entities
        ],
        "inspectors": [
            [i.inspector_id, i.name, i.unit, list(i.districts), list(i.conflicts)]
            for i in spec.inspectors
        ],
        "drawn_earlier": list(spec.drawn_earlier),
        "complaint_weights": [list(pair) for pair in spec.complaint_weights],
    }


def lists_digest(spec: RoundSpec) -> bytes:
    return public_draw.lists_digest(canonical(spec))


def commitment(seed: bytes, spec: RoundSpec) -> str:
    return public_draw.commitment(seed, lists_digest(spec))


# ---------------------------------------------------------------- the draw


def weight(complaints: int, complaint_weights: Iterable[tuple[int, int]]) -> int:
    """The weight of the largest threshold `complaints` reaches; 1 below every threshold."""
    reached = [w for threshold, w in complaint_weights if complaints >= threshold]
    return max(reached, default=1)


def _entity_key(seed: bytes, entity: Entity, complaint_weights) -> int:
    tickets = weight(entity.complaints, complaint_weights)
    label = f"entity:{entity.project_id}"
    return min(public_draw.key(seed, label if j == 0 else f"{label}:{j}") for j in range(tickets))


def closes_year(period: str) -> bool:
    return period[4:] in ("", "H2")


def draw(seed: bytes, spec: RoundSpec) -> list[Selection]:
    """Select projects and inspectors; raises FailedPrecondition if a drawn project has fewer
    eligible inspectors than a check needs."""
    keys = {e.project_id: _entity_key(seed, e, spec.complaint_weights) for e in spec.entities}
    chosen: dict[str, str] = {e.project_id: "triggered" for e in spec.entities if e.triggered}
    strata: dict[str, list[Entity]] = {}
    for entity in spec.entities:
        if not entity.triggered:
            strata.setdefault(entity.stratum, []).append(entity)
    for grade in sorted(strata):
        members = sorted(strata[grade], key=lambda e: keys[e.project_id])
        share = Fraction(spec.rates.get(grade, Decimal(0))) * len(members)
        count = math.floor(share)
        if share - count > Fraction(
            public_draw.key(seed, f"stratum:{grade}"), public_draw.KEY_SCALE
        ):
            count += 1
        for entity in members[:count]:
            chosen[entity.project_id] = "sampled"

    listed = len(spec.entities)
    needed = math.ceil(Fraction(spec.floor_rate) * listed)
    needed_this_year = (
        math.ceil(Fraction(spec.yearly_floor_rate) * listed) if closes_year(spec.period) else 0
    )
    earlier = set(spec.drawn_earlier) & keys.keys()
    covered = len(earlier | chosen.keys())
    rest = sorted((pid for pid in keys if pid not in chosen), key=lambda p: (p in earlier, keys[p]))
    for project_id in rest:
        if len(chosen) >= needed and covered >= needed_this_year:
            break
        chosen[project_id] = "floor"
        covered += project_id not in earlier

    by_id = {e.project_id: e for e in spec.entities}
    selections = []
    for project_id in sorted(chosen):
        entity = by_id[project_id]
        eligible = [
            i
            for i in spec.inspectors
            if entity.district_code in i.districts and entity.credit_code not in i.conflicts
        ]
        if len(eligible) < spec.inspectors_per_check:
            raise FailedPrecondition(
                "NOT_ENOUGH_INSPECTORS",
                f"project {project_id} has {len(eligible)} eligible inspectors, a check needs "
                f"{spec.inspectors_per_check}",
                project_id=project_id,
            )
        eligible.sort(
            key=lambda i: public_draw.key(seed, f"inspector:{project_id}:{i.inspector_id}")
        )
        selections.append(
            Selection(
                project_id=project_id,
                reason=chosen[project_id],
                inspector_ids=tuple(i.inspector_id for i in eligible[: spec.inspectors_per_check]),
            )
        )
    return selections


def verify(
    seed: bytes,
    seed_commitment: str,
    spec: RoundSpec,
    published: list[Selection],
    published_commitment: str | None = None,
) -> list[str]:
    """Every way a published draw departs from what its seed and lists give, first what matters
    most; empty if none. `published_commitment`: the commitment as published when the round
    was created; without it only the export's agreement with itself can be checked."""
    problems = public_draw.commitment_problems(
        seed,
        seed_commitment,
        lists_digest(spec),
        published_commitment,
        "when the round was created",
    )
    try:
        expected = draw(seed, spec)
    except FailedPrecondition as e:
        return [*problems, f"the lists cannot be drawn: {e.message}"]
    if expected != published:
        theirs = {s.project_id: s for s in published}
        ours = {s.project_id: s for s in expected}
        found = len(problems)
        for project_id in sorted(ours.keys() | theirs.keys()):
            if ours.get(project_id) != theirs.get(project_id):
                problems.append(
                    f"project {project_id}: recomputed {ours.get(project_id)}, "
                    f"published {theirs.get(project_id)}"
                )
        if len(problems) == found:
            problems.append("the published selections repeat a project or are out of order")
    return problems


# ---------------------------------------------------------------- rounds


def floor_for_period(period: str, yearly_floor: Decimal) -> Decimal:
    return yearly_floor / 2 if period[4:] in ("H1", "H2") else yearly_floor


def round_floor(
    period: str, yearly_floor: Decimal, requested: Decimal | None, v: Violations, field: str
) -> Decimal:
    """A round's floor: the configured one for its period, or a higher one it asks for."""
    floor = floor_for_period(period, yearly_floor)
    if requested is not None and v.check(
        floor <= requested <= 1, field, f"must be from {floor} (the configured floor) to 1"
    ):
        return requested
    return floor


def inspectors_per_check(
    requested: int, configured: int, most: int, v: Violations, field: str
) -> int:
    """How many inspectors a round sends to each check: the configured number unless it asks
    for more, up to `most`."""
    per_check = requested or configured
    v.check(
        configured <= per_check <= most, field, f"a check needs {configured} to {most} inspectors"
    )
    return per_check


def check_period(period: str, v: Violations, field: str) -> None:
    year, part = period[:4], period[4:]
    ok = year.isascii() and year.isdigit() and 2000 <= int(year or 0) <= 2100
    v.check(ok and part in ("", "H1", "H2"), field, "is a year (2026) or half-year (2026H1)")


def period_halves(period: str) -> tuple[str, ...]:
    """The half-years a period covers: a district has one round for each, never two."""
    return (period,) if period[4:] else (f"{period}H1", f"{period}H2")


def period_bounds(period: str, city: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The period on the city's calendar: from its first midnight to the next period's."""
    year, part = int(period[:4]), period[4:]
    start = dt.datetime(year, 7 if part == "H2" else 1, 1, tzinfo=city)
    if part == "H1":
        return start, dt.datetime(year, 7, 1, tzinfo=city)
    return start, dt.datetime(year + 1, 1, 1, tzinfo=city)


def check_one_round_per_period(taken: Mapping[tuple[str, str], str]) -> None:
    """`taken`: the rounds that already hold a (district, half-year) the new round needs."""
    if taken:
        (district, half), round_id = min(taken.items())
        raise FailedPrecondition(
            "ROUND_EXISTS_FOR_PERIOD",
            f"district {district} already has round {round_id} for {half}: one round per "
            "district and period, so a draw cannot be repeated by creating another",
            round_id=round_id,
            district_code=district,
            period=half,
        )


def merge_rates(
    configured: Mapping[str, Decimal],
    requested: Iterable[tuple[int, str, Decimal | None]],
    v: Violations,
    field: str,
) -> dict[str, Decimal]:
    """The configured rates with a round's own: a grade's rate may be raised, never set below
    the configured one (the configured rates are the minimum DOMAIN.md asks for). `requested`:
    (position, grade, rate or None if unreadable)."""
    rates = dict(configured)
    grades = ", ".join(sorted(configured))
    for n, grade, rate in requested:
        # An unknown grade is not repeated back: it would grow every later message by its length.
        if not v.check(grade in configured, f"{field}[{n}].grade", f"must be one of {grades}"):
            continue
        if rate is None:
            continue
        minimum = configured[grade]
        if v.check(
            minimum <= rate <= 1,
            f"{field}[{n}].rate",
            f"must be from {minimum} (the configured rate of {grade}) to 1",
        ):
            rates[grade] = rate
    return rates


def check_drawable(state: RoundState) -> None:
    if state is RoundState.DRAWN:
        raise FailedPrecondition("ROUND_ALREADY_DRAWN", "a drawn round is never drawn again")


def conflicts_of(
    declared: Iterable[str], relative_keys: Iterable[str], linked: Mapping[str, Iterable[str]]
) -> tuple[str, ...]:
    """An inspector's conflicts: the enterprises they declared, and those their declared
    relatives are linked to (`linked`: a person's keyed hash -> credit codes)."""
    codes = set(declared)
    for key in relative_keys:
        codes.update(linked.get(key, ()))
    return tuple(sorted(codes))


def complaints_since(created: dt.datetime, window_days: int) -> dt.datetime:
    return created - dt.timedelta(days=window_days)


# ---------------------------------------------------------------- checks and rectification


def check_inspector_assigned(inspector_ids: Iterable[str], subject: str) -> None:
    if subject not in inspector_ids:
        raise PermissionDenied(
            "CHECK_NOT_ASSIGNED", "an inspector records only the checks drawn for them"
        )


@dataclass(frozen=True)
class Finding:
    item_id: str
    description: str
    # Set: the finding opens a rectification order due then.
    rectify_by: dt.date | None = None


@dataclass(frozen=True)
class Check:
    check_id: str
    round_id: str
    project_id: str
    project_type: str
    credit_code: str
    district_code: str
    reason: str
    inspector_ids: tuple[str, ...]
    scores: dict[str, Decimal] | None = None
    findings: tuple[Finding, ...] = ()
    score: Decimal | None = None
    recorded_at: dt.datetime | None = None


@dataclass(frozen=True)
class Round:
    spec: RoundSpec
    seed_commitment: str
    state: RoundState
    # Revealed by the draw; empty before.
    seed: str
    checks: tuple[Check, ...] = ()


def check_recordable(check: Check) -> None:
    if check.recorded_at is not None:
        raise FailedPrecondition(
            "CHECK_ALREADY_RECORDED", f"check {check.check_id} was recorded; results stand"
        )


def check_deadline(day: dt.date | None, today: dt.date, max_days: int, v: Violations, field: str):
    """A rectification deadline is a day after today, at most `max_days` away."""
    if day is not None:
        v.check(
            today < day <= today + dt.timedelta(days=max_days),
            field,
            f"must be after today and at most {max_days} days away",
        )


def score_check(
    checklist: Checklist,
    scores: dict[str, Decimal],
    findings: list[Finding],
    today: dt.date,
    max_days: int,
    v: Violations,
) -> Decimal:
    """The check's score out of 100 against the checklist of the project's type; every finding
    names an item of it, and its deadline, if any, is a valid one."""
    score = score_against(checklist, scores, v, "scores") if not v else Decimal(0)
    for n, finding in enumerate(findings):
        v.check(
            finding.item_id in checklist.items,
            f"findings[{n}].item_id",
            f"is not an item of the {checklist.standard} checklist",
        )
        check_deadline(finding.rectify_by, today, max_days, v, f"findings[{n}].rectify_by")
    return score


@dataclass(frozen=True)
class Rectification:
    order_id: str
    check_id: str
    project_id: str
    credit_code: str
    district_code: str
    item_id: str
    description: str
    rectify_by: dt.date
    state: RectificationState
    closed_at: dt.datetime | None = None


def orders_of(check: Check, findings: Iterable[Finding], new_order_id) -> list[Rectification]:
    """A rectification order for each finding with a deadline."""
    return [
        Rectification(
            order_id=new_order_id(),
            check_id=check.check_id,
            project_id=check.project_id,
            credit_code=check.credit_code,
            district_code=check.district_code,
            item_id=f.item_id,
            description=f.description,
            rectify_by=f.rectify_by,
            state=RectificationState.OPEN,
        )
        for f in findings
        if f.rectify_by is not None
    ]


class Reinspection(StrEnum):
    RECTIFIED = "RECTIFIED"
    EXTENDED = "EXTENDED"
    OVERDUE = "OVERDUE"


# What may happen to an order in each state, and the state it leads to.
RECTIFICATION_TRANSITIONS: dict[tuple[RectificationState, Reinspection], RectificationState] = {
    (RectificationState.OPEN, Reinspection.RECTIFIED): RectificationState.CLOSED,
    (RectificationState.OVERDUE, Reinspection.RECTIFIED): RectificationState.CLOSED,
    (RectificationState.OPEN, Reinspection.EXTENDED): RectificationState.OPEN,
    (RectificationState.OVERDUE, Reinspection.EXTENDED): RectificationState.OPEN,
    (RectificationState.OPEN, Reinspection.OVERDUE): RectificationState.OVERDUE,
}


def transition(
    order: Rectification,
    what: Reinspection,
    now: dt.datetime,
    rectify_by: dt.date | None = None,
) -> Rectification:
    """The order after `what`; refused if its state does not allow it."""
    state = RECTIFICATION_TRANSITIONS.get((order.state, what))
    if state is None:
        if order.state is RectificationState.CLOSED:
            raise FailedPrecondition(
                "RECTIFICATION_CLOSED", f"rectification {order.order_id} is already closed"
            )
        raise FailedPrecondition(
            "RECTIFICATION_NOT_OPEN", f"rectification {order.order_id} is {order.state.value}"
        )
    changed = replace(order, state=state)
    if what is Reinspection.RECTIFIED:
        changed = replace(changed, closed_at=now)
    if what is Reinspection.EXTENDED:
        changed = replace(changed, rectify_by=rectify_by)
    return changed


def overdue(order: Rectification, today: dt.date) -> bool:
    return order.state is RectificationState.OPEN and order.rectify_by < today


# ---------------------------------------------------------------- assessment reports


@dataclass(frozen=True)
class CheckResult:
    credit_code: str
    score: Decimal
    findings: int


@dataclass(frozen=True)
class EnterpriseSummary:
    credit_code: str
    checks: int
    average: Decimal
    findings: int
    overdue: int


def summarise(
    results: Iterable[CheckResult], overdue_by_enterprise: dict[str, int]
) -> tuple[int, Decimal, int, list[EnterpriseSummary]]:
    """Checks, average score, findings, and each enterprise's summary, lowest average first."""
    by_enterprise: dict[str, list[CheckResult]] = {}
    for result in results:
        by_enterprise.setdefault(result.credit_code, []).append(result)
    summaries = [
        EnterpriseSummary(
            credit_code=code,
            checks=len(rs),
            average=_average([r.score for r in rs]),
            findings=sum(r.findings for r in rs),
            overdue=overdue_by_enterprise.get(code, 0),
        )
        for code, rs in by_enterprise.items()
        if code  # projects no enterprise serves count in the totals only
    ]
    summaries.sort(key=lambda s: (s.average, s.credit_code))
    every = [r for rs in by_enterprise.values() for r in rs]
    return len(every), _average([r.score for r in every]), sum(r.findings for r in every), summaries


def _average(scores: list[Decimal]) -> Decimal:
    if not scores:
        return Decimal(0)
    return (sum(scores, Decimal(0)) / len(scores)).quantize(Decimal("0.1"), ROUND_HALF_UP)
