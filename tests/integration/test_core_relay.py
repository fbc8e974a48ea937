"""The outbox relay against real PostgreSQL and Tansu: what a transaction commits is published,
with CloudEvents headers any Kafka client reads; nothing else is; nothing waits forever."""

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from google.protobuf import wrappers_pb2
from prometheus_client import REGISTRY

from wuye.core import context
from wuye.core.auth import Principal, Role
from wuye.core.consumer import Consumer, Handler
from wuye.core.context import DistrictScope, RequestContext
from wuye.core.db import create_service_engine
from wuye.core.events import Event, add_events, event_metadata, outbox
from wuye.core.kafka import OutboxProducer, ensure_topics, make_consumer, make_producer
from wuye.core.relay import Relay
from wuye.core.service import ServiceSpec, build_relay
from wuye.core.settings import Settings

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
    dead_letters = make_producer(settings)
    consumer = Consumer(
        engine,
        make_consumer(settings, f"wuye.coretest.{uuid.uuid4().hex[:8]}", [topic]),
        dead_letters,
        name="effects",
        handlers={STRING_VALUE: Handler(wrappers_pb2.StringValue, record_effect)},
        max_attempts=3,
        inbox_retention_days=1,
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
        lambda: OutboxProducer(settings, **{"message.timeout.ms": 1500}),
        source="/wuye/coretest",
        batch_size=100,
        poll_seconds=0.01,
        lease_seconds=10.0,
        watch_seconds=0.01,
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
            lambda: OutboxProducer(settings),
            source=f"/wuye/{name}",
            batch_size=100,
            poll_seconds=0.01,
            lease_seconds=10.0,
            watch_seconds=0.01,
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
