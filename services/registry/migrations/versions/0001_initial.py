"""Registry tables, and the outbox, inbox and idempotency keys every service keeps.

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
    op.create_table('enterprises',
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=False),
    sa.Column('legal_representative', sa.String(length=200), nullable=False),
    sa.Column('contact_phone_masked', sa.String(length=20), nullable=False),
    sa.Column('contact_phone_key', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('credit_code', name=op.f('pk_enterprises'))
    )
    op.create_index(op.f('ix_enterprises_district_code'), 'enterprises', ['district_code'], unique=False)
    op.create_table('filings',
    sa.Column('filing_id', sa.String(length=32), nullable=False),
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('proposed', sa.JSON(), nullable=True),
    sa.Column('changed_fields', sa.JSON(), nullable=False),
    sa.Column('exit_reason', sa.String(length=200), nullable=False),
    sa.Column('rejection_reason', sa.String(length=200), nullable=False),
    sa.Column('reviewer', sa.String(length=200), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('filing_id', name=op.f('pk_filings'))
    )
    op.create_index(op.f('ix_filings_credit_code'), 'filings', ['credit_code'], unique=False)
    op.create_index(op.f('ix_filings_district_code'), 'filings', ['district_code'], unique=False)
    op.create_index('uq_filings_one_pending', 'filings', ['credit_code'], unique=True, postgresql_where=sa.text("state = 'SUBMITTED'"), sqlite_where=sa.text("state = 'SUBMITTED'"))
    op.create_table('projects',
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('sub_district', sa.String(length=200), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=False),
    sa.Column('building_area_cm2', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('project_id', name=op.f('pk_projects'))
    )
    op.create_index(op.f('ix_projects_district_code'), 'projects', ['district_code'], unique=False)
    op.create_table('assignments',
    sa.Column('assignment_id', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('contract_start', sa.Date(), nullable=False),
    sa.Column('contract_end', sa.Date(), nullable=False),
    sa.Column('handover', sa.JSON(), nullable=False),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('exited_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('exit_filed', sa.Boolean(), nullable=True),
    sa.Column('exit_date', sa.Date(), nullable=True),
    sa.Column('exit_reason', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['credit_code'], ['enterprises.credit_code'], name=op.f('fk_assignments_credit_code_enterprises')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.project_id'], name=op.f('fk_assignments_project_id_projects')),
    sa.PrimaryKeyConstraint('assignment_id', name=op.f('pk_assignments'))
    )
    op.create_index(op.f('ix_assignments_credit_code'), 'assignments', ['credit_code'], unique=False)
    op.create_index('uq_assignments_one_current', 'assignments', ['project_id'], unique=True, postgresql_where=sa.text('exited_at IS NULL'), sqlite_where=sa.text('exited_at IS NULL'))
    op.create_table('committees',
    sa.Column('committee_id', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('members', sa.JSON(), nullable=False),
    sa.Column('term_start', sa.Date(), nullable=False),
    sa.Column('term_end', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.project_id'], name=op.f('fk_committees_project_id_projects')),
    sa.PrimaryKeyConstraint('committee_id', name=op.f('pk_committees'))
    )
    op.create_index(op.f('ix_committees_project_id'), 'committees', ['project_id'], unique=False)
    op.create_table('disclosures',
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('service_items', sa.JSON(), nullable=False),
    sa.Column('service_grade', sa.String(length=200), nullable=False),
    sa.Column('service_standard', sa.String(length=200), nullable=False),
    sa.Column('fee_method', sa.String(length=16), nullable=True),
    sa.Column('fee_fen_per_m2_month', sa.BigInteger(), nullable=False),
    sa.Column('service_phone', sa.String(length=20), nullable=False),
    sa.Column('complaint_phones', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.project_id'], name=op.f('fk_disclosures_project_id_projects')),
    sa.PrimaryKeyConstraint('project_id', name=op.f('pk_disclosures'))
    )
    op.create_table('practitioners',
    sa.Column('practitioner_id', sa.String(length=32), nullable=False),
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('district_code', sa.String(length=6), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('id_masked', sa.String(length=24), nullable=False),
    sa.Column('person_key', sa.String(length=32), nullable=False),
    sa.Column('position', sa.String(length=200), nullable=False),
    sa.Column('certificate_number', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['credit_code'], ['enterprises.credit_code'], name=op.f('fk_practitioners_credit_code_enterprises')),
    sa.PrimaryKeyConstraint('practitioner_id', name=op.f('pk_practitioners')),
    sa.UniqueConstraint('credit_code', 'person_key', name=op.f('uq_practitioners_credit_code_person_key'))
    )
    op.create_index(op.f('ix_practitioners_person_key'), 'practitioners', ['person_key'], unique=False)
    op.create_table('units',
    sa.Column('unit_id', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('number', sa.String(length=40), nullable=False),
    sa.Column('exclusive_area_cm2', sa.BigInteger(), nullable=False),
    sa.Column('owner_kind', sa.String(length=20), nullable=False),
    sa.Column('owner_name', sa.String(length=200), nullable=False),
    sa.Column('owner_id_masked', sa.String(length=24), nullable=False),
    sa.Column('owner_key', sa.String(length=32), nullable=False),
    sa.Column('owner_phone_masked', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.project_id'], name=op.f('fk_units_project_id_projects')),
    sa.PrimaryKeyConstraint('unit_id', name=op.f('pk_units')),
    sa.UniqueConstraint('project_id', 'number', name=op.f('uq_units_project_id_number'))
    )
    op.create_index(op.f('ix_units_owner_key'), 'units', ['owner_key'], unique=False)


def downgrade() -> None:
    for table in ("committees", "practitioners", "disclosures", "units", "assignments",
                  "projects", "filings", "enterprises", "idempotency_keys", "inbox", "outbox"):
        op.drop_table(table)
