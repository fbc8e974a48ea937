"""Helpers the end-to-end tests share: waiting for what the platform does eventually."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

# Through Kafka and another service's consumer (whose first group join on Tansu takes seconds).
EVENTUAL_SECONDS = 60.0
CALL_TIMEOUT_SECONDS = 10.0

T = TypeVar("T")


def poll(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = EVENTUAL_SECONDS,
    interval: float = 0.2,
) -> T:
    """`probe()` until it returns something, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(interval)
