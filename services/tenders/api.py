"""The gRPC face of tenders: requests in, use cases run, responses out."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from wuye.core.auth import AUTHORITIES, Role, allow, public
from wuye.core.context import current
from wuye.core.errors import Violations
from wuye.core.events import run_idempotent
from wuye.core.grpcserver import Route
from wuye.core.ids import credit_code_problem
from wuye.core.paging import next_token, read_page
from wuye.core.wire import check_request_id, check_text, date_of, enum_name, moment_of, timestamp
from wuye.tenders import domain
from wuye.tenders.commands import Tenders
from wuye.tenders.domain import Bid, Complaint, Expert, Question, State, Tender, Weights
from wuye.tenders.v1 import tenders_service_pb2 as pb
from wuye.tenders.v1 import tenders_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TendersService"].full_name

_AUTHORITY = tuple(AUTHORITIES)
_BUYERS = (*_AUTHORITY, Role.DEVELOPER, Role.OWNERS_COMMITTEE)

ROUTES: dict[str, Route] = {
    # Public (公开): no bid content before the opening, no personal data.
    "GetTender": Route(public(), "tender_id"),
    "ListTenders": Route(public(), "district_code"),
    "ListAwards": Route(public(), "district_code"),
    "CreateTender": Route(allow(*_BUYERS), "tender.district_code"),
    "PublishTender": Route(allow(*_BUYERS), "tender_id"),
    "AmendTender": Route(allow(*_BUYERS), "tender_id"),
    "AskQuestion": Route(allow(Role.ENTERPRISE), "tender_id"),
    "AnswerQuestion": Route(allow(*_BUYERS), "tender_id"),
    "SubmitBid": Route(allow(Role.ENTERPRISE), "tender_id"),
    "WithdrawBid": Route(allow(Role.ENTERPRISE), "tender_id"),
    "OpenBids": Route(allow(*_BUYERS), "tender_id"),
    "RegisterExpert": Route(allow(*_AUTHORITY)),
    "DrawCommittee": Route(allow(*_AUTHORITY), "tender_id"),
    "ScoreBid": Route(allow(Role.EXPERT, Role.DEVELOPER, Role.OWNERS_COMMITTEE), "tender_id"),
    "GetEvaluation": Route(allow(*_BUYERS, Role.EXPERT), "tender_id"),
    "Award": Route(allow(*_BUYERS), "tender_id"),
    "FileComplaint": Route(allow(Role.ENTERPRISE), "tender_id"),
    "DecideComplaint": Route(allow(*_AUTHORITY), "tender_id"),
    "CompleteTender": Route(allow(*_BUYERS), "tender_id"),
    "SignContract": Route(allow(*_BUYERS), "tender_id"),
    "CancelTender": Route(allow(*_BUYERS), "tender_id"),
    "ReTender": Route(allow(*_BUYERS), "tender_id"),
    "ApproveDirectAppointment": Route(
        allow(Role.DISTRICT_AUTHORITY, Role.CITY_AUTHORITY), "tender_id"
    ),
    "RecordMisconduct": Route(allow(*_AUTHORITY), "tender_id"),
}

_HASH = re.compile(r"[0-9a-f]{64}")
_ID_LENGTH = 64
# Two halves of the 80 characters the decision's key holds.
_DECISION_ID_LENGTH = 39
# The ranking's members' scores keep one decimal.
_SCORE_PLACES = 1
_OUTCOMES = ("DISMISSED", "REEVALUATE", "CANCEL")


def _hash(v: Violations, field: str, value: str) -> None:
    v.check(bool(_HASH.fullmatch(value)), field, "is a SHA-256 digest: 64 lowercase hex digits")


def _credit_code(v: Violations, field: str, code: str) -> None:
    problem = credit_code_problem(code)
    v.check(problem is None, field, f"is not a credit code: {problem}")


class TendersApi(pb_grpc.TendersServiceServicer):
    def __init__(self, tenders: Tenders) -> None:
        self._tenders = tenders
        self._settings = tenders.settings
        self._city = dict(tenders.settings.city_districts)

    def _text(self, v: Violations, field: str, value: str, limit: int = 0) -> None:
        check_text(v, field, value, limit or self._settings.max_text_length)

    def _page(self, request, filters):
        return read_page(
            request.page_size,
            request.page_token,
            filters,
            self._settings.page_size_default,
            self._settings.page_size_max,
        )

    def _public(self, tender_id: str) -> pb.Tender:
        return tender_message(*self._tenders.get_tender(tender_id))

    # ------------------------------------------------------------ reads

    def GetTender(self, request: pb.GetTenderRequest, context) -> pb.GetTenderResponse:
        return pb.GetTenderResponse(tender=self._public(request.tender_id))

    def ListTenders(self, request: pb.ListTendersRequest, context) -> pb.ListTendersResponse:
        v = Violations()
        state = enum_name(pb.TenderState, "TENDER_STATE", request.state)
        v.check(request.state == 0 or bool(state), "state", "is not a tender state")
        v.raise_if_any()
        page = self._page(request, [request.district_code, request.project_id, request.state])
        found = self._tenders.list_tenders(
            request.district_code,
            request.project_id,
            (State(state),) if state else (),
            page.after,
            page.size + 1,
        )
        return pb.ListTendersResponse(
            tenders=[tender_message(t) for t in found[: page.size]],
            next_page_token=next_token(page, [t.tender_id for t in found]),
        )

    def ListAwards(self, request: pb.ListAwardsRequest, context) -> pb.ListAwardsResponse:
        page = self._page(request, [request.district_code])
        found = self._tenders.awards(request.district_code, page.after, page.size + 1)
        return pb.ListAwardsResponse(
            awards=[
                pb.AwardSummary(
                    tender_id=t.tender_id,
                    district_code=t.district_code,
                    project_id=t.project_id,
                    winner=t.winner,
                    price_fen=ranked.price_fen if ranked else 0,
                    total_score=domain.shown(ranked.total) if ranked else "",
                    state=_state(t.state),
                    award_time=timestamp(t.awarded_at),
                    standstill_end_time=timestamp(t.standstill_end),
                    direct_appointment_reason=t.reason if ranked is None else "",
                )
                for t, ranked in found[: page.size]
            ],
            next_page_token=next_token(page, [t.tender_id for t, _ in found]),
        )

    # ------------------------------------------------------------ drafting and publication

    def CreateTender(self, request: pb.CreateTenderRequest, context) -> pb.CreateTenderResponse:
        v = Violations()
        s = self._settings
        check_request_id(v, request.request_id)
        t = request.tender
        v.check(t.district_code in self._city, "tender.district_code", "is not a district")
        v.check(
            t.project_id.startswith(f"{t.district_code}-") and len(t.project_id) <= 32,
            "tender.project_id",
            "is a project id of the tender's district",
        )
        self._text(v, "tender.title", t.title)
        self._text(v, "tender.scope", t.scope)
        self._text(v, "tender.service_standard", t.service_standard)
        v.check(t.max_price_fen > 0, "tender.max_price_fen", "is a price in fen, above 0")
        method = enum_name(pb.PriceMethod, "PRICE_METHOD", t.price_method)
        v.check(bool(method), "tender.price_method", "is required: a price method")
        _hash(v, "tender.documents_hash", t.documents_hash)
        weights = (
            Weights(t.weights.price, t.weights.technical, t.weights.credit)
            if t.HasField("weights")
            else s.default_weights
        )
        domain.check_weights(weights, v, "tender.weights")
        size = t.committee_size or s.committee_min_size
        v.check(
            size <= s.committee_max_size,
            "tender.committee_size",
            f"at most {s.committee_max_size} members",
        )
        representatives = tuple(t.representatives)
        for n, member in enumerate(representatives[:size]):
            self._text(v, f"tender.representatives[{n}]", member, _ID_LENGTH)
        v.check(
            len(set(representatives)) == len(representatives),
            "tender.representatives",
            "names each member once",
        )
        domain.check_committee(
            size,
            len(representatives),
            s.committee_min_size,
            s.committee_expert_share,
            v,
            "tender.committee_size",
        )
        v.check(
            bool(t.vote_id) == bool(t.matter_id),
            "tender.matter_id" if t.vote_id else "tender.vote_id",
            "the owners' decision is named by its vote_id and matter_id together",
        )
        for field, value in (("tender.vote_id", t.vote_id), ("tender.matter_id", t.matter_id)):
            v.check(len(value) <= _DECISION_ID_LENGTH, field, f"at most {_DECISION_ID_LENGTH}")
        v.raise_if_any()
        draft = Tender(
            tender_id="",
            district_code=t.district_code,
            project_id=t.project_id,
            buyer="",
            title=t.title,
            scope=t.scope,
            service_standard=t.service_standard,
            max_price_fen=t.max_price_fen,
            weights=weights,
            price_method=method,
            documents_hash=t.documents_hash,
            committee_size=size,
            representatives=representatives,
            state=State.DRAFT,
            created_at=self._tenders.now(),
            vote_id=t.vote_id,
            matter_id=t.matter_id,
        )

        def build(connection):
            created = self._tenders.create_tender(connection, draft)
            return pb.CreateTenderResponse(tender=tender_message(created))

        return run_idempotent(
            self._tenders.engine,
            pii_key=s.pii_key,
            method="CreateTender",
            request_id=request.request_id,
            request=request,
            response_type=pb.CreateTenderResponse,
            command=build,
        )

    def PublishTender(self, request: pb.PublishTenderRequest, context):
        v = Violations()
        deadline = moment_of(
            v, "bid_deadline", request.bid_deadline, request.HasField("bid_deadline")
        )
        v.raise_if_any()
        self._tenders.publish(request.tender_id, deadline)
        return pb.PublishTenderResponse(tender=self._public(request.tender_id))

    def AmendTender(self, request: pb.AmendTenderRequest, context) -> pb.AmendTenderResponse:
        v = Violations()
        _hash(v, "documents_hash", request.documents_hash)
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        self._tenders.amend(request.tender_id, request.documents_hash)
        return pb.AmendTenderResponse(tender=self._public(request.tender_id))

    def AskQuestion(self, request: pb.AskQuestionRequest, context) -> pb.AskQuestionResponse:
        v = Violations()
        self._text(v, "text", request.text)
        v.raise_if_any()
        return pb.AskQuestionResponse(
            question=_question(self._tenders.ask(request.tender_id, request.text))
        )

    def AnswerQuestion(self, request: pb.AnswerQuestionRequest, context):
        v = Violations()
        self._text(v, "answer", request.answer)
        v.raise_if_any()
        answered = self._tenders.answer(request.tender_id, request.question_id, request.answer)
        return pb.AnswerQuestionResponse(question=_question(answered))

    # ------------------------------------------------------------ bids

    def SubmitBid(self, request: pb.SubmitBidRequest, context) -> pb.SubmitBidResponse:
        v = Violations()
        s = self._settings
        v.check(request.price_fen > 0, "price_fen", "is a price in fen, above 0")
        documents = tuple(request.technical_documents)
        v.check(
            0 < len(documents) <= s.max_bid_documents,
            "technical_documents",
            f"1 to {s.max_bid_documents} documents' hashes",
        )
        for n, digest in enumerate(documents[: s.max_bid_documents]):
            _hash(v, f"technical_documents[{n}]", digest)
        v.check(0 < request.staff <= s.max_staff, "staff", f"from 1 to {s.max_staff}")
        v.raise_if_any()
        receipt, at, replaced = self._tenders.submit_bid(
            request.tender_id, request.price_fen, documents, request.staff
        )
        return pb.SubmitBidResponse(
            tender_id=request.tender_id,
            credit_code=context_subject(),
            receipt=receipt,
            submit_time=timestamp(at),
            replaced=replaced,
        )

    def WithdrawBid(self, request: pb.WithdrawBidRequest, context) -> pb.WithdrawBidResponse:
        self._tenders.withdraw_bid(request.tender_id)
        return pb.WithdrawBidResponse(tender_id=request.tender_id)

    def OpenBids(self, request: pb.OpenBidsRequest, context) -> pb.OpenBidsResponse:
        self._tenders.open_bids(request.tender_id, context_subject())
        return pb.OpenBidsResponse(tender=self._public(request.tender_id))

    # ------------------------------------------------------------ committee and evaluation

    def RegisterExpert(self, request: pb.RegisterExpertRequest, context):
        v = Violations()
        s = self._settings
        e = request.expert
        self._text(v, "expert.expert_id", e.expert_id, _ID_LENGTH)
        self._text(v, "expert.name", e.name)
        v.check(
            len(e.specialities) <= s.max_specialities,
            "expert.specialities",
            f"at most {s.max_specialities}",
        )
        for n, speciality in enumerate(e.specialities[: s.max_specialities]):
            self._text(v, f"expert.specialities[{n}]", speciality, _ID_LENGTH)
        v.check(
            0 < len(e.district_codes) <= len(self._city),
            "expert.district_codes",
            "name at least one district",
        )
        for n, code in enumerate(e.district_codes[: len(self._city)]):
            v.check(code in self._city, f"expert.district_codes[{n}]", "is not a district")
        v.check(
            len(e.conflicts) <= s.max_conflicts, "expert.conflicts", f"at most {s.max_conflicts}"
        )
        for n, code in enumerate(e.conflicts[: s.max_conflicts]):
            _credit_code(v, f"expert.conflicts[{n}]", code)
        v.raise_if_any()
        expert = self._tenders.register_expert(
            Expert(
                e.expert_id,
                tuple(dict.fromkeys(e.specialities)),
                tuple(dict.fromkeys(e.district_codes)),
                tuple(sorted(set(e.conflicts))),
            ),
            e.name,
        )
        return pb.RegisterExpertResponse(expert=_expert(expert))

    def DrawCommittee(self, request: pb.DrawCommitteeRequest, context):
        self._tenders.draw_committee(request.tender_id)
        return pb.DrawCommitteeResponse(tender=self._public(request.tender_id))

    def ScoreBid(self, request: pb.ScoreBidRequest, context) -> pb.ScoreBidResponse:
        v = Violations()
        _credit_code(v, "credit_code", request.credit_code)
        score = _score(v, "technical_score", request.technical_score)
        v.raise_if_any()
        self._tenders.score_bid(request.tender_id, request.credit_code, score)
        return pb.ScoreBidResponse(
            tender_id=request.tender_id,
            credit_code=request.credit_code,
            technical_score=str(score),
        )

    def GetEvaluation(self, request: pb.GetEvaluationRequest, context):
        tender, ranked = self._tenders.evaluation(request.tender_id)
        return pb.GetEvaluationResponse(
            tender_id=tender.tender_id,
            weights=_weights(tender.weights),
            price_method=pb.PriceMethod.Value(f"PRICE_METHOD_{tender.price_method}"),
            ranking=[
                pb.RankedBid(
                    rank=n,
                    credit_code=r.credit_code,
                    price_fen=r.price_fen,
                    price_score=domain.shown(r.price_score),
                    technical_score=domain.shown(r.technical_score),
                    credit_score=domain.shown(r.credit_score),
                    total_score=domain.shown(r.total),
                    credit_grade=r.bid.standing.grade,
                    credit_explanation=r.bid.standing.explanation,
                    abnormally_low=r.bid.abnormally_low,
                    scored_by=r.scored_by,
                )
                for n, r in enumerate(ranked, start=1)
            ],
            tie_break=domain.TIE_BREAK,
            complete=domain.evaluation_complete(ranked, tender.committee_size),
        )

    # ------------------------------------------------------------ award and after

    def Award(self, request: pb.AwardRequest, context) -> pb.AwardResponse:
        self._tenders.award(request.tender_id)
        return pb.AwardResponse(tender=self._public(request.tender_id))

    def FileComplaint(self, request: pb.FileComplaintRequest, context):
        v = Violations()
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        complaint = self._tenders.file_complaint(request.tender_id, request.reason)
        return pb.FileComplaintResponse(complaint=_complaint(complaint))

    def DecideComplaint(self, request: pb.DecideComplaintRequest, context):
        v = Violations()
        outcome = enum_name(pb.ComplaintOutcome, "COMPLAINT_OUTCOME", request.outcome)
        v.check(outcome in _OUTCOMES, "outcome", "is required: DISMISSED, REEVALUATE or CANCEL")
        self._text(v, "decision", request.decision)
        v.raise_if_any()
        complaint, _ = self._tenders.decide_complaint(
            request.tender_id, request.complaint_id, outcome, request.decision
        )
        return pb.DecideComplaintResponse(
            complaint=_complaint(complaint), tender=self._public(request.tender_id)
        )

    def CompleteTender(self, request: pb.CompleteTenderRequest, context):
        self._tenders.complete(request.tender_id)
        return pb.CompleteTenderResponse(tender=self._public(request.tender_id))

    def SignContract(self, request: pb.SignContractRequest, context):
        v = Violations()
        _hash(v, "contract_hash", request.contract_hash)
        start = date_of(
            v, "contract_start", request.contract_start, request.HasField("contract_start")
        )
        end = date_of(v, "contract_end", request.contract_end, request.HasField("contract_end"))
        if start and end:
            v.check(start < end, "contract_end", "is after contract_start")
        v.raise_if_any()
        self._tenders.sign_contract(request.tender_id, request.contract_hash, start, end)
        return pb.SignContractResponse(tender=self._public(request.tender_id))

    def CancelTender(self, request: pb.CancelTenderRequest, context):
        v = Violations()
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        self._tenders.cancel(request.tender_id, request.reason)
        return pb.CancelTenderResponse(tender=self._public(request.tender_id))

    def ReTender(self, request: pb.ReTenderRequest, context) -> pb.ReTenderResponse:
        draft = self._tenders.retender(request.tender_id)
        return pb.ReTenderResponse(tender=tender_message(draft))

    def ApproveDirectAppointment(self, request: pb.ApproveDirectAppointmentRequest, context):
        v = Violations()
        _credit_code(v, "credit_code", request.credit_code)
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        self._tenders.appoint_directly(request.tender_id, request.credit_code, request.reason)
        return pb.ApproveDirectAppointmentResponse(tender=self._public(request.tender_id))

    def RecordMisconduct(self, request: pb.RecordMisconductRequest, context):
        v = Violations()
        _credit_code(v, "credit_code", request.credit_code)
        kind = enum_name(pb.MisconductKind, "MISCONDUCT_KIND", request.kind)
        v.check(bool(kind), "kind", "is required: REFUSED_TO_SIGN or FALSE_DOCUMENTS")
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        self._tenders.record_misconduct(
            request.tender_id, request.credit_code, kind, request.reason
        )
        return pb.RecordMisconductResponse(
            tender_id=request.tender_id, credit_code=request.credit_code
        )


# ---------------------------------------------------------------- wire -> domain


def context_subject() -> str:
    return current().principal.subject


def _score(v: Violations, field: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not text.isascii() or not value.is_finite() or value.as_tuple().exponent < -_SCORE_PLACES:
        v.add(field, "is a decimal number with at most one decimal, e.g. 85.5")
        return Decimal(0)
    domain.check_technical_score(value, v, field)
    return value


# ---------------------------------------------------------------- domain -> wire


def _state(state: State) -> int:
    return pb.TenderState.Value(f"TENDER_STATE_{state.value}")


def _weights(w: Weights) -> pb.Weights:
    return pb.Weights(price=w.price, technical=w.technical, credit=w.credit)


def _question(q: Question) -> pb.Question:
    return pb.Question(
        question_id=q.question_id,
        text=q.text,
        answer=q.answer,
        ask_time=timestamp(q.asked_at),
        answer_time=timestamp(q.answered_at),
    )


def _expert(e: Expert) -> pb.Expert:
    return pb.Expert(
        expert_id=e.expert_id,
        specialities=list(e.specialities),
        district_codes=list(e.districts),
        conflicts=list(e.conflicts),
    )


def _complaint(c: Complaint) -> pb.Complaint:
    return pb.Complaint(
        complaint_id=c.complaint_id,
        tender_id=c.tender_id,
        credit_code=c.credit_code,
        reason=c.reason,
        outcome=pb.ComplaintOutcome.Value(f"COMPLAINT_OUTCOME_{c.outcome}") if c.outcome else 0,
        decision=c.decision,
        file_time=timestamp(c.filed_at),
        decide_time=timestamp(c.decided_at),
    )


def _opened(b: Bid) -> pb.OpenedBid:
    return pb.OpenedBid(
        credit_code=b.credit_code,
        receipt=b.receipt,
        price_fen=b.content.price_fen,
        technical_documents=list(b.content.technical_documents),
        staff=b.content.staff,
        salt=b.content.salt,
        content=b.content.sealed_text().decode(),
        abnormally_low=b.abnormally_low,
        rejection=b.rejection,
        submit_time=timestamp(b.submitted_at),
    )


def _committee(t: Tender) -> pb.Committee | None:
    if not t.seed_commitment:
        return None
    lists = t.lists
    return pb.Committee(
        algorithm_version=lists["algorithm_version"],
        seed_commitment=t.seed_commitment,
        # The seed stays secret until the draw.
        seed=t.seed if t.experts else "",
        size=lists["size"],
        representatives=lists["representatives"],
        pool=[
            pb.Expert(
                expert_id=expert_id,
                specialities=specialities,
                district_codes=districts,
                conflicts=conflicts,
            )
            for expert_id, specialities, districts, conflicts in lists["pool"]
        ],
        bidders=lists["bidders"],
        experts=list(t.experts),
        commit_time=timestamp(t.committed_at),
    )


def tender_message(
    t: Tender, questions: list[Question] = (), bids: int = 0, opened: list[Bid] = ()
) -> pb.Tender:
    return pb.Tender(
        tender_id=t.tender_id,
        district_code=t.district_code,
        project_id=t.project_id,
        title=t.title,
        scope=t.scope,
        service_standard=t.service_standard,
        max_price_fen=t.max_price_fen,
        weights=_weights(t.weights),
        # A decision's draft has no price method until its committee sets the terms.
        price_method=pb.PriceMethod.Value(f"PRICE_METHOD_{t.price_method or 'UNSPECIFIED'}"),
        documents_hash=t.documents_hash,
        committee_size=t.committee_size,
        representatives=list(t.representatives),
        state=_state(t.state),
        suspended=t.suspended,
        buyer=t.buyer,
        create_time=timestamp(t.created_at),
        publish_time=timestamp(t.published_at),
        enquiry_end_time=timestamp(t.enquiry_end),
        bid_deadline=timestamp(t.bid_deadline),
        open_time=timestamp(t.opened_at),
        opened_by=t.opened_by,
        questions=[_question(q) for q in questions],
        bids=bids,
        opened_bids=[_opened(b) for b in opened],
        committee=_committee(t),
        winner=t.winner,
        award_time=timestamp(t.awarded_at),
        standstill_end_time=timestamp(t.standstill_end),
        filing_due_time=timestamp(t.filing_due),
        contract_due_time=timestamp(t.contract_due),
        complete_time=timestamp(t.completed_at),
        contract_time=timestamp(t.contract_signed_at),
        missed_deadlines=list(t.missed),
        reason=t.reason,
        retendered_as=t.retendered_as,
        vote_id=t.vote_id,
        matter_id=t.matter_id,
    )
