"""The load generator: `python -m bench.loadgen`, its config as JSON on stdin, its measurement as
JSON on stdout.

A closed loop with a fixed number of calls in flight on one channel per target: each finished
call starts the next from its completion callback, so no Python thread blocks per call. On a
2-core machine the client competes with the server for CPU; this is the cheapest grpcio client
we found (16 in flight: 4.8k echo calls/s, against 3.8k with a thread per in-flight call and
3.3k with grpc.aio).
Requests are sent pre-serialized, with no (de)serializers, so every target costs the client the
same.

The targets take turns in short slices, so a burst of load from elsewhere on the machine falls
on all of them alike and their ratio stays fair.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import psycopg

from bench.stats import (
    cpu_seconds,
    latency_summary_ms,
    machine_busy_seconds,
    process_cpu_seconds,
)


@dataclass(frozen=True)
class Target:
    name: str
    address: str
    method: str
    server_pid: int
    # libpq application_name of the server's database sessions, to count their CPU; "" for none
    database_application: str = ""


@dataclass(frozen=True)
class LoadConfig:
    targets: list[Target]
    payloads: list[bytes]  # sent round-robin
    metadata: tuple[tuple[str, str], ...]
    concurrency: int
    warmup_seconds: float  # per target, before the first slice
    slice_seconds: float
    slices: int  # per target
    database_url: str  # where to find the targets' database sessions

    @classmethod
    def from_json(cls, config: dict[str, Any]) -> LoadConfig:
        return cls(
            targets=[Target(**target) for target in config["targets"]],
            payloads=[base64.b64decode(p) for p in config["payloads"]],
            metadata=tuple((key, value) for key, value in config["metadata"]),
            concurrency=config["concurrency"],
            warmup_seconds=config["warmup_seconds"],
            slice_seconds=config["slice_seconds"],
            slices=config["slices"],
            database_url=config["database_url"],
        )


@dataclass
class Tally:
    """What one target did over all its measured slices."""

    latencies: list[float] = field(default_factory=list)  # seconds, of OK calls
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    def add_cpu(self, before: dict[str, float], after: dict[str, float]) -> None:
        for name, value in after.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + value - before.get(name, 0.0)


class ClosedLoop:
    """`concurrency` calls in flight until `until`; records the OK calls started from `since`."""

    def __init__(
        self,
        call: grpc.UnaryUnaryMultiCallable,
        config: LoadConfig,
        tally: Tally | None,
        since: float,
        until: float,
    ) -> None:
        self._call = call
        self._config = config
        self._tally = tally or Tally()
        self._since = since
        self._until = until
        self.last_finish = since
        self._in_flight = config.concurrency
        self._lock = threading.Lock()
        self._drained = threading.Event()

    def start(self) -> ClosedLoop:
        for slot in range(self._config.concurrency):
            self._issue(slot)
        return self

    def wait(self) -> None:
        if not self._drained.wait(timeout=30):
            raise TimeoutError("calls still in flight 30 s after their window")

    def _issue(self, index: int) -> None:
        payloads = self._config.payloads
        started = time.perf_counter()
        future = self._call.future(payloads[index % len(payloads)], metadata=self._config.metadata)
        future.add_done_callback(lambda done: self._finished(done, index, started))

    def _finished(self, future: grpc.Future, index: int, started: float) -> None:
        now = time.perf_counter()
        code = future.code()
        errors = self._tally.errors
        if code is not grpc.StatusCode.OK:
            errors[code.name] = errors.get(code.name, 0) + 1
        elif started >= self._since:
            self._tally.latencies.append(now - started)
            self.last_finish = now
        if now < self._until:
            # Each slot walks the payloads with a stride of `concurrency`: all slots together
            # visit every payload in turn.
            self._issue(index + self._config.concurrency)
            return
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._drained.set()


def _database_pids(database_url: str, application: str) -> list[int]:
    if not application:
        return []
    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application,)
        ).fetchall()
    return [pid for (pid,) in rows]


def _cpu(target: Target, database_pids: list[int]) -> dict[str, float]:
    return {
        "client": process_cpu_seconds(os.getpid()),
        "server": process_cpu_seconds(target.server_pid),
        "database": cpu_seconds(database_pids),
        "machine": machine_busy_seconds(),
    }


def _run_slice(
    call: grpc.UnaryUnaryMultiCallable,
    config: LoadConfig,
    target: Target,
    tally: Tally,
) -> None:
    database_pids = _database_pids(config.database_url, target.database_application)
    since = time.perf_counter()
    before = _cpu(target, database_pids)
    loop = ClosedLoop(call, config, tally, since, since + config.slice_seconds).start()
    time.sleep(config.slice_seconds)
    tally.add_cpu(before, _cpu(target, database_pids))
    loop.wait()
    tally.seconds += loop.last_finish - since


def measure(config: LoadConfig) -> dict[str, Any]:
    channels = {t.name: grpc.insecure_channel(t.address) for t in config.targets}
    try:
        calls = {}
        for target in config.targets:
            grpc.channel_ready_future(channels[target.name]).result(timeout=10)
            calls[target.name] = channels[target.name].unary_unary(target.method)
            warm_until = time.perf_counter() + config.warmup_seconds
            ClosedLoop(calls[target.name], config, None, warm_until, warm_until).start().wait()
        tallies = {t.name: Tally() for t in config.targets}
        for _ in range(config.slices):
            for target in config.targets:
                _run_slice(calls[target.name], config, target, tallies[target.name])
    finally:
        for channel in channels.values():
            channel.close()
    return {name: _summary(tally) for name, tally in tallies.items()}


def _summary(tally: Tally) -> dict[str, Any]:
    calls = len(tally.latencies)
    return {
        "calls": calls,
        "seconds": round(tally.seconds, 3),
        "qps": round(calls / tally.seconds, 1) if tally.seconds else 0.0,
        "latency_ms": latency_summary_ms(tally.latencies),
        "errors": tally.errors,
        "cpu_seconds": {name: round(value, 2) for name, value in tally.cpu.items()},
    }


if __name__ == "__main__":
    result = measure(LoadConfig.from_json(json.load(sys.stdin)))
    json.dump(result, sys.stdout)
