"""What the meetings integration tests share (this module holds no tests): the meetings gRPC
server built in-process as `python -m wuye.meetings serve` builds it, over this test's
PostgreSQL schema, with a clock the test sets; clients of the sub-district office, the units and
the raisers; the registry's events delivered to the consumer's handlers as the Consumer delivers
them; and builders of cases and meetings through the API.

The test modules import from here by module name: pytest puts tests/integration on sys.path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import replace

from google.protobuf.timestamp_pb2 import Timestamp
from grpc_support import Client, InProcessServer, started_servers
from sample_data import new_credit_code, request_id

from wuye.core.auth import Role
from wuye.core.grpcserver import ServiceDefinition
from wuye.core.ids import new_id
from wuye.meetings.api import MeetingsApi
from wuye.meetings.commands import Meetings
from wuye.meetings.service import SPEC
from wuye.meetings.settings import MeetingsSettings
from wuye.meetings.v1 import events_pb2 as ev
from wuye.meetings.v1 import meetings_service_pb2 as pb
from wuye.meetings.v1 import meetings_service_pb2_grpc as pb_grpc
from wuye.registry.v1 import events_pb2 as registry_events

DONGSHENG = "150602"
SUB_DISTRICT = "天骄街道"
PROJECT_TOPIC = "wuye.registry.project.v1"
# Thursday 3 December 2026, 10:00 in Ordos.
NOW = dt.datetime(2026, 12, 3, 2, tzinfo=dt.UTC)
WATER = pb.MemberUnit(kind="WATER", unit_id="东胜区供水公司", name="东胜区供水公司")
POLICE = pb.MemberUnit(kind="POLICE", unit_id="天骄派出所", name="天骄派出所")
EVENT_TYPES = (
    ev.CaseRaised,
    ev.CaseAccepted,
    ev.CaseRejected,
    ev.CaseReferred,
    ev.CaseResolved,
    ev.CaseReopened,
    ev.MeetingConvened,
    ev.AbsenceRecorded,
    ev.ResolutionAdopted,
    ev.MeetingClosed,
    ev.TaskCompleted,
    ev.TaskAccepted,
    ev.TaskReopened,
    ev.TaskReminder,
    ev.TaskOverdue,
    ev.TaskEscalated,
    ev.MinutesSigned,
)


def timestamp(moment: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class Clock:
    """The service's clock: real time, set by the test."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def set(self, moment: dt.datetime) -> None:
        self.offset = moment - dt.datetime.now(dt.UTC)


def enterprise_unit(credit_code: str) -> pb.MemberUnit:
    return pb.MemberUnit(kind="ENTERPRISE", unit_id=credit_code, name="鄂尔多斯物业服务有限公司")


class MeetingsServer(InProcessServer):
    """One running meetings server, its database, its clock, and the registry's events."""

    spec = SPEC
    stub_class = pb_grpc.MeetingsServiceStub
    event_topic = PROJECT_TOPIC
    event_types = EVENT_TYPES

    def __init__(self, settings: MeetingsSettings) -> None:
        super().__init__(settings)
        self.office = self.client(Role.SUB_DISTRICT, SUB_DISTRICT, [DONGSHENG])
        self.clock.set(NOW)

    def definitions(self) -> list[ServiceDefinition]:
        self.clock = Clock()
        self.meetings = Meetings(self.engine, self.settings, clock=self.clock)
        self.handlers = self.meetings.handlers()
        return [replace(d, servicer=MeetingsApi(self.meetings)) for d in super().definitions()]

    # -- principals

    def unit(self, unit: pb.MemberUnit) -> Client:
        roles = self.settings.unit_kind_roles
        return self.client(Role(roles.get(unit.kind, "member_unit")), unit.unit_id, [DONGSHENG])

    def committee(self, committee_id: str) -> Client:
        return self.client(Role.OWNERS_COMMITTEE, committee_id, [DONGSHENG])

    def resident(self, owner_key: str) -> Client:
        return self.client(Role.OWNER, owner_key, [DONGSHENG])

    # -- the registry's events

    def project(self, sub_district: str = SUB_DISTRICT) -> tuple[str, str, str]:
        """A project served by a new enterprise, with an owners' committee; returns the project
        id, the enterprise's credit code and the committee's id."""
        project_id = new_id(DONGSHENG)
        code = new_credit_code(DONGSHENG)
        committee_id = new_id(DONGSHENG, "C")
        at = timestamp(self.clock())
        self.deliver(
            registry_events.ProjectRegistered(
                project_id=project_id,
                name="天骄花园",
                district_code=DONGSHENG,
                sub_district=sub_district,
                occur_time=at,
            )
        )
        self.deliver(
            registry_events.EnterpriseAssigned(
                project_id=project_id, district_code=DONGSHENG, credit_code=code, occur_time=at
            )
        )
        self.deliver(
            registry_events.OwnersCommitteeFormed(
                committee_id=committee_id,
                project_id=project_id,
                district_code=DONGSHENG,
                occur_time=at,
            )
        )
        return project_id, code, committee_id

    # -- builders, through the API

    def raise_case(self, client: Client, project_id: str, **fields) -> pb.Case:
        case = pb.Case(
            project_id=project_id,
            category=fields.pop("category", "FIRE_SAFETY"),
            description=fields.pop("description", "3 号楼消防通道长期被车辆占用"),
            enterprise_attempts=fields.pop("enterprise_attempts", "物业张贴告示，劝离无效"),
            **fields,
        )
        return client.RaiseCase(pb.RaiseCaseRequest(request_id=request_id(), case=case)).case

    def accepted_case(self, client: Client, project_id: str) -> pb.Case:
        case = self.raise_case(client, project_id)
        return self.office.AcceptCase(pb.AcceptCaseRequest(case_id=case.case_id)).case

    def convene(
        self, case_ids: list[str], units: list[pb.MemberUnit], held: dt.datetime
    ) -> pb.Meeting:
        return self.office.ConveneMeeting(
            pb.ConveneMeetingRequest(
                request_id=request_id(),
                meeting=pb.Meeting(
                    hold_time=timestamp(held),
                    place="天骄街道办事处三楼会议室",
                    case_ids=case_ids,
                    invitations=[pb.Invitation(unit=u) for u in units],
                ),
            )
        ).meeting

    def adopt(
        self, meeting_id: str, case_id: str, tasks: list[tuple[pb.MemberUnit, int]]
    ) -> pb.Resolution:
        return self.office.AdoptResolution(
            pb.AdoptResolutionRequest(
                meeting_id=meeting_id,
                case_id=case_id,
                decision="清理消防通道，设置禁停标识",
                tasks=[
                    pb.Task(unit=u, working_days=days, done_when="消防通道畅通，经街道复查")
                    for u, days in tasks
                ],
            )
        ).resolution

    def attendance(self, meeting_id: str, by_unit: dict[str, int]) -> pb.Meeting:
        return self.office.RecordAttendance(
            pb.RecordAttendanceRequest(
                meeting_id=meeting_id,
                attendance=[pb.UnitAttendance(unit_id=u, attendance=a) for u, a in by_unit.items()],
            )
        ).meeting

    def events(self, *types) -> list:
        return self.outbox_events(*types)


def meetings_servers(
    make_settings,
) -> contextlib.AbstractContextManager[Callable[..., MeetingsServer]]:
    """For a test module's fixture: `start(**settings overrides) -> MeetingsServer`."""
    return started_servers(make_settings, MeetingsServer)
