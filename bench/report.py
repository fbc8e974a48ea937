"""The printed report: one table per suite, figures with units, targets and verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench import edge, fund, idle, inspections, iot, meetings, tenders, voting

PASS = "PASS"
BELOW = "BELOW TARGET"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [first.ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def _number(value: float, decimals: int = 0) -> str:
    return f"{value:,.{decimals}f}"


def _per_call_us(seconds: float, calls: int) -> str:
    return _number(seconds / calls * 1e6) if calls and seconds else "-"


def _ceiling(cpu_seconds: float, events: int) -> str:
    """Events/s a process would reach if CPU were all it waited for: figures that another
    load on the machine disturbs much less than throughput."""
    return f"{_number(events / cpu_seconds)} events/s" if cpu_seconds else "-"


def _verdict(passed: bool) -> str:
    return PASS if passed else BELOW


def rpc_section(rpc: dict[str, Any]) -> str:
    setup = rpc["setup"]
    rows = []
    for label, result in (
        ("bare grpcio echo", rpc["echo"]),
        ("GetEnterprise (PostgreSQL)", rpc["get_enterprise"]),
    ):
        cpu, calls = result["cpu_seconds"], result["calls"]
        rows.append(
            [
                label,
                _number(result["qps"]),
                _number(result["latency_ms"]["p50"], 2),
                _number(result["latency_ms"]["p99"], 2),
                _per_call_us(cpu.get("client", 0), calls),
                _per_call_us(cpu.get("server", 0), calls),
                _per_call_us(cpu.get("database", 0), calls),
                _per_call_us(cpu.get("machine", 0), calls),
                _number(sum(result["errors"].values())),
            ]
        )
    headers = [
        "target",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "client µs",
        "server µs",
        "db µs",
        "machine µs",
        "errors",
    ]
    ratio = (
        f"GetEnterprise / echo: {rpc['qps_ratio']:.2f} of echo's calls/s"
        f"   target ≥ {rpc['target_ratio']:.2f}   {_verdict(rpc['passed'])}"
    )
    return "\n".join(
        [
            f"RPC: {setup['concurrency']} calls in flight, {setup['enterprises']} enterprises "
            f"round-robin, {setup['slices']} × {setup['measure_seconds'] / setup['slices']:.0f} s "
            f"slices per target after {setup['warmup_seconds']:.0f} s warm-up, "
            f"{setup['server_workers']} server threads, {setup['reply_bytes']}-byte replies",
            table(headers, rows),
            "  (µs: CPU per call of the load generator, the server, its database sessions,"
            " and the whole machine)",
            ratio,
        ]
    )


def relay_section(relay: dict[str, Any]) -> str:
    drain, latency, bare = relay["drain"], relay["latency"], relay["bare_produce"]
    target = relay["target_events_per_s"]
    drain_cpu, bare_cpu = drain["cpu_seconds"], bare["cpu_seconds"]

    def per_event(cpu: dict[str, float], events: int, *names: str) -> str:
        return " / ".join(_per_call_us(cpu[name], events) for name in names) + " µs"

    rows = [
        [
            "relay drain throughput",
            f"{_number(drain['events_per_s'])} events/s",
            f"≥ {_number(target)}",
            _verdict(drain["events_per_s"] >= target),
        ],
        [
            "  CPU per event: relay / its db sessions / broker / machine",
            per_event(drain_cpu, drain["events"], "relay", "database", "broker", "machine"),
            "",
            "",
        ],
        [
            "  ceiling with a core of its own (1 s / relay CPU per event)",
            _ceiling(drain_cpu["relay"], drain["events"]),
            "",
            "",
        ],
        [
            "bare produce, same records and client",
            f"{_number(bare['events_per_s'])} events/s",
            "",
            "",
        ],
        [
            "  CPU per event: producer / broker / machine",
            per_event(bare_cpu, bare["events"], "producer", "broker", "machine"),
            "",
            "",
        ],
        [
            "  ceiling with a core of its own (1 s / producer CPU per event)",
            _ceiling(bare_cpu["producer"], bare["events"]),
            "",
            "",
        ],
        ["relay / bare produce", f"{relay['relay_to_bare_ratio']:.2f}", "", ""],
        [
            "commit → consumer latency p50 / p99",
            f"{latency['latency_ms']['p50']:.1f} / {latency['latency_ms']['p99']:.1f} ms",
            "",
            "",
        ],
        [
            "  commit → handed to the producer p50 / p99",
            f"{latency['pickup_ms']['p50']:.1f} / {latency['pickup_ms']['p99']:.1f} ms",
            "",
            "",
        ],
        [
            "events written / missing on Kafka",
            f"{_number(latency['events'])} / {_number(latency['missing'])}",
            "0 missing",
            _verdict(latency["missing"] == 0),
        ],
    ]
    return "\n".join(
        [
            f"Relay: {_number(drain['events'] + drain['skipped'])} events drained "
            f"(timed from the first batch's commit); latency with a writer committing "
            f"{_number(latency['events_per_s'])} events/s",
            table(["measure", "value", "target", "verdict"], rows),
        ]
    )


def credit_section(credit: dict[str, Any]) -> str:
    recompute, latency = credit["recompute"], credit["event_to_grade"]
    rows = [
        [
            f"full recomputation, {recompute['enterprises']:,} enterprises × "
            f"{recompute['records'] // recompute['enterprises']} records",
            f"{recompute['seconds']:.2f} s ({recompute['changed']:,} grades changed)",
            f"< {recompute['target_seconds']:.0f} s",
            _verdict(recompute["passed"]),
        ],
        [
            "  the same when nothing changes",
            f"{recompute['seconds_when_nothing_changes']:.2f} s",
            "",
            "",
        ],
        [
            f"cause on Kafka → GradeChanged on Kafka, {latency['events_per_s']:.0f} events/s "
            "p50 / p99",
            f"{latency['latency_ms']['p50']:.0f} / {latency['latency_ms']['p99']:.0f} ms",
            f"p99 < {latency['target_p99_ms']:.0f} ms",
            _verdict(latency["passed"]),
        ],
    ]
    return "\n".join(
        [
            "Credit: consumer and relay as separate processes on Tansu and PostgreSQL",
            table(["measure", "value", "target", "verdict"], rows),
        ]
    )


def render(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        f"Wuye benchmarks, {results['started_at']}: {machine['cores']} cores, "
        f"{machine['background_cores']:.2f} cores busy with other work just before the run",
    ]
    if machine["background_cores"] > 0.25:
        lines.append(
            "  warning: the machine was busy with other work; the figures are lower and noisier"
            " than on a quiet machine, the ratios less so"
        )
    if "rpc" in results:
        lines += ["", rpc_section(results["rpc"])]
    if "relay" in results:
        lines += ["", relay_section(results["relay"])]
    if "credit" in results:
        lines += ["", credit_section(results["credit"])]
    if "inspections" in results:
        lines += ["", inspections.section(results["inspections"])]
    if "meetings" in results:
        lines += ["", meetings.section(results["meetings"])]
    if "fund" in results:
        lines += ["", fund.section(results["fund"])]
    if "voting" in results:
        lines += ["", voting.section(results["voting"])]
    if "tenders" in results:
        lines += ["", tenders.section(results["tenders"])]
    if "iot" in results:
        lines += ["", iot.section(results["iot"])]
    if "idle" in results:
        lines += ["", idle.section(results["idle"])]
    if "edge" in results:
        lines += ["", edge.section(results["edge"])]
    return "\n".join(lines)
