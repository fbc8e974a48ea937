"""Credit files, assessments, records, the grade feed and timer marks, and the outbox, inbox
and idempotency keys every service keeps.

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
    op.create_table('assessments',
    sa.Column('assessment_id', sa.String(length=32), nullable=False),
    sa.Column('subject_key', sa.String(length=80), nullable=False),
    sa.Column('cycle', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=8), nullable=False),
    sa.Column('checklist', sa.String(length=16), nullable=False),
    sa.Column('assessors', sa.JSON(), nullable=False),
    sa.Column('scores', sa.JSON(), nullable=False),
    sa.Column('base_tenths', sa.BigInteger(), nullable=False),
    sa.Column('assessed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('assessment_id', name=op.f('pk_assessments'))
    )
    op.create_index(op.f('ix_assessments_subject_key'), 'assessments', ['subject_key'], unique=False)
    op.create_table('grade_changes',
    sa.Column('sequence', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('subject_key', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('subject_id', sa.String(length=64), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('previous_grade', sa.String(length=16), nullable=False),
    sa.Column('grade', sa.String(length=16), nullable=False),
    sa.Column('score_tenths', sa.BigInteger(), nullable=False),
    sa.Column('blacklisted', sa.Boolean(), nullable=False),
    sa.Column('red_listed', sa.Boolean(), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sequence', name=op.f('pk_grade_changes'))
    )
    op.create_table('records',
    sa.Column('record_id', sa.String(length=32), nullable=False),
    sa.Column('subject_key', sa.String(length=80), nullable=False),
    sa.Column('record_type', sa.String(length=40), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('points_tenths', sa.BigInteger(), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('source_event_id', sa.String(length=100), nullable=True),
    sa.Column('evidence_reference', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('removed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rectified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('appeal', sa.String(length=16), nullable=False),
    sa.Column('appeal_reason', sa.String(length=200), nullable=False),
    sa.Column('appeal_decision', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('record_id', name=op.f('pk_records')),
    sa.UniqueConstraint('source_event_id', name=op.f('uq_records_source_event_id'))
    )
    op.create_index(op.f('ix_records_expires_at'), 'records', ['expires_at'], unique=False)
    op.create_index(op.f('ix_records_subject_key'), 'records', ['subject_key'], unique=False)
    op.create_table('subjects',
    sa.Column('subject_key', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('subject_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('filed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('unfiled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('grade', sa.String(length=16), nullable=False),
    sa.Column('score_tenths', sa.BigInteger(), nullable=False),
    sa.Column('blacklisted', sa.Boolean(), nullable=False),
    sa.Column('red_listed', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('subject_key', name=op.f('pk_subjects'))
    )
    op.create_index(op.f('ix_subjects_district_code'), 'subjects', ['district_code'], unique=False)
    op.create_table('timer_marks',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('mark', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_timer_marks'))
    )


def downgrade() -> None:
    for table in ("timer_marks", "grade_changes", "records", "assessments", "subjects",
                  "idempotency_keys", "inbox", "outbox"):
        op.drop_table(table)
