"""What the services' integration tests share (this module holds no tests): a service's gRPC
server built in-process on a loopback socket as `python -m wuye.<service> serve` builds it,
clients that call it as one principal or another and see failures as the caller does, and the
fuzz loop every service's API must survive.

Test modules import it by module name: pytest puts tests/integration on sys.path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import grpc
import psycopg
import sqlalchemy as sa
from google.protobuf import descriptor as d
from google.protobuf import message_factory
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wuye.core.auth import ROLE_RULES, Reach, Role, issue_token
from wuye.core.consumer import EventMeta, Handler
from wuye.core.db import create_service_engine
from wuye.core.events import inbox, outbox
from wuye.core.grpcserver import ServiceDefinition, build_server
from wuye.core.migrate import upgrade
from wuye.core.service import ServiceSpec
from wuye.core.settings import Settings

CALL_TIMEOUT_SECONDS = 10.0
Metadata = tuple[tuple[str, str], ...]

# -- failures as the caller sees them


@dataclasses.dataclass(frozen=True)
class Failure:
    """A failed call, with the google.rpc details the server attached."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    # field -> description, from google.rpc.BadRequest
    violations: dict[str, str] = dataclasses.field(default_factory=dict)


def failure_of(error: grpc.RpcError) -> Failure:
    status = rpc_status.from_call(error)
    if status is None:
        return Failure(error.code(), error.details() or "")
    info = error_details_pb2.ErrorInfo()
    bad_request = error_details_pb2.BadRequest()
    reason = domain = ""
    metadata: dict[str, str] = {}
    violations: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(bad_request.DESCRIPTOR):
            detail.Unpack(bad_request)
            violations.update({v.field: v.description for v in bad_request.field_violations})
    return Failure(error.code(), status.message, reason, domain, metadata, violations)


def at_once(*calls: Callable[[], Message]) -> list[Message | Failure]:
    """Run the calls on threads released together, as racing callers; each result is the
    response or the Failure."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Message]) -> Message | Failure:
        barrier.wait()
        try:
            return call()
        except grpc.RpcError as e:
            return failure_of(e)

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


class Client:
    """Calls a service as one principal: `client.GetProject(request)` returns the response;
    `client.fails("GetProject", request)` returns the Failure (and fails the test on success)."""

    def __init__(self, stub: Any, token: str | None) -> None:
        self._stub = stub
        self.token = token
        self.metadata: Metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def __getattr__(self, method: str) -> Callable[[Message], Message]:
        rpc = getattr(self._stub, method)

        def call(request: Message) -> Message:
            return rpc(request, metadata=self.metadata, timeout=CALL_TIMEOUT_SECONDS)

        return call

    def fails(self, method: str, request: Message) -> Failure:
        try:
            response = getattr(self, method)(request)
        except grpc.RpcError as e:
            return failure_of(e)
        raise AssertionError(f"{method} succeeded, expected a failure: {response}")


# -- the server


# The district events delivered to a service's handlers come from, unless they say otherwise.
DELIVERY_DISTRICT = "150602"


class InProcessServer:
    """One running server of `spec`, with its settings and database. A service's subclass names
    its spec, stub and client classes, and may override `definitions` (e.g. to put the servicer
    on the test's clock) and add builders of its records."""

    spec: ClassVar[ServiceSpec]
    stub_class: ClassVar[Callable[[grpc.Channel], Any]]
    client_class: ClassVar[type[Client]] = Client

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_service_engine(settings)
        self.served = self.definitions()
        self.server, self.port, self.health = build_server(settings, self.served)
        for definition in self.served:
            definition.start()
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = self.stub_class(self.channel)
        self.admin = self.client(Role.ADMIN, "admin")
        self.anonymous = self.client_class(self.stub, None)

    def definitions(self) -> list[ServiceDefinition]:
        """What the server serves: the spec's, over this server's engine."""
        return self.spec.definitions(self.settings, self.engine)

    # -- other services' events, as the Consumer hands them to the handlers

    # The topic events are delivered from unless a test names another; `handlers` (by ce_type)
    # are set by a subclass whose service consumes events.
    event_topic: ClassVar[str] = ""
    handlers: dict[str, Handler]

    def deliver(self, message: Message, *, topic: str = "", event_id: str | None = None) -> str:
        """Handle one event in one transaction with its inbox row; returns its ce_id. An event
        no handler takes is ignored, as the Consumer ignores it."""
        meta = EventMeta(
            event_id=event_id or str(uuid.uuid4()),
            event_type=message.DESCRIPTOR.full_name,
            source="/wuye/registry",
            subject="",
            district=DELIVERY_DISTRICT,
            time="",
            topic=topic or self.event_topic,
            partition=0,
            offset=0,
        )
        handler = self.handlers.get(meta.event_type)
        if handler is None:
            return meta.event_id
        with self.engine.begin() as connection:
            connection.execute(
                inbox.insert().values(
                    consumer=self.spec.consumers[0].name,
                    event_id=meta.event_id,
                    processed_at=time.time(),
                )
            )
            handler.handle(connection, message, meta)
        return meta.event_id

    # -- the database, to check what was (not) stored and announced

    # The service's own event types, decoded by `outbox_events` when a test names none.
    event_types: ClassVar[tuple[type[Message], ...]] = ()

    def count(self, table: str, **where: object) -> int:
        """Rows of `table` ("outbox" or any table of the service) with the given column values."""
        t = (
            outbox
            if table == "outbox"
            else sa.Table(table, sa.MetaData(), autoload_with=self.engine)
        )
        query = sa.select(sa.func.count()).select_from(t)
        for column, value in where.items():
            query = query.where(t.c[column] == value)
        with self.engine.connect() as connection:
            return connection.execute(query).scalar_one()

    def outbox_events(self, *types: type[Message], topic: str | None = None) -> list[Message]:
        """Decoded outbox events, oldest first, of the given types (`event_types` if none), of
        `topic` if given."""
        by_name = {t.DESCRIPTOR.full_name: t for t in types or self.event_types}
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(outbox.c.topic, outbox.c.event_type, outbox.c.payload).order_by(
                    outbox.c.id
                )
            )
            return [
                by_name[row.event_type].FromString(row.payload)
                for row in rows
                if (topic is None or row.topic == topic) and row.event_type in by_name
            ]

    def close(self) -> None:
        self.channel.close()
        self.server.stop(None).wait(10)
        for definition in self.served:
            definition.stop()
        self.engine.dispose()

    # -- principals

    def token(
        self,
        role: Role,
        subject: str = "tester",
        districts: list[str] | None = None,
        ttl_seconds: int = 3600,
    ) -> str:
        """`districts` None: the whole city, as ["*"] for the roles that may act city-wide and
        as every district's code for the others."""
        if districts is None and ROLE_RULES[role].reach is Reach.DISTRICTS:
            districts = sorted(self.settings.city_districts)
        return issue_token(
            self.settings.token_secret.get_secret_value(),
            subject=subject,
            role=role,
            districts=districts,
            issuer=self.settings.token_issuer,
            ttl_seconds=ttl_seconds,
        )

    def client(
        self, role: Role, subject: str = "tester", districts: list[str] | None = None
    ) -> Client:
        return self.with_token(self.token(role, subject, districts))

    def with_token(self, token: str) -> Client:
        return self.client_class(self.stub, token)

    def authority(self, district: str = "150602") -> Client:
        return self.client(Role.DISTRICT_AUTHORITY, f"authority-{district}", [district])

    def enterprise(self, credit_code: str, district: str = "150602") -> Client:
        return self.client(Role.ENTERPRISE, credit_code, [district])


Server = TypeVar("Server", bound=InProcessServer)


# -- migrations: Alembic once per service, its statements replayed into every later schema


@dataclasses.dataclass(frozen=True)
class _Recorded:
    """What Alembic sent PostgreSQL while it migrated `schema` from nothing to head."""

    schema: str
    # (statement, parameters or None when sent without, executemany)
    statements: list[tuple[str, Any, bool]]


_recorded_migrations: dict[tuple[Path, str], _Recorded] = {}


def migrate(settings: Settings, migrations_dir: Path) -> None:
    """The schema of `settings` migrated to head, as `upgrade` leaves it.

    On PostgreSQL the first call for a service runs Alembic and records every statement it sends
    (reads included); later calls send the same statements, with the new schema's name, over one
    connection in one transaction, in about half of Alembic's time (which goes to loading and
    running every revision in Python). Tests of the migrations themselves call `upgrade`.
    """
    url = sa.make_url(settings.database_url)
    if url.get_backend_name() != "postgresql":
        upgrade(settings, migrations_dir)
        return
    key = (migrations_dir, settings.database_url)
    recorded = _recorded_migrations.get(key)
    if recorded is None:
        statements: list[tuple[str, Any, bool]] = []

        def record(_connection, _cursor, statement, parameters, context, executemany) -> None:
            # As SQLAlchemy hands it to the driver: a statement run without parameters keeps
            # its percent signs as they are.
            if not executemany and not parameters and context.no_parameters:
                parameters = None
            statements.append((statement, parameters, executemany))

        sa.event.listen(sa.Engine, "before_cursor_execute", record)
        try:
            upgrade(settings, migrations_dir)
        finally:
            sa.event.remove(sa.Engine, "before_cursor_execute", record)
        _recorded_migrations[key] = _Recorded(settings.schema, statements)
        return

    def renamed(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(recorded.schema, settings.schema)
        if isinstance(value, dict):
            return {k: renamed(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(renamed(v) for v in value)
        return value

    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with (
        psycopg.connect(conninfo, options=f"-c search_path={settings.schema}") as connection,
        connection.cursor() as cursor,
    ):
        for statement, parameters, executemany in recorded.statements:
            if executemany:
                cursor.executemany(renamed(statement), renamed(parameters))
            else:
                cursor.execute(renamed(statement), renamed(parameters))


@contextlib.contextmanager
def started_servers(
    make_settings: Callable[..., Settings], server_class: type[Server]
) -> Iterator[Callable[..., Server]]:
    """For a fixture: `start(**settings overrides) -> server` migrates the test's schema (once,
    with `migrate`) and starts a server; every one started is stopped at the end."""
    started: list[Server] = []
    migrated = False

    def start(**overrides: object) -> Server:
        nonlocal migrated
        spec = server_class.spec
        service_settings = make_settings(spec.settings_type, grpc_workers=8, **overrides)
        if not migrated:
            migrate(service_settings, spec.migrations_dir)
            migrated = True
        server = server_class(service_settings)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.close()


# -- fuzzing: random bytes and random well-typed messages of any descriptor

FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED}
FUZZ_CALL_TIMEOUT_SECONDS = 5.0
MAX_DEPTH = 4


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


_INT_RANGES = {
    d.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    d.FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    d.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    d.FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

# Strings that trip parsers and databases.
NASTY = [
    "",
    " ",
    "\x00",
    "\x7f",
    "a\x00b",
    "\n",
    "\u200b",
    "\ufeff",
    "𝕏",
    "😀" * 50,
    "'; DROP TABLE enterprises; --",
    "%s%s%n",
    "../../etc/passwd",
    "150602",
    "150602-",
    "150602-\x00",
    "150602-" + "x" * 300,
    "150699-000000000000",
    "-1",
    "9" * 40,
    "1e400",
    "NaN",
    "٨٩.٣٧",
    "0.00",
    "999999999.99",
]


def _integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = [v for v in (lo, hi, 0, 1, -1, 2**31 - 1, -(2**31), 2**63 - 1) if lo <= v <= hi]
    return st.one_of(
        st.sampled_from(edges),
        st.integers(-1000, 1000).filter(lambda v: lo <= v <= hi),
        st.integers(lo, hi),
    )


def _strings(pool: list[str], huge: bool) -> st.SearchStrategy[str]:
    utf8 = st.characters(codec="utf-8")
    choices = [
        st.sampled_from(pool),
        st.sampled_from(NASTY),
        st.text(utf8, max_size=40),
        # Valid values and district prefixes with something after them.
        st.builds(
            lambda valid, junk: valid + junk,
            st.sampled_from([*pool, "150602-", "150603-F"]),
            st.one_of(st.sampled_from(NASTY), st.text(utf8, max_size=8)),
        ),
    ]
    if huge:
        choices.append(
            st.builds(
                lambda start, ch, n: start + ch * n,
                st.sampled_from(["", "150602-", "150602-F"]),
                utf8,
                st.integers(1_000, 50_000),
            )
        )
    return st.one_of(choices)


def _scalars(field: d.FieldDescriptor, pool: list[str], huge: bool) -> st.SearchStrategy:
    t = field.type
    if t == d.FieldDescriptor.TYPE_STRING:
        return _strings(pool, huge)
    if t == d.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == d.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == d.FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), _integers(-(2**31), 2**31 - 1))
    if t == d.FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if t == d.FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if t in _INT_RANGES:
        return _integers(*_INT_RANGES[t])
    raise AssertionError(f"no strategy for field type {t} of {field.full_name}")


def messages(
    descriptor: d.Descriptor, pool: list[str], depth: int = 0, huge: bool = True
) -> st.SearchStrategy:
    """Random messages of `descriptor`: each field set (mostly) or not, to anything its type
    allows; `huge` admits strings of tens of kilobytes."""
    message_class = message_factory.GetMessageClass(descriptor)
    present = st.integers(0, 3).map(bool)

    def values(field: d.FieldDescriptor, huge: bool) -> st.SearchStrategy:
        if field.message_type is not None:
            return messages(field.message_type, pool, depth + 1, huge)
        return _scalars(field, pool, huge)

    @st.composite
    def build(draw) -> Message:
        message = message_class()
        for field in descriptor.fields:
            if not draw(present) or (field.message_type and depth >= MAX_DEPTH):
                continue
            if field.is_repeated:
                items = draw(
                    st.one_of(
                        st.lists(values(field, huge), max_size=4),
                        # Many copies of one small value: past every per-request limit.
                        st.builds(
                            lambda v, n: [v] * n, values(field, False), st.integers(50, 1200)
                        ),
                    )
                )
                getattr(message, field.name).extend(items)
            elif field.message_type is not None:
                getattr(message, field.name).CopyFrom(draw(values(field, huge)))
            else:
                setattr(message, field.name, draw(values(field, huge)))
        return message

    return build()


def fuzz_every_payload(
    server: InProcessServer,
    method: d.MethodDescriptor,
    tokens: dict[str, Metadata],
    pool: list[str],
    *,
    bytes_examples: int,
    message_examples: int,
) -> None:
    """Call `method` as each of `tokens` with an empty request, random bytes and random
    requests drawn from `pool`: none may be answered UNKNOWN, INTERNAL or not at all, and the
    server must still report itself serving."""
    service = method.containing_service
    call = server.channel.unary_unary(f"/{service.full_name}/{method.name}")
    # Above the server's message limit RESOURCE_EXHAUSTED is the right answer; below it, it
    # means the client could not read the answer (e.g. trailers too large).
    fits = server.settings.grpc_max_message_bytes

    def answer(payload: bytes, who: str) -> None:
        try:
            call(payload, metadata=tokens[who], timeout=FUZZ_CALL_TIMEOUT_SECONDS)
        except grpc.RpcError as e:
            code = e.code()
            assert code not in FORBIDDEN, f"{method.name} as {who} answered {code.name}"
            assert code != grpc.StatusCode.RESOURCE_EXHAUSTED or len(payload) > fits, (
                f"{method.name} as {who}: {len(payload)} bytes answered {code.name}: {e.details()}"
            )

    for who in tokens:
        answer(b"", who)

    @fuzz_settings(bytes_examples)
    @given(payload=st.binary(max_size=512), who=st.sampled_from(list(tokens)))
    def random_bytes(payload: bytes, who: str) -> None:
        answer(payload, who)

    @fuzz_settings(message_examples)
    @given(request=messages(method.input_type, pool), who=st.sampled_from(list(tokens)))
    def random_requests(request: Message, who: str) -> None:
        answer(request.SerializeToString(), who)

    random_bytes()
    random_requests()

    health = health_pb2_grpc.HealthStub(server.channel)
    status = health.Check(health_pb2.HealthCheckRequest(service=service.full_name), timeout=5)
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def fuzz_nearly_valid(
    rpc: Callable[[Message], Message],
    method_name: str,
    requests: st.SearchStrategy[Message],
    examples: int,
) -> Counter[str]:
    """Call `rpc` with requests valid but for a field or two: each is answered or refused,
    never UNKNOWN or INTERNAL. Returns how many got each answer ("OK" or the code's name)."""
    outcomes: Counter[str] = Counter()

    @fuzz_settings(examples)
    @given(request=requests)
    def nearly_valid(request: Message) -> None:
        try:
            rpc(request)
        except grpc.RpcError as e:
            assert e.code() not in FORBIDDEN, f"{method_name}: {e.code().name} {e.details()}"
            outcomes[e.code().name] += 1
        else:
            outcomes["OK"] += 1

    nearly_valid()
    return outcomes
