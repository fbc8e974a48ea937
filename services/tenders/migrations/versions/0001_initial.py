"""Tenders, sealed bids, the expert pool, questions, scores and complaints; and the tables of
wuye.core.events.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from wuye.core.migrate import create_core_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_core_tables(op)
    op.create_table(
        "tenders",
        sa.Column("tender_id", sa.String(32), nullable=False),
        sa.Column("district_code", sa.String(6), nullable=False),
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("due_at", sa.Float(), nullable=True),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("tender_id", name=op.f("pk_tenders")),
    )
    for column in ("district_code", "project_id", "due_at"):
        op.create_index(op.f(f"ix_tenders_{column}"), "tenders", [column])
    op.create_table(
        "bids",
        sa.Column("tender_id", sa.String(32), nullable=False),
        sa.Column("credit_code", sa.String(18), nullable=False),
        sa.Column("receipt", sa.String(64), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("submitted_at", sa.Float(), nullable=False),
        sa.Column("opened", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("tender_id", "credit_code", name=op.f("pk_bids")),
    )
    op.create_table(
        "experts",
        sa.Column("expert_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("specialities", sa.JSON(), nullable=False),
        sa.Column("districts", sa.JSON(), nullable=False),
        sa.Column("conflicts", sa.JSON(), nullable=False),
        sa.Column("registered_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("expert_id", name=op.f("pk_experts")),
    )
    op.create_table(
        "questions",
        sa.Column("question_id", sa.String(32), nullable=False),
        sa.Column("tender_id", sa.String(32), nullable=False),
        sa.Column("text", sa.String(200), nullable=False),
        sa.Column("asked_at", sa.Float(), nullable=False),
        sa.Column("answer", sa.String(200), nullable=False),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("question_id", name=op.f("pk_questions")),
    )
    op.create_index(op.f("ix_questions_tender_id"), "questions", ["tender_id"])
    op.create_table(
        "scores",
        sa.Column("tender_id", sa.String(32), nullable=False),
        sa.Column("credit_code", sa.String(18), nullable=False),
        sa.Column("member", sa.String(128), nullable=False),
        sa.Column("score", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("tender_id", "credit_code", "member", name=op.f("pk_scores")),
    )
    op.create_table(
        "complaints",
        sa.Column("complaint_id", sa.String(32), nullable=False),
        sa.Column("tender_id", sa.String(32), nullable=False),
        sa.Column("credit_code", sa.String(18), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("filed_at", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(200), nullable=False),
        sa.Column("decided_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("complaint_id", name=op.f("pk_complaints")),
    )
    op.create_index(op.f("ix_complaints_tender_id"), "complaints", ["tender_id"])
