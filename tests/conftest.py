"""Fixtures shared by every test folder: the development broker (Tansu), PostgreSQL, settings
built from arguments only, a reader of Kafka topics independent of the code under test, and
bounded waits. Nothing here may block forever: every wait has a deadline.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from confluent_kafka import Consumer as ConfluentConsumer
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from sqlalchemy.engine import make_url

from wuye.core.devbroker import DevBroker
from wuye.core.settings import Settings
from wuye.core.stop import Stop

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TEST_TOKEN_SECRET = "wuye-test-token-secret-0123456789abcdef"
TEST_PII_KEY = "test-pii-key"

T = TypeVar("T")
S = TypeVar("S", bound=Settings)


# -- bounded waits


def eventually(
    condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Call `condition` until it returns a truthy value, and return that value.

    An AssertionError raised by `condition` counts as "not yet"; at the deadline the last one is
    raised again, so a failing test shows what it was waiting for.
    """
    deadline = time.monotonic() + timeout
    while True:
        failure: AssertionError | None = None
        try:
            result = condition()
        except AssertionError as e:
            failure = e
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            if failure is not None:
                raise failure
            raise AssertionError(f"still false after {timeout}s: {what or condition!r}")
        time.sleep(interval)


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """`eventually` as a fixture: wait_until(condition, timeout=10.0, interval=0.05, what="")."""
    return eventually


class LoopThread:
    """A `run(stop: threading.Event)` loop (a relay, a consumer) on a thread of its own."""

    def __init__(
        self,
        run: Callable[[threading.Event], None],
        name: str,
        after: Iterable[Callable[[], object]] = (),
    ) -> None:
        self.stop_event = Stop()
        self.error: BaseException | None = None
        self._run = run
        self._after = list(after)
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._run(self.stop_event)
        except BaseException as e:  # reported by stop(), where the test can see it
            self.error = e

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the loop, wait for it, then run the `after` callables (once)."""
        self.stop_event.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"{self._thread.name} did not stop within {timeout}s")
        after, self._after = self._after, []
        for cleanup in after:
            cleanup()
        if self.error is not None:
            raise AssertionError(f"{self._thread.name} crashed: {self.error!r}") from self.error


@pytest.fixture
def start_loop() -> Iterator[Callable[..., LoopThread]]:
    """start_loop(run, name="", after=()) -> LoopThread: runs `run(stop_event)` (a relay's, a
    consumer's) in a thread. `after`: callables run once the loop has stopped, e.g. the close of
    the producer it uses. The test may call .stop() early; every loop still running is stopped
    and joined after the test.
    """
    loops: list[LoopThread] = []

    def start(
        run: Callable[[threading.Event], None],
        name: str = "",
        after: Iterable[Callable[[], object]] = (),
    ) -> LoopThread:
        loop = LoopThread(run, name or getattr(run, "__qualname__", "loop"), after)
        loops.append(loop)
        return loop

    yield start
    errors = []
    for loop in loops:
        try:
            loop.stop()
        except Exception as e:
            errors.append(str(e))
    if errors:
        pytest.fail("; ".join(errors))


# -- Kafka


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevBroker]:
    """Tansu on a free port for the whole session; tests use `.bootstrap` and unique topics.

    `.stop()` and `.start()` restart it on the same port, but prefer `private_broker` for outage
    tests: a restarted Tansu is empty, so (1) clients of other tests lose their topics and group
    offsets, (2) an idempotent producer connected before fails for good (its epoch bump is
    refused), and (3) it acknowledges, then drops, records
    sent to a topic it no longer has by a producer that still has the topic's metadata:
    re-create topics (wuye.core.kafka.ensure_topics) before producing again.
    """
    dev = DevBroker(log=tmp_path_factory.mktemp("tansu") / "tansu.log").start()
    yield dev
    dev.stop()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[DevBroker]:
    """A Tansu of this test's own, to stop and restart without disturbing other tests' clients."""
    dev = DevBroker(log=tmp_path / "tansu.log").start()
    yield dev
    dev.stop()


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


def _partitions(consumer: ConfluentConsumer, topic: str, deadline: float) -> list[int] | None:
    """The topic's partitions, waiting for it to exist (it appears on first produce)."""
    while True:
        left = deadline - time.monotonic()
        try:
            metadata = consumer.list_topics(topic, timeout=max(0.1, min(left, 2.0)))
        except KafkaException:
            metadata = None
        found = metadata.topics.get(topic) if metadata else None
        if found is not None and found.error is None and found.partitions:
            return sorted(found.partitions)
        if left <= 0:
            return None
        time.sleep(0.1)


def read_records(
    bootstrap: str,
    topic: str,
    count: int,
    timeout: float = 20.0,
    key: bytes | None = None,
) -> list[KafkaRecord]:
    """Read `topic` from the beginning, independently of the consumer under test (no group, no
    handlers), until `count` records (of `key`, if given: other tests may share the
    topic) or `timeout` seconds; returns what was read.

    Partitions are assigned by hand: no consumer group, whose joins are slow on Tansu.
    """
    deadline = time.monotonic() + timeout
    consumer = ConfluentConsumer(
        {
            "bootstrap.servers": bootstrap,
            # Required by librdkafka, never joined: nothing subscribes and nothing commits.
            "group.id": f"wuye-tests-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "socket.connection.setup.timeout.ms": 2000,
            "reconnect.backoff.max.ms": 1000,
        }
    )
    records: list[KafkaRecord] = []
    try:
        partitions = _partitions(consumer, topic, deadline)
        if partitions is None:
            return records
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while len(records) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            message = consumer.poll(min(left, 0.5))
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            if key is not None and message.key() != key:
                continue
            records.append(
                KafkaRecord(
                    topic=message.topic(),
                    partition=message.partition(),
                    offset=message.offset(),
                    key=message.key(),
                    value=message.value(),
                    headers={
                        name: (value or b"").decode("utf-8", "replace")
                        for name, value in message.headers() or ()
                    },
                )
            )
        return records
    finally:
        consumer.close()


@pytest.fixture
def read_topic(broker: DevBroker) -> Callable[..., list[KafkaRecord]]:
    """read_topic(topic, count, timeout=20.0, bootstrap=<session broker>, key=None)."""

    def read(
        topic: str,
        count: int,
        timeout: float = 20.0,
        bootstrap: str | None = None,
        key: bytes | None = None,
    ) -> list[KafkaRecord]:
        return read_records(bootstrap or broker.bootstrap, topic, count, timeout, key)

    return read


# -- PostgreSQL


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The test PostgreSQL (trust auth); WUYE_TEST_DATABASE_URL overrides."""
    return os.environ.get("WUYE_TEST_DATABASE_URL") or DEFAULT_DATABASE_URL


@pytest.fixture(scope="session")
def _pg_admin(pg_url: str) -> Iterator[sa.Engine]:
    url = make_url(pg_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url, poolclass=sa.NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as e:
        pytest.fail(f"PostgreSQL at {url.render_as_string()} is not reachable: {e.orig}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_schema(_pg_admin: sa.Engine) -> Iterator[str]:
    """A fresh schema for this test alone (t_<hex>), dropped with everything in it afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with _pg_admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    yield name
    with _pg_admin.begin() as connection:
        # A connection the test left inside a transaction would block the drop: fail, not hang.
        connection.exec_driver_sql("SET LOCAL lock_timeout = '15s'")
        connection.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')


# -- settings


@functools.cache
def _from_arguments_only(settings_type: type[S]) -> type[S]:
    """`settings_type`, reading its arguments only: no WUYE_* variable of the developer's shell
    can change a test."""

    class FromArguments(settings_type):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, **_other_sources):
            return (init_settings,)

    FromArguments.__name__ = settings_type.__name__
    FromArguments.__qualname__ = settings_type.__qualname__
    return FromArguments


@pytest.fixture
def make_settings(pg_url: str, pg_schema: str, broker: DevBroker) -> Callable[..., Settings]:
    """make_settings(settings_type=Settings, /, **overrides) -> settings_type instance.

    Test values: token_secret, pii_key, this test's database schema, the session broker, and
    loopback addresses with port 0 (a free port) for gRPC and /metrics. Environment variables
    are ignored. The result is frozen: build another for other values.
    """

    def make(settings_type: type[S] = Settings, /, **overrides: Any) -> S:  # type: ignore[assignment]
        values: dict[str, Any] = {
            "token_secret": TEST_TOKEN_SECRET,
            "pii_key": TEST_PII_KEY,
            "database_url": pg_url,
            "database_schema": pg_schema,
            "kafka_bootstrap": broker.bootstrap,
            "grpc_host": "127.0.0.1",
            "grpc_port": 0,
            "metrics_host": "127.0.0.1",
            "metrics_port": 0,
            # chinesecalendar does not carry 2027 yet: New Year's Day (fixed by law) makes it a
            # known year, so that a deadline across the year's end is counted, not refused.
            "extra_holidays": "2027-01-01",
        }
        values.update(overrides)
        return _from_arguments_only(settings_type)(**values)

    return make


# ---------------------------------------------------------------- a phone-sized browser

# Debian's `chromium` and `chromium-driver`, driven by Selenium; screenshots of the pages go to
# `screenshots/` under pytest's basetemp, at 360x780 CSS pixels: what a reviewer looks at.
PHONE_WIDTH, PHONE_HEIGHT = 360, 780
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--lang=zh-CN",
)


def _found(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install chromium chromium-driver")
    return path


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = _found("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # The phone's viewport in CSS pixels, whatever the window decorations take.
    options.add_experimental_option(
        "mobileEmulation",
        {"deviceMetrics": {"width": PHONE_WIDTH, "height": PHONE_HEIGHT, "pixelRatio": 1.0}},
    )
    driver = webdriver.Chrome(options=options, service=Service(_found("chromedriver")))
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "screenshots"
