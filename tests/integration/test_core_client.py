"""Calls between services through wuye.core.client, over real sockets: the caller's own token,
retries while the target is UNAVAILABLE, deadlines, and the client metrics."""

import socket
import threading
from concurrent import futures

import grpc
import jwt
import pytest
from google.protobuf.wrappers_pb2 import StringValue
from prometheus_client import REGISTRY

from wuye.core import context
from wuye.core.auth import Principal, Role
from wuye.core.client import ServiceClients
from wuye.core.context import DistrictScope, RequestContext
from wuye.registry.v1 import registry_service_pb2 as pb
from wuye.registry.v1 import registry_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

TEST_SERVICE = "wuye.coretest.v1.CallService"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def handled(method: str, code: str, service: str = TEST_SERVICE) -> float:
    labels = {"grpc_type": "unary", "grpc_service": service, "grpc_method": method}
    return (
        REGISTRY.get_sample_value("grpc_client_handled_total", {**labels, "grpc_code": code}) or 0
    )


class CallServer:
    """A bare gRPC server whose methods show what a call brought and how often it was tried."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}
        self.metadata: dict[str, str] = {}
        self.cancelled = threading.Event()
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=StringValue.FromString,
                response_serializer=StringValue.SerializeToString,
            )
            for name, behaviour in {
                "Echo": self._echo,
                "Flaky": self._flaky,
                "Refuse": self._refuse,
                "Hang": self._hang,
            }.items()
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        self.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(TEST_SERVICE, handlers)]
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _count(self, name: str) -> int:
        self.attempts[name] = self.attempts.get(name, 0) + 1
        return self.attempts[name]

    def _echo(self, request: StringValue, context) -> StringValue:
        self._count("Echo")
        self.metadata = dict(context.invocation_metadata())
        return request

    def _flaky(self, request: StringValue, context) -> StringValue:
        if self._count("Flaky") < 3:
            context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        return request

    def _refuse(self, request: StringValue, context) -> StringValue:
        self._count("Refuse")
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "a state that forbids it")

    def _hang(self, request: StringValue, context) -> StringValue:
        self._count("Hang")
        context.add_callback(self.cancelled.set)
        self.cancelled.wait(30)
        return request


@pytest.fixture
def call_server():
    server = CallServer()
    yield server
    server.server.stop(None)


@pytest.fixture
def clients_of(make_settings):
    made: list[ServiceClients] = []

    def make(**overrides) -> ServiceClients:
        settings = make_settings(service="tenders", **overrides)
        clients = ServiceClients(settings)
        made.append(clients)
        return clients

    yield make
    for clients in made:
        clients.close()


def call(clients: ServiceClients, port: int, method: str, value: str = "x", timeout=None) -> str:
    stub = clients.channel(f"127.0.0.1:{port}").unary_unary(
        f"/{TEST_SERVICE}/{method}",
        request_serializer=StringValue.SerializeToString,
        response_deserializer=StringValue.FromString,
    )
    return stub(StringValue(value=value), timeout=timeout).value


def test_a_call_carries_the_services_own_token_and_the_ids_of_the_call_it_serves(
    clients_of, call_server
) -> None:
    clients = clients_of(districts=("150603", "150602"))
    serving = RequestContext(
        Principal("someone", Role.ADMIN, None),
        DistrictScope("tenders", frozenset({"150602"}), {}),
        "req-abc",
        TRACE_ID,
    )
    token = context.enter(serving)
    try:
        assert call(clients, call_server.port, "Echo", "hello") == "hello"
    finally:
        context.leave(token)

    sent = call_server.metadata
    scheme, _, bearer = sent["authorization"].partition(" ")
    claims = jwt.decode(bearer, options={"verify_signature": False})
    assert scheme == "Bearer"
    assert (claims["sub"], claims["role"], claims["districts"]) == (
        "tenders",
        "service",
        ["150602", "150603"],
    )
    assert claims["exp"] - claims["iat"] == clients._settings.client_token_ttl_seconds
    assert sent["x-request-id"] == "req-abc"
    assert sent["traceparent"].split("-")[1] == TRACE_ID


def test_a_city_wide_service_signs_a_city_wide_token(clients_of, call_server) -> None:
    call(clients_of(), call_server.port, "Echo")
    bearer = call_server.metadata["authorization"].partition(" ")[2]
    assert jwt.decode(bearer, options={"verify_signature": False})["districts"] == ["*"]


def test_unavailable_is_retried_and_other_codes_are_answers(clients_of, call_server) -> None:
    clients = clients_of()
    ok_before = handled("Flaky", "OK")
    assert call(clients, call_server.port, "Flaky", "third time") == "third time"
    assert call_server.attempts["Flaky"] == 3
    assert handled("Flaky", "OK") == ok_before + 1

    refused_before = handled("Refuse", "FAILED_PRECONDITION")
    with pytest.raises(grpc.RpcError) as refused:
        call(clients, call_server.port, "Refuse")
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert call_server.attempts["Refuse"] == 1
    assert handled("Refuse", "FAILED_PRECONDITION") == refused_before + 1


def test_a_call_gets_the_default_deadline_and_the_target_sees_it_end(
    clients_of, call_server, wait_until
) -> None:
    clients = clients_of(client_timeout_seconds=0.3)
    before = handled("Hang", "DEADLINE_EXCEEDED")
    with pytest.raises(grpc.RpcError) as late:
        call(clients, call_server.port, "Hang")
    assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(call_server.cancelled.is_set, what="the target's call ended at the deadline")
    assert call_server.attempts["Hang"] == 1
    assert handled("Hang", "DEADLINE_EXCEEDED") == before + 1


def test_the_registry_answers_a_service_as_a_service(clients_of, start_registry) -> None:
    registry = start_registry()
    filed = registry.file_enterprise().enterprise
    clients = clients_of(service_endpoints={"registry": f"127.0.0.1:{registry.port}"})
    stub = clients.stub("registry", pb_grpc.RegistryServiceStub)

    got = stub.GetEnterprise(pb.GetEnterpriseRequest(credit_code=filed.credit_code)).enterprise
    assert got.credit_code == filed.credit_code
    with pytest.raises(grpc.RpcError) as refused:
        stub.FileEnterprise(pb.FileEnterpriseRequest(request_id="r", enterprise=filed))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "role service" in refused.value.details()
    assert handled("GetEnterprise", "OK", "wuye.registry.v1.RegistryService") >= 1


def test_a_call_made_before_the_target_is_up_is_answered_once_it_is(
    clients_of, start_registry
) -> None:
    # The port is held by a socket that takes the first connection and drops it: the client has
    # certainly tried, and failed, before the registry starts there.
    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    clients = clients_of(
        service_endpoints={"registry": f"127.0.0.1:{port}"}, client_timeout_seconds=20
    )
    stub = clients.stub("registry", pb_grpc.RegistryServiceStub)
    with futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(stub.GetEnterprise, pb.GetEnterpriseRequest(credit_code="x" * 18))
        holder.settimeout(20)
        connection, _ = holder.accept()
        connection.close()
        holder.close()
        start_registry(grpc_port=port)
        with pytest.raises(grpc.RpcError) as answered:
            answer.result(timeout=30)
    # An answer from the registry itself: the credit code is checked, not the connection.
    assert answered.value.code() is grpc.StatusCode.INVALID_ARGUMENT
