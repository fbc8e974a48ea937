"""A tender's life on PostgreSQL, with the credit service answering over gRPC: the minimum
tendering period, questions, bids refused for the blacklisted and unfiled with their grade
named, sealed content, a grade change after bidding counted at the deadline, the timer's
opening, the committee's draw verified from the export, scoring, award, a complaint that
suspends the tender, completion and the contract; and an unsuccessful tender appointed
directly."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.protobuf import json_format
from google.type import date_pb2
from sample_data import new_credit_code
from test_tenders_support import (
    PROJECT,
    blacklisted,
    credit_and_tenders,
    digest,
    filed,
)

from wuye.core.auth import Role
from wuye.tenders import verify
from wuye.tenders.commands import TENDER_TOPIC
from wuye.tenders.v1 import events_pb2 as ev
from wuye.tenders.v1 import tenders_service_pb2 as pb

pytestmark = pytest.mark.integration


@pytest.fixture
def servers(make_settings, pg_url):
    with credit_and_tenders(make_settings, pg_url) as both:
        yield both


def test_a_whole_tender_with_credit_answering(servers, tmp_path, capsys) -> None:
    credit, tenders = servers
    first, second, third = filed(credit), filed(credit), filed(credit)
    banned = blacklisted(credit)
    never_filed = new_credit_code()
    experts = tenders.register_experts(7, conflicts={0: first})
    developer = tenders.developer()

    tender = tenders.create()
    assert tender.state == pb.TENDER_STATE_DRAFT and tender.weights.price == 40
    tender_id = tender.tender_id

    # With the defaults a deadline 19 days away is refused; 21 days is taken.
    short = developer.fails(
        "PublishTender", _publish_request(tender_id, tenders.clock() + dt.timedelta(days=19))
    )
    assert short.code is grpc.StatusCode.INVALID_ARGUMENT and "at least 20 days" in short.message
    assert tenders.get(tender_id).state == pb.TENDER_STATE_DRAFT
    assert tenders.publish(tender_id, days=21).state == pb.TENDER_STATE_ENQUIRIES

    # Questions in the enquiry period, published without the asker; no bids yet.
    question = (
        tenders.enterprise(first)
        .AskQuestion(pb.AskQuestionRequest(tender_id=tender_id, text="保安人数有无要求？"))
        .question
    )
    developer.AnswerQuestion(
        pb.AnswerQuestionRequest(
            tender_id=tender_id, question_id=question.question_id, answer="不少于12人"
        )
    )
    early = tenders.enterprise(first).fails("SubmitBid", _bid(tender_id, 100))
    assert early.reason == "TENDER_ENQUIRIES"
    assert tenders.tick(days=10) == 1
    shown = tenders.get(tender_id)
    assert shown.state == pb.TENDER_STATE_TENDERING
    assert [(q.text, q.answer) for q in shown.questions] == [("保安人数有无要求？", "不少于12人")]
    assert first not in str(shown)

    # Blacklisted and unfiled enterprises are refused at once, with the reason; nothing stored.
    refused = tenders.enterprise(banned).fails("SubmitBid", _bid(tender_id, 150_000_00))
    assert refused.code is grpc.StatusCode.FAILED_PRECONDITION
    assert refused.reason == "BIDDER_BLACKLISTED" and "grade" in refused.message
    assert "serious record" in refused.message
    never = tenders.enterprise(never_filed).fails("SubmitBid", _bid(tender_id, 150_000_00))
    assert never.reason == "BIDDER_UNFILED" and "C_UNFILED" in never.message
    over = tenders.enterprise(first).fails("SubmitBid", _bid(tender_id, 2_000_000_01))
    assert over.code is grpc.StatusCode.INVALID_ARGUMENT and "maximum price" in over.message
    assert tenders.count("bids") == 0

    # Three bids; a second bid of one enterprise replaces its first.
    assert not tenders.bid(tender_id, first, 180_000_00).replaced
    tenders.bid(tender_id, second, 170_000_00)
    tenders.bid(tender_id, third, 190_000_00)
    again = tenders.bid(tender_id, first, 160_000_00)
    assert again.replaced and tenders.count("bids") == 3

    # Sealed: no price anywhere before the opening, the stored content is ciphertext.
    sealed = tenders.get(tender_id)
    assert sealed.bids == 3 and not sealed.opened_bids and not sealed.committee.seed_commitment
    with tenders.engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT sealed FROM bids").scalars().all()
    assert all(b"160000" not in bytes(s) and b"price" not in bytes(s) for s in stored)
    assert all(
        b"16000000" not in e.SerializeToString() for e in tenders.outbox_events(ev.BidSubmitted)
    )

    # A grade change after bidding counts at the deadline: the second bidder is blacklisted.
    credit.record(second, "ADMINISTRATIVE_PENALTY")
    not_yet = developer.fails("OpenBids", pb.OpenBidsRequest(tender_id=tender_id))
    assert not_yet.reason == "BID_DEADLINE_NOT_PASSED"
    assert tenders.tick(days=11) == 1
    opened = tenders.get(tender_id)
    assert opened.state == pb.TENDER_STATE_OPENED and opened.opened_by == "timer"
    by_code = {b.credit_code: b for b in opened.opened_bids}
    assert by_code[first].price_fen == 160_000_00
    assert digest(by_code[first].content) == by_code[first].receipt == again.receipt
    assert "blacklisted" in by_code[second].rejection and not by_code[first].rejection
    commitment = opened.committee.seed_commitment
    assert commitment and not opened.committee.seed
    assert sorted(opened.committee.bidders) == sorted([first, second, third])

    # The committee: drawn, never the expert in conflict with a bidder, verifiable.
    authority = tenders.authority()
    drawn = authority.DrawCommittee(pb.DrawCommitteeRequest(tender_id=tender_id)).tender
    assert drawn.state == pb.TENDER_STATE_EVALUATION
    assert len(drawn.committee.experts) == 4 and experts[0] not in drawn.committee.experts
    export = tmp_path / "tender.json"
    export.write_text(json_format.MessageToJson(pb.GetTenderResponse(tender=drawn)))
    assert verify.main([str(export), "--commitment", commitment]) == 0
    assert capsys.readouterr().out.startswith("VERIFIED:")

    # Scores: the award waits for every member's; the rejected bid cannot be scored.
    members = [tenders.client(Role.DEVELOPER, "rep-1", ["150602"])] + [
        tenders.expert(e) for e in drawn.committee.experts
    ]
    gone = members[1].fails("ScoreBid", _score(tender_id, second, "90"))
    assert gone.reason == "BID_NOT_FOUND"
    outsider = tenders.expert(experts[0]).fails("ScoreBid", _score(tender_id, first, "90"))
    assert outsider.reason == "NOT_A_COMMITTEE_MEMBER"
    for member in members:
        member.ScoreBid(_score(tender_id, first, "80"))
    incomplete = developer.fails("Award", pb.AwardRequest(tender_id=tender_id))
    assert incomplete.reason == "EVALUATION_INCOMPLETE"
    for member in members:
        member.ScoreBid(_score(tender_id, third, "95.5"))
    evaluation = developer.GetEvaluation(pb.GetEvaluationRequest(tender_id=tender_id))
    assert evaluation.complete and [r.credit_code for r in evaluation.ranking] == [first, third]
    top = evaluation.ranking[0]
    assert top.price_score == "100.00" and top.credit_grade and "->" in top.credit_explanation
    assert len(tenders.outbox_events(ev.TenderEvaluated)) == 1

    awarded = developer.Award(pb.AwardRequest(tender_id=tender_id)).tender
    assert awarded.state == pb.TENDER_STATE_AWARDED and awarded.winner == first

    # A complaint suspends the tender until it is decided; dismissed, the tender goes on.
    complaint = (
        tenders.enterprise(third)
        .FileComplaint(pb.FileComplaintRequest(tender_id=tender_id, reason="评分不公"))
        .complaint
    )
    assert tenders.get(tender_id).suspended
    suspended = developer.fails("CompleteTender", pb.CompleteTenderRequest(tender_id=tender_id))
    assert suspended.reason == "TENDER_SUSPENDED"
    authority.DecideComplaint(
        pb.DecideComplaintRequest(
            tender_id=tender_id,
            complaint_id=complaint.complaint_id,
            outcome=pb.COMPLAINT_OUTCOME_DISMISSED,
            decision="评分符合招标文件",
        )
    )
    running = developer.fails("CompleteTender", pb.CompleteTenderRequest(tender_id=tender_id))
    assert running.reason == "STANDSTILL_RUNNING"
    tenders.clock.advance(days=8)
    late = tenders.enterprise(third).fails(
        "FileComplaint", pb.FileComplaintRequest(tender_id=tender_id, reason="再次投诉")
    )
    assert late.reason == "STANDSTILL_OVER"

    completed = developer.CompleteTender(pb.CompleteTenderRequest(tender_id=tender_id)).tender
    assert completed.state == pb.TENDER_STATE_COMPLETE
    developer.SignContract(
        pb.SignContractRequest(
            tender_id=tender_id,
            contract_hash=digest("合同"),
            contract_start=date_pb2.Date(year=2027, month=1, day=1),
            contract_end=date_pb2.Date(year=2029, month=12, day=31),
        )
    )
    [signed] = tenders.outbox_events(ev.ContractSigned)
    assert (signed.project_id, signed.credit_code) == (PROJECT, first)
    [award] = tenders.anonymous.ListAwards(pb.ListAwardsRequest(district_code="150602")).awards
    assert (award.winner, award.price_fen) == (first, 160_000_00)
    # The filing and contract deadlines were met: nothing is flagged later.
    tenders.tick(days=40)
    assert not tenders.outbox_events(ev.TenderDeadlineMissed)


def test_too_few_bids_are_not_opened_and_the_district_may_appoint_directly(servers) -> None:
    credit, tenders = servers
    first, second, good = filed(credit), filed(credit), filed(credit)
    banned = blacklisted(credit)
    tender_id = tenders.create().tender_id
    tenders.publish(tender_id, days=21)
    tenders.tick(days=10)
    tenders.bid(tender_id, first, 100_000_00)
    tenders.bid(tender_id, second, 110_000_00)
    tenders.enterprise(second).WithdrawBid(pb.WithdrawBidRequest(tender_id=tender_id))
    tenders.bid(tender_id, second, 120_000_00)
    tenders.clock.advance(days=11)
    developer = tenders.developer()
    failed = developer.OpenBids(pb.OpenBidsRequest(tender_id=tender_id)).tender
    assert failed.state == pb.TENDER_STATE_UNSUCCESSFUL and not failed.opened_bids
    assert "fewer than 3" in failed.reason
    assert tenders.outbox_events(ev.TenderUnsuccessful)[0].bids == 2

    authority = tenders.authority()
    refused = authority.fails(
        "ApproveDirectAppointment", _appoint(tender_id, banned, "两家投标，经批准直接委托")
    )
    assert refused.reason == "BIDDER_BLACKLISTED"
    appointed = authority.ApproveDirectAppointment(
        _appoint(tender_id, good, "两家投标，经批准直接委托")
    ).tender
    assert appointed.state == pb.TENDER_STATE_COMPLETE and appointed.winner == good
    again = developer.fails("ReTender", pb.ReTenderRequest(tender_id=tender_id))
    assert again.reason == "TENDER_COMPLETE"

    # The appointee refuses to sign: credit's rule makes it a bad record.
    authority.RecordMisconduct(
        pb.RecordMisconductRequest(
            tender_id=tender_id,
            credit_code=good,
            kind=pb.MISCONDUCT_KIND_REFUSED_TO_SIGN,
            reason="中标后拒签合同",
        )
    )
    [misconduct] = tenders.outbox_events(ev.MisconductFound)
    credit.clock.offset = tenders.clock.offset  # credit reads the record when it happened
    credit.deliver(misconduct, topic=TENDER_TOPIC)
    records = credit.admin.report(good).records
    assert [(r.record_type, r.reason) for r in records] == [("TENDER_MISCONDUCT", "中标后拒签合同")]
    # The contract is never signed: the timer flags it once.
    tenders.tick(days=31)
    tenders.tick(days=1)
    assert [e.deadline for e in tenders.outbox_events(ev.TenderDeadlineMissed)] == ["CONTRACT"]


def _publish_request(tender_id: str, deadline: dt.datetime) -> pb.PublishTenderRequest:
    request = pb.PublishTenderRequest(tender_id=tender_id)
    request.bid_deadline.FromDatetime(deadline)
    return request


def _bid(tender_id: str, price_fen: int) -> pb.SubmitBidRequest:
    return pb.SubmitBidRequest(
        tender_id=tender_id, price_fen=price_fen, technical_documents=[digest("方案")], staff=10
    )


def _score(tender_id: str, credit_code: str, score: str) -> pb.ScoreBidRequest:
    return pb.ScoreBidRequest(tender_id=tender_id, credit_code=credit_code, technical_score=score)


def _appoint(tender_id: str, credit_code: str, reason: str):
    return pb.ApproveDirectAppointmentRequest(
        tender_id=tender_id, credit_code=credit_code, reason=reason
    )
