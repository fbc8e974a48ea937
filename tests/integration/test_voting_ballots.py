"""A vote from creation to count over gRPC, on PostgreSQL: the roll frozen at opening (one owner
of several units once, the developer's unsold units once), ballots, re-votes, a paper ballot,
receipts and participation, the close by the timer, the result, the events (DecisionAdopted
once), and the published log the verifier re-tallies."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from sample_data import DONGSHENG, request_id
from test_voting_support import Owner, VotingServer, cast, export, verify_tally, voting_servers

from wuye.core.auth import Role
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.registry.v1 import registry_service_pb2 as registry_pb
from wuye.voting.v1 import events_pb2 as ev
from wuye.voting.v1 import voting_service_pb2 as pb

pytestmark = pytest.mark.integration

YES, NO, ABSTAIN = pb.CHOICE_YES, pb.CHOICE_NO, pb.CHOICE_ABSTAIN


@pytest.fixture
def start_voting(make_settings):
    with voting_servers(make_settings) as start:
        yield start


@pytest.fixture
def voting(start_voting) -> VotingServer:
    return start_voting()


def test_a_vote_from_creation_to_a_verified_count(voting, tmp_path):
    # Areas in cm²: A owns two units (one owner, summed area), the developer two unsold units
    # (one owner), B, C, D one each. Roll: 5 owners, 1,000,000 cm².
    a, b, c, d, e = (voting.owner() for _ in range(5))
    project = voting.project(
        [(a.key, 150_000), (a.key, 50_000), (b.key, 200_000), (c.key, 100_000), (d.key, 300_000)],
        developer_units=[120_000, 80_000],
    )
    vote = voting.create_vote(project)
    assert vote.state == pb.VOTE_STATE_OPEN  # no notice in this city: open at once
    assert (vote.roll_owners, vote.roll_area_cm2) == (5, 1_000_000)
    assert len(vote.roll_digest) == 64
    assert [m.matter_class for m in vote.matters] == [
        pb.MATTER_CLASS_ORDINARY,
        pb.MATTER_CLASS_SPECIAL,
    ]

    first = cast(a, vote.vote_id, NO, NO)
    assert first.sequence == 1 and first.replaced_receipt == ""
    again = cast(a, vote.vote_id, YES, YES)  # A changes their mind: only this one counts
    assert again.replaced_receipt == first.receipt
    retry = pb.CastBallotRequest(
        request_id=request_id(),
        vote_id=vote.vote_id,
        choices=[
            pb.MatterChoice(matter_id="M1", choice=YES),
            pb.MatterChoice(matter_id="M2", choice=NO),
        ],
    )
    once = b.client.CastBallot(retry)
    assert b.client.CastBallot(retry) == once  # a retry answers the same ballot
    cast(d, vote.vote_id, YES, NO)
    developer_unit = next(
        u for u, (key, _) in project.units.items() if key not in {a.key, b.key, c.key, d.key}
    )
    paper = voting.committee(project).RecordPaperBallot(
        pb.RecordPaperBallotRequest(
            request_id=request_id(),
            vote_id=vote.vote_id,
            unit_id=developer_unit,
            choices=[
                pb.MatterChoice(matter_id="M1", choice=ABSTAIN),
                pb.MatterChoice(matter_id="M2", choice=YES),
            ],
            paper_reference="纸质表决票 2027-001",
        )
    )
    assert paper.sequence == 5

    # Refusals, each precise, none stored.
    outsider = e.client.fails(
        "CastBallot",
        pb.CastBallotRequest(
            request_id=request_id(),
            vote_id=vote.vote_id,
            choices=[
                pb.MatterChoice(matter_id="M1", choice=YES),
                pb.MatterChoice(matter_id="M2", choice=NO),
            ],
        ),
    )
    assert (outsider.code, outsider.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_ON_ROLL")
    bad = c.client.fails(
        "CastBallot",
        pb.CastBallotRequest(
            request_id=request_id(),
            vote_id=vote.vote_id,
            choices=[
                pb.MatterChoice(matter_id="M9", choice=YES),
                pb.MatterChoice(matter_id="M1", choice=pb.CHOICE_UNSPECIFIED),
            ],
        ),
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    # M9 is no matter of the vote, M1 has no choice, and M2 is not answered at all.
    assert set(bad.violations) == {"choices[0].matter_id", "choices[1].choice", "choices"}
    empty = c.client.fails(
        "CastBallot", pb.CastBallotRequest(request_id=request_id(), vote_id=vote.vote_id)
    )
    assert set(empty.violations) == {"choices"}

    # Before the close: receipts are checked by anyone, choices seen only by their owner.
    checked = voting.anonymous.CheckReceipt(
        pb.CheckReceiptRequest(vote_id=vote.vote_id, receipt=first.receipt)
    )
    assert (checked.in_log, checked.last_ballot, checked.sequence) == (True, False, 1)
    mine = a.client.GetMyParticipation(pb.GetMyParticipationRequest(vote_id=vote.vote_id))
    assert mine.area_cm2 == 200_000 and mine.unit_count == 2
    assert [(x.receipt, x.last_ballot) for x in mine.ballots] == [
        (first.receipt, False),
        (again.receipt, True),
    ]
    assert [(m.matter_id, m.choice) for m in mine.ballots[1].choices] == [("M1", YES), ("M2", YES)]
    none_yet = c.client.GetMyParticipation(pb.GetMyParticipationRequest(vote_id=vote.vote_id))
    assert list(none_yet.ballots) == []
    hidden = voting.anonymous.fails("GetResult", pb.GetResultRequest(vote_id=vote.vote_id))
    assert (hidden.code, hidden.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "VOTE_NOT_CLOSED")
    early = voting.committee(project).fails("CloseVote", pb.CloseVoteRequest(vote_id=vote.vote_id))
    assert early.reason == "VOTE_STILL_RUNNING"

    # The close comes: the timer counts it, once however often it runs.
    voting.clock.advance(days=8)
    late = c.client.fails(
        "CastBallot",
        pb.CastBallotRequest(
            request_id=request_id(),
            vote_id=vote.vote_id,
            choices=[
                pb.MatterChoice(matter_id="M1", choice=NO),
                pb.MatterChoice(matter_id="M2", choice=NO),
            ],
        ),
    )
    assert late.reason == "VOTE_NOT_OPEN"
    assert voting.voting.close_due() == 1
    assert voting.voting.close_due() == 0

    # Taking part: A 200k, B 200k (M1 only), D 300k, developer 200k -> M1: 4 owners 900k,
    # M2: 3 owners 700k. Quorum 2/3 of 5 owners (>= 10/3) and of 1,000,000 cm².
    # M1 (ordinary, > 1/2): yes A, B, D = 3 of 4 owners, 700k of 900k: passed.
    # M2 (special, >= 3/4): the same 4 take part (quorum); yes A and the paper ballot = 2 of 4
    # owners: not passed.
    result = voting.anonymous.GetResult(pb.GetResultRequest(vote_id=vote.vote_id))
    m1, m2 = result.result.matters
    assert (result.result.ballots, result.result.counted_ballots) == (5, 4)
    assert (m1.participating_owners, m1.participating_area_cm2) == (4, 900_000)
    assert (m1.yes_owners, m1.yes_area_cm2, m1.abstain_owners) == (3, 700_000, 1)
    assert (m1.quorum_reached, m1.passed) == (True, True)
    assert (m2.participating_owners, m2.yes_owners) == (4, 2)
    assert (m2.quorum_reached, m2.passed) == (True, False)
    assert result.roll_digest == vote.roll_digest

    [closed] = voting.outbox_events(ev.VoteClosed)
    assert closed.log_head == result.log_head == paper.receipt
    [decision] = voting.outbox_events(ev.DecisionAdopted)
    assert (decision.matter_id, decision.matter_type) == ("M1", pb.MATTER_TYPE_USE_FUND)
    assert decision.fund_amount_fen == 38_000_000
    assert list(decision.unit_ids) == sorted(project.units)[:2]
    assert decision.challenge_deadline.year == decision.decision_date.year + 1

    # The published log re-tallies; one byte changed does not.
    log = tmp_path / "log.json"
    log.write_text(export(voting, vote.vote_id))
    verdict = verify_tally(log, "--roll-digest", vote.roll_digest, "--receipt", again.receipt)
    assert verdict.code == 0, verdict.output
    assert "VERIFIED" in verdict.output
    replaced = verify_tally(log, "--receipt", first.receipt)
    assert replaced.code == 1 and "not counted" in replaced.output
    tampered = tmp_path / "tampered.json"
    tampered.write_text(log.read_text().replace('"CHOICE_NO"', '"CHOICE_YES"', 1))
    refused = verify_tally(tampered, "--roll-digest", vote.roll_digest)
    assert refused.code == 1 and "REFUSED" in refused.output


def test_who_may_call_run_and_cancel_a_vote(voting):
    a = voting.owner()
    project = voting.project([(a.key, 100_000)])
    other = voting.project([(a.key, 100_000)])
    stranger = voting.committee(other)
    refused = stranger.fails(
        "CreateVote",
        pb.CreateVoteRequest(
            request_id=request_id(),
            vote=pb.Vote(project_id=project.project_id, title="x"),
        ),
    )
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT  # shape first: nothing read
    with pytest.raises(grpc.RpcError) as denied:
        voting.create_vote(project, client=stranger)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    nobody = voting.project([])
    with pytest.raises(grpc.RpcError) as no_units:
        voting.create_vote(nobody)
    assert no_units.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    owner_creates = a.client.fails(
        "CreateVote", pb.CreateVoteRequest(request_id=request_id(), vote=pb.Vote())
    )
    assert owner_creates.code == grpc.StatusCode.PERMISSION_DENIED

    office = voting.client(Role.SUB_DISTRICT, "天骄街道", [DONGSHENG])
    later = voting.create_vote(project, opens_in=dt.timedelta(hours=1), client=office)
    assert later.state == pb.VOTE_STATE_SCHEDULED
    not_yet = a.client.fails(
        "CastBallot",
        pb.CastBallotRequest(
            request_id=request_id(),
            vote_id=later.vote_id,
            choices=[
                pb.MatterChoice(matter_id="M1", choice=YES),
                pb.MatterChoice(matter_id="M2", choice=NO),
            ],
        ),
    )
    assert not_yet.reason == "VOTE_NOT_OPEN"
    cancelled = office.CancelVote(pb.CancelVoteRequest(vote_id=later.vote_id, reason="议题调整"))
    assert cancelled.vote.state == pb.VOTE_STATE_CANCELLED
    assert cancelled.vote.cancel_reason == "议题调整"
    assert voting.voting.open_due() == 0

    running = voting.create_vote(project)
    refused = voting.committee(project).fails(
        "CancelVote", pb.CancelVoteRequest(vote_id=running.vote_id, reason="x")
    )
    assert refused.reason == "VOTE_ALREADY_OPEN"
    listed = voting.anonymous.ListVotes(pb.ListVotesRequest(project_id=project.project_id))
    assert {v.vote_id: v.state for v in listed.votes} == {
        later.vote_id: pb.VOTE_STATE_CANCELLED,
        running.vote_id: pb.VOTE_STATE_OPEN,
    }


def test_every_server_holds_a_ballot_to_the_roll_frozen_at_opening(start_voting, tmp_path):
    """A server keeps a vote's roll from its first ballot on: before the opening there is none
    to keep, and a transfer after it changes the roll on no server, whether that server read it
    before the transfer or after. Two servers extend one chain, and a retry that reaches the
    other server gets its first answer."""
    first = start_voting()
    a, b = first.owner(), first.owner()
    buyer = first.owner().key
    project = first.project([(a.key, 100_000), (b.key, 80_000)])
    vote = first.create_vote(project, opens_in=dt.timedelta(hours=1))
    not_yet = a.client.fails("CastBallot", _ballot(vote.vote_id, YES, NO))
    assert not_yet.reason == "VOTE_NOT_OPEN"
    first.clock.advance(hours=2)
    assert first.voting.open_due() == 1
    cast_first = cast(a, vote.vote_id, YES, NO, request="ballot-of-a")
    assert cast_first.sequence == 1

    # A sells her unit after the roll was frozen; a second server starts after the sale.
    (sold,) = (unit for unit, (key, _) in project.units.items() if key == a.key)
    first.deliver(
        registry_events.UnitOwnershipTransferred(
            unit_id=sold,
            project_id=project.project_id,
            district_code=DONGSHENG,
            owner_kind=registry_pb.OWNER_KIND_PERSON,
            owner_key=buyer,
            exclusive_area_cm2=100_000,
        )
    )
    second = start_voting()
    second.clock.advance(hours=2)
    for server in (first, second):
        refused = server.client(Role.OWNER, buyer, [DONGSHENG]).fails(
            "CastBallot", _ballot(vote.vote_id, YES, YES)
        )
        assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_ON_ROLL")
    a_there = Owner(a.id_number, a.key, second.client(Role.OWNER, a.key, [DONGSHENG]))

    again = cast(a_there, vote.vote_id, NO, NO)
    assert (again.sequence, again.replaced_receipt) == (2, cast_first.receipt)
    retried = cast(a_there, vote.vote_id, YES, NO, request="ballot-of-a")
    assert (retried.receipt, retried.sequence, retried.replaced_receipt) == (
        cast_first.receipt,
        1,
        "",
    )
    reused = a_there.client.fails(
        "CastBallot", _ballot(vote.vote_id, NO, YES, request="ballot-of-a")
    )
    assert (reused.code, reused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    assert cast(b, vote.vote_id, ABSTAIN, YES).sequence == 3

    first.clock.advance(days=8)
    assert first.voting.close_due() == 1
    closed = first.anonymous.GetVote(pb.GetVoteRequest(vote_id=vote.vote_id)).vote
    assert (closed.result.ballots, closed.result.counted_ballots) == (3, 2)
    log = tmp_path / "log.json"
    log.write_text(export(first, vote.vote_id))
    verdict = verify_tally(log, "--roll-digest", closed.roll_digest, "--receipt", again.receipt)
    assert verdict.code == 0, verdict.output


def _ballot(vote_id: str, *choices: int, request: str | None = None) -> pb.CastBallotRequest:
    return pb.CastBallotRequest(
        request_id=request or request_id(),
        vote_id=vote_id,
        choices=[pb.MatterChoice(matter_id=f"M{n + 1}", choice=c) for n, c in enumerate(choices)],
    )
