"""Unit accounts, the ledger's entries and postings, uses with their payments and shares, what
units owe, interest periods; and the tables of wuye.core.events.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from wuye.core.migrate import create_core_tables, drop_event_order_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_core_tables(op)
    op.create_table('accounts',
    sa.Column('unit_id', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('unit_number', sa.String(length=64), nullable=False),
    sa.Column('area_cm2', sa.BigInteger(), nullable=False),
    sa.Column('owner_key', sa.String(length=128), nullable=False),
    sa.Column('balance_fen', sa.BigInteger(), nullable=False),
    sa.Column('first_deposit_fen', sa.BigInteger(), nullable=False),
    sa.Column('owed_fen', sa.BigInteger(), nullable=False),
    sa.Column('deposited_fen', sa.BigInteger(), nullable=False),
    sa.Column('interest_fen', sa.BigInteger(), nullable=False),
    sa.Column('used_fen', sa.BigInteger(), nullable=False),
    sa.Column('top_up_required', sa.Boolean(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('unit_id', name=op.f('pk_accounts'))
    )
    op.create_index(op.f('ix_accounts_district_code'), 'accounts', ['district_code'], unique=False)
    op.create_index(op.f('ix_accounts_owner_key'), 'accounts', ['owner_key'], unique=False)
    op.create_index(op.f('ix_accounts_project_id'), 'accounts', ['project_id'], unique=False)
    op.create_table('entries',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entry_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('use_id', sa.String(length=32), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('reverses', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('deposit_kind', sa.String(length=8), nullable=True),
    sa.Column('posted_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_entries')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_entries_entry_id')),
    sa.UniqueConstraint('reverses', name=op.f('uq_entries_reverses'))
    )
    op.create_index(op.f('ix_entries_district_code'), 'entries', ['district_code'], unique=False)
    op.create_index(op.f('ix_entries_project_id'), 'entries', ['project_id'], unique=False)
    op.create_table('interest_periods',
    sa.Column('scope', sa.String(length=32), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('interest_fen', sa.BigInteger(), nullable=False),
    sa.Column('accounts', sa.Integer(), nullable=False),
    sa.Column('allocated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'period', name=op.f('pk_interest_periods'))
    )
    op.create_table('payments',
    sa.Column('use_id', sa.String(length=32), nullable=False),
    sa.Column('stage', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('debited_fen', sa.BigInteger(), nullable=False),
    sa.Column('owed_fen', sa.BigInteger(), nullable=False),
    sa.Column('entry_id', sa.String(length=64), nullable=False),
    sa.Column('bank_reference', sa.String(length=200), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('use_id', 'stage', name=op.f('pk_payments'))
    )
    op.create_table('postings',
    sa.Column('entry_id', sa.String(length=64), nullable=False),
    sa.Column('line', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('account_kind', sa.String(length=8), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('unit_id', sa.String(length=32), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('entry_id', 'line', name=op.f('pk_postings'))
    )
    op.create_index(op.f('ix_postings_project_id'), 'postings', ['project_id'], unique=False)
    op.create_index(op.f('ix_postings_unit_id'), 'postings', ['unit_id'], unique=False)
    op.create_table('shares',
    sa.Column('use_id', sa.String(length=32), nullable=False),
    sa.Column('stage', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('unit_id', sa.String(length=32), nullable=False),
    sa.Column('unit_number', sa.String(length=64), nullable=False),
    sa.Column('area_cm2', sa.BigInteger(), nullable=False),
    sa.Column('share_fen', sa.BigInteger(), nullable=False),
    sa.Column('debited_fen', sa.BigInteger(), nullable=False),
    sa.Column('owed_fen', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('use_id', 'stage', 'unit_id', name=op.f('pk_shares'))
    )
    op.create_table('unit_owed',
    sa.Column('unit_id', sa.String(length=32), nullable=False),
    sa.Column('use_id', sa.String(length=32), nullable=False),
    sa.Column('owed_fen', sa.BigInteger(), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('unit_id', 'use_id', name=op.f('pk_unit_owed'))
    )
    op.create_table('uses',
    sa.Column('use_id', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('budget_fen', sa.BigInteger(), nullable=False),
    sa.Column('works_kind', sa.String(length=24), nullable=True),
    sa.Column('unit_ids', sa.JSON(), nullable=False),
    sa.Column('decision', sa.JSON(), nullable=True),
    sa.Column('emergency', sa.JSON(), nullable=True),
    sa.Column('decision_key', sa.String(length=120), nullable=True),
    sa.Column('alarm_id', sa.String(length=64), nullable=True),
    sa.Column('paid_fen', sa.BigInteger(), nullable=False),
    sa.Column('owed_fen', sa.BigInteger(), nullable=False),
    sa.Column('payments', sa.Integer(), nullable=False),
    sa.Column('final_cost_fen', sa.BigInteger(), nullable=True),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('approve_by', sa.Date(), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('notified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('use_id', name=op.f('pk_uses')),
    sa.UniqueConstraint('alarm_id', name=op.f('uq_uses_alarm_id')),
    sa.UniqueConstraint('decision_key', name=op.f('uq_uses_decision_key'))
    )
    op.create_index(op.f('ix_uses_approve_by'), 'uses', ['approve_by'], unique=False)
    op.create_index(op.f('ix_uses_district_code'), 'uses', ['district_code'], unique=False)
    op.create_index(op.f('ix_uses_project_id'), 'uses', ['project_id'], unique=False)
    op.create_index(op.f('ix_uses_state'), 'uses', ['state'], unique=False)
    # ### end Alembic commands ###


def downgrade() -> None:
    for table in ("interest_periods", "unit_owed", "shares", "payments", "uses", "postings",
                  "entries", "accounts"):
        op.drop_table(table)
    drop_event_order_tables(op)
    for table in ("idempotency_keys", "inbox", "outbox"):
        op.drop_table(table)
