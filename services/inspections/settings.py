"""Inspection settings: sampling by credit risk, the yearly floor, inspectors per check.
Defaults from DOMAIN.md section 7; another city changes them through WUYE_* variables."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field

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
    """An event of another service that asks for a project to be inspected."""

    event: str
    topic: str
    project_field: str = "project_id"


class InspectionsSettings(Settings):
    service: str = "inspections"

    sampling_rates: dict[str, Decimal] = DEFAULT_RATES
    # At least this share of all listed projects is inspected per year; a half-year round
    # draws at least half of it.
    yearly_floor_rate: Decimal = Decimal("0.05")
    inspectors_per_check: int = Field(default=2, ge=2)
    trigger_rules: tuple[TriggerRule, ...] = (
        TriggerRule(event="wuye.iot.v1.AlarmEscalated", topic="wuye.iot.alarm.v1"),
        TriggerRule(event="wuye.iot.v1.DeviceFalseAlarmsExceeded", topic="wuye.iot.device.v1"),
    )
    overdue_check_seconds: float = Field(default=60.0, gt=0)
    max_findings: int = Field(default=100, ge=1)
