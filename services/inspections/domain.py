"""Rules of inspections (DOMAIN.md section 7). Pure: no IO, no wire types.

The draw is deterministic in the seed and the published lists, so anyone can recompute it.
Algorithm version 1, written out so it can be reimplemented:

* key(label) = HMAC-SHA256(seed, label) read as a big-endian integer; u(label) = key / 2^256.
* Triggered projects are drawn first, reason "triggered".
* The other projects are grouped by grade (a project no enterprise serves: "UNSERVED"). In each
  group of n, sorted by key("entity:" + project_id), the first c are drawn, reason "sampled":
  c = floor(rate * n), plus one if frac(rate * n) > u("stratum:" + grade). Exact fractions,
  so each group's expected share is exactly its rate.
* While fewer than ceil(floor_rate * N) of all N projects are drawn, the undrawn project with
  the smallest key joins, reason "floor".
* Each drawn project gets the k inspectors with the smallest key("inspector:" + project_id +
  ":" + inspector_id) among those who serve its district and have no conflict with its
  enterprise.
* The commitment is SHA-256 of the seed's bytes followed by the lists digest: SHA-256 of the
  canonical JSON (sorted keys, no spaces, UTF-8) of the round's parameters and lists.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from fractions import Fraction

from wuye.core.errors import FailedPrecondition, PermissionDenied, Violations

ALGORITHM_VERSION = 1
UNSERVED = "UNSERVED"
_SCALE = 2**256


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

    @property
    def stratum(self) -> str:
        return self.grade if self.credit_code else UNSERVED


@dataclass(frozen=True)
class Inspector:
    inspector_id: str
    name: str
    unit: str
    districts: tuple[str, ...]
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
        "inspectors_per_check": spec.inspectors_per_check,
        "created_at": spec.created_at,
        "entities": [
            [e.project_id, e.project_type, e.district_code, e.credit_code, e.grade, e.triggered]
            for e in spec.entities
        ],
        "inspectors": [
            [i.inspector_id, i.name, i.unit, list(i.districts), list(i.conflicts)]
            for i in spec.inspectors
        ],
    }


def lists_digest(spec: RoundSpec) -> bytes:
    text = json.dumps(canonical(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).digest()


def commitment(seed: bytes, spec: RoundSpec) -> str:
    return hashlib.sha256(seed + lists_digest(spec)).hexdigest()


# ---------------------------------------------------------------- the draw


def _key(seed: bytes, label: str) -> int:
    return int.from_bytes(hmac.new(seed, label.encode(), hashlib.sha256).digest(), "big")


def draw(seed: bytes, spec: RoundSpec) -> list[Selection]:
    """Select projects and inspectors; raises FailedPrecondition if a drawn project has fewer
    eligible inspectors than a check needs."""
    keys = {e.project_id: _key(seed, f"entity:{e.project_id}") for e in spec.entities}
    chosen: dict[str, str] = {e.project_id: "triggered" for e in spec.entities if e.triggered}
    strata: dict[str, list[Entity]] = {}
    for entity in spec.entities:
        if not entity.triggered:
            strata.setdefault(entity.stratum, []).append(entity)
    for grade in sorted(strata):
        members = sorted(strata[grade], key=lambda e: keys[e.project_id])
        share = Fraction(spec.rates.get(grade, Decimal(0))) * len(members)
        count = math.floor(share)
        if share - count > Fraction(_key(seed, f"stratum:{grade}"), _SCALE):
            count += 1
        for entity in members[:count]:
            chosen[entity.project_id] = "sampled"
    needed = math.ceil(Fraction(spec.floor_rate) * len(spec.entities))
    if len(chosen) < needed:
        rest = sorted((pid for pid in keys if pid not in chosen), key=keys.__getitem__)
        for project_id in rest[: needed - len(chosen)]:
            chosen[project_id] = "floor"

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
        eligible.sort(key=lambda i: _key(seed, f"inspector:{project_id}:{i.inspector_id}"))
        selections.append(
            Selection(
                project_id=project_id,
                reason=chosen[project_id],
                inspector_ids=tuple(i.inspector_id for i in eligible[: spec.inspectors_per_check]),
            )
        )
    return selections


def verify(
    seed: bytes, seed_commitment: str, spec: RoundSpec, published: list[Selection]
) -> list[str]:
    """Every way a published draw departs from what its seed and lists give; empty if none."""
    problems = []
    if commitment(seed, spec) != seed_commitment:
        problems.append("the seed and lists do not match the published commitment")
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


def check_period(period: str, v: Violations, field: str) -> None:
    year, part = period[:4], period[4:]
    ok = year.isascii() and year.isdigit() and 2000 <= int(year or 0) <= 2100
    v.check(ok and part in ("", "H1", "H2"), field, "is a year (2026) or half-year (2026H1)")


def period_bounds(period: str) -> tuple[dt.datetime, dt.datetime]:
    year, part = int(period[:4]), period[4:]
    start = dt.datetime(year, 7 if part == "H2" else 1, 1, tzinfo=dt.UTC)
    if part == "H1":
        return start, dt.datetime(year, 7, 1, tzinfo=dt.UTC)
    return start, dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC)


def check_drawable(state: RoundState) -> None:
    if state is RoundState.DRAWN:
        raise FailedPrecondition("ROUND_ALREADY_DRAWN", "a drawn round is never drawn again")


# ---------------------------------------------------------------- checks and rectification


def check_inspector_assigned(inspector_ids: Iterable[str], subject: str) -> None:
    if subject not in inspector_ids:
        raise PermissionDenied(
            "CHECK_NOT_ASSIGNED", "an inspector records only the checks drawn for them"
        )


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


def overdue(order: Rectification, today: dt.date) -> bool:
    return order.state is RectificationState.OPEN and order.rectify_by < today


def check_reinspectable(order: Rectification) -> None:
    if order.state is RectificationState.CLOSED:
        raise FailedPrecondition(
            "RECTIFICATION_CLOSED", f"rectification {order.order_id} is already closed"
        )


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
