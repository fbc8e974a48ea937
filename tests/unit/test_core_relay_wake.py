"""The SQLite relay's wake-up (inotify on the database's folder), without Kafka: a commit to its
database wakes it, writes to a neighbour database do not, and a write seen before the look is
waited out once; a stop request ends a wait at once."""

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from wuye.core.db import create_service_engine
from wuye.core.relay import FileWrites
from wuye.core.settings import Settings
from wuye.core.stop import Stop

things = sa.Table("things", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))


def sqlite_engine(path: Path) -> sa.Engine:
    engine = create_service_engine(Settings(service="waketest", database_url=f"sqlite:///{path}"))
    things.create(engine)
    return engine


def add_thing(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(things.insert())


@pytest.fixture
def engines(tmp_path: Path):
    own, neighbour = sqlite_engine(tmp_path / "own.db"), sqlite_engine(tmp_path / "other.db")
    yield own, neighbour
    own.dispose()
    neighbour.dispose()


def test_a_commit_to_its_database_wakes_the_watch_and_a_neighbours_does_not(engines) -> None:
    own, neighbour = engines
    watch, stop = FileWrites(own), Stop()
    try:
        watch.start()
        assert watch.settle()  # a commit may have been under way as the watch began
        assert not watch.settle()
        for _ in range(5):
            add_thing(neighbour)
        assert watch.wait(stop, timeout=0.01) == "poll"
        add_thing(own)
        assert watch.wait(stop, timeout=3600) == "commit"
        assert watch.settle()
        stop.set()
        assert watch.wait(stop, timeout=3600) == "stop"
    finally:
        watch.close()


def test_writes_read_before_a_look_need_no_wake_up_but_are_settled_once(engines) -> None:
    own, _ = engines
    watch, stop = FileWrites(own), Stop()
    try:
        watch.start()
        watch.settle()
        add_thing(own)  # as the relay's own lease renewal before its look
        watch.start()
        assert watch.wait(stop, timeout=0.01) == "poll"
        assert watch.settle()
        assert not watch.settle()
    finally:
        watch.close()


def test_a_stop_requested_by_another_thread_ends_a_wait_with_no_poll_due(engines) -> None:
    own, _ = engines
    watch, stop = FileWrites(own), Stop()
    try:
        watch.start()
        watch.settle()
        requester = threading.Thread(target=stop.set)
        requester.start()
        assert watch.wait(stop, timeout=3600) == "stop"
        requester.join()
    finally:
        watch.close()
