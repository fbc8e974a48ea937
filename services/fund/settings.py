"""Maintenance fund settings: the first deposit's rate (city-wide and per district), the top-up
threshold, the emergency limits and deadlines, and the timers. Defaults from DOMAIN.md sections
4 and 4b; another city changes them through WUYE_FUND_* variables (JSON for the structured
ones). Shares are decimals here and exact fractions in the rules."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from pydantic import Field, model_validator

from wuye.core.settings import Settings
from wuye.fund.domain import EmergencyKind, EmergencyRequester, FundRules

_DEFAULTS = FundRules()


def _decimal(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)


class FundSettings(Settings):
    service: str = "fund"

    # Share of the construction-and-installation cost per m² a first deposit is (Art. 7), and
    # the districts (banners) that set their own; every rate within the bounds.
    fund_deposit_rate: Decimal = _decimal(_DEFAULTS.deposit_rate)
    fund_district_deposit_rates: dict[str, Decimal] = {}
    fund_deposit_rate_min: Decimal = _decimal(_DEFAULTS.deposit_rate_bounds[0])
    fund_deposit_rate_max: Decimal = _decimal(_DEFAULTS.deposit_rate_bounds[1])
    # A unit is asked to top up when its balance falls below this share of its first deposit.
    fund_top_up_below: Decimal = _decimal(_DEFAULTS.top_up_below)
    # An emergency's first payment is at most this share of its approved budget.
    fund_emergency_first_payment_limit: Decimal = _decimal(_DEFAULTS.emergency_first_payment_limit)
    # A final cost over the approved budget by more than this share needs a new approval.
    fund_overrun_tolerance: Decimal = _decimal(_DEFAULTS.overrun_tolerance)
    # Working days (the core calendar's) within which an emergency request is decided after
    # the day it is made; an extremely urgent one within these (0: the same day).
    fund_emergency_approval_working_days: int = Field(
        default=_DEFAULTS.emergency_approval_working_days, ge=0
    )
    fund_extremely_urgent_approval_working_days: int = Field(
        default=_DEFAULTS.extremely_urgent_approval_working_days, ge=0
    )
    fund_emergency_kinds: tuple[EmergencyKind, ...] = tuple(sorted(_DEFAULTS.emergency_kinds))
    fund_emergency_requesters: tuple[EmergencyRequester, ...] = tuple(
        sorted(_DEFAULTS.emergency_requesters)
    )
    # The IoT intake's alarm kinds that show a fire-system fault: an escalated one opens an
    # emergency draft for the project.
    fund_fire_system_fault_alarms: tuple[str, ...] = tuple(
        sorted(_DEFAULTS.fire_system_fault_alarms)
    )
    # How often the timers look for emergency requests past their deadline, and for accounts
    # gone below the top-up threshold unflagged (after a change of the threshold, say).
    fund_escalation_check_seconds: float = Field(default=300.0, gt=0)
    fund_top_up_check_seconds: float = Field(default=3600.0, gt=0)

    # A WorksPaid event lists every unit's share up to this many units; beyond, its totals only
    # (a Kafka record is at most about 1 MB, and a share takes some 55 bytes).
    fund_max_event_shares: int = Field(default=5000, ge=0, le=15_000)

    # Request limits.
    fund_max_use_units: int = Field(default=50_000, ge=1)
    fund_max_evidence: int = Field(default=20, ge=1)
    fund_max_bank_statements: int = Field(default=1000, ge=1)
    fund_max_period_length: int = Field(default=20, ge=4, le=32)
    # Past this many fen an amount is a typing error, not money (10^13 fen: 100 billion yuan).
    fund_max_amount_fen: int = Field(default=10**13, ge=1, le=2**62)
    # A construction-and-installation cost above this per m² (10^8 fen: a million yuan) is one.
    fund_max_cost_fen_per_m2: int = Field(default=10**8, ge=1, le=10**10)

    @model_validator(mode="after")
    def _rules_hold(self) -> FundSettings:
        self.rules()
        return self

    def rules(self) -> FundRules:
        """The rules' numbers as exact fractions. Raises ValueError for a rate out of bounds."""
        return FundRules(
            deposit_rate=Fraction(self.fund_deposit_rate),
            district_deposit_rates={
                district: Fraction(rate)
                for district, rate in self.fund_district_deposit_rates.items()
            },
            deposit_rate_bounds=(
                Fraction(self.fund_deposit_rate_min),
                Fraction(self.fund_deposit_rate_max),
            ),
            top_up_below=Fraction(self.fund_top_up_below),
            emergency_first_payment_limit=Fraction(self.fund_emergency_first_payment_limit),
            overrun_tolerance=Fraction(self.fund_overrun_tolerance),
            emergency_approval_working_days=self.fund_emergency_approval_working_days,
            extremely_urgent_approval_working_days=(
                self.fund_extremely_urgent_approval_working_days
            ),
            emergency_kinds=frozenset(self.fund_emergency_kinds),
            emergency_requesters=frozenset(self.fund_emergency_requesters),
            fire_system_fault_alarms=frozenset(self.fund_fire_system_fault_alarms),
        )
