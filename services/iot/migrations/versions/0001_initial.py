"""Projects learnt from the registry, gateways with their replay windows, devices with their
state snapshots, alarms; and the outbox, inbox and idempotency keys every service keeps.

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
    op.create_table('alarms',
    sa.Column('alarm_id', sa.String(length=32), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('gateway_id', sa.String(length=32), nullable=False),
    sa.Column('device_id', sa.String(length=32), nullable=False),
    sa.Column('condition', sa.String(length=64), nullable=False),
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('observed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acked_by', sa.String(length=100), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=100), nullable=False),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('note', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('alarm_id', name=op.f('pk_alarms'))
    )
    op.create_index('ix_alarms_district_code_alarm_id', 'alarms', ['district_code', 'alarm_id'], unique=False)
    op.create_index(op.f('ix_alarms_project_id'), 'alarms', ['project_id'], unique=False)
    op.create_index('ix_alarms_unescalated', 'alarms', ['raised_at'], unique=False, sqlite_where=sa.text("state = 'RAISED' AND escalated_at IS NULL"), postgresql_where=sa.text("state = 'RAISED' AND escalated_at IS NULL"))
    op.create_index('uq_alarms_open_condition', 'alarms', ['condition'], unique=True, sqlite_where=sa.text("state != 'RESOLVED'"), postgresql_where=sa.text("state != 'RESOLVED'"))
    op.create_table('devices',
    sa.Column('device_id', sa.String(length=32), nullable=False),
    sa.Column('gateway_id', sa.String(length=32), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('location', sa.String(length=200), nullable=False),
    sa.Column('low', sa.Float(), nullable=False),
    sa.Column('high', sa.Float(), nullable=False),
    sa.Column('heartbeat_seconds', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_value', sa.Float(), nullable=True),
    sa.Column('last_observed_ns', sa.BigInteger(), nullable=False),
    sa.Column('last_seen', sa.Float(), nullable=False),
    sa.Column('abnormal', sa.Boolean(), nullable=False),
    sa.Column('silent', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('device_id', name=op.f('pk_devices'))
    )
    op.create_index(op.f('ix_devices_district_code'), 'devices', ['district_code'], unique=False)
    op.create_index(op.f('ix_devices_gateway_id'), 'devices', ['gateway_id'], unique=False)
    op.create_table('gateways',
    sa.Column('gateway_id', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('key_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('replay_highest', sa.BigInteger(), nullable=False),
    sa.Column('replay_bits', sa.BigInteger(), nullable=False),
    sa.Column('clock_skewed', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('gateway_id', name=op.f('pk_gateways'))
    )
    op.create_index(op.f('ix_gateways_district_code'), 'gateways', ['district_code'], unique=False)
    op.create_index(op.f('ix_gateways_project_id'), 'gateways', ['project_id'], unique=False)
    op.create_table('projects',
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('project_id', name=op.f('pk_projects'))
    )


def downgrade() -> None:
    for table in ("alarms", "devices", "gateways", "projects", "idempotency_keys", "inbox", "outbox"):
        op.drop_table(table)
