"""Idempotent Create-like calls (AIP-155) on real PostgreSQL: one request_id, one effect."""

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import wrappers_pb2
from pydantic import SecretStr

from wuye.core import context
from wuye.core.auth import Principal, Role
from wuye.core.context import DistrictScope, RequestContext
from wuye.core.db import create_service_engine
from wuye.core.errors import AlreadyExists
from wuye.core.events import event_metadata, idempotency_keys, run_idempotent
from wuye.core.pii import Pseudonymizer
from wuye.core.service import CORE_TIMERS
from wuye.core.settings import Settings

pytestmark = pytest.mark.integration

METHOD = "/wuye.coretest.v1.ThingService/CreateThing"
PII_KEY = SecretStr("idempotency-test-pii-key")

things_metadata = sa.MetaData()
things = sa.Table(
    "things",
    things_metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
)


@pytest.fixture
def engine(make_settings) -> Iterator[sa.Engine]:
    settings: Settings = make_settings(service="coretest")
    engine = create_service_engine(settings)
    event_metadata.create_all(engine)
    things_metadata.create_all(engine)
    yield engine
    engine.dispose()


def create_thing(engine: sa.Engine, request_id: str, name: str, before_key=None):
    """A Create command: one row, its id as the response."""

    def command(connection: sa.Connection) -> wrappers_pb2.StringValue:
        thing_id = str(uuid.uuid4())
        connection.execute(things.insert().values(id=thing_id, name=name))
        if before_key is not None:
            before_key()
        return wrappers_pb2.StringValue(value=thing_id)

    return run_idempotent(
        engine,
        pii_key=PII_KEY,
        method=METHOD,
        request_id=request_id,
        request=wrappers_pb2.StringValue(value=name),
        response_type=wrappers_pb2.StringValue,
        command=command,
    )


def thing_count(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(things)).scalar_one()


def as_caller(subject: str):
    principal = Principal(subject, Role.ENTERPRISE, None)
    scope = DistrictScope("coretest", frozenset({"150602"}), {"150602": "东胜区"})
    return context.enter(RequestContext(principal, scope, uuid.uuid4().hex, ""))


def test_a_retried_request_gets_the_first_response_and_runs_once(engine) -> None:
    first = create_thing(engine, "req-1", "boiler room")
    again = create_thing(engine, "req-1", "boiler room")
    assert again == first
    assert thing_count(engine) == 1


def test_different_request_ids_run_the_command_each(engine) -> None:
    a = create_thing(engine, "req-a", "boiler room")
    b = create_thing(engine, "req-b", "boiler room")
    assert a != b
    assert thing_count(engine) == 2


def test_a_request_id_reused_for_a_different_request_is_refused(engine) -> None:
    create_thing(engine, "req-1", "boiler room")
    with pytest.raises(AlreadyExists) as caught:
        create_thing(engine, "req-1", "bicycle shed")
    assert caught.value.reason == "REQUEST_ID_REUSED"
    assert caught.value.code is grpc.StatusCode.ALREADY_EXISTS
    assert caught.value.metadata == {"request_id": "req-1"}
    assert thing_count(engine) == 1


def test_another_caller_cannot_replay_a_request_id(engine) -> None:
    token = as_caller("91350100M000100Y43")
    try:
        create_thing(engine, "req-1", "boiler room")
    finally:
        context.leave(token)
    token = as_caller("91110000802100433B")
    try:
        with pytest.raises(AlreadyExists):
            create_thing(engine, "req-1", "boiler room")
    finally:
        context.leave(token)


def test_a_failed_command_keeps_nothing_so_its_retry_runs(engine) -> None:
    def fail() -> None:
        raise RuntimeError("the command failed after writing")

    with pytest.raises(RuntimeError):
        create_thing(engine, "req-1", "boiler room", before_key=fail)
    assert thing_count(engine) == 0
    create_thing(engine, "req-1", "boiler room")
    assert thing_count(engine) == 1


def test_concurrent_retries_of_one_request_have_one_effect_and_one_answer(engine) -> None:
    # Both calls run the command before either records the request id: the race the retry in
    # run_idempotent exists for. The loser's transaction rolls back and it returns the winner's.
    both_inside = threading.Barrier(2, timeout=10)
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda _: create_thing(engine, "req-1", "boiler room", both_inside.wait), range(2)
            )
        )
    assert answers[0] == answers[1]
    assert thing_count(engine) == 1


def stored_fingerprints(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(sa.select(idempotency_keys.c.fingerprint)))


def test_the_fingerprint_of_a_request_is_keyed_so_a_guess_cannot_be_tested(engine) -> None:
    # A request holding an ID number: with a plain hash, anyone reading the table could try
    # every number the mask leaves open.
    create_thing(engine, "req-1", "15060219850615123X")
    request = wrappers_pb2.StringValue(value="15060219850615123X").SerializeToString()
    (stored,) = stored_fingerprints(engine)
    assert stored != hashlib.sha256(b"\0" + request).hexdigest()
    assert stored == Pseudonymizer(
        PII_KEY.get_secret_value().encode(), purpose="idempotency"
    ).digest(b"\0" + request)


def age_keys(engine: sa.Engine, request_ids: list[str], days: float) -> None:
    with engine.begin() as connection:
        connection.execute(
            idempotency_keys.update()
            .where(idempotency_keys.c.request_id.in_(request_ids))
            .values(created_at=time.time() - days * 86400)
        )


def test_the_housekeeping_timer_forgets_answers_older_than_the_retention(
    engine, make_settings
) -> None:
    settings: Settings = make_settings(service="coretest", idempotency_retention_days=7)
    for request_id in ("old-1", "old-2", "recent"):
        create_thing(engine, request_id, request_id)
    age_keys(engine, ["old-1", "old-2"], days=7.5)
    age_keys(engine, ["recent"], days=6.5)

    (purge,) = [timer for timer in CORE_TIMERS if timer.name == "idempotency-keys"]
    assert purge.every_seconds(settings) == settings.idempotency_purge_seconds
    assert purge.run(settings, engine) == 2

    with engine.connect() as connection:
        kept = list(connection.scalars(sa.select(idempotency_keys.c.request_id)))
    assert kept == ["recent"]
    # Within the retention a retry is still answered from the record; after it, it runs again.
    create_thing(engine, "recent", "recent")
    create_thing(engine, "old-1", "old-1")
    assert thing_count(engine) == 4


def test_a_services_relay_process_purges_old_answers(start_registry, tmp_path, wait_until) -> None:
    registry = start_registry()
    for _ in range(2):
        registry.file_enterprise()
    with registry.engine.begin() as connection:
        ids = list(connection.scalars(sa.select(idempotency_keys.c.request_id)))
    assert len(ids) == 2
    age_keys(registry.engine, ids[:1], days=2)

    s = registry.settings
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WUYE_")}
    environment.update(
        WUYE_DATABASE_URL=s.database_url,
        WUYE_DATABASE_SCHEMA=s.schema,
        WUYE_KAFKA_BOOTSTRAP=s.kafka_bootstrap,
        WUYE_TOKEN_SECRET=s.token_secret.get_secret_value(),
        WUYE_PII_KEY=s.pii_key.get_secret_value(),
        WUYE_METRICS_HOST="127.0.0.1",
        WUYE_METRICS_PORT="0",
        WUYE_IDEMPOTENCY_RETENTION_DAYS="1",
    )
    with (tmp_path / "relay.log").open("wb") as log:
        relay = subprocess.Popen(
            [sys.executable, "-m", "wuye.registry", "relay"],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:

        def kept() -> list[str]:
            with registry.engine.connect() as connection:
                return list(connection.scalars(sa.select(idempotency_keys.c.request_id)))

        assert wait_until(lambda: kept() == ids[1:], timeout=30, what="the old answer purged")
    finally:
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(30) == 0, (tmp_path / "relay.log").read_text()
