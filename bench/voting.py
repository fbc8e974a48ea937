"""The voting suite: owners cast ballots through gRPC into ONE vote of a project of 20,000 units
(`python -m wuye.voting serve` on PostgreSQL, as production runs it), every owner casting and
most of them re-voting, with a bare grpcio echo server measured by the same client beside it;
then the vote is closed and counted (CloseVote), its log exported as a generic client prints it
(GetBallotLog as proto3 JSON) and checked by `python -m wuye.voting verify-tally`.

Every ballot of one vote extends one hash chain, so appends to it follow one another: this is
the figure that bounds a vote, whatever the number of servers.

`run(options)` returns the figures and prints nothing; `section(figures)` renders them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from bench import echo_server
from bench.deployment import migrated_schema, process_env
from bench.processes import PYTHON, Children, wait_serving
from bench.stats import latency_summary_ms
from wuye.core.auth import Role, issue_token
from wuye.core.devbroker import free_port
from wuye.core.ids import new_id
from wuye.voting import store
from wuye.voting.api import SERVICE_NAME
from wuye.voting.service import SPEC
from wuye.voting.settings import VotingSettings
from wuye.voting.v1 import voting_service_pb2 as pb
from wuye.voting.v1 import voting_service_pb2_grpc as pb_grpc

TARGET_BALLOTS_PER_SECOND = 1_000
TARGET_P99_MS = 100.0
TARGET_COUNT_SECONDS = 1.0
TARGET_VERIFY_SECONDS = 5.0
DISTRICT = "150602"
CAST_BALLOT = f"/{SERVICE_NAME}/CastBallot"
INSERT_BATCH = 5_000


@dataclass(frozen=True)
class VotingOptions:
    database_url: str
    units: int = 20_000
    # Ballots cast in all: every owner once, then re-votes until this many.
    ballots: int = 60_000
    concurrency: int = 32
    echo_calls: int = 20_000


def _seed_roll(settings: VotingSettings, units: int) -> tuple[str, list[str]]:
    """A project of `units` units, each its own owner, in voting's read model (as the registry's
    events leave it); returns the project id and the owner keys."""
    project_id = new_id(DISTRICT)
    keys = [secrets.token_hex(16) for _ in range(units)]
    rows = [
        {
            "unit_id": f"{DISTRICT}-U{n:012x}",
            "project_id": project_id,
            # 50.00 to 149.99 m²
            "area_cm2": 500_000 + (n * 7919) % 1_000_000,
            "owner_kind": "OWNER",
            "owner_key": key,
        }
        for n, key in enumerate(keys)
    ]
    engine = sa.create_engine(settings.database_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'SET LOCAL search_path TO "{settings.schema}"')
            connection.execute(
                store.projects.insert().values(project_id=project_id, district_code=DISTRICT)
            )
            for first in range(0, len(rows), INSERT_BATCH):
                connection.execute(store.units.insert(), rows[first : first + INSERT_BATCH])
    finally:
        engine.dispose()
    return project_id, keys


class _ClosedLoop:
    """`concurrency` calls in flight on one channel, each finished call starting the next from
    its completion callback (as bench.loadgen does), each with its own request and metadata."""

    def __init__(self, call, requests: list[tuple[bytes, tuple]], concurrency: int) -> None:
        self._call = call
        self._requests = requests
        self._next = itertools.count()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._pending = len(requests)
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self._concurrency = concurrency

    def run(self) -> float:
        started = time.perf_counter()
        for _ in range(min(self._concurrency, len(self._requests))):
            self._issue()
        self._done.wait()
        return time.perf_counter() - started

    def _issue(self) -> None:
        index = next(self._next)
        if index >= len(self._requests):
            return
        payload, metadata = self._requests[index]
        started = time.perf_counter()
        future = self._call.future(payload, metadata=metadata, timeout=60)
        future.add_done_callback(lambda f: self._finished(f, started))

    def _finished(self, future: grpc.Future, started: float) -> None:
        elapsed = time.perf_counter() - started
        with self._lock:
            if future.code() == grpc.StatusCode.OK:
                self.latencies.append(elapsed)
            else:
                name = future.code().name
                self.errors[name] = self.errors.get(name, 0) + 1
            self._pending -= 1
            if self._pending == 0:
                self._done.set()
        self._issue()


def _load(channel: grpc.Channel, method: str, requests, concurrency: int) -> dict[str, Any]:
    call = channel.unary_unary(method)
    loop = _ClosedLoop(call, requests, concurrency)
    seconds = loop.run()
    return {
        "calls": len(requests),
        "seconds": round(seconds, 3),
        "per_second": round(len(loop.latencies) / seconds, 1),
        "latency_ms": latency_summary_ms(loop.latencies),
        "errors": loop.errors,
    }


def _ballots(
    settings: VotingSettings, vote_id: str, keys: list[str], total: int
) -> list[tuple[bytes, tuple]]:
    """Every owner's ballot, then re-votes (changed choices) round the owners until `total`."""
    secret = settings.token_secret.get_secret_value()
    metadata = [
        (
            (
                "authorization",
                f"Bearer {issue_token(secret, subject=k, role=Role.OWNER, districts=[DISTRICT])}",
            ),
        )
        for k in keys
    ]
    choices = (pb.CHOICE_YES, pb.CHOICE_NO, pb.CHOICE_ABSTAIN)
    requests = []
    for n in range(total):
        owner = n % len(keys)
        request = pb.CastBallotRequest(
            request_id=str(uuid.uuid4()),
            vote_id=vote_id,
            choices=[
                pb.MatterChoice(matter_id="M1", choice=choices[(n + owner) % 3]),
                pb.MatterChoice(matter_id="M2", choice=choices[(n // 2 + owner) % 3]),
            ],
        )
        requests.append((request.SerializeToString(), metadata[owner]))
    return requests


def _create_vote(
    channel: grpc.Channel, settings: VotingSettings, project_id: str
) -> tuple[pb.Vote, str]:
    """The vote (open at once: no notice in the bench's city) and the office's token."""
    token = issue_token(
        settings.token_secret.get_secret_value(),
        subject="天骄街道",
        role=Role.SUB_DISTRICT,
        districts=[DISTRICT],
    )
    close = Timestamp()
    close.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=7))
    return (
        pb_grpc.VotingServiceStub(channel)
        .CreateVote(
            pb.CreateVoteRequest(
                request_id=str(uuid.uuid4()),
                vote=pb.Vote(
                    project_id=project_id,
                    title="2027 年业主大会",
                    matters=[
                        pb.Matter(
                            type=pb.MATTER_TYPE_USE_FUND,
                            title="更换电梯",
                            text="使用维修资金更换 3 号楼电梯。",
                            fund_amount_fen=38_000_000,
                        ),
                        pb.Matter(
                            type=pb.MATTER_TYPE_RAISE_FUND,
                            title="续筹维修资金",
                            text="按每平方米 30 元续筹。",
                            fund_amount_fen=150_000_000,
                        ),
                    ],
                    close_time=close,
                ),
            ),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=120,
        )
        .vote
    ), token


def run(options: VotingOptions, log_dir: Path) -> dict[str, Any]:
    with (
        migrated_schema(options.database_url, VotingSettings, SPEC) as settings,
        Children(log_dir) as children,
    ):
        project_id, keys = _seed_roll(settings, options.units)
        port = free_port()
        server = children.start(
            "voting-serve",
            [PYTHON, "-m", "wuye.voting", "serve"],
            env=process_env(
                settings,
                grpc_port=port,
                metrics_port=free_port(),
                vote_notice_days=0,
                vote_allow_early_close="true",
            ),
        )
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_serving(channel, 30, "the voting server answering health checks")
            vote, token = _create_vote(channel, settings, project_id)
            requests = _ballots(settings, vote.vote_id, keys, options.ballots)
            cast = _load(channel, CAST_BALLOT, requests, options.concurrency)
            stub = pb_grpc.VotingServiceStub(channel)
            started = time.perf_counter()
            closed = stub.CloseVote(
                pb.CloseVoteRequest(vote_id=vote.vote_id),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=120,
            ).vote
            close_seconds = time.perf_counter() - started
            started = time.perf_counter()
            parts = stub.GetBallotLog(pb.GetBallotLogRequest(vote_id=vote.vote_id), timeout=300)
            export = "\n".join(json_format.MessageToJson(part) for part in parts)
            export_seconds = time.perf_counter() - started
        children.stop(server)
        log = log_dir / "voting-log.json"
        log.write_text(export)
        started = time.perf_counter()
        verified = subprocess.run(
            [
                PYTHON,
                "-m",
                "wuye.voting",
                "verify-tally",
                str(log),
                "--roll-digest",
                vote.roll_digest,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        verify_seconds = time.perf_counter() - started

        echo_port = free_port()
        children.start(
            "echo-server",
            [
                PYTHON,
                "-m",
                "bench.echo_server",
                f"--port={echo_port}",
                "--reply-bytes=120",
                f"--workers={settings.grpc_workers}",
            ],
        )
        with grpc.insecure_channel(f"127.0.0.1:{echo_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            echo = _load(
                channel,
                echo_server.METHOD,
                requests[: options.echo_calls],
                options.concurrency,
            )
    ballots = closed.result.ballots
    return {
        "cast": cast,
        "echo": echo,
        "ballots_ratio": round(cast["per_second"] / echo["per_second"], 3)
        if echo["per_second"]
        else 0.0,
        "close": {
            "ballots": ballots,
            "counted": closed.result.counted_ballots,
            "seconds": round(close_seconds, 3),
        },
        "export": {"bytes": len(export.encode()), "seconds": round(export_seconds, 3)},
        "verify": {
            "seconds": round(verify_seconds, 3),
            "verified": verified.returncode == 0,
            "first_line": (verified.stdout + verified.stderr).strip().splitlines()[-1][:200],
        },
        "setup": {
            "units": options.units,
            "ballots": options.ballots,
            "concurrency": options.concurrency,
            "server_workers": settings.grpc_workers,
        },
        "passed": {
            "cast": cast["per_second"] >= TARGET_BALLOTS_PER_SECOND
            and cast["latency_ms"]["p99"] < TARGET_P99_MS
            and not cast["errors"],
            "count": close_seconds < TARGET_COUNT_SECONDS and ballots == options.ballots,
            "verify": verify_seconds < TARGET_VERIFY_SECONDS and verified.returncode == 0,
        },
    }


def section(figures: dict[str, Any]) -> str:
    """The suite's part of the printed report."""
    from bench.report import BELOW, PASS, table  # here: bench.report imports this module

    cast, echo, setup = figures["cast"], figures["echo"], figures["setup"]
    passed = figures["passed"]
    close, verify, export = figures["close"], figures["verify"], figures["export"]
    rows = [
        [
            f"CastBallot into one vote of {setup['units']:,} units, {setup['ballots']:,} ballots "
            f"(re-votes included), {setup['concurrency']} in flight",
            f"{cast['per_second']:,.0f} /s, p50 {cast['latency_ms']['p50']:.1f} ms, "
            f"p99 {cast['latency_ms']['p99']:.1f} ms",
            f">= {TARGET_BALLOTS_PER_SECOND:,} /s, p99 < {TARGET_P99_MS:.0f} ms",
            PASS if passed["cast"] else BELOW,
        ],
        [
            "  reference: bare grpcio echo, same client",
            f"{echo['per_second']:,.0f} /s, p50 {echo['latency_ms']['p50']:.1f} ms, "
            f"p99 {echo['latency_ms']['p99']:.1f} ms",
            f"ratio {figures['ballots_ratio']:.2f}",
            "",
        ],
        [
            f"CloseVote: count {close['ballots']:,} ballots ({close['counted']:,} counted)",
            f"{close['seconds']:.3f} s",
            f"< {TARGET_COUNT_SECONDS:.0f} s",
            PASS if passed["count"] else BELOW,
        ],
        [
            f"GetBallotLog as proto3 JSON ({export['bytes'] / 1e6:,.1f} MB)",
            f"{export['seconds']:.3f} s",
            "",
            "",
        ],
        [
            "verify-tally on that log",
            f"{verify['seconds']:.3f} s",
            f"< {TARGET_VERIFY_SECONDS:.0f} s",
            PASS if passed["verify"] else BELOW,
        ],
    ]
    errors = cast["errors"] or echo["errors"]
    lines = [
        "Voting: ballots into one vote's hash chain, the count, the public verifier",
        table(["measure", "value", "target", "verdict"], rows),
        f"  verifier: {verify['first_line']}",
    ]
    if errors:
        lines.append(f"  errors: ballots {cast['errors']}, echo {echo['errors']}")
    return "\n".join(lines)
