"""The IoT suite: how many readings one intake process takes, beside the bare pipeline limit of
this machine in the same run, alarm latency at half that load, and the intake's memory.

(a) `python -m wuye.iot serve` (and its relay, for alarm events) on a fresh PostgreSQL schema
    and a Tansu broker, fed by load-generator processes: batches of 100 readings over
    StreamReadings, each gateway keeping a window of unacknowledged batches. Acknowledged
    readings/s over a steady window, the server's CPU per reading, and each batch's
    acknowledgement latency (written by the gateway → its result read).
(b) The bare pipeline: a process that only parses the same batches (ReadingBatch.FromString)
    and produces one record per batch, keyed by gateway, to the same broker; with kafka-python
    (with crc32c), which the goal is set against, and with confluent-kafka (librdkafka, the
    intake's client). The median of a few passes.
(c) Alarm latency at half the measured rate: some readings switch a fire facility off and on;
    from the off reading's observe time to its AlarmRaised being readable on wuye.iot.alarm.v1;
    and the acknowledgement latency at that load.
(d) The intake's RSS at the start and the end of the full-load run (memory must stay flat).

Load generators and the bare pipeline are this module run as a child: `python -m bench.iot`,
its config as JSON on stdin (with a "role"), its measurement as JSON on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.processes import PYTHON, Children, wait_serving
from bench.stats import latency_summary_ms, machine_busy_seconds, process_cpu_seconds
from bench.watch import TopicWatch
from wuye.iot.gateway import NORMAL_VALUES

READINGS_PER_BATCH = 100
READINGS_TOPIC = "wuye.iot.reading.v1"
ALARM_TOPIC = "wuye.iot.alarm.v1"
DISTRICT = "150602"
# The intake's goals: readings/s in one process, and that as a share of the bare pipeline
# (parse + produce with kafka-python) in the same run.
GOAL_READINGS_PER_S = 300_000
GOAL_SHARE_OF_BARE = 0.25
GOAL_BARE_CLIENT = "kafka-python"
GOAL_ALARM_P99_MS = 200  # at half load
# Memory is flat if the end of the full-load run is within this of its start.
RSS_GROWTH_LIMIT = 1.20
# Kinds of a gateway's devices, in turn (each reads its NORMAL_VALUES value).
KINDS = list(NORMAL_VALUES)
# Latency run: each gateway's switched facility is off this long, then on as long.
TOGGLE_SECONDS = 0.5


@dataclass(frozen=True)
class IotOptions:
    database_url: str
    gateways: int = 8
    load_processes: int = 2
    window: int = 32
    full_seconds: float = 60.0
    warmup_seconds: float = 8.0
    latency_seconds: float = 20.0
    bare_batches: int = 20_000
    # The bare pipeline is timed this many times over its batches; the median counts (one
    # short pass varied by a third between runs).
    bare_passes: int = 3


# ---------------------------------------------------------------- load generator (child)


def _blocks(devices: list[list[Any]], start_at: float, seconds: int) -> list[bytes]:
    """One block of encoded readings per second of the run (every device once, all well,
    observed during that second): a batch is its second's block under its own header."""
    from wuye.iot.gateway import encode_readings

    blocks = []
    for second in range(seconds):
        base = int((start_at + second) * 1e9)
        blocks.append(
            encode_readings(
                (device, NORMAL_VALUES[kind], base + index * 1_000_000)
                for index, (device, kind) in enumerate(devices)
            )
        )
    return blocks


def _load(config: dict[str, Any]) -> dict[str, Any]:
    """Streams batches for each gateway given, as fast as the window allows or at `rate`
    readings/s, from start_at to stop_at; counts what is acknowledged in the measured window.
    One event loop drives all its gateways (AsyncGatewayStream): threads driving grpc's
    blocking streams cost this process several times as much CPU a batch, which on a shared
    machine the intake would pay for."""
    from grpc import aio

    from wuye.iot.gateway import (
        AsyncGatewayStream,
        StreamBroken,
        encode_readings,
        open_stream,
    )

    start_at, stop_at = config["start_at"], config["stop_at"]
    since, until = config["measure_from"], config["measure_until"]
    rate_each = config["rate"] / len(config["gateways"]) if config["rate"] else 0.0
    counted = {"readings": 0, "accepted": 0, "rejected": 0, "batches": 0}
    counted |= {"sent_batches": 0, "unacked_at_end": 0, "ack_untimed": 0}
    errors: list[str] = []
    # When each batch, (gateway, sequence), was written; and the results that came before
    # their batch's send returned (not timed, counted).
    written: dict[tuple[str, int], float] = {}
    answered_first: set[tuple[str, int]] = set()
    ack_latencies: list[float] = []

    def on_result_of(gateway_id: str) -> Callable[[Any], None]:
        def on_result(result: Any) -> None:
            now = time.time()
            sent = written.pop((gateway_id, result.sequence), None)
            if sent is None:
                answered_first.add((gateway_id, result.sequence))
            if since <= now < until:
                counted["batches"] += 1
                counted["accepted"] += result.accepted
                counted["rejected"] += len(result.rejected)
                if sent is not None:
                    ack_latencies.append(now - sent)

        return on_result

    async def feed(channel: Any, gateway: dict[str, Any]) -> None:
        seconds = int(stop_at - start_at) + 2
        # The facility this gateway switches off and on, in the latency run only.
        toggled = gateway["toggled"] if config["toggle"] else ""
        blocks = _blocks(gateway["devices"], start_at, seconds)
        stream = AsyncGatewayStream(
            open_stream(channel),
            gateway["id"],
            bytes.fromhex(gateway["secret"]),
            window=config["window"],
            on_result=on_result_of(gateway["id"]),
        )
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await stream.connect()
        sent = 0
        try:
            while (now := time.time()) < stop_at:
                if rate_each:
                    due = start_at + sent * READINGS_PER_BATCH / rate_each
                    if due > now:
                        await asyncio.sleep(due - now)
                        continue
                body = blocks[min(int(now - start_at), seconds - 1)]
                if toggled:
                    off = int((now - start_at) / TOGGLE_SECONDS) % 2 == 1
                    body += encode_readings([(toggled, 0.0 if off else 1.0, time.time_ns())])
                try:
                    sequence = await stream.send(body, timeout=30)
                    if (gateway["id"], sequence) in answered_first:
                        answered_first.discard((gateway["id"], sequence))
                        counted["ack_untimed"] += 1
                    else:
                        written[(gateway["id"], sequence)] = time.time()
                except TimeoutError as e:
                    errors.append(f"{gateway['id']}: {e}")
                    continue
                except StreamBroken as e:
                    errors.append(f"{gateway['id']}: {e}")
                    await asyncio.sleep(0.2)
                    with contextlib.suppress(StreamBroken):
                        await stream.connect()
                    continue
                sent += 1
            await stream.wait_acked(15)
        finally:
            await stream.close()
        counted["sent_batches"] += sent
        counted["unacked_at_end"] += stream.in_flight

    async def feed_all() -> None:
        async with aio.insecure_channel(config["target"]) as channel:
            await asyncio.gather(*(feed(channel, g) for g in config["gateways"]))

    cpu_before = process_cpu_seconds(os.getpid())
    asyncio.run(feed_all())
    counted["readings"] = counted["batches"] * (READINGS_PER_BATCH + bool(config["toggle"]))
    return {
        **counted,
        "seconds": until - since,
        "cpu_seconds": round(process_cpu_seconds(os.getpid()) - cpu_before, 2),
        "errors": errors[:10],
        "error_count": len(errors),
        "ack_latencies": ack_latencies,
    }


# ---------------------------------------------------------------- bare pipeline (child)


def _bare_batches(count: int, gateways: int) -> list[bytes]:
    """The batches the load generators send: 100 readings, signed, over `gateways` gateways."""
    from wuye.iot.gateway import encode_readings, signed_batch

    now = time.time_ns()
    secret = bytes(32)
    blocks = [
        encode_readings(
            (f"{DISTRICT}-D{g:04d}{d:03d}", NORMAL_VALUES[KINDS[d % len(KINDS)]], now + d)
            for d in range(READINGS_PER_BATCH)
        )
        for g in range(gateways)
    ]
    return [
        signed_batch(secret, f"{DISTRICT}-G{n % gateways:04d}", n, blocks[n % gateways], now)
        for n in range(count)
    ]


def _bare(config: dict[str, Any]) -> dict[str, Any]:
    """Parse each batch, produce it as one record keyed by its gateway; timed to the last
    acknowledgement."""
    from wuye.iot.v1.intake_service_pb2 import ReadingBatch

    batches = _bare_batches(config["batches"], config["gateways"])
    topic, bootstrap = config["topic"], config["bootstrap"]
    failures: list[Any] = []
    if config["client"] == "kafka-python":
        from kafka import KafkaProducer

        producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            acks="all",
            linger_ms=2,
            batch_size=512 * 1024,
            max_request_size=8 * 1024 * 1024,
        )

        def send(raw: bytes) -> None:
            batch = ReadingBatch.FromString(raw)
            producer.send(topic, value=raw, key=batch.gateway_id.encode())

        def flush() -> None:
            producer.flush(60)

        def close() -> None:
            producer.close(5)
    else:
        from confluent_kafka import Producer

        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "linger.ms": 2,
                "batch.size": 1024 * 1024,
                "queue.buffering.max.messages": 200_000,
            }
        )

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        def send(raw: bytes) -> None:
            batch = ReadingBatch.FromString(raw)
            while True:
                try:
                    producer.produce(
                        topic, value=raw, key=batch.gateway_id.encode(), on_delivery=delivered
                    )
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)

        def flush() -> None:
            if producer.flush(60):
                failures.append("records left unsent")

        def close() -> None:
            producer.flush(5)

    try:
        # Connections and metadata first, as a running intake has them.
        for raw in batches[:100]:
            send(raw)
        flush()
        passes = []
        for _ in range(config["passes"]):
            cpu_before = process_cpu_seconds(os.getpid())
            started = time.perf_counter()
            for raw in batches:
                send(raw)
            flush()
            passes.append(
                (time.perf_counter() - started, process_cpu_seconds(os.getpid()) - cpu_before)
            )
    finally:
        close()
    readings = len(batches) * READINGS_PER_BATCH
    seconds, cpu = sorted(passes)[len(passes) // 2]  # the median pass
    return {
        "client": config["client"],
        "batches": len(batches),
        "readings": readings,
        "seconds": round(seconds, 3),
        "readings_per_s": round(readings / seconds, 1),
        "cpu_seconds": round(cpu, 2),
        "passes_readings_per_s": [round(readings / t, 1) for t, _ in passes],
        "failures": failures[:5],
    }


# ---------------------------------------------------------------- the run (parent)


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _register(address: str, token: str, project_id: str, gateways: int) -> list[dict[str, Any]]:
    """Gateways with 100 devices each (the kinds in turn) and one facility the latency run
    switches off and on."""
    import grpc

    from wuye.iot.v1 import intake_service_pb2 as pb
    from wuye.iot.v1 import intake_service_pb2_grpc as pb_grpc

    auth = (("authorization", f"Bearer {token}"),)
    registered = []
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.IntakeServiceStub(channel)
        for g in range(gateways):
            answer = stub.RegisterGateway(
                pb.RegisterGatewayRequest(
                    request_id=str(uuid.uuid4()), project_id=project_id, name=f"bench {g}"
                ),
                metadata=auth,
                timeout=10,
            )

            def device(kind: str, where: str, gateway_id: str = answer.gateway.id) -> str:
                return stub.RegisterDevice(
                    pb.RegisterDeviceRequest(
                        request_id=str(uuid.uuid4()),
                        gateway_id=gateway_id,
                        kind=pb.DeviceKind.Value(f"DEVICE_KIND_{kind}"),
                        location=where,
                    ),
                    metadata=auth,
                    timeout=10,
                ).id

            devices = [
                [device(KINDS[d % len(KINDS)], f"{g}号楼 {d}"), KINDS[d % len(KINDS)]]
                for d in range(READINGS_PER_BATCH)
            ]
            registered.append(
                {
                    "id": answer.gateway.id,
                    "secret": answer.secret.hex(),
                    "devices": devices,
                    "toggled": device("FIRE_FACILITY", f"{g}号楼 消防控制室"),
                }
            )
    return registered


class _AlarmWatch(TopicWatch):
    """Reads wuye.iot.alarm.v1 from its end; notes, per AlarmRaised of a switched-off facility,
    the time from the reading's observe time to the record being readable."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, ALARM_TOPIC)
        self.latencies: list[tuple[float, float]] = []  # (observe time, seconds to Kafka)
        self.other_kinds: dict[str, int] = {}
        self.start()

    def seen(self, message, arrived_at: float) -> None:
        from wuye.iot.v1 import events_pb2
        from wuye.iot.v1 import intake_service_pb2 as pb

        if dict(message.headers() or ()).get("ce_type") != b"wuye.iot.v1.AlarmRaised":
            return
        alarm = events_pb2.AlarmRaised.FromString(message.value()).alarm
        if alarm.kind != pb.ALARM_KIND_FACILITY_OFF:
            kind = pb.AlarmKind.Name(alarm.kind)
            self.other_kinds[kind] = self.other_kinds.get(kind, 0) + 1
            return
        observed = alarm.observe_time.seconds + alarm.observe_time.nanos / 1e9
        self.latencies.append((observed, arrived_at - observed))


def _times(seconds: float, warmup: float) -> dict[str, float]:
    """Absolute times of a run and its measured window, shared by every load generator."""
    start_at = time.time() + 3.0  # for the generators to start and encode their readings
    return {
        "start_at": start_at,
        "measure_from": start_at + warmup,
        "measure_until": start_at + seconds - 1.0,
        "stop_at": start_at + seconds,
    }


def _drive(
    children: Children,
    name: str,
    options: IotOptions,
    target: str,
    gateways: list[dict[str, Any]],
    times: dict[str, float],
    rate: float,
    toggle: bool,
) -> dict[str, Any]:
    """Load generator processes sharing the gateways, in step; their counts summed."""
    seconds = times["stop_at"] - time.time()
    shares = [gateways[n :: options.load_processes] for n in range(options.load_processes)]
    results: list[dict[str, Any]] = []
    failures: list[BaseException] = []

    def one(n: int) -> None:
        config = {
            "role": "load",
            "target": target,
            "gateways": shares[n],
            "window": options.window,
            "rate": rate * len(shares[n]) / len(gateways),
            "toggle": toggle,
            **times,
        }
        try:
            results.append(
                children.run_json(f"{name}-{n}", "bench.iot", config, timeout=seconds + 90)
            )
        except BaseException as e:  # raised once every generator has finished
            failures.append(e)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(options.load_processes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    total: dict[str, Any] = {}
    for result in results:
        for key, value in result.items():
            if key != "seconds":  # counts add up, lists join
                total[key] = total.get(key, type(value)()) + value
    total["seconds"] = results[0]["seconds"]
    return total


def _full_load(
    children: Children,
    options: IotOptions,
    target: str,
    serve_pid: int,
    gateways: list[dict[str, Any]],
) -> dict[str, Any]:
    """As fast as the windows allow; the intake's RSS read every second, its CPU over the
    measured window."""
    times = _times(options.full_seconds, options.warmup_seconds)
    samples: list[tuple[float, int]] = []
    cpu: dict[str, float] = {}
    done = threading.Event()

    def watch() -> None:
        marks = {"from": times["measure_from"], "until": times["measure_until"]}
        while not done.is_set():
            now = time.time()
            for mark, at in list(marks.items()):
                if now >= at:
                    cpu[f"serve_{mark}"] = process_cpu_seconds(serve_pid)
                    cpu[f"machine_{mark}"] = machine_busy_seconds()
                    del marks[mark]
            if times["start_at"] <= now <= times["stop_at"]:
                samples.append((now - times["start_at"], _rss_bytes(serve_pid)))
            done.wait(min([1.0, *(max(0.001, at - time.time()) for at in marks.values())]))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        load = _drive(
            children, "iot-load", options, target, gateways, times, rate=0.0, toggle=False
        )
    finally:
        done.set()
        watcher.join(5)
    seconds = load["seconds"]
    serve_cpu = cpu.get("serve_until", 0.0) - cpu.get("serve_from", 0.0)
    machine_cpu = cpu.get("machine_until", 0.0) - cpu.get("machine_from", 0.0)
    readings = load["batches"] * READINGS_PER_BATCH

    def mb(value: int) -> float:
        return round(value / 2**20, 1)

    return {
        "gateways": len(gateways),
        "load_processes": options.load_processes,
        "window": options.window,
        "run_seconds": options.full_seconds,
        "seconds": round(seconds, 1),
        "readings": readings,
        "readings_per_s": round(readings / seconds, 1),
        "accepted": load["accepted"],
        "rejected": load["rejected"],
        "cpu_seconds": {
            "serve": round(serve_cpu, 2),
            "machine": round(machine_cpu, 2),
            "loadgen": load["cpu_seconds"],
        },
        "serve_cpu_us_per_reading": round(serve_cpu / readings * 1e6, 2) if readings else 0.0,
        "stream_errors": load["error_count"],
        "errors": load["errors"][:5],
        "unacked_at_end": load.get("unacked_at_end", 0),
        "ack_latency_ms": latency_summary_ms(load["ack_latencies"]),
        "ack_untimed": load["ack_untimed"],
        "rss_mb": {
            "start": mb(samples[0][1]) if samples else 0.0,
            "end": mb(samples[-1][1]) if samples else 0.0,
            "max": mb(max(s[1] for s in samples)) if samples else 0.0,
            "seconds": round(samples[-1][0] - samples[0][0], 1) if samples else 0.0,
        },
    }


def _alarm_latency(
    children: Children,
    options: IotOptions,
    target: str,
    bootstrap: str,
    gateways: list[dict[str, Any]],
    rate: float,
) -> dict[str, Any]:
    """At `rate` readings/s, each gateway's switched facility off then on every
    TOGGLE_SECONDS: the FACILITY_OFF alarms raised, from observation to Kafka."""
    watch = _AlarmWatch(bootstrap)
    try:
        times = _times(options.latency_seconds, 1.0)
        load = _drive(
            children, "iot-latency-load", options, target, gateways, times, rate, toggle=True
        )
        # An off reading in the last moments may still be on its way.
        time.sleep(2.0)
    finally:
        watch.close()
    seen = [
        latency
        for observed, latency in watch.latencies
        if times["start_at"] <= observed <= times["stop_at"]
    ]
    # Every gateway switches its facility off once per two TOGGLE_SECONDS.
    expected = int(options.latency_seconds / (2 * TOGGLE_SECONDS)) * len(gateways)
    return {
        "readings_per_s": round(load["readings"] / load["seconds"], 1),
        "target_readings_per_s": round(rate, 1),
        "alarms": len(seen),
        "expected_alarms": expected,
        "other_alarms": watch.other_kinds,
        "latency_ms": latency_summary_ms(seen),
        "ack_latency_ms": latency_summary_ms(load["ack_latencies"]),
        "stream_errors": load["error_count"],
    }


def _bare_pipelines(
    children: Children, options: IotOptions, bootstrap: str
) -> dict[str, dict[str, Any]]:
    return {
        client: children.run_json(
            f"iot-bare-{client}",
            "bench.iot",
            {
                "role": "bare",
                "client": client,
                "bootstrap": bootstrap,
                "topic": READINGS_TOPIC,
                "batches": options.bare_batches,
                "passes": options.bare_passes,
                "gateways": options.gateways,
            },
            timeout=300,
        )
        for client in ("kafka-python", "confluent-kafka")
    }


def run(options: IotOptions, log_dir: Path) -> dict[str, Any]:
    # The service is imported here: the suite's children import only what their role needs.
    import grpc

    from bench.deployment import issue_admin_token, migrated_schema, process_env
    from wuye.core.db import create_service_engine
    from wuye.core.devbroker import DevBroker, free_port
    from wuye.iot import store
    from wuye.iot.service import SPEC
    from wuye.iot.settings import IotSettings

    broker = DevBroker(log=log_dir / "iot-broker.log").start()
    try:
        with (
            migrated_schema(
                options.database_url,
                IotSettings,
                SPEC,
                kafka_bootstrap=broker.bootstrap,
                iot_gateway_key=secrets.token_hex(32),
            ) as settings,
            Children(log_dir) as children,
        ):
            SPEC.ensure_topics(settings)
            project_id = f"{DISTRICT}-P{secrets.token_hex(6)}"
            engine = create_service_engine(settings)
            try:
                with engine.begin() as connection:
                    # What the registry's ProjectRegistered would have told the intake.
                    store.add_project(connection, project_id=project_id, district_code=DISTRICT)
            finally:
                engine.dispose()
            grpc_port = free_port()

            def env(**ports: int) -> dict[str, str]:
                return process_env(
                    settings,
                    iot_gateway_key=settings.iot_gateway_key.get_secret_value(),
                    # Gateways come by gRPC only here: MQTT would share the intake's CPU.
                    iot_mqtt_url="",
                    **ports,
                )

            serve = children.start(
                "iot-serve",
                [PYTHON, "-m", "wuye.iot", "serve"],
                env(grpc_port=grpc_port, metrics_port=free_port()),
            )
            children.start(
                "iot-relay", [PYTHON, "-m", "wuye.iot", "relay"], env(metrics_port=free_port())
            )
            target = f"127.0.0.1:{grpc_port}"
            with grpc.insecure_channel(target) as channel:
                wait_serving(channel, 60, f"the intake at {target} serving")
            token = issue_admin_token(settings.token_secret.get_secret_value())
            gateways = _register(target, token, project_id, options.gateways)
            full = _full_load(children, options, target, serve.pid, gateways)
            latency = _alarm_latency(
                children,
                options,
                target,
                settings.kafka_bootstrap,
                gateways,
                rate=full["readings_per_s"] / 2,
            )
            if serve.poll() is not None:
                raise RuntimeError("the intake exited during the run; see iot-serve.log")
            bare = _bare_pipelines(children, options, settings.kafka_bootstrap)
    finally:
        broker.stop()
    intake = full["readings_per_s"]
    return {
        "intake": full,
        "alarm_latency": latency,
        "bare": bare,
        "intake_to_bare": {
            client: round(intake / result["readings_per_s"], 3) for client, result in bare.items()
        },
    }


# ---------------------------------------------------------------- the report


def section(figures: dict[str, Any]) -> str:
    """The suite's part of the printed report."""
    from bench.report import PASS, table  # here: bench.report imports this module

    intake, latency, bare = figures["intake"], figures["alarm_latency"], figures["bare"]
    rss = intake["rss_mb"]

    def per_reading_us(cpu: float, readings: int) -> str:
        return f"{cpu / readings * 1e6:.2f} µs" if readings and cpu else "-"

    def goal(met: bool, target: str) -> str:
        return f"≥ {target}: {PASS if met else 'not met'}"

    def ceiling(cpu: float, readings: int) -> str:
        return f"{readings / cpu:,.0f} readings/s" if cpu else "-"

    rows = [
        [
            f"intake: StreamReadings, {intake['gateways']} gateways × window "
            f"{intake['window']}, {READINGS_PER_BATCH} readings a batch",
            f"{intake['readings_per_s']:,.0f} readings/s",
            goal(intake["readings_per_s"] >= GOAL_READINGS_PER_S, f"{GOAL_READINGS_PER_S:,}"),
        ],
        [
            "  CPU per reading: intake / machine",
            f"{per_reading_us(intake['cpu_seconds']['serve'], intake['readings'])} / "
            f"{per_reading_us(intake['cpu_seconds']['machine'], intake['readings'])}",
            "",
        ],
        [
            "  ceiling with a core of its own (1 s / intake CPU per reading)",
            ceiling(intake["cpu_seconds"]["serve"], intake["readings"]),
            "",
        ],
    ]
    for client, result in bare.items():
        ratio = figures["intake_to_bare"][client]
        spread = result["passes_readings_per_s"]
        rows += [
            [
                f"bare pipeline: parse + produce a record per batch, {client}",
                f"{result['readings_per_s']:,.0f} readings/s",
                f"median of {len(spread)}: {min(spread):,.0f}-{max(spread):,.0f}",
            ],
            [
                "  CPU per reading; intake / this",
                f"{per_reading_us(result['cpu_seconds'], result['readings'])}; {ratio:.3f}",
                goal(ratio >= GOAL_SHARE_OF_BARE, f"{GOAL_SHARE_OF_BARE}")
                if client == GOAL_BARE_CLIENT
                else "",
            ],
        ]
    rows.append(
        [
            "acknowledgement latency, batch written → result read, full load / half load: "
            "p50 / p99",
            f"{intake['ack_latency_ms']['p50']:,.1f} / {intake['ack_latency_ms']['p99']:,.1f}; "
            f"{latency['ack_latency_ms']['p50']:,.1f} / {latency['ack_latency_ms']['p99']:,.1f} "
            "ms",
            "",
        ]
    )
    flat = rss["end"] <= rss["start"] * RSS_GROWTH_LIMIT
    alarm_p99 = latency["latency_ms"]["p99"]
    rows += [
        [
            f"alarm latency, half load ({latency['target_readings_per_s']:,.0f} asked, "
            f"{latency['readings_per_s']:,.0f} readings/s taken): observed → on Kafka p50 / p99",
            f"{latency['latency_ms']['p50']:,.0f} / {latency['latency_ms']['p99']:,.0f} ms",
            f"{latency['alarms']} / {latency['expected_alarms']} alarms; p99 < "
            f"{GOAL_ALARM_P99_MS} ms: {PASS if alarm_p99 < GOAL_ALARM_P99_MS else 'not met'}",
        ],
        [
            f"intake RSS at start / end of {intake['run_seconds']:.0f} s at full load (max)",
            f"{rss['start']:,.0f} / {rss['end']:,.0f} MB ({rss['max']:,.0f})",
            PASS if flat else f"grew over {RSS_GROWTH_LIMIT - 1:.0%}",
        ],
    ]
    return "\n".join(
        [
            "IoT intake: one `wuye.iot serve` on PostgreSQL and Tansu, "
            f"{intake['load_processes']} load-generator processes; the bare pipeline on the "
            "same broker",
            table(["measure", "value", "note"], rows),
        ]
    )


if __name__ == "__main__":
    request = json.load(sys.stdin)
    role = request.pop("role")
    json.dump(_load(request) if role == "load" else _bare(request), sys.stdout)
