"""What the tender integration tests share (this module holds no tests): the credit service
answering over gRPC in a schema of its own (credit keeps its own database), the tenders server
in-process as `python -m wuye.tenders serve` builds it, calling that credit server through the
core's client, on a clock the test moves (credit keeps real time: the records it makes now are
in force at a deadline days ahead); and builders of filed and blacklisted enterprises,
experts and tenders.

The test modules import from here by module name: pytest puts tests/integration on sys.path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import replace

import sqlalchemy as sa
from grpc_support import InProcessServer, started_servers
from sample_data import request_id
from sqlalchemy.engine import make_url
from test_credit_support import Clock, CreditServer, credit_servers

from wuye.core.auth import Role
from wuye.core.grpcserver import ServiceDefinition
from wuye.tenders.api import TendersApi
from wuye.tenders.commands import Tenders
from wuye.tenders.service import SPEC
from wuye.tenders.v1 import events_pb2 as ev
from wuye.tenders.v1 import tenders_service_pb2 as pb
from wuye.tenders.v1 import tenders_service_pb2_grpc as pb_grpc

DONGSHENG = "150602"
PROJECT = f"{DONGSHENG}-P00000001"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class TendersServer(InProcessServer):
    """One running tenders server on the test's clock, asking `credit` over gRPC."""

    spec = SPEC
    stub_class = pb_grpc.TendersServiceStub
    event_types = tuple(
        getattr(ev, name)
        for name in ev.DESCRIPTOR.message_types_by_name
        if name != "OpenedBidSummary"
    )

    def definitions(self) -> list[ServiceDefinition]:
        self.clock = Clock()
        self.tenders = Tenders(self.engine, self.settings, clock=self.clock)
        return [replace(d, servicer=TendersApi(self.tenders)) for d in super().definitions()]

    # -- principals

    def developer(self, subject: str = "91150602DEV000001X") -> object:
        return self.client(Role.DEVELOPER, subject, [DONGSHENG])

    def expert(self, expert_id: str) -> object:
        return self.client(Role.EXPERT, expert_id)

    # -- builders

    def register_experts(self, count: int, conflicts: dict[int, str] | None = None) -> list[str]:
        conflicts = conflicts or {}
        ids = []
        for n in range(count):
            expert_id = f"expert-{uuid.uuid4().hex[:8]}"
            self.admin.RegisterExpert(
                pb.RegisterExpertRequest(
                    expert=pb.Expert(
                        expert_id=expert_id,
                        name=f"专家{n}",
                        specialities=["物业管理"],
                        district_codes=[DONGSHENG],
                        conflicts=[conflicts[n]] if n in conflicts else [],
                    )
                )
            )
            ids.append(expert_id)
        return ids

    def create(self, buyer=None, **fields) -> pb.Tender:
        values = {
            "district_code": DONGSHENG,
            "project_id": PROJECT,
            "title": "某小区前期物业服务",
            "scope": "住宅小区公共部位、共用设施设备",
            "service_standard": "住宅物业服务二级",
            "max_price_fen": 2_000_000_00,
            "price_method": pb.PRICE_METHOD_LOWEST_FULL_MARKS,
            "documents_hash": digest("招标文件"),
            "committee_size": 5,
            "representatives": ["rep-1"],
            **fields,
        }
        return (
            (buyer or self.developer())
            .CreateTender(
                pb.CreateTenderRequest(request_id=request_id(), tender=pb.Tender(**values))
            )
            .tender
        )

    def publish(self, tender_id: str, days: float, buyer=None) -> pb.Tender:
        deadline = self.clock() + dt.timedelta(days=days)
        request = pb.PublishTenderRequest(tender_id=tender_id)
        request.bid_deadline.FromDatetime(deadline)
        return (buyer or self.developer()).PublishTender(request).tender

    def bid(self, tender_id: str, credit_code: str, price_fen: int, staff: int = 20):
        return self.enterprise(credit_code).SubmitBid(
            pb.SubmitBidRequest(
                tender_id=tender_id,
                price_fen=price_fen,
                technical_documents=[digest(f"{credit_code} 技术方案")],
                staff=staff,
            )
        )

    def get(self, tender_id: str) -> pb.Tender:
        return self.anonymous.GetTender(pb.GetTenderRequest(tender_id=tender_id)).tender

    def tick(self, **delta: float) -> int:
        """Moves the clock on and runs the timers once."""
        self.clock.advance(**delta)
        return self.tenders.run_timers()


def filed(credit: CreditServer) -> str:
    return credit.open_file(DONGSHENG)


def blacklisted(credit: CreditServer) -> str:
    """A filed enterprise with a serious record in force."""
    code = credit.open_file(DONGSHENG)
    credit.record(code, "ADMINISTRATIVE_PENALTY")
    return code


@contextlib.contextmanager
def credit_and_tenders(
    make_settings, pg_url: str, **overrides
) -> Iterator[tuple[CreditServer, TendersServer]]:
    """Credit in a schema of its own, answering over gRPC; tenders calling it."""
    schema = f"t_{uuid.uuid4().hex[:16]}_credit"
    try:
        with credit_servers(
            lambda *a, **kw: make_settings(*a, **{**kw, "database_schema": schema})
        ) as start_credit:
            credit = start_credit()
            with started_servers(make_settings, TendersServer) as start_tenders:
                tenders = start_tenders(
                    service_endpoints={"credit": f"127.0.0.1:{credit.port}"}, **overrides
                )
                yield credit, tenders
    finally:
        _drop_schema(pg_url, schema)


def _drop_schema(pg_url: str, schema: str) -> None:
    url = make_url(pg_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    admin = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql("SET LOCAL lock_timeout = '15s'")
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        admin.dispose()
