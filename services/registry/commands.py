"""Registry use cases. Each writes its state change and the events it causes in one
transaction: the caller's (Create-like calls run inside the idempotency wrapper) or its own.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from threading import Lock

from sqlalchemy import Connection, Engine

from wuye.core.auth import Role, issue_token
from wuye.core.consumer import EventMeta, Handler
from wuye.core.context import current
from wuye.core.db import KeyLookup, reader
from wuye.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from wuye.core.events import Event, add_events
from wuye.core.ids import new_id
from wuye.core.pii import OwnerKeys, Pseudonymizer, mask_id_number, mask_phone
from wuye.core.wire import timestamp, to_date
from wuye.registry import domain, store
from wuye.registry.domain import (
    Assignment,
    Committee,
    CommitteeKind,
    CommitteeMember,
    CommitteeRole,
    CommitteeRules,
    Decision,
    Disclosure,
    Enterprise,
    EnterpriseStatus,
    Filing,
    FilingKind,
    FilingState,
    Handover,
    OwnedUnit,
    OwnerKind,
    Particulars,
    Practitioner,
    Project,
    ProjectType,
    SignInCode,
    TransferReason,
    Unit,
)
from wuye.registry.settings import RegistrySettings
from wuye.registry.v1 import events_pb2 as ev
from wuye.registry.v1 import registry_service_pb2 as pb
from wuye.tenders.v1 import events_pb2 as tender_events

ENTERPRISE_TOPIC = "wuye.registry.enterprise.v1"
PROJECT_TOPIC = "wuye.registry.project.v1"
PRACTITIONER_TOPIC = "wuye.registry.practitioner.v1"
TOPICS = (ENTERPRISE_TOPIC, PROJECT_TOPIC, PRACTITIONER_TOPIC)
# Other services' events the registry records.
READ_TOPICS = ("wuye.tenders.tender.v1",)

logger = logging.getLogger("wuye.registry")


def _enum(enum_type, prefix: str, value: str) -> int:
    return enum_type.Value(f"{prefix}_{value}")


# -- who may act on an enterprise's records


def _require_enterprise_access(credit_code: str, district: str, *, reading: bool = False) -> None:
    """Authorities act in their districts; an enterprise acts for itself; services read."""
    call = current()
    call.require_district(district)
    principal = call.principal
    if principal.is_authority or (reading and principal.role in (Role.SERVICE, Role.INSPECTOR)):
        return
    if principal.role is Role.ENTERPRISE and principal.subject == credit_code:
        return
    raise PermissionDenied(
        "NOT_YOUR_ENTERPRISE",
        f"the caller may not act for enterprise {credit_code}",
        credit_code=credit_code,
    )


@dataclass(frozen=True)
class ParticularsInput:
    name: str
    address: str
    legal_representative: str
    contact_phone: str


@dataclass(frozen=True)
class OwnerInput:
    kind: OwnerKind
    name: str
    id_number: str
    phone: str


@dataclass(frozen=True)
class UnitInput:
    number: str
    exclusive_area_cm2: int
    owner: OwnerInput


@dataclass(frozen=True)
class MemberInput:
    name: str
    role: CommitteeRole
    affiliation: str
    phone: str


def _districts(requested: str) -> frozenset[str]:
    """The districts a list covers: the one asked for (already checked by the gateway) or all
    those in reach of this instance and the caller."""
    return frozenset({requested}) if requested else current().visible_districts()


class Registry:
    def __init__(
        self,
        engine: Engine,
        settings: RegistrySettings,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.engine = engine
        self.reader = reader(engine)
        self._enterprise_by_code = KeyLookup(engine, store.ENTERPRISE_BY_CODE)
        self.settings = settings
        self._clock = clock
        key = settings.pii_key.get_secret_value().encode()
        # Separate keys per purpose: an owner and a practitioner who are the same person get
        # unrelated keys, so the two registers cannot be joined without the PII key.
        self._owners = OwnerKeys(key)
        self._practitioners = Pseudonymizer(key, purpose="practitioner")
        self._phones = Pseudonymizer(key, purpose="phone")
        self._sign_in_codes: dict[str, SignInCode] = {}
        self._sign_in_hash = Pseudonymizer(key, purpose="owner-sign-in")
        self._sign_in_lock = Lock()

    def now(self) -> dt.datetime:
        return self._clock()

    def committee_rules(self, kind: CommitteeKind) -> CommitteeRules:
        s = self.settings
        if kind is CommitteeKind.OWNERS:
            return CommitteeRules(
                s.committee_min_members,
                s.committee_max_members,
                s.committee_odd_members,
                s.committee_max_term_years,
            )
        return CommitteeRules(
            s.transitional_min_members,
            s.committee_max_members,
            False,
            s.transitional_max_term_years,
        )

    def _particulars(self, given: ParticularsInput) -> Particulars:
        return Particulars(
            name=given.name,
            address=given.address,
            legal_representative=given.legal_representative,
            contact_phone_masked=mask_phone(given.contact_phone),
            contact_phone_key=self._phones.key_of(given.contact_phone),
        )

    # ------------------------------------------------------------ enterprises and filings

    def _enterprise(
        self, connection: Connection, credit_code: str, *, lock: bool = False
    ) -> Enterprise:
        """The enterprise; with `lock`, held until the transaction ends (every command that
        changes an enterprise or announces an event of it takes the lock before it reads)."""
        if lock:
            store.lock_enterprise(connection, credit_code)
        enterprise = store.get_enterprise(connection, credit_code)
        if enterprise is None:
            raise NotFound(
                "ENTERPRISE_NOT_FOUND", f"no enterprise {credit_code}", credit_code=credit_code
            )
        return enterprise

    def get_enterprise(self, credit_code: str) -> Enterprise:
        row = self._enterprise_by_code.first(key=credit_code)
        if row is None:
            raise NotFound(
                "ENTERPRISE_NOT_FOUND", f"no enterprise {credit_code}", credit_code=credit_code
            )
        enterprise = store.enterprise_of(row)
        current().require_district(enterprise.district_code)
        return enterprise

    def file_enterprise(
        self, connection: Connection, credit_code: str, district: str, given: ParticularsInput
    ) -> tuple[Enterprise, Filing]:
        principal = current().principal
        if principal.role is Role.ENTERPRISE and principal.subject != credit_code:
            raise PermissionDenied("NOT_YOUR_ENTERPRISE", "an enterprise files only for itself")
        store.lock_enterprise(connection, credit_code)
        existing = store.get_enterprise(connection, credit_code)
        domain.check_may_file(
            existing, FilingKind.INITIAL, store.pending_filing(connection, credit_code)
        )
        now = self.now()
        enterprise = Enterprise(
            credit_code=credit_code,
            district_code=district,
            particulars=self._particulars(given),
            status=EnterpriseStatus.PENDING,
            active_project_count=0,
            created_at=existing.created_at if existing else now,
            updated_at=now,
        )
        filing = Filing(
            filing_id=new_id(district, "F"),
            credit_code=credit_code,
            district_code=district,
            kind=FilingKind.INITIAL,
            state=FilingState.SUBMITTED,
            submitted_at=now,
        )
        store.save_enterprise(connection, enterprise, new=existing is None)
        store.save_filing(connection, filing, new=True)
        self._emit_enterprise(
            connection,
            enterprise,
            ev.EnterpriseFiled(
                filing_id=filing.filing_id,
                credit_code=credit_code,
                name=given.name,
                district_code=district,
                occur_time=timestamp(now),
            ),
        )
        return enterprise, filing

    def file_change(
        self,
        connection: Connection,
        credit_code: str,
        given: ParticularsInput,
        fields: tuple[str, ...],
    ) -> Filing:
        filing, enterprise = self._submit(
            connection,
            credit_code,
            FilingKind.CHANGE,
            proposed=self._particulars(given),
            changed_fields=fields,
        )
        self._emit_enterprise(
            connection,
            enterprise,
            ev.EnterpriseChangeFiled(
                filing_id=filing.filing_id,
                credit_code=credit_code,
                district_code=filing.district_code,
                changed_fields=list(fields),
                occur_time=timestamp(filing.submitted_at),
            ),
        )
        return filing

    def file_exit(self, connection: Connection, credit_code: str, reason: str) -> Filing:
        filing, enterprise = self._submit(
            connection, credit_code, FilingKind.EXIT, exit_reason=reason
        )
        self._emit_enterprise(
            connection,
            enterprise,
            ev.EnterpriseExitFiled(
                filing_id=filing.filing_id,
                credit_code=credit_code,
                district_code=filing.district_code,
                reason=reason,
                occur_time=timestamp(filing.submitted_at),
            ),
        )
        return filing

    def _submit(
        self, connection: Connection, credit_code: str, kind: FilingKind, **details
    ) -> tuple[Filing, Enterprise]:
        """A filed enterprise submits a change or exit filing (checked as the caller may)."""
        enterprise = self._enterprise(connection, credit_code, lock=True)
        _require_enterprise_access(credit_code, enterprise.district_code)
        domain.check_may_file(enterprise, kind, store.pending_filing(connection, credit_code))
        if kind is FilingKind.EXIT:
            domain.check_exit_allowed(enterprise)
        filing = Filing(
            filing_id=new_id(enterprise.district_code, "F"),
            credit_code=credit_code,
            district_code=enterprise.district_code,
            kind=kind,
            state=FilingState.SUBMITTED,
            submitted_at=self.now(),
            **details,
        )
        store.save_filing(connection, filing, new=True)
        return filing, enterprise

    def review_filing(
        self, filing_id: str, decision: Decision, reason: str
    ) -> tuple[Filing, Enterprise]:
        call = current()
        with self.engine.begin() as connection:
            filing = self._filing(connection, filing_id)
            call.require_district(filing.district_code)
            domain.check_reviewer(filing.district_code, call.principal.is_authority)
            enterprise = self._enterprise(connection, filing.credit_code, lock=True)
            # Read again under the lock: a review that committed meanwhile has decided it.
            filing = self._filing(connection, filing_id)
            now = self.now()
            enterprise, filing = domain.review(
                enterprise, filing, decision, reason, call.principal.subject, now
            )
            store.save_filing(connection, filing, new=False)
            store.save_enterprise(connection, enterprise, new=False)
            kind = _enum(pb.FilingKind, "FILING_KIND", filing.kind.value)
            if decision is Decision.APPROVE:
                event = ev.FilingApproved(
                    filing_id=filing.filing_id,
                    kind=kind,
                    credit_code=enterprise.credit_code,
                    name=enterprise.particulars.name,
                    district_code=enterprise.district_code,
                    status=_enum(pb.EnterpriseStatus, "ENTERPRISE_STATUS", enterprise.status.value),
                    reviewer=filing.reviewer,
                    occur_time=timestamp(now),
                )
            else:
                event = ev.FilingRejected(
                    filing_id=filing.filing_id,
                    kind=kind,
                    credit_code=enterprise.credit_code,
                    district_code=enterprise.district_code,
                    reason=reason,
                    reviewer=filing.reviewer,
                    occur_time=timestamp(now),
                )
            self._emit_enterprise(connection, enterprise, event)
        return filing, enterprise

    def _filing(self, connection: Connection, filing_id: str) -> Filing:
        filing = store.get_filing(connection, filing_id)
        if filing is None:
            raise NotFound("FILING_NOT_FOUND", f"no filing {filing_id}", filing_id=filing_id)
        return filing

    def get_filing(self, filing_id: str) -> Filing:
        with self.reader.connect() as connection:
            filing = self._filing(connection, filing_id)
        _require_enterprise_access(filing.credit_code, filing.district_code, reading=True)
        return filing

    def _emit_enterprise(self, connection: Connection, enterprise: Enterprise, message) -> None:
        add_events(
            connection,
            [
                Event(
                    topic=ENTERPRISE_TOPIC,
                    key=enterprise.credit_code,
                    subject=f"enterprises/{enterprise.credit_code}",
                    district=enterprise.district_code,
                    message=message,
                )
            ],
        )

    # ------------------------------------------------------------ projects

    def _project(self, connection: Connection, project_id: str, *, lock: bool = False) -> Project:
        """The project; with `lock`, held until the transaction ends (see _enterprise)."""
        if lock:
            store.lock_project(connection, project_id)
        project = store.get_project(connection, project_id)
        if project is None:
            raise NotFound("PROJECT_NOT_FOUND", f"no project {project_id}", project_id=project_id)
        return project

    def get_project(self, project_id: str) -> Project:
        with self.reader.connect() as connection:
            return self._project(connection, project_id)

    def _emit_project(self, connection: Connection, project: Project, message) -> None:
        add_events(
            connection,
            [
                Event(
                    topic=PROJECT_TOPIC,
                    key=project.project_id,
                    subject=f"projects/{project.project_id}",
                    district=project.district_code,
                    message=message,
                )
            ],
        )

    def register_project(
        self,
        connection: Connection,
        *,
        name: str,
        project_type: ProjectType,
        district: str,
        sub_district: str,
        address: str,
        building_area_cm2: int,
    ) -> Project:
        now = self.now()
        project = Project(
            project_id=new_id(district),
            name=name,
            type=project_type,
            district_code=district,
            sub_district=sub_district,
            address=address,
            building_area_cm2=building_area_cm2,
            created_at=now,
            updated_at=now,
        )
        store.insert_project(connection, project)
        self._emit_project(
            connection,
            project,
            ev.ProjectRegistered(
                project_id=project.project_id,
                name=name,
                type=_enum(pb.ProjectType, "PROJECT_TYPE", project_type.value),
                district_code=district,
                sub_district=sub_district,
                building_area_cm2=building_area_cm2,
                occur_time=timestamp(now),
            ),
        )
        return project

    def register_units(
        self, connection: Connection, project_id: str, given: list[UnitInput]
    ) -> list[Unit]:
        project = self._project(connection, project_id, lock=True)
        taken = store.existing_unit_numbers(connection, project_id, [u.number for u in given])
        if taken:
            raise AlreadyExists(
                "UNIT_ALREADY_REGISTERED",
                f"project {project_id} already has units {', '.join(sorted(taken)[:10])}",
                numbers=",".join(sorted(taken)[:10]),
            )
        now = self.now()
        new_units = [
            Unit(
                unit_id=new_id(project.district_code, "U"),
                project_id=project_id,
                number=u.number,
                exclusive_area_cm2=u.exclusive_area_cm2,
                owner=self._owner(u.owner, project_id),
            )
            for u in given
        ]
        store.insert_units(connection, new_units, now)
        store.touch_project(connection, project_id, now)
        self._emit_project(
            connection,
            project,
            ev.UnitsRegistered(
                project_id=project_id,
                district_code=project.district_code,
                units=[
                    ev.RegisteredUnit(
                        unit_id=u.unit_id,
                        number=u.number,
                        exclusive_area_cm2=u.exclusive_area_cm2,
                        owner_kind=_enum(pb.OwnerKind, "OWNER_KIND", u.owner.kind.value),
                        owner_key=u.owner.owner_key,
                    )
                    for u in new_units
                ],
                occur_time=timestamp(now),
            ),
        )
        return new_units

    def transfer_ownership(
        self,
        connection: Connection,
        unit_id: str,
        new_owner: OwnerInput,
        reason: TransferReason,
        register_date: dt.date,
    ) -> Unit:
        """The unit's new owner replaces the old one; the event carries only the owner key, so
        that votes opening later count the unit for its new owner."""
        unit = store.get_unit(connection, unit_id, lock=True)
        if unit is None:
            raise NotFound("UNIT_NOT_FOUND", f"no unit {unit_id}", unit_id=unit_id)
        project = self._project(connection, unit.project_id)
        owner = self._owner(new_owner, unit.project_id)
        if owner.owner_key == unit.owner.owner_key:
            raise FailedPrecondition(
                "ALREADY_THE_OWNER",
                f"unit {unit_id} already belongs to that owner",
                unit_id=unit_id,
            )
        store.set_unit_owner(connection, unit_id, owner)
        now = self.now()
        store.touch_project(connection, unit.project_id, now)
        self._emit_project(
            connection,
            project,
            ev.UnitOwnershipTransferred(
                unit_id=unit_id,
                project_id=unit.project_id,
                district_code=project.district_code,
                owner_kind=_enum(pb.OwnerKind, "OWNER_KIND", owner.kind.value),
                owner_key=owner.owner_key,
                exclusive_area_cm2=unit.exclusive_area_cm2,
                reason=_enum(pb.TransferReason, "TRANSFER_REASON", reason.value),
                register_date=to_date(register_date),
                occur_time=timestamp(now),
            ),
        )
        return replace(unit, owner=owner)

    def _owner(self, given: OwnerInput, project_id: str) -> domain.Owner:
        """An owner as stored: the identity as a keyed hash and a masked form, never whole."""
        return domain.Owner(
            kind=given.kind,
            name=given.name,
            id_masked=mask_id_number(given.id_number),
            owner_key=self._owners.key_of(given.kind, given.id_number, project_id),
            phone_masked=mask_phone(given.phone) if given.phone else "",
        )

    def assign_enterprise(
        self, connection: Connection, project_id: str, assignment: Assignment
    ) -> Project:
        project = self._project(connection, project_id, lock=True)
        # The enterprise's lock too: an exit approved meanwhile must not leave it serving.
        store.lock_enterprise(connection, assignment.credit_code)
        enterprise = store.get_enterprise(connection, assignment.credit_code)
        domain.check_assignable(project, enterprise, assignment.credit_code)
        now = self.now()
        store.insert_assignment(
            connection, new_id(project.district_code, "A"), project_id, assignment, now
        )
        store.touch_project(connection, project_id, now)
        self._emit_project(
            connection,
            project,
            ev.EnterpriseAssigned(
                project_id=project_id,
                district_code=project.district_code,
                credit_code=assignment.credit_code,
                contract_start=to_date(assignment.contract_start),
                contract_end=to_date(assignment.contract_end),
                handover_items=len(assignment.handover.items),
                handover_items_failed=assignment.handover.failed_items,
                occur_time=timestamp(now),
            ),
        )
        return self._project(connection, project_id)

    def exit_project(
        self,
        connection: Connection,
        project_id: str,
        credit_code: str,
        *,
        filed: bool,
        exit_date: dt.date,
        reason: str,
    ) -> Project:
        project = self._project(connection, project_id, lock=True)
        principal = current().principal
        if principal.role is Role.ENTERPRISE and principal.subject != credit_code:
            raise PermissionDenied("NOT_YOUR_ENTERPRISE", "an enterprise files only its own exit")
        domain.check_exit(project, credit_code, filed, principal.is_authority)
        now = self.now()
        store.end_assignment(
            connection, project_id, filed=filed, exit_date=exit_date, reason=reason, now=now
        )
        store.touch_project(connection, project_id, now)
        self._emit_project(
            connection,
            project,
            ev.EnterpriseExited(
                project_id=project_id,
                district_code=project.district_code,
                credit_code=credit_code,
                filed=filed,
                exit_date=to_date(exit_date),
                reason=reason,
                occur_time=timestamp(now),
            ),
        )
        return self._project(connection, project_id)

    # ------------------------------------------------------------ disclosure

    def get_disclosure(self, project_id: str) -> tuple[Disclosure, Project]:
        with self.reader.connect() as connection:
            project = self._project(connection, project_id)
            disclosure = store.get_disclosure(connection, project_id)
        if disclosure is None:
            raise NotFound(
                "DISCLOSURE_NOT_PUBLISHED",
                f"project {project_id} has no public disclosure yet",
                project_id=project_id,
            )
        return disclosure, project

    def update_disclosure(
        self, project_id: str, given: Disclosure, fields: tuple[str, ...]
    ) -> tuple[Disclosure, Project]:
        principal = current().principal
        with self.engine.begin() as connection:
            project = self._project(connection, project_id, lock=True)
            serving = project.assignment.credit_code if project.assignment else ""
            caller = principal.subject if principal.role is Role.ENTERPRISE else ""
            domain.check_may_disclose(serving, principal.is_authority, caller)
            existing = store.get_disclosure(connection, project_id)
            updated = domain.revise_disclosure(existing, given, fields, self.now())
            store.save_disclosure(connection, updated, new=existing is None)
            self._emit_project(
                connection,
                project,
                ev.DisclosureUpdated(
                    project_id=project_id,
                    district_code=project.district_code,
                    credit_code=serving,
                    occur_time=timestamp(updated.updated_at),
                ),
            )
        return updated, project

    # ------------------------------------------------------------ practitioners

    def register_practitioner(
        self,
        connection: Connection,
        *,
        credit_code: str,
        name: str,
        id_number: str,
        position: str,
        certificate_number: str,
    ) -> Practitioner:
        enterprise = self._enterprise(connection, credit_code, lock=True)
        _require_enterprise_access(credit_code, enterprise.district_code)
        domain.check_may_employ(enterprise)
        person_key = self._practitioners.key_of(id_number)
        existing = store.practitioner_of(connection, credit_code, person_key)
        if existing is not None:
            raise AlreadyExists(
                "PRACTITIONER_ALREADY_REGISTERED",
                f"this person is already registered with {credit_code}",
                practitioner_id=existing.practitioner_id,
            )
        now = self.now()
        practitioner = Practitioner(
            practitioner_id=new_id(enterprise.district_code, "P"),
            credit_code=credit_code,
            district_code=enterprise.district_code,
            name=name,
            id_masked=mask_id_number(id_number),
            person_key=person_key,
            position=position,
            certificate_number=certificate_number,
            created_at=now,
        )
        store.insert_practitioner(connection, practitioner)
        add_events(
            connection,
            [
                Event(
                    topic=PRACTITIONER_TOPIC,
                    key=practitioner.practitioner_id,
                    subject=f"practitioners/{practitioner.practitioner_id}",
                    district=enterprise.district_code,
                    message=ev.PractitionerRegistered(
                        practitioner_id=practitioner.practitioner_id,
                        credit_code=credit_code,
                        district_code=enterprise.district_code,
                        person_key=person_key,
                        position=position,
                        occur_time=timestamp(now),
                    ),
                )
            ],
        )
        return practitioner

    def get_practitioner(self, practitioner_id: str) -> Practitioner:
        with self.reader.connect() as connection:
            practitioner = store.get_practitioner(connection, practitioner_id)
        if practitioner is None:
            raise NotFound(
                "PRACTITIONER_NOT_FOUND",
                f"no practitioner {practitioner_id}",
                practitioner_id=practitioner_id,
            )
        _require_enterprise_access(
            practitioner.credit_code, practitioner.district_code, reading=True
        )
        return practitioner

    def list_practitioners(
        self, credit_code: str, after: str | None, limit: int
    ) -> list[Practitioner]:
        with self.reader.connect() as connection:
            enterprise = self._enterprise(connection, credit_code)
            _require_enterprise_access(credit_code, enterprise.district_code, reading=True)
            return store.list_practitioners(connection, credit_code, after, limit)

    # ------------------------------------------------------------ owners' committees

    def form_committee(
        self,
        connection: Connection,
        project_id: str,
        kind: CommitteeKind,
        members: list[MemberInput],
        term_start: dt.date,
        term_end: dt.date,
    ) -> Committee:
        project = self._project(connection, project_id, lock=True)
        acting = store.acting_committee(connection, project_id)
        domain.check_may_form(kind, acting, term_start)
        now = self.now()
        if acting is not None:
            store.end_committee(connection, acting.committee_id, now)
        committee = Committee(
            committee_id=new_id(project.district_code, "C"),
            project_id=project_id,
            kind=kind,
            members=tuple(
                CommitteeMember(
                    name=m.name,
                    role=m.role,
                    affiliation=m.affiliation,
                    phone_masked=mask_phone(m.phone) if m.phone else "",
                )
                for m in members
            ),
            term_start=term_start,
            term_end=term_end,
            created_at=now,
        )
        store.insert_committee(connection, committee)
        self._emit_project(
            connection,
            project,
            ev.OwnersCommitteeFormed(
                committee_id=committee.committee_id,
                project_id=project_id,
                district_code=project.district_code,
                kind=_enum(pb.CommitteeKind, "COMMITTEE_KIND", kind.value),
                member_count=len(members),
                term_start=to_date(term_start),
                term_end=to_date(term_end),
                occur_time=timestamp(now),
                ended_committee_id=acting.committee_id if acting else "",
            ),
        )
        return committee

    # ------------------------------------------------------------ lists

    def list_enterprises(
        self, district: str, status: EnterpriseStatus | None, after: str | None, limit: int
    ) -> list[Enterprise]:
        with self.reader.connect() as connection:
            return store.list_enterprises(connection, _districts(district), status, after, limit)

    def list_filings(
        self,
        district: str,
        state: FilingState | None,
        credit_code: str,
        after: str | None,
        limit: int,
    ) -> list[Filing]:
        principal = current().principal
        if principal.role is Role.ENTERPRISE and credit_code != principal.subject:
            raise PermissionDenied(
                "NOT_YOUR_ENTERPRISE", "an enterprise lists only its own filings (set credit_code)"
            )
        with self.reader.connect() as connection:
            return store.list_filings(
                connection, _districts(district), state, credit_code, after, limit
            )

    def list_projects(
        self, district: str, project_type: ProjectType | None, credit_code: str, after, limit: int
    ) -> list[Project]:
        with self.reader.connect() as connection:
            return store.list_projects(
                connection, _districts(district), project_type, credit_code, after, limit
            )

    def list_units(self, project_id: str, after: str | None, limit: int) -> list[Unit]:
        with self.reader.connect() as connection:
            self._project(connection, project_id)
            return store.list_units(connection, project_id, after, limit)

    # -- owners' sign-in, development's stand-in for the city's real-name service

    def _require_sign_in_by_logged_code(self) -> None:
        if not self.settings.owner_sign_in_by_logged_code:
            raise FailedPrecondition(
                "OWNER_SIGN_IN_DISABLED",
                "owners sign in through the city's real-name service; codes in the log are "
                "for development only",
            )

    def start_owner_sign_in(self, id_number: str) -> dt.datetime:
        """Logs a one-time code for the owner of `id_number` (masked in the log); answers when
        it expires. Says nothing of whether the number owns a unit."""
        self._require_sign_in_by_logged_code()
        owner_key = self._owners.of_person(id_number)
        code = "".join(
            secrets.choice(string.digits) for _ in range(self.settings.owner_sign_in_code_digits)
        )
        now = self.now()
        expires = now + dt.timedelta(seconds=self.settings.owner_sign_in_code_seconds)
        pending = SignInCode(
            self._sign_in_hash.digest(f"{owner_key}:{code}".encode()),
            expires,
            self.settings.owner_sign_in_attempts,
        )
        with self._sign_in_lock:
            expired = [key for key, held in self._sign_in_codes.items() if held.expires <= now]
            for key in expired:
                del self._sign_in_codes[key]
            self._sign_in_codes[owner_key] = pending
        logger.info(
            "owner sign-in code id_number=%s code=%s expires=%s",
            mask_id_number(id_number),
            code,
            expires.isoformat(),
        )
        return expires

    def complete_owner_sign_in(
        self, id_number: str, code: str
    ) -> tuple[str, dt.datetime, list[OwnedUnit]]:
        """An owner token for the owner of `id_number`, its expiry and the owner's units."""
        self._require_sign_in_by_logged_code()
        owner_key = self._owners.of_person(id_number)
        digest = self._sign_in_hash.digest(f"{owner_key}:{code}".encode())
        now = self.now()
        with self._sign_in_lock:
            left = domain.redeem_sign_in_code(self._sign_in_codes.pop(owner_key, None), digest, now)
            if left is not None:
                self._sign_in_codes[owner_key] = left
        if left is not None:
            raise Unauthenticated(
                "SIGN_IN_CODE_WRONG", f"the code is wrong: {left.attempts_left} attempts left"
            )
        with self.reader.connect() as connection:
            owned = store.units_of_owner(
                connection, owner_key, self.settings.owner_sign_in_max_units
            )
        if not owned:
            raise FailedPrecondition(
                "OWNER_HAS_NO_UNITS", "the register holds no unit of this ID number's owner"
            )
        lifetime = round(self.settings.owner_token_hours * 3600)
        token = issue_token(
            self.settings.token_secret.get_secret_value(),
            subject=owner_key,
            role=Role.OWNER,
            districts=sorted({u.district_code for u in owned}),
            issuer=self.settings.token_issuer,
            ttl_seconds=lifetime,
            now=now.timestamp(),
        )
        return token, now + dt.timedelta(seconds=lifetime), owned

    def acting_committee(self, project_id: str) -> Committee:
        with self.reader.connect() as connection:
            self._project(connection, project_id)
            committee = store.acting_committee(connection, project_id)
        if committee is None:
            raise NotFound(
                "NO_ACTING_COMMITTEE",
                f"project {project_id} has neither an owners' nor a transitional committee",
                project_id=project_id,
            )
        return committee

    # ------------------------------------------------------------ other services' events

    def on_contract_signed(self, connection: Connection, message, meta: EventMeta) -> None:
        """A tender's contract: the enterprise is assigned to the project as AssignEnterprise
        assigns it. A replay finds it assigned already and changes nothing."""
        project = self._project(connection, message.project_id, lock=True)
        if project.assignment is not None and project.assignment.credit_code == message.credit_code:
            return
        start = dt.date(
            message.contract_start.year, message.contract_start.month, message.contract_start.day
        )
        end = dt.date(
            message.contract_end.year, message.contract_end.month, message.contract_end.day
        )
        # The handover inspection (承接查验) is recorded when the enterprise takes the project.
        handover = Handover(start, (), f"tender {message.tender_id}")
        self.assign_enterprise(
            connection, message.project_id, Assignment(message.credit_code, start, end, handover)
        )

    def handlers(self) -> dict[str, Handler]:
        return {
            "wuye.tenders.v1.ContractSigned": Handler(
                tender_events.ContractSigned, self.on_contract_signed
            ),
        }
