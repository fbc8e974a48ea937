"""Registry settings: the core's plus the registry's rules, each a default other cities change."""

from __future__ import annotations

from pydantic import Field

from wuye.core.settings import Settings


class RegistrySettings(Settings):
    service: str = "registry"

    max_units_per_request: int = Field(default=1000, ge=1)
    max_list_items: int = Field(default=50, ge=1)
    max_handover_items: int = Field(default=200, ge=1)
    # A ceiling on the disclosed fee that catches a yuan typed as fen (1000 yuan per m² a month).
    max_fee_fen_per_m2_month: int = Field(default=100_000, ge=0)
    # Owners' committees: 5 to 11 members, an odd number, terms of at most 5 years (common local
    # rules under the Property Management Regulations).
    committee_min_members: int = Field(default=5, ge=1)
    committee_max_members: int = Field(default=11, ge=1)
    committee_odd_members: bool = True
    committee_max_term_years: int = Field(default=5, ge=1)
    # The transitional community property management committee.
    transitional_min_members: int = Field(default=3, ge=1)
    transitional_max_term_years: int = Field(default=1, ge=1)
