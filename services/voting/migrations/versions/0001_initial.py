"""Read models of the registry's projects, committees and units; votes, their frozen rolls and
ballot logs; and the tables of wuye.core.events.

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
    op.create_table('ballots',
    sa.Column('vote_id', sa.String(length=32), nullable=False),
    sa.Column('sequence', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('pseudonym', sa.String(length=32), nullable=False),
    sa.Column('area_cm2', sa.BigInteger(), nullable=False),
    sa.Column('choices', sa.JSON(), nullable=False),
    sa.Column('cast_micros', sa.BigInteger(), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('paper_reference', sa.String(length=200), nullable=False),
    sa.Column('previous_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.Column('request_id', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('vote_id', 'sequence', name=op.f('pk_ballots'))
    )
    op.create_index(op.f('ix_ballots_vote_id_entry_hash'), 'ballots', ['vote_id', 'entry_hash'], unique=True)
    op.create_index(op.f('ix_ballots_vote_id_pseudonym'), 'ballots', ['vote_id', 'pseudonym'], unique=False)
    op.create_table('committees',
    sa.Column('committee_id', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('acting', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('committee_id', name=op.f('pk_committees'))
    )
    op.create_index(op.f('ix_committees_project_id'), 'committees', ['project_id'], unique=False)
    op.create_table('projects',
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.PrimaryKeyConstraint('project_id', name=op.f('pk_projects'))
    )
    op.create_table('roll',
    sa.Column('vote_id', sa.String(length=32), nullable=False),
    sa.Column('pseudonym', sa.String(length=32), nullable=False),
    sa.Column('area_cm2', sa.BigInteger(), nullable=False),
    sa.Column('unit_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('vote_id', 'pseudonym', name=op.f('pk_roll'))
    )
    op.create_table('roll_units',
    sa.Column('vote_id', sa.String(length=32), nullable=False),
    sa.Column('unit_id', sa.String(length=32), nullable=False),
    sa.Column('owner_key', sa.String(length=32), nullable=False),
    sa.Column('pseudonym', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('vote_id', 'unit_id', name=op.f('pk_roll_units'))
    )
    op.create_index(op.f('ix_roll_units_vote_id_owner_key'), 'roll_units', ['vote_id', 'owner_key'], unique=False)
    op.create_table('units',
    sa.Column('unit_id', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('area_cm2', sa.BigInteger(), nullable=False),
    sa.Column('owner_kind', sa.String(length=20), nullable=False),
    sa.Column('owner_key', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('unit_id', name=op.f('pk_units'))
    )
    op.create_index(op.f('ix_units_project_id'), 'units', ['project_id'], unique=False)
    op.create_table('votes',
    sa.Column('vote_id', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('open_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('close_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('roll_digest', sa.String(length=64), server_default='', nullable=False),
    sa.Column('roll_owners', sa.Integer(), server_default='0', nullable=False),
    sa.Column('roll_area_cm2', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('sequence', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('head', sa.String(length=64), server_default='', nullable=False),
    sa.Column('last_cast_micros', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_reason', sa.String(length=200), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('vote_id', name=op.f('pk_votes'))
    )
    op.create_index(op.f('ix_votes_district_code'), 'votes', ['district_code'], unique=False)
    op.create_index(op.f('ix_votes_project_id'), 'votes', ['project_id'], unique=False)
    op.create_index(op.f('ix_votes_state'), 'votes', ['state'], unique=False)


def downgrade() -> None:
    drop_event_order_tables(op)
    for table in ("votes", "units", "roll_units", "roll", "projects", "committees", "ballots",
                  "idempotency_keys", "inbox", "outbox"):
        op.drop_table(table)
