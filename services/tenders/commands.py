"""Tender use cases; each writes its rows and its events in one transaction, holding the
tender's row lock while it reads the state it changes. Credit is asked over gRPC before the
transaction starts (a bid, the opening), never while a lock is held."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from zoneinfo import ZoneInfo

import grpc
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import Message
from sqlalchemy import Connection, Engine

from wuye.core.calendar import WorkingCalendar
from wuye.core.client import ServiceClients
from wuye.core.consumer import EventMeta, Handler, log_refused
from wuye.core.context import current, current_or_none
from wuye.core.db import reader
from wuye.core.draw import new_seed
from wuye.core.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Unavailable,
    Violations,
)
from wuye.core.events import Event, add_events
from wuye.core.ids import credit_code_problem, new_id
from wuye.core.pii import Pseudonymizer
from wuye.core.wire import timestamp, to_date
from wuye.credit.v1 import credit_service_pb2 as credit_pb
from wuye.credit.v1 import credit_service_pb2_grpc as credit_grpc
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.tenders import domain, store
from wuye.tenders.domain import (
    Bid,
    BidContent,
    Complaint,
    CreditStanding,
    Expert,
    Question,
    State,
    Step,
    Tender,
)
from wuye.tenders.settings import TendersSettings
from wuye.tenders.v1 import events_pb2 as ev
from wuye.voting.v1 import events_pb2 as voting_events
from wuye.voting.v1 import voting_service_pb2 as voting_pb

TENDER_TOPIC = "wuye.tenders.tender.v1"
EXPERT_TOPIC = "wuye.tenders.expert.v1"
TOPICS = (TENDER_TOPIC, EXPERT_TOPIC)
# Consumed: the registry's committees (a project's buyer) and voting's decisions.
EVENT_TOPICS = ("wuye.registry.project.v1", "wuye.voting.vote.v1")
# Who opened bids when no one asked: the deadline's timer.
TIMER = "timer"
_TIMER_BATCH = 100

CreditLookup = Callable[[str], CreditStanding]


def _add_tender_event(connection: Connection, tender: Tender, message: Message) -> None:
    """One event of `tender`, keyed by it, in the connection's transaction."""
    add_events(
        connection,
        [Event.of_aggregate(TENDER_TOPIC, tender.tender_id, tender.district_code, message)],
    )


def bid_key(tender_id: str, credit_code: str) -> str:
    """A bid's events are in order per bid: keyed by the tender alone, every bid's transaction
    would wait for the one before it to commit (the key's version row), a few dozen bids a
    second at most."""
    return f"{tender_id}/{credit_code}"


def credit_over_grpc(settings: TendersSettings) -> CreditLookup:
    """Asks the credit service for an enterprise's report (GetCreditReport) now."""
    clients = ServiceClients(settings)

    def lookup(credit_code: str) -> CreditStanding:
        stub = clients.stub("credit", credit_grpc.CreditServiceStub)
        request = credit_pb.GetCreditReportRequest(
            subject=credit_pb.Subject(kind=credit_pb.SUBJECT_KIND_ENTERPRISE, id=credit_code)
        )
        try:
            report = stub.GetCreditReport(request).report
        except grpc.RpcError as e:
            if e.code() is grpc.StatusCode.NOT_FOUND:
                return domain.NO_CREDIT_FILE
            raise Unavailable(
                "CREDIT_UNAVAILABLE",
                f"the credit service did not answer ({e.code().name}); try again shortly",
            ) from None
        return CreditStanding(
            grade=credit_pb.Grade.Name(report.grade).removeprefix("GRADE_"),
            score=Decimal(report.score or "0"),
            filed=report.filed,
            blacklisted=report.blacklisted,
            serious_records=sum(r.severity == credit_pb.SEVERITY_SERIOUS for r in report.records),
            explanation=report.explanation,
        )

    return lookup


class Seal:
    """AES-GCM under a key per tender, derived from the service's secret key and the tender's
    id: the key exists nowhere at rest, and no API hands it out."""

    def __init__(self, secret: bytes) -> None:
        self._keys = Pseudonymizer(secret, purpose="tender-bid")

    def _cipher(self, tender_id: str) -> AESGCM:
        return AESGCM(bytes.fromhex(self._keys.digest(tender_id.encode())))

    def close(self, tender_id: str, credit_code: str, text: bytes) -> tuple[bytes, bytes]:
        nonce = os.urandom(12)
        aad = f"{tender_id}/{credit_code}".encode()
        return nonce, self._cipher(tender_id).encrypt(nonce, text, aad)

    def open(self, tender_id: str, credit_code: str, nonce: bytes, sealed: bytes) -> bytes:
        return self._cipher(tender_id).decrypt(nonce, sealed, f"{tender_id}/{credit_code}".encode())


class Tenders:
    def __init__(
        self,
        engine: Engine,
        settings: TendersSettings,
        credit: CreditLookup | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.engine = engine
        self.reader = reader(engine)
        self.settings = settings
        self.periods = settings.periods
        self.calendar = WorkingCalendar.of(settings)
        self.city = ZoneInfo(settings.city_timezone)
        self._credit = credit or credit_over_grpc(settings)
        self._clock = clock
        self._seal = Seal(settings.pii_key.get_secret_value().encode())

    def now(self) -> dt.datetime:
        return self._clock()

    # ------------------------------------------------------------ access

    def _tender(
        self, connection: Connection, tender_id: str, *, lock: bool = False, share: bool = False
    ) -> Tender:
        tender = store.get_tender(connection, tender_id, lock=lock, share=share)
        if tender is None:
            raise NotFound("TENDER_NOT_FOUND", f"no tender {tender_id}", tender_id=tender_id)
        return tender

    @staticmethod
    def _require_buyer(tender: Tender) -> None:
        call = current()
        call.require_district(tender.district_code)
        principal = call.principal
        if not principal.is_authority and principal.subject != tender.buyer:
            raise PermissionDenied(
                "NOT_THE_BUYER", f"only the buyer of tender {tender.tender_id} or an authority"
            )

    @staticmethod
    def _require_authority(tender: Tender) -> None:
        current().require_district(tender.district_code)

    def _change(self, tender_id: str, act: Callable[[Connection, Tender], Tender]) -> Tender:
        """Runs `act` on the locked tender in one transaction and saves what it returns."""
        with self.engine.begin() as connection:
            changed = act(connection, self._tender(connection, tender_id, lock=True))
            store.save_tender(connection, changed)
        return changed

    # ------------------------------------------------------------ drafting and publication

    def create_tender(self, connection: Connection, draft: Tender) -> Tender:
        current().require_district(draft.district_code)
        if draft.vote_id:
            return self._set_decision_terms(connection, draft)
        tender = replace(
            draft,
            tender_id=new_id(draft.district_code, "T"),
            buyer=current().principal.subject,
            state=State.DRAFT,
            created_at=self.now(),
        )
        store.insert_tender(connection, tender)
        return tender

    def _set_decision_terms(self, connection: Connection, terms: Tender) -> Tender:
        draft = store.decision_tender(
            connection, domain.decision_key(terms.vote_id, terms.matter_id), lock=True
        )
        if draft is None:
            raise NotFound(
                "DECISION_TENDER_NOT_FOUND",
                f"no tender was opened by matter {terms.matter_id} of vote {terms.vote_id}",
                vote_id=terms.vote_id,
                matter_id=terms.matter_id,
            )
        self._require_buyer(draft)
        completed = domain.complete_decision_draft(draft, terms)
        store.save_tender(connection, completed)
        return completed

    def publish(self, tender_id: str, deadline: dt.datetime) -> Tender:
        def act(connection: Connection, tender: Tender) -> Tender:
            self._require_buyer(tender)
            domain.check_terms_set(tender)
            now = self.now()
            v = Violations()
            enquiry_end = domain.publication_dates(now, deadline, self.periods, v, "bid_deadline")
            v.raise_if_any()
            published = domain.transition(
                tender,
                Step.PUBLISH,
                published_at=now,
                enquiry_end=enquiry_end,
                bid_deadline=deadline,
            )
            _add_tender_event(
                connection,
                tender,
                ev.TenderPublished(
                    tender_id=tender_id,
                    district_code=tender.district_code,
                    project_id=tender.project_id,
                    max_price_fen=tender.max_price_fen,
                    documents_hash=tender.documents_hash,
                    enquiry_end_time=timestamp(enquiry_end),
                    bid_deadline=timestamp(deadline),
                    occur_time=timestamp(now),
                ),
            )
            return published

        return self._change(tender_id, act)

    def amend(self, tender_id: str, documents_hash: str) -> Tender:
        def act(connection: Connection, tender: Tender) -> Tender:
            self._require_buyer(tender)
            domain.require_state(tender, State.ENQUIRIES, State.TENDERING, doing="a change")
            now = self.now()
            deadline = domain.amended_deadline(now, tender.bid_deadline, self.periods)
            _add_tender_event(
                connection,
                tender,
                ev.TenderAmended(
                    tender_id=tender_id,
                    district_code=tender.district_code,
                    documents_hash=documents_hash,
                    bid_deadline=timestamp(deadline),
                    deadline_moved=deadline != tender.bid_deadline,
                    occur_time=timestamp(now),
                ),
            )
            return replace(tender, documents_hash=documents_hash, bid_deadline=deadline)

        return self._change(tender_id, act)

    def ask(self, tender_id: str, text: str) -> Question:
        with self.engine.begin() as connection:
            tender = self._tender(connection, tender_id, lock=True)
            current().require_district(tender.district_code)
            domain.require_state(tender, State.ENQUIRIES, doing="a question")
            question = Question(new_id(tender.district_code, "Q"), text, self.now())
            store.insert_question(connection, tender_id, question)
        return question

    def answer(self, tender_id: str, question_id: str, answer: str) -> Question:
        with self.engine.begin() as connection:
            tender = self._tender(connection, tender_id, lock=True)
            self._require_buyer(tender)
            question = store.get_question(connection, tender_id, question_id)
            if question is None:
                raise NotFound(
                    "QUESTION_NOT_FOUND",
                    f"tender {tender_id} has no question {question_id}",
                    question_id=question_id,
                )
            domain.check_unanswered(question)
            answered = replace(question, answer=answer, answered_at=self.now())
            store.answer_question(connection, answered)
        return answered

    # ------------------------------------------------------------ bids

    def submit_bid(
        self, tender_id: str, price_fen: int, documents: tuple[str, ...], staff: int
    ) -> tuple[str, dt.datetime, bool]:
        """Seals the caller's bid; returns its receipt, when it was taken, and whether it
        replaced an earlier one."""
        credit_code = current().principal.subject
        if credit_code_problem(credit_code) is not None:
            raise PermissionDenied(
                "NOT_AN_ENTERPRISE", "a bid is made by an enterprise, under its credit code"
            )
        with self.reader.connect() as connection:
            tender = self._tender(connection, tender_id)
        current().require_district(tender.district_code)
        domain.check_bid_window(tender, self.now())
        v = Violations()
        domain.check_price(price_fen, tender.max_price_fen, v, "price_fen")
        v.raise_if_any()
        domain.check_may_bid(credit_code, self._credit(credit_code))
        content = BidContent(
            tender_id, credit_code, price_fen, documents, staff, secrets.token_hex(16)
        )
        text = content.sealed_text()
        receipt = domain.receipt_of(text)
        nonce, sealed = self._seal.close(tender_id, credit_code, text)
        with self.engine.begin() as connection:
            # Bids are taken side by side; the opening waits for those in progress.
            tender = self._tender(connection, tender_id, lock=True, share=True)
            now = self.now()
            domain.check_bid_window(tender, now)
            replaced = store.put_bid(
                connection, tender_id, credit_code, receipt, nonce, sealed, now
            )
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        TENDER_TOPIC,
                        bid_key(tender_id, credit_code),
                        tender.district_code,
                        ev.BidSubmitted(
                            tender_id=tender_id,
                            district_code=tender.district_code,
                            credit_code=credit_code,
                            receipt=receipt,
                            replaced=replaced,
                            occur_time=timestamp(now),
                        ),
                    )
                ],
            )
        return receipt, now, replaced

    def withdraw_bid(self, tender_id: str) -> None:
        credit_code = current().principal.subject
        with self.engine.begin() as connection:
            tender = self._tender(connection, tender_id, lock=True)
            current().require_district(tender.district_code)
            now = self.now()
            domain.check_bid_window(tender, now)
            if not store.delete_bid(connection, tender_id, credit_code):
                raise NotFound(
                    "BID_NOT_FOUND",
                    f"enterprise {credit_code} has no bid on tender {tender_id}",
                    tender_id=tender_id,
                )
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        TENDER_TOPIC,
                        bid_key(tender_id, credit_code),
                        tender.district_code,
                        ev.BidWithdrawn(
                            tender_id=tender_id,
                            district_code=tender.district_code,
                            credit_code=credit_code,
                            occur_time=timestamp(now),
                        ),
                    )
                ],
            )

    # ------------------------------------------------------------ the deadline

    def _standings(self, codes: list[str]) -> dict[str, CreditStanding]:
        if not codes:
            return {}
        with ThreadPoolExecutor(min(len(codes), self.settings.credit_lookups_at_once)) as pool:
            return dict(zip(codes, pool.map(self._credit, codes), strict=True))

    def open_bids(self, tender_id: str, opened_by: str) -> Tender:
        """At the deadline: freezes the committee's lists and commits to its seed, then opens
        the bids (or, with too few bids, fails the tender unopened). Each bidder's credit is
        asked again: the grade at the deadline is the one that counts."""
        with self.reader.connect() as connection:
            tender = self._tender(connection, tender_id)
            codes = [row.credit_code for row in store.sealed_bids(connection, tender_id)]
        if current_or_none() is not None:
            self._require_buyer(tender)
        domain.require_state(tender, State.TENDERING, doing="the opening")
        now = self.now()
        if now < tender.bid_deadline:
            raise FailedPrecondition(
                "BID_DEADLINE_NOT_PASSED",
                f"bids are opened after the deadline, "
                f"{tender.bid_deadline.isoformat(timespec='seconds')}",
                tender_id=tender_id,
            )
        minimum = self.settings.min_bids
        standings = self._standings(codes) if domain.enough_bids(len(codes), minimum) else {}
        with self.engine.begin() as connection:
            tender = self._tender(connection, tender_id, lock=True)
            domain.require_state(tender, State.TENDERING, doing="the opening")
            rows = store.sealed_bids(connection, tender_id)
            if not domain.enough_bids(len(rows), minimum):
                failed = self._fail(connection, tender, len(rows), now)
                store.save_tender(connection, failed)
                return failed
            late = [r.credit_code for r in rows if r.credit_code not in standings]
            standings.update(self._standings(late))
            opened = self._open(tender, rows, standings)
            lists = domain.committee_lists(
                tender, [b.credit_code for b in opened], store.expert_pool(connection)
            )
            seed = new_seed()
            committed = domain.transition(
                tender,
                Step.OPEN,
                opened_at=now,
                opened_by=opened_by,
                seed=seed.hex(),
                seed_commitment=domain.commitment(seed, lists),
                committed_at=now,
                lists=lists,
                valid_bids=sum(not b.rejection for b in opened),
            )
            store.record_opened(connection, tender_id, opened)
            store.save_tender(connection, committed)
            _add_tender_event(
                connection,
                tender,
                ev.BidsOpened(
                    tender_id=tender_id,
                    district_code=tender.district_code,
                    opened_by=opened_by,
                    bids=[
                        ev.OpenedBidSummary(
                            credit_code=b.credit_code,
                            price_fen=b.content.price_fen,
                            receipt=b.receipt,
                            abnormally_low=b.abnormally_low,
                            rejection=b.rejection,
                        )
                        for b in opened
                    ],
                    seed_commitment=committed.seed_commitment,
                    occur_time=timestamp(now),
                ),
            )
        return committed

    def _open(self, tender: Tender, rows: list, standings: dict[str, CreditStanding]) -> list[Bid]:
        bids = []
        for row in rows:
            text = self._seal.open(tender.tender_id, row.credit_code, row.nonce, row.sealed)
            standing = standings[row.credit_code]
            refusal = domain.bid_refusal(row.credit_code, standing)
            bids.append(
                Bid(
                    credit_code=row.credit_code,
                    receipt=row.receipt,
                    submitted_at=dt.datetime.fromtimestamp(row.submitted_at, dt.UTC),
                    content=BidContent.from_text(text),
                    standing=standing,
                    rejection=f"at the deadline: {refusal}" if refusal else "",
                )
            )
        flagged = domain.abnormally_low(
            {b.credit_code: b.content.price_fen for b in bids if not b.rejection},
            self.settings.abnormal_below_average,
            self.settings.abnormal_below_next,
        )
        return [replace(b, abnormally_low=b.credit_code in flagged) for b in bids]

    def _fail(self, connection: Connection, tender: Tender, count: int, now: dt.datetime):
        reason = (
            f"{count} bid(s) at the deadline, fewer than {self.settings.min_bids}: "
            "not opened (招标投标法 Art. 28)"
        )
        add_events(
            connection,
            [
                Event.of_aggregate(
                    TENDER_TOPIC,
                    tender.tender_id,
                    tender.district_code,
                    ev.TenderUnsuccessful(
                        tender_id=tender.tender_id,
                        district_code=tender.district_code,
                        reason=reason,
                        bids=count,
                        occur_time=timestamp(now),
                    ),
                )
            ],
        )
        return domain.transition(tender, Step.FAIL, reason=reason)

    # ------------------------------------------------------------ committee and evaluation

    def register_expert(self, expert: Expert, name: str) -> Expert:
        for district in expert.districts:
            current().require_district(district)
        now = self.now()
        with self.engine.begin() as connection:
            if not store.insert_expert(connection, expert, name, now):
                raise AlreadyExists(
                    "EXPERT_EXISTS",
                    f"expert {expert.expert_id} is already in the pool",
                    expert_id=expert.expert_id,
                )
            add_events(
                connection,
                [
                    Event.of_aggregate(
                        EXPERT_TOPIC,
                        expert.expert_id,
                        expert.districts[0],
                        ev.ExpertRegistered(
                            expert_id=expert.expert_id,
                            specialities=list(expert.specialities),
                            district_codes=list(expert.districts),
                            conflicts=list(expert.conflicts),
                            occur_time=timestamp(now),
                        ),
                    )
                ],
            )
        return expert

    def draw_committee(self, tender_id: str) -> Tender:
        def act(connection: Connection, tender: Tender) -> Tender:
            self._require_authority(tender)
            domain.require_state(tender, State.OPENED, doing="the committee's draw")
            experts = domain.draw_committee(bytes.fromhex(tender.seed), tender.lists)
            drawn = domain.transition(tender, Step.DRAW_COMMITTEE, experts=experts)
            _add_tender_event(
                connection,
                tender,
                ev.CommitteeDrawn(
                    tender_id=tender_id,
                    district_code=tender.district_code,
                    seed=tender.seed,
                    seed_commitment=tender.seed_commitment,
                    experts=list(experts),
                    representatives=list(tender.representatives),
                    occur_time=timestamp(self.now()),
                ),
            )
            return drawn

        return self._change(tender_id, act)

    def score_bid(self, tender_id: str, credit_code: str, score: Decimal) -> None:
        member = current().principal.subject
        with self.engine.begin() as connection:
            tender = self._tender(connection, tender_id, lock=True)
            current().require_district(tender.district_code)
            domain.require_state(tender, State.EVALUATION, doing="a score")
            domain.check_member(tender, member)
            bid = store.opened_bid(connection, tender_id, credit_code)
            if bid is None or bid.rejection:
                raise NotFound(
                    "BID_NOT_FOUND",
                    f"tender {tender_id} has no valid bid of {credit_code}",
                    credit_code=credit_code,
                )
            new = store.put_score(connection, tender_id, credit_code, member, score)
            # Scores only grow in number: the one that completes the evaluation announces it.
            if new and store.count_scores(connection, tender_id) == (
                tender.committee_size * tender.valid_bids
            ):
                ranked = self._rank(connection, tender, store.opened_bids(connection, tender_id))
                _add_tender_event(
                    connection,
                    tender,
                    ev.TenderEvaluated(
                        tender_id=tender_id,
                        district_code=tender.district_code,
                        ranking=[r.credit_code for r in ranked],
                        occur_time=timestamp(self.now()),
                    ),
                )

    def _rank(self, connection: Connection, tender: Tender, bids: list[Bid]):
        return domain.rank(
            bids, store.scores_of(connection, tender.tender_id), tender.weights, tender.price_method
        )

    def evaluation(self, tender_id: str) -> tuple[Tender, list[domain.Ranked]]:
        with self.reader.connect() as connection:
            tender = self._tender(connection, tender_id)
            current().scope.check_served(tender.district_code)
            if tender.opened_at is None:
                raise FailedPrecondition(
                    "BIDS_NOT_OPENED",
                    f"the bids of tender {tender_id} are not opened: there is nothing to rank",
                    tender_id=tender_id,
                )
            return tender, self._rank(connection, tender, store.opened_bids(connection, tender_id))

    # ------------------------------------------------------------ award and after

    def _standstill_end(self, now: dt.datetime) -> dt.datetime:
        """The end of the standstill's last working day, and at least its shortest length."""
        days = self.periods.standstill_working_days
        shortest = now + self.periods.standstill_shortest
        if days == 0:
            return shortest
        last = self.calendar.add_working_days(now, days)
        midnight = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), self.city)
        return max(midnight.astimezone(dt.UTC), shortest)

    def award(self, tender_id: str) -> Tender:
        def act(connection: Connection, tender: Tender) -> Tender:
            self._require_buyer(tender)
            domain.require_state(tender, State.EVALUATION, doing="the award")
            ranked = self._rank(connection, tender, store.opened_bids(connection, tender_id))
            top = domain.winner_of(tender, ranked)
            now = self.now()
            awarded = domain.transition(
                tender,
                Step.AWARD,
                winner=top.credit_code,
                **domain.award_dates(now, self._standstill_end(now), self.periods),
            )
            _add_tender_event(
                connection,
                tender,
                ev.TenderAwarded(
                    tender_id=tender_id,
                    district_code=tender.district_code,
                    project_id=tender.project_id,
                    credit_code=top.credit_code,
                    price_fen=top.price_fen,
                    standstill_end_time=timestamp(awarded.standstill_end),
                    occur_time=timestamp(now),
                ),
            )
            return awarded

        return self._change(tender_id, act)

    def file_complaint(self, tender_id: str, reason: str) -> Complaint:
        credit_code = current().principal.subject
        with self.engine.begin() as connection:
            tender = self._tender(connection, tender_id, lock=True)
            current().require_district(tender.district_code)
            now = self.now()
            domain.check_complaint_window(tender, now)
            if all(b.credit_code != credit_code for b in store.opened_bids(connection, tender_id)):
                raise PermissionDenied(
                    "NOT_A_BIDDER", f"only a bidder of tender {tender_id} may complain"
                )
            complaint = Complaint(
                new_id(tender.district_code, "C"), tender_id, credit_code, reason, now
            )
            store.insert_complaint(connection, complaint)
            store.save_tender(connection, replace(tender, suspended=True))
            _add_tender_event(
                connection,
                tender,
                ev.ComplaintFiled(
                    tender_id=tender_id,
                    district_code=tender.district_code,
                    complaint_id=complaint.complaint_id,
                    credit_code=credit_code,
                    occur_time=timestamp(now),
                ),
            )
        return complaint

    def decide_complaint(
        self, tender_id: str, complaint_id: str, outcome: str, decision: str
    ) -> tuple[Complaint, Tender]:
        with self.engine.begin() as connection:
            tender = self._tender(connection, tender_id, lock=True)
            self._require_authority(tender)
            complaint = store.get_complaint(connection, tender_id, complaint_id)
            if complaint is None:
                raise NotFound(
                    "COMPLAINT_NOT_FOUND",
                    f"tender {tender_id} has no complaint {complaint_id}",
                    complaint_id=complaint_id,
                )
            domain.check_complaint_pending(complaint)
            now = self.now()
            decided = replace(complaint, outcome=outcome, decision=decision, decided_at=now)
            resumed = replace(tender, suspended=False)
            events = [
                ev.ComplaintDecided(
                    tender_id=tender_id,
                    district_code=tender.district_code,
                    complaint_id=complaint_id,
                    outcome=outcome,
                    occur_time=timestamp(now),
                )
            ]
            if outcome == "REEVALUATE":
                resumed = domain.transition(
                    resumed,
                    Step.REEVALUATE,
                    winner="",
                    awarded_at=None,
                    standstill_end=None,
                    filing_due=None,
                    contract_due=None,
                )
            elif outcome == "CANCEL":
                resumed = domain.transition(resumed, Step.CANCEL, reason=decision)
                events.append(
                    ev.TenderCancelled(
                        tender_id=tender_id,
                        district_code=tender.district_code,
                        reason=decision,
                        occur_time=timestamp(now),
                    )
                )
            store.decide_complaint(connection, decided)
            store.save_tender(connection, resumed)
            add_events(
                connection,
                [
                    Event.of_aggregate(TENDER_TOPIC, tender_id, tender.district_code, m)
                    for m in events
                ],
            )
        return decided, resumed

    def complete(self, tender_id: str) -> Tender:
        def act(connection: Connection, tender: Tender) -> Tender:
            self._require_buyer(tender)
            domain.require_state(tender, State.AWARDED, doing="completion")
            now = self.now()
            domain.check_standstill_over(tender, now)
            completed = domain.transition(tender, Step.COMPLETE, completed_at=now)
            add_events(connection, [self._completed(completed, now)])
            return completed

        return self._change(tender_id, act)

    @staticmethod
    def _completed(tender: Tender, now: dt.datetime) -> Event:
        return Event.of_aggregate(
            TENDER_TOPIC,
            tender.tender_id,
            tender.district_code,
            ev.TenderCompleted(
                tender_id=tender.tender_id,
                district_code=tender.district_code,
                project_id=tender.project_id,
                credit_code=tender.winner,
                occur_time=timestamp(now),
            ),
        )

    def sign_contract(
        self, tender_id: str, contract_hash: str, start: dt.date, end: dt.date
    ) -> Tender:
        def act(connection: Connection, tender: Tender) -> Tender:
            self._require_buyer(tender)
            domain.require_state(tender, State.COMPLETE, doing="the contract")
            if tender.contract_signed_at is not None:
                raise FailedPrecondition(
                    "CONTRACT_SIGNED", f"the contract of tender {tender_id} is signed"
                )
            now = self.now()
            _add_tender_event(
                connection,
                tender,
                ev.ContractSigned(
                    tender_id=tender_id,
                    district_code=tender.district_code,
                    project_id=tender.project_id,
                    credit_code=tender.winner,
                    contract_hash=contract_hash,
                    contract_start=to_date(start),
                    contract_end=to_date(end),
                    occur_time=timestamp(now),
                ),
            )
            return replace(
                tender,
                contract_signed_at=now,
                contract_hash=contract_hash,
                contract_start=start.isoformat(),
                contract_end=end.isoformat(),
            )

        return self._change(tender_id, act)

    def cancel(self, tender_id: str, reason: str) -> Tender:
        def act(connection: Connection, tender: Tender) -> Tender:
            self._require_buyer(tender)
            cancelled = domain.transition(tender, Step.CANCEL, reason=reason)
            _add_tender_event(
                connection,
                tender,
                ev.TenderCancelled(
                    tender_id=tender_id,
                    district_code=tender.district_code,
                    reason=reason,
                    occur_time=timestamp(self.now()),
                ),
            )
            return cancelled

        return self._change(tender_id, act)

    def retender(self, tender_id: str) -> Tender:
        with self.engine.begin() as connection:
            tender = self._tender(connection, tender_id, lock=True)
            self._require_buyer(tender)
            domain.require_state(tender, State.UNSUCCESSFUL, doing="a new tender")
            if tender.retendered_as or tender.winner:
                raise FailedPrecondition(
                    "TENDER_FOLLOWED_UP",
                    f"tender {tender_id} was already followed up "
                    f"({tender.retendered_as or 'a direct appointment'})",
                    tender_id=tender_id,
                )
            draft = domain.retender_draft(tender, new_id(tender.district_code, "T"), self.now())
            store.insert_tender(connection, draft)
            store.save_tender(connection, replace(tender, retendered_as=draft.tender_id))
        return draft

    def appoint_directly(self, tender_id: str, credit_code: str, reason: str) -> Tender:
        domain.check_may_bid(credit_code, self._credit(credit_code))

        def act(connection: Connection, tender: Tender) -> Tender:
            self._require_authority(tender)
            if tender.retendered_as:
                raise FailedPrecondition(
                    "TENDER_FOLLOWED_UP",
                    f"tender {tender_id} was tendered again as {tender.retendered_as}",
                    tender_id=tender_id,
                )
            now = self.now()
            appointed = domain.transition(
                tender,
                Step.APPOINT_DIRECTLY,
                winner=credit_code,
                reason=f"direct appointment: {reason}",
                completed_at=now,
                **domain.award_dates(now, now, self.periods),
            )
            add_events(connection, [self._completed(appointed, now)])
            return appointed

        return self._change(tender_id, act)

    def record_misconduct(self, tender_id: str, credit_code: str, kind: str, reason: str) -> None:
        with self.engine.begin() as connection:
            tender = self._tender(connection, tender_id)
            self._require_authority(tender)
            bidders = {b.credit_code for b in store.opened_bids(connection, tender_id)}
            if credit_code not in bidders | {tender.winner}:
                raise NotFound(
                    "BIDDER_NOT_FOUND",
                    f"{credit_code} is not a bidder of tender {tender_id}",
                    credit_code=credit_code,
                )
            _add_tender_event(
                connection,
                tender,
                ev.MisconductFound(
                    tender_id=tender_id,
                    district_code=tender.district_code,
                    credit_code=credit_code,
                    kind=kind,
                    reason=reason,
                    occur_time=timestamp(self.now()),
                ),
            )

    # ------------------------------------------------------------ events of other services

    def _served(self, district: str) -> bool:
        return district in self.settings.served_districts

    def on_committee_formed(self, connection: Connection, message, meta: EventMeta) -> None:
        if self._served(message.district_code):
            store.set_committee(connection, message.project_id, message.committee_id)

    def on_decision_adopted(self, connection: Connection, message, meta: EventMeta) -> None:
        """An owners' decision to hire an enterprise opens a draft tender, once; one that
        cannot be placed is logged with its reason and stores nothing."""
        if message.matter_type != voting_pb.MATTER_TYPE_HIRE_ENTERPRISE or not self._served(
            message.district_code
        ):
            return
        key = domain.decision_key(message.vote_id, message.matter_id)
        if store.decision_tender(connection, key) is not None:
            return
        try:
            draft = domain.draft_from_decision(
                new_id(message.district_code, "T"),
                message.district_code,
                message.project_id,
                store.project_committee(connection, message.project_id),
                message.title,
                message.vote_id,
                message.matter_id,
                self.settings.default_weights,
                self.settings.committee_min_size,
                self.now(),
            )
        except DomainError as refused:
            log_refused(meta, refused, "decision opens no tender")
            return
        store.insert_tender(connection, draft)

    def handlers(self) -> dict[str, Handler]:
        return {
            "wuye.registry.v1.OwnersCommitteeFormed": Handler(
                registry_events.OwnersCommitteeFormed, self.on_committee_formed
            ),
            "wuye.voting.v1.DecisionAdopted": Handler(
                voting_events.DecisionAdopted, self.on_decision_adopted
            ),
        }

    # ------------------------------------------------------------ timers

    def run_timers(self) -> int:
        """Moves tenders whose dates passed: the enquiries end, bids are opened at the deadline,
        missed filing and contract deadlines are flagged. Suspended tenders wait."""
        now = self.now()
        with self.reader.connect() as connection:
            due = store.due_tenders(connection, now, _TIMER_BATCH)
        acted = 0
        for tender_id in due:
            with self.reader.connect() as connection:
                tender = self._tender(connection, tender_id)
            step = domain.due_step(tender, now)
            if step is Step.OPEN:
                self.open_bids(tender_id, TIMER)
            elif step is Step.END_ENQUIRIES:
                self._change(
                    tender_id,
                    lambda _c, t: (
                        domain.transition(t, Step.END_ENQUIRIES)
                        if domain.due_step(t, now) is Step.END_ENQUIRIES
                        else t
                    ),
                )
            else:
                self._change(tender_id, lambda c, t: self._flag_missed(c, t, now))
            acted += 1
        return acted

    def _flag_missed(self, connection: Connection, tender: Tender, now: dt.datetime) -> Tender:
        missed = domain.missed_deadlines(tender, now)
        add_events(
            connection,
            [
                Event.of_aggregate(
                    TENDER_TOPIC,
                    tender.tender_id,
                    tender.district_code,
                    ev.TenderDeadlineMissed(
                        tender_id=tender.tender_id,
                        district_code=tender.district_code,
                        deadline=deadline,
                        credit_code=tender.winner,
                        occur_time=timestamp(now),
                    ),
                )
                for deadline in missed
            ],
        )
        return replace(tender, missed=(*tender.missed, *missed))

    # ------------------------------------------------------------ reads

    def get_tender(self, tender_id: str):
        """The tender, its questions, how many bids it holds, and its opened bids."""
        with self.reader.connect() as connection:
            tender = self._tender(connection, tender_id)
            current().scope.check_served(tender.district_code)
            return (
                tender,
                store.questions_of(connection, tender_id),
                store.count_bids(connection, tender_id),
                store.opened_bids(connection, tender_id),
            )

    def list_tenders(
        self,
        district: str,
        project_id: str,
        states: tuple[State, ...],
        after: str | None,
        limit: int,
    ) -> list[Tender]:
        served = current().scope.served
        districts = served & {district} if district else served
        with self.reader.connect() as connection:
            return store.list_tenders(connection, districts, project_id, states, after, limit)

    def awards(self, district: str, after: str | None, limit: int):
        """Awarded and completed tenders, each with its winning bid (None: direct
        appointment)."""
        found = self.list_tenders(district, "", (State.AWARDED, State.COMPLETE), after, limit)
        with self.reader.connect() as connection:
            return [
                (
                    t,
                    next(
                        (
                            r
                            for r in self._rank(
                                connection, t, store.opened_bids(connection, t.tender_id)
                            )
                            if r.credit_code == t.winner
                        ),
                        None,
                    ),
                )
                for t in found
            ]
