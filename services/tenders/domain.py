"""Rules of tenders (DOMAIN.md section 5). Pure: no IO, no wire types.

A tender's life is ProZorro's: draft -> enquiries -> tendering -> opened -> evaluation ->
awarded (the standstill) -> complete, or cancelled / unsuccessful. `TRANSITIONS` is the whole
state machine; `transition` is the one function that moves a tender.

The committee draw, algorithm version 1, written out so it can be reimplemented. The seed, the
lists digest, the commitment and key(label) are the core's (wuye.core.draw):

* At the bid deadline, before the bids are opened, the lists are frozen: the tender's id, the
  committee's size, the representatives the buyer named, the bidders' credit codes (sorted),
  and the expert pool serving the tender's district (each expert's id, specialities, districts
  and conflicts, sorted by id). The commitment to a fresh seed and those lists is published.
* The experts drawn number size - len(representatives). An expert with a conflict with any
  bidder is never drawn. The others are ordered by key("expert:" + tender_id + ":" +
  expert_id), smallest first, and the first ones drawn.
* The committee is the representatives and the drawn experts; it has at least 5 members, an
  odd number, and experts at least 2/3 of it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from fractions import Fraction

from wuye.core import draw as public_draw
from wuye.core.errors import FailedPrecondition, Violations

COMMITTEE_ALGORITHM_VERSION = 1
TIE_BREAK = (
    "equal totals: the higher credit score first, then the lower price, then the earlier submission"
)


class State(StrEnum):
    DRAFT = "DRAFT"
    ENQUIRIES = "ENQUIRIES"
    TENDERING = "TENDERING"
    OPENED = "OPENED"
    EVALUATION = "EVALUATION"
    AWARDED = "AWARDED"
    COMPLETE = "COMPLETE"
    CANCELLED = "CANCELLED"
    UNSUCCESSFUL = "UNSUCCESSFUL"


class Step(StrEnum):
    PUBLISH = "PUBLISH"
    END_ENQUIRIES = "END_ENQUIRIES"
    OPEN = "OPEN"
    FAIL = "FAIL"  # fewer bids than the minimum at the deadline
    DRAW_COMMITTEE = "DRAW_COMMITTEE"
    AWARD = "AWARD"
    REEVALUATE = "REEVALUATE"  # a complaint upheld
    COMPLETE = "COMPLETE"
    CANCEL = "CANCEL"
    APPOINT_DIRECTLY = "APPOINT_DIRECTLY"


_LIVE = (
    State.DRAFT,
    State.ENQUIRIES,
    State.TENDERING,
    State.OPENED,
    State.EVALUATION,
    State.AWARDED,
)

# The state machine: (state, step) -> the next state. Nothing else moves a tender.
TRANSITIONS: dict[tuple[State, Step], State] = {
    (State.DRAFT, Step.PUBLISH): State.ENQUIRIES,
    (State.ENQUIRIES, Step.END_ENQUIRIES): State.TENDERING,
    (State.TENDERING, Step.OPEN): State.OPENED,
    (State.TENDERING, Step.FAIL): State.UNSUCCESSFUL,
    (State.OPENED, Step.DRAW_COMMITTEE): State.EVALUATION,
    (State.EVALUATION, Step.AWARD): State.AWARDED,
    (State.AWARDED, Step.REEVALUATE): State.EVALUATION,
    (State.AWARDED, Step.COMPLETE): State.COMPLETE,
    (State.UNSUCCESSFUL, Step.APPOINT_DIRECTLY): State.COMPLETE,
    **{(state, Step.CANCEL): State.CANCELLED for state in _LIVE},
}
# While a complaint is pending only its decision (which may cancel) moves the tender.
_WHILE_SUSPENDED = frozenset({Step.REEVALUATE, Step.CANCEL})


@dataclass(frozen=True)
class Weights:
    price: int
    technical: int
    credit: int


@dataclass(frozen=True)
class Periods:
    """The rules' periods, from the settings."""

    min_tendering: dt.timedelta
    enquiry: dt.timedelta
    change_notice: dt.timedelta
    standstill_working_days: int
    standstill_shortest: dt.timedelta
    filing: dt.timedelta
    contract: dt.timedelta


@dataclass(frozen=True)
class Tender:
    tender_id: str
    district_code: str
    project_id: str
    buyer: str
    title: str
    scope: str
    service_standard: str
    max_price_fen: int
    weights: Weights
    price_method: str
    documents_hash: str
    committee_size: int
    representatives: tuple[str, ...]
    state: State
    created_at: dt.datetime
    suspended: bool = False
    published_at: dt.datetime | None = None
    enquiry_end: dt.datetime | None = None
    bid_deadline: dt.datetime | None = None
    opened_at: dt.datetime | None = None
    opened_by: str = ""
    seed: str = ""
    seed_commitment: str = ""
    committed_at: dt.datetime | None = None
    # The frozen lists of the committee draw (canonical JSON values), from the deadline on.
    lists: Mapping | None = None
    experts: tuple[str, ...] = ()
    # Opened bids that count (not rejected at the deadline).
    valid_bids: int = 0
    winner: str = ""
    awarded_at: dt.datetime | None = None
    standstill_end: dt.datetime | None = None
    filing_due: dt.datetime | None = None
    contract_due: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    contract_signed_at: dt.datetime | None = None
    contract_hash: str = ""
    # ISO dates of the contract's term.
    contract_start: str = ""
    contract_end: str = ""
    missed: tuple[str, ...] = ()
    reason: str = ""
    retendered_as: str = ""
    # The owners' decision to hire an enterprise that opened the draft (voting's ids).
    vote_id: str = ""
    matter_id: str = ""

    @property
    def members(self) -> tuple[str, ...]:
        return (*self.representatives, *self.experts)


def transition(tender: Tender, step: Step, **changes) -> Tender:
    """The tender after `step`, with `changes`; refused if its state (or a pending complaint)
    does not allow the step."""
    if tender.suspended and step not in _WHILE_SUSPENDED:
        raise FailedPrecondition(
            "TENDER_SUSPENDED",
            f"tender {tender.tender_id} is suspended until its complaint is decided",
            tender_id=tender.tender_id,
        )
    following = TRANSITIONS.get((tender.state, step))
    if following is None:
        raise FailedPrecondition(
            f"TENDER_{tender.state.value}",
            f"tender {tender.tender_id} is {tender.state.value.lower()}: "
            f"it cannot {step.value.lower().replace('_', ' ')}",
            tender_id=tender.tender_id,
            state=tender.state.value,
        )
    return replace(tender, state=following, **changes)


def require_state(tender: Tender, *states: State, doing: str) -> None:
    """Refused unless the tender is in one of `states` and no complaint suspends it."""
    if tender.suspended:
        raise FailedPrecondition(
            "TENDER_SUSPENDED",
            f"tender {tender.tender_id} is suspended until its complaint is decided",
            tender_id=tender.tender_id,
        )
    if tender.state not in states:
        raise FailedPrecondition(
            f"TENDER_{tender.state.value}",
            f"tender {tender.tender_id} is {tender.state.value.lower()}: {doing} needs it "
            + " or ".join(s.value.lower() for s in states),
            tender_id=tender.tender_id,
            state=tender.state.value,
        )


# ---------------------------------------------------------------- terms and dates


def check_weights(weights: Weights, v: Violations, field: str) -> None:
    parts = (weights.price, weights.technical, weights.credit)
    if v.check(all(0 <= p <= 100 for p in parts), field, "each weight is from 0 to 100"):
        v.check(sum(parts) == 100, field, f"the weights add up to 100, not {sum(parts)}")


def check_committee(
    size: int, representatives: int, minimum: int, expert_share: Fraction, v: Violations, field: str
) -> None:
    """At least `minimum` members, an odd number, experts at least `expert_share` of them."""
    if not v.check(size >= minimum, field, f"a committee has at least {minimum} members"):
        return
    if not v.check(size % 2 == 1, field, f"a committee has an odd number of members, not {size}"):
        return
    v.check(
        Fraction(size - representatives, size) >= expert_share,
        field,
        f"experts are at least {expert_share} of the committee: {size} members allow at most "
        f"{size - _min_experts(size, expert_share)} representatives",
    )


def _min_experts(size: int, share: Fraction) -> int:
    return -(-share.numerator * size // share.denominator)


def publication_dates(
    now: dt.datetime, deadline: dt.datetime, periods: Periods, v: Violations, field: str
) -> dt.datetime:
    """The end of the enquiry period; the deadline must leave the minimum tendering period."""
    earliest = now + periods.min_tendering
    v.check(
        deadline >= earliest and deadline > now,
        field,
        f"the bid deadline is at least {periods.min_tendering.days} days after publication "
        f"(from {earliest.isoformat(timespec='seconds')})",
    )
    return min(now + periods.enquiry, deadline)


def amended_deadline(now: dt.datetime, deadline: dt.datetime, periods: Periods) -> dt.datetime:
    """A change to the documents less than the notice period before the deadline moves it."""
    return max(deadline, now + periods.change_notice)


def check_bid_window(tender: Tender, now: dt.datetime) -> None:
    require_state(tender, State.TENDERING, doing="a bid")
    if now >= tender.bid_deadline:
        raise FailedPrecondition(
            "BID_DEADLINE_PASSED",
            f"the bid deadline of tender {tender.tender_id} was "
            f"{tender.bid_deadline.isoformat(timespec='seconds')}",
            tender_id=tender.tender_id,
        )


# ---------------------------------------------------------------- the owners' decision


def decision_key(vote_id: str, matter_id: str) -> str | None:
    """One draft per decision: the tenders table holds this key once."""
    return f"{vote_id}/{matter_id}" if vote_id else None


def draft_from_decision(
    tender_id: str,
    district_code: str,
    project_id: str,
    committee_id: str | None,
    title: str,
    vote_id: str,
    matter_id: str,
    weights: Weights,
    committee_size: int,
    now: dt.datetime,
) -> Tender:
    """The draft an owners' decision to hire an enterprise opens, its buyer the project's
    owners' committee; its terms are the committee's to set. A project outside the decision's
    district, or without a known committee, has no buyer to give the draft: refused."""
    if not project_id.startswith(f"{district_code}-"):
        raise FailedPrecondition(
            "PROJECT_NOT_IN_DISTRICT",
            f"project {project_id} is not a project of district {district_code}",
            project_id=project_id,
        )
    if committee_id is None:
        raise FailedPrecondition(
            "NO_OWNERS_COMMITTEE",
            f"no owners' committee of project {project_id} is known to be the buyer",
            project_id=project_id,
        )
    return Tender(
        tender_id=tender_id,
        district_code=district_code,
        project_id=project_id,
        buyer=committee_id,
        title=title,
        scope="",
        service_standard="",
        max_price_fen=0,
        weights=weights,
        price_method="",
        documents_hash="",
        committee_size=committee_size,
        representatives=(),
        state=State.DRAFT,
        created_at=now,
        vote_id=vote_id,
        matter_id=matter_id,
    )


# What a buyer (or a decision's committee) sets of a tender, and a re-tender takes over.
TERMS = (
    "title",
    "scope",
    "service_standard",
    "max_price_fen",
    "weights",
    "price_method",
    "documents_hash",
    "committee_size",
    "representatives",
)


def retender_draft(tender: Tender, tender_id: str, now: dt.datetime) -> Tender:
    """A new tender for an unsuccessful one: a draft of the same buyer, project and terms."""
    return Tender(
        district_code=tender.district_code,
        project_id=tender.project_id,
        buyer=tender.buyer,
        **{name: getattr(tender, name) for name in TERMS},
        tender_id=tender_id,
        state=State.DRAFT,
        created_at=now,
    )


def complete_decision_draft(draft: Tender, terms: Tender) -> Tender:
    """The decision's draft with the terms its committee set; only a draft, of the same
    project, takes them."""
    require_state(draft, State.DRAFT, doing="setting the terms")
    if terms.project_id != draft.project_id:
        raise FailedPrecondition(
            "DECISION_OF_ANOTHER_PROJECT",
            f"the decision's tender {draft.tender_id} is for project {draft.project_id}",
            tender_id=draft.tender_id,
        )
    return replace(draft, **{name: getattr(terms, name) for name in TERMS})


def check_terms_set(tender: Tender) -> None:
    """A decision's draft is published once its committee set the terms."""
    if tender.max_price_fen <= 0:
        raise FailedPrecondition(
            "TENDER_TERMS_MISSING",
            f"tender {tender.tender_id} has no terms yet: CreateTender with its vote_id and "
            "matter_id sets them",
            tender_id=tender.tender_id,
        )


def check_price(price_fen: int, max_price_fen: int, v: Violations, field: str) -> None:
    if v.check(price_fen > 0, field, "is a price in fen, above 0"):
        v.check(
            price_fen <= max_price_fen,
            field,
            f"is over the tender's maximum price of {max_price_fen} fen",
        )


def due_step(tender: Tender, now: dt.datetime) -> Step | None:
    """What a timer does to the tender now: end the enquiries, or open (or fail) at the
    deadline. A suspended tender's timers stop."""
    if tender.suspended:
        return None
    if tender.state is State.ENQUIRIES and now >= tender.enquiry_end:
        return Step.END_ENQUIRIES
    if tender.state is State.TENDERING and now >= tender.bid_deadline:
        return Step.OPEN
    return None


def missed_deadlines(tender: Tender, now: dt.datetime) -> list[str]:
    """Deadlines after the award that have passed, not yet flagged."""
    if tender.suspended or tender.awarded_at is None or tender.state is State.CANCELLED:
        return []
    missed = []
    if tender.completed_at is None and now >= tender.filing_due:
        missed.append("FILING")
    if tender.contract_signed_at is None and now >= tender.contract_due:
        missed.append("CONTRACT")
    return [m for m in missed if m not in tender.missed]


def next_due(tender: Tender) -> dt.datetime | None:
    """When a timer next has something to do with the tender; None: never again."""
    if tender.state is State.ENQUIRIES:
        return tender.enquiry_end
    if tender.state is State.TENDERING:
        return tender.bid_deadline
    dates = []
    if tender.awarded_at is not None and tender.state in (State.AWARDED, State.COMPLETE):
        if tender.completed_at is None and "FILING" not in tender.missed:
            dates.append(tender.filing_due)
        if tender.contract_signed_at is None and "CONTRACT" not in tender.missed:
            dates.append(tender.contract_due)
    return min(dates, default=None)


def check_standstill_over(tender: Tender, now: dt.datetime) -> None:
    if now < tender.standstill_end:
        raise FailedPrecondition(
            "STANDSTILL_RUNNING",
            f"the standstill of tender {tender.tender_id} runs until "
            f"{tender.standstill_end.isoformat(timespec='seconds')}",
            tender_id=tender.tender_id,
        )


def check_complaint_window(tender: Tender, now: dt.datetime) -> None:
    require_state(tender, State.AWARDED, doing="a complaint")
    if now >= tender.standstill_end:
        raise FailedPrecondition(
            "STANDSTILL_OVER",
            f"complaints were open until {tender.standstill_end.isoformat(timespec='seconds')}",
            tender_id=tender.tender_id,
        )


# ---------------------------------------------------------------- sealed bids


@dataclass(frozen=True)
class BidContent:
    tender_id: str
    credit_code: str
    price_fen: int
    technical_documents: tuple[str, ...]
    staff: int
    # Hex; makes the receipt impossible to match by trying prices.
    salt: str

    def sealed_text(self) -> bytes:
        """The canonical JSON that is encrypted, and whose SHA-256 is the receipt."""
        return json.dumps(
            {
                "tender_id": self.tender_id,
                "credit_code": self.credit_code,
                "price_fen": self.price_fen,
                "technical_documents": list(self.technical_documents),
                "staff": self.staff,
                "salt": self.salt,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_text(cls, text: bytes) -> BidContent:
        values = json.loads(text)
        return cls(
            values["tender_id"],
            values["credit_code"],
            values["price_fen"],
            tuple(values["technical_documents"]),
            values["staff"],
            values["salt"],
        )


def receipt_of(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


@dataclass(frozen=True)
class CreditStanding:
    """What credit says of a bidder (GetCreditReport)."""

    grade: str  # AAA ... C, or C_UNFILED
    score: Decimal
    filed: bool
    blacklisted: bool
    serious_records: int
    explanation: str


# Credit has never heard of the enterprise: it was never filed (DOMAIN.md: "C (unfiled)").
NO_CREDIT_FILE = CreditStanding(
    grade="C_UNFILED",
    score=Decimal(0),
    filed=False,
    blacklisted=True,
    serious_records=0,
    explanation="no credit file: the enterprise was never filed",
)


def bid_refusal(credit_code: str, standing: CreditStanding) -> str | None:
    """Why a bidder may not bid (joint punishment of the blacklisted), or None."""
    if not standing.filed:
        return f"enterprise {credit_code} is not filed (grade {standing.grade})"
    if standing.blacklisted:
        serious = (
            f", {standing.serious_records} serious record(s) in force"
            if standing.serious_records
            else ""
        )
        return f"enterprise {credit_code} is blacklisted: grade {standing.grade}{serious}"
    return None


def check_may_bid(credit_code: str, standing: CreditStanding) -> None:
    refusal = bid_refusal(credit_code, standing)
    if refusal is not None:
        raise FailedPrecondition(
            "BIDDER_BLACKLISTED" if standing.filed else "BIDDER_UNFILED",
            f"{refusal}; blacklisted and unfiled enterprises cannot bid",
            credit_code=credit_code,
            grade=standing.grade,
        )


@dataclass(frozen=True)
class Bid:
    credit_code: str
    receipt: str
    submitted_at: dt.datetime
    content: BidContent | None = None  # None until opened
    standing: CreditStanding | None = None  # at the deadline
    rejection: str = ""
    abnormally_low: bool = False


def enough_bids(count: int, minimum: int) -> bool:
    return count >= minimum


def abnormally_low(
    prices: Mapping[str, int], below_average: Fraction, below_next: Fraction
) -> set[str]:
    """Bidders whose price is more than `below_average` under the average of the others' or more
    than `below_next` under the next higher price (ProZorro's flags)."""
    flagged = set()
    for code, price in prices.items():
        others = [p for c, p in prices.items() if c != code]
        if not others:
            continue
        average = Fraction(sum(others), len(others))
        higher = [p for p in others if p >= price]
        if price < average * (1 - below_average) or (
            higher and price < min(higher) * (1 - below_next)
        ):
            flagged.add(code)
    return flagged


# ---------------------------------------------------------------- the committee


@dataclass(frozen=True)
class Expert:
    expert_id: str
    specialities: tuple[str, ...]
    districts: tuple[str, ...]
    conflicts: tuple[str, ...]


def committee_lists(tender: Tender, bidders: Iterable[str], pool: Iterable[Expert]) -> dict:
    """The lists the committee is drawn from, as plain JSON values: what the commitment
    covers."""
    return {
        "algorithm_version": COMMITTEE_ALGORITHM_VERSION,
        "tender_id": tender.tender_id,
        "size": tender.committee_size,
        "representatives": list(tender.representatives),
        "bidders": sorted(bidders),
        "pool": [
            [e.expert_id, list(e.specialities), list(e.districts), list(e.conflicts)]
            for e in sorted(pool, key=lambda e: e.expert_id)
            if tender.district_code in e.districts
        ],
    }


def commitment(seed: bytes, lists: Mapping) -> str:
    return public_draw.commitment(seed, public_draw.lists_digest(lists))


def draw_committee(seed: bytes, lists: Mapping) -> tuple[str, ...]:
    """The drawn experts, in the order drawn; FailedPrecondition if too few can sit."""
    bidders = set(lists["bidders"])
    needed = lists["size"] - len(lists["representatives"])
    eligible = [
        expert_id
        for expert_id, _specialities, _districts, conflicts in lists["pool"]
        if not bidders & set(conflicts)
    ]
    if len(eligible) < needed:
        raise FailedPrecondition(
            "NOT_ENOUGH_EXPERTS",
            f"{len(eligible)} experts of the pool have no conflict with a bidder; the committee "
            f"needs {needed}",
            tender_id=lists["tender_id"],
        )
    eligible.sort(key=lambda e: public_draw.key(seed, f"expert:{lists['tender_id']}:{e}"))
    return tuple(eligible[:needed])


def verify_committee(
    seed: bytes,
    seed_commitment: str,
    lists: Mapping,
    published: tuple[str, ...],
    published_commitment: str | None,
) -> list[str]:
    """Every way a published committee departs from what its seed and lists give."""
    problems = public_draw.commitment_problems(
        seed,
        seed_commitment,
        public_draw.lists_digest(lists),
        published_commitment,
        "at the bid deadline",
    )
    try:
        expected = draw_committee(seed, lists)
    except FailedPrecondition as e:
        return [*problems, f"the lists cannot be drawn: {e.message}"]
    if expected != published:
        problems.append(
            f"the committee recomputes as {list(expected)}, published {list(published)}"
        )
    return problems


def check_member(tender: Tender, subject: str) -> None:
    if subject not in tender.members:
        raise FailedPrecondition(
            "NOT_A_COMMITTEE_MEMBER",
            f"{subject[:64]} is not on the committee of tender {tender.tender_id}",
            tender_id=tender.tender_id,
        )


# ---------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Ranked:
    credit_code: str
    price_fen: int
    price_score: Fraction
    technical_score: Fraction
    credit_score: Fraction
    total: Fraction
    scored_by: int
    bid: Bid


HUNDRED = Fraction(100)


def price_score(price: int, lowest: int, method: str) -> Fraction:
    """Out of 100. LOWEST_FULL_MARKS: the lowest valid price earns 100, another lowest/price."""
    if method != "LOWEST_FULL_MARKS":
        raise ValueError(f"unknown price method {method}")
    return HUNDRED * lowest / price


def credit_score(standing: CreditStanding) -> Fraction:
    """Out of 100: the credit score at the deadline, within 0 .. 100."""
    return min(max(Fraction(standing.score), Fraction(0)), HUNDRED)


def rank(
    bids: Iterable[Bid],
    scores: Mapping[str, Mapping[str, Decimal]],
    weights: Weights,
    method: str,
) -> list[Ranked]:
    """The valid bids ranked; `scores`: credit code -> member -> technical score. A bid's
    technical score is its members' mean (0 until scored). Ties: TIE_BREAK."""
    valid = [b for b in bids if not b.rejection and b.content is not None]
    if not valid:
        return []
    lowest = min(b.content.price_fen for b in valid)
    ranked = []
    for bid in valid:
        given = scores.get(bid.credit_code, {})
        technical = (
            sum((Fraction(s) for s in given.values()), Fraction(0)) / len(given)
            if given
            else Fraction(0)
        )
        price = price_score(bid.content.price_fen, lowest, method)
        credit = credit_score(bid.standing)
        total = (
            weights.price * price + weights.technical * technical + weights.credit * credit
        ) / 100
        ranked.append(
            Ranked(
                bid.credit_code,
                bid.content.price_fen,
                price,
                technical,
                credit,
                total,
                len(given),
                bid,
            )
        )
    ranked.sort(
        key=lambda r: (-r.total, -r.credit_score, r.price_fen, r.bid.submitted_at, r.credit_code)
    )
    return ranked


def evaluation_complete(ranked: list[Ranked], committee_size: int) -> bool:
    return bool(ranked) and all(r.scored_by == committee_size for r in ranked)


def winner_of(tender: Tender, ranked: list[Ranked]) -> Ranked:
    if not evaluation_complete(ranked, tender.committee_size):
        raise FailedPrecondition(
            "EVALUATION_INCOMPLETE",
            f"every member of the committee scores every valid bid before the award of tender "
            f"{tender.tender_id}",
            tender_id=tender.tender_id,
        )
    return ranked[0]


def shown(value: Fraction) -> str:
    """A score for reading, 2 decimals; decisions use the exact fraction."""
    return str(
        (Decimal(value.numerator) / Decimal(value.denominator)).quantize(
            Decimal("0.01"), ROUND_HALF_UP
        )
    )


def check_technical_score(value: Decimal, v: Violations, field: str) -> None:
    v.check(Decimal(0) <= value <= Decimal(100), field, "is a score from 0 to 100")


@dataclass(frozen=True)
class Complaint:
    complaint_id: str
    tender_id: str
    credit_code: str
    reason: str
    filed_at: dt.datetime
    outcome: str = ""
    decision: str = ""
    decided_at: dt.datetime | None = None


def check_complaint_pending(complaint: Complaint) -> None:
    if complaint.outcome:
        raise FailedPrecondition(
            "COMPLAINT_DECIDED",
            f"complaint {complaint.complaint_id} was decided: {complaint.outcome}",
            complaint_id=complaint.complaint_id,
        )


def award_dates(now: dt.datetime, standstill_end: dt.datetime, periods: Periods) -> dict:
    return {
        "awarded_at": now,
        "standstill_end": standstill_end,
        "filing_due": now + periods.filing,
        "contract_due": now + periods.contract,
    }


@dataclass(frozen=True)
class Question:
    question_id: str
    text: str
    asked_at: dt.datetime
    answer: str = ""
    answered_at: dt.datetime | None = None


def check_unanswered(question: Question) -> None:
    if question.answered_at is not None:
        raise FailedPrecondition(
            "QUESTION_ANSWERED", f"question {question.question_id} has its answer"
        )
