"""What the credit integration tests share (this module holds no tests): the credit service's
gRPC server built in-process as `python -m wuye.credit serve` builds it, over this test's
PostgreSQL schema, with a clock the test moves; clients that call it as one principal or
another; and the registry's events delivered to the consumer's handlers as the Consumer
delivers them (in one transaction with the inbox row).

The test modules import from here by module name: pytest puts tests/integration on sys.path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import uuid
from collections.abc import Callable
from dataclasses import replace

import sqlalchemy as sa
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_support import Client, InProcessServer, started_servers
from sample_data import new_credit_code, request_id

from wuye.core.events import outbox
from wuye.core.grpcserver import ServiceDefinition
from wuye.credit import store
from wuye.credit.api import CreditApi
from wuye.credit.commands import GRADE_TOPIC, Credit
from wuye.credit.service import SPEC
from wuye.credit.v1 import credit_service_pb2 as pb
from wuye.credit.v1 import credit_service_pb2_grpc as pb_grpc
from wuye.credit.v1 import events_pb2 as ev
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.registry.v1 import registry_service_pb2 as registry_pb

CONSUMER_NAME = SPEC.consumers[0].name
ENTERPRISE_TOPIC = "wuye.registry.enterprise.v1"
PROJECT_TOPIC = "wuye.registry.project.v1"
DONGSHENG, KANGBASHI = "150602", "150603"


def timestamp(moment: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def enterprise(credit_code: str) -> pb.Subject:
    return pb.Subject(kind=pb.SUBJECT_KIND_ENTERPRISE, id=credit_code)


class Clock:
    """The service's clock: real time, moved on by the test (`advance(days=365)`)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, **delta: float) -> dt.datetime:
        self.offset += dt.timedelta(**delta)
        return self()


class CreditClient(Client):
    """A Client of the credit service, with a shorthand for the report of an enterprise."""

    def report(self, credit_code: str, as_of: dt.datetime | None = None) -> pb.CreditReport:
        request = pb.GetCreditReportRequest(subject=enterprise(credit_code))
        if as_of is not None:
            request.as_of.CopyFrom(timestamp(as_of))
        return self.GetCreditReport(request).report


# -- the server


class CreditServer(InProcessServer):
    """One running credit server, its database, its clock, and the registry's events."""

    spec = SPEC
    stub_class = pb_grpc.CreditServiceStub
    client_class = CreditClient
    event_topic = ENTERPRISE_TOPIC

    def definitions(self) -> list[ServiceDefinition]:
        """The servicer of SPEC.definitions (routes and all), on the test's clock."""
        self.clock = Clock()
        self.credit = Credit(self.engine, self.settings, clock=self.clock)
        self.handlers = self.credit.handlers()
        return [replace(d, servicer=CreditApi(self.credit)) for d in super().definitions()]

    # -- builders of the events delivered to the handlers

    def filing_approved(
        self,
        credit_code: str,
        district: str = DONGSHENG,
        kind: int = registry_pb.FILING_KIND_INITIAL,
        name: str | None = None,
    ) -> registry_events.FilingApproved:
        return registry_events.FilingApproved(
            filing_id=f"{district}-F{uuid.uuid4().hex[:12]}",
            kind=kind,
            credit_code=credit_code,
            name=name or f"鄂尔多斯{credit_code[-4:]}物业服务有限公司",
            district_code=district,
            status=registry_pb.ENTERPRISE_STATUS_FILED,
            reviewer="authority-150602",
            occur_time=timestamp(self.clock()),
        )

    def open_file(self, district: str = DONGSHENG, credit_code: str | None = None) -> str:
        """An enterprise whose initial filing was approved; returns its credit code."""
        code = credit_code or new_credit_code(district)
        self.deliver(self.filing_approved(code, district))
        return code

    def exited(self, credit_code: str, filed: bool, district: str = DONGSHENG):
        return registry_events.EnterpriseExited(
            project_id=f"{district}-{uuid.uuid4().hex[:12]}",
            district_code=district,
            credit_code=credit_code,
            filed=filed,
            reason="合同到期" if filed else "擅自撤离",
            occur_time=timestamp(self.clock()),
        )

    def exit_project(self, credit_code: str, filed: bool = False, **kw) -> str:
        return self.deliver(self.exited(credit_code, filed), topic=PROJECT_TOPIC, **kw)

    # -- authorities' acts, through the API

    def record(
        self, credit_code: str, record_type: str, client: CreditClient | None = None
    ) -> pb.RecordCreditEventResponse:
        return (client or self.admin).RecordCreditEvent(
            pb.RecordCreditEventRequest(
                request_id=request_id(),
                subject=enterprise(credit_code),
                record_type=record_type,
                evidence_reference=f"东住建罚字〔2026〕{random.randint(1, 999)}号",
                reason="检查发现",
            )
        )

    def assess(self, credit_code: str, scores: dict[str, str] | None = None):
        return self.admin.CreateAssessment(assessment_request(credit_code, scores))

    # -- what was stored and announced

    def events(self, *types: type[Message]) -> list[Message]:
        """Decoded outbox events of the grade topic, oldest first, of the given types."""
        by_name = {t.DESCRIPTOR.full_name: t for t in types or EVENT_TYPES}
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(outbox.c.topic, outbox.c.event_type, outbox.c.payload).order_by(
                    outbox.c.id
                )
            )
            found = []
            for row in rows:
                assert row.topic == GRADE_TOPIC
                if row.event_type in by_name:
                    found.append(by_name[row.event_type].FromString(row.payload))
            return found

    def outbox_count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one()

    def has_file(self, credit_code: str) -> bool:
        with self.engine.connect() as connection:
            return store.get_subject(connection, f"enterprise:{credit_code}") is not None

    def records_of(self, credit_code: str):
        with self.engine.connect() as connection:
            return store.records_of(connection, f"enterprise:{credit_code}")


EVENT_TYPES = (ev.GradeChanged, ev.Blacklisted, ev.RedListed)

# Full marks on the residential checklist (out of 100).
RESIDENTIAL_MAX = {
    "R01": "10",
    "R02": "12",
    "R03": "14",
    "R04": "16",
    "R05": "12",
    "R06": "12",
    "R07": "8",
    "R08": "16",
}


def assessment_request(
    credit_code: str,
    scores: dict[str, str] | None = None,
    units: tuple[int, ...] = (
        pb.ASSESSOR_UNIT_HOUSING_AUTHORITY,
        pb.ASSESSOR_UNIT_SUB_DISTRICT,
        pb.ASSESSOR_UNIT_OWNERS,
    ),
) -> pb.CreateAssessmentRequest:
    return pb.CreateAssessmentRequest(
        request_id=request_id(),
        assessment=pb.Assessment(
            subject=enterprise(credit_code),
            cycle=pb.ASSESSMENT_CYCLE_ANNUAL,
            period="2026",
            assessors=[pb.Assessor(unit=u, name=f"考核员{n}") for n, u in enumerate(units)],
            checklist=pb.CHECKLIST_RESIDENTIAL,
            scores=[
                pb.ChecklistScore(item_id=k, score=v)
                for k, v in (RESIDENTIAL_MAX if scores is None else scores).items()
            ],
        ),
    )


def credit_servers(make_settings) -> contextlib.AbstractContextManager[Callable[..., CreditServer]]:
    """For a test module's fixture: `start(**settings overrides) -> CreditServer` migrates the
    test's schema (once) and starts a server; every one started is stopped at the end."""
    return started_servers(make_settings, CreditServer)
