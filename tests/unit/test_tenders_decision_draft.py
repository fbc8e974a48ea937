"""The draft an owners' decision to hire an enterprise opens: its buyer is the project's
committee, it is refused when no buyer can be placed, its committee sets the terms on the draft
alone, and it is not published before they are set."""

from __future__ import annotations

import datetime as dt

import pytest

from wuye.core.errors import FailedPrecondition
from wuye.tenders import domain
from wuye.tenders.api import tender_message
from wuye.tenders.domain import State, Tender, Weights
from wuye.tenders.v1 import tenders_service_pb2 as pb

NOW = dt.datetime(2026, 12, 3, 8, tzinfo=dt.UTC)
PROJECT = "150602-P00000001"
COMMITTEE = "150602-C00000001"


def draft(project_id: str = PROJECT, committee_id: str | None = COMMITTEE) -> Tender:
    return domain.draft_from_decision(
        "150602-Tdecided",
        "150602",
        project_id,
        committee_id,
        "选聘物业服务企业",
        "150602-V1",
        "M1",
        Weights(40, 40, 20),
        5,
        NOW,
    )


def terms(**changes) -> Tender:
    values = {
        "tender_id": "",
        "district_code": "150602",
        "project_id": PROJECT,
        "buyer": "",
        "title": "某小区物业服务",
        "scope": "住宅小区公共部位",
        "service_standard": "二级",
        "max_price_fen": 2_000_000,
        "weights": Weights(50, 30, 20),
        "price_method": "LOWEST_FULL_MARKS",
        "documents_hash": "a" * 64,
        "committee_size": 7,
        "representatives": ("rep-1",),
        "state": State.DRAFT,
        "created_at": NOW,
        "vote_id": "150602-V1",
        "matter_id": "M1",
        **changes,
    }
    return Tender(**values)


def test_a_decision_opens_a_draft_of_its_committee_linked_to_it_with_no_terms() -> None:
    opened = draft()
    assert (opened.state, opened.buyer, opened.project_id) == (State.DRAFT, COMMITTEE, PROJECT)
    assert (opened.vote_id, opened.matter_id) == ("150602-V1", "M1")
    assert domain.decision_key(opened.vote_id, opened.matter_id) == "150602-V1/M1"
    assert domain.decision_key("", "") is None
    with pytest.raises(FailedPrecondition) as missing:
        domain.check_terms_set(opened)
    assert missing.value.reason == "TENDER_TERMS_MISSING"
    # Its message reads before the terms are set.
    assert tender_message(opened).price_method == pb.PRICE_METHOD_UNSPECIFIED


@pytest.mark.parametrize(
    ("project_id", "committee_id", "reason"),
    [
        ("150603-P00000001", COMMITTEE, "PROJECT_NOT_IN_DISTRICT"),
        (PROJECT, None, "NO_OWNERS_COMMITTEE"),
    ],
)
def test_a_decision_without_a_place_for_its_draft_is_refused(
    project_id: str, committee_id: str | None, reason: str
) -> None:
    with pytest.raises(FailedPrecondition) as refused:
        draft(project_id, committee_id)
    assert refused.value.reason == reason


def test_the_committee_sets_the_terms_of_the_draft_and_of_it_alone() -> None:
    opened = draft()
    completed = domain.complete_decision_draft(opened, terms())
    assert (completed.tender_id, completed.buyer, completed.vote_id) == (
        opened.tender_id,
        COMMITTEE,
        "150602-V1",
    )
    assert (completed.max_price_fen, completed.weights, completed.committee_size) == (
        2_000_000,
        Weights(50, 30, 20),
        7,
    )
    domain.check_terms_set(completed)
    with pytest.raises(FailedPrecondition) as other:
        domain.complete_decision_draft(opened, terms(project_id="150602-P00000002"))
    assert other.value.reason == "DECISION_OF_ANOTHER_PROJECT"
    with pytest.raises(FailedPrecondition) as published:
        domain.complete_decision_draft(domain.transition(completed, domain.Step.PUBLISH), terms())
    assert published.value.reason == "TENDER_ENQUIRIES"
