"""The service standards of the four project types as checklists (data files beside this
module): assessments and inspections score against them. Another city replaces the files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path

from wuye.core.errors import Violations

STANDARDS = ("residential", "office", "commercial", "hospital")


@dataclass(frozen=True)
class ChecklistItem:
    item_id: str
    title: str
    max_points: Decimal


@dataclass(frozen=True)
class Checklist:
    standard: str
    items: dict[str, ChecklistItem]

    @property
    def max_total(self) -> Decimal:
        return sum((item.max_points for item in self.items.values()), Decimal(0))


@cache
def checklist(standard: str) -> Checklist:
    data = json.loads((Path(__file__).parent / f"{standard}.json").read_text(encoding="utf-8"))
    items = {
        item["id"]: ChecklistItem(item["id"], item["title"], Decimal(str(item["max_points"])))
        for item in data["items"]
    }
    return Checklist(standard=data["standard"], items=items)


def score_against(
    checklist: Checklist, scores: dict[str, Decimal], v: Violations, field: str
) -> Decimal:
    """Every item of the checklist is scored, each between 0 and its maximum; the result is the
    share of the maximum, out of 100, to one decimal."""
    for item_id, score in scores.items():
        item = checklist.items.get(item_id)
        if item is None:
            v.add(field, f"{item_id[:40]!r} is not an item of the {checklist.standard} checklist")
        elif not Decimal(0) <= score <= item.max_points:
            v.add(field, f"{item_id} scores 0 to {item.max_points}, got {score}")
    missing = sorted(set(checklist.items) - set(scores))
    if missing:
        v.add(field, f"items not scored: {', '.join(missing)}")
    if v:
        return Decimal(0)
    total = sum(scores.values(), Decimal(0))
    return (total * 100 / checklist.max_total).quantize(Decimal("0.1"), ROUND_HALF_UP)
