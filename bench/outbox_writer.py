"""Commits events at a steady rate: `python -m bench.outbox_writer`, its config as JSON on stdin;
prints the commit time of each event as JSON on stdout.

Events are written through `add_events` in small transactions (a few events each: one per
transaction would cost the writer more CPU than the relay it measures, on a 2-core machine). A
commit waits for the WAL flush (~3 ms here), so a few threads share the rate. Event number `n`
carries the trace id `n` (in hex), which the relay copies into the `ce_traceid` header: the
consumer of the bench matches what it reads to the commit time printed here.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from bench.events import enterprise_filed
from wuye.core import context
from wuye.core.auth import Principal, Role
from wuye.core.context import DistrictScope, RequestContext
from wuye.core.db import create_service_engine
from wuye.core.events import add_events
from wuye.registry.settings import RegistrySettings

WRITER = Principal(subject="bench", role=Role.ADMIN, districts=None)


@dataclass(frozen=True)
class WriterConfig:
    database_url: str
    schema: str
    events_per_second: float
    events_per_transaction: int
    seconds: float
    threads: int

    @classmethod
    def from_json(cls, config: dict[str, Any]) -> WriterConfig:
        return cls(**config)


def trace_id_of(number: int) -> str:
    return f"{number:032x}"


def _write(
    engine: Engine,
    scope: DistrictScope,
    transactions: range,
    per_transaction: int,
    start: float,
    interval: float,
    committed_at: list[float],
) -> None:
    for transaction in transactions:
        delay = start + transaction * interval - time.time()
        if delay > 0:
            time.sleep(delay)
        numbers = range(transaction * per_transaction, (transaction + 1) * per_transaction)
        with engine.begin() as connection:
            for number in numbers:
                # The trace id travels from the request context, as in an RPC.
                call = RequestContext(WRITER, scope, f"bench-{number}", trace_id_of(number))
                token = context.enter(call)
                try:
                    add_events(connection, [enterprise_filed(number)])
                finally:
                    context.leave(token)
        committed = time.time()
        for number in numbers:
            committed_at[number] = committed


def write(config: WriterConfig) -> dict[str, Any]:
    settings = RegistrySettings(
        database_url=config.database_url,
        database_schema=config.schema,
        database_pool_size=config.threads,
    )
    engine = create_service_engine(settings)
    scope = DistrictScope(
        service=settings.service, served=settings.served_districts, city=settings.city_districts
    )
    per_transaction = config.events_per_transaction
    transactions = round(config.events_per_second * config.seconds / per_transaction)
    interval = per_transaction / config.events_per_second
    committed_at = [0.0] * (transactions * per_transaction)
    start = time.time() + 0.2  # let every thread get going before the first event is due
    threads = [
        threading.Thread(
            target=_write,
            args=(
                engine,
                scope,
                range(first, transactions, config.threads),
                per_transaction,
                start,
                interval,
                committed_at,
            ),
        )
        for first in range(config.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    return {"committed_at": committed_at, "seconds": max(committed_at) - start}


if __name__ == "__main__":
    json.dump(write(WriterConfig.from_json(json.load(sys.stdin))), sys.stdout)
