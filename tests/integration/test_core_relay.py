"""The outbox relay against real PostgreSQL and Tansu: what a transaction commits is published,
with CloudEvents headers any Kafka client reads; nothing else is; nothing waits forever; each
key's events keep their order; one relay publishes at a time, even when one is killed."""

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import sqlalchemy as sa
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka import Consumer as ConfluentConsumer
from confluent_kafka import Producer as ConfluentProducer
from confluent_kafka.admin import AdminClient
from google.protobuf import wrappers_pb2
from prometheus_client import REGISTRY

from wuye.core import context
from wuye.core.auth import Principal, Role
from wuye.core.consumer import Consumer, Handler
from wuye.core.context import DistrictScope, RequestContext
from wuye.core.db import create_service_engine
from wuye.core.events import Event, add_events, event_metadata, outbox, outbox_lease
from wuye.core.kafka import (
    Publisher,
    PublishFailed,
    ensure_topics,
    make_consumer,
)
from wuye.core.migrate import upgrade
from wuye.core.relay import Relay
from wuye.core.service import ServiceSpec, build_relay
from wuye.core.settings import Settings
from wuye.registry.service import SPEC as REGISTRY_SPEC
from wuye.registry.settings import RegistrySettings

pytestmark = pytest.mark.integration

SOURCE_SERVICE = "coretest"
STRING_VALUE = wrappers_pb2.StringValue.DESCRIPTOR.full_name

effects_metadata = sa.MetaData()
effects = sa.Table(
    "effects",
    effects_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # Not unique on purpose: a second effect of one event must show up as a second row.
    sa.Column("event_id", sa.String(100), nullable=False),
    sa.Column("value", sa.String(200), nullable=False),
)


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings(service=SOURCE_SERVICE, relay_poll_seconds=0.01)


@pytest.fixture
def engine(settings: Settings) -> Iterator[sa.Engine]:
    engine = create_service_engine(settings)
    event_metadata.create_all(engine)
    effects_metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def topic() -> str:
    return f"wuye.coretest.{uuid.uuid4().hex[:12]}.v1"


def spec(topic: str) -> ServiceSpec:
    return ServiceSpec(
        name=SOURCE_SERVICE,
        settings_type=Settings,
        migrations_dir=Path(),
        definitions=lambda _settings, _engine: [],
        topics=(topic,),
    )


def commit(engine: sa.Engine, topic: str, values: list[str], key: str = "k-1") -> None:
    """One transaction adding one event per value."""
    with engine.begin() as connection:
        add_events(
            connection,
            [
                Event(
                    topic=topic,
                    key=key,
                    subject=f"things/{key}",
                    district="150602",
                    message=wrappers_pb2.StringValue(value=value),
                )
                for value in values
            ],
        )


def backlog(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def values_of(records) -> list[str]:
    return [wrappers_pb2.StringValue.FromString(r.value).value for r in records]


def record_effect(connection: sa.Connection, message, meta) -> None:
    connection.execute(effects.insert().values(event_id=meta.event_id, value=message.value))


def effect_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(effects.c.value, sa.func.count()).group_by(effects.c.value)
        ).all()
    return dict(rows)


def start_relay(start_loop, settings: Settings, engine: sa.Engine, topic: str) -> Relay:
    """The relay `python -m wuye.coretest relay` would run, on a thread."""
    relay = build_relay(spec(topic), settings, engine)
    start_loop(relay.run, "relay", after=[relay.close])
    return relay


def start_consumer(start_loop, settings: Settings, engine: sa.Engine, topic: str) -> Consumer:
    """A consumer group of its own recording each StringValue event in `effects`."""
    dead_letters = Publisher(settings, role="dead-letters")
    consumer = Consumer(
        engine,
        make_consumer(settings, f"wuye.coretest.{uuid.uuid4().hex[:8]}", [topic]),
        dead_letters,
        name="effects",
        handlers={STRING_VALUE: Handler(wrappers_pb2.StringValue, record_effect)},
        max_attempts=3,
        inbox_retention_days=1,
        inbox_purge_seconds=3600,
    )
    start_loop(consumer.run, "consumer", after=[dead_letters.close])
    return consumer


# -- publishing what was committed


def test_committed_events_are_published_with_cloudevents_headers_any_client_reads(
    settings, engine, topic, start_loop, read_topic, wait_until
) -> None:
    trace_id = uuid.uuid4().hex
    principal = Principal("tester", Role.ADMIN, None)
    scope = DistrictScope(SOURCE_SERVICE, frozenset({"150602"}), {"150602": "东胜区"})
    token = context.enter(RequestContext(principal, scope, "req-1", trace_id))
    try:
        committed_at = time.time()
        commit(engine, topic, ["filed"], key="91350100M000100Y43")
    finally:
        context.leave(token)
    with engine.connect() as connection:
        event_id = connection.execute(sa.select(outbox.c.event_id)).scalar_one()

    start_relay(start_loop, settings, engine, topic)
    [record] = read_topic(topic, 1)

    assert record.key == b"91350100M000100Y43"
    assert wrappers_pb2.StringValue.FromString(record.value) == wrappers_pb2.StringValue(
        value="filed"
    )
    headers = record.headers
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_id"] == event_id
    assert headers["ce_type"] == "google.protobuf.StringValue"
    assert headers["ce_source"] == "/wuye/coretest"
    assert headers["ce_subject"] == "things/91350100M000100Y43"
    assert headers["ce_district"] == "150602"
    assert headers["ce_traceid"] == trace_id
    assert headers["content-type"] == "application/protobuf"
    event_time = dt.datetime.fromisoformat(headers["ce_time"])
    assert event_time.utcoffset() == dt.timedelta(0)
    assert abs(event_time.timestamp() - committed_at) < 5
    wait_until(lambda: backlog(engine) == 0, what="the published event deleted")


def test_a_rolled_back_transaction_publishes_nothing(
    settings, engine, topic, start_loop, read_topic
) -> None:
    with pytest.raises(RuntimeError), engine.begin() as connection:
        add_events(
            connection,
            [Event(topic, "k-1", "things/k-1", "150602", wrappers_pb2.StringValue(value="no"))],
        )
        raise RuntimeError("the command failed after adding its events")
    commit(engine, topic, ["marker"])

    start_relay(start_loop, settings, engine, topic)

    # The relay publishes in commit order: whatever came before the marker would be here.
    assert values_of(read_topic(topic, 2, timeout=1.5)) == ["marker"]


def test_events_of_one_key_keep_their_commit_order_across_relay_batches(
    make_settings, engine, topic, start_loop, read_topic
) -> None:
    keys = ["a", "b", "c"]
    for batch in range(10):
        for key in keys:
            commit(engine, topic, [f"{key}{batch}-{n}" for n in range(3)], key=key)

    settings = make_settings(service=SOURCE_SERVICE, relay_poll_seconds=0.01, relay_batch_size=7)
    start_relay(start_loop, settings, engine, topic)
    records = read_topic(topic, 90)

    assert len(records) == 90
    for key in keys:
        mine = [r for r in records if r.key == key.encode()]
        assert len({r.partition for r in mine}) == 1
        assert values_of(mine) == [f"{key}{batch}-{n}" for batch in range(10) for n in range(3)]


# -- when things fail


def test_events_committed_while_the_broker_is_down_wait_and_arrive_once_it_is_back(
    make_settings, private_broker, engine, topic, start_loop, read_topic, wait_until
) -> None:
    settings = make_settings(service=SOURCE_SERVICE, kafka_bootstrap=private_broker.bootstrap)
    ensure_topics(settings, [topic], partitions=3)
    # A short delivery timeout: each failed round would otherwise take 10 s. The relay starts a
    # new producer after each failure.
    relay = Relay(
        engine,
        lambda: Publisher(settings, **{"message.timeout.ms": 1500}),
        source="/wuye/coretest",
        batch_size=100,
        poll_seconds=0.01,
        lease_seconds=10.0,
        gauge_seconds=0.05,
    )
    start_loop(relay.run, "relay", after=[relay.close])
    commit(engine, topic, ["before"])
    assert values_of(read_topic(topic, 1, bootstrap=private_broker.bootstrap)) == ["before"]

    private_broker.stop()
    failures = metric("wuye_outbox_publish_failures_total")
    outage = [f"during-{n}" for n in range(5)]
    for n, value in enumerate(outage):
        commit(engine, topic, [value], key=f"k-{n}")  # a commit does not need the broker
    wait_until(lambda: metric("wuye_outbox_publish_failures_total") > failures, timeout=15)
    assert backlog(engine) == 5
    wait_until(lambda: metric("wuye_outbox_backlog_events") == 5, timeout=5)

    # A restarted Tansu is empty, and acknowledges then drops records sent to a topic it no longer
    # has. A production Kafka keeps its topics: re-create ours before the relay may publish,
    # holding the relay at its next read of the outbox meanwhile.
    with engine.begin() as connection:
        connection.exec_driver_sql("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
        wait_until(lambda: waiting_for_outbox(connection), timeout=15, what="relay held")
        private_broker.start()
        ensure_topics(settings, [topic], partitions=3)
    wait_until(lambda: backlog(engine) == 0, timeout=30, what="outbox drained")
    start_consumer(start_loop, settings, engine, topic)
    wait_until(lambda: effect_counts(engine) == dict.fromkeys(outage, 1), timeout=30)


def waiting_for_outbox(connection: sa.Connection) -> bool:
    """Whether another session waits for a lock on the outbox."""
    return bool(
        connection.exec_driver_sql(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'outbox'::regclass"
        ).scalar_one()
    )


def test_events_published_twice_have_their_effect_once(
    settings, engine, topic, start_loop, read_topic, wait_until
) -> None:
    # The crash this simulates: Kafka acknowledged the batch, deleting it from the outbox failed.
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'simulated crash before the delete'; END $$"
        )
        connection.exec_driver_sql(
            "CREATE TRIGGER outbox_keeps_rows BEFORE DELETE ON outbox "
            "FOR EACH STATEMENT EXECUTE FUNCTION refuse_delete()"
        )
    values = ["one", "two", "three"]
    commit(engine, topic, values)
    start_relay(start_loop, settings, engine, topic)

    assert len(read_topic(topic, 6)) >= 6  # every event at least twice
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER outbox_keeps_rows ON outbox")
    wait_until(lambda: backlog(engine) == 0, what="outbox drained")
    published = len(read_topic(topic, 1000, timeout=1))

    start_consumer(start_loop, settings, engine, topic)
    wait_until(
        lambda: (
            metric("wuye_consumer_events_total", topic=topic, outcome="stale")
            + metric("wuye_consumer_events_total", topic=topic, outcome="handled")
            == published
        ),
        timeout=30,
    )
    # Each repeat carries a version the consumer has already handled for its key.
    assert metric("wuye_consumer_events_total", topic=topic, outcome="stale") >= 3
    assert effect_counts(engine) == dict.fromkeys(values, 1)


# -- standing by


def test_of_two_relays_on_one_schema_only_one_publishes_until_it_stops(
    settings, engine, topic, start_loop, read_topic
) -> None:
    engines = {name: create_service_engine(settings) for name in ("first", "second")}

    def start(name: str):
        relay = Relay(
            engines[name],  # as in a process of its own
            lambda: Publisher(settings),
            source=f"/wuye/{name}",
            batch_size=100,
            poll_seconds=0.01,
            lease_seconds=10.0,
        )
        return start_loop(relay.run, name, after=[relay.close])

    try:
        first = start("first")
        commit(engine, topic, ["1"])
        read_topic(topic, 1)
        start("second")
        for n in range(2, 6):
            commit(engine, topic, [str(n)])
            time.sleep(0.25)  # the standby tries the lease every 10 ms meanwhile
        records = read_topic(topic, 5)
        assert [r.headers["ce_source"] for r in records] == ["/wuye/first"] * 5

        # The first stops; its process (and its connection pool) lives on a while.
        first.stop()
        commit(engine, topic, ["6"])
        records = read_topic(topic, 6)
        assert values_of(records) == ["1", "2", "3", "4", "5", "6"]
        assert records[-1].headers["ce_source"] == "/wuye/second"
    finally:
        for loop_engine in engines.values():
            loop_engine.dispose()


# -- topics


def test_dead_letter_topics_are_created_with_their_topics_as_the_settings_size_them(
    make_settings, topic
) -> None:
    settings = make_settings(service=SOURCE_SERVICE, kafka_topic_partitions=2)
    spec(topic).ensure_topics(settings)

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    found = admin.list_topics(timeout=10).topics
    assert {name: len(found[name].partitions) for name in (topic, f"{topic}.dlq")} == {
        topic: 2,
        f"{topic}.dlq": 2,
    }


# -- waking up


def sleepy_relay(engine: sa.Engine, settings: Settings) -> Relay:
    """A relay that would look at the outbox by itself only after an hour."""
    return Relay(
        engine,
        lambda: Publisher(settings),
        source="/wuye/coretest",
        batch_size=100,
        poll_seconds=3600,
        lease_seconds=3600,
    )


def test_on_postgresql_a_commit_wakes_the_relay(
    settings, engine, topic, start_loop, read_topic, wait_until
) -> None:
    relay = sleepy_relay(engine, settings)
    start_loop(relay.run, "relay", after=[relay.close])
    wait_until(lambda: relay.epoch is not None, what="the relay holding the lease")
    commit(engine, topic, ["first"])
    assert values_of(read_topic(topic, 1)) == ["first"]
    commit(engine, topic, ["second"])
    assert values_of(read_topic(topic, 2)) == ["first", "second"]
    # Only commits notify (the relay's own deletes do not): one wake-up each, no poll.
    assert relay.wakeups == {"commit": 2}


def test_on_sqlite_a_commit_wakes_the_relay_and_writes_to_other_databases_do_not(
    make_settings, tmp_path, topic, start_loop, read_topic, wait_until
) -> None:
    settings = make_settings(service=SOURCE_SERVICE, database_url=f"sqlite:///{tmp_path}/x.db")
    engine = create_service_engine(settings)
    event_metadata.create_all(engine)
    # Another service's database in the same folder, as make run keeps them.
    neighbour = sa.create_engine(f"sqlite:///{tmp_path}/neighbour.db")
    effects_metadata.create_all(neighbour)
    commits = 3
    try:
        relay = sleepy_relay(engine, settings)
        start_loop(relay.run, "relay", after=[relay.close])
        wait_until(lambda: relay.epoch is not None, what="the relay holding the lease")
        woken = relay.wakeups["commit"]
        for number in range(1, commits + 1):
            for _ in range(20):
                with neighbour.begin() as connection:
                    connection.execute(effects.insert().values(event_id="e", value="v"))
            commit(engine, topic, [f"event {number}"])
            assert values_of(read_topic(topic, number))[-1] == f"event {number}"
        # Commits woke the relay (a commit, and the delete of what it published, at most once
        # each); the neighbour's sixty commits did not, and the safety poll had no part in it.
        assert 1 <= relay.wakeups["commit"] - woken <= 2 * commits
        assert relay.wakeups["poll"] == 0
    finally:
        engine.dispose()
        neighbour.dispose()


# -- one leader at a time, order per key


def test_a_relay_whose_lease_was_taken_while_it_published_keeps_its_batch_and_stands_by(
    settings, engine, topic, read_topic
) -> None:
    def relay(producer: Callable[[], Publisher]) -> Relay:
        return Relay(
            engine,
            producer,
            source="/wuye/coretest",
            batch_size=100,
            poll_seconds=0.01,
            lease_seconds=60,
        )

    successor = relay(lambda: Publisher(settings))

    class TakenOverMeanwhile(Publisher):
        """Kafka takes the batch; meanwhile the lease expires and the successor takes it."""

        def publish(self, records, timeout: float = 15.0) -> None:
            super().publish(records, timeout)
            with engine.begin() as connection:
                connection.execute(outbox_lease.update().values(expires_at=0.0))
            assert successor.hold_lease()

    first = relay(lambda: TakenOverMeanwhile(settings))
    commit(engine, topic, ["a", "b", "c"])
    try:
        assert first.publish_batch() == 0
        assert first.epoch is None
        assert backlog(engine) == 3  # not deleted by the relay that lost the lease
        assert successor.publish_batch() == 3
        assert backlog(engine) == 0
        assert not first.hold_lease()
    finally:
        first.close()
        successor.close()

    records = read_topic(topic, 6)
    assert values_of(records) == ["a", "b", "c"] * 2
    assert [r.headers["wuye_relay_epoch"] for r in records] == ["1"] * 3 + ["2"] * 3


class FailsOnce(Publisher):
    """Fails its `failing`-th publish after Kafka took the first half of the batch."""

    def __init__(self, settings: Settings, failing: int, publishes: list[int]) -> None:
        super().__init__(settings)
        self._failing = failing
        self._publishes = publishes

    def publish(self, records, timeout: float = 15.0) -> None:
        records = list(records)
        self._publishes.append(len(records))
        if len(self._publishes) == self._failing:
            super().publish(records[: len(records) // 2 + 1], timeout)
            raise PublishFailed("the broker went away in the middle of the batch")
        super().publish(records, timeout)


class Read(NamedTuple):
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: dict[str, str]


def read_to_the_end(settings: Settings, topic: str) -> list[Read]:
    """Every record of `topic`: a marker is produced to each partition and each partition is
    read up to it (Tansu's end offsets fall short of what it holds)."""
    partitions = sorted(
        AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
        .list_topics(topic, timeout=10)
        .topics[topic]
        .partitions
    )
    marker = uuid.uuid4().hex.encode()
    producer = ConfluentProducer({"bootstrap.servers": settings.kafka_bootstrap})
    for partition in partitions:
        producer.produce(topic, value=marker, key=marker, partition=partition)
    assert producer.flush(10) == 0
    reader = ConfluentConsumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"all-{marker.decode()}"}
    )
    reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records: list[Read] = []
    ended: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while ended != set(partitions):
            assert time.monotonic() < deadline, f"partitions {ended} of {partitions} read"
            message = reader.poll(0.5)
            if message is None or message.error() is not None:
                continue
            if message.key() == marker:
                ended.add(message.partition())
                continue
            headers = {k: (v or b"").decode() for k, v in message.headers() or ()}
            records.append(
                Read(message.partition(), message.offset(), message.key(), message.value(), headers)
            )
    finally:
        reader.close()
    return records


def first_versions_by_key(records) -> dict[bytes, list[int]]:
    """Each key's versions in the order Kafka holds them, each the first time it appears."""
    seen: dict[bytes, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        versions = seen.setdefault(record.key, [])
        version = int(record.headers["ce_sequence"])
        if version not in versions:
            versions.append(version)
    return seen


def test_concurrent_writers_and_a_failed_publish_lose_nothing_and_keep_each_keys_order(
    settings, engine, topic, start_loop, wait_until
) -> None:
    keys = ["k-0", "k-1", "k-2"]
    writers, transactions = 4, 30
    written: dict[int, list[str]] = {w: [] for w in range(writers)}  # in commit order

    def write(writer: int) -> None:
        choose = random.Random(writer)
        for n in range(transactions):
            values = [f"{writer}:{n}:{m}" for m in range(2)]
            commit(engine, topic, values, key=choose.choice(keys))
            written[writer].extend(values)

    publishes: list[int] = []
    relay = Relay(
        engine,
        lambda: FailsOnce(settings, failing=3, publishes=publishes),
        source="/wuye/coretest",
        batch_size=16,
        poll_seconds=0.01,
        lease_seconds=60,
    )
    start_loop(relay.run, "relay", after=[relay.close])
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(lambda: backlog(engine) == 0, timeout=30, what="outbox drained")
    total = writers * transactions * 2
    assert len(publishes) > 3  # the failure happened with events still to come

    records = read_to_the_end(settings, topic)
    assert len(records) > total  # at least once: the failed batch's first half went out twice
    versions = first_versions_by_key(records)
    by_key = {key.encode(): [r for r in records if r.key == key.encode()] for key in keys}
    for key, mine in by_key.items():
        distinct = {r.headers["ce_id"] for r in mine}
        assert versions[key] == list(range(1, len(distinct) + 1))  # none lost, none reordered
    assert sum(len(v) for v in versions.values()) == total
    # Each writer's events of one key have versions in the order it committed them.
    first_seen: dict[str, tuple[bytes, int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        value = values_of([record])[0]
        first_seen.setdefault(value, (record.key, int(record.headers["ce_sequence"])))
    for values in written.values():
        for key in by_key:
            mine = [first_seen[v][1] for v in values if first_seen[v][0] == key]
            assert mine == sorted(mine)

    start_consumer(start_loop, settings, engine, topic)
    wait_until(
        lambda: (
            metric("wuye_consumer_events_total", topic=topic, outcome="handled")
            + metric("wuye_consumer_events_total", topic=topic, outcome="stale")
            == len(records)
        ),
        timeout=60,
    )
    assert effect_counts(engine) == {v: 1 for values in written.values() for v in values}


# -- a relay killed mid-stream


def relay_process(settings: Settings, log: Path) -> subprocess.Popen:
    """`python -m wuye.registry relay`, as a deployment runs it, on the test's schema."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WUYE_")}
    environment.update(
        {
            "WUYE_DATABASE_URL": settings.database_url,
            "WUYE_DATABASE_SCHEMA": settings.schema,
            "WUYE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "WUYE_TOKEN_SECRET": settings.token_secret.get_secret_value(),
            "WUYE_PII_KEY": settings.pii_key.get_secret_value(),
            "WUYE_METRICS_HOST": "127.0.0.1",
            "WUYE_METRICS_PORT": "0",
            "WUYE_RELAY_BATCH_SIZE": str(settings.relay_batch_size),
            "WUYE_RELAY_LEASE_SECONDS": str(settings.relay_lease_seconds),
        }
    )
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "wuye.registry", "relay"],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )


def test_a_relay_killed_mid_stream_and_one_started_at_once_publish_all_in_order_one_at_a_time(
    make_settings, topic, tmp_path, wait_until
) -> None:
    settings = make_settings(RegistrySettings, relay_batch_size=100, relay_lease_seconds=2.0)
    upgrade(settings, REGISTRY_SPEC.migrations_dir)
    ensure_topics(settings, [topic], partitions=3)
    engine = create_service_engine(settings)
    count = 10_000
    try:
        for first in range(0, count, 1000):
            with engine.begin() as connection:
                add_events(
                    connection,
                    [
                        Event(
                            topic,
                            f"k-{n % 12}",
                            "things",
                            "150602",
                            wrappers_pb2.StringValue(value=str(n)),
                        )
                        for n in range(first, first + 1000)
                    ],
                )
        processes = [relay_process(settings, tmp_path / "first.log")]
        try:
            wait_until(
                lambda: backlog(engine) < count, timeout=30, what="the first relay publishing"
            )
            processes[0].send_signal(signal.SIGKILL)
            processes[0].wait(10)
            left = backlog(engine)
            processes.append(relay_process(settings, tmp_path / "second.log"))
            wait_until(lambda: backlog(engine) == 0, timeout=60, what="the outbox drained")
        finally:
            for process in processes:
                process.kill()
                process.wait(10)
    finally:
        engine.dispose()
    assert 0 < left < count  # killed in the middle

    records = read_to_the_end(settings, topic)
    assert {values_of([r])[0] for r in records} == {str(n) for n in range(count)}
    for key, versions in first_versions_by_key(records).items():
        assert versions == list(range(1, len(versions) + 1)), key
    # Two leaders, one after the other: in each partition, once the second's epoch appears no
    # record of the first follows.
    assert {r.headers["wuye_relay_epoch"] for r in records} == {"1", "2"}
    for partition in {r.partition for r in records}:
        epochs = [
            int(r.headers["wuye_relay_epoch"])
            for r in sorted(records, key=lambda r: r.offset)
            if r.partition == partition
        ]
        assert epochs == sorted(epochs)
