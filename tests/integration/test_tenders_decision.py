"""An owners' decision to hire an enterprise, produced on Kafka as voting announces it, opens a
draft tender of the project's owners' committee (known from the registry's
OwnersCommitteeFormed), linked to the decision; replayed, it opens nothing more; a decision on
another matter, or for a project with no known committee, opens nothing. The committee then sets
the draft's terms with CreateTender naming the decision, and publishes it."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest
from google.type import date_pb2
from grpc_support import started_servers
from kafka_support import EventProducer, HandDriven
from test_tenders_support import DONGSHENG, PROJECT, TendersServer, digest

from wuye.core.auth import Role
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.tenders.service import SPEC
from wuye.tenders.v1 import tenders_service_pb2 as pb
from wuye.voting.v1 import events_pb2 as voting_events
from wuye.voting.v1 import voting_service_pb2 as voting_pb

pytestmark = pytest.mark.integration

REGISTRY_TOPIC = "wuye.registry.project.v1"
VOTING_TOPIC = "wuye.voting.vote.v1"
COMMITTEE = f"{DONGSHENG}-C00000001"
NO_COMMITTEE_PROJECT = f"{DONGSHENG}-P00000002"
POLL_TIMEOUT_SECONDS = 30.0


@pytest.fixture
def tenders(make_settings):
    with started_servers(make_settings, TendersServer) as start:
        # Nothing here bids: credit is never asked.
        yield start(service_endpoints={"credit": "127.0.0.1:9"})


def decision(project_id: str, matter_type: int, vote_id: str) -> voting_events.DecisionAdopted:
    """As voting builds it when a matter passes."""
    return voting_events.DecisionAdopted(
        vote_id=vote_id,
        project_id=project_id,
        district_code=DONGSHENG,
        matter_id="M1",
        matter_type=matter_type,
        title="选聘物业服务企业",
        result=voting_pb.MatterResult(passed=True),
        decision_date=date_pb2.Date(year=2026, month=12, day=3),
        challenge_deadline=date_pb2.Date(year=2027, month=12, day=3),
    )


def test_a_hire_decision_opens_one_draft_of_the_committee_which_sets_its_terms(
    tenders: TendersServer, wait_until
) -> None:
    driven = HandDriven.of(SPEC.consumers[0], tenders.settings, tenders.engine)
    producer = EventProducer(tenders.settings)
    produce, consumed = producer.produce, driven.past

    hire_vote = f"{DONGSHENG}-V{uuid.uuid4().hex[:8]}"
    hire = decision(PROJECT, voting_pb.MATTER_TYPE_HIRE_ENTERPRISE, hire_vote)
    try:
        formed = registry_events.OwnersCommitteeFormed(
            committee_id=COMMITTEE, project_id=PROJECT, district_code=DONGSHENG
        )
        where = produce(REGISTRY_TOPIC, formed, PROJECT, str(uuid.uuid4()))
        wait_until(lambda: consumed(REGISTRY_TOPIC, *where), timeout=POLL_TIMEOUT_SECONDS)
        event_id = str(uuid.uuid4())
        produce(VOTING_TOPIC, hire, hire_vote, event_id)
        wait_until(
            lambda: (
                driven.poll() >= 0
                and tenders.count("tenders", project_id=PROJECT) == 1
            ),
            timeout=POLL_TIMEOUT_SECONDS,
            what="the draft opened by DecisionAdopted",
        )
        # Delivered again (a rebalance) and under a new event id; a fund matter; a hire for a
        # project whose committee is unknown: none opens a tender.
        others = [
            (hire, hire_vote, event_id),
            (hire, hire_vote, str(uuid.uuid4())),
            (decision(PROJECT, voting_pb.MATTER_TYPE_USE_FUND, "V-fund"), "V-fund", None),
            (
                decision(NO_COMMITTEE_PROJECT, voting_pb.MATTER_TYPE_HIRE_ENTERPRISE, "V-none"),
                "V-none",
                None,
            ),
        ]
        for message, key, again in others:
            where = produce(VOTING_TOPIC, message, key, again or str(uuid.uuid4()))
        wait_until(lambda: consumed(VOTING_TOPIC, *where), timeout=POLL_TIMEOUT_SECONDS)
    finally:
        driven.close()
        producer.close()
    assert tenders.count("tenders") == 1
    assert tenders.count("tenders", project_id=NO_COMMITTEE_PROJECT) == 0

    committee = tenders.client(Role.OWNERS_COMMITTEE, COMMITTEE, [DONGSHENG])
    [draft] = committee.ListTenders(pb.ListTendersRequest(project_id=PROJECT)).tenders
    assert (draft.state, draft.buyer, draft.vote_id, draft.matter_id) == (
        pb.TENDER_STATE_DRAFT,
        COMMITTEE,
        hire_vote,
        "M1",
    )
    assert draft.max_price_fen == 0

    # Not published before its terms are set.
    deadline = tenders.clock() + dt.timedelta(days=30)
    publish = pb.PublishTenderRequest(tender_id=draft.tender_id)
    publish.bid_deadline.FromDatetime(deadline)
    missing = committee.fails("PublishTender", publish)
    assert (missing.code, missing.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "TENDER_TERMS_MISSING",
    )
    # The terms name the decision; only its committee sets them.
    terms = pb.Tender(
        district_code=DONGSHENG,
        project_id=PROJECT,
        title="某小区物业服务",
        scope="住宅小区公共部位、共用设施设备",
        service_standard="住宅物业服务二级",
        max_price_fen=2_000_000_00,
        price_method=pb.PRICE_METHOD_LOWEST_FULL_MARKS,
        documents_hash=digest("招标文件"),
        representatives=["rep-1"],
        vote_id=hire_vote,
        matter_id="M1",
    )
    other = tenders.client(Role.OWNERS_COMMITTEE, f"{DONGSHENG}-C00000009", [DONGSHENG])
    denied = other.fails(
        "CreateTender", pb.CreateTenderRequest(request_id=str(uuid.uuid4()), tender=terms)
    )
    assert denied.code is grpc.StatusCode.PERMISSION_DENIED
    unknown = committee.fails(
        "CreateTender",
        pb.CreateTenderRequest(
            request_id=str(uuid.uuid4()),
            tender=pb.Tender(**{**{f.name: v for f, v in terms.ListFields()}, "matter_id": "M9"}),
        ),
    )
    assert (unknown.code, unknown.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "DECISION_TENDER_NOT_FOUND",
    )
    completed = committee.CreateTender(
        pb.CreateTenderRequest(request_id=str(uuid.uuid4()), tender=terms)
    ).tender
    assert (completed.tender_id, completed.buyer, completed.vote_id) == (
        draft.tender_id,
        COMMITTEE,
        hire_vote,
    )
    assert completed.max_price_fen == 2_000_000_00
    assert committee.PublishTender(publish).tender.state == pb.TENDER_STATE_ENQUIRIES
    assert tenders.count("tenders") == 1
