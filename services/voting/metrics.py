"""Voting's own metrics, beside the core's RPC and event metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from wuye.core.metrics import LATENCY_BUCKETS

BALLOTS = Counter(
    "wuye_voting_ballots",
    "Ballots offered to a vote's log, by channel (online, paper) and outcome (accepted, refused).",
    ["channel", "outcome"],
)
APPEND_BATCH = Histogram(
    "wuye_voting_append_batch_ballots",
    "Ballots appended to one vote's log in one transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
VOTES_OPEN = Gauge("wuye_voting_votes_open", "Votes open for ballots, as the timers last saw.")
TALLY_SECONDS = Histogram(
    "wuye_voting_tally_seconds",
    "Time to read a vote's log and count it at its close.",
    buckets=LATENCY_BUCKETS,
)
