"""Registry tables and the reads and writes of its records (SQLAlchemy Core)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy import Connection

from wuye.core.db import service_metadata, timestamp_column, utc
from wuye.registry.domain import (
    Assignment,
    Committee,
    CommitteeKind,
    CommitteeMember,
    CommitteeRole,
    Disclosure,
    Enterprise,
    EnterpriseStatus,
    FeeMethod,
    Filing,
    FilingKind,
    FilingState,
    Handover,
    HandoverItem,
    OwnedUnit,
    Owner,
    OwnerKind,
    Particulars,
    Practitioner,
    Project,
    ProjectType,
    Unit,
)

metadata = service_metadata()


enterprises = sa.Table(
    "enterprises",
    metadata,
    sa.Column("credit_code", sa.String(18), primary_key=True),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("address", sa.String(200), nullable=False),
    sa.Column("legal_representative", sa.String(200), nullable=False),
    sa.Column("contact_phone_masked", sa.String(20), nullable=False),
    sa.Column("contact_phone_key", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", timestamp_column(), nullable=False),
    sa.Column("updated_at", timestamp_column(), nullable=False),
)

filings = sa.Table(
    "filings",
    metadata,
    sa.Column("filing_id", sa.String(32), primary_key=True),
    sa.Column("credit_code", sa.String(18), nullable=False, index=True),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("proposed", sa.JSON, nullable=True),
    sa.Column("changed_fields", sa.JSON, nullable=False),
    sa.Column("exit_reason", sa.String(200), nullable=False),
    sa.Column("rejection_reason", sa.String(200), nullable=False),
    sa.Column("reviewer", sa.String(200), nullable=False),
    sa.Column("submitted_at", timestamp_column(), nullable=False),
    sa.Column("reviewed_at", timestamp_column(), nullable=True),
    # At most one filing awaits review per enterprise, even under concurrent submissions.
    sa.Index(
        "uq_filings_one_pending",
        "credit_code",
        unique=True,
        postgresql_where=sa.text("state = 'SUBMITTED'"),
        sqlite_where=sa.text("state = 'SUBMITTED'"),
    ),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("project_id", sa.String(32), primary_key=True),
    sa.Column("district_code", sa.String(6), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("sub_district", sa.String(200), nullable=False),
    sa.Column("address", sa.String(200), nullable=False),
    sa.Column("building_area_cm2", sa.BigInteger, nullable=False),
    sa.Column("created_at", timestamp_column(), nullable=False),
    sa.Column("updated_at", timestamp_column(), nullable=False),
)

assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("assignment_id", sa.String(32), primary_key=True),
    sa.Column("project_id", sa.ForeignKey("projects.project_id"), nullable=False),
    sa.Column("credit_code", sa.ForeignKey("enterprises.credit_code"), nullable=False, index=True),
    sa.Column("contract_start", sa.Date, nullable=False),
    sa.Column("contract_end", sa.Date, nullable=False),
    sa.Column("handover", sa.JSON, nullable=False),
    sa.Column("assigned_at", timestamp_column(), nullable=False),
    sa.Column("exited_at", timestamp_column(), nullable=True),
    sa.Column("exit_filed", sa.Boolean, nullable=True),
    sa.Column("exit_date", sa.Date, nullable=True),
    sa.Column("exit_reason", sa.String(200), nullable=True),
    # One serving enterprise per project at a time.
    sa.Index(
        "uq_assignments_one_current",
        "project_id",
        unique=True,
        postgresql_where=sa.text("exited_at IS NULL"),
        sqlite_where=sa.text("exited_at IS NULL"),
    ),
)

units = sa.Table(
    "units",
    metadata,
    sa.Column("unit_id", sa.String(32), primary_key=True),
    sa.Column("project_id", sa.ForeignKey("projects.project_id"), nullable=False),
    sa.Column("number", sa.String(40), nullable=False),
    sa.Column("exclusive_area_cm2", sa.BigInteger, nullable=False),
    sa.Column("owner_kind", sa.String(20), nullable=False),
    sa.Column("owner_name", sa.String(200), nullable=False),
    sa.Column("owner_id_masked", sa.String(24), nullable=False),
    sa.Column("owner_key", sa.String(32), nullable=False, index=True),
    sa.Column("owner_phone_masked", sa.String(20), nullable=False),
    sa.Column("created_at", timestamp_column(), nullable=False),
    sa.UniqueConstraint("project_id", "number"),
)

disclosures = sa.Table(
    "disclosures",
    metadata,
    sa.Column("project_id", sa.ForeignKey("projects.project_id"), primary_key=True),
    sa.Column("service_items", sa.JSON, nullable=False),
    sa.Column("service_grade", sa.String(200), nullable=False),
    sa.Column("service_standard", sa.String(200), nullable=False),
    sa.Column("fee_method", sa.String(16), nullable=True),
    sa.Column("fee_fen_per_m2_month", sa.BigInteger, nullable=False),
    sa.Column("service_phone", sa.String(20), nullable=False),
    sa.Column("complaint_phones", sa.JSON, nullable=False),
    sa.Column("updated_at", timestamp_column(), nullable=False),
)

practitioners = sa.Table(
    "practitioners",
    metadata,
    sa.Column("practitioner_id", sa.String(32), primary_key=True),
    sa.Column("credit_code", sa.ForeignKey("enterprises.credit_code"), nullable=False),
    sa.Column("district_code", sa.String(6), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("id_masked", sa.String(24), nullable=False),
    sa.Column("person_key", sa.String(32), nullable=False, index=True),
    sa.Column("position", sa.String(200), nullable=False),
    sa.Column("certificate_number", sa.String(200), nullable=False),
    sa.Column("created_at", timestamp_column(), nullable=False),
    sa.UniqueConstraint("credit_code", "person_key"),
)

committees = sa.Table(
    "committees",
    metadata,
    sa.Column("committee_id", sa.String(32), primary_key=True),
    sa.Column("project_id", sa.ForeignKey("projects.project_id"), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("members", sa.JSON, nullable=False),
    sa.Column("term_start", sa.Date, nullable=False),
    sa.Column("term_end", sa.Date, nullable=False),
    sa.Column("created_at", timestamp_column(), nullable=False),
    sa.Column("ended_at", timestamp_column(), nullable=True),
)


# ---------------------------------------------------------------- enterprises and filings

_active_count = (
    sa.select(sa.func.count())
    .where(
        (assignments.c.credit_code == enterprises.c.credit_code) & assignments.c.exited_at.is_(None)
    )
    .scalar_subquery()
    .label("active_project_count")
)
_enterprise_select = sa.select(enterprises, _active_count)


def enterprise_of(row) -> Enterprise:
    return Enterprise(
        credit_code=row.credit_code,
        district_code=row.district_code,
        particulars=Particulars(
            name=row.name,
            address=row.address,
            legal_representative=row.legal_representative,
            contact_phone_masked=row.contact_phone_masked,
            contact_phone_key=row.contact_phone_key,
        ),
        status=EnterpriseStatus(row.status),
        active_project_count=row.active_project_count,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
    )


# Lookups by key are built once: a statement built per call costs SQLAlchemy a new cache key,
# a good part of a simple Get.
ENTERPRISE_BY_CODE = _enterprise_select.where(enterprises.c.credit_code == sa.bindparam("key"))
_filing_by_id = sa.select(filings).where(filings.c.filing_id == sa.bindparam("key"))


def lock_enterprise(connection: Connection, credit_code: str) -> None:
    """Hold the enterprise's row until the transaction ends: its filings, reviews and the
    assignments that count on its status run one at a time, and its events keep their order.
    A separate statement from the reads after it, so they see what the previous holder
    committed (PostgreSQL re-reads only the locked row, not a query's other tables)."""
    connection.execute(
        sa.select(enterprises.c.credit_code)
        .where(enterprises.c.credit_code == credit_code)
        .with_for_update()
    )


def get_enterprise(connection: Connection, credit_code: str) -> Enterprise | None:
    row = connection.execute(ENTERPRISE_BY_CODE, {"key": credit_code}).first()
    return enterprise_of(row) if row else None


def list_enterprises(
    connection: Connection,
    districts: Iterable[str],
    status: EnterpriseStatus | None,
    after: str | None,
    limit: int,
) -> list[Enterprise]:
    query = _enterprise_select.where(enterprises.c.district_code.in_(list(districts)))
    if status is not None:
        query = query.where(enterprises.c.status == status.value)
    if after is not None:
        query = query.where(enterprises.c.credit_code > after)
    rows = connection.execute(query.order_by(enterprises.c.credit_code).limit(limit))
    return [enterprise_of(row) for row in rows]


def _particulars_columns(p: Particulars) -> dict[str, str]:
    return {
        "name": p.name,
        "address": p.address,
        "legal_representative": p.legal_representative,
        "contact_phone_masked": p.contact_phone_masked,
        "contact_phone_key": p.contact_phone_key,
    }


def save_enterprise(connection: Connection, e: Enterprise, *, new: bool) -> None:
    values = {
        "district_code": e.district_code,
        "status": e.status.value,
        "updated_at": e.updated_at,
        **_particulars_columns(e.particulars),
    }
    if new:
        connection.execute(
            enterprises.insert().values(
                credit_code=e.credit_code, created_at=e.created_at, **values
            )
        )
    else:
        connection.execute(
            enterprises.update().where(enterprises.c.credit_code == e.credit_code).values(**values)
        )


def _filing(row) -> Filing:
    proposed = Particulars(**row.proposed) if row.proposed else None
    return Filing(
        filing_id=row.filing_id,
        credit_code=row.credit_code,
        district_code=row.district_code,
        kind=FilingKind(row.kind),
        state=FilingState(row.state),
        submitted_at=utc(row.submitted_at),
        proposed=proposed,
        changed_fields=tuple(row.changed_fields),
        exit_reason=row.exit_reason,
        rejection_reason=row.rejection_reason,
        reviewer=row.reviewer,
        reviewed_at=utc(row.reviewed_at),
    )


def get_filing(connection: Connection, filing_id: str) -> Filing | None:
    row = connection.execute(_filing_by_id, {"key": filing_id}).first()
    return _filing(row) if row else None


def pending_filing(connection: Connection, credit_code: str) -> Filing | None:
    row = connection.execute(
        sa.select(filings).where(
            (filings.c.credit_code == credit_code)
            & (filings.c.state == FilingState.SUBMITTED.value)
        )
    ).first()
    return _filing(row) if row else None


def list_filings(
    connection: Connection,
    districts: Iterable[str],
    state: FilingState | None,
    credit_code: str,
    after: str | None,
    limit: int,
) -> list[Filing]:
    query = sa.select(filings).where(filings.c.district_code.in_(list(districts)))
    if state is not None:
        query = query.where(filings.c.state == state.value)
    if credit_code:
        query = query.where(filings.c.credit_code == credit_code)
    if after is not None:
        query = query.where(filings.c.filing_id > after)
    rows = connection.execute(query.order_by(filings.c.filing_id).limit(limit))
    return [_filing(row) for row in rows]


def save_filing(connection: Connection, f: Filing, *, new: bool) -> None:
    values = {
        "state": f.state.value,
        "rejection_reason": f.rejection_reason,
        "reviewer": f.reviewer,
        "reviewed_at": f.reviewed_at,
    }
    if new:
        connection.execute(
            filings.insert().values(
                filing_id=f.filing_id,
                credit_code=f.credit_code,
                district_code=f.district_code,
                kind=f.kind.value,
                proposed=_particulars_columns(f.proposed) if f.proposed else None,
                changed_fields=list(f.changed_fields),
                exit_reason=f.exit_reason,
                submitted_at=f.submitted_at,
                **values,
            )
        )
    else:
        connection.execute(
            filings.update().where(filings.c.filing_id == f.filing_id).values(**values)
        )


# ---------------------------------------------------------------- projects

_unit_totals = (
    sa.select(
        units.c.project_id,
        sa.func.count().label("unit_count"),
        sa.func.sum(units.c.exclusive_area_cm2).label("exclusive_area_cm2"),
    )
    .group_by(units.c.project_id)
    .subquery()
)
_current = assignments.alias("current")
_project_select = sa.select(
    projects,
    _current.c.credit_code.label("serving_credit_code"),
    _current.c.contract_start,
    _current.c.contract_end,
    _current.c.handover,
    enterprises.c.name.label("enterprise_name"),
    sa.func.coalesce(_unit_totals.c.unit_count, 0).label("unit_count"),
    sa.func.coalesce(_unit_totals.c.exclusive_area_cm2, 0).label("exclusive_area_cm2"),
).select_from(
    projects.outerjoin(
        _current,
        (_current.c.project_id == projects.c.project_id) & _current.c.exited_at.is_(None),
    )
    .outerjoin(enterprises, enterprises.c.credit_code == _current.c.credit_code)
    .outerjoin(_unit_totals, _unit_totals.c.project_id == projects.c.project_id)
)


def _handover_json(h: Handover) -> dict:
    return {
        "inspection_date": h.inspection_date.isoformat(),
        "record_reference": h.record_reference,
        "items": [
            {"facility": i.facility, "passed": i.passed, "finding": i.finding} for i in h.items
        ],
    }


def _handover(data: dict) -> Handover:
    return Handover(
        inspection_date=dt.date.fromisoformat(data["inspection_date"]),
        record_reference=data["record_reference"],
        items=tuple(HandoverItem(**item) for item in data["items"]),
    )


def _project(row) -> Project:
    assignment = None
    if row.serving_credit_code is not None:
        assignment = Assignment(
            credit_code=row.serving_credit_code,
            contract_start=row.contract_start,
            contract_end=row.contract_end,
            handover=_handover(row.handover),
            enterprise_name=row.enterprise_name or "",
        )
    return Project(
        project_id=row.project_id,
        name=row.name,
        type=ProjectType(row.type),
        district_code=row.district_code,
        sub_district=row.sub_district,
        address=row.address,
        building_area_cm2=row.building_area_cm2,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        assignment=assignment,
        unit_count=row.unit_count,
        exclusive_area_cm2=int(row.exclusive_area_cm2),
    )


_project_by_id = _project_select.where(projects.c.project_id == sa.bindparam("key"))


def lock_project(connection: Connection, project_id: str) -> None:
    """Hold the project's row until the transaction ends (see lock_enterprise)."""
    connection.execute(
        sa.select(projects.c.project_id)
        .where(projects.c.project_id == project_id)
        .with_for_update()
    )


def get_project(connection: Connection, project_id: str) -> Project | None:
    row = connection.execute(_project_by_id, {"key": project_id}).first()
    return _project(row) if row else None


def list_projects(
    connection: Connection,
    districts: Iterable[str],
    project_type: ProjectType | None,
    credit_code: str,
    after: str | None,
    limit: int,
) -> list[Project]:
    query = _project_select.where(projects.c.district_code.in_(list(districts)))
    if project_type is not None:
        query = query.where(projects.c.type == project_type.value)
    if credit_code:
        query = query.where(_current.c.credit_code == credit_code)
    if after is not None:
        query = query.where(projects.c.project_id > after)
    rows = connection.execute(query.order_by(projects.c.project_id).limit(limit))
    return [_project(row) for row in rows]


def insert_project(connection: Connection, p: Project) -> None:
    connection.execute(
        projects.insert().values(
            project_id=p.project_id,
            district_code=p.district_code,
            name=p.name,
            type=p.type.value,
            sub_district=p.sub_district,
            address=p.address,
            building_area_cm2=p.building_area_cm2,
            created_at=p.created_at,
            updated_at=p.updated_at,
        )
    )


def touch_project(connection: Connection, project_id: str, now: dt.datetime) -> None:
    connection.execute(
        projects.update().where(projects.c.project_id == project_id).values(updated_at=now)
    )


def insert_assignment(
    connection: Connection, assignment_id: str, project_id: str, a: Assignment, now: dt.datetime
) -> None:
    connection.execute(
        assignments.insert().values(
            assignment_id=assignment_id,
            project_id=project_id,
            credit_code=a.credit_code,
            contract_start=a.contract_start,
            contract_end=a.contract_end,
            handover=_handover_json(a.handover),
            assigned_at=now,
        )
    )


def end_assignment(
    connection: Connection,
    project_id: str,
    *,
    filed: bool,
    exit_date: dt.date,
    reason: str,
    now: dt.datetime,
) -> None:
    connection.execute(
        assignments.update()
        .where((assignments.c.project_id == project_id) & assignments.c.exited_at.is_(None))
        .values(exited_at=now, exit_filed=filed, exit_date=exit_date, exit_reason=reason)
    )


# ---------------------------------------------------------------- units


def _unit(row) -> Unit:
    return Unit(
        unit_id=row.unit_id,
        project_id=row.project_id,
        number=row.number,
        exclusive_area_cm2=row.exclusive_area_cm2,
        owner=Owner(
            kind=OwnerKind(row.owner_kind),
            name=row.owner_name,
            id_masked=row.owner_id_masked,
            owner_key=row.owner_key,
            phone_masked=row.owner_phone_masked,
        ),
    )


def existing_unit_numbers(connection: Connection, project_id: str, numbers: list[str]) -> set[str]:
    rows = connection.execute(
        sa.select(units.c.number).where(
            (units.c.project_id == project_id) & units.c.number.in_(numbers)
        )
    )
    return {row.number for row in rows}


def insert_units(connection: Connection, new_units: list[Unit], now: dt.datetime) -> None:
    connection.execute(
        units.insert(),
        [
            {
                "unit_id": u.unit_id,
                "project_id": u.project_id,
                "number": u.number,
                "exclusive_area_cm2": u.exclusive_area_cm2,
                "owner_kind": u.owner.kind.value,
                "owner_name": u.owner.name,
                "owner_id_masked": u.owner.id_masked,
                "owner_key": u.owner.owner_key,
                "owner_phone_masked": u.owner.phone_masked,
                "created_at": now,
            }
            for u in new_units
        ],
    )


def get_unit(connection: Connection, unit_id: str, *, lock: bool = False) -> Unit | None:
    """The unit; with `lock`, its row held until the transaction ends."""
    query = sa.select(units).where(units.c.unit_id == unit_id)
    row = connection.execute(query.with_for_update() if lock else query).first()
    return _unit(row) if row is not None else None


def set_unit_owner(connection: Connection, unit_id: str, owner: Owner) -> None:
    connection.execute(
        units.update()
        .where(units.c.unit_id == unit_id)
        .values(
            owner_kind=owner.kind.value,
            owner_name=owner.name,
            owner_id_masked=owner.id_masked,
            owner_key=owner.owner_key,
            owner_phone_masked=owner.phone_masked,
        )
    )


def list_units(
    connection: Connection, project_id: str, after: str | None, limit: int
) -> list[Unit]:
    query = sa.select(units).where(units.c.project_id == project_id)
    if after is not None:
        query = query.where(units.c.unit_id > after)
    return [_unit(row) for row in connection.execute(query.order_by(units.c.unit_id).limit(limit))]


def units_of_owner(connection: Connection, owner_key: str, limit: int) -> list[OwnedUnit]:
    """An owner's units with their projects' names and districts, by project and number."""
    query = (
        sa.select(units, projects.c.name.label("project_name"), projects.c.district_code)
        .select_from(units.join(projects, projects.c.project_id == units.c.project_id))
        .where(units.c.owner_key == owner_key)
        .order_by(units.c.project_id, units.c.number)
        .limit(limit)
    )
    return [
        OwnedUnit(_unit(row), row.project_name, row.district_code)
        for row in connection.execute(query)
    ]


# ---------------------------------------------------------------- disclosure


_disclosure_by_project = sa.select(disclosures).where(
    disclosures.c.project_id == sa.bindparam("key")
)


def get_disclosure(connection: Connection, project_id: str) -> Disclosure | None:
    row = connection.execute(_disclosure_by_project, {"key": project_id}).first()
    if row is None:
        return None
    return Disclosure(
        project_id=row.project_id,
        service_items=tuple(row.service_items),
        service_grade=row.service_grade,
        service_standard=row.service_standard,
        fee_method=FeeMethod(row.fee_method) if row.fee_method else None,
        fee_fen_per_m2_month=row.fee_fen_per_m2_month,
        service_phone=row.service_phone,
        complaint_phones=tuple(row.complaint_phones),
        updated_at=utc(row.updated_at),
    )


def save_disclosure(connection: Connection, d: Disclosure, *, new: bool) -> None:
    values = {
        "service_items": list(d.service_items),
        "service_grade": d.service_grade,
        "service_standard": d.service_standard,
        "fee_method": d.fee_method.value if d.fee_method else None,
        "fee_fen_per_m2_month": d.fee_fen_per_m2_month,
        "service_phone": d.service_phone,
        "complaint_phones": list(d.complaint_phones),
        "updated_at": d.updated_at,
    }
    if new:
        connection.execute(disclosures.insert().values(project_id=d.project_id, **values))
    else:
        connection.execute(
            disclosures.update().where(disclosures.c.project_id == d.project_id).values(**values)
        )


# ---------------------------------------------------------------- practitioners


def _practitioner(row) -> Practitioner:
    return Practitioner(
        practitioner_id=row.practitioner_id,
        credit_code=row.credit_code,
        district_code=row.district_code,
        name=row.name,
        id_masked=row.id_masked,
        person_key=row.person_key,
        position=row.position,
        certificate_number=row.certificate_number,
        created_at=utc(row.created_at),
    )


_practitioner_by_id = sa.select(practitioners).where(
    practitioners.c.practitioner_id == sa.bindparam("key")
)


def get_practitioner(connection: Connection, practitioner_id: str) -> Practitioner | None:
    row = connection.execute(_practitioner_by_id, {"key": practitioner_id}).first()
    return _practitioner(row) if row else None


def practitioner_of(
    connection: Connection, credit_code: str, person_key: str
) -> Practitioner | None:
    row = connection.execute(
        sa.select(practitioners).where(
            (practitioners.c.credit_code == credit_code)
            & (practitioners.c.person_key == person_key)
        )
    ).first()
    return _practitioner(row) if row else None


def list_practitioners(
    connection: Connection, credit_code: str, after: str | None, limit: int
) -> list[Practitioner]:
    query = sa.select(practitioners).where(practitioners.c.credit_code == credit_code)
    if after is not None:
        query = query.where(practitioners.c.practitioner_id > after)
    rows = connection.execute(query.order_by(practitioners.c.practitioner_id).limit(limit))
    return [_practitioner(row) for row in rows]


def insert_practitioner(connection: Connection, p: Practitioner) -> None:
    connection.execute(
        practitioners.insert().values(
            practitioner_id=p.practitioner_id,
            credit_code=p.credit_code,
            district_code=p.district_code,
            name=p.name,
            id_masked=p.id_masked,
            person_key=p.person_key,
            position=p.position,
            certificate_number=p.certificate_number,
            created_at=p.created_at,
        )
    )


# ---------------------------------------------------------------- committees


def _committee(row) -> Committee:
    return Committee(
        committee_id=row.committee_id,
        project_id=row.project_id,
        kind=CommitteeKind(row.kind),
        members=tuple(
            CommitteeMember(
                name=m["name"],
                role=CommitteeRole(m["role"]),
                affiliation=m["affiliation"],
                phone_masked=m["phone_masked"],
            )
            for m in row.members
        ),
        term_start=row.term_start,
        term_end=row.term_end,
        created_at=utc(row.created_at),
        ended_at=utc(row.ended_at),
    )


def acting_committee(connection: Connection, project_id: str) -> Committee | None:
    row = connection.execute(
        sa.select(committees)
        .where((committees.c.project_id == project_id) & committees.c.ended_at.is_(None))
        .order_by(committees.c.created_at.desc())
    ).first()
    return _committee(row) if row else None


def insert_committee(connection: Connection, c: Committee) -> None:
    connection.execute(
        committees.insert().values(
            committee_id=c.committee_id,
            project_id=c.project_id,
            kind=c.kind.value,
            members=[
                {
                    "name": m.name,
                    "role": m.role.value,
                    "affiliation": m.affiliation,
                    "phone_masked": m.phone_masked,
                }
                for m in c.members
            ],
            term_start=c.term_start,
            term_end=c.term_end,
            created_at=c.created_at,
        )
    )


def end_committee(connection: Connection, committee_id: str, now: dt.datetime) -> None:
    connection.execute(
        committees.update().where(committees.c.committee_id == committee_id).values(ended_at=now)
    )
