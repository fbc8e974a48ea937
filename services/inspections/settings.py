"""Inspection settings: sampling by credit risk, the yearly floor, inspectors per check,
complaints' weight, and the limits of requests. Defaults from DOMAIN.md section 7; another city
changes them through WUYE_* variables."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field, field_validator

from wuye.core.settings import Settings

DEFAULT_RATES: dict[str, Decimal] = {
    "AAA": Decimal("0.01"),
    "AA": Decimal("0.01"),
    "A": Decimal("0.02"),
    "B": Decimal("0.10"),
    "C": Decimal("0.30"),
    # Enterprises without an approved filing are sampled like grade C.
    "C_UNFILED": Decimal("0.30"),
    # Projects no enterprise serves (self-managed, vacant).
    "UNSERVED": Decimal("0.10"),
}


class TriggerRule(BaseModel, frozen=True):
    """An event of another service that asks for a project to be inspected, or (as a complaint
    rule) counts as a complaint about it. `project_field` may name a nested field
    ("alarm.project_id")."""

    event: str
    topic: str
    project_field: str = "project_id"


class InspectionsSettings(Settings):
    service: str = "inspections"

    sampling_rates: dict[str, Decimal] = DEFAULT_RATES
    # At least this share of all listed projects is inspected per year, across the year's
    # rounds; a half-year round draws at least half of it.
    yearly_floor_rate: Decimal = Decimal("0.05")
    inspectors_per_check: int = Field(default=2, ge=2)
    max_inspectors_per_check: int = Field(default=10, ge=2)
    trigger_rules: tuple[TriggerRule, ...] = (
        TriggerRule(event="wuye.iot.v1.AlarmEscalated", topic="wuye.iot.alarm.v1"),
        TriggerRule(event="wuye.iot.v1.DeviceFalseAlarmsExceeded", topic="wuye.iot.device.v1"),
    )
    # Events that count as a complaint about a project: more complaints, more checks.
    complaint_rules: tuple[TriggerRule, ...] = (
        TriggerRule(
            event="wuye.iot.v1.AlarmRaised",
            topic="wuye.iot.alarm.v1",
            project_field="alarm.project_id",
        ),
        # A dispute raised to the joint meeting about a project.
        TriggerRule(event="wuye.meetings.v1.CaseRaised", topic="wuye.meetings.case.v1"),
    )
    # Complaints counted by a round: those of this many days before its creation.
    complaint_window_days: int = Field(default=183, ge=1)
    # A project with at least `complaints` complaints weighs `weight` in its grade's draw.
    complaint_weights: tuple[tuple[int, int], ...] = ((1, 2), (3, 3), (10, 5))
    overdue_check_seconds: float = Field(default=60.0, gt=0)
    max_findings: int = Field(default=100, ge=1)
    max_description_length: int = Field(default=500, ge=10, le=500)
    max_rectification_days: int = Field(default=365, ge=1)
    max_inspector_id_length: int = Field(default=64, ge=1, le=64)
    max_conflicts: int = Field(default=200, ge=0)
    max_relatives: int = Field(default=50, ge=0)
    # Digits a rate or a score may have after the point: the draw turns rates into exact
    # fractions, and 1E-999999999 would take hours to turn.
    max_decimal_places: int = Field(default=20, ge=1, le=20)

    @field_validator("complaint_weights")
    @classmethod
    def _ascending(cls, value: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        if any(c < 1 or w < 1 for c, w in value) or list(value) != sorted(value):
            raise ValueError("pairs of (complaints >= 1, weight >= 1), ascending")
        return value
