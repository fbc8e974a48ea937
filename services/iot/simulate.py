"""`python -m wuye.iot.simulate`: smart-community gateways feeding the IoT intake of a platform
started with `make run`, for a newcomer to watch readings flow and alarms come and go.

It reads .wuye/platform.json for the addresses, signs an admin token with the key `make run`
keeps, registers a project in the registry (once: a later run finds it by name), waits until the
intake has heard of it, registers the gateways and their devices, then streams readings at the
rate asked. Now and then a fault is injected (a facility switched off, low hydrant pressure, a
blocked fire lane) and cleared a little later; the alarms it raises and resolves are watched with
WatchAlarms. One progress line a second; Ctrl-C prints a summary and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

from wuye.core.auth import Role, issue_token
from wuye.core.settings import Settings
from wuye.core.wire import enum_name
from wuye.iot.gateway import (
    NORMAL_VALUES,
    RESYNCHRONISE,
    GatewayStream,
    StreamBroken,
    open_stream,
    refusal_reason,
)
from wuye.iot.v1 import intake_service_pb2 as pb
from wuye.iot.v1 import intake_service_pb2_grpc as pb_grpc
from wuye.launcher import PLATFORM_FILE, read_secrets_file
from wuye.registry.v1 import registry_service_pb2 as registry_pb
from wuye.registry.v1 import registry_service_pb2_grpc as registry_grpc

PROJECT_NAME = "物联网模拟小区"
SUB_DISTRICT = "天骄街道"
CALL_TIMEOUT = 10.0
# The largest batch sent; a gateway with more readings a second sends several.
MAX_BATCH = 500
FAULT_SECONDS = 10.0

# What each kind reads when all is well (by DeviceKind), and what a fault makes it read.
NORMAL = {
    pb.DeviceKind.Value(f"DEVICE_KIND_{name}"): value for name, value in NORMAL_VALUES.items()
}
KINDS = list(NORMAL)
FAULTS = {
    pb.DEVICE_KIND_FIRE_FACILITY: (0.0, "fire facility switched off"),
    pb.DEVICE_KIND_HYDRANT_PRESSURE: (0.05, "hydrant pressure low (0.05 MPa)"),
    pb.DEVICE_KIND_FIRE_LANE: (1.0, "fire lane blocked"),
}

T = TypeVar("T")


class SimulationError(Exception):
    """The simulation cannot start; the message says why and what to do."""


@dataclass
class Gateway:
    id: str
    secret: bytes
    devices: list[tuple[str, int]]  # (device id, kind)
    stream: GatewayStream | None = None


@dataclass
class Counters:
    """Shared by the gateway threads and the alarm watch; read once a second."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    acked: int = 0
    rejected: int = 0
    raised: int = 0
    resolved: int = 0
    acknowledged: int = 0
    open_at_start: int = 0
    faults: int = 0
    stream_breaks: int = 0

    def add(self, **amounts: int) -> None:
        with self.lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {
                name: getattr(self, name) for name in self.__dataclass_fields__ if name != "lock"
            }


def _say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- finding the platform


def _platform(state_dir: Path) -> dict[str, Any]:
    path = state_dir / PLATFORM_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SimulationError(
            f"{path} does not exist: start the platform with `make run` first (or give "
            "--target and --registry, with WUYE_TOKEN_SECRET set)"
        ) from None


def _admin_token(settings: Settings, state_dir: Path) -> str:
    secret = settings.token_secret.get_secret_value() or read_secrets_file(state_dir).get(
        "WUYE_TOKEN_SECRET", ""
    )
    if not secret:
        raise SimulationError("no token secret: set WUYE_TOKEN_SECRET or run `make run` once")
    return issue_token(
        secret, subject="iot-simulator", role=Role.ADMIN, issuer=settings.token_issuer
    )


def _with_backoff(
    call: Callable[[], T],
    stop: threading.Event,
    what: str,
    timeout: float,
    retry_on: tuple[grpc.StatusCode, ...],
) -> T:
    """`call()` until it stops failing with one of `retry_on`, waiting longer each time."""
    deadline = time.monotonic() + timeout
    pause = 0.2
    told = False
    while True:
        try:
            return call()
        except grpc.RpcError as e:
            if e.code() not in retry_on or time.monotonic() + pause > deadline:
                raise
            if not told:
                _say(f"  waiting for {what} ({e.code().name}: {e.details()})")
                told = True
        if stop.wait(pause):
            raise KeyboardInterrupt
        pause = min(pause * 2, 3.0)


# ---------------------------------------------------------------- setting up


def _project(registry: registry_grpc.RegistryServiceStub, auth: Any, district: str) -> str:
    """The simulator's project in `district`: found by name, or registered."""
    token = ""
    while True:
        page = registry.ListProjects(
            registry_pb.ListProjectsRequest(
                district_code=district, page_size=100, page_token=token
            ),
            metadata=auth,
            timeout=CALL_TIMEOUT,
        )
        for project in page.projects:
            if project.name == PROJECT_NAME:
                return project.project_id
        token = page.next_page_token
        if not token:
            break
    return registry.RegisterProject(
        registry_pb.RegisterProjectRequest(
            request_id=str(uuid.uuid4()),
            project=registry_pb.Project(
                name=PROJECT_NAME,
                type=registry_pb.PROJECT_TYPE_RESIDENTIAL,
                district_code=district,
                sub_district=SUB_DISTRICT,
                address="鄂尔多斯市东胜区天骄路 1 号",
                building_area_m2="86000.00",
            ),
        ),
        metadata=auth,
        timeout=CALL_TIMEOUT,
    ).project.project_id


def _register(
    intake: pb_grpc.IntakeServiceStub,
    auth: Any,
    project_id: str,
    args: argparse.Namespace,
    stop: threading.Event,
) -> list[Gateway]:
    gateways = []
    for g in range(args.gateways):
        request = pb.RegisterGatewayRequest(
            request_id=str(uuid.uuid4()), project_id=project_id, name=f"模拟网关 {g + 1}"
        )
        # The intake learns of projects from the registry's events: until this one has
        # arrived, it refuses the gateway.
        answer = _with_backoff(
            lambda request=request: intake.RegisterGateway(
                request, metadata=auth, timeout=CALL_TIMEOUT
            ),
            stop,
            f"the intake to learn of project {project_id}",
            args.wait,
            (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND),
        )
        devices = []
        for d in range(args.devices):
            kind = KINDS[d % len(KINDS)]
            kind_name = enum_name(pb.DeviceKind, "DEVICE_KIND", kind).lower()
            device = intake.RegisterDevice(
                pb.RegisterDeviceRequest(
                    request_id=str(uuid.uuid4()),
                    gateway_id=answer.gateway.id,
                    kind=kind,
                    location=f"{g + 1}号楼 {kind_name} {d + 1}",
                ),
                metadata=auth,
                timeout=CALL_TIMEOUT,
            )
            devices.append((device.id, kind))
        gateways.append(Gateway(answer.gateway.id, answer.secret, devices))
        _say(f"  gateway {answer.gateway.id}: {len(devices)} devices, {answer.gateway.mqtt_topic}")
    return gateways


# ---------------------------------------------------------------- running


class Faults:
    """Devices made to read a faulty value until a time; injected now and then."""

    def __init__(self, gateways: list[Gateway], per_minute: float, counters: Counters) -> None:
        self._candidates = [
            (gateway.id, device, kind)
            for gateway in gateways
            for device, kind in gateway.devices
            if kind in FAULTS
        ]
        self._per_minute = per_minute
        self._counters = counters
        self._active: dict[str, tuple[float, float]] = {}  # device -> (value, until)
        self._next_at = time.monotonic() + 3.0

    def value(self, device: str, kind: int, now: float) -> float:
        active = self._active.get(device)
        if active is not None and now < active[1]:
            return active[0]
        if kind == pb.DEVICE_KIND_HYDRANT_PRESSURE:
            return round(NORMAL[kind] + random.uniform(-0.03, 0.03), 3)
        return NORMAL[kind]

    def tick(self, now: float) -> None:
        """Injects the next fault when it is due; says so, and when one clears. Runs on one
        thread only (the progress loop); the gateways' threads only read, in `value`."""
        for device, (_value, until) in list(self._active.items()):
            if now >= until:
                del self._active[device]
                _say(f"  fault cleared: {device} reads normally again")
        if not self._per_minute or not self._candidates or now < self._next_at:
            return
        self._next_at = now + random.expovariate(self._per_minute / 60.0)
        gateway_id, device, kind = random.choice(self._candidates)
        if device in self._active:
            return
        value, what = FAULTS[kind]
        self._active[device] = (value, now + FAULT_SECONDS)
        self._counters.add(faults=1)
        _say(f"  fault injected: {what} at {device} ({gateway_id}) for {FAULT_SECONDS:.0f} s")


def _feed(
    gateway: Gateway,
    channel: grpc.Channel,
    args: argparse.Namespace,
    faults: Faults,
    counters: Counters,
    stop: threading.Event,
) -> None:
    """Each second, this gateway's share of the rate in one or more batches, the devices in
    turn; a broken stream is reopened with backoff, resending what was unacknowledged."""

    def on_result(result: pb.BatchResult) -> None:
        counters.add(acked=result.accepted + len(result.rejected), rejected=len(result.rejected))

    stream = GatewayStream(
        open_stream(channel),
        gateway.id,
        gateway.secret,
        window=args.window,
        on_result=on_result,
    )
    gateway.stream = stream
    per_second = args.rate / args.gateways
    devices = itertools.cycle(gateway.devices)
    carry = 0.0
    pause = 0.2
    second = time.monotonic()
    with contextlib.suppress(KeyboardInterrupt):
        stream.connect()
        while not stop.is_set():
            carry += per_second
            count, carry = int(carry), carry - int(carry)
            batches = math.ceil(count / MAX_BATCH)
            for n in range(batches):
                size = count // batches + (n < count % batches)
                now_ns, now = time.time_ns(), time.monotonic()
                readings = [
                    (device, faults.value(device, kind, now), now_ns)
                    for device, kind in itertools.islice(devices, size)
                ]
                while not stop.is_set():
                    try:
                        stream.send(readings, timeout=0.5)
                        counters.add(sent=size)
                        pause = 0.2
                        break
                    except TimeoutError:
                        continue
                    except StreamBroken as e:
                        counters.add(stream_breaks=1)
                        _say(f"  {gateway.id}: stream ended ({_reason(e.cause)}); reconnecting")
                        if stop.wait(pause):
                            break
                        pause = min(pause * 2, 5.0)
                        if refusal_reason(e.cause) in RESYNCHRONISE:
                            stream.restart()  # as a gateway that restarted: a new epoch
                        stream.connect()
            second += 1.0
            stop.wait(max(0.0, second - time.monotonic()))
    stream.close(timeout=3.0)


def _reason(error: BaseException | None) -> str:
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"
    return "closed by the server" if error is None else repr(error)


def _watch_alarms(
    channel: grpc.Channel,
    auth: Any,
    district: str,
    counters: Counters,
    stop: threading.Event,
    calls: list[Any],
    started_at: float,
) -> None:
    """WatchAlarms until stopped: the open alarms first, then every change; reconnects."""
    intake = pb_grpc.IntakeServiceStub(channel)
    pause = 0.5
    while not stop.is_set():
        call = intake.WatchAlarms(pb.WatchAlarmsRequest(district_codes=[district]), metadata=auth)
        calls.append(call)
        try:
            for alarm in call:
                name = enum_name(pb.AlarmKind, "ALARM_KIND", alarm.kind)
                where = alarm.device_id or alarm.gateway_id
                if alarm.state == pb.ALARM_STATE_RAISED:
                    if alarm.raise_time.ToSeconds() < started_at:
                        counters.add(open_at_start=1)  # the watch begins with the open ones
                    else:
                        counters.add(raised=1)
                        _say(f"  alarm raised: {name} at {where}")
                elif alarm.state == pb.ALARM_STATE_RESOLVED:
                    counters.add(resolved=1)
                    _say(f"  alarm resolved ({alarm.resolved_by}): {name} at {where}")
                elif alarm.state == pb.ALARM_STATE_ACKNOWLEDGED:
                    counters.add(acknowledged=1)
        except grpc.RpcError as e:
            if stop.is_set() or e.code() is grpc.StatusCode.CANCELLED:
                return
            _say(f"  alarm watch ended ({e.code().name}: {e.details()}); reconnecting")
        if stop.wait(pause):
            return
        pause = min(pause * 2, 5.0)


def _progress(
    counters: Counters, gateways: list[Gateway], faults: Faults, stop: threading.Event
) -> None:
    last = counters.snapshot()
    # Half a second out of step with the gateways' seconds, so each line counts one of theirs.
    tick = time.monotonic() + 0.5
    while True:
        tick += 1.0
        if stop.wait(max(0.0, tick - time.monotonic())):
            return
        faults.tick(time.monotonic())
        now = counters.snapshot()
        in_flight = sum(g.stream.in_flight for g in gateways if g.stream is not None)
        _say(
            f"{time.strftime('%H:%M:%S')}  sent {now['sent'] - last['sent']:>6}/s  "
            f"acked {now['acked'] - last['acked']:>6}/s  in flight {in_flight:>3} batches  "
            f"alarms raised {now['raised']} resolved {now['resolved']}"
        )
        last = now


def _summary(counters: Counters, seconds: float) -> str:
    c = counters.snapshot()
    return "\n".join(
        [
            f"summary after {seconds:.0f} s:",
            f"  readings sent {c['sent']:,}, acknowledged {c['acked']:,} "
            f"({c['rejected']:,} of them rejected), {c['sent'] / max(seconds, 1e-9):,.0f}/s",
            f"  faults injected {c['faults']}; alarms raised {c['raised']}, resolved "
            f"{c['resolved']}, acknowledged {c['acknowledged']} "
            f"(open when the watch began: {c['open_at_start']})",
            f"  streams reopened {c['stream_breaks']}",
        ]
    )


def simulate(args: argparse.Namespace) -> int:
    settings = Settings()
    state_dir = args.state_dir or Path(settings.state_dir)
    stop = threading.Event()
    # SIGTERM as Ctrl-C; while setting up, either interrupts the call under way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    platform = {} if args.target and args.registry else _platform(state_dir)
    target = args.target or platform.get("grpc", {}).get("iot")
    if not target:
        raise SimulationError(
            "the platform has no iot service in platform.json; is it in `make run` yet?"
        )
    registry_address = args.registry or platform["grpc"]["registry"]
    auth = (("authorization", f"Bearer {_admin_token(settings, state_dir)}"),)

    channel = grpc.insecure_channel(target)
    registry_channel = grpc.insecure_channel(registry_address)
    counters = Counters()
    gateways: list[Gateway] = []
    threads: list[threading.Thread] = []
    watch_calls: list[Any] = []
    started = time.monotonic()
    try:
        _say(f"iot simulator: intake {target}, registry {registry_address}")
        project_id = args.project or _project(
            registry_grpc.RegistryServiceStub(registry_channel), auth, args.district
        )
        _say(f"  project {project_id}")
        intake = pb_grpc.IntakeServiceStub(channel)
        gateways = _register(intake, auth, project_id, args, stop)
        faults = Faults(gateways, args.faults, counters)
        threads.append(
            threading.Thread(
                target=_watch_alarms,
                args=(channel, auth, args.district, counters, stop, watch_calls, time.time()),
                daemon=True,
            )
        )
        threads += [
            threading.Thread(
                target=_feed, args=(g, channel, args, faults, counters, stop), daemon=True
            )
            for g in gateways
        ]
        for thread in threads:
            thread.start()
        # From now on a signal only asks every thread to finish.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda _signum, _frame: stop.set())
        _say(
            f"streaming {args.rate:,.0f} readings/s over {len(gateways)} gateways "
            f"({args.faults:g} faults a minute); Ctrl-C stops"
        )
        started = time.monotonic()
        _progress(counters, gateways, faults, stop)
    except KeyboardInterrupt:
        stop.set()
    except grpc.RpcError as e:
        stop.set()
        _say(f"iot simulator: {e.code().name}: {e.details()}")
        return 1
    finally:
        stop.set()
        for call in watch_calls:
            call.cancel()
        for thread in threads:
            thread.join(5.0)
        channel.close()
        registry_channel.close()
    _say(_summary(counters, time.monotonic() - started))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wuye.iot.simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--gateways", type=int, default=3, help="gateways (default %(default)s)")
    parser.add_argument(
        "--devices", type=int, default=20, help="devices per gateway (default %(default)s)"
    )
    parser.add_argument(
        "--rate", type=float, default=200.0, help="readings/s in all (default %(default)s)"
    )
    parser.add_argument(
        "--faults",
        type=float,
        default=4.0,
        help="faults injected per minute on average, 0 for none (default %(default)s)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=8,
        help="unacknowledged batches a gateway may have (default %(default)s)",
    )
    parser.add_argument("--district", default="150602", help="district (default %(default)s)")
    parser.add_argument("--project", help="an existing project id (default: the simulator's)")
    parser.add_argument("--target", help="the intake's gRPC address (default: platform.json)")
    parser.add_argument("--registry", help="the registry's gRPC address (default: platform.json)")
    parser.add_argument("--state-dir", type=Path, help="make run's state dir (default .wuye)")
    parser.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help="seconds to wait for the intake to learn of the project (default %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.gateways < 1 or args.devices < 1 or args.rate < 0 or args.window < 1:
        _parser().error("--gateways, --devices and --window must be at least 1, --rate >= 0")
    try:
        return simulate(args)
    except SimulationError as e:
        print(f"iot simulator: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
