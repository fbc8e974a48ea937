"""The gRPC server of every service: sync grpcio on a thread pool, health checking, reflection,
/metrics, graceful stop on SIGTERM, and one interceptor for auth, district scope, error mapping,
metrics and request logs.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message as pb_message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from wuye.core import context, metrics
from wuye.core.auth import ANONYMOUS, Policy, TokenVerifier
from wuye.core.context import DistrictScope, RequestContext
from wuye.core.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    to_grpc_status,
)
from wuye.core.logs import log
from wuye.core.settings import Settings

logger = logging.getLogger("wuye.rpc")
INTERNAL = grpc.StatusCode.INTERNAL


@dataclass(frozen=True)
class Route:
    """Who may call one RPC, and where in its request the district it acts in is found.

    `district_field` is a dotted path to a district code ("enterprise.district_code") or to an
    id that starts with one ("project_id": "150602-..."); an empty value means "no district
    named" (a list over every district in reach).
    """

    policy: Policy
    district_field: str | None = None


@dataclass(frozen=True)
class ServiceDefinition:
    full_name: str  # e.g. "wuye.registry.v1.RegistryService"
    add_to_server: Callable[[Any, grpc.Server], None]
    servicer: Any
    routes: dict[str, Route]  # by method name
    # Work the servicer does besides answering calls (background threads): started before the
    # server takes calls, stopped after it has finished them.
    start: Callable[[], None] = lambda: None
    stop: Callable[[], None] = lambda: None


def _field(message: pb_message.Message, path: str) -> str:
    value: Any = message
    for part in path.split("."):
        value = getattr(value, part)
    return value


# What follows the district code in an id ("150602-F0a1b2c3d4e5f"): ids reach SQL and error
# messages, so nothing else (no NUL, no megabytes) gets past the gateway.
_ID_TAIL = re.compile(r"[0-9A-Za-z_-]{1,64}", re.ASCII)


def district_of(request: pb_message.Message, path: str, city: dict[str, str]) -> str | None:
    value = _field(request, path)
    if not value:
        return None
    district = value[:6]
    if path.endswith("district_code"):
        known = value in city
    else:
        known = district in city and value[6:7] == "-" and bool(_ID_TAIL.fullmatch(value[7:]))
    if not known:
        what = "district code" if path.endswith("district_code") else "id"
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise InvalidArgument([FieldViolation(path, f"{shown!r} is not a known {what}")])
    return district


class Gateway(grpc.ServerInterceptor):
    """Wraps every method of our services. Health and reflection pass through untouched."""

    def __init__(
        self,
        *,
        domain: str,
        definitions: list[ServiceDefinition],
        verifier: TokenVerifier,
        scope: DistrictScope,
        slow_seconds: float,
    ) -> None:
        self._domain = domain
        self._slow_seconds = slow_seconds
        self._verifier = verifier
        self._scope = scope
        self._routes = {
            f"/{d.full_name}/{method}": route
            for d in definitions
            for method, route in d.routes.items()
        }
        self._prefixes = tuple(f"/{d.full_name}/" for d in definitions)
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}
        self._lock = threading.Lock()

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if not method.startswith(self._prefixes):
            return continuation(handler_call_details)
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = continuation(handler_call_details)
            if handler is None:
                return None
            wrapped = self._wrap(method, handler)
            with self._lock:
                self._wrapped[method] = wrapped
        return wrapped

    # -- per call

    def _call(self, route: Route, grpc_context: grpc.ServicerContext) -> RequestContext:
        """Who calls, with which ids: read from the call's metadata in one pass."""
        token = request_id = trace_id = ""
        for key, value in grpc_context.invocation_metadata():
            if key == "authorization":
                scheme, _, token = value.partition(" ")
                if scheme.lower() != "bearer" or not token:
                    raise Unauthenticated("TOKEN_INVALID", "authorization must be 'Bearer <token>'")
            elif key == "x-request-id":
                request_id = value[:64]
            elif key == "traceparent":
                # W3C trace context: version-traceid-parentid-flags
                parts = value.split("-")
                if len(parts) == 4 and len(parts[1]) == 32:
                    trace_id = parts[1]
        if token:
            principal = self._verifier.verify(token)
        elif route.policy.roles is None:
            principal = ANONYMOUS
        else:
            raise Unauthenticated("TOKEN_MISSING", "this method needs a bearer token")
        if not route.policy.admits(principal):
            raise PermissionDenied(
                "ROLE_NOT_ALLOWED",
                f"role {principal.role} may not call this method",
                role=str(principal.role),
            )
        return RequestContext(principal, self._scope, request_id or secrets.token_hex(16), trace_id)

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        route = self._routes.get(method)
        service_name, _, method_name = method[1:].rpartition("/")
        started = metrics.RPC_STARTED.labels(service_name, method_name)
        latency = metrics.RPC_LATENCY.labels(service_name, method_name)
        handled: dict[grpc.StatusCode, Any] = {}
        parse = handler.request_deserializer
        city = self._scope.city
        caller_of = self._call

        def parse_request(raw: bytes) -> pb_message.Message:
            # We parse here rather than in grpcio, which answers INTERNAL to undecodable bytes.
            try:
                return parse(raw)
            except Exception as e:
                raise InvalidArgument(
                    [FieldViolation("request", f"not a valid message: {e.__class__.__name__}")],
                    reason="MALFORMED_REQUEST",
                ) from e

        def finish(code: grpc.StatusCode, start: float, grpc_context, error: Exception | None):
            elapsed = time.perf_counter() - start
            latency.observe(elapsed)
            counter = handled.get(code)
            if counter is None:
                counter = handled[code] = metrics.RPC_HANDLED.labels(
                    service_name, method_name, code.name
                )
            counter.inc()
            # Every call is counted in the metrics; the log tells the calls someone must look
            # at (failed or slow) at INFO, and every call at DEBUG (WUYE_LOG_LEVEL=DEBUG).
            if error is not None:
                level = logging.ERROR if code is INTERNAL else logging.INFO
            else:
                level = logging.INFO if elapsed >= self._slow_seconds else logging.DEBUG
            if logger.isEnabledFor(level):
                call = context.current_or_none()
                log(
                    logger,
                    "rpc",
                    level,
                    method=method_name,
                    code=code.name,
                    duration_ms=round(elapsed * 1000, 3),
                    subject=call.principal.subject if call else None,
                    reason=error.reason if isinstance(error, DomainError) else None,
                )
            if isinstance(error, DomainError):
                grpc_context.abort_with_status(to_grpc_status(error, self._domain))
            elif error is not None:
                logger.error("unexpected error", exc_info=error)
                call = context.current_or_none()
                ref = call.request_id if call else ""
                grpc_context.abort(INTERNAL, f"internal error (request {ref})")

        def request_of(raw: bytes, call: RequestContext) -> pb_message.Message:
            request = parse_request(raw)
            if route.district_field:
                district = district_of(request, route.district_field, city)
                if district is not None and route.policy.roles is None:
                    # Public: anyone reads, whatever districts a token names (or none).
                    self._scope.check_served(district)
                elif district is not None:
                    call.require_district(district)
            return request

        class Outcome:
            """One call from start to end: counted, timed, logged, and its error (if it raised
            one) answered as a status."""

            __slots__ = ("grpc_context", "start", "token")

            def __init__(self, grpc_context: grpc.ServicerContext) -> None:
                started.inc()
                self.grpc_context = grpc_context
                self.start = time.perf_counter()
                self.token = None

            def __enter__(self) -> Outcome:
                return self

            def admit(self) -> RequestContext:
                """The caller, checked against the route, as the call's context from now on."""
                if route is None:
                    raise PermissionDenied(
                        "METHOD_NOT_ROUTED", f"{method_name} has no access policy"
                    )
                caller = caller_of(route, self.grpc_context)
                self.token = context.enter(caller)
                return caller

            def __exit__(self, kind, error, _traceback) -> bool:
                if kind is None:
                    code = grpc.StatusCode.OK
                elif kind is GeneratorExit:  # a stream whose caller went away
                    code, error = grpc.StatusCode.CANCELLED, None
                elif issubclass(kind, DomainError):
                    code = error.code
                elif issubclass(kind, Exception):
                    code = INTERNAL
                else:
                    return False
                try:
                    finish(code, self.start, self.grpc_context, error)
                finally:
                    if self.token is not None:
                        context.leave(self.token)
                # Not suppressed: an error was answered by aborting, which raises; a closed
                # stream goes on closing.
                return False

        def run(behavior, raw: bytes, grpc_context: grpc.ServicerContext):
            with Outcome(grpc_context) as call:
                return behavior(request_of(raw, call.admit()), grpc_context)

        def run_stream(behavior, request_for, grpc_context: grpc.ServicerContext):
            """A call whose responses stream: sent as the handler yields them.
            `request_for(caller)` is what the handler gets: a request, or an iterator of them."""
            with Outcome(grpc_context) as call:
                yield from behavior(request_for(call.admit()), grpc_context)

        if handler.unary_unary:
            inner = handler.unary_unary
            return grpc.unary_unary_rpc_method_handler(
                lambda raw, ctx: run(inner, raw, ctx),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream
            return grpc.unary_stream_rpc_method_handler(
                lambda raw, ctx: run_stream(
                    inner_stream, lambda caller: request_of(raw, caller), ctx
                ),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            inner_bidi = handler.stream_stream
            return grpc.stream_stream_rpc_method_handler(
                lambda requests, ctx: run_stream(
                    inner_bidi, lambda _caller: map(parse_request, requests), ctx
                ),
                response_serializer=handler.response_serializer,
            )
        raise NotImplementedError(f"{method}: client-streaming methods are not routed yet")


def is_serving(channel: grpc.Channel) -> bool:
    """Whether the server behind `channel` answers its health check with SERVING."""
    try:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=1.0
        )
    except grpc.RpcError:
        return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def district_scope(settings: Settings) -> DistrictScope:
    return DistrictScope(
        service=settings.service,
        served=settings.served_districts,
        city=dict(settings.city_districts),
        endpoint_template=settings.district_endpoint_template,
    )


def build_server(
    settings: Settings, definitions: list[ServiceDefinition]
) -> tuple[grpc.Server, int, health.HealthServicer]:
    scope = district_scope(settings)
    gateway = Gateway(
        domain=f"wuye.{settings.service}",
        definitions=definitions,
        verifier=TokenVerifier(
            settings.token_secret.get_secret_value(),
            settings.token_issuer,
            previous_secret=settings.token_previous_secret.get_secret_value(),
        ),
        scope=scope,
        slow_seconds=settings.rpc_slow_seconds,
    )
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.grpc_workers, thread_name_prefix="rpc"),
        interceptors=[gateway],
        options=[
            ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
            ("grpc.so_reuseport", 0),
            # Other services' clients (wuye.core.client) ping every 10 s or more while a call is
            # in flight; by default a ping more often than every 5 minutes would end the call.
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ],
        maximum_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for definition in definitions:
        definition.add_to_server(definition.servicer, server)
    names = [d.full_name for d in definitions]
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    if port == 0:
        raise RuntimeError(f"cannot listen on {settings.grpc_host}:{settings.grpc_port}")
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer


def serve(
    settings: Settings, definitions: list[ServiceDefinition], stop: threading.Event
) -> None:
    """Run until `stop` is set (the process's SIGTERM or SIGINT, or a part beside the server
    that failed), then stop taking calls and let running ones finish. The caller's thread
    sleeps on `stop` meanwhile, rather than in grpcio's wait_for_termination, which wakes ten
    times a second."""
    server, port, health_servicer = build_server(settings, definitions)
    metrics_port = metrics.serve_metrics(settings.metrics_host, settings.metrics_port)
    for definition in definitions:
        definition.start()
    server.start()
    log(
        logging.getLogger("wuye"),
        "serving",
        service=settings.service,
        grpc_port=port,
        metrics_port=metrics_port,
        districts=",".join(sorted(settings.served_districts)),
    )
    stop.wait()
    health_servicer.enter_graceful_shutdown()
    server.stop(settings.shutdown_grace_seconds).wait()
    for definition in definitions:
        definition.stop()
