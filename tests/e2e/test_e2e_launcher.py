"""How `python -m wuye run` starts, stops and fails: signals, dying parts, busy ports, kept keys."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys

import grpc
import pytest

from wuye.core.auth import Role, issue_token
from wuye.launcher import SECRETS_FILE
from wuye.registry.v1 import registry_service_pb2 as pb

pytestmark = pytest.mark.e2e

ENV_SECRET = "a-token-secret-from-the-environment"
# What these tests prove is the launcher's, not the services': the registry alone (it calls no
# other service) starts and stops as every service does, in a fraction of the time of eight.
REGISTRY_ONLY = ("--services", "registry")


def test_sigterm_stops_every_process_it_started(launch):
    # Without the registry, whose examples the launcher prints only when it runs.
    running = launch(extra_args=("--services", "meetings")).wait_until_ready()
    assert running.started, "the launcher started no process"
    assert [p["name"] for p in running.description["processes"]] == ["meetings all"]

    running.stop(signal.SIGTERM)  # asserts exit code 0 and no process left

    assert "wuye: stopped" in running.output
    assert "export TOKEN=" in running.output and "FileEnterprise" not in running.output


def test_a_dying_part_stops_the_platform_and_is_named_with_its_log(launch):
    running = launch(extra_args=REGISTRY_ONLY).wait_until_ready()

    os.kill(running.pid_of("registry all"), signal.SIGKILL)
    code = running.launcher.wait(30)

    assert code != 0
    assert "registry all" in running.output and "was killed by SIGKILL" in running.output
    assert "registry-all.log" in running.output
    assert not running.leftovers()


def test_a_busy_port_is_refused_before_anything_starts(launch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        running = launch(extra_args=("--grpc-port", str(port), *REGISTRY_ONLY))

        code = running.launcher.wait(30)

    assert code == 1
    assert f"grpc port(s) {port}" in running.output and "--grpc-port 0" in running.output
    assert "Tansu" not in running.output
    assert not running.leftovers()


def test_ctrl_c_stops_every_process_and_keys_and_data_survive_a_restart(
    launch, tmp_path, new_filing
):
    state_dir = tmp_path / "state"
    first = launch(state_dir=state_dir, extra_args=REGISTRY_ONLY).wait_until_ready()
    assert first.started, "the launcher started no process"
    token = first.token()
    first.registry().FileEnterprise(new_filing, metadata=first.auth(token), timeout=10)
    secrets_file = state_dir / SECRETS_FILE
    keys = secrets_file.read_text()

    first.stop(signal.SIGINT)  # asserts exit code 0 and no process left

    assert "wuye: stopped" in first.output

    second = launch(state_dir=state_dir, extra_args=REGISTRY_ONLY).wait_until_ready()
    got = second.registry().GetEnterprise(
        pb.GetEnterpriseRequest(credit_code=new_filing.enterprise.credit_code),
        metadata=second.auth(token),
        timeout=10,
    )

    assert got.enterprise.credit_code == new_filing.enterprise.credit_code
    assert secrets_file.read_text() == keys
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600


def test_keys_in_the_environment_win_over_the_secrets_file(launch, credit_code):
    running = launch(extra_args=REGISTRY_ONLY, env={"WUYE_TOKEN_SECRET": ENV_SECRET})
    running.wait_until_ready()
    registry = running.registry()
    lookup = pb.GetEnterpriseRequest(credit_code=credit_code)

    with pytest.raises(grpc.RpcError) as raised:
        registry.GetEnterprise(lookup, metadata=running.auth(running.token()), timeout=10)
    env_token = issue_token(ENV_SECRET, subject="e2e", role=Role.ADMIN)
    with pytest.raises(grpc.RpcError) as not_found:
        registry.GetEnterprise(lookup, metadata=running.auth(env_token), timeout=10)

    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED, "signed with the file's key"
    assert not_found.value.code() is grpc.StatusCode.NOT_FOUND, "signed with the env's key"


def test_the_token_command_without_any_secret_says_what_to_do(tmp_path):
    issued = subprocess.run(
        [sys.executable, "-m", "wuye", "token", "--role", "admin", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("WUYE_")},
    )

    assert issued.returncode == 1
    assert "WUYE_TOKEN_SECRET" in issued.stderr and "make run" in issued.stderr
    assert issued.stdout == ""
