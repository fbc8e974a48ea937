"""Cases, meetings, resolutions, tasks and minutes of joint meetings, the read model of
projects and committees, and the tables of wuye.core.events.

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
    op.create_table('cases',
    sa.Column('case_id', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('sub_district', sa.String(length=200), nullable=False),
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('enterprise_attempts', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('raised_by_role', sa.String(length=32), nullable=False),
    sa.Column('raised_by', sa.String(length=128), nullable=False),
    sa.Column('name_key', sa.String(length=32), nullable=False),
    sa.Column('phone_key', sa.String(length=32), nullable=False),
    sa.Column('masked_name', sa.String(length=200), nullable=False),
    sa.Column('masked_phone', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.String(length=2000), nullable=False),
    sa.Column('referred_to', sa.JSON(), nullable=True),
    sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('case_id', name=op.f('pk_cases'))
    )
    op.create_index(op.f('ix_cases_district_code_raised_at'), 'cases', ['district_code', 'raised_at'], unique=False)
    op.create_index(op.f('ix_cases_district_code_resolved_at'), 'cases', ['district_code', 'resolved_at'], unique=False)
    op.create_index(op.f('ix_cases_project_id'), 'cases', ['project_id'], unique=False)
    op.create_index(op.f('ix_cases_raised_by'), 'cases', ['raised_by'], unique=False)
    op.create_table('committees',
    sa.Column('committee_id', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('committee_id', name=op.f('pk_committees'))
    )
    op.create_table('meetings',
    sa.Column('meeting_id', sa.String(length=32), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('sub_district', sa.String(length=200), nullable=False),
    sa.Column('held_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('place', sa.String(length=200), nullable=False),
    sa.Column('case_ids', sa.JSON(), nullable=False),
    sa.Column('invitations', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('chair', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('meeting_id', name=op.f('pk_meetings'))
    )
    op.create_index(op.f('ix_meetings_district_code_held_at'), 'meetings', ['district_code', 'held_at'], unique=False)
    op.create_table('minutes',
    sa.Column('minutes_id', sa.String(length=32), nullable=False),
    sa.Column('meeting_id', sa.String(length=32), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('hold_time', sa.String(length=40), nullable=False),
    sa.Column('place', sa.String(length=200), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('amendments', sa.JSON(), nullable=False),
    sa.Column('amends_minutes_id', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('required_signers', sa.JSON(), nullable=False),
    sa.Column('signatures', sa.JSON(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('minutes_id', name=op.f('pk_minutes'))
    )
    op.create_index(op.f('ix_minutes_meeting_id'), 'minutes', ['meeting_id'], unique=False)
    op.create_table('projects',
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('sub_district', sa.String(length=200), nullable=False),
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('project_id', name=op.f('pk_projects'))
    )
    op.create_table('resolutions',
    sa.Column('resolution_id', sa.String(length=32), nullable=False),
    sa.Column('meeting_id', sa.String(length=32), nullable=False),
    sa.Column('case_id', sa.String(length=32), nullable=False),
    sa.Column('decision', sa.Text(), nullable=False),
    sa.Column('adopted_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('resolution_id', name=op.f('pk_resolutions'))
    )
    op.create_index(op.f('ix_resolutions_meeting_id'), 'resolutions', ['meeting_id'], unique=False)
    op.create_table('tasks',
    sa.Column('task_id', sa.String(length=32), nullable=False),
    sa.Column('case_id', sa.String(length=32), nullable=False),
    sa.Column('meeting_id', sa.String(length=32), nullable=False),
    sa.Column('resolution_id', sa.String(length=32), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('unit_kind', sa.String(length=64), nullable=False),
    sa.Column('unit_id', sa.String(length=128), nullable=False),
    sa.Column('unit_name', sa.String(length=200), nullable=False),
    sa.Column('working_days', sa.Integer(), nullable=False),
    sa.Column('done_when', sa.String(length=2000), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('lateness', sa.String(length=16), nullable=False),
    sa.Column('escalation_level', sa.String(length=64), nullable=False),
    sa.Column('completion_note', sa.String(length=2000), nullable=False),
    sa.Column('reminded', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('task_id', name=op.f('pk_tasks'))
    )
    op.create_index(op.f('ix_tasks_case_id'), 'tasks', ['case_id'], unique=False)
    op.create_index(op.f('ix_tasks_district_code_due_date'), 'tasks', ['district_code', 'due_date'], unique=False)
    op.create_index(op.f('ix_tasks_state_lateness_due_date'), 'tasks', ['state', 'lateness', 'due_date'], unique=False)
    op.create_index(op.f('ix_tasks_unit_id'), 'tasks', ['unit_id'], unique=False)
