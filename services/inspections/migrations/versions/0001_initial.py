"""Inspectors, read models of projects and grades, triggers, rounds, checks, rectification
orders, and the outbox, inbox and idempotency keys every service keeps.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from wuye.core.migrate import create_event_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_event_tables(op)
    op.create_table('checks',
    sa.Column('check_id', sa.String(length=32), nullable=False),
    sa.Column('round_id', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('project_type', sa.String(length=16), nullable=False),
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('inspector_ids', sa.JSON(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('scores', sa.JSON(), nullable=True),
    sa.Column('findings', sa.JSON(), nullable=True),
    sa.Column('score_tenths', sa.BigInteger(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('check_id', name=op.f('pk_checks'))
    )
    op.create_index(op.f('ix_checks_credit_code'), 'checks', ['credit_code'], unique=False)
    op.create_index(op.f('ix_checks_district_code'), 'checks', ['district_code'], unique=False)
    op.create_index(op.f('ix_checks_recorded_at'), 'checks', ['recorded_at'], unique=False)
    op.create_index(op.f('ix_checks_round_id'), 'checks', ['round_id'], unique=False)
    op.create_table('grades',
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('grade', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('credit_code', name=op.f('pk_grades'))
    )
    op.create_table('inspectors',
    sa.Column('inspector_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('unit', sa.String(length=200), nullable=False),
    sa.Column('districts', sa.JSON(), nullable=False),
    sa.Column('conflicts', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('inspector_id', name=op.f('pk_inspectors'))
    )
    op.create_table('projects',
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('project_type', sa.String(length=16), nullable=False),
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.PrimaryKeyConstraint('project_id', name=op.f('pk_projects'))
    )
    op.create_index(op.f('ix_projects_district_code'), 'projects', ['district_code'], unique=False)
    op.create_table('rectifications',
    sa.Column('order_id', sa.String(length=32), nullable=False),
    sa.Column('check_id', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('item_id', sa.String(length=16), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=False),
    sa.Column('rectify_by', sa.Date(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('overdue_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('order_id', name=op.f('pk_rectifications'))
    )
    op.create_index(op.f('ix_rectifications_district_code'), 'rectifications', ['district_code'], unique=False)
    op.create_index(op.f('ix_rectifications_rectify_by'), 'rectifications', ['rectify_by'], unique=False)
    op.create_index(op.f('ix_rectifications_state'), 'rectifications', ['state'], unique=False)
    op.create_table('rounds',
    sa.Column('round_id', sa.String(length=32), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('seed', sa.String(length=64), nullable=False),
    sa.Column('seed_commitment', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('drawn_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('round_id', name=op.f('pk_rounds'))
    )
    op.create_table('triggers',
    sa.Column('trigger_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('round_id', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('trigger_id', name=op.f('pk_triggers'))
    )
    op.create_index(op.f('ix_triggers_project_id'), 'triggers', ['project_id'], unique=False)


def downgrade() -> None:
    for table in ("rectifications", "checks", "rounds", "triggers", "grades", "projects",
                  "inspectors", "idempotency_keys", "inbox", "outbox"):
        op.drop_table(table)
