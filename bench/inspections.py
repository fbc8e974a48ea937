"""The inspections suite: (a) a city-wide draw (10,000 projects, 500 inspectors) with the pure
draw the service and the verifier run, and (b) a district's annual assessment report over a
year of recorded checks and rectification orders in a fresh PostgreSQL schema, as
GetAssessmentReport computes it.

`run(options)` returns the figures and prints nothing; `section(figures)` renders them as the
report's other suites are rendered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.deployment import migrated_schema
from bench.report import BELOW, PASS, table
from wuye.core.db import create_service_engine
from wuye.core.ids import credit_code_check_char
from wuye.core.settings import ORDOS_DISTRICTS
from wuye.inspections import domain, store
from wuye.inspections.commands import Inspections
from wuye.inspections.domain import Entity, Inspector, RoundSpec
from wuye.inspections.service import SPEC
from wuye.inspections.settings import DEFAULT_RATES, InspectionsSettings

TARGET_DRAW_SECONDS = 1.0
TARGET_REPORT_SECONDS = 2.0
REPORT_DISTRICT = "150602"
REPORT_YEAR = 2026
INSERT_BATCH = 2000

# Share of projects by the grade of their enterprise: most serve A, few C; some are unfiled,
# some served by none.
GRADE_MIX = {
    "AAA": 0.04,
    "AA": 0.12,
    "A": 0.46,
    "B": 0.20,
    "C": 0.08,
    "C_UNFILED": 0.05,
    domain.UNSERVED: 0.05,
}
# Complaints a project had before the round: most none, a few many (each weighs in the draw).
COMPLAINTS = (0,) * 12 + (1, 1, 2, 3, 5, 12)
# Share of projects by district: the city centre (Dongsheng, Kangbashi) holds most.
DISTRICT_WEIGHTS = {
    "150602": 0.34,
    "150603": 0.16,
    "150621": 0.09,
    "150622": 0.10,
    "150623": 0.04,
    "150624": 0.05,
    "150625": 0.04,
    "150626": 0.05,
    "150627": 0.13,
}


@dataclass(frozen=True)
class InspectionsOptions:
    database_url: str
    projects: int = 10_000
    inspectors: int = 500
    enterprises: int = 800
    triggered: int = 50
    draw_repeats: int = 5
    checks: int = 10_000
    orders: int = 3_000
    # Recorded in the other districts the same year: the report must pick its own out.
    other_checks: int = 5_000
    report_repeats: int = 5


def _credit_code(district: str, serial: int) -> str:
    first17 = f"91{district}MA{serial:07d}"
    return first17 + credit_code_check_char(first17)


def city_round(options: InspectionsOptions, rng: random.Random) -> RoundSpec:
    """A city-wide round: every district's projects and the whole inspector pool."""
    districts = sorted(ORDOS_DISTRICTS)
    enterprises = [
        (code, rng.choices(list(GRADE_MIX)[:-1], list(GRADE_MIX.values())[:-1])[0])
        for code in (
            _credit_code(rng.choices(districts, [DISTRICT_WEIGHTS[d] for d in districts])[0], n)
            for n in range(options.enterprises)
        )
    ]
    triggered = set(rng.sample(range(options.projects), options.triggered))
    entities = []
    for n in range(options.projects):
        district = rng.choices(districts, [DISTRICT_WEIGHTS[d] for d in districts])[0]
        unserved = rng.random() < GRADE_MIX[domain.UNSERVED]
        code, grade = ("", "") if unserved else rng.choice(enterprises)
        entities.append(
            Entity(
                project_id=f"{district}-{n:012x}",
                project_type=rng.choice(["RESIDENTIAL", "OFFICE", "COMMERCIAL", "HOSPITAL"]),
                district_code=district,
                credit_code=code,
                grade=grade,
                triggered=n in triggered,
                complaints=rng.choice(COMPLAINTS),
            )
        )
    inspectors = []
    for n in range(options.inspectors):
        home = districts[n % len(districts)]
        serves = {home, *rng.sample(districts, rng.choice([0, 0, 1]))}
        conflicts = tuple(sorted({rng.choice(enterprises)[0] for _ in range(rng.randint(0, 3))}))
        inspectors.append(
            Inspector(
                f"insp-{n:04d}",
                f"检查员{n}",
                f"{ORDOS_DISTRICTS[home]}住建局",
                tuple(sorted(serves)),
                conflicts,
            )
        )
    settings = InspectionsSettings
    return RoundSpec(
        round_id=f"{REPORT_DISTRICT}-Rbench000000",
        districts=tuple(districts),
        period=str(REPORT_YEAR),
        rates=dict(DEFAULT_RATES),
        floor_rate=Decimal("0.05"),
        yearly_floor_rate=settings.model_fields["yearly_floor_rate"].default,
        complaint_weights=settings.model_fields["complaint_weights"].default,
        inspectors_per_check=2,
        created_at=f"{REPORT_YEAR}-01-05T09:00:00Z",
        entities=tuple(sorted(entities, key=lambda e: e.project_id)),
        inspectors=tuple(inspectors),
    )


def _timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def measure_draw(options: InspectionsOptions) -> dict[str, Any]:
    spec = city_round(options, random.Random(2026))
    seeds = [
        hashlib.sha256(f"bench-seed-{n}".encode()).digest() for n in range(options.draw_repeats)
    ]
    draws = [_timed(lambda s=s: domain.draw(s, spec)) for s in seeds]
    seconds = [t for t, _ in draws]
    commit_seconds, _ = _timed(lambda: domain.commitment(seeds[0], spec))
    selected = [len(selections) for _, selections in draws]
    reasons: dict[str, int] = {}
    for selection in draws[0][1]:
        reasons[selection.reason] = reasons.get(selection.reason, 0) + 1
    median = statistics.median(seconds)
    return {
        "projects": len(spec.entities),
        "inspectors": len(spec.inspectors),
        "districts": len(spec.districts),
        "repeats": len(seconds),
        "selected": round(statistics.mean(selected), 1),
        "reasons_first_draw": reasons,
        "seconds": {"median": round(median, 4), "max": round(max(seconds), 4)},
        "commitment_seconds": round(commit_seconds, 4),
        "target_seconds": TARGET_DRAW_SECONDS,
        "passed": max(seconds) < TARGET_DRAW_SECONDS,
    }


# ---------------------------------------------------------------- the assessment report


def _moment(rng: random.Random, start: dt.datetime, end: dt.datetime) -> dt.datetime:
    return start + dt.timedelta(seconds=rng.uniform(0, (end - start).total_seconds()))


def _year_of_results(
    engine: sa.Engine, options: InspectionsOptions, rng: random.Random
) -> dict[str, int]:
    """Checks recorded over the year (with findings) and rectification orders of them, in the
    report's district and, fewer, in the others."""
    start = dt.datetime(REPORT_YEAR, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(REPORT_YEAR + 1, 1, 1, tzinfo=dt.UTC)
    others = [d for d in sorted(ORDOS_DISTRICTS) if d != REPORT_DISTRICT]
    codes = {
        d: [_credit_code(d, n) for n in range(200 if d == REPORT_DISTRICT else 40)]
        for d in ORDOS_DISTRICTS
    }
    items = [f"R0{n}" for n in range(1, 9)]
    checks, own_checks = [], []
    for n in range(options.checks + options.other_checks):
        district = REPORT_DISTRICT if n < options.checks else rng.choice(others)
        findings = [
            {"item_id": item, "description": "消防通道被占用", "rectify_by": None}
            for item in rng.sample(items, rng.choice([0, 0, 0, 1, 1, 2, 3]))
        ]
        row = {
            "check_id": f"{district}-K{n:012x}",
            "round_id": f"{district}-R{n % 4:012x}",
            "project_id": f"{district}-{n:012x}",
            "project_type": "RESIDENTIAL",
            "credit_code": rng.choice(codes[district]) if rng.random() > 0.05 else "",
            "district_code": district,
            "reason": "sampled",
            "inspector_ids": [f"insp-{rng.randrange(500):04d}", f"insp-{rng.randrange(500):04d}"],
            "position": n,
            "scores": {item: "10" for item in items},
            "findings": findings,
            "score_tenths": rng.randint(450, 1000),
            "recorded_at": _moment(rng, start, end),
        }
        checks.append(row)
        if district == REPORT_DISTRICT and findings:
            own_checks.append(row)
    orders = []
    for n in range(options.orders):
        check = rng.choice(own_checks)
        opened = check["recorded_at"]
        rectify_by = (opened + dt.timedelta(days=rng.choice([15, 30, 60]))).date()
        state, closed, late = rng.choices(
            [("CLOSED", True, False), ("OVERDUE", False, True), ("OPEN", False, False)],
            [0.65, 0.15, 0.20],
        )[0]
        orders.append(
            {
                "order_id": f"{REPORT_DISTRICT}-O{n:012x}",
                "check_id": check["check_id"],
                "project_id": check["project_id"],
                "credit_code": check["credit_code"],
                "district_code": REPORT_DISTRICT,
                "item_id": check["findings"][0]["item_id"],
                "description": "消防通道被占用",
                "rectify_by": rectify_by,
                "state": state,
                "opened_at": opened,
                "overdue_at": opened + dt.timedelta(days=61) if late else None,
                "closed_at": opened + dt.timedelta(days=rng.randint(3, 50)) if closed else None,
            }
        )
    with engine.begin() as connection:
        for table_, rows in ((store.checks, checks), (store.rectifications, orders)):
            for first in range(0, len(rows), INSERT_BATCH):
                connection.execute(table_.insert(), rows[first : first + INSERT_BATCH])
        connection.exec_driver_sql("ANALYZE checks")
        connection.exec_driver_sql("ANALYZE rectifications")
    return {"checks": options.checks, "other_checks": options.other_checks, "orders": len(orders)}


def measure_report(options: InspectionsOptions) -> dict[str, Any]:
    with migrated_schema(options.database_url, InspectionsSettings, SPEC) as settings:
        engine = create_service_engine(settings)
        try:
            stored = _year_of_results(engine, options, random.Random(2026))
            inspections = Inspections(engine, settings)

            def report():
                return inspections.assessment_report(REPORT_DISTRICT, str(REPORT_YEAR))

            first, _ = _timed(report)
            runs = [_timed(report) for _ in range(options.report_repeats)]
        finally:
            engine.dispose()
    seconds = [t for t, _ in runs]
    checks, average, findings, opened, closed, overdue, enterprises = runs[-1][1]
    return {
        **stored,
        "report": {
            "checks": checks,
            "average_score": str(average),
            "findings": findings,
            "rectifications_opened": opened,
            "rectifications_closed": closed,
            "rectifications_overdue": overdue,
            "enterprises": len(enterprises),
        },
        "first_seconds": round(first, 4),
        "seconds": {"median": round(statistics.median(seconds), 4), "max": round(max(seconds), 4)},
        "repeats": len(seconds),
        "target_seconds": TARGET_REPORT_SECONDS,
        "passed": max(first, *seconds) < TARGET_REPORT_SECONDS,
    }


def run(options: InspectionsOptions, log_dir: Path | None = None) -> dict[str, Any]:
    """Both measures; `log_dir` is accepted for the runner's sake (nothing is logged)."""
    draw = measure_draw(options)
    report = measure_report(options)
    return {"draw": draw, "report": report, "passed": draw["passed"] and report["passed"]}


def section(figures: dict[str, Any]) -> str:
    """The suite's part of the printed report."""
    draw, report = figures["draw"], figures["report"]
    rows = [
        [
            f"draw: {draw['projects']:,} projects, {draw['inspectors']} inspectors, "
            f"{draw['districts']} districts (median / max of {draw['repeats']})",
            f"{draw['seconds']['median']:.3f} / {draw['seconds']['max']:.3f} s",
            f"< {draw['target_seconds']:.0f} s",
            PASS if draw["passed"] else BELOW,
        ],
        [
            f"  {draw['selected']:.0f} drawn on average; commitment over the lists",
            f"{draw['commitment_seconds']:.3f} s",
            "",
            "",
        ],
        [
            f"annual district report: {report['checks']:,} checks, {report['orders']:,} orders "
            f"(first / median / max of {report['repeats']})",
            f"{report['first_seconds']:.3f} / {report['seconds']['median']:.3f} / "
            f"{report['seconds']['max']:.3f} s",
            f"< {report['target_seconds']:.0f} s",
            PASS if report["passed"] else BELOW,
        ],
    ]
    return "\n".join(
        [
            "Inspections: the pure draw, and GetAssessmentReport's work over PostgreSQL",
            table(["measure", "value", "target", "verdict"], rows),
        ]
    )
