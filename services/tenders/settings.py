"""Tender settings: every period, the committee's rules, the weights of the score, the flags of
an abnormally low price. Bids are sealed under a key derived from the service's secret
key (WUYE_PII_KEY) and the tender's id. Defaults from DOMAIN.md section 5; a test
city sets the periods to zero so that a whole tender runs in a minute."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

from pydantic import Field

from wuye.core.settings import Settings
from wuye.tenders.domain import Periods, Weights


class TendersSettings(Settings):
    service: str = "tenders"

    # From publication to the bid deadline, at least (招标投标法 Art. 24).
    min_tendering_days: int = Field(default=20, ge=0)
    # Questions are asked in the first days after publication; bids are taken after them.
    enquiry_days: int = Field(default=10, ge=0)
    # A change to the documents less than this before the deadline moves it (实施条例 Art. 21).
    change_notice_days: int = Field(default=15, ge=0)
    # Candidates are published this many working days for complaints (实施条例 Art. 54).
    standstill_working_days: int = Field(default=3, ge=0)
    # However few its working days, a standstill lasts at least this long: a test city with
    # none still leaves a bidder time to complain.
    standstill_shortest_seconds: float = Field(default=0.0, ge=0)
    # After the award: the result is filed (Art. 47) and the contract signed (Art. 46) within.
    filing_days: int = Field(default=15, ge=0)
    contract_days: int = Field(default=30, ge=0)
    # Fewer bids at the deadline are not opened (招标投标法 Art. 28).
    min_bids: int = Field(default=3, ge=1)
    # A committee has at least this many members, an odd number, experts at least the share.
    committee_min_size: int = Field(default=5, ge=3)
    committee_max_size: int = Field(default=25, ge=3)
    committee_expert_share: Fraction = Fraction(2, 3)
    # Percentages of the score, unless a tender sets its own.
    price_weight: int = Field(default=40, ge=0, le=100)
    technical_weight: int = Field(default=40, ge=0, le=100)
    credit_weight: int = Field(default=20, ge=0, le=100)
    # ProZorro's flags: a price this far under the others' average, or under the next price.
    abnormal_below_average: Fraction = Fraction(40, 100)
    abnormal_below_next: Fraction = Fraction(30, 100)
    # How often the timer looks for tenders whose dates passed.
    timer_check_seconds: float = Field(default=5.0, gt=0)
    max_bid_documents: int = Field(default=50, ge=1)
    max_staff: int = Field(default=100_000, ge=1)
    max_specialities: int = Field(default=20, ge=1)
    max_conflicts: int = Field(default=200, ge=0)
    # Bidders asked of credit at once when bids are opened.
    credit_lookups_at_once: int = Field(default=8, ge=1)

    @property
    def periods(self) -> Periods:
        return Periods(
            min_tendering=dt.timedelta(days=self.min_tendering_days),
            enquiry=dt.timedelta(days=self.enquiry_days),
            change_notice=dt.timedelta(days=self.change_notice_days),
            standstill_working_days=self.standstill_working_days,
            standstill_shortest=dt.timedelta(seconds=self.standstill_shortest_seconds),
            filing=dt.timedelta(days=self.filing_days),
            contract=dt.timedelta(days=self.contract_days),
        )

    @property
    def default_weights(self) -> Weights:
        return Weights(self.price_weight, self.technical_weight, self.credit_weight)
