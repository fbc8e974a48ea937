"""Gateways' boot epochs in their replay windows, alarms' resolutions (false alarms counted per
device and day), and the time of the registry's latest change to who serves a project.

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
    op.add_column(
        "gateways", sa.Column("replay_epoch", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.add_column(
        "alarms", sa.Column("resolution", sa.String(16), nullable=False, server_default="")
    )
    # Alarms resolved before resolutions existed: by a person (handled) or automatically.
    op.execute(
        "UPDATE alarms SET resolution = CASE WHEN resolved_by = 'auto' THEN 'CLEARED' "
        "ELSE 'HANDLED' END WHERE state = 'RESOLVED'"
    )
    op.create_index("ix_alarms_device_id_raised_at", "alarms", ["device_id", "raised_at"])
    op.add_column(
        "projects", sa.Column("service_changed_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("projects", "service_changed_at")
    op.drop_index("ix_alarms_device_id_raised_at", table_name="alarms")
    op.drop_column("alarms", "resolution")
    op.drop_column("gateways", "replay_epoch")
