"""What the inspections integration tests share (this module holds no tests): the inspections
gRPC server built in-process as `python -m wuye.inspections serve` builds it, over this test's
PostgreSQL schema, with a clock the test moves; clients that call it as one principal or
another; the registry's and credit's events delivered to the consumer's handlers as the Consumer
delivers them (in one transaction with the inbox row); and the verifier run as a user runs it.

The test modules import from here by module name: pytest puts tests/integration on sys.path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import sqlalchemy as sa
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_support import Client, InProcessServer, started_servers
from sample_data import date, new_credit_code, request_id

from wuye.core.auth import Role
from wuye.core.events import outbox
from wuye.core.grpcserver import ServiceDefinition
from wuye.core.ids import new_id
from wuye.credit.v1 import credit_service_pb2 as credit_pb
from wuye.credit.v1 import events_pb2 as credit_events
from wuye.inspections.api import InspectionsApi
from wuye.inspections.commands import Inspections
from wuye.inspections.service import SPEC
from wuye.inspections.settings import InspectionsSettings
from wuye.inspections.v1 import events_pb2 as ev
from wuye.inspections.v1 import inspections_service_pb2 as pb
from wuye.inspections.v1 import inspections_service_pb2_grpc as pb_grpc
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.registry.v1 import registry_service_pb2 as registry_pb

CONSUMER_NAME = SPEC.consumers[0].name
PROJECT_TOPIC = "wuye.registry.project.v1"
PRACTITIONER_TOPIC = "wuye.registry.practitioner.v1"
GRADE_TOPIC = "wuye.credit.grade.v1"
DONGSHENG, KANGBASHI = "150602", "150603"
REPO = Path(__file__).resolve().parents[2]

# Full marks on the residential checklist (services/core/standards/residential.json).
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
EVENT_TYPES = (
    ev.InspectorRegistered,
    ev.RoundCreated,
    ev.InspectionTriggered,
    ev.RectificationExtended,
    ev.RoundDrawn,
    ev.CheckRecorded,
    ev.RectificationOpened,
    ev.RectificationOverdue,
    ev.RectificationClosed,
)


def timestamp(moment: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def scores(values: dict[str, str] | None = None, **changed: str) -> list[pb.ItemScore]:
    merged = {**(RESIDENTIAL_MAX if values is None else values), **changed}
    return [pb.ItemScore(item_id=k, score=v) for k, v in merged.items()]


class Clock:
    """The service's clock: real time, moved on by the test (`advance(days=8)`)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def set(self, moment: dt.datetime) -> None:
        """From now on the clock reads `moment`, and runs on from it."""
        self.offset = moment - dt.datetime.now(dt.UTC)

    def advance(self, **delta: float) -> dt.datetime:
        self.offset += dt.timedelta(**delta)
        return self()

    def today(self) -> dt.date:
        return self().date()


# -- the verifier, as a user runs it


@dataclass(frozen=True)
class Verdict:
    code: int
    output: str


def export(round_message: pb.Round) -> str:
    """GetRound's answer as JSON, as grpcurl prints it."""
    return json_format.MessageToJson(pb.GetRoundResponse(round=round_message))


def verify_command(path: Path, commitment: str | None = None) -> list[str]:
    """`python -m wuye.inspections verify-draw PATH [--commitment HEX]`."""
    command = [sys.executable, "-m", "wuye.inspections", "verify-draw", str(path)]
    return command + (["--commitment", commitment] if commitment is not None else [])


def verify_draw(path: Path, commitment: str | None = None) -> Verdict:
    done = subprocess.run(
        verify_command(path, commitment),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    return Verdict(done.returncode, done.stdout + done.stderr)


# -- the server


class InspectionsServer(InProcessServer):
    """One running inspections server, its database, its clock, and the events it reads."""

    spec = SPEC
    stub_class = pb_grpc.InspectionsServiceStub
    event_topic = PROJECT_TOPIC
    event_types = EVENT_TYPES

    def __init__(self, settings: InspectionsSettings) -> None:
        super().__init__(settings)
        self.city = self.client(Role.CITY_AUTHORITY, "city-authority")

    def definitions(self) -> list[ServiceDefinition]:
        """The servicer of SPEC.definitions (routes and all), on the test's clock."""
        self.clock = Clock()
        self.inspections = Inspections(self.engine, self.settings, clock=self.clock)
        self.handlers = self.inspections.handlers()
        return [
            replace(d, servicer=InspectionsApi(self.inspections)) for d in super().definitions()
        ]

    # -- principals

    def inspector(self, inspector_id: str, district: str = DONGSHENG) -> Client:
        return self.client(Role.INSPECTOR, inspector_id, [district])

    # -- builders of the events delivered to the handlers

    def project(
        self,
        district: str = DONGSHENG,
        credit_code: str | None = "",
        grade: int | None = None,
        project_type: int = registry_pb.PROJECT_TYPE_RESIDENTIAL,
    ) -> str:
        """A project the registry announced, optionally served by `credit_code` (a new
        enterprise if None) whose credit grade is `grade`; returns the project id."""
        project_id = new_id(district)
        self.deliver(project_registered(project_id, district, project_type, self.clock()))
        code = new_credit_code(district) if credit_code is None else credit_code
        if code:
            self.deliver(enterprise_assigned(project_id, district, code, self.clock()))
        if code and grade is not None:
            self.deliver(grade_changed(code, district, grade, self.clock()), topic=GRADE_TOPIC)
        return project_id

    # -- builders, through the API

    def register_inspector(
        self,
        inspector_id: str | None = None,
        districts: tuple[str, ...] = (DONGSHENG,),
        conflicts: tuple[str, ...] = (),
        client: Client | None = None,
        relatives: tuple[str, ...] = (),
    ) -> pb.Inspector:
        inspector = pb.Inspector(
            inspector_id=inspector_id or f"insp-{uuid.uuid4().hex[:10]}",
            name="王伟",
            unit="东胜区住房和城乡建设局",
            district_codes=list(districts),
            conflicts=list(conflicts),
            relatives=[pb.Relative(id_number=number) for number in relatives],
        )
        return (
            (client or self.admin)
            .RegisterInspector(pb.RegisterInspectorRequest(inspector=inspector))
            .inspector
        )

    def create_round(
        self,
        districts: tuple[str, ...] = (DONGSHENG,),
        period: str | None = None,
        client: Client | None = None,
        **fields,
    ) -> pb.Round:
        request = pb.CreateRoundRequest(
            request_id=request_id(),
            district_codes=list(districts),
            period=period or f"{self.clock().year}H{1 if self.clock().month < 7 else 2}",
            **fields,
        )
        return (client or self.admin).CreateRound(request).round

    def draw(self, round_id: str, client: Client | None = None) -> pb.Round:
        return (client or self.admin).DrawRound(pb.DrawRoundRequest(round_id=round_id)).round

    def drawn_round(self, projects: int = 1, inspectors: int = 2, **fields) -> pb.Round:
        """A drawn round of Dongsheng in which every project is drawn (floor 1)."""
        for _ in range(inspectors):
            self.register_inspector()
        for _ in range(projects):
            self.project(credit_code=None, grade=credit_pb.GRADE_A)
        created = self.create_round(floor_rate="1", **fields)
        return self.draw(created.round_id)

    def record(
        self,
        selection: pb.Selection,
        values: list[pb.ItemScore] | None = None,
        findings: list[pb.Finding] | None = None,
    ) -> pb.RecordCheckResponse:
        """Record a drawn check as its first assigned inspector."""
        return self.inspector(selection.inspector_ids[0]).RecordCheck(
            pb.RecordCheckRequest(
                check_id=selection.check_id,
                scores=values if values is not None else scores(),
                findings=findings or [],
            )
        )

    def finding(self, item: str = "R04", days: int | None = 7) -> pb.Finding:
        finding = pb.Finding(item_id=item, description="消防通道被占用")
        if days is not None:
            finding.rectify_by.CopyFrom(date(self.clock.today() + dt.timedelta(days=days)))
        return finding

    # -- what was stored and announced

    def events(self, *types: type[Message]) -> list[Message]:
        """Decoded outbox events, oldest first, of the given types (every type if none)."""
        return self.outbox_events(*types)

    def outbox_rows(self) -> list:
        with self.engine.connect() as connection:
            return list(connection.execute(sa.select(outbox).order_by(outbox.c.id)))


def project_registered(
    project_id: str, district: str, project_type: int, at: dt.datetime
) -> registry_events.ProjectRegistered:
    return registry_events.ProjectRegistered(
        project_id=project_id,
        name="天骄花园",
        type=project_type,
        district_code=district,
        sub_district="天骄街道",
        building_area_cm2=12_500_050_000,
        occur_time=timestamp(at),
    )


def enterprise_assigned(
    project_id: str, district: str, credit_code: str, at: dt.datetime
) -> registry_events.EnterpriseAssigned:
    start = at.date()
    return registry_events.EnterpriseAssigned(
        project_id=project_id,
        district_code=district,
        credit_code=credit_code,
        contract_start=date(start),
        contract_end=date(start + dt.timedelta(days=3 * 365)),
        handover_items=2,
        handover_items_failed=0,
        occur_time=timestamp(at),
    )


# Positions in the credit feed: strictly increasing, as credit numbers its changes.
_credit_feed = itertools.count(1)


def grade_changed(
    credit_code: str, district: str, grade: int, at: dt.datetime
) -> credit_events.GradeChanged:
    return credit_events.GradeChanged(
        change=credit_pb.GradeChange(
            sequence=next(_credit_feed),
            subject=credit_pb.Subject(kind=credit_pb.SUBJECT_KIND_ENTERPRISE, id=credit_code),
            district_code=district,
            previous_grade=credit_pb.GRADE_C_UNFILED,
            grade=grade,
            score="70.0",
            change_time=timestamp(at),
            feed_version=1,
        )
    )


def inspections_servers(
    make_settings,
) -> contextlib.AbstractContextManager[Callable[..., InspectionsServer]]:
    """For a test module's fixture: `start(**settings overrides) -> InspectionsServer` migrates
    the test's schema (once) and starts a server; every one started is stopped at the end."""
    return started_servers(make_settings, InspectionsServer)
