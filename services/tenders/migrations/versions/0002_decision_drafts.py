"""An owners' decision to hire an enterprise opens a draft tender: the tender keeps the
decision (once), and each project's acting owners' committee is known as its buyer.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tenders", sa.Column("decision", sa.String(80), nullable=True))
    # A unique index, not a constraint: SQLite (make run) adds no constraint to a table.
    op.create_index(op.f("ix_tenders_decision"), "tenders", ["decision"], unique=True)
    op.create_table(
        "committees",
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.Column("committee_id", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_committees")),
    )


def downgrade() -> None:
    op.drop_table("committees")
    op.drop_index(op.f("ix_tenders_decision"), table_name="tenders")
    op.drop_column("tenders", "decision")
