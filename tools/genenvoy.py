"""The edge's Envoy configuration, generated from the services' declarations and the descriptors
of their protos: gRPC-JSON transcoding of every `google.api.http` annotation, gRPC-Web, CORS for
the pages' origin, a route per service (and per district where a service runs per district), a
local rate limit on the calls that need no token, active gRPC health checks of every upstream,
a request size limit, errors as google.rpc.Status JSON, and the admin's /stats/prometheus.

    python tools/genenvoy.py --upstream registry=127.0.0.1:50051 ... --out envoy.json
        the configuration `make run` starts Envoy with (the launcher calls this at start)
    python tools/genenvoy.py --chart
        charts/wuye/files/envoy.json: the same with the chart's Service names and settings as
        Helm placeholders, for the edge's ConfigMap (not committed: it follows the protos)

The services come from wuye.core.catalog, their gRPC services and routes from the generated
modules of `wuye.<service>.v1` (the descriptors protoc compiled, annotations included), which
calls need no token from `wuye.<service>.api.ROUTES`. A new service's routes appear with no
change here. Settings: WUYE_EDGE_* environment variables (EdgeSettings).
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import pkgutil
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor
from google.rpc import error_details_pb2, status_pb2
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from wuye.core.catalog import load_specs
from wuye.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CHART_CONFIG = Path("charts/wuye/files/envoy.json")
# The header a page or an integrator names its district in, where services run per district.
DISTRICT_HEADER = "x-wuye-district"
# The gRPC port of every service's pods in the chart (templates/_helpers.tpl).
CHART_GRPC_PORT = 50051


class EdgeSettings(BaseSettings):
    """What an operator may tune; the chart's values.edge holds the same."""

    model_config = SettingsConfigDict(env_prefix="WUYE_EDGE_", extra="ignore", frozen=True)

    # Origins whose pages may call the JSON and gRPC-Web routes from a browser (comma-separated
    # exact origins); the pages served by the edge itself are same-origin and need none.
    cors_origins: str = "http://127.0.0.1:8080,http://localhost:8080"
    # Calls that need no token (a disclosure, grades, published results), per route and edge
    # instance: a bucket of this many, refilled at this rate per second.
    public_burst: int = Field(default=200, ge=1)
    public_per_second: int = Field(default=100, ge=1)
    # The largest request body; larger is refused with 413 before it reaches a service.
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    # The largest JSON response the edge buffers to transcode.
    max_response_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # Active gRPC health checks of every upstream; until a first call has been routed to it,
    # once a minute (Envoy's own default), so that an idle platform is not kept awake: each
    # sparse check costs a Python server a few milliseconds of gRPC's threads waking.
    health_check_seconds: float = Field(default=5.0, gt=0)
    health_check_before_traffic_seconds: float = Field(default=60.0, gt=0)


# ---------------------------------------------------------------- what the services offer


@dataclass(frozen=True)
class GrpcService:
    service: str  # the declaration's name ("registry")
    full_name: str  # "wuye.registry.v1.RegistryService"
    http_methods: tuple[str, ...]  # methods with a google.api.http annotation
    public_methods: tuple[str, ...]  # methods that need no token
    # Methods whose requests stream: not buffered whole by the edge's size limit.
    streaming_methods: tuple[str, ...]


def _service_files(name: str) -> list[FileDescriptor]:
    """The compiled protos of `wuye.<name>.v1`."""
    try:
        package = importlib.import_module(f"wuye.{name}.v1")
    except ModuleNotFoundError:
        return []
    return [
        importlib.import_module(f"{package.__name__}.{module.name}").DESCRIPTOR
        for module in pkgutil.iter_modules(package.__path__)
        if module.name.endswith("_pb2")
    ]


def _public_methods(name: str) -> frozenset[str]:
    try:
        routes = importlib.import_module(f"wuye.{name}.api").ROUTES
    except (ModuleNotFoundError, AttributeError):
        return frozenset()
    return frozenset(method for method, route in routes.items() if route.policy.roles is None)


def _has_http_rule(method) -> bool:
    return method.GetOptions().HasExtension(annotations_pb2.http)


def offered(names: Iterable[str]) -> tuple[tuple[GrpcService, ...], list[FileDescriptor]]:
    """The gRPC services of the declared services, and the proto files they are defined in."""
    services, files = [], []
    for name in names:
        public = _public_methods(name)
        for file in _service_files(name):
            files.append(file)
            for grpc_service in file.services_by_name.values():
                services.append(_grpc_service(name, grpc_service, public))
    return tuple(services), files


def _grpc_service(name: str, service: ServiceDescriptor, public: frozenset[str]) -> GrpcService:
    methods = service.methods
    return GrpcService(
        service=name,
        full_name=service.full_name,
        http_methods=tuple(m.name for m in methods if _has_http_rule(m)),
        public_methods=tuple(m.name for m in methods if m.name in public),
        streaming_methods=tuple(m.name for m in methods if m.client_streaming),
    )


def descriptor_set(files: Iterable[FileDescriptor]) -> bytes:
    """A FileDescriptorSet of `files` and everything they import, imports first; with the
    google.rpc types, so that an error's details print as JSON."""
    ordered: dict[str, FileDescriptor] = {}

    def add(file: FileDescriptor) -> None:
        if file.name in ordered:
            return
        for dependency in file.dependencies:
            add(dependency)
        ordered[file.name] = file

    for file in [*files, error_details_pb2.DESCRIPTOR, status_pb2.DESCRIPTOR]:
        add(file)
    return descriptor_pb2.FileDescriptorSet(
        file=[
            descriptor_pb2.FileDescriptorProto.FromString(f.serialized_pb) for f in ordered.values()
        ]
    ).SerializeToString()


# ---------------------------------------------------------------- the configuration


@dataclass(frozen=True)
class Upstream:
    """Where one service's server is reached: `district` None for the instance that takes any
    district not named, else the instance serving that district."""

    service: str
    host: str
    port: int
    district: str | None = None

    @property
    def cluster(self) -> str:
        return self.service if self.district is None else f"{self.service}-{self.district}"


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    admin_port: int
    # Where the pages' static files are served (web/ in the repository): every GET the JSON
    # routes do not take.
    static_host: str
    static_port: int | str
    # The admin listens on `host`; with a metrics port, the admin is on the loopback only and
    # a listener on `host` offers its /stats/prometheus as /metrics, like every other pod.
    metrics_port: int | None = None


# gRPC codes (google.rpc.Code) of the edge's own refusals, by HTTP status, for their Status body.
_LOCAL_REPLY_CODES = {400: 3, 403: 7, 404: 5, 405: 12, 408: 4, 413: 8, 415: 3, 429: 8, 431: 8}
_TYPED = "@type"
# What a page's script may send: its token, JSON or gRPC-Web, a deadline, its district.
_REQUEST_HEADERS = (
    "authorization",
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    DISTRICT_HEADER,
)


def _typed(type_name: str, **fields) -> dict:
    return {_TYPED: f"type.googleapis.com/{type_name}", **fields}


def _socket(host: str, port: int | str) -> dict:
    return {"socket_address": {"address": host, "port_value": port}}


def _cluster(name: str, host: str, port: int | str, settings: EdgeSettings, grpc: bool) -> dict:
    cluster = {
        "name": name,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(host, port)}}]}],
        },
    }
    if grpc:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {}},
            )
        }
        cluster["health_checks"] = [
            {
                "timeout": "1s",
                "interval": f"{settings.health_check_seconds}s",
                "no_traffic_interval": f"{settings.health_check_before_traffic_seconds}s",
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "grpc_health_check": {},
            }
        ]
    return cluster


def _rate_limit(settings: EdgeSettings) -> dict:
    every = "100%"
    return _typed(
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        stat_prefix="public",
        token_bucket={
            "max_tokens": settings.public_burst,
            "tokens_per_fill": settings.public_per_second,
            "fill_interval": "1s",
        },
        filter_enabled={"default_value": {"numerator": 100}, "runtime_key": f"public_{every}"},
        filter_enforced={"default_value": {"numerator": 100}, "runtime_key": f"public_{every}"},
    )


def _service_routes(
    grpc_service: GrpcService, upstreams: list[Upstream], settings: EdgeSettings
) -> Iterator[dict]:
    """A route of its own for each method that needs no token (rate limited) or streams its
    requests (not buffered), then one for the rest; each per district where districts have
    instances of their own."""
    by_district = [u for u in upstreams if u.district is not None]
    default = next((u for u in upstreams if u.district is None), None)
    prefix = f"/{grpc_service.full_name}/"
    matches = []
    for method in dict.fromkeys(grpc_service.public_methods + grpc_service.streaming_methods):
        config = {}
        if method in grpc_service.public_methods:
            config["envoy.filters.http.local_ratelimit"] = _rate_limit(settings)
        if method in grpc_service.streaming_methods:
            config["envoy.filters.http.buffer"] = _typed(
                "envoy.extensions.filters.http.buffer.v3.BufferPerRoute", disabled=True
            )
        matches.append(({"path": prefix + method}, {"typed_per_filter_config": config}))
    matches.append(({"prefix": prefix}, {}))
    for match, extra in matches:
        for upstream in by_district:
            header = {"name": DISTRICT_HEADER, "string_match": {"exact": upstream.district}}
            yield {
                "match": {**match, "headers": [header]},
                "route": _upstream_route(upstream.cluster),
                **extra,
            }
        if default is not None:
            yield {"match": match, "route": _upstream_route(default.cluster), **extra}


def _upstream_route(cluster: str) -> dict:
    # No route timeout: WatchAlarms streams for as long as the duty desk watches; unary calls
    # carry their own deadline (grpc-timeout) where the caller sets one.
    return {"cluster": cluster, "timeout": "0s"}


def _refusal(http_status: int, message: str) -> dict:
    """A reply of the edge itself; local_reply_config gives it its Status body."""
    return {"direct_response": {"status": http_status, "body": {"inline_string": message}}}


def envoy_config(
    services: tuple[GrpcService, ...],
    descriptors: bytes,
    upstreams: list[Upstream],
    listen: Listen,
    settings: EdgeSettings,
    cors_origins: list[str] | None = None,
) -> dict:
    routes: list[dict] = []
    for grpc_service in services:
        mine = [u for u in upstreams if u.service == grpc_service.service]
        routes.extend(_service_routes(grpc_service, mine, settings))
    routes.append(
        {
            "match": {"prefix": "/v1/"},
            **_refusal(404, "no JSON route for this method and path"),
        }
    )
    reads = {"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}
    routes.append({"match": {"prefix": "/", "headers": [reads]}, "route": {"cluster": "pages"}})
    routes.append(
        {"match": {"prefix": "/"}, **_refusal(404, "nothing here for this method and path")}
    )
    origins = cors_origins if cors_origins is not None else _origins(settings.cors_origins)
    cors = _typed(
        "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        allow_origin_string_match=[{"exact": origin} for origin in origins],
        allow_methods="GET, POST, PATCH, DELETE, OPTIONS",
        allow_headers=", ".join(_REQUEST_HEADERS),
        expose_headers="grpc-status, grpc-message, grpc-status-details-bin",
        max_age="600",
    )
    transcoder = _typed(
        "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        proto_descriptor_bin=base64.b64encode(descriptors).decode(),
        services=[s.full_name for s in services if s.http_methods],
        # Proto3 JSON as any generic client prints it: lowerCamelCase names, enums by name,
        # zeros and empty strings present so that a reader never guesses a default.
        print_options={
            "add_whitespace": False,
            "always_print_primitive_fields": True,
            "always_print_enums_as_ints": False,
            "preserve_proto_field_names": False,
        },
        convert_grpc_status=True,
        max_response_body_size=settings.max_response_bytes,
        request_validation_options={
            "reject_unknown_query_parameters": True,
            "reject_binding_body_field_collisions": True,
        },
    )
    connection_manager = _typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="edge",
        codec_type="AUTO",
        route_config={
            "name": "edge",
            "virtual_hosts": [
                {
                    "name": "wuye",
                    "domains": ["*"],
                    "routes": routes,
                    "typed_per_filter_config": {"envoy.filters.http.cors": cors},
                }
            ],
        },
        http_filters=[
            # Whole requests up to the size limit, so that a larger one is refused (413) before
            # any of it reaches a service; the transcoder streams and would not refuse it.
            {
                "name": "envoy.filters.http.buffer",
                "typed_config": _typed(
                    "envoy.extensions.filters.http.buffer.v3.Buffer",
                    max_request_bytes=settings.max_request_bytes,
                ),
            },
            {
                "name": "envoy.filters.http.cors",
                "typed_config": _typed("envoy.extensions.filters.http.cors.v3.Cors"),
            },
            {
                "name": "envoy.filters.http.grpc_web",
                "typed_config": _typed("envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"),
            },
            {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": transcoder},
            {
                "name": "envoy.filters.http.local_ratelimit",
                "typed_config": _typed(
                    "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                    stat_prefix="public",
                ),
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router"),
            },
        ],
        # The edge's own refusals (malformed JSON, an oversize body, a rate limit) in the shape
        # the services' errors have: a google.rpc.Status as JSON.
        local_reply_config={
            "mappers": [_status_mapper(s, c) for s, c in _LOCAL_REPLY_CODES.items()]
        },
    )
    clusters = [_cluster(u.cluster, u.host, u.port, settings, grpc=True) for u in upstreams]
    clusters.append(_cluster("pages", listen.static_host, listen.static_port, settings, grpc=False))
    listeners = [_listener("edge", listen.host, listen.port, connection_manager)]
    admin_host = listen.host
    if listen.metrics_port is not None:
        admin_host = "127.0.0.1"
        clusters.append(_cluster("admin", admin_host, listen.admin_port, settings, grpc=False))
        listeners.append(_listener("metrics", listen.host, listen.metrics_port, _metrics_manager()))
    return {
        "admin": {"address": _socket(admin_host, listen.admin_port)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def _listener(name: str, host: str, port: int, connection_manager: dict) -> dict:
    return {
        "name": name,
        "address": _socket(host, port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": connection_manager,
                    }
                ]
            }
        ],
    }


def _metrics_manager() -> dict:
    """GET /metrics: the admin's /stats/prometheus; /ready; nothing else of the admin."""
    return _typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="metrics",
        route_config={
            "virtual_hosts": [
                {
                    "name": "metrics",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"path": "/metrics"},
                            "route": {"cluster": "admin", "prefix_rewrite": "/stats/prometheus"},
                        },
                        # For the kubelet's probes: LIVE once the upstreams' first checks ran.
                        {"match": {"path": "/ready"}, "route": {"cluster": "admin"}},
                    ],
                }
            ]
        },
        http_filters=[
            {
                "name": "envoy.filters.http.router",
                "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router"),
            }
        ],
    )


def _status_mapper(http_status: int, code: int) -> dict:
    return {
        "filter": {
            "status_code_filter": {
                "comparison": {
                    "op": "EQ",
                    "value": {"default_value": http_status, "runtime_key": f"edge_{http_status}"},
                }
            }
        },
        "body_format_override": {
            "json_format": {"code": code, "message": "%LOCAL_REPLY_BODY%", "details": []},
        },
    }


def _origins(text: str) -> list[str]:
    return [origin.strip() for origin in text.split(",") if origin.strip()]


def platform_config(
    upstreams: list[Upstream],
    listen: Listen,
    settings: EdgeSettings | None = None,
    cors_origins: list[str] | None = None,
) -> dict:
    """The edge of the declared services that have `upstreams` (a platform started with some
    services only routes to those), reaching them there."""
    reached = {u.service for u in upstreams}
    services, files = offered(spec.name for spec in load_specs() if spec.name in reached)
    return envoy_config(
        services,
        descriptor_set(files),
        upstreams,
        listen,
        settings or EdgeSettings(),
        cors_origins,
    )


def chart_text() -> str:
    """The chart's configuration, a template for Helm's `tpl` (templates/edge-configmap.yaml):
    each service at the address `hosts` names for requests naming no district (its city-wide
    Service, or where every district has an instance of its own, the first district's), and at
    its district Services for requests naming one; the edge's settings from values.edge."""
    districts = sorted(Settings().city_districts)
    upstreams = [
        Upstream(spec.name, _chart_host(cluster), CHART_GRPC_PORT, district)
        for spec in load_specs()
        for cluster, district in [
            (spec.name, None),
            *((f"{spec.name}-{code}", code) for code in districts),
        ]
    ]
    placeholders = {name: f"@@{name}@@" for name in _CHART_VALUES}
    settings = EdgeSettings.model_construct(**placeholders)
    listen = Listen(
        "0.0.0.0",
        CHART_PORTS["http"],
        CHART_PORTS["admin"],
        _chart_value("pages_host"),
        _chart_value("pages_port"),
        metrics_port=CHART_PORTS["metrics"],
    )
    config = platform_config(upstreams, listen, settings, [_chart_value("cors_origins")])
    text = json.dumps(config, ensure_ascii=False)
    for name, helm in _CHART_VALUES.items():
        text = text.replace(json.dumps(_chart_value(name)), helm)
    text = text.replace(json.dumps([{"exact": _chart_value("cors_origins")}]), _CHART_ORIGINS)
    return _HOST.sub(lambda m: '{{ index $.hosts "' + m.group(1) + '" }}', text)


# The edge's ports in the chart (templates/edge-deployment.yaml).
CHART_PORTS = {"http": 8080, "admin": 9901, "metrics": 9464}
# What values.edge sets in the chart's configuration, as Helm writes it.
_CHART_VALUES = {
    "public_burst": "{{ int $.Values.edge.publicBurst }}",
    "public_per_second": "{{ int $.Values.edge.publicPerSecond }}",
    "max_request_bytes": "{{ int $.Values.edge.maxRequestBytes }}",
    "pages_host": "{{ $.Values.edge.pages.host | toJson }}",
    "pages_port": "{{ int $.Values.edge.pages.port }}",
}
_CHART_ORIGINS = (
    "{{ $origins := list }}{{ range $.Values.edge.corsOrigins }}"
    '{{ $origins = append $origins (dict "exact" .) }}{{ end }}{{ toJson $origins }}'
)
_HOST = re.compile(r"@@host:([a-z0-9-]+)@@")


def _chart_value(name: str) -> str:
    return f"@@{name}@@"


def _chart_host(cluster: str) -> str:
    return f"@@host:{cluster}@@"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tools/genenvoy.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--chart", action="store_true", help=f"write {CHART_CONFIG}")
    parser.add_argument(
        "--upstream", action="append", default=[], metavar="SERVICE[@DISTRICT]=HOST:PORT"
    )
    parser.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    parser.add_argument("--admin-port", type=int, default=9901)
    parser.add_argument(
        "--pages", default="127.0.0.1:8081", metavar="HOST:PORT", help="the static pages' server"
    )
    parser.add_argument("--out", type=Path, help="where to write the configuration (JSON)")
    args = parser.parse_args(argv)
    if args.chart:
        (ROOT / CHART_CONFIG).write_text(chart_text())
        return 0
    if args.out is None:
        parser.error("--out is required (or --chart)")
    host, port = _address(args.listen)
    pages_host, pages_port = _address(args.pages)
    listen = Listen(host, port, args.admin_port, pages_host, pages_port)
    config = platform_config([_upstream(u) for u in args.upstream], listen)
    args.out.write_text(json.dumps(config, ensure_ascii=False, indent=1))
    return 0


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _upstream(text: str) -> Upstream:
    name, _, address = text.partition("=")
    service, _, district = name.partition("@")
    host, port = _address(address)
    return Upstream(service, host, port, district or None)


if __name__ == "__main__":
    sys.exit(main())
