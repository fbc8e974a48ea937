"""The event consumer against real PostgreSQL and Tansu: each event has its effect once, offsets
are committed after the effect, and an event that cannot be handled does not stop the rest."""

import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import TopicPartition
from google.protobuf import wrappers_pb2
from kafka_support import EventProducer
from prometheus_client import REGISTRY

from wuye.core.consumer import Consumer, EventMeta, Handler
from wuye.core.db import create_service_engine
from wuye.core.events import event_metadata, inbox, inbox_versions
from wuye.core.kafka import Publisher, cloudevent_headers, consumer_config, ensure_topics
from wuye.core.settings import Settings

pytestmark = pytest.mark.integration

CONSUMER_NAME = "effects"
STRING_VALUE = wrappers_pb2.StringValue.DESCRIPTOR.full_name
INT64_VALUE = wrappers_pb2.Int64Value.DESCRIPTOR.full_name

effects_metadata = sa.MetaData()
effects = sa.Table(
    "effects",
    effects_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # Not unique on purpose: a second effect of one event must show up as a second row.
    sa.Column("event_id", sa.String(100), nullable=False),
    sa.Column("value", sa.String(200), nullable=False),
)


def record_effect(connection: sa.Connection, message, meta: EventMeta) -> None:
    connection.execute(effects.insert().values(event_id=meta.event_id, value=message.value))
    if message.value.startswith("poison"):
        raise RuntimeError("this handler cannot take it")


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings(service="coretest", consumer_max_attempts=2)


@pytest.fixture
def engine(settings: Settings) -> Iterator[sa.Engine]:
    engine = create_service_engine(settings)
    event_metadata.create_all(engine)
    effects_metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def topic(settings: Settings) -> str:
    name = f"wuye.coretest.{uuid.uuid4().hex[:12]}.v1"
    ensure_topics(settings, [name], partitions=1)
    return name


@pytest.fixture
def producer(settings: Settings) -> Iterator[EventProducer]:
    with EventProducer(settings) as producer:
        yield producer


@pytest.fixture
def group() -> str:
    return f"wuye.coretest.{uuid.uuid4().hex[:8]}"


def send(
    producer: EventProducer,
    topic: str,
    value: str | bytes,
    *,
    event_type: str = STRING_VALUE,
    event_id: str | None = None,
    key: str = "k-1",
    version: int | None = None,
) -> str:
    """Produce one event as the relay would (`version`: its version for its key, if it has
    one); returns its ce_id."""
    event_id = event_id or str(uuid.uuid4())
    payload = (
        wrappers_pb2.StringValue(value=value).SerializeToString()
        if isinstance(value, str)
        else value
    )
    headers = cloudevent_headers(
        event_id=event_id,
        event_type=event_type,
        source="/wuye/coretest",
        subject=f"things/{key}",
        time=0.0,
        district="150602",
        trace_id="",
        sequence=version,
    )
    producer.send(topic, payload, key, headers)
    return event_id


def start_consumer(
    start_loop,
    settings: Settings,
    engine: sa.Engine,
    topic: str,
    group: str,
    handle: Callable[[sa.Connection, object, EventMeta], None] = record_effect,
    kafka_type: type[KafkaConsumer] = KafkaConsumer,
):
    """The consumer `python -m wuye.coretest consume` would run, on a thread; `kafka_type`: its
    Kafka client's class (a test's sabotaged one)."""
    kafka = kafka_type(consumer_config(settings, group))
    kafka.subscribe([topic])
    dead_letters = Publisher(settings, role="dead-letters")
    consumer = Consumer(
        engine,
        kafka,
        dead_letters,
        name=CONSUMER_NAME,
        handlers={STRING_VALUE: Handler(wrappers_pb2.StringValue, handle)},
        max_attempts=settings.consumer_max_attempts,
        inbox_retention_days=settings.inbox_retention_days,
        inbox_purge_seconds=settings.inbox_purge_seconds,
    )
    return start_loop(consumer.run, f"consumer-{group}", after=[dead_letters.close])


def effect_rows(engine: sa.Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                sa.select(effects.c.event_id, effects.c.value).order_by(effects.c.id)
            )
        ]


def inbox_ids(engine: sa.Engine) -> set[str]:
    with engine.connect() as connection:
        return set(
            connection.execute(
                sa.select(inbox.c.event_id).where(inbox.c.consumer == CONSUMER_NAME)
            ).scalars()
        )


def outcomes(topic: str) -> dict[str, int]:
    found = {}
    for outcome in ("handled", "duplicate", "stale", "ignored", "dead_lettered"):
        value = REGISTRY.get_sample_value(
            "wuye_consumer_events_total", {"topic": topic, "outcome": outcome}
        )
        if value:
            found[outcome] = int(value)
    return found


def committed(settings: Settings, group: str, topic: str) -> dict[int, int | None]:
    """The group's committed offsets, as a newly started member would find them."""
    reader = KafkaConsumer(consumer_config(settings, group))
    try:
        partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
        found = reader.committed([TopicPartition(topic, p) for p in sorted(partitions)], timeout=10)
        return {tp.partition: tp.offset if tp.offset >= 0 else None for tp in found}
    finally:
        reader.close()


def test_events_are_handled_each_in_a_transaction_with_its_inbox_entry(
    settings, engine, topic, group, producer, start_loop, wait_until
) -> None:
    ids = [send(producer, topic, f"event-{n}") for n in range(3)]
    start_consumer(start_loop, settings, engine, topic, group)

    wait_until(lambda: len(effect_rows(engine)) == 3, timeout=30)
    assert effect_rows(engine) == [(i, f"event-{n}") for n, i in enumerate(ids)]
    assert inbox_ids(engine) == set(ids)
    wait_until(lambda: committed(settings, group, topic) == {0: 3})
    assert outcomes(topic) == {"handled": 3}


def test_an_event_delivered_twice_has_its_effect_once(
    settings, engine, topic, group, producer, start_loop, wait_until
) -> None:
    twice = send(producer, topic, "once")
    send(producer, topic, "once", event_id=twice)
    other = send(producer, topic, "other")
    start_consumer(start_loop, settings, engine, topic, group)

    wait_until(lambda: outcomes(topic) == {"handled": 2, "duplicate": 1}, timeout=30)
    assert effect_rows(engine) == [(twice, "once"), (other, "other")]


def test_a_restarted_consumer_resumes_from_the_committed_offsets(
    settings, engine, group, producer, start_loop, wait_until
) -> None:
    topic = f"wuye.coretest.{uuid.uuid4().hex[:12]}.v1"
    ensure_topics(settings, [topic], partitions=3)
    first = [send(producer, topic, f"first-{n}", key=f"k-{n}") for n in range(6)]
    consumer = start_consumer(start_loop, settings, engine, topic, group)
    wait_until(lambda: len(effect_rows(engine)) == 6, timeout=30)
    wait_until(lambda: sum(filter(None, committed(settings, group, topic).values())) == 6)
    consumer.stop()

    second = [send(producer, topic, f"second-{n}", key=f"k-{n}") for n in range(6)]
    start_consumer(start_loop, settings, engine, topic, group)
    wait_until(lambda: len(effect_rows(engine)) == 12, timeout=30)

    assert sorted(event_id for event_id, _ in effect_rows(engine)) == sorted(first + second)
    assert outcomes(topic) == {"handled": 12}  # no redelivery, nothing skipped


def test_events_handled_but_not_committed_before_a_crash_have_no_second_effect(
    settings, engine, topic, group, producer, start_loop, wait_until
) -> None:
    ids = [send(producer, topic, f"event-{n}") for n in range(4)]

    class CrashesBeforeCommitting(KafkaConsumer):
        def commit(self, *_args, **_kwargs) -> None:
            """The process dies before each commit."""

    crashed = start_consumer(
        start_loop, settings, engine, topic, group, kafka_type=CrashesBeforeCommitting
    )
    wait_until(lambda: len(effect_rows(engine)) == 4, timeout=30)
    crashed.stop()
    assert committed(settings, group, topic) == {0: None}

    start_consumer(start_loop, settings, engine, topic, group)
    wait_until(lambda: committed(settings, group, topic) == {0: 4}, timeout=30)
    assert outcomes(topic) == {"handled": 4, "duplicate": 4}
    assert [event_id for event_id, _ in effect_rows(engine)] == ids


def test_an_undecodable_event_goes_to_the_dead_letter_topic_and_the_rest_are_handled(
    settings, engine, topic, group, producer, start_loop, read_topic, wait_until
) -> None:
    garbled = send(producer, topic, b"\x0a\x05ab")  # a string field cut short
    after = send(producer, topic, "after")
    start_consumer(start_loop, settings, engine, topic, group)

    [dead] = read_topic(f"{topic}.dlq", 1)
    assert dead.value == b"\x0a\x05ab"
    assert dead.key == b"k-1"
    assert dead.headers["ce_id"] == garbled
    assert dead.headers["ce_type"] == STRING_VALUE
    assert "DecodeError" in dead.headers["wuye_error"]
    assert dead.headers["wuye_source_topic"] == topic
    assert dead.headers["wuye_source_partition"] == "0"
    assert dead.headers["wuye_source_offset"] == "0"
    assert dead.headers["wuye_attempts"] == "1"
    assert dead.headers["wuye_consumer"] == CONSUMER_NAME
    wait_until(lambda: effect_rows(engine) == [(after, "after")], timeout=30)
    wait_until(lambda: committed(settings, group, topic) == {0: 2})
    assert outcomes(topic) == {"dead_lettered": 1, "handled": 1}


def test_an_event_its_handler_keeps_failing_on_is_dead_lettered_after_the_last_attempt(
    settings, engine, topic, group, producer, start_loop, read_topic, wait_until
) -> None:
    poison = send(producer, topic, "poison")
    after = send(producer, topic, "after")
    start_consumer(start_loop, settings, engine, topic, group)

    [dead] = read_topic(f"{topic}.dlq", 1)
    assert dead.headers["ce_id"] == poison
    assert "RuntimeError" in dead.headers["wuye_error"]
    assert "cannot take it" in dead.headers["wuye_error"]
    assert dead.headers["wuye_attempts"] == str(settings.consumer_max_attempts)
    assert dead.headers["wuye_source_offset"] == "0"
    assert wrappers_pb2.StringValue.FromString(dead.value).value == "poison"
    wait_until(lambda: effect_rows(engine) == [(after, "after")], timeout=30)
    # The failed attempts left nothing behind: neither their effect nor an inbox entry.
    assert inbox_ids(engine) == {after}
    assert outcomes(topic) == {"dead_lettered": 1, "handled": 1}


def test_a_database_outage_is_waited_out_not_dead_lettered(
    settings, engine, topic, group, producer, start_loop, read_topic, wait_until
) -> None:
    failures = iter(range(settings.consumer_max_attempts))  # as many as would dead-letter

    def flaky(connection: sa.Connection, message, meta: EventMeta) -> None:
        if next(failures, None) is not None:
            raise sa.exc.OperationalError("INSERT ...", {}, ConnectionError("server went away"))
        record_effect(connection, message, meta)

    event = send(producer, topic, "patient")
    start_consumer(start_loop, settings, engine, topic, group, handle=flaky)

    wait_until(lambda: effect_rows(engine) == [(event, "patient")], timeout=30)
    assert outcomes(topic) == {"handled": 1}
    assert read_topic(f"{topic}.dlq", 1, timeout=0.5) == []


def test_events_without_a_handler_are_ignored_and_committed(
    settings, engine, topic, group, producer, start_loop, read_topic, wait_until
) -> None:
    unhandled = wrappers_pb2.Int64Value(value=7).SerializeToString()
    send(producer, topic, unhandled, event_type=INT64_VALUE)
    send(producer, topic, b"no type at all", event_type="")
    after = send(producer, topic, "after")
    start_consumer(start_loop, settings, engine, topic, group)

    wait_until(lambda: effect_rows(engine) == [(after, "after")], timeout=30)
    wait_until(lambda: committed(settings, group, topic) == {0: 3})
    assert outcomes(topic) == {"ignored": 2, "handled": 1}
    assert inbox_ids(engine) == {after}
    assert read_topic(f"{topic}.dlq", 1, timeout=0.5) == []


# -- versions per key


def high_water_marks(engine: sa.Engine, topic: str) -> dict[str, int]:
    with engine.connect() as connection:
        return dict(
            connection.execute(
                sa.select(inbox_versions.c.key, inbox_versions.c.version).where(
                    (inbox_versions.c.consumer == CONSUMER_NAME) & (inbox_versions.c.topic == topic)
                )
            ).all()
        )


def test_an_event_not_above_the_last_version_handled_for_its_key_is_skipped_as_stale(
    settings, engine, topic, group, producer, start_loop, wait_until
) -> None:
    first = send(producer, topic, "a1", key="a", version=1)
    third = send(producer, topic, "a3", key="a", version=3)
    send(producer, topic, "a2, replayed late", key="a", version=2)
    send(producer, topic, "a3, published again", key="a", version=3)
    other_key = send(producer, topic, "b2", key="b", version=2)  # versions of b are its own
    unnumbered = send(producer, topic, "from an older producer", key="a")
    start_consumer(start_loop, settings, engine, topic, group)

    wait_until(lambda: outcomes(topic) == {"handled": 4, "stale": 2}, timeout=30)
    assert effect_rows(engine) == [
        (first, "a1"),
        (third, "a3"),
        (other_key, "b2"),
        (unnumbered, "from an older producer"),
    ]
    assert high_water_marks(engine, topic) == {"a": 3, "b": 2}
    wait_until(lambda: committed(settings, group, topic) == {0: 6})


def test_an_event_replayed_after_the_inbox_forgot_it_is_still_recognised_by_its_version(
    settings, engine, topic, group, producer, start_loop, wait_until
) -> None:
    event = send(producer, topic, "once", version=1)
    consumer = start_consumer(start_loop, settings, engine, topic, group)
    wait_until(lambda: effect_rows(engine) == [(event, "once")], timeout=30)
    consumer.stop()
    with engine.begin() as connection:  # what housekeeping does once the retention has passed
        connection.execute(inbox.delete())

    send(producer, topic, "once", event_id=event, version=1)
    start_consumer(start_loop, settings, engine, topic, group)

    wait_until(lambda: outcomes(topic) == {"handled": 1, "stale": 1}, timeout=30)
    assert effect_rows(engine) == [(event, "once")]
