"""The roll from the registry, over Kafka: units registered and transferred in the registry reach
voting through the registry's relay and the consumer `python -m wuye.voting consume events`
runs; a vote's roll is frozen when it opens, so a transfer after that changes the next vote's
roll and not this one's."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from kafka_support import HandDriven
from sample_data import date, request_id
from test_voting_support import (
    cast,
    timestamp,
    voting_schema,
    voting_servers,
)

from wuye.core.auth import Role
from wuye.core.kafka import ensure_topics
from wuye.core.service import build_relay
from wuye.registry.service import SPEC as REGISTRY_SPEC
from wuye.registry.v1 import registry_service_pb2 as registry_pb
from wuye.voting import store
from wuye.voting.service import SPEC
from wuye.voting.v1 import voting_service_pb2 as pb

pytestmark = pytest.mark.integration

POLL_TIMEOUT_SECONDS = 60
YES = pb.CHOICE_YES


@pytest.fixture
def voting(make_settings, pg_url):
    """A voting server with a database of its own: the registry's is the test's schema."""
    with voting_schema(pg_url) as schema, voting_servers(make_settings, schema) as start:
        yield start()


def _owner_of(voting, unit_id: str) -> str | None:
    """The unit's owner key in voting's read model, if the unit has arrived."""
    with voting.engine.connect() as connection:
        return connection.execute(
            store.units.select()
            .with_only_columns(store.units.c.owner_key)
            .where(store.units.c.unit_id == unit_id)
        ).scalar_one_or_none()


def test_registry_events_build_the_roll_and_a_transfer_after_the_freeze_waits_for_the_next_vote(
    registry, voting, start_loop, wait_until
):
    a, b, c = (voting.owner() for _ in range(3))
    project = registry.register_project().project_id

    def person(owner, name: str) -> registry_pb.Owner:
        return registry_pb.Owner(
            kind=registry_pb.OWNER_KIND_PERSON, name=name, id_number=owner.id_number
        )

    developer = registry_pb.Owner(
        kind=registry_pb.OWNER_KIND_DEVELOPER_UNSOLD,
        name="开发商",
        id_number=registry.new_credit_code(),
    )
    units = registry.admin.RegisterUnits(
        registry_pb.RegisterUnitsRequest(
            request_id=request_id(),
            project_id=project,
            units=[
                registry_pb.Unit(number="1-1-101", exclusive_area_m2="100", owner=person(a, "甲")),
                registry_pb.Unit(number="1-1-102", exclusive_area_m2="50.5", owner=person(a, "甲")),
                registry_pb.Unit(number="1-1-201", exclusive_area_m2="80", owner=person(b, "乙")),
                registry_pb.Unit(number="9-1-101", exclusive_area_m2="90", owner=developer),
                registry_pb.Unit(number="9-1-102", exclusive_area_m2="90", owner=developer),
            ],
        )
    ).units
    assert units[0].owner.owner_key == a.key  # the registry and the owner's token agree

    ensure_topics(registry.settings, REGISTRY_SPEC.topics)
    relay = build_relay(REGISTRY_SPEC, registry.settings, registry.engine)
    start_loop(relay.run, "registry-relay", after=[relay.close])
    driven = HandDriven.of(SPEC.consumers[0], voting.settings, voting.engine)
    try:

        def owner_now(unit_id: str) -> str | None:
            driven.poll()
            return _owner_of(voting, unit_id)

        wait_until(
            lambda: owner_now(units[-1].unit_id) is not None,
            timeout=POLL_TIMEOUT_SECONDS,
            what="the registry's units in voting's read model",
        )
        office = voting.client(Role.SUB_DISTRICT, "天骄街道", ["150602"])
        vote = office.CreateVote(
            pb.CreateVoteRequest(
                request_id=request_id(),
                vote=pb.Vote(
                    project_id=project,
                    title="选聘物业服务企业",
                    matters=[
                        pb.Matter(
                            type=pb.MATTER_TYPE_HIRE_ENTERPRISE,
                            title="续聘",
                            text="续聘现物业服务企业三年。",
                        )
                    ],
                    close_time=timestamp(voting.clock() + dt.timedelta(days=7)),
                ),
            )
        ).vote
        # A's two units are one owner; the developer's unsold units are one owner.
        assert (vote.state, vote.roll_owners, vote.roll_area_cm2) == (
            pb.VOTE_STATE_OPEN,
            3,
            4_105_000,
        )

        # B sells to C after the roll was frozen.
        registry.admin.TransferUnitOwnership(
            registry_pb.TransferUnitOwnershipRequest(
                request_id=request_id(),
                unit_id=units[2].unit_id,
                new_owner=person(c, "丙"),
                reason=registry_pb.TRANSFER_REASON_SALE,
                register_date=date(dt.date.today()),
                register_reference="蒙(2026)东胜区不动产权第0000001号",
            )
        )
        wait_until(
            lambda: owner_now(units[2].unit_id) == c.key,
            timeout=POLL_TIMEOUT_SECONDS,
            what="the transfer in voting's read model",
        )
    finally:
        driven.close()

    # This vote keeps the roll it opened with: B votes, C does not.
    assert cast(b, vote.vote_id, YES).sequence == 1
    refused = c.client.fails(
        "GetMyParticipation", pb.GetMyParticipationRequest(vote_id=vote.vote_id)
    )
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_ON_ROLL")
    same = voting.anonymous.GetVote(pb.GetVoteRequest(vote_id=vote.vote_id)).vote
    assert (same.roll_digest, same.roll_owners) == (vote.roll_digest, vote.roll_owners)

    # The next vote's roll has C in B's place.
    office = voting.client(Role.SUB_DISTRICT, "天骄街道", ["150602"])
    later = office.CreateVote(
        pb.CreateVoteRequest(
            request_id=request_id(),
            vote=pb.Vote(
                project_id=project,
                title="第二次业主大会",
                matters=[
                    pb.Matter(type=pb.MATTER_TYPE_COVENANT, title="管理规约", text="修订管理规约。")
                ],
                close_time=timestamp(voting.clock() + dt.timedelta(days=7)),
            ),
        )
    ).vote
    mine = c.client.GetMyParticipation(pb.GetMyParticipationRequest(vote_id=later.vote_id))
    assert (mine.area_cm2, mine.unit_count) == (800_000, 1)
    gone = b.client.fails("GetMyParticipation", pb.GetMyParticipationRequest(vote_id=later.vote_id))
    assert gone.reason == "NOT_ON_ROLL"
