"""A platform that idles: `python -m wuye run` as `make run` starts it (every declared service,
its own Tansu, SQLite), measured after every health check passed and a settling pause: the CPU
of all its processes over a quiet window (utime + stime from /proc) and their memory (RSS, and
PSS, which counts a page shared by several processes once). Run twice: each service's relay,
consumers and timers in one worker process (make run's default) and each part apart (as the
chart runs them), so the figures show what the grouping saves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.processes import wait_until
from bench.stats import process_cpu_seconds

# The goals for eight services.
TARGET_CPU_PERCENT = 3.0
TARGET_MEMORY_MB = 1536.0
STARTUP_SECONDS = 240.0


@dataclass(frozen=True)
class IdleOptions:
    settle_seconds: float = 10.0
    # A process's CPU is counted in ticks of 10 ms: over 60 s one tick is 0.017 % of a core,
    # fine enough for processes that each take a few tenths of a percent.
    measure_seconds: float = 60.0


def _descendants(root: int) -> set[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended while we looked
        parent = int(stat.rpartition(")")[2].split()[1])
        parents.setdefault(parent, []).append(int(entry.name))
    found, frontier = set(), [root]
    while frontier:
        children = parents.get(frontier.pop(), [])
        found.update(children)
        frontier.extend(children)
    return found


def _part(pid: int) -> str:
    """What a process of the platform is: "credit worker", "kafka", "launcher" ..."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "ended"
    if "-m" in words and words.index("-m") + 1 < len(words):
        module = words[words.index("-m") + 1]
        if module == "wuye":
            return "launcher"
        rest = words[words.index("-m") + 2 :]
        return " ".join([module.removeprefix("wuye."), *rest]).strip()
    return "kafka" if "--listener-url" in words else Path(words[0]).name


def _cpu_by_pid(pids: set[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        try:
            found[pid] = process_cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended while we looked
    return found


def _memory_kb(pid: int, field: str, file: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(options: IdleOptions, log_dir: Path, separate_parts: bool) -> dict[str, Any]:
    mode = "separate" if separate_parts else "grouped"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WUYE_")}
    with tempfile.TemporaryDirectory(prefix="wuye-idle-") as state:
        command = [sys.executable, "-m", "wuye", "run", "--state-dir", state]
        command += ["--kafka-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
        command += ["--timeout", str(STARTUP_SECONDS)]
        command += ["--separate-parts"] if separate_parts else []
        with (log_dir / f"idle-{mode}.log").open("wb") as out:
            launcher = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            platform_file = Path(state) / "platform.json"
            wait_until(
                lambda: platform_file.exists() or launcher.poll() is not None,
                STARTUP_SECONDS,
                "the platform's health checks",
            )
            if launcher.poll() is not None:
                raise RuntimeError(f"make run exited; see {log_dir / f'idle-{mode}.log'}")
            services = len(json.loads(platform_file.read_text())["grpc"])
            time.sleep(options.settle_seconds)
            pids = {launcher.pid, *_descendants(launcher.pid)}
            before, began = _cpu_by_pid(pids), time.monotonic()
            time.sleep(options.measure_seconds)
            after = _cpu_by_pid(pids)
            elapsed = time.monotonic() - began
            by_part = {
                f"{_part(pid)} ({pid})": (after[pid] - before.get(pid, 0.0)) / elapsed * 100
                for pid in after
            }
            busy = sum(after[pid] - before.get(pid, 0.0) for pid in after)
            rss_kb = sum(_memory_kb(pid, "VmRSS", "status") for pid in pids)
            pss_kb = sum(_memory_kb(pid, "Pss", "smaps_rollup") for pid in pids)
        finally:
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(60)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait()
    return {
        "services": services,
        "processes": len(pids),
        "cpu_percent_of_one_core": round(busy / elapsed * 100, 2),
        "rss_mb": round(rss_kb / 1024),
        "pss_mb": round(pss_kb / 1024),
        # Where the CPU went, busiest first: the next thing to make idle.
        "cpu_percent_by_process": {
            part: round(percent, 2)
            for part, percent in sorted(by_part.items(), key=lambda item: -item[1])
        },
    }


def run(options: IdleOptions, log_dir: Path) -> dict[str, Any]:
    return {
        "measure_seconds": options.measure_seconds,
        "target_cpu_percent": TARGET_CPU_PERCENT,
        "target_memory_mb": TARGET_MEMORY_MB,
        "grouped": measure(options, log_dir, separate_parts=False),
        "separate": measure(options, log_dir, separate_parts=True),
    }


def section(idle: dict[str, Any]) -> str:
    from bench.report import BELOW, PASS, table  # here: bench.report imports this module

    rows, busiest = [], []
    for label, figures in (
        ("make run (worker process per service)", idle["grouped"]),
        ("each part apart (as the chart runs them)", idle["separate"]),
    ):
        cpu_ok = figures["cpu_percent_of_one_core"] < idle["target_cpu_percent"]
        memory_ok = figures["rss_mb"] < idle["target_memory_mb"]
        rows.append(
            [
                label,
                str(figures["services"]),
                str(figures["processes"]),
                f"{figures['cpu_percent_of_one_core']:.2f} %",
                f"{figures['rss_mb']:,} / {figures['pss_mb']:,} MB",
                PASS if cpu_ok and memory_ok else BELOW,
            ]
        )
        top = list(figures["cpu_percent_by_process"].items())[:5]
        busiest.append(
            f"  busiest, {label.split(' (')[0]}: "
            + ", ".join(f"{part.rsplit(' (', 1)[0]} {percent:.2f} %" for part, percent in top)
        )
    return "\n".join(
        [
            f"Idle platform: every process of `python -m wuye run` (Tansu included) over "
            f"{idle['measure_seconds']:.0f} s after its health checks; goals for eight services: "
            f"under {idle['target_cpu_percent']:.0f} % of one core and "
            f"{idle['target_memory_mb'] / 1024:.1f} GB",
            table(["platform", "services", "processes", "CPU", "RSS / PSS", "verdict"], rows),
            *busiest,
        ]
    )
