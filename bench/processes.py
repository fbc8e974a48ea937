"""The child processes of one bench run.

Each child gets a session of its own, so a Ctrl-C in the terminal reaches only the bench, which
then stops every child it started (and the children's own children) by process group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PYTHON = sys.executable


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.05)


def wait_serving(channel: Any, timeout: float, what: str) -> None:
    """Waits until the gRPC server behind `channel` answers health checks as serving."""
    from wuye.core.grpcserver import is_serving  # here: not every child needs gRPC

    wait_until(lambda: is_serving(channel), timeout, what)


class Children:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._running: list[subprocess.Popen] = []

    def start(
        self, name: str, argv: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen:
        """A long-running child; what it prints goes to <log_dir>/<name>.log."""
        with open(self.log_dir / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self._running.append(process)
        return process

    def run_json(
        self,
        name: str,
        module: str,
        config: Mapping[str, Any],
        timeout: float,
    ) -> dict[str, Any]:
        """Run `python -m module` to completion: config as JSON on stdin, its result as JSON on
        stdout; its stderr goes to <log_dir>/<name>.log."""
        with open(self.log_dir / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                [PYTHON, "-m", module],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
            self._running.append(process)
            try:
                output, _ = process.communicate(json.dumps(config).encode(), timeout=timeout)
            finally:
                self.stop(process)
        if process.returncode != 0:
            raise RuntimeError(
                f"{module} exited with {process.returncode}; see {self.log_dir / name}.log"
            )
        return json.loads(output)

    def stop(self, process: subprocess.Popen, grace: float = 5.0) -> None:
        if process in self._running:
            self._running.remove(process)
        if process.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        for process in reversed(list(self._running)):
            self.stop(process)

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_all()
