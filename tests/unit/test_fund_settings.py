"""The fund's settings: DOMAIN.md's numbers by default, exact fractions in the rules, and a rate
outside the bounds refused when the service starts rather than applied."""

from __future__ import annotations

from fractions import Fraction

import pytest
from pydantic import ValidationError

from wuye.fund.domain import FundRules
from wuye.fund.settings import FundSettings


def settings(**values: object) -> FundSettings:
    return FundSettings.model_validate(values)


def test_the_defaults_are_the_rules_defaults_as_exact_fractions():
    rules = settings().rules()
    assert rules == FundRules()
    assert (rules.deposit_rate, rules.top_up_below, rules.emergency_first_payment_limit) == (
        Fraction(1, 20),
        Fraction(3, 10),
        Fraction(3, 5),
    )
    assert rules.overrun_tolerance == Fraction(1, 10)
    assert (
        rules.emergency_approval_working_days,
        rules.extremely_urgent_approval_working_days,
    ) == (
        2,
        0,
    )


def test_a_district_sets_its_own_rate_within_the_bounds():
    rules = settings(fund_district_deposit_rates={"150627": "0.065"}).rules()
    assert rules.deposit_rate_for("150627") == Fraction(13, 200)
    assert rules.deposit_rate_for("150602") == Fraction(1, 20)


@pytest.mark.parametrize(
    "values",
    [
        {"fund_deposit_rate": "0.09"},
        {"fund_district_deposit_rates": {"150602": "0.04"}},
        {"fund_top_up_below": "1.5"},
        {
            "fund_emergency_approval_working_days": 1,
            "fund_extremely_urgent_approval_working_days": 2,
        },
        {"fund_emergency_kinds": ["EARTHQUAKE"]},
    ],
)
def test_numbers_the_rules_cannot_hold_are_refused_at_start(values):
    with pytest.raises(ValidationError):
        settings(**values)
