"""python -m bench [--quick] [--only SUITE]: run the suites, print a table of the
figures, targets and verdicts, and write them as JSON to .wuye/bench/results.json.

Every process, schema and broker a run starts is stopped or dropped at its end, Ctrl-C included.
A run that completes exits 0 whatever its verdicts; they are in the table and in results.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from bench import credit, edge, fund, idle, inspections, iot, meetings, relay, rpc, tenders, voting
from bench.deployment import DEFAULT_DATABASE_URL
from bench.report import render
from bench.stats import machine_busy_seconds

OUTPUT_DIR = Path(__file__).resolve().parent.parent / ".wuye" / "bench"


def _options(
    quick: bool, database_url: str
) -> tuple[
    rpc.RpcOptions,
    relay.RelayOptions,
    credit.CreditOptions,
    inspections.InspectionsOptions,
    iot.IotOptions,
]:
    return (
        rpc.RpcOptions(
            database_url=database_url,
            enterprises=100 if quick else 300,
            concurrency=16,
            warmup_seconds=1.0 if quick else 2.0,
            measure_seconds=4.0 if quick else 10.0,
        ),
        relay.RelayOptions(
            database_url=database_url,
            drain_events=10_000 if quick else 50_000,
            latency_events_per_second=2000,
            latency_seconds=3.0 if quick else 10.0,
        ),
        credit.CreditOptions(
            database_url=database_url,
            enterprises=2_000 if quick else 10_000,
            records_each=20,
            events_per_second=100,
            latency_seconds=3.0 if quick else 10.0,
        ),
        inspections.InspectionsOptions(
            database_url=database_url,
            draw_repeats=3 if quick else 5,
            report_repeats=3 if quick else 5,
        ),
        iot.IotOptions(
            database_url=database_url,
            full_seconds=20.0 if quick else 60.0,
            warmup_seconds=5.0 if quick else 8.0,
            latency_seconds=10.0 if quick else 20.0,
            bare_batches=10_000 if quick else 30_000,
        ),
    )


def _background_cores(seconds: float = 1.0) -> float:
    """How many cores other work keeps busy, sampled before we start any."""
    before = machine_busy_seconds()
    time.sleep(seconds)
    return (machine_busy_seconds() - before) / seconds


def _interrupted(signum: int, _frame: object) -> NoReturn:
    # Cleaning up takes a few seconds: a second Ctrl-C must not cut it short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a short run (~1 minute)")
    parser.add_argument(
        "--only",
        choices=[
            "rpc",
            "relay",
            "credit",
            "inspections",
            "meetings",
            "fund",
            "voting",
            "tenders",
            "iot",
            "idle",
            "edge",
        ],
        help="run one suite",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("WUYE_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL to create the throwaway schemas in (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)

    log_dir = OUTPUT_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    rpc_options, relay_options, credit_options, inspections_options, iot_options = _options(
        args.quick, args.database_url
    )
    results: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "machine": {"cores": os.cpu_count(), "background_cores": round(_background_cores(), 2)},
    }
    try:
        if args.only in (None, "rpc"):
            _say("rpc: GetEnterprise and echo servers, seeding, then the load ...")
            results["rpc"] = rpc.run(rpc_options, log_dir)
        if args.only in (None, "relay"):
            _say("relay: broker, outbox drain, latency, bare produce ...")
            results["relay"] = relay.run(relay_options, log_dir)
        if args.only in (None, "credit"):
            _say("credit: full recomputation, then event-to-grade latency ...")
            results["credit"] = credit.run(credit_options, log_dir)
        if args.only in (None, "inspections"):
            _say("inspections: the draw, then a year's district report ...")
            results["inspections"] = inspections.run(inspections_options, log_dir)
        if args.only in (None, "meetings"):
            _say("meetings: the task timer over 100,000 open tasks, a year's district report ...")
            results["meetings"] = meetings.run(
                meetings.MeetingsOptions(
                    database_url=args.database_url, report_repeats=2 if args.quick else 5
                ),
                log_dir,
            )
        if args.only in (None, "fund"):
            _say("fund: interest across a million accounts, a payment across 20,000 units ...")
            results["fund"] = fund.run(
                fund.FundOptions(interest_repeats=1 if args.quick else 2), log_dir
            )
        if args.only in (None, "voting"):
            _say("voting: ballots into one vote, the count, the verifier ...")
            results["voting"] = voting.run(
                voting.VotingOptions(
                    database_url=args.database_url,
                    units=2_000 if args.quick else 20_000,
                    ballots=6_000 if args.quick else 60_000,
                    echo_calls=3_000 if args.quick else 20_000,
                ),
                log_dir,
            )
        if args.only in (None, "tenders"):
            _say("tenders: 500 bids in the last minute, each checked with credit; 200 opened ...")
            results["tenders"] = tenders.run(
                tenders.TendersOptions(database_url=args.database_url), log_dir
            )
        if args.only in (None, "iot"):
            _say("iot: intake at full load, bare pipelines, alarm latency at half load ...")
            results["iot"] = iot.run(iot_options, log_dir)
        if args.only in (None, "idle"):
            _say("idle: make run's whole platform at rest, grouped and apart ...")
            options = idle.IdleOptions(measure_seconds=20.0) if args.quick else idle.IdleOptions()
            results["idle"] = idle.run(options, log_dir)
        if args.only in (None, "edge"):
            _say("edge: GetEnterprise by gRPC directly, by gRPC and by JSON through Envoy ...")
            results["edge"] = edge.run(
                edge.EdgeOptions(
                    database_url=args.database_url,
                    enterprises=50,
                    warmup_calls=100,
                    calls=1000 if args.quick else 3000,
                ),
                log_dir,
            )
    except KeyboardInterrupt:
        _say("interrupted: everything the run started is stopped, its schemas dropped")
        return 130
    (OUTPUT_DIR / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(render(results))
    print(f"\nresults: {OUTPUT_DIR / 'results.json'}   logs: {log_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
