"""The credit suite: a full recomputation of 10,000 enterprises with 20 records each, and the
latency from a cause (an event on Kafka) to the grade change it makes (GradeChanged on Kafka).

Both run against a fresh PostgreSQL schema migrated like production; the latency run starts
`python -m wuye.credit consume events` and `python -m wuye.credit relay` as separate processes
on a Tansu broker, and publishes registry events at a steady rate.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from confluent_kafka import Producer
from google.protobuf.timestamp_pb2 import Timestamp

from bench.deployment import migrated_schema, process_env
from bench.events import credit_code
from bench.processes import PYTHON, Children, wait_until
from bench.stats import latency_summary_ms
from bench.watch import TopicWatch
from wuye.core.db import create_service_engine
from wuye.core.devbroker import DevBroker
from wuye.core.kafka import cloudevent_headers, ensure_topics
from wuye.core.settings import ORDOS_DISTRICTS
from wuye.credit import store
from wuye.credit.commands import GRADE_TOPIC, Credit
from wuye.credit.service import SPEC
from wuye.credit.settings import CreditSettings
from wuye.credit.v1 import events_pb2 as credit_events
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.registry.v1 import registry_service_pb2 as registry

RECOMPUTE_TARGET_SECONDS = 5.0
LATENCY_TARGET_P99_MS = 1000.0
FILINGS_TOPIC = "wuye.registry.enterprise.v1"
EXITS_TOPIC = "wuye.registry.project.v1"
DISTRICTS = sorted(ORDOS_DISTRICTS)


@dataclass(frozen=True)
class CreditOptions:
    database_url: str
    enterprises: int
    records_each: int
    events_per_second: float
    latency_seconds: float


# ---------------------------------------------------------------- full recomputation


def _seed(engine: sa.Engine, enterprises: int, records_each: int) -> None:
    """Filed enterprises, each with a mix of good and bad records over the last year."""
    now = dt.datetime.now(dt.UTC)
    subjects, records = [], []
    for n in range(enterprises):
        district = DISTRICTS[n % len(DISTRICTS)]
        code = credit_code(district, n)
        key = f"enterprise:{code}"
        subjects.append(
            {
                "subject_key": key,
                "kind": "ENTERPRISE",
                "subject_id": code,
                "name": f"E{n}",
                "district_code": district,
                "filed_at": now - dt.timedelta(days=400),
                "unfiled_at": None,
                "grade": "C_UNFILED",
                "score_tenths": 0,
                "blacklisted": False,
                "red_listed": False,
                "updated_at": now,
            }
        )
        for r in range(records_each):
            occurred = now - dt.timedelta(days=(n * 7 + r * 31) % 500)
            records.append(
                {
                    "record_id": f"{district}-R{n:07d}{r:03d}",
                    "subject_key": key,
                    "record_type": "AWARD" if r % 4 == 0 else "COMPLAINT_VERIFIED",
                    "direction": "GOOD" if r % 4 == 0 else "BAD",
                    "points_tenths": 50 if r % 4 == 0 else 30,
                    "severity": "NORMAL",
                    "occurred_at": occurred,
                    "expires_at": occurred + dt.timedelta(days=365),
                    "source": "bench",
                    "source_event_id": None,
                    "evidence_reference": "",
                    "reason": "",
                    "removed_at": None,
                    "rectified_at": None,
                    "appeal": "NONE",
                    "appeal_reason": "",
                    "appeal_decision": "",
                }
            )
    with engine.begin() as connection:
        connection.execute(store.subjects.insert(), subjects)
        for first in range(0, len(records), 20_000):
            connection.execute(store.records.insert(), records[first : first + 20_000])


def _recompute(settings: CreditSettings, options: CreditOptions) -> dict[str, Any]:
    engine = create_service_engine(settings)
    try:
        _seed(engine, options.enterprises, options.records_each)
        credit = Credit(engine, settings)
        started = time.perf_counter()
        changed = credit.recompute_all()
        first = time.perf_counter() - started
        started = time.perf_counter()
        unchanged = credit.recompute_all()
        again = time.perf_counter() - started
    finally:
        engine.dispose()
    return {
        "enterprises": options.enterprises,
        "records": options.enterprises * options.records_each,
        "seconds": round(first, 3),
        "changed": changed,
        "seconds_when_nothing_changes": round(again, 3),
        "changed_second_time": unchanged,
        "target_seconds": RECOMPUTE_TARGET_SECONDS,
        "passed": first < RECOMPUTE_TARGET_SECONDS,
    }


# ---------------------------------------------------------------- cause -> grade change


def _headers(message, subject: str, district: str) -> list[tuple[str, bytes]]:
    return cloudevent_headers(
        event_id=str(uuid.uuid4()),
        event_type=message.DESCRIPTOR.full_name,
        source="/wuye/registry",
        subject=subject,
        time=time.time(),
        district=district,
        trace_id="",
    )


def _filing_approved(code: str, district: str) -> registry_events.FilingApproved:
    return registry_events.FilingApproved(
        filing_id=f"{district}-F{secrets.token_hex(6)}",
        kind=registry.FILING_KIND_INITIAL,
        credit_code=code,
        name="bench",
        district_code=district,
        status=registry.ENTERPRISE_STATUS_FILED,
        occur_time=Timestamp(seconds=int(time.time()) - 1),
    )


class _GradeWatch(TopicWatch):
    """Reads wuye.credit.grade.v1 and notes when each subject's first GradeChanged arrives."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, GRADE_TOPIC, from_beginning=True)
        self.arrived: dict[str, float] = {}
        self.start()

    def seen(self, message, arrived_at: float) -> None:
        headers = dict(message.headers() or ())
        if headers.get("ce_type") == b"wuye.credit.v1.GradeChanged":
            change = credit_events.GradeChanged.FromString(message.value()).change
            self.arrived.setdefault(change.subject.id, arrived_at)


def _latency(settings: CreditSettings, options: CreditOptions, log_dir: Path) -> dict[str, Any]:
    env = process_env(settings, metrics_port=0)
    ensure_topics(settings, [FILINGS_TOPIC, EXITS_TOPIC, GRADE_TOPIC], partitions=6)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 1})
    with Children(log_dir) as children:
        children.start("credit-consume", [PYTHON, "-m", "wuye.credit", "consume", "events"], env)
        children.start("credit-relay", [PYTHON, "-m", "wuye.credit", "relay"], env)
        watch = _GradeWatch(settings.kafka_bootstrap)
        try:
            # Warm-up: the first event waits for the consumer group to form.
            warm = credit_code(DISTRICTS[0], 9_999_999)
            message = _filing_approved(warm, DISTRICTS[0])
            producer.produce(
                FILINGS_TOPIC,
                message.SerializeToString(),
                warm.encode(),
                headers=_headers(message, f"enterprises/{warm}", DISTRICTS[0]),
            )
            producer.flush(10)
            wait_until(lambda: warm in watch.arrived, 90, "the credit consumer's first grade")
            sent: dict[str, float] = {}
            interval = 1.0 / options.events_per_second
            total = int(options.events_per_second * options.latency_seconds)
            start = time.perf_counter()
            for n in range(total):
                time.sleep(max(0.0, start + n * interval - time.perf_counter()))
                district = DISTRICTS[n % len(DISTRICTS)]
                code = credit_code(district, 5_000_000 + n)
                message = _filing_approved(code, district)
                producer.produce(
                    FILINGS_TOPIC,
                    message.SerializeToString(),
                    code.encode(),
                    headers=_headers(message, f"enterprises/{code}", district),
                )
                producer.poll(0)
                sent[code] = time.time()
            producer.flush(10)
            wait_until(lambda: all(c in watch.arrived for c in sent), 60, "every grade change")
        finally:
            watch.close()
    latencies = [watch.arrived[code] - at for code, at in sent.items()]
    summary = latency_summary_ms(sorted(latencies))
    return {
        "events": len(sent),
        "events_per_s": options.events_per_second,
        "latency_ms": summary,
        "target_p99_ms": LATENCY_TARGET_P99_MS,
        "passed": summary["p99"] < LATENCY_TARGET_P99_MS,
    }


def run(options: CreditOptions, log_dir: Path) -> dict[str, Any]:
    broker = DevBroker(log=log_dir / "credit-broker.log").start()
    try:
        with migrated_schema(
            options.database_url, CreditSettings, SPEC, kafka_bootstrap=broker.bootstrap
        ) as settings:
            recompute = _recompute(settings, options)
        with migrated_schema(
            options.database_url, CreditSettings, SPEC, kafka_bootstrap=broker.bootstrap
        ) as settings:
            latency = _latency(settings, options, log_dir)
    finally:
        broker.stop()
    return {"recompute": recompute, "event_to_grade": latency}
