"""One round per district and half-year; inspectors' relatives and the registry's persons linked
to enterprises (conflicts of interest); complaints; and the natural keys that let the event
handlers recognise a replayed event: the triggering event's id, a grade's feed sequence, the
time of the last assignment or exit applied to a project.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "round_periods",
        sa.Column("district_code", sa.String(6), primary_key=True),
        sa.Column("half_year", sa.String(6), primary_key=True),
        sa.Column("round_id", sa.String(32), nullable=False),
    )
    op.create_table(
        "inspector_relatives",
        sa.Column("inspector_id", sa.String(64), primary_key=True),
        sa.Column("person_key", sa.String(32), primary_key=True),
        sa.Column("masked_id_number", sa.String(18), nullable=False),
    )
    op.create_table(
        "enterprise_persons",
        sa.Column("practitioner_id", sa.String(32), primary_key=True),
        sa.Column("person_key", sa.String(32), nullable=False, index=True),
        sa.Column("credit_code", sa.String(18), nullable=False),
    )
    op.create_table(
        "complaints",
        sa.Column("source_event_id", sa.String(100), primary_key=True),
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_complaints_project_id_received_at", "complaints", ["project_id", "received_at"]
    )
    with op.batch_alter_table("triggers") as batch:
        batch.add_column(sa.Column("source_event_id", sa.String(100), nullable=True))
        batch.create_unique_constraint("uq_triggers_source_event_id", ["source_event_id"])
    with op.batch_alter_table("grades") as batch:
        batch.add_column(sa.Column("sequence", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("assigned_at")
    with op.batch_alter_table("grades") as batch:
        batch.drop_column("sequence")
    with op.batch_alter_table("triggers") as batch:
        batch.drop_constraint("uq_triggers_source_event_id", type_="unique")
        batch.drop_column("source_event_id")
    op.drop_index("ix_complaints_project_id_received_at", "complaints")
    for table in ("complaints", "enterprise_persons", "inspector_relatives", "round_periods"):
        op.drop_table(table)
