"""Percentiles and CPU accounting shared by the suites and their helper processes."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when there are none)."""
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[rank]


def latency_summary_ms(latencies_s: list[float]) -> dict[str, float]:
    ordered = sorted(latencies_s)
    return {
        "p50": round(percentile(ordered, 0.50) * 1000, 3),
        "p90": round(percentile(ordered, 0.90) * 1000, 3),
        "p99": round(percentile(ordered, 0.99) * 1000, 3),
        "max": round((ordered[-1] if ordered else 0.0) * 1000, 3),
    }


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may hold spaces; the fields we need come after its closing ')'.
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of several processes; one that has ended counts for nothing."""
    total = 0.0
    for pid in pids:
        try:
            total += process_cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def child_pids(parent: int, command_prefix: str) -> list[int]:
    """Processes started by `parent` whose command name starts with `command_prefix`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended while we looked
        command, _, rest = stat.partition(" (")[2].rpartition(")")
        if int(rest.split()[1]) == parent and command.startswith(command_prefix):
            found.append(int(entry.name))
    return found


def machine_busy_seconds() -> float:
    """CPU seconds spent by every process on the machine so far (all cores, idle excluded)."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    idle, iowait = ticks[3], ticks[4]
    # guest time is already counted in user and nice
    return (sum(ticks[:8]) - idle - iowait) / CLOCK_TICKS
