"""Tender tables and their queries. A tender is one row: the columns its queries filter on
(district, project, state, when a timer is next due) and the rest as a JSON document. A bid is
sealed: its content is ciphertext until the opening writes what was opened beside it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import Connection

from wuye.core.db import service_metadata
from wuye.tenders.domain import (
    Bid,
    BidContent,
    Complaint,
    CreditStanding,
    Expert,
    Question,
    State,
    Tender,
    Weights,
    decision_key,
    next_due,
)

metadata = service_metadata()

tenders = sa.Table(
    "tenders",
    metadata,
    sa.Column("tender_id", sa.String(32), primary_key=True),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("project_id", sa.String(32), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    # Epoch seconds a timer next has something to do; NULL: nothing more.
    sa.Column("due_at", sa.Float, nullable=True, index=True),
    sa.Column("doc", sa.JSON, nullable=False),
    # "vote/matter" of the owners' decision that opened the tender; one tender per decision.
    sa.Column("decision", sa.String(80), nullable=True, unique=True, index=True),
)
# The acting owners' committee of each project, from the registry's events: the buyer of the
# draft an owners' decision opens.
committees = sa.Table(
    "committees",
    metadata,
    sa.Column("project_id", sa.String(32), primary_key=True),
    sa.Column("committee_id", sa.String(32), nullable=False),
)
bids = sa.Table(
    "bids",
    metadata,
    sa.Column("tender_id", sa.String(32), primary_key=True),
    sa.Column("credit_code", sa.String(18), primary_key=True),
    sa.Column("receipt", sa.String(64), nullable=False),
    sa.Column("nonce", sa.LargeBinary, nullable=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    sa.Column("submitted_at", sa.Float, nullable=False),
    # Set at the opening: the content, the bidder's credit at the deadline, the flags.
    sa.Column("opened", sa.JSON, nullable=True),
)
experts = sa.Table(
    "experts",
    metadata,
    sa.Column("expert_id", sa.String(64), primary_key=True),
    # Never published: the committee's lists name experts by id.
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("specialities", sa.JSON, nullable=False),
    sa.Column("districts", sa.JSON, nullable=False),
    sa.Column("conflicts", sa.JSON, nullable=False),
    sa.Column("registered_at", sa.Float, nullable=False),
)
# The asker is not kept: questions are published without naming who asked.
questions = sa.Table(
    "questions",
    metadata,
    sa.Column("question_id", sa.String(32), primary_key=True),
    sa.Column("tender_id", sa.String(32), nullable=False, index=True),
    sa.Column("text", sa.String(200), nullable=False),
    sa.Column("asked_at", sa.Float, nullable=False),
    sa.Column("answer", sa.String(200), nullable=False),
    sa.Column("answered_at", sa.Float, nullable=True),
)
scores = sa.Table(
    "scores",
    metadata,
    sa.Column("tender_id", sa.String(32), primary_key=True),
    sa.Column("credit_code", sa.String(18), primary_key=True),
    sa.Column("member", sa.String(128), primary_key=True),
    sa.Column("score", sa.String(8), nullable=False),
)
complaints = sa.Table(
    "complaints",
    metadata,
    sa.Column("complaint_id", sa.String(32), primary_key=True),
    sa.Column("tender_id", sa.String(32), nullable=False, index=True),
    sa.Column("credit_code", sa.String(18), nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("filed_at", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("decision", sa.String(200), nullable=False),
    sa.Column("decided_at", sa.Float, nullable=True),
)


def _seconds(moment: dt.datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _moment(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


_TIMES = {f.name for f in dataclasses.fields(Tender) if f.type == "dt.datetime | None"} | {
    "created_at"
}


def _doc(tender: Tender) -> dict:
    doc = {}
    for f in dataclasses.fields(Tender):
        value = getattr(tender, f.name)
        if f.name in _TIMES:
            value = _seconds(value)
        elif isinstance(value, Weights):
            value = dataclasses.asdict(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, State):
            value = value.value
        doc[f.name] = value
    return doc


def _tender(doc: dict) -> Tender:
    values = dict(doc)
    for name in _TIMES:
        values[name] = _moment(values[name])
    values["weights"] = Weights(**values["weights"])
    values["state"] = State(values["state"])
    for name in ("representatives", "experts", "missed"):
        values[name] = tuple(values[name])
    return Tender(**values)


def _columns(tender: Tender) -> dict:
    return {
        "district_code": tender.district_code,
        "project_id": tender.project_id,
        "state": tender.state.value,
        "due_at": _seconds(next_due(tender)),
        "doc": _doc(tender),
        "decision": decision_key(tender.vote_id, tender.matter_id),
    }


def insert_tender(connection: Connection, tender: Tender) -> None:
    connection.execute(tenders.insert().values(tender_id=tender.tender_id, **_columns(tender)))


def save_tender(connection: Connection, tender: Tender) -> None:
    connection.execute(
        tenders.update().where(tenders.c.tender_id == tender.tender_id).values(**_columns(tender))
    )


def get_tender(
    connection: Connection, tender_id: str, *, lock: bool = False, share: bool = False
) -> Tender | None:
    """With `lock`, the row is held until the transaction ends; with `share` as well, other
    sharers (bids, taken side by side) are let in and only a writer of the tender waits."""
    query = sa.select(tenders.c.doc).where(tenders.c.tender_id == tender_id)
    if lock:
        query = query.with_for_update(read=share)
    doc = connection.execute(query).scalar_one_or_none()
    return None if doc is None else _tender(doc)


def decision_tender(connection: Connection, key: str, *, lock: bool = False) -> Tender | None:
    query = sa.select(tenders.c.doc).where(tenders.c.decision == key)
    if lock:
        query = query.with_for_update()
    doc = connection.execute(query).scalar_one_or_none()
    return None if doc is None else _tender(doc)


def set_committee(connection: Connection, project_id: str, committee_id: str) -> None:
    """A newly formed committee replaces the one that acted before it."""
    updated = connection.execute(
        committees.update()
        .where(committees.c.project_id == project_id)
        .values(committee_id=committee_id)
    )
    if updated.rowcount == 0:
        connection.execute(
            committees.insert().values(project_id=project_id, committee_id=committee_id)
        )


def project_committee(connection: Connection, project_id: str) -> str | None:
    return connection.execute(
        sa.select(committees.c.committee_id).where(committees.c.project_id == project_id)
    ).scalar_one_or_none()


def due_tenders(connection: Connection, now: dt.datetime, limit: int) -> list[str]:
    return list(
        connection.execute(
            sa.select(tenders.c.tender_id)
            .where(tenders.c.due_at <= now.timestamp())
            .order_by(tenders.c.due_at)
            .limit(limit)
        ).scalars()
    )


def list_tenders(
    connection: Connection,
    districts: frozenset[str],
    project_id: str,
    states: tuple[State, ...],
    after: str | None,
    limit: int,
) -> list[Tender]:
    query = sa.select(tenders.c.doc).where(tenders.c.district_code.in_(sorted(districts)))
    if project_id:
        query = query.where(tenders.c.project_id == project_id)
    if states:
        query = query.where(tenders.c.state.in_([s.value for s in states]))
    if after is not None:
        query = query.where(tenders.c.tender_id > after)
    query = query.order_by(tenders.c.tender_id).limit(limit)
    return [_tender(doc) for doc in connection.execute(query).scalars()]


# ---------------------------------------------------------------- bids


def put_bid(
    connection: Connection,
    tender_id: str,
    credit_code: str,
    receipt: str,
    nonce: bytes,
    sealed: bytes,
    now: dt.datetime,
) -> bool:
    """Stores the bid, replacing the bidder's earlier one; True if it replaced one."""
    where = (bids.c.tender_id == tender_id) & (bids.c.credit_code == credit_code)
    values = {"receipt": receipt, "nonce": nonce, "sealed": sealed, "submitted_at": now.timestamp()}
    if connection.execute(bids.update().where(where).values(**values)).rowcount:
        return True
    connection.execute(bids.insert().values(tender_id=tender_id, credit_code=credit_code, **values))
    return False


def delete_bid(connection: Connection, tender_id: str, credit_code: str) -> bool:
    where = (bids.c.tender_id == tender_id) & (bids.c.credit_code == credit_code)
    return bool(connection.execute(bids.delete().where(where)).rowcount)


def sealed_bids(connection: Connection, tender_id: str) -> list:
    """Rows (credit_code, receipt, nonce, sealed, submitted_at), by bidder."""
    return list(
        connection.execute(
            sa.select(
                bids.c.credit_code, bids.c.receipt, bids.c.nonce, bids.c.sealed, bids.c.submitted_at
            )
            .where(bids.c.tender_id == tender_id)
            .order_by(bids.c.credit_code)
        )
    )


def count_bids(connection: Connection, tender_id: str) -> int:
    return connection.execute(
        sa.select(sa.func.count()).select_from(bids).where(bids.c.tender_id == tender_id)
    ).scalar_one()


def _standing(values: dict) -> CreditStanding:
    return CreditStanding(
        values["grade"],
        Decimal(values["score"]),
        values["filed"],
        values["blacklisted"],
        values["serious_records"],
        values["explanation"],
    )


def record_opened(connection: Connection, tender_id: str, opened: list[Bid]) -> None:
    for bid in opened:
        standing = dataclasses.asdict(bid.standing)
        standing["score"] = str(bid.standing.score)
        connection.execute(
            bids.update()
            .where((bids.c.tender_id == tender_id) & (bids.c.credit_code == bid.credit_code))
            .values(
                opened={
                    "content": bid.content.sealed_text().decode(),
                    "standing": standing,
                    "rejection": bid.rejection,
                    "abnormally_low": bid.abnormally_low,
                }
            )
        )


_OPENED = (bids.c.credit_code, bids.c.receipt, bids.c.submitted_at, bids.c.opened)


def _opened(row) -> Bid:
    return Bid(
        credit_code=row.credit_code,
        receipt=row.receipt,
        submitted_at=_moment(row.submitted_at),
        content=BidContent.from_text(row.opened["content"].encode()),
        standing=_standing(row.opened["standing"]),
        rejection=row.opened["rejection"],
        abnormally_low=row.opened["abnormally_low"],
    )


def opened_bids(connection: Connection, tender_id: str) -> list[Bid]:
    rows = connection.execute(
        sa.select(*_OPENED)
        .where((bids.c.tender_id == tender_id) & bids.c.opened.is_not(None))
        .order_by(bids.c.credit_code)
    )
    return [_opened(row) for row in rows]


def opened_bid(connection: Connection, tender_id: str, credit_code: str) -> Bid | None:
    row = connection.execute(
        sa.select(*_OPENED).where(
            (bids.c.tender_id == tender_id)
            & (bids.c.credit_code == credit_code)
            & bids.c.opened.is_not(None)
        )
    ).first()
    return _opened(row) if row else None


# ---------------------------------------------------------------- experts


def insert_expert(connection: Connection, expert: Expert, name: str, now: dt.datetime) -> bool:
    if connection.execute(
        sa.select(experts.c.expert_id).where(experts.c.expert_id == expert.expert_id)
    ).first():
        return False
    connection.execute(
        experts.insert().values(
            expert_id=expert.expert_id,
            name=name,
            specialities=list(expert.specialities),
            districts=list(expert.districts),
            conflicts=list(expert.conflicts),
            registered_at=now.timestamp(),
        )
    )
    return True


def expert_pool(connection: Connection) -> list[Expert]:
    rows = connection.execute(sa.select(experts).order_by(experts.c.expert_id))
    return [
        Expert(r.expert_id, tuple(r.specialities), tuple(r.districts), tuple(r.conflicts))
        for r in rows
    ]


# ---------------------------------------------------------------- questions, scores, complaints


def _question(row) -> Question:
    return Question(
        row.question_id, row.text, _moment(row.asked_at), row.answer, _moment(row.answered_at)
    )


def insert_question(connection: Connection, tender_id: str, question: Question) -> None:
    connection.execute(
        questions.insert().values(
            question_id=question.question_id,
            tender_id=tender_id,
            text=question.text,
            asked_at=question.asked_at.timestamp(),
            answer="",
        )
    )


def get_question(connection: Connection, tender_id: str, question_id: str) -> Question | None:
    row = connection.execute(
        sa.select(questions).where(
            (questions.c.question_id == question_id) & (questions.c.tender_id == tender_id)
        )
    ).first()
    return _question(row) if row else None


def answer_question(connection: Connection, question: Question) -> None:
    connection.execute(
        questions.update()
        .where(questions.c.question_id == question.question_id)
        .values(answer=question.answer, answered_at=question.answered_at.timestamp())
    )


def questions_of(connection: Connection, tender_id: str) -> list[Question]:
    rows = connection.execute(
        sa.select(questions)
        .where(questions.c.tender_id == tender_id)
        .order_by(questions.c.asked_at, questions.c.question_id)
    )
    return [_question(r) for r in rows]


def put_score(
    connection: Connection, tender_id: str, credit_code: str, member: str, score: Decimal
) -> bool:
    """Records the member's score of the bid, replacing an earlier one; True if it is new."""
    where = (
        (scores.c.tender_id == tender_id)
        & (scores.c.credit_code == credit_code)
        & (scores.c.member == member)
    )
    if connection.execute(scores.update().where(where).values(score=str(score))).rowcount:
        return False
    connection.execute(
        scores.insert().values(
            tender_id=tender_id, credit_code=credit_code, member=member, score=str(score)
        )
    )
    return True


def count_scores(connection: Connection, tender_id: str) -> int:
    return connection.execute(
        sa.select(sa.func.count()).select_from(scores).where(scores.c.tender_id == tender_id)
    ).scalar_one()


def scores_of(connection: Connection, tender_id: str) -> dict[str, dict[str, Decimal]]:
    found: dict[str, dict[str, Decimal]] = {}
    for row in connection.execute(sa.select(scores).where(scores.c.tender_id == tender_id)):
        found.setdefault(row.credit_code, {})[row.member] = Decimal(row.score)
    return found


def clear_scores(connection: Connection, tender_id: str) -> None:
    connection.execute(scores.delete().where(scores.c.tender_id == tender_id))


def _complaint(row) -> Complaint:
    return Complaint(
        row.complaint_id,
        row.tender_id,
        row.credit_code,
        row.reason,
        _moment(row.filed_at),
        row.outcome,
        row.decision,
        _moment(row.decided_at),
    )


def insert_complaint(connection: Connection, complaint: Complaint) -> None:
    connection.execute(
        complaints.insert().values(
            complaint_id=complaint.complaint_id,
            tender_id=complaint.tender_id,
            credit_code=complaint.credit_code,
            reason=complaint.reason,
            filed_at=complaint.filed_at.timestamp(),
            outcome="",
            decision="",
        )
    )


def get_complaint(connection: Connection, tender_id: str, complaint_id: str) -> Complaint | None:
    row = connection.execute(
        sa.select(complaints).where(
            (complaints.c.complaint_id == complaint_id) & (complaints.c.tender_id == tender_id)
        )
    ).first()
    return _complaint(row) if row else None


def decide_complaint(connection: Connection, complaint: Complaint) -> None:
    connection.execute(
        complaints.update()
        .where(complaints.c.complaint_id == complaint.complaint_id)
        .values(
            outcome=complaint.outcome,
            decision=complaint.decision,
            decided_at=complaint.decided_at.timestamp(),
        )
    )
