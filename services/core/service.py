"""What every service's `python -m wuye.<service>` does: serve | relay | consume | timers |
all | migrate.

A service describes itself once (`ServiceSpec`): its settings, migrations, gRPC servicers,
topics and consumers; this module wires them to the database, Kafka and the process signals.
Nothing is created at import time, so tests can wire the same parts to their own fixtures.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from confluent_kafka import KafkaException
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from wuye.core import logs, metrics
from wuye.core.catalog import load_spec
from wuye.core.consumer import Consumer, Handler
from wuye.core.db import create_service_engine
from wuye.core.events import purge_idempotency_keys
from wuye.core.grpcserver import Route, ServiceDefinition, serve
from wuye.core.kafka import Publisher, ensure_topics, make_consumer
from wuye.core.logs import log
from wuye.core.migrate import upgrade
from wuye.core.relay import Relay
from wuye.core.settings import Settings
from wuye.core.stop import Stop

logger = logging.getLogger("wuye")


@dataclass(frozen=True)
class ConsumerSpec:
    """One consumer group: `build` gives the topics it reads and a handler per event type
    (ce_type); both may depend on settings (rules that plug other services' events in)."""

    name: str
    build: Callable[[Settings, Engine], tuple[tuple[str, ...], dict[str, Handler]]]


@dataclass(frozen=True)
class TimerSpec:
    """Work done on a clock rather than on a request or an event (expiries, overdue checks).
    `run` returns how many things it acted on; it must be safe to run in several replicas."""

    name: str
    every_seconds: Callable[[Settings], float]
    run: Callable[[Settings, Engine], int]


def _purge_idempotency_keys(settings: Settings, engine: Engine) -> int:
    return purge_idempotency_keys(engine, time.time() - settings.idempotency_retention_days * 86400)


# Housekeeping every service needs. It runs beside the relay, which every service deploys.
CORE_TIMERS = (
    TimerSpec(
        "idempotency-keys",
        lambda settings: settings.idempotency_purge_seconds,
        _purge_idempotency_keys,
    ),
)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    settings_type: type[Settings]
    migrations_dir: Path
    definitions: Callable[[Settings, Engine], list[ServiceDefinition]]
    topics: tuple[str, ...]
    consumers: tuple[ConsumerSpec, ...] = field(default_factory=tuple)
    timers: tuple[TimerSpec, ...] = field(default_factory=tuple)
    # None: the settings' kafka_topic_partitions.
    topic_partitions: int | None = None
    # Called by the relay with each batch of outbox rows Kafka acknowledged, and when.
    on_published: Callable[[list, float], None] | None = None
    # Configs of topics the relay creates where they are missing (by topic), from settings.
    topic_configs: Callable[[Settings], dict[str, dict[str, str]]] | None = None
    # Services this one calls over gRPC (wuye.core.client): the deployment gives it their
    # addresses (WUYE_SERVICE_ENDPOINTS, WUYE_SERVICE_ENDPOINT_TEMPLATE).
    calls: tuple[str, ...] = ()
    # Each server holds its districts' state in memory, so every instance is exactly one process
    # (the chart's singleOwner: one pod, replaced with Recreate, never autoscaled).
    single_owner: bool = False
    # The chart's values for this service beyond what the fields above give (serveSecrets,
    # networkPolicy, env); tools/gendeploy.py writes them into charts/wuye/values.yaml.
    chart_values: Mapping[str, Any] = field(default_factory=dict)

    def ensure_topics(self, settings: Settings) -> None:
        """Creates the service's topics where they are missing, with their configs."""
        configs = self.topic_configs(settings) if self.topic_configs else None
        ensure_topics(settings, self.topics, self.topic_partitions, configs)


def one_servicer(
    full_name: str,
    add_to_server: Callable[[Any, Any], None],
    routes: dict[str, Route],
    build: Callable[[Any, Engine], object],
) -> Callable[[Settings, Engine], list[ServiceDefinition]]:
    """`definitions` of a service whose server holds one servicer, `build(settings, engine)`,
    with no work of its own to start or stop."""
    return lambda settings, engine: [
        ServiceDefinition(full_name, add_to_server, build(settings, engine), routes)
    ]


def _stop_on_signals() -> Stop:
    stop = Stop()

    def handle(signum, _frame) -> None:
        log(logger, "stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def build_relay(spec: ServiceSpec, settings: Settings, engine: Engine) -> Relay:
    return Relay(
        engine,
        lambda: Publisher(settings),
        source=f"/wuye/{spec.name}",
        batch_size=settings.relay_batch_size,
        poll_seconds=settings.relay_poll_seconds,
        lease_seconds=settings.relay_lease_seconds,
        on_published=spec.on_published,
    )


def build_consumer(consumer: ConsumerSpec, settings: Settings, engine: Engine) -> Consumer:
    topics, handlers = consumer.build(settings, engine)
    return Consumer(
        engine,
        make_consumer(settings, group=f"wuye.{settings.service}.{consumer.name}", topics=topics),
        Publisher(settings, role="dead-letters"),
        name=consumer.name,
        handlers=handlers,
        max_attempts=settings.consumer_max_attempts,
        inbox_retention_days=settings.inbox_retention_days,
        inbox_purge_seconds=settings.inbox_purge_seconds,
    )


def run_timers(
    timers: tuple[TimerSpec, ...], settings: Settings, engine: Engine, stop: threading.Event
) -> None:
    due = dict.fromkeys((t.name for t in timers), 0.0)
    while not stop.is_set():
        for timer in timers:
            if time.monotonic() < due[timer.name]:
                continue
            try:
                acted = timer.run(settings, engine)
                if acted:
                    log(logger, "timer acted", timer=timer.name, count=acted)
            except DBAPIError as e:
                log(
                    logger,
                    "timer failed, will retry",
                    logging.WARNING,
                    timer=timer.name,
                    error=repr(e)[:300],
                )
            due[timer.name] = time.monotonic() + timer.every_seconds(settings)
        stop.wait(max(0.05, min(due.values()) - time.monotonic()))


def _ensure_topics_or_warn(spec: ServiceSpec, settings: Settings) -> None:
    try:
        spec.ensure_topics(settings)
    except KafkaException as e:
        # Topics also appear on first use where the broker auto-creates them.
        log(logger, "could not create topics yet", logging.WARNING, error=repr(e)[:200])


def run_worker(spec: ServiceSpec, settings: Settings, engine: Engine, stop: Stop) -> int:
    """The relay (with the core's housekeeping), every consumer and the timers as threads of one
    process, beside the server under `all`: `make run`'s way of running a service, whose parts
    idle in the same few waits whether apart or together. Any of them ending on its own ends
    the others and the server, and the process exits 1, so whoever supervises it sees the
    failure."""
    parts: dict[str, Callable[[], None]] = {
        "relay": lambda: build_relay(spec, settings, engine).run(stop),
        "housekeeping": lambda: run_timers(CORE_TIMERS, settings, engine, stop),
    }
    for consumer in spec.consumers:
        parts[f"consume {consumer.name}"] = (
            lambda consumer=consumer: build_consumer(consumer, settings, engine).run(stop)
        )
    if spec.timers:
        parts["timers"] = lambda: run_timers(spec.timers, settings, engine, stop)
    log(logger, "working", service=spec.name, parts=",".join(parts))
    return run_together(parts, stop)


def run_together(parts: dict[str, Callable[[], None]], stop: threading.Event) -> int:
    """Each part in a thread until `stop` is set; a part that fails or returns before then sets
    it. 0 when every part ended because of `stop`, else 1."""
    failed: list[str] = []

    def run_part(name: str, part: Callable[[], None]) -> None:
        try:
            part()
        except Exception as e:
            log(logger, "worker part failed", logging.ERROR, part=name, error=repr(e)[:300])
            failed.append(name)
        else:
            if not stop.is_set():
                log(logger, "worker part ended on its own", logging.ERROR, part=name)
                failed.append(name)
        stop.set()

    threads = [
        threading.Thread(target=run_part, args=item, name=item[0]) for item in parts.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 1 if failed else 0


def _serve_and_work(spec: ServiceSpec, settings: Settings, engine: Engine, stop: Stop) -> int:
    """The server and run_worker's parts in one process; 1 if a part failed."""
    _ensure_topics_or_warn(spec, settings)
    outcome: list[int] = []
    worker = threading.Thread(
        target=lambda: outcome.append(run_worker(spec, settings, engine, stop)), name="worker"
    )
    worker.start()
    try:
        serve(settings, spec.definitions(settings, engine), stop)
    finally:
        stop.set()
        worker.join()
    return max(outcome, default=1)


def main(spec: ServiceSpec, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m wuye.{spec.name}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the gRPC server")
    sub.add_parser("relay", help="publish committed outbox events to Kafka")
    consume = sub.add_parser("consume", help="run one consumer group")
    consume.add_argument("consumer", nargs="?", choices=[c.name for c in spec.consumers] or None)
    sub.add_parser("timers", help="run the service's timers (expiries, overdue checks)")
    sub.add_parser(
        "all", help="the server, the relay, the consumers and the timers in one process (make run)"
    )
    sub.add_parser("migrate", help="bring the database schema up to date")
    args = parser.parse_args(argv)

    settings = spec.settings_type()
    logs.configure(settings.log_level, spec.name)
    if args.command == "migrate":
        upgrade(settings, spec.migrations_dir)
        log(logger, "migrated", service=spec.name, schema=settings.schema)
        return 0

    engine = create_service_engine(settings)
    stop = _stop_on_signals()
    if args.command == "serve":
        serve(settings, spec.definitions(settings, engine), stop)
        return 0
    if args.command == "all":
        return _serve_and_work(spec, settings, engine, stop)

    metrics_port = metrics.serve_metrics(settings.metrics_host, settings.metrics_port)

    if args.command == "relay":
        _ensure_topics_or_warn(spec, settings)
        log(logger, "relaying", service=spec.name, metrics_port=metrics_port)
        housekeeping = threading.Thread(
            target=run_timers, args=(CORE_TIMERS, settings, engine, stop), name="housekeeping"
        )
        housekeeping.start()
        try:
            build_relay(spec, settings, engine).run(stop)
        finally:
            stop.set()
            housekeeping.join()
        return 0

    if args.command == "timers":
        if not spec.timers:
            parser.error(f"{spec.name} has no timers")
        log(logger, "timers", service=spec.name, metrics_port=metrics_port)
        run_timers(spec.timers, settings, engine, stop)
        return 0

    if not spec.consumers:
        parser.error(f"{spec.name} has no consumers")
    chosen = next(c for c in spec.consumers if args.consumer in (None, c.name))
    log(logger, "consuming", service=spec.name, consumer=chosen.name, metrics_port=metrics_port)
    build_consumer(chosen, settings, engine).run(stop)
    return 0


def run_module(package: str) -> NoReturn:
    """The whole of a service's __main__.py: `python -m wuye.<service>` runs its declaration."""
    sys.exit(main(load_spec(package.rpartition(".")[2])))
