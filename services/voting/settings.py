"""Voting settings: Art. 278's thresholds as exact fractions, which matters are special, notice
and voting periods, the non-voter rule, and the timers. Defaults from DOMAIN.md section 4;
another city changes them through WUYE_* variables (WUYE_VOTE_NOTICE_DAYS=0 in a test city)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from wuye.core.settings import Settings
from wuye.voting.domain import (
    DEFAULT_SPECIAL_MATTERS,
    CountingRules,
    MatterType,
    Threshold,
    VoteRules,
    parse_fraction,
)


class VotingSettings(Settings):
    service: str = "voting"

    # Days between creating a vote and opening it (Beijing 2024 Art. 35: 15).
    vote_notice_days: int = Field(default=15, ge=0)
    # The voting period (Hangzhou 2021: 5 to 60 days).
    vote_min_voting_days: int = Field(default=5, ge=0)
    vote_max_voting_days: int = Field(default=60, ge=1)
    # Thresholds "p/q" in lowest terms; inclusive: met at the fraction itself ("以上").
    vote_quorum: str = "2/3"
    vote_quorum_inclusive: bool = True
    vote_special_majority: str = "3/4"
    vote_special_majority_inclusive: bool = True
    vote_ordinary_majority: str = "1/2"
    vote_ordinary_majority_inclusive: bool = False
    # Matter types decided by the special majority (Civil Code Art. 278 (6)-(8)).
    vote_special_matters: tuple[MatterType, ...] = tuple(sorted(DEFAULT_SPECIAL_MATTERS))
    # "Non-voters follow the majority": a local rule the quorum rule makes unlawful; off.
    vote_non_voters_follow_majority: bool = False
    # Whether CloseVote may close a vote before its close_time. The owners were promised the
    # whole announced period: only a test city turns this on.
    vote_allow_early_close: bool = False
    # Years within which an owner may ask a court to revoke a decision (Civil Code Art. 280).
    vote_challenge_years: int = Field(default=1, ge=1)
    # How often the timers look for votes due to open or close: a vote opens and its result is
    # counted within this of its time (the rules allow a day), and a service at rest looks
    # seldom.
    vote_timer_seconds: float = Field(default=10.0, gt=0)
    # Key of the per-vote pseudonyms in the ballot log; empty: derived from the PII key.
    vote_pseudonym_key: SecretStr = SecretStr("")
    vote_max_matters: int = Field(default=20, ge=1)
    # The text owners decide on may be long; titles and reasons follow max_text_length.
    vote_max_matter_text: int = Field(default=20_000, ge=200)
    # A fund matter names at most this many units concerned.
    vote_max_units_per_matter: int = Field(default=5_000, ge=1)
    # Ballots a GetBallotLog part carries; 60,000 ballots are many parts of one message each.
    vote_log_part_entries: int = Field(default=2_000, ge=1)
    # Owner keys of open votes' frozen rolls a server keeps in memory (about 200 bytes each),
    # so that a ballot finds its caller on the roll without a query.
    vote_roll_cache_owners: int = Field(default=500_000, ge=1)
    # CastBallot appends ballots in batches: at most this many per transaction.
    vote_append_batch: int = Field(default=256, ge=1)
    # A casting call waits (outside the GIL) while its batch commits; the batch can only hold
    # as many ballots as there are threads waiting, and with the core's 4 it held 4 at most.
    grpc_workers: int = Field(default=64, ge=1)

    @field_validator("vote_quorum", "vote_special_majority", "vote_ordinary_majority")
    @classmethod
    def _fraction(cls, value: str) -> str:
        parse_fraction(value)
        return value

    def pseudonym_key(self) -> bytes:
        key = self.vote_pseudonym_key.get_secret_value() or self.pii_key.get_secret_value()
        return key.encode()

    def rules(self) -> VoteRules:
        return VoteRules(
            counting=CountingRules(
                quorum=Threshold(parse_fraction(self.vote_quorum), self.vote_quorum_inclusive),
                special_majority=Threshold(
                    parse_fraction(self.vote_special_majority),
                    self.vote_special_majority_inclusive,
                ),
                ordinary_majority=Threshold(
                    parse_fraction(self.vote_ordinary_majority),
                    self.vote_ordinary_majority_inclusive,
                ),
                non_voters_follow_majority=self.vote_non_voters_follow_majority,
            ),
            special_matters=frozenset(self.vote_special_matters),
            notice_days=self.vote_notice_days,
            min_voting_days=self.vote_min_voting_days,
            max_voting_days=self.vote_max_voting_days,
            challenge_years=self.vote_challenge_years,
        )
