"""The relay suite: outbox relay throughput and commit-to-Kafka latency, next to the bare
produce rate of the same records by the same client (the relay's Publisher, librdkafka):
the limit of this machine for the relay's pipeline without the database.

The relay runs as production runs it (`python -m wuye.registry relay`) against a Tansu broker
and a fresh PostgreSQL schema. Events are written through `add_events` in committed
transactions, as commands write them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from bench.deployment import fresh_deployment
from bench.events import ENTERPRISES, enterprise_filed
from bench.processes import PYTHON, Children, wait_until
from bench.stats import (
    child_pids,
    cpu_seconds,
    latency_summary_ms,
    machine_busy_seconds,
    process_cpu_seconds,
)
from bench.watch import TopicWatch
from wuye.core.db import create_service_engine
from wuye.core.devbroker import DevBroker, free_port
from wuye.core.events import add_events, outbox
from wuye.core.kafka import Publisher, cloudevent_headers
from wuye.core.relay import EPOCH_HEADER
from wuye.registry.commands import ENTERPRISE_TOPIC
from wuye.registry.service import SPEC
from wuye.registry.settings import RegistrySettings

TARGET_EVENTS_PER_SECOND = 20_000
PREWRITE_PER_TRANSACTION = 1000
WRITER_THREADS = 4
WRITER_EVENTS_PER_TRANSACTION = 10
# How often the drain is watched: its error on a drain of a few seconds stays under 1%.
DRAIN_POLL_SECONDS = 0.01
DRAIN_TIMEOUT_SECONDS = 120
DATABASE_APPLICATION = "wuye-bench-relay"


@dataclass(frozen=True)
class RelayOptions:
    database_url: str
    drain_events: int
    latency_events_per_second: float
    latency_seconds: float


def _prewrite(engine: Engine, count: int) -> None:
    for first in range(0, count, PREWRITE_PER_TRANSACTION):
        last = min(count, first + PREWRITE_PER_TRANSACTION)
        with engine.begin() as connection:
            add_events(connection, [enterprise_filed(n) for n in range(first, last)])


def _cpu(relay: subprocess.Popen, sessions: list[int], broker: list[int]) -> dict[str, float]:
    return {
        "relay": process_cpu_seconds(relay.pid),
        "database": cpu_seconds(sessions),
        "broker": cpu_seconds(broker),
        "machine": machine_busy_seconds(),
    }


def _measure_drain(engine: Engine, count: int, relay: subprocess.Popen) -> dict[str, Any]:
    """Watch the outbox empty. Rows go in id order, so the lowest id left tells the progress.

    The clock starts once the first batch is gone, which leaves the relay's start-up out of
    its throughput.
    """
    lowest = sa.select(sa.func.min(outbox.c.id))
    broker = child_pids(os.getpid(), "tansu")
    with engine.connect() as connection:
        first_id, last_id, rows = connection.execute(
            sa.select(sa.func.min(outbox.c.id), sa.func.max(outbox.c.id), sa.func.count())
        ).one()
        if not last_id - first_id + 1 == rows == count:
            raise RuntimeError(f"the outbox should hold our {count} events, it holds {rows}")
        started_at = started_left = None
        sessions: list[int] = []
        cpu_before: dict[str, float] = {}
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while True:
            if relay.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the relay did not drain the outbox; see registry-relay.log")
            now = time.perf_counter()
            left_from = connection.execute(lowest).scalar()
            connection.commit()
            left = 0 if left_from is None else last_id - left_from + 1
            if started_at is None and left < count:
                started_at, started_left = now, left
                sessions = _relay_sessions(connection)
                cpu_before = _cpu(relay, sessions, broker)
            if left == 0:
                break
            time.sleep(DRAIN_POLL_SECONDS)
    cpu_after = _cpu(relay, sessions, broker)
    seconds = now - started_at
    return {
        "events": started_left,
        "skipped": count - started_left,
        "seconds": round(seconds, 3),
        "events_per_s": round(started_left / seconds, 1),
        "cpu_seconds": {name: round(cpu_after[name] - cpu_before[name], 2) for name in cpu_after},
    }


def _relay_sessions(connection: sa.Connection) -> list[int]:
    rows = connection.execute(
        sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
        {"name": DATABASE_APPLICATION},
    )
    return [pid for (pid,) in rows]


class ArrivalWatch(TopicWatch):
    """Reads the topic from its current end and notes when each traced event arrives."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic)
        self.arrived_at: dict[int, float] = {}
        # Record timestamps: the producer stamps each record when the relay hands it over.
        self.produced_at: dict[int, float] = {}
        self.start()

    def seen(self, message, arrived_at: float) -> None:
        trace_id = dict(message.headers() or ()).get("ce_traceid")
        if trace_id:
            number = int(trace_id, 16)
            # At-least-once: a repeat keeps the first arrival.
            self.arrived_at.setdefault(number, arrived_at)
            self.produced_at.setdefault(number, message.timestamp()[1] / 1000)


def _measure_latency(
    children: Children, settings: RegistrySettings, options: RelayOptions, bootstrap: str
) -> dict[str, Any]:
    watch = ArrivalWatch(bootstrap, ENTERPRISE_TOPIC)
    try:
        written = children.run_json(
            "outbox-writer",
            "bench.outbox_writer",
            {
                "database_url": settings.database_url,
                "schema": settings.schema,
                "events_per_second": options.latency_events_per_second,
                "seconds": options.latency_seconds,
                "events_per_transaction": WRITER_EVENTS_PER_TRANSACTION,
                "threads": WRITER_THREADS,
            },
            timeout=options.latency_seconds + 60,
        )
        committed_at = written["committed_at"]
        # Whatever has not arrived after that is reported as missing.
        with contextlib.suppress(TimeoutError):
            wait_until(
                lambda: len(watch.arrived_at) >= len(committed_at),
                timeout=10,
                what="every written event arriving on Kafka",
            )
    finally:
        watch.close()

    def since_commit(seen: dict[int, float]) -> list[float]:
        return [seen[n] - commit for n, commit in enumerate(committed_at) if n in seen]

    arrived = since_commit(watch.arrived_at)
    return {
        "events": len(committed_at),
        "events_per_s": round(len(committed_at) / written["seconds"], 1),
        "missing": len(committed_at) - len(arrived),
        "latency_ms": latency_summary_ms(arrived),
        "pickup_ms": latency_summary_ms(since_commit(watch.produced_at)),
    }


def _measure_bare_produce(settings: RegistrySettings, count: int) -> dict[str, Any]:
    """The relay's producer alone, sending the records the relay sends (built beforehand, so
    only producing is timed)."""
    now = time.time()
    records = []
    for number in range(count):
        event = enterprise_filed(number)
        records.append(
            (
                event.topic,
                event.key.encode(),
                event.message.SerializeToString(),
                [
                    *cloudevent_headers(
                        event_id=str(uuid.uuid4()),
                        event_type=event.message.DESCRIPTOR.full_name,
                        source=f"/wuye/{SPEC.name}",
                        subject=event.subject,
                        time=now,
                        district=event.district,
                        trace_id="",
                        sequence=number // ENTERPRISES + 1,
                    ),
                    (EPOCH_HEADER, b"1"),
                ],
            )
        )
    producer = Publisher(settings)
    broker = child_pids(os.getpid(), "tansu")
    try:
        # Connections and metadata first, as a running relay has them.
        producer.publish(records[:100])
        cpu_before = _producer_cpu(broker)
        started = time.perf_counter()
        producer.publish(records)
        seconds = time.perf_counter() - started
        cpu_after = _producer_cpu(broker)
    finally:
        producer.close()
    return {
        "events": count,
        "seconds": round(seconds, 3),
        "events_per_s": round(count / seconds, 1),
        "cpu_seconds": {name: round(cpu_after[name] - cpu_before[name], 2) for name in cpu_after},
    }


def _producer_cpu(broker: list[int]) -> dict[str, float]:
    return {
        "producer": process_cpu_seconds(os.getpid()),
        "broker": cpu_seconds(broker),
        "machine": machine_busy_seconds(),
    }


def run(options: RelayOptions, log_dir: Path) -> dict[str, Any]:
    broker = DevBroker(log=log_dir / "tansu.log")
    try:
        broker.start()
        with (
            fresh_deployment(options.database_url, broker.bootstrap) as deployment,
            Children(log_dir) as children,
        ):
            settings = deployment.settings()
            SPEC.ensure_topics(settings)
            engine = create_service_engine(settings)
            try:
                _prewrite(engine, options.drain_events)
                relay = children.start(
                    "registry-relay",
                    [PYTHON, "-m", "wuye.registry", "relay"],
                    env={
                        **deployment.env(metrics_port=free_port()),
                        # libpq names the relay's sessions, so their CPU can be counted.
                        "PGAPPNAME": DATABASE_APPLICATION,
                    },
                )
                drain = _measure_drain(engine, options.drain_events, relay)
                latency = _measure_latency(children, settings, options, broker.bootstrap)
                children.stop(relay)
            finally:
                engine.dispose()
            bare = _measure_bare_produce(settings, options.drain_events)
    finally:
        broker.stop()
    ratio = drain["events_per_s"] / bare["events_per_s"]
    return {
        "drain": drain,
        "latency": latency,
        "bare_produce": bare,
        "relay_to_bare_ratio": round(ratio, 3),
        "target_events_per_s": TARGET_EVENTS_PER_SECOND,
        "passed": drain["events_per_s"] >= TARGET_EVENTS_PER_SECOND and latency["missing"] == 0,
    }
