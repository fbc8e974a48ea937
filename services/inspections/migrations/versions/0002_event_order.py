"""Event order: each event's version per (topic, key), consumers' high-water marks, and the
relay's lease.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from alembic import op

from wuye.core.migrate import create_event_order_tables, drop_event_order_tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_event_order_tables(op)


def downgrade() -> None:
    drop_event_order_tables(op)
