"""The tenders suite: (a) 500 bids arriving in the last minute before one deadline, each one
checked against the credit service over gRPC before it is sealed (latency from the moment each
was due), and the bids a second the servers take when 200 arrive at once; (b) the
opening of a tender with 200 bids (decryption, each bidder's credit asked again, the committee's
lists frozen and committed) and its evaluation (the committee's draw, 1,000 technical scores,
the ranking, the award).

The credit and tenders servers run as `python -m wuye.credit serve` and `python -m wuye.tenders
serve` over fresh PostgreSQL schemas; the bidders are filed with credit first. The load comes
from 16 client threads.

`run(options, log_dir)` returns the figures and prints nothing; `section(figures)` renders them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench.deployment import migrated_schema, process_env
from bench.processes import PYTHON, Children, wait_serving
from bench.stats import latency_summary_ms
from wuye.core.auth import Role, issue_token
from wuye.core.consumer import EventMeta
from wuye.core.db import create_service_engine
from wuye.core.ids import credit_code_check_char
from wuye.credit.commands import Credit
from wuye.credit.service import SPEC as CREDIT_SPEC
from wuye.credit.settings import CreditSettings
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.registry.v1 import registry_service_pb2 as registry_pb
from wuye.tenders.commands import Tenders
from wuye.tenders.service import SPEC as TENDERS_SPEC
from wuye.tenders.settings import TendersSettings
from wuye.tenders.v1 import tenders_service_pb2 as pb
from wuye.tenders.v1 import tenders_service_pb2_grpc as pb_grpc

DISTRICT = "150602"
TARGET_P99_MS = 200.0
LAST_MINUTE_SECONDS = 60.0
EXPERTS = 12


@dataclass(frozen=True)
class TendersOptions:
    database_url: str
    bids: int = 500
    opened_bids: int = 200
    concurrency: int = 16
    # The bids' arrivals spread over most of the last minute, leaving it a margin.
    spread_seconds: float = 50.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _credit_code(serial: int) -> str:
    first17 = f"91{DISTRICT}MB{serial:07d}"
    return first17 + credit_code_check_char(first17)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _file_enterprises(settings: CreditSettings, codes: list[str]) -> None:
    """Credit learns the bidders as it learns them from the registry: approved filings."""
    engine = create_service_engine(settings)
    try:
        handler = Credit(engine, settings).handlers()["wuye.registry.v1.FilingApproved"]
        with engine.begin() as connection:
            for code in codes:
                message = registry_events.FilingApproved(
                    filing_id=f"{DISTRICT}-F{uuid.uuid4().hex[:12]}",
                    kind=registry_pb.FILING_KIND_INITIAL,
                    credit_code=code,
                    name=f"鄂尔多斯{code[-4:]}物业服务有限公司",
                    district_code=DISTRICT,
                    status=registry_pb.ENTERPRISE_STATUS_FILED,
                    reviewer="bench",
                )
                meta = EventMeta(
                    event_id=str(uuid.uuid4()),
                    event_type=message.DESCRIPTOR.full_name,
                    source="/wuye/registry",
                    subject="",
                    district=DISTRICT,
                    time="",
                    topic="wuye.registry.enterprise.v1",
                    partition=0,
                    offset=0,
                )
                handler.handle(connection, message, meta)
    finally:
        engine.dispose()


class _Caller:
    def __init__(self, stub: pb_grpc.TendersServiceStub, secret: str) -> None:
        self.stub = stub
        self.secret = secret

    def as_(self, role: Role, subject: str) -> tuple[tuple[str, str], ...]:
        token = issue_token(
            self.secret,
            subject=subject,
            role=role,
            districts=None if role in (Role.ADMIN, Role.EXPERT) else [DISTRICT],
        )
        return (("authorization", f"Bearer {token}"),)


def _tender(caller: _Caller, developer, deadline: dt.datetime) -> str:
    tender_id = caller.stub.CreateTender(
        pb.CreateTenderRequest(
            request_id=str(uuid.uuid4()),
            tender=pb.Tender(
                district_code=DISTRICT,
                project_id=f"{DISTRICT}-Pbench{uuid.uuid4().hex[:6]}",
                title="前期物业服务招标",
                scope="住宅小区",
                service_standard="住宅物业服务二级",
                max_price_fen=10_000_000_00,
                price_method=pb.PRICE_METHOD_LOWEST_FULL_MARKS,
                documents_hash=_digest("招标文件"),
                committee_size=5,
                representatives=["rep-1"],
            ),
        ),
        metadata=developer,
    ).tender.tender_id
    request = pb.PublishTenderRequest(tender_id=tender_id)
    request.bid_deadline.FromDatetime(deadline)
    caller.stub.PublishTender(request, metadata=developer)
    return tender_id


def _bid_all(
    caller: _Caller,
    tender_id: str,
    codes: list[str],
    concurrency: int,
    spread_seconds: float = 0.0,
) -> tuple[list[float], float]:
    """Every bidder once, from `concurrency` threads: all at once, or each at its own moment
    spread evenly over `spread_seconds`. Returns the latencies of the bids taken (each from the
    moment it was due, so a bid kept waiting by the ones before it counts its wait) and the wall
    time."""
    started = time.perf_counter()
    step = spread_seconds / len(codes)

    def bid(n_code: tuple[int, str]) -> float | None:
        """The bid's latency; None if it was refused (too late)."""
        n, code = n_code
        metadata = caller.as_(Role.ENTERPRISE, code)
        due = started + n * step
        time.sleep(max(0.0, due - time.perf_counter()))
        try:
            caller.stub.SubmitBid(
                pb.SubmitBidRequest(
                    tender_id=tender_id,
                    price_fen=5_000_000_00 + n * 1000,
                    technical_documents=[_digest(f"{code} 技术方案")],
                    staff=20 + n % 30,
                ),
                metadata=metadata,
                timeout=10,
            )
        except grpc.RpcError as e:
            if e.code() is grpc.StatusCode.FAILED_PRECONDITION:
                return None
            raise
        return time.perf_counter() - due

    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(bid, enumerate(codes)))
    return [a for a in answers if a is not None], time.perf_counter() - started


def _timed(work) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def _evaluate(caller: _Caller, tender_id: str, concurrency: int) -> dict[str, float]:
    admin = caller.as_(Role.ADMIN, "bench")
    developer = caller.as_(Role.DEVELOPER, "rep-1")
    draw_seconds, drawn = _timed(
        lambda: (
            caller.stub.DrawCommittee(
                pb.DrawCommitteeRequest(tender_id=tender_id), metadata=admin
            ).tender
        )
    )
    members = [developer] + [caller.as_(Role.EXPERT, e) for e in drawn.committee.experts]
    bidders = [b.credit_code for b in drawn.opened_bids if not b.rejection]

    def score(item: tuple[int, tuple]) -> None:
        n, (member, code) = item
        caller.stub.ScoreBid(
            pb.ScoreBidRequest(
                tender_id=tender_id, credit_code=code, technical_score=str(60 + n % 40)
            ),
            metadata=member,
            timeout=30,
        )

    pairs = [(m, c) for m in members for c in bidders]
    with ThreadPoolExecutor(concurrency) as pool:
        scoring_seconds, _ = _timed(lambda: list(pool.map(score, enumerate(pairs))))
    ranking_seconds, evaluation = _timed(
        lambda: caller.stub.GetEvaluation(
            pb.GetEvaluationRequest(tender_id=tender_id), metadata=developer
        )
    )
    award_seconds, _ = _timed(
        lambda: caller.stub.Award(pb.AwardRequest(tender_id=tender_id), metadata=admin)
    )
    assert evaluation.complete and len(evaluation.ranking) == len(bidders)
    return {
        "draw_seconds": round(draw_seconds, 3),
        "scores": len(pairs),
        "scoring_seconds": round(scoring_seconds, 3),
        "ranking_seconds": round(ranking_seconds, 3),
        "award_seconds": round(award_seconds, 3),
    }


def run(options: TendersOptions, log_dir: Path) -> dict[str, Any]:
    codes = [_credit_code(n) for n in range(max(options.bids, options.opened_bids))]
    with (
        migrated_schema(options.database_url, CreditSettings, CREDIT_SPEC) as credit_settings,
        migrated_schema(
            options.database_url,
            TendersSettings,
            TENDERS_SPEC,
            min_tendering_days=0,
            enquiry_days=0,
        ) as base,
        Children(log_dir) as children,
    ):
        _file_enterprises(credit_settings, codes)
        credit_port, tenders_port = _free_port(), _free_port()
        children.start(
            "tenders-credit",
            [PYTHON, "-m", "wuye.credit", "serve"],
            process_env(credit_settings, grpc_port=credit_port, metrics_port=0)
            | {"WUYE_TOKEN_SECRET": base.token_secret.get_secret_value()},
        )
        endpoints = f"credit=127.0.0.1:{credit_port}"
        children.start(
            "tenders-serve",
            [PYTHON, "-m", "wuye.tenders", "serve"],
            process_env(
                base,
                grpc_port=tenders_port,
                metrics_port=0,
                service_endpoints=endpoints,
                min_tendering_days=0,
                enquiry_days=0,
            ),
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{tenders_port}")
        try:
            wait_serving(channel, 30, "the tenders server")
            wait_serving(grpc.insecure_channel(f"127.0.0.1:{credit_port}"), 30, "the credit server")
            caller = _Caller(
                pb_grpc.TendersServiceStub(channel), base.token_secret.get_secret_value()
            )
            developer = caller.as_(Role.DEVELOPER, "rep-1")
            admin = caller.as_(Role.ADMIN, "bench")
            for n in range(EXPERTS):
                caller.stub.RegisterExpert(
                    pb.RegisterExpertRequest(
                        expert=pb.Expert(
                            expert_id=f"expert-{n:02d}",
                            name=f"专家{n}",
                            specialities=["物业管理"],
                            district_codes=[DISTRICT],
                        )
                    ),
                    metadata=admin,
                )
            # The timer moves tenders past their (zero) enquiry periods, as the worker does.
            timer_settings = base.model_copy(
                update={"service_endpoints": {"credit": f"127.0.0.1:{credit_port}"}}
            )
            timer_engine = create_service_engine(timer_settings)
            timer = Tenders(timer_engine, timer_settings)

            def tender_open_for_bids() -> tuple[str, dt.datetime]:
                deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=LAST_MINUTE_SECONDS)
                tender_id = _tender(caller, developer, deadline)
                timer.run_timers()
                return tender_id, deadline

            # All at once: how many bids a second the two servers take.
            opened, opening_deadline = tender_open_for_bids()
            burst, burst_wall = _bid_all(
                caller, opened, codes[: options.opened_bids], options.concurrency
            )
            # The last minute before a deadline: the bids arrive spread over it.
            busy, _ = tender_open_for_bids()
            latencies, wall = _bid_all(
                caller, busy, codes[: options.bids], options.concurrency, options.spread_seconds
            )
            timer_engine.dispose()
            left = (opening_deadline - dt.datetime.now(dt.UTC)).total_seconds()
            time.sleep(max(0.0, left) + 0.1)
            open_seconds, _ = _timed(
                lambda: caller.stub.OpenBids(
                    pb.OpenBidsRequest(tender_id=opened), metadata=admin, timeout=120
                )
            )
            evaluation = _evaluate(caller, opened, options.concurrency)
        finally:
            channel.close()
    summary = latency_summary_ms(latencies)
    passed = len(latencies) == options.bids and summary["p99"] < TARGET_P99_MS
    return {
        "bids": {
            "count": len(latencies),
            "refused_late": options.bids - len(latencies),
            "within_seconds": LAST_MINUTE_SECONDS,
            "spread_seconds": options.spread_seconds,
            "wall_seconds": round(wall, 2),
            "latency_ms": summary,
            "target_p99_ms": TARGET_P99_MS,
            "passed": passed,
        },
        "capacity": {
            "bids": len(burst),
            "concurrency": options.concurrency,
            "bids_per_second": round(len(burst) / burst_wall, 1),
            "latency_ms": latency_summary_ms(burst),
        },
        "opening": {"bids": options.opened_bids, "seconds": round(open_seconds, 3), **evaluation},
        "passed": passed,
    }


def section(figures: dict[str, Any]) -> str:
    from bench.report import BELOW, PASS, table  # here: bench.report imports this module

    bids, capacity, opening = figures["bids"], figures["capacity"], figures["opening"]
    latency, burst = bids["latency_ms"], capacity["latency_ms"]
    rows = [
        [
            f"{bids['count']} bids arriving over {bids['spread_seconds']:.0f} s before one "
            "deadline, each checked with credit over gRPC",
            f"all in {bids['wall_seconds']:.1f} s, {bids['refused_late']} too late",
            f"all in {bids['within_seconds']:.0f} s",
            PASS if not bids["refused_late"] else BELOW,
        ],
        [
            "  latency p50 / p99 / max",
            f"{latency['p50']:.1f} / {latency['p99']:.1f} / {latency['max']:.1f} ms",
            f"p99 < {bids['target_p99_ms']:.0f} ms",
            PASS if latency["p99"] < bids["target_p99_ms"] else BELOW,
        ],
        [
            f"capacity: {capacity['bids']} bids at once from {capacity['concurrency']} clients "
            "(p50 / p99)",
            f"{capacity['bids_per_second']:.0f} bids/s "
            f"({burst['p50']:.0f} / {burst['p99']:.0f} ms)",
            "",
            "",
        ],
        [
            f"opening of {opening['bids']} bids (decrypt, credit asked again, lists committed)",
            f"{opening['seconds']:.2f} s",
            "",
            "",
        ],
        [
            f"evaluation: draw / {opening['scores']} scores / ranking / award",
            f"{opening['draw_seconds']:.2f} / {opening['scoring_seconds']:.2f} / "
            f"{opening['ranking_seconds']:.2f} / {opening['award_seconds']:.2f} s",
            "",
            "",
        ],
    ]
    return "\n".join(
        [
            "Tenders: the last minute's bids, and the opening and evaluation of 200",
            table(["measure", "value", "target", "verdict"], rows),
        ]
    )
