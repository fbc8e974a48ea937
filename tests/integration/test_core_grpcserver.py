"""The gRPC gateway over a real socket: who may call, for which district, and how errors look to
a client that knows nothing but gRPC and google.rpc."""

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from wuye.core import context
from wuye.core.auth import ROLE_RULES, Reach, Role, allow, issue_token, public
from wuye.core.errors import NotFound
from wuye.core.grpcserver import Route, ServiceDefinition, build_server
from wuye.core.settings import Settings

pytestmark = pytest.mark.integration

SERVICE = "wuye.coretest.v1.EchoService"
StringValue = wrappers_pb2.StringValue


class Echo:
    """Answers with what the gateway told it about the call."""

    def Echo(self, request: StringValue, _grpc_context) -> StringValue:
        if request.value.endswith("-boom"):
            raise ValueError("secret internal detail")
        if request.value.endswith("-missing"):
            raise NotFound("THING_NOT_FOUND", "no such thing", thing=request.value)
        call = context.current()
        return StringValue(
            value=f"{call.principal.subject}|{call.request_id}|{call.trace_id}|{request.value}"
        )

    def Stream(self, request: StringValue, _grpc_context) -> Iterator[StringValue]:
        for n in range(3):
            yield StringValue(value=f"{request.value}#{n}")


def add_to_server(servicer: Echo, server: grpc.Server) -> None:
    def unary(behavior):
        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=StringValue.FromString,
            response_serializer=StringValue.SerializeToString,
        )

    handlers = {
        "Echo": unary(servicer.Echo),
        "Public": unary(servicer.Echo),
        "Unrouted": unary(servicer.Echo),
        "Stream": grpc.unary_stream_rpc_method_handler(
            servicer.Stream,
            request_deserializer=StringValue.FromString,
            response_serializer=StringValue.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings(
        service="coretest",
        districts=("150602", "150603"),
        district_endpoint_template="coretest-{district}:50051",
        grpc_workers=4,
    )


@pytest.fixture
def channel(settings: Settings) -> Iterator[grpc.Channel]:
    definition = ServiceDefinition(
        full_name=SERVICE,
        add_to_server=add_to_server,
        servicer=Echo(),
        routes={
            "Echo": Route(allow(Role.INSPECTOR), district_field="value"),
            "Public": Route(public()),
            "Stream": Route(allow(Role.INSPECTOR), district_field="value"),
        },
    )
    server, port, _health = build_server(settings, [definition])
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(0)


def token(settings: Settings, role: Role = Role.INSPECTOR, districts=None, subject="insp-1"):
    """`districts` None: ["*"] for the roles that may act city-wide, every code for the others."""
    if districts is None and ROLE_RULES[role].reach is Reach.DISTRICTS:
        districts = sorted(settings.city_districts)
    secret = settings.token_secret.get_secret_value()
    return issue_token(secret, subject=subject, role=role, districts=districts)


def bearer(value: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {value}"),)


def echo(channel: grpc.Channel, value: str, metadata=(), method: str = "Echo") -> str:
    call = channel.unary_unary(
        f"/{SERVICE}/{method}",
        request_serializer=StringValue.SerializeToString,
        response_deserializer=StringValue.FromString,
    )
    return call(StringValue(value=value), metadata=metadata, timeout=10).value


def refusal(channel: grpc.Channel, value: str, metadata=(), method: str = "Echo"):
    """The error of a refused call, with its ErrorInfo (and BadRequest, if any)."""
    with pytest.raises(grpc.RpcError) as caught:
        echo(channel, value, metadata, method)
    error = caught.value
    status = rpc_status.from_call(error)
    assert status is not None, f"no google.rpc.Status in {error.code()} {error.details()}"
    info = error_details_pb2.ErrorInfo()
    bad_request = error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(bad_request.DESCRIPTOR):
            detail.Unpack(bad_request)
    return error, info, bad_request


def test_an_admitted_caller_reaches_the_method_with_its_ids(settings, channel) -> None:
    metadata = (
        *bearer(token(settings, districts=["150602"])),
        ("x-request-id", "req-42"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    )
    assert echo(channel, "150602-P1", metadata) == (
        "insp-1|req-42|4bf92f3577b34da6a3ce929d0e0e4736|150602-P1"
    )


def test_a_call_without_a_request_id_gets_one(settings, channel) -> None:
    answer = echo(channel, "150602-P1", bearer(token(settings)))
    request_id = answer.split("|")[1]
    assert len(request_id) == 32


def test_a_call_without_a_token_is_unauthenticated(channel) -> None:
    error, info, _ = refusal(channel, "150602-P1")
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert (info.reason, info.domain) == ("TOKEN_MISSING", "wuye.coretest")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-jwt"])
def test_a_malformed_or_forged_token_is_unauthenticated(channel, header: str) -> None:
    error, info, _ = refusal(channel, "150602-P1", (("authorization", header),))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert info.reason == "TOKEN_INVALID"


def test_a_role_the_method_does_not_admit_is_denied(settings, channel) -> None:
    error, info, _ = refusal(channel, "150602-P1", bearer(token(settings, Role.ENTERPRISE)))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert info.reason == "ROLE_NOT_ALLOWED"


def test_admin_is_admitted_to_every_routed_method(settings, channel) -> None:
    answer = echo(channel, "150603-P1", bearer(token(settings, Role.ADMIN, subject="root")))
    assert answer.startswith("root|")


def test_a_public_method_needs_no_token(channel) -> None:
    assert echo(channel, "hello", method="Public").startswith("anonymous|")


def test_a_method_without_a_route_is_denied_to_everyone(settings, channel) -> None:
    metadata = bearer(token(settings, Role.ADMIN))
    error, info, _ = refusal(channel, "150602-P1", metadata, method="Unrouted")
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert info.reason == "METHOD_NOT_ROUTED"


def test_a_district_this_instance_does_not_serve_is_refused_naming_the_one_to_call(
    settings, channel
) -> None:
    error, info, _ = refusal(channel, "150627-P1", bearer(token(settings)))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert info.reason == "DISTRICT_NOT_SERVED"
    assert "coretest-150627:50051" in error.details()
    assert dict(info.metadata) == {"district": "150627", "served": "150602,150603"}


def test_a_caller_acting_for_other_districts_is_denied(settings, channel) -> None:
    error, info, _ = refusal(channel, "150603-P1", bearer(token(settings, districts=["150602"])))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert info.reason == "DISTRICT_OUT_OF_SCOPE"


@pytest.mark.parametrize("value", ["999999-P1", "150602P1", "15060"])
def test_an_id_that_does_not_start_with_a_district_code_is_a_field_violation(
    settings, channel, value: str
) -> None:
    error, info, bad_request = refusal(channel, value, bearer(token(settings)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert info.reason == "INVALID_ARGUMENT"
    assert [v.field for v in bad_request.field_violations] == ["value"]


def test_a_domain_error_reaches_the_client_with_its_code_and_reason(settings, channel) -> None:
    error, info, _ = refusal(channel, "150602-missing", bearer(token(settings)))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert info.reason == "THING_NOT_FOUND"
    assert dict(info.metadata) == {"thing": "150602-missing"}


def test_an_unexpected_error_is_internal_and_keeps_its_detail_to_the_server(
    settings, channel
) -> None:
    metadata = (*bearer(token(settings)), ("x-request-id", "req-boom"))
    with pytest.raises(grpc.RpcError) as caught:
        echo(channel, "150602-boom", metadata)
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert "req-boom" in caught.value.details()
    assert "secret" not in caught.value.details()


def test_undecodable_request_bytes_are_invalid_argument_not_internal(settings, channel) -> None:
    raw = channel.unary_unary(f"/{SERVICE}/Echo", request_serializer=None)
    with pytest.raises(grpc.RpcError) as caught:
        raw(b"\x0a\x05ab", metadata=bearer(token(settings)), timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    info = error_details_pb2.ErrorInfo()
    rpc_status.from_call(caught.value).details[0].Unpack(info)
    assert info.reason == "MALFORMED_REQUEST"


def test_a_server_streaming_method_goes_through_the_gateway(settings, channel) -> None:
    stream = channel.unary_stream(
        f"/{SERVICE}/Stream",
        request_serializer=StringValue.SerializeToString,
        response_deserializer=StringValue.FromString,
    )
    answers = stream(StringValue(value="150602-S"), metadata=bearer(token(settings)), timeout=10)
    assert [a.value for a in answers] == ["150602-S#0", "150602-S#1", "150602-S#2"]
    with pytest.raises(grpc.RpcError) as caught:
        list(stream(StringValue(value="150602-S"), timeout=10))
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_calls_are_counted_by_method_and_code(settings, channel) -> None:
    def handled(code: str) -> float:
        labels = {"grpc_service": SERVICE, "grpc_method": "Echo", "grpc_code": code}
        return REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0

    ok, unauthenticated = handled("OK"), handled("UNAUTHENTICATED")
    echo(channel, "150602-P1", bearer(token(settings)))
    refusal(channel, "150602-P1")
    assert handled("OK") == ok + 1
    assert handled("UNAUTHENTICATED") == unauthenticated + 1


def test_health_checking_and_reflection_answer_without_a_token(channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    [answer] = list(reflection.ServerReflectionInfo(iter([request]), timeout=10))
    names = {s.name for s in answer.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names
