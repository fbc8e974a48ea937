"""What the fund's integration tests share (this module holds no tests): the fund's gRPC server
built in-process as `python -m wuye.fund serve` builds it, over this test's PostgreSQL schema;
clients as the fund's callers (an owner's token names the owner key); and the events of the
registry, voting and the IoT intake the fund consumes, built as those services announce them.

The test modules import from here by module name: pytest puts tests/integration on sys.path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from fractions import Fraction

from grpc_support import Client, InProcessServer, started_servers
from sample_data import date, request_id

from wuye.core.auth import Role
from wuye.core.ids import new_id
from wuye.fund.commands import REGISTRY_PROJECT_TOPIC, Fund
from wuye.fund.service import SPEC
from wuye.fund.v1 import events_pb2 as ev
from wuye.fund.v1 import fund_service_pb2 as pb
from wuye.fund.v1 import fund_service_pb2_grpc as pb_grpc
from wuye.iot.v1 import events_pb2 as iot_events
from wuye.iot.v1 import intake_service_pb2 as iot_pb
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.registry.v1 import registry_service_pb2 as registry_pb
from wuye.voting.v1 import events_pb2 as voting_events
from wuye.voting.v1 import voting_service_pb2 as voting_pb

DONGSHENG, KANGBASHI = "150602", "150603"
EVENT_TYPES = (
    ev.AccountOpened,
    ev.DepositRecorded,
    ev.InterestAllocated,
    ev.EntryReversed,
    ev.TopUpRequested,
    ev.UseOpened,
    ev.EmergencyDrafted,
    ev.EmergencyRequested,
    ev.EmergencyEscalated,
    ev.UseApproved,
    ev.EmergencyApproved,
    ev.UseRejected,
    ev.UseCancelled,
    ev.WorksPaid,
    ev.ReapprovalRequired,
    ev.UseCompleted,
)


def exact_share(amount: int, area: int, areas: list[int]) -> Fraction:
    return Fraction(amount * area, sum(areas))


class FundServer(InProcessServer):
    spec = SPEC
    stub_class = pb_grpc.FundServiceStub
    event_topic = REGISTRY_PROJECT_TOPIC
    event_types = EVENT_TYPES

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.handlers = Fund(self.engine, settings).handlers()

    # -- principals

    def owner(self, owner_key: str, district: str = DONGSHENG) -> Client:
        return self.client(Role.OWNER, owner_key, [district])

    def requester(self, role: Role = Role.ENTERPRISE, district: str = DONGSHENG) -> Client:
        return self.client(role, f"{role.value}-{district}", [district])

    # -- the registry's, voting's and the intake's events

    @staticmethod
    def units_registered(
        areas_cm2: list[int], district: str = DONGSHENG, project_id: str = ""
    ) -> registry_events.UnitsRegistered:
        project_id = project_id or new_id(district)
        return registry_events.UnitsRegistered(
            project_id=project_id,
            district_code=district,
            units=[
                registry_events.RegisteredUnit(
                    unit_id=new_id(district, "U"),
                    number=f"1-1-{n + 101}",
                    exclusive_area_cm2=area,
                    owner_kind=registry_pb.OWNER_KIND_PERSON,
                    owner_key=f"owner-{secrets.token_hex(8)}",
                )
                for n, area in enumerate(areas_cm2)
            ],
        )

    def open_project(self, areas_cm2: list[int], district: str = DONGSHENG):
        """A project's units, delivered as the registry announces them; their accounts open."""
        units = self.units_registered(areas_cm2, district)
        self.deliver(units)
        return units

    @staticmethod
    def decision_adopted(
        project_id: str,
        amount_fen: int,
        unit_ids: list[str] = (),
        matter_type: int = voting_pb.MATTER_TYPE_USE_FUND,
        passed: bool = True,
    ) -> voting_events.DecisionAdopted:
        day = dt.date.today()
        return voting_events.DecisionAdopted(
            vote_id=new_id(project_id[:6], "V"),
            project_id=project_id,
            district_code=project_id[:6],
            matter_id="M1",
            matter_type=matter_type,
            title="更换 1 号楼屋面防水层",
            fund_amount_fen=amount_fen,
            unit_ids=list(unit_ids),
            result=voting_pb.MatterResult(
                matter_id="M1",
                participating_area_cm2=900_000,
                participating_owners=9,
                yes_area_cm2=800_000,
                yes_owners=8,
                quorum_reached=True,
                passed=passed,
            ),
            decision_date=date(day),
            challenge_deadline=date(day + dt.timedelta(days=365)),
        )

    @staticmethod
    def alarm_escalated(
        project_id: str, kind: int = iot_pb.ALARM_KIND_LOW_PRESSURE
    ) -> iot_events.AlarmEscalated:
        district = project_id[:6]
        return iot_events.AlarmEscalated(
            alarm=iot_pb.Alarm(
                id=new_id(district, "L"), kind=kind, district_code=district, project_id=project_id
            ),
            project_id=project_id,
            district_code=district,
            kind=kind,
        )

    # -- calls

    def deposit(
        self, unit_id: str, amount_fen: int, kind: int = pb.DEPOSIT_KIND_FIRST
    ) -> pb.RecordDepositResponse:
        return self.authority(unit_id[:6]).RecordDeposit(
            pb.RecordDepositRequest(
                request_id=request_id(), unit_id=unit_id, kind=kind, amount_fen=amount_fen
            )
        )

    def ledger_size(self) -> tuple[int, int]:
        return self.count("entries"), self.count("postings")


@contextlib.contextmanager
def fund_servers(make_settings):
    with started_servers(make_settings, FundServer) as start:
        yield start
