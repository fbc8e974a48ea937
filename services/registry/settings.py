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
    # Development stands in for the city's real-name service: StartOwnerSignIn logs a one-time
    # code (beside the ID number masked) that CompleteOwnerSignIn trades for an owner token. Off
    # unless set; `make run` turns it on. Codes are held in the serving process's memory.
    owner_sign_in_by_logged_code: bool = False
    owner_sign_in_code_digits: int = Field(default=6, ge=4, le=12)
    owner_sign_in_code_seconds: int = Field(default=300, ge=1)
    # Wrong codes accepted before a code is void.
    owner_sign_in_attempts: int = Field(default=5, ge=1)
    owner_token_hours: float = Field(default=12.0, gt=0)
    # Units listed in a sign-in's answer.
    owner_sign_in_max_units: int = Field(default=200, ge=1)
