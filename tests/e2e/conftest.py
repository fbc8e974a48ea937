"""The platform as `make run` starts it: `python -m wuye run` in a subprocess, with a temporary
state dir, free ports and its own Tansu, reached only over sockets.

One platform serves every test module that uses `platform` (a start of every service costs tens
of seconds): those modules run first, and the platform is stopped after the last of them. Tests
make their own records (fresh credit codes, ids) and look only at those, so modules can share it.
A module that must have a platform of its own (it stops or breaks it, or needs other settings)
is marked `pytestmark = pytest.mark.own_platform` (or `own_platform(env={...})`); a test that
starts, restarts or kills platforms uses `launch`. Settings every platform needs for the tests,
e.g. no notice periods in a test city, go in PLATFORM_ENV.

Every platform a test starts is stopped with a signal at the end, and the stop must leave no
process behind: the launcher and every process it started (found in /proc while it ran) are gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sample_data import new_credit_code, request_id

from wuye.core.auth import Role, issue_token
from wuye.launcher import PLATFORM_FILE, read_secrets_file
from wuye.registry.v1 import registry_service_pb2 as pb
from wuye.registry.v1 import registry_service_pb2_grpc as pb_grpc

# The launcher's own limits (its migrations, then its health checks) end a slow start sooner
# than this; on a busy machine, starting every service has taken three minutes.
STARTUP_TIMEOUT_SECONDS = 240.0
# The launcher kills what has not stopped after the grace period; busy, eight services and the
# edge take longer than that to be signalled and reaped.
STOP_TIMEOUT_SECONDS = 90.0

# The environment of every platform the tests start (the shared one, a module's own, `launch`'s;
# a test's own `env` wins): a test city in which nothing waits for the calendar. A service whose
# e2e tests need a setting adds it here rather than starting a platform of its own.
PLATFORM_ENV: dict[str, str] = {
    # chinesecalendar does not carry 2027 yet: the test city lists New Year's Day (fixed by law),
    # which makes the year a known one, so that a deadline across the year's end is counted
    # rather than refused with WORKING_DAYS_UNKNOWN.
    "WUYE_EXTRA_HOLIDAYS": "2027-01-01",
    # Owners' votes open at once instead of after the 15 days' notice.
    "WUYE_VOTE_NOTICE_DAYS": "0",
    # ... and are closed when the test has voted, not after their week.
    "WUYE_VOTE_ALLOW_EARLY_CLOSE": "true",
    # Joint-meeting tasks are checked every second, so an overdue one is found at once.
    "WUYE_TASK_CHECK_SECONDS": "1",
    # A tender runs in a minute: no minimum periods, a standstill long enough to file a
    # complaint over sockets, timers that move tenders every half second.
    "WUYE_MIN_TENDERING_DAYS": "0",
    "WUYE_ENQUIRY_DAYS": "0",
    "WUYE_CHANGE_NOTICE_DAYS": "0",
    "WUYE_STANDSTILL_WORKING_DAYS": "0",
    "WUYE_STANDSTILL_SHORTEST_SECONDS": "10",
    "WUYE_TIMER_CHECK_SECONDS": "0.5",
    # The edge's public calls: a small bucket, so that its rate limit is reached in a few calls.
    "WUYE_EDGE_PUBLIC_BURST": "20",
    "WUYE_EDGE_PUBLIC_PER_SECOND": "1",
    # Events reach consumers within a quarter second instead of make run's 1.5 s: the tests
    # follow chains of them.
    "WUYE_KAFKA_FETCH_WAIT_MS": "500",
}


@dataclass(frozen=True)
class Process:
    """One process: a pid alone may be reused by another once the first one is gone."""

    pid: int
    start_ticks: int


@dataclass(frozen=True)
class _Entry:
    parent: int
    state: str
    process: Process


def _process_table() -> dict[int, _Entry]:
    table = {}
    for path in Path("/proc").iterdir():
        if not path.name.isdigit():
            continue
        try:
            stat = (path / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # "pid (command) state ppid ... starttime(22nd) ...": the command may hold spaces and ")".
        fields = stat.rpartition(")")[2].split()
        pid = int(path.name)
        table[pid] = _Entry(int(fields[1]), fields[0], Process(pid, int(fields[19])))
    return table


def descendants(pid: int) -> set[Process]:
    """Every process below `pid`, which must still be running (not yet waited for)."""
    table = _process_table()
    found: set[Process] = set()
    parents = {pid}
    while parents:
        children = {entry.process for entry in table.values() if entry.parent in parents}
        found |= children
        parents = {child.pid for child in children}
    return found


def alive(processes: set[Process]) -> set[Process]:
    """Those still running (a zombie has exited: only its exit status is left)."""
    table = _process_table()
    return {
        p
        for p in processes
        if p.pid in table and table[p.pid].process == p and table[p.pid].state != "Z"
    }


class RunningPlatform:
    def __init__(
        self,
        state_dir: Path,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.output_path = state_dir.parent / f"{state_dir.name}-launcher.out"
        # Hermetic: no WUYE_* setting of the machine (a Kafka, a database, keys) leaks in.
        launcher_env = {k: v for k, v in os.environ.items() if not k.startswith("WUYE_")}
        with self.output_path.open("wb") as output:
            self.launcher = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "wuye",
                    "run",
                    "--state-dir",
                    str(state_dir),
                    "--kafka-port",
                    "0",
                    "--grpc-port",
                    "0",
                    "--metrics-port",
                    "0",
                    *extra_args,
                ],
                env={**launcher_env, **PLATFORM_ENV, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.started: set[Process] = set()
        self.description: dict = {}
        self._channels: list[grpc.Channel] = []

    @property
    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait_until_ready(self) -> RunningPlatform:
        """The launcher writes its platform file after it printed the table: that is ready."""
        platform_file = self.state_dir / PLATFORM_FILE
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not platform_file.exists():
            if self.launcher.poll() is not None:
                pytest.fail(f"the launcher exited with {self.launcher.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                self.stop(signal.SIGTERM, check=False)
                pytest.fail(f"not ready in {STARTUP_TIMEOUT_SECONDS} s:\n{self.output}")
            time.sleep(0.05)
        self.description = json.loads(platform_file.read_text())
        self.started = descendants(self.launcher.pid)
        recorded = {p["pid"] for p in self.description["processes"]}
        assert recorded <= {p.pid for p in self.started}, "the platform file names strangers"
        return self

    # -- what it offers

    @property
    def kafka_bootstrap(self) -> str:
        return self.description["kafka_bootstrap"]

    @property
    def registry_address(self) -> str:
        return self.description["grpc"]["registry"]

    @property
    def metrics_addresses(self) -> dict[str, str]:
        return {p["name"]: p["metrics"] for p in self.description["processes"]}

    def pid_of(self, part: str) -> int:
        return next(p["pid"] for p in self.description["processes"] if p["name"] == part)

    def channel(self) -> grpc.Channel:
        channel = grpc.insecure_channel(self.registry_address)
        self._channels.append(channel)
        return channel

    def registry(self) -> pb_grpc.RegistryServiceStub:
        return pb_grpc.RegistryServiceStub(self.channel())

    def token(self, role: Role = Role.ADMIN, districts: list[str] | None = None) -> str:
        """A token signed with the key the launcher keeps in the state dir."""
        secret = read_secrets_file(self.state_dir)["WUYE_TOKEN_SECRET"]
        return issue_token(secret, subject=f"e2e-{role.value}", role=role, districts=districts)

    def auth(self, token: str | None = None) -> tuple[tuple[str, str], ...]:
        """Call metadata with a bearer token: the one given, else an admin's."""
        return (("authorization", f"Bearer {token or self.token()}"),)

    # -- stopping

    def leftovers(self) -> set[Process]:
        """The processes the launcher started that still run (the launcher must have exited)."""
        assert self.launcher.returncode is not None, "the launcher is still running"
        return alive(self.started)

    def stop(self, signum: signal.Signals = signal.SIGTERM, *, check: bool = True) -> int:
        """Signals the launcher and waits for it; with `check`, asserts a clean exit and that
        nothing it started is left. Whatever is left is killed either way."""
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        if self.launcher.poll() is None:
            self.started |= descendants(self.launcher.pid)
            self.launcher.send_signal(signum)
        try:
            code = self.launcher.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
            self.launcher.kill()
            self.launcher.wait()
        left = self.leftovers()
        for process in left:
            os.kill(process.pid, signal.SIGKILL)
        if check:
            assert code is not None, f"the launcher did not exit:\n{self.output}"
            assert not left, f"processes left behind: {sorted(left)}\n{self.output}"
            assert code == 0, f"the launcher exited with {code}:\n{self.output}"
        return self.launcher.returncode


def _own_platform_marker(item: pytest.Item) -> pytest.Mark | None:
    return item.get_closest_marker("own_platform")


def _uses_shared_platform(item: pytest.Item) -> bool:
    return "platform" in getattr(item, "fixturenames", ()) and not _own_platform_marker(item)


class _SharedPlatform:
    """The platform of every module not marked own_platform, started on first use and stopped
    (and checked) after the last test that uses it."""

    running: RunningPlatform | None = None
    # Why it did not start: the modules after the first that tried fail at once.
    failure: str = ""

    @classmethod
    def get(cls, tmp_path_factory: pytest.TempPathFactory) -> RunningPlatform:
        if cls.failure:
            pytest.fail(f"the shared platform did not start (see the first error): {cls.failure}")
        if cls.running is None:
            state_dir = tmp_path_factory.mktemp("shared-platform") / "state"
            try:
                cls.running = RunningPlatform(state_dir).wait_until_ready()
            except pytest.fail.Exception as e:
                cls.failure = str(e).splitlines()[0]
                raise
        return cls.running

    @classmethod
    def stop(cls) -> None:
        running, cls.running = cls.running, None
        if running is not None:
            running.stop(signal.SIGTERM)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "own_platform(env=None): the module's `platform` is its own, started with `env` added",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of the shared platform first, so that it is stopped before the tests that start
    platforms of their own (and before the other folders' tests run on the same cores)."""
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if here in item.path.parents]
    ordered = sorted((items[i] for i in slots), key=lambda item: not _uses_shared_platform(item))
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    result = yield
    if _SharedPlatform.running is not None and (
        nextitem is None or not _uses_shared_platform(nextitem)
    ):
        _SharedPlatform.stop()  # a failed check fails the teardown of the last test that used it
    return result


def pytest_sessionfinish() -> None:
    """A run that ended early (-x, Ctrl-C) leaves no platform behind."""
    running, _SharedPlatform.running = _SharedPlatform.running, None
    if running is not None:
        running.stop(signal.SIGTERM, check=False)


@pytest.fixture(scope="module")
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPlatform]:
    """The shared platform; in a module marked own_platform, one for the module alone. Either
    one's stop checks that SIGTERM stops it all."""
    marker = _own_platform_marker(request.node)
    if marker is None:
        shared = _SharedPlatform.get(tmp_path_factory)
        yield shared
        assert shared.launcher.poll() is None, (
            f"{request.node.name} stopped the shared platform: mark it own_platform\n"
            f"{shared.output}"
        )
        return
    state_dir = tmp_path_factory.mktemp("platform") / "state"
    running = RunningPlatform(state_dir, env=marker.kwargs.get("env")).wait_until_ready()
    yield running
    running.stop(signal.SIGTERM)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., RunningPlatform]]:
    """Starts platforms for one test (`launch(state_dir=, extra_args=, env=)`). At its end, any
    still running are stopped with SIGTERM, and checked; what an exited one left is killed."""
    platforms: list[RunningPlatform] = []

    def start(
        state_dir: Path | None = None,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> RunningPlatform:
        running = RunningPlatform(state_dir or tmp_path / f"state{len(platforms)}", extra_args, env)
        platforms.append(running)
        return running

    yield start
    for running in platforms:
        running.stop(signal.SIGTERM, check=running.launcher.poll() is None)


@pytest.fixture
def credit_code() -> str:
    """A fresh, valid unified social credit code of an enterprise in Dongsheng (150602)."""
    return new_credit_code("150602")


@pytest.fixture
def new_filing(credit_code: str) -> pb.FileEnterpriseRequest:
    return pb.FileEnterpriseRequest(
        request_id=request_id(),
        enterprise=pb.Enterprise(
            credit_code=credit_code,
            name="鄂尔多斯市测试物业服务有限公司",
            district_code="150602",
            address="东胜区天骄路 1 号",
            legal_representative="张三",
            contact_phone="13912345678",
        ),
    )
