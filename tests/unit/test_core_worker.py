"""A worker's parts run together and end together: one that fails or returns early stops the
others and the worker reports it (the launcher then stops the platform, naming the worker)."""

from __future__ import annotations

import threading

from wuye.core.service import run_together


def _waits_for(stop: threading.Event, ended: list[str], name: str):
    def part() -> None:
        stop.wait()
        ended.append(name)

    return part


def test_parts_stopped_from_outside_end_cleanly() -> None:
    stop, ended = threading.Event(), []
    parts = {name: _waits_for(stop, ended, name) for name in ("relay", "consume events")}
    threading.Timer(0.01, stop.set).start()

    assert run_together(parts, stop) == 0
    assert sorted(ended) == ["consume events", "relay"]


def test_a_failing_part_stops_the_others_and_fails_the_worker() -> None:
    stop, ended = threading.Event(), []

    def broken() -> None:
        raise RuntimeError("database gone")

    parts = {"relay": _waits_for(stop, ended, "relay"), "timers": broken}

    assert run_together(parts, stop) == 1
    assert ended == ["relay"] and stop.is_set()


def test_a_part_that_returns_early_fails_the_worker() -> None:
    stop, ended = threading.Event(), []
    parts = {"relay": _waits_for(stop, ended, "relay"), "timers": lambda: None}

    assert run_together(parts, stop) == 1
    assert ended == ["relay"]
