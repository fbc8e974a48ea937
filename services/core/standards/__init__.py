"""The service standards of the four project types as checklists (data files beside this
module): assessments and inspections score against them. Another city replaces the files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path

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
