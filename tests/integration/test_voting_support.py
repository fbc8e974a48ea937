"""What the voting integration tests share (this module holds no tests): the voting gRPC server
built in-process as `python -m wuye.voting serve` builds it, over a PostgreSQL schema of its own,
with a clock the test moves; the registry's events delivered to the consumer's handlers as the
Consumer delivers them; owners' tokens as `python -m wuye token --role owner` makes them; and
the verifier run as a user runs it.

The test modules import from here by module name: pytest puts tests/integration on sys.path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import sqlalchemy as sa
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_support import Client, InProcessServer, started_servers
from sample_data import DONGSHENG, new_credit_code, new_resident_id, request_id
from sqlalchemy.engine import make_url

from wuye.core.auth import Role
from wuye.core.grpcserver import ServiceDefinition
from wuye.core.ids import new_id
from wuye.core.pii import DEVELOPER_UNSOLD, OwnerKeys
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.registry.v1 import registry_service_pb2 as registry_pb
from wuye.voting.api import VotingApi
from wuye.voting.commands import Voting
from wuye.voting.service import SPEC
from wuye.voting.v1 import events_pb2 as ev
from wuye.voting.v1 import voting_service_pb2 as pb
from wuye.voting.v1 import voting_service_pb2_grpc as pb_grpc

PROJECT_TOPIC = "wuye.registry.project.v1"
REPO = Path(__file__).resolve().parents[2]
EVENT_TYPES = (ev.VoteCreated, ev.VoteOpened, ev.VoteCancelled, ev.VoteClosed, ev.DecisionAdopted)
# A test city: no notice, and votes of any length, so that a vote opens at once.
TEST_CITY = {"vote_notice_days": 0, "vote_min_voting_days": 0}


def timestamp(moment: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class Clock:
    """The service's clock: real time, moved on by the test."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, **delta: float) -> dt.datetime:
        self.offset += dt.timedelta(**delta)
        return self()


@dataclass(frozen=True)
class Owner:
    """An owner as the registry keys them, and their client."""

    id_number: str
    key: str
    client: Client


@dataclass(frozen=True)
class Project:
    project_id: str
    committee_id: str
    # unit_id -> (owner key, area in cm²)
    units: dict[str, tuple[str, int]]


class VotingServer(InProcessServer):
    spec = SPEC
    stub_class = pb_grpc.VotingServiceStub
    event_topic = PROJECT_TOPIC
    event_types = EVENT_TYPES

    def definitions(self) -> list[ServiceDefinition]:
        """SPEC's definitions (routes, appender and all), on the test's clock."""
        self.clock = Clock()
        self.voting = Voting(self.engine, self.settings, clock=self.clock)
        self.handlers = self.voting.handlers()
        api = VotingApi(self.voting)
        return [
            replace(d, servicer=api, start=api.start, stop=api.stop) for d in super().definitions()
        ]

    @property
    def owner_keys(self) -> OwnerKeys:
        return OwnerKeys(self.settings.pii_key.get_secret_value().encode())

    def owner(self, id_number: str | None = None) -> Owner:
        number = id_number or new_resident_id()
        key = self.owner_keys.of_person(number)
        return Owner(number, key, self.client(Role.OWNER, key, [DONGSHENG]))

    def committee(self, project: Project) -> Client:
        return self.client(Role.OWNERS_COMMITTEE, project.committee_id, [DONGSHENG])

    # -- the registry's events, delivered to the handlers

    def project(self, owners: list[tuple[str, int]], developer_units: list[int] = ()) -> Project:
        """A project the registry announced, with an acting committee and units: (owner key,
        area in cm²) each, and the developer's unsold units' areas."""
        project_id = new_id(DONGSHENG)
        now = self.clock()
        self.deliver(
            registry_events.ProjectRegistered(
                project_id=project_id,
                name="天骄花园",
                type=registry_pb.PROJECT_TYPE_RESIDENTIAL,
                district_code=DONGSHENG,
                sub_district="天骄街道",
                building_area_cm2=10**9,
                occur_time=timestamp(now),
            )
        )
        committee_id = new_id(DONGSHENG, "C")
        self.deliver(
            registry_events.OwnersCommitteeFormed(
                committee_id=committee_id,
                project_id=project_id,
                district_code=DONGSHENG,
                kind=registry_pb.COMMITTEE_KIND_OWNERS,
                member_count=5,
                occur_time=timestamp(now),
            )
        )
        developer = self.owner_keys.key_of(DEVELOPER_UNSOLD, new_credit_code(), project_id)
        units = {}
        registered = []
        for n, (key, area) in enumerate(owners):
            unit_id = new_id(DONGSHENG, "U")
            units[unit_id] = (key, area)
            registered.append(
                registry_events.RegisteredUnit(
                    unit_id=unit_id,
                    number=f"1-1-{n + 101}",
                    exclusive_area_cm2=area,
                    owner_kind=registry_pb.OWNER_KIND_PERSON,
                    owner_key=key,
                )
            )
        for n, area in enumerate(developer_units):
            unit_id = new_id(DONGSHENG, "U")
            units[unit_id] = (developer, area)
            registered.append(
                registry_events.RegisteredUnit(
                    unit_id=unit_id,
                    number=f"9-1-{n + 101}",
                    exclusive_area_cm2=area,
                    owner_kind=registry_pb.OWNER_KIND_DEVELOPER_UNSOLD,
                    owner_key=developer,
                )
            )
        self.deliver(
            registry_events.UnitsRegistered(
                project_id=project_id,
                district_code=DONGSHENG,
                units=registered,
                occur_time=timestamp(now),
            )
        )
        return Project(project_id, committee_id, units)

    # -- builders, through the API

    def create_vote(
        self,
        project: Project,
        matters: list[pb.Matter] | None = None,
        opens_in: dt.timedelta = dt.timedelta(0),
        lasts: dt.timedelta = dt.timedelta(days=7),
        client: Client | None = None,
    ) -> pb.Vote:
        opens = self.clock() + opens_in
        vote = pb.Vote(
            project_id=project.project_id,
            title="2027 年第一次业主大会",
            matters=matters
            or [
                pb.Matter(
                    type=pb.MATTER_TYPE_USE_FUND,
                    title="更换 3 号楼电梯",
                    text="使用维修资金 380,000.00 元更换 3 号楼 1 单元电梯。",
                    fund_amount_fen=38_000_000,
                    unit_ids=sorted(project.units)[:2],
                ),
                pb.Matter(
                    type=pb.MATTER_TYPE_CHANGE_COMMON_USE,
                    title="绿地改停车位",
                    text="将 5 号楼北侧绿地改为 20 个停车位。",
                ),
            ],
            close_time=timestamp(opens + lasts),
        )
        if opens_in:
            vote.open_time.CopyFrom(timestamp(opens))
        request = pb.CreateVoteRequest(request_id=request_id(), vote=vote)
        return (client or self.committee(project)).CreateVote(request).vote


def cast(owner: Owner, vote_id: str, *choices: int, request: str | None = None):
    """The owner's ballot: one choice per matter M1, M2, ... in order."""
    return owner.client.CastBallot(
        pb.CastBallotRequest(
            request_id=request or request_id(),
            vote_id=vote_id,
            choices=[
                pb.MatterChoice(matter_id=f"M{n + 1}", choice=c) for n, c in enumerate(choices)
            ],
        )
    )


@contextlib.contextmanager
def voting_schema(pg_url: str) -> Iterator[str]:
    """A schema of the test's own for voting: the registry keeps its database apart."""
    name = f"t_{uuid.uuid4().hex[:16]}_voting"
    yield name
    url = make_url(pg_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL lock_timeout = '15s'")
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        engine.dispose()


@contextlib.contextmanager
def voting_servers(
    make_settings, schema: str | None = None
) -> Iterator[Callable[..., VotingServer]]:
    """`start(**settings overrides)`: a voting server of the test city, in the test's schema or
    in `schema`."""
    where = {"database_schema": schema} if schema else {}
    with started_servers(make_settings, VotingServer) as start:
        yield lambda **overrides: start(**where, **{**TEST_CITY, **overrides})


# -- the log and the verifier, as a user runs them


def export(server: VotingServer, vote_id: str) -> str:
    """GetBallotLog's answer as a generic gRPC client prints it: one JSON object a part."""
    parts = server.anonymous.GetBallotLog(pb.GetBallotLogRequest(vote_id=vote_id))
    return "\n".join(json_format.MessageToJson(part) for part in parts)


@dataclass(frozen=True)
class Verdict:
    code: int
    output: str


def verify_tally(path: Path, *arguments: str) -> Verdict:
    done = subprocess.run(
        [sys.executable, "-m", "wuye.voting", "verify-tally", str(path), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    return Verdict(done.returncode, done.stdout + done.stderr)
