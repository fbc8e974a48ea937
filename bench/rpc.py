"""The rpc suite: GetEnterprise against PostgreSQL next to a bare grpcio echo server.

The registry server runs as production runs it (`python -m wuye.registry serve`, WUYE_*
environment, INFO logs to a file); the echo server and the load generator run as processes of
their own, and one load generator configuration measures both, so their ratio is fair.
"""

from __future__ import annotations

import base64
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench import echo_server
from bench.deployment import fresh_deployment
from bench.events import credit_code
from bench.processes import PYTHON, Children, wait_serving
from wuye.core.devbroker import free_port
from wuye.core.settings import ORDOS_DISTRICTS
from wuye.registry.api import SERVICE_NAME
from wuye.registry.v1 import registry_service_pb2 as pb
from wuye.registry.v1 import registry_service_pb2_grpc as pb_grpc

TARGET_RATIO = 0.5  # GetEnterprise QPS over echo QPS
GET_ENTERPRISE = f"/{SERVICE_NAME}/GetEnterprise"
# Well below the server's maximum_concurrent_rpcs, which would refuse a larger burst.
SEED_IN_FLIGHT = 32
# The targets take turns in slices this long (see bench.loadgen).
SLICE_SECONDS = 2.0
DATABASE_APPLICATION = "wuye-bench-registry"


@dataclass(frozen=True)
class RpcOptions:
    database_url: str
    enterprises: int
    concurrency: int
    warmup_seconds: float
    measure_seconds: float


Call = Callable[[], grpc.Future]


def _in_chunks(calls: list[Call], size: int) -> list[Any]:
    """Run futures-returning calls `size` at a time; their results in order."""
    results = []
    for start in range(0, len(calls), size):
        futures = [call() for call in calls[start : start + size]]
        results.extend(future.result() for future in futures)
    return results


def seed_enterprises(channel: grpc.Channel, token: str, count: int) -> list[str]:
    """File and approve `count` enterprises through the API; returns their credit codes."""
    registry = pb_grpc.RegistryServiceStub(channel)
    auth = (("authorization", f"Bearer {token}"),)
    districts = itertools.cycle(sorted(ORDOS_DISTRICTS))
    codes = [credit_code(next(districts), serial) for serial in range(count)]

    def file(serial: int, code: str) -> Call:
        enterprise = pb.Enterprise(
            credit_code=code,
            name=f"鄂尔多斯市第{serial}物业服务有限公司",
            district_code=code[2:8],
            address=f"{ORDOS_DISTRICTS[code[2:8]]}天骄路{serial}号",
            legal_representative="王建国",
            contact_phone=f"139{serial:08d}",
        )
        request = pb.FileEnterpriseRequest(request_id=str(uuid.uuid4()), enterprise=enterprise)
        return lambda: registry.FileEnterprise.future(request, metadata=auth, timeout=30)

    def approve(filing_id: str) -> Call:
        request = pb.ReviewFilingRequest(
            filing_id=filing_id, decision=pb.REVIEW_DECISION_APPROVE, reason="材料齐全"
        )
        return lambda: registry.ReviewFiling.future(request, metadata=auth, timeout=30)

    filed = _in_chunks([file(s, c) for s, c in enumerate(codes)], SEED_IN_FLIGHT)
    _in_chunks([approve(answer.filing.filing_id) for answer in filed], SEED_IN_FLIGHT)
    return codes


def _load(
    options: RpcOptions, codes: list[str], token: str, targets: list[dict[str, Any]]
) -> dict[str, Any]:
    """The load generator's config (see bench.loadgen.LoadConfig)."""
    slices = max(1, round(options.measure_seconds / SLICE_SECONDS))
    return {
        "targets": targets,
        "payloads": [
            base64.b64encode(pb.GetEnterpriseRequest(credit_code=c).SerializeToString()).decode()
            for c in codes
        ],
        "metadata": [["authorization", f"Bearer {token}"]],
        "concurrency": options.concurrency,
        "warmup_seconds": options.warmup_seconds,
        "slice_seconds": options.measure_seconds / slices,
        "slices": slices,
        "database_url": options.database_url.replace("+psycopg", ""),
    }


def run(options: RpcOptions, log_dir: Path) -> dict[str, Any]:
    with fresh_deployment(options.database_url) as deployment, Children(log_dir) as children:
        workers = deployment.settings().grpc_workers
        grpc_port = free_port()
        registry = children.start(
            "registry-serve",
            [PYTHON, "-m", "wuye.registry", "serve"],
            env={
                **deployment.env(grpc_port=grpc_port, metrics_port=free_port()),
                # libpq names the server's sessions, so the load generator can count their CPU.
                "PGAPPNAME": DATABASE_APPLICATION,
            },
        )
        token = deployment.admin_token()
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            wait_serving(channel, 30, "the registry server answering health checks")
            codes = seed_enterprises(channel, token, options.enterprises)
            sample = pb_grpc.RegistryServiceStub(channel).GetEnterprise(
                pb.GetEnterpriseRequest(credit_code=codes[0]),
                metadata=(("authorization", f"Bearer {token}"),),
            )
        reply_bytes = sample.ByteSize()
        echo_port = free_port()
        echo = children.start(
            "echo-server",
            [
                PYTHON,
                "-m",
                "bench.echo_server",
                f"--port={echo_port}",
                f"--reply-bytes={reply_bytes}",
                f"--workers={workers}",
            ],
        )
        targets = [
            {
                "name": "echo",
                "address": f"127.0.0.1:{echo_port}",
                "method": echo_server.METHOD,
                "server_pid": echo.pid,
            },
            {
                "name": "get_enterprise",
                "address": f"127.0.0.1:{grpc_port}",
                "method": GET_ENTERPRISE,
                "server_pid": registry.pid,
                "database_application": DATABASE_APPLICATION,
            },
        ]
        load = _load(options, codes, token, targets)
        measured = children.run_json(
            "loadgen",
            "bench.loadgen",
            load,
            timeout=2 * (options.warmup_seconds + options.measure_seconds) + 60,
        )
    echo_result, get_result = measured["echo"], measured["get_enterprise"]
    ratio = get_result["qps"] / echo_result["qps"] if echo_result["qps"] else 0.0
    return {
        "echo": echo_result,
        "get_enterprise": get_result,
        "qps_ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "passed": ratio >= TARGET_RATIO and not get_result["errors"] and not echo_result["errors"],
        "setup": {
            "enterprises": options.enterprises,
            "concurrency": options.concurrency,
            "warmup_seconds": options.warmup_seconds,
            "measure_seconds": options.measure_seconds,
            "slices": load["slices"],
            "server_workers": workers,
            "reply_bytes": reply_bytes,
        },
    }
