"""The fund suite: (a) a period's interest allocated across 1,000,000 unit accounts (the
largest-remainder split by balances and the ledger entries crediting it, one per project, with
the cyclic garbage collector paused as the service pauses it), and
(b) a works payment apportioned across a 20,000-unit project by exclusive area and charged to
the accounts, with the entry paying it out: the rules AllocateInterest and PayWorks run.

Beside each, a reference: the floor division of every exact share (total × weight // whole)
over the same list, one Python pass and no more; what the rules add is the remainders' fen, the
accounts charged and the postings.

`run(options)` returns the figures and prints nothing; `section(figures)` renders them as the
report's other suites are rendered.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wuye.fund import domain
from wuye.fund.commands import cyclic_gc_paused
from wuye.fund.domain import UnitAccount, Use, UseOrigin, UseState

TARGET_INTEREST_SECONDS = 10.0
TARGET_PAYMENT_SECONDS = 0.5
DISTRICT = "150602"


@dataclass(frozen=True)
class FundOptions:
    accounts: int = 1_000_000
    projects: int = 250
    payment_units: int = 20_000
    interest_repeats: int = 2
    payment_repeats: int = 3


def _accounts(count: int, projects: int, rng: random.Random) -> dict[str, UnitAccount]:
    """Units of 40-200 m² with balances of a few thousand yuan, across `projects` projects."""
    found = {}
    for n in range(count):
        unit_id = f"{DISTRICT}-U{n:011d}"
        found[unit_id] = UnitAccount(
            unit_id=unit_id,
            project_id=f"{DISTRICT}-{n % projects:012d}",
            district_code=DISTRICT,
            unit_number=f"{n // 1000}-{n % 1000}",
            area_cm2=rng.randint(400_000, 2_000_000),
            balance_fen=rng.randint(100_000, 2_000_000),
            first_deposit_fen=1_500_000,
        )
    return found


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


def _timed(work: Callable[[], Any]) -> tuple[Timing, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), result


def _floor_shares(total: int, weights: list[int]) -> list[int]:
    whole = sum(weights)
    return [total * weight // whole for weight in weights]


def _summary(timings: list[Timing], target: float) -> dict[str, Any]:
    """Wall and CPU seconds; the verdict is the CPU's, which the other work on a shared machine
    disturbs much less (the work is one thread that waits for nothing)."""
    cpu = [t.cpu for t in timings]
    return {
        "median": round(statistics.median(t.wall for t in timings), 4),
        "cpu_median": round(statistics.median(cpu), 4),
        "cpu_max": round(max(cpu), 4),
        "target_seconds": target,
        "passed": max(cpu) < target,
    }


def measure_interest(options: FundOptions, rng: random.Random) -> dict[str, Any]:
    accounts = _accounts(options.accounts, options.projects, rng)
    balances = {unit_id: a.balance_fen for unit_id, a in accounts.items()}
    interest = sum(balances.values()) * 15 // 1000  # 1.5% for the year

    def allocate() -> tuple[dict[str, int], tuple[domain.Entry, ...]]:
        with cyclic_gc_paused():  # as the service's AllocateInterest runs it
            parts = domain.allocate_interest(interest, balances)
            return parts, domain.interest_entries(f"{DISTRICT}-Ibench", "2026", parts, accounts)

    runs = [_timed(allocate) for _ in range(options.interest_repeats)]
    parts, entries = runs[0][1]
    assert sum(parts.values()) == interest and len(entries) == options.projects
    weights = list(balances.values())
    reference = [
        _timed(lambda: _floor_shares(interest, weights))[0].cpu
        for _ in range(options.interest_repeats)
    ]
    return {
        "accounts": len(accounts),
        "projects": options.projects,
        "interest_fen": interest,
        "entries": len(entries),
        "seconds": _summary([t for t, _ in runs], TARGET_INTEREST_SECONDS),
        "reference_seconds": round(statistics.median(reference), 4),
    }


def measure_payment(options: FundOptions, rng: random.Random) -> dict[str, Any]:
    accounts = _accounts(options.payment_units, 1, rng)
    project_id = next(iter(accounts.values())).project_id
    use = Use(
        use_id=f"{DISTRICT}-Wbench",
        project_id=project_id,
        district_code=DISTRICT,
        title="外墙保温层更换",
        origin=UseOrigin.DECISION,
        state=UseState.APPROVED,
        budget_fen=2_000_000_000,
        unit_ids=tuple(sorted(accounts)),
    )
    amount = 987_654_321
    at = dt.datetime.now(dt.UTC)
    rules = domain.FundRules()

    def pay() -> domain.UseChange:
        return domain.pay_works(use, amount, f"{DISTRICT}-Ebench", accounts, rules, at)

    runs = [_timed(pay) for _ in range(options.payment_repeats)]
    paid = runs[0][1].payment
    assert sum(s.share_fen for s in paid.shares) == amount
    areas = [accounts[u].area_cm2 for u in use.unit_ids]
    reference = [
        _timed(lambda: _floor_shares(amount, areas))[0].cpu for _ in range(options.payment_repeats)
    ]
    return {
        "units": len(accounts),
        "amount_fen": amount,
        "owing_units": sum(1 for s in paid.shares if s.owed_fen),
        "seconds": _summary([t for t, _ in runs], TARGET_PAYMENT_SECONDS),
        "reference_seconds": round(statistics.median(reference), 5),
    }


def run(options: FundOptions, log_dir: Path) -> dict[str, Any]:
    rng = random.Random(2026)
    return {"interest": measure_interest(options, rng), "payment": measure_payment(options, rng)}


def section(figures: dict[str, Any]) -> str:
    """The suite's part of the printed report."""
    from bench.report import BELOW, PASS, table  # here: bench.report imports this module

    interest, payment = figures["interest"], figures["payment"]
    rows = []
    for label, result, reference in (
        (
            f"interest: {interest['accounts']:,} accounts, {interest['projects']} projects' "
            "entries",
            interest,
            "  reference: floor of every exact share, one pass",
        ),
        (
            f"payment: {payment['units']:,} units by area, charged, with its entry",
            payment,
            "  reference: floor of every exact share, one pass",
        ),
    ):
        seconds = result["seconds"]
        rows.append(
            [
                f"{label} (wall; CPU median / max)",
                f"{seconds['median']:.3f}; "
                f"{seconds['cpu_median']:.3f} / {seconds['cpu_max']:.3f} s",
                f"< {seconds['target_seconds']:g} s",
                PASS if seconds["passed"] else BELOW,
            ]
        )
        rows.append([reference, f"CPU {result['reference_seconds']:.4f} s", "", ""])
    return "\n".join(
        [
            "Fund: the largest-remainder split as AllocateInterest and PayWorks run it (pure)",
            table(["measure", "value", "target", "verdict"], rows),
        ]
    )
