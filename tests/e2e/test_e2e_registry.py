"""The registry as a client meets it: gRPC over a real socket, its events on Kafka, its metrics,
and the instructions the launcher prints."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from e2e_support import read_events
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from wuye.core.ids import CREDIT_CODE_ALPHABET
from wuye.registry.v1 import events_pb2
from wuye.registry.v1 import registry_service_pb2 as pb

pytestmark = pytest.mark.e2e

ENTERPRISE_TOPIC = "wuye.registry.enterprise.v1"


def test_a_filed_enterprise_reads_back_pending_with_its_phone_masked(platform, new_filing):
    registry = platform.registry()

    filed = registry.FileEnterprise(new_filing, metadata=platform.auth(), timeout=10)
    got = registry.GetEnterprise(
        pb.GetEnterpriseRequest(credit_code=new_filing.enterprise.credit_code),
        metadata=platform.auth(),
        timeout=10,
    )

    assert filed.filing.kind == pb.FILING_KIND_INITIAL
    assert got.enterprise.credit_code == new_filing.enterprise.credit_code
    assert got.enterprise.name == new_filing.enterprise.name
    assert got.enterprise.status == pb.ENTERPRISE_STATUS_PENDING
    assert got.enterprise.contact_phone == "139****5678"


def test_a_wrong_check_character_is_invalid_argument_naming_the_credit_code(platform, new_filing):
    right = new_filing.enterprise.credit_code
    new_filing.enterprise.credit_code = right[:17] + next(
        ch for ch in CREDIT_CODE_ALPHABET if ch != right[17]
    )

    with pytest.raises(grpc.RpcError) as raised:
        platform.registry().FileEnterprise(new_filing, metadata=platform.auth(), timeout=10)

    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(raised.value)
    assert status is not None, "the error carries no google.rpc.Status details"
    bad_request = error_details_pb2.BadRequest()
    fields = [
        violation.field
        for detail in status.details
        if detail.Unpack(bad_request)
        for violation in bad_request.field_violations
    ]
    assert "enterprise.credit_code" in fields


def test_a_call_without_token_is_unauthenticated(platform, credit_code):
    with pytest.raises(grpc.RpcError) as raised:
        platform.registry().GetEnterprise(
            pb.GetEnterpriseRequest(credit_code=credit_code), timeout=10
        )

    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_server_reflection_lists_the_registry_service(platform):
    reflection = reflection_pb2_grpc.ServerReflectionStub(platform.channel())

    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )

    names = {s.name for r in responses for s in r.list_services_response.service}
    assert "wuye.registry.v1.RegistryService" in names
    assert "grpc.health.v1.Health" in names


def test_a_filing_reaches_kafka_as_a_cloudevent_any_client_can_read(platform, new_filing):
    platform.registry().FileEnterprise(new_filing, metadata=platform.auth(), timeout=10)
    credit_code = new_filing.enterprise.credit_code.encode()
    # A reader independent of the services' consumers.
    [record] = read_events(
        platform.kafka_bootstrap,
        ENTERPRISE_TOPIC,
        lambda message: message if message.key() == credit_code else None,
        1,
    )
    headers = dict(record.headers())
    assert headers["ce_type"] == b"wuye.registry.v1.EnterpriseFiled"
    assert headers["content-type"] == b"application/protobuf"
    event = events_pb2.EnterpriseFiled.FromString(record.value())
    assert event.credit_code == new_filing.enterprise.credit_code
    assert event.district_code == "150602"


def test_every_metrics_endpoint_answers_and_passes_promtool(platform, new_filing):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool is not on PATH: install Debian's `prometheus` package "
            "(apt-get install prometheus), as CI does"
        )
    # Some traffic first, so the RPC metrics have samples to check.
    platform.registry().FileEnterprise(new_filing, metadata=platform.auth(), timeout=10)

    for part, address in platform.metrics_addresses.items():
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
            assert response.status == 200, part
            exposition = response.read()
        check = subprocess.run(
            [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30
        )
        assert check.returncode == 0, (
            f"{part} at {address}: {check.stdout.decode()}{check.stderr.decode()}"
        )


def test_the_token_command_signs_tokens_the_services_accept(platform, new_filing):
    issued = subprocess.run(
        [
            sys.executable,
            "-m",
            "wuye",
            "token",
            "--role",
            "district_authority",
            "--district",
            "150602",
            "--state-dir",
            str(platform.state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        # The secret must come from the state dir, as it does on a newcomer's machine.
        env={k: v for k, v in os.environ.items() if not k.startswith("WUYE_")},
    )
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()

    filed = platform.registry().FileEnterprise(
        new_filing, metadata=platform.auth(token), timeout=10
    )

    assert filed.enterprise.credit_code == new_filing.enterprise.credit_code


def test_the_printed_table_and_example_work_as_shown(platform):
    output = platform.output
    registry = platform.registry_address
    headers = [line for line in output.splitlines() if line.startswith("service ")]
    assert len(headers) == 1, "one table, printed once"
    table_row = next(line for line in output.splitlines() if line.startswith("registry "))
    assert registry in table_row and platform.kafka_bootstrap in table_row
    token = re.search(r"export TOKEN=(\S+)", output).group(1)
    examples = re.findall(
        rf"grpcurl .* -d '(.*)' {re.escape(registry)} wuye\.registry\.v1\.RegistryService/(\w+)",
        output,
    )
    assert [method for _, method in examples] == ["FileEnterprise", "GetEnterprise"]

    # What grpcurl would send: the same JSON, mapped by the protobuf JSON rules.
    registry_stub = platform.registry()
    filing, lookup = (body for body, _ in examples)
    filed = registry_stub.FileEnterprise(
        json_format.Parse(filing, pb.FileEnterpriseRequest()),
        metadata=platform.auth(token),
        timeout=10,
    )
    got = registry_stub.GetEnterprise(
        json_format.Parse(lookup, pb.GetEnterpriseRequest()),
        metadata=platform.auth(token),
        timeout=10,
    )
    assert got.enterprise.credit_code == filed.enterprise.credit_code


def test_every_part_logs_json_lines_to_its_own_file(platform):
    for process in platform.description["processes"]:
        log = Path(process["log"])
        assert log.name == process["name"].replace(" ", "-") + ".log"
        first = log.read_text().splitlines()[0]
        assert json.loads(first)["service"] == process["name"].split()[0]
