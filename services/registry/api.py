"""The gRPC face of the registry: requests in, commands run, responses out. Wire details
(field names, enums, masks, dates, pages) live here; rules live in domain.py."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import TypeVar

from google.protobuf.message import Message

from wuye.core.auth import AUTHORITIES, Role, allow, public
from wuye.core.errors import Violations
from wuye.core.events import run_idempotent
from wuye.core.grpcserver import Route
from wuye.core.paging import next_token, read_page
from wuye.core.pii import mask_id_number
from wuye.core.wire import check_request_id, check_text, date_of, timestamp, to_date
from wuye.registry import domain
from wuye.registry.commands import MemberInput, OwnerInput, ParticularsInput, Registry, UnitInput
from wuye.registry.domain import (
    Assignment,
    CommitteeKind,
    CommitteeRole,
    Decision,
    Disclosure,
    EnterpriseStatus,
    FeeMethod,
    FilingState,
    Handover,
    HandoverItem,
    OwnerKind,
    ProjectType,
    TransferReason,
)
from wuye.registry.v1 import registry_service_pb2 as pb
from wuye.registry.v1 import registry_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RegistryService"].full_name

_AUTHORITY = tuple(AUTHORITIES)
_READERS = (*_AUTHORITY, Role.SUB_DISTRICT, Role.ENTERPRISE, Role.INSPECTOR, Role.SERVICE)

ROUTES: dict[str, Route] = {
    "FileEnterprise": Route(allow(*_AUTHORITY, Role.ENTERPRISE), "enterprise.district_code"),
    "GetEnterprise": Route(allow(*_READERS)),
    "ListEnterprises": Route(allow(*_READERS), "district_code"),
    "FileEnterpriseChange": Route(allow(*_AUTHORITY, Role.ENTERPRISE)),
    "FileEnterpriseExit": Route(allow(*_AUTHORITY, Role.ENTERPRISE)),
    "ReviewFiling": Route(allow(*_AUTHORITY), "filing_id"),
    "GetFiling": Route(allow(*_AUTHORITY, Role.ENTERPRISE, Role.SERVICE), "filing_id"),
    "ListFilings": Route(allow(*_AUTHORITY, Role.ENTERPRISE, Role.SERVICE), "district_code"),
    "RegisterProject": Route(allow(*_AUTHORITY, Role.SUB_DISTRICT), "project.district_code"),
    "GetProject": Route(allow(*_READERS), "project_id"),
    "ListProjects": Route(allow(*_READERS), "district_code"),
    "RegisterUnits": Route(allow(*_AUTHORITY, Role.SUB_DISTRICT), "project_id"),
    "ListUnits": Route(allow(*_AUTHORITY, Role.SUB_DISTRICT, Role.SERVICE), "project_id"),
    # The register of property rights is the housing authority's: no office or committee moves
    # a unit to another owner.
    "TransferUnitOwnership": Route(allow(*_AUTHORITY), "unit_id"),
    "AssignEnterprise": Route(allow(*_AUTHORITY), "project_id"),
    "ExitProject": Route(allow(*_AUTHORITY, Role.ENTERPRISE), "project_id"),
    "GetDisclosure": Route(public(), "project_id"),
    "UpdateDisclosure": Route(allow(*_AUTHORITY, Role.ENTERPRISE), "disclosure.project_id"),
    "RegisterPractitioner": Route(allow(*_AUTHORITY, Role.ENTERPRISE)),
    "GetPractitioner": Route(
        allow(*_AUTHORITY, Role.ENTERPRISE, Role.INSPECTOR, Role.SERVICE), "practitioner_id"
    ),
    "ListPractitioners": Route(allow(*_AUTHORITY, Role.ENTERPRISE, Role.INSPECTOR, Role.SERVICE)),
    "FormOwnersCommittee": Route(allow(*_AUTHORITY, Role.SUB_DISTRICT), "committee.project_id"),
    "GetOwnersCommittee": Route(allow(*_READERS), "project_id"),
    # The caller has no token yet: the code proves who they are.
    "StartOwnerSignIn": Route(public()),
    "CompleteOwnerSignIn": Route(public()),
}

E = TypeVar("E", bound=StrEnum)
M = TypeVar("M", bound=Message)


# ---------------------------------------------------------------- wire <-> domain helpers


def _from_enum(
    v: Violations,
    field: str,
    enum_type,
    prefix: str,
    number: int,
    target: type[E],
    required: bool = True,
) -> E | None:
    name = enum_type.Name(number) if number in enum_type.values() else ""
    if name and name != f"{prefix}_UNSPECIFIED":
        return target(name.removeprefix(f"{prefix}_"))
    if required or name == "":
        choices = ", ".join(f"{prefix}_{m.value}" for m in target)
        v.add(field, f"must be one of {choices}")
    return None


def _to_enum(enum_type, prefix: str, value: StrEnum | None) -> int:
    return enum_type.Value(f"{prefix}_{value.value}") if value is not None else 0


def _mask_paths(
    v: Violations, field: str, paths: list[str], allowed: tuple[str, ...]
) -> tuple[str, ...]:
    unknown = [p[:40] for p in paths if p not in allowed][:5]  # the message stays short
    if unknown:
        v.add(field, f"unknown paths {unknown}; allowed: {', '.join(allowed)}")
    return tuple(dict.fromkeys(p for p in paths if p in allowed))


class RegistryApi(pb_grpc.RegistryServiceServicer):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._settings = registry.settings
        self._city = dict(registry.settings.city_districts)

    # -- shared checks

    def _text(self, v: Violations, field: str, value: str, required: bool = True) -> None:
        check_text(v, field, value, self._settings.max_text_length, required)

    def _page(self, request, filters: object):
        return read_page(
            request.page_size,
            request.page_token,
            filters,
            self._settings.page_size_default,
            self._settings.page_size_max,
        )

    def _idempotent(self, method: str, request, response_type: type[M], build) -> M:
        return run_idempotent(
            self._registry.engine,
            pii_key=self._settings.pii_key,
            method=method,
            request_id=request.request_id,
            request=request,
            response_type=response_type,
            command=build,
        )

    def _particulars(
        self,
        v: Violations,
        e: pb.Enterprise,
        prefix: str,
        fields: tuple[str, ...] = domain.CHANGEABLE_FIELDS,
    ) -> ParticularsInput:
        if "name" in fields:
            self._text(v, f"{prefix}.name", e.name)
        if "address" in fields:
            self._text(v, f"{prefix}.address", e.address, required=False)
        if "legal_representative" in fields:
            self._text(v, f"{prefix}.legal_representative", e.legal_representative, required=False)
        if "contact_phone" in fields:
            domain.check_phone(v, f"{prefix}.contact_phone", e.contact_phone)
        return ParticularsInput(e.name, e.address, e.legal_representative, e.contact_phone)

    # ------------------------------------------------------------ enterprises and filings

    def FileEnterprise(
        self, request: pb.FileEnterpriseRequest, context
    ) -> pb.FileEnterpriseResponse:
        v = Violations()
        check_request_id(v, request.request_id)
        e = request.enterprise
        domain.check_credit_code(v, "enterprise.credit_code", e.credit_code)
        domain.check_district(v, "enterprise.district_code", e.district_code, self._city)
        given = self._particulars(v, e, "enterprise")
        v.raise_if_any()

        def build(connection):
            enterprise, filing = self._registry.file_enterprise(
                connection, e.credit_code, e.district_code, given
            )
            return pb.FileEnterpriseResponse(
                enterprise=_enterprise(enterprise), filing=_filing(filing)
            )

        return self._idempotent("FileEnterprise", request, pb.FileEnterpriseResponse, build)

    def GetEnterprise(self, request: pb.GetEnterpriseRequest, context) -> pb.GetEnterpriseResponse:
        v = Violations()
        domain.check_credit_code(v, "credit_code", request.credit_code)
        v.raise_if_any()
        return pb.GetEnterpriseResponse(
            enterprise=_enterprise(self._registry.get_enterprise(request.credit_code))
        )

    def ListEnterprises(self, request: pb.ListEnterprisesRequest, context):
        v = Violations()
        status = _from_enum(
            v,
            "status",
            pb.EnterpriseStatus,
            "ENTERPRISE_STATUS",
            request.status,
            EnterpriseStatus,
            required=False,
        )
        v.raise_if_any()
        page = self._page(request, [request.district_code, request.status])
        found = self._registry.list_enterprises(
            request.district_code, status, page.after, page.size + 1
        )
        return pb.ListEnterprisesResponse(
            enterprises=[_enterprise(e) for e in found[: page.size]],
            next_page_token=next_token(page, [e.credit_code for e in found]),
        )

    def FileEnterpriseChange(self, request: pb.FileEnterpriseChangeRequest, context):
        v = Violations()
        check_request_id(v, request.request_id)
        domain.check_credit_code(v, "credit_code", request.credit_code)
        fields = _mask_paths(
            v, "update_mask", list(request.update_mask.paths), domain.CHANGEABLE_FIELDS
        )
        if not request.update_mask.paths:
            v.add(
                "update_mask", f"name the fields that change: {', '.join(domain.CHANGEABLE_FIELDS)}"
            )
        given = self._particulars(v, request.enterprise, "enterprise", fields)
        v.raise_if_any()

        def build(connection):
            filing = self._registry.file_change(connection, request.credit_code, given, fields)
            return pb.FileEnterpriseChangeResponse(filing=_filing(filing))

        return self._idempotent(
            "FileEnterpriseChange", request, pb.FileEnterpriseChangeResponse, build
        )

    def FileEnterpriseExit(self, request: pb.FileEnterpriseExitRequest, context):
        v = Violations()
        check_request_id(v, request.request_id)
        domain.check_credit_code(v, "credit_code", request.credit_code)
        self._text(v, "reason", request.reason)
        v.raise_if_any()

        def build(connection):
            filing = self._registry.file_exit(connection, request.credit_code, request.reason)
            return pb.FileEnterpriseExitResponse(filing=_filing(filing))

        return self._idempotent("FileEnterpriseExit", request, pb.FileEnterpriseExitResponse, build)

    def ReviewFiling(self, request: pb.ReviewFilingRequest, context) -> pb.ReviewFilingResponse:
        v = Violations()
        v.check(bool(request.filing_id), "filing_id", "is required")
        decision = _from_enum(
            v, "decision", pb.ReviewDecision, "REVIEW_DECISION", request.decision, Decision
        )
        self._text(v, "reason", request.reason, required=False)
        domain.check_review_reason(v, decision, request.reason)
        v.raise_if_any()
        filing, enterprise = self._registry.review_filing(
            request.filing_id, decision, request.reason
        )
        return pb.ReviewFilingResponse(filing=_filing(filing), enterprise=_enterprise(enterprise))

    def GetFiling(self, request: pb.GetFilingRequest, context) -> pb.GetFilingResponse:
        v = Violations()
        v.check(bool(request.filing_id), "filing_id", "is required")
        v.raise_if_any()
        return pb.GetFilingResponse(filing=_filing(self._registry.get_filing(request.filing_id)))

    def ListFilings(self, request: pb.ListFilingsRequest, context) -> pb.ListFilingsResponse:
        v = Violations()
        state = _from_enum(
            v, "state", pb.FilingState, "FILING_STATE", request.state, FilingState, required=False
        )
        if request.credit_code:
            domain.check_credit_code(v, "credit_code", request.credit_code)
        v.raise_if_any()
        page = self._page(request, [request.district_code, request.state, request.credit_code])
        found = self._registry.list_filings(
            request.district_code, state, request.credit_code, page.after, page.size + 1
        )
        return pb.ListFilingsResponse(
            filings=[_filing(f) for f in found[: page.size]],
            next_page_token=next_token(page, [f.filing_id for f in found]),
        )

    # ------------------------------------------------------------ projects and units

    def RegisterProject(self, request: pb.RegisterProjectRequest, context):
        v = Violations()
        check_request_id(v, request.request_id)
        p = request.project
        self._text(v, "project.name", p.name)
        project_type = _from_enum(
            v, "project.type", pb.ProjectType, "PROJECT_TYPE", p.type, ProjectType
        )
        domain.check_district(v, "project.district_code", p.district_code, self._city)
        self._text(v, "project.sub_district", p.sub_district)
        self._text(v, "project.address", p.address)
        area = domain.parse_area_cm2(v, "project.building_area_m2", p.building_area_m2)
        v.raise_if_any()

        def build(connection):
            project = self._registry.register_project(
                connection,
                name=p.name,
                project_type=project_type,
                district=p.district_code,
                sub_district=p.sub_district,
                address=p.address,
                building_area_cm2=area,
            )
            return pb.RegisterProjectResponse(project=_project(project))

        return self._idempotent("RegisterProject", request, pb.RegisterProjectResponse, build)

    def GetProject(self, request: pb.GetProjectRequest, context) -> pb.GetProjectResponse:
        v = Violations()
        v.check(bool(request.project_id), "project_id", "is required")
        v.raise_if_any()
        return pb.GetProjectResponse(
            project=_project(self._registry.get_project(request.project_id))
        )

    def ListProjects(self, request: pb.ListProjectsRequest, context) -> pb.ListProjectsResponse:
        v = Violations()
        project_type = _from_enum(
            v, "type", pb.ProjectType, "PROJECT_TYPE", request.type, ProjectType, required=False
        )
        if request.credit_code:
            domain.check_credit_code(v, "credit_code", request.credit_code)
        v.raise_if_any()
        page = self._page(request, [request.district_code, request.type, request.credit_code])
        found = self._registry.list_projects(
            request.district_code, project_type, request.credit_code, page.after, page.size + 1
        )
        return pb.ListProjectsResponse(
            projects=[_project(p) for p in found[: page.size]],
            next_page_token=next_token(page, [p.project_id for p in found]),
        )

    def RegisterUnits(self, request: pb.RegisterUnitsRequest, context) -> pb.RegisterUnitsResponse:
        v = Violations()
        check_request_id(v, request.request_id)
        v.check(bool(request.project_id), "project_id", "is required")
        limit = self._settings.max_units_per_request
        if not v.check(
            0 < len(request.units) <= limit,
            "units",
            f"give 1 to {limit} units per request, got {len(request.units)}",
        ):
            v.raise_if_any()
        today = self._settings.local_date(self._registry.now())
        given: list[UnitInput] = []
        numbers: set[str] = set()
        for i, unit in enumerate(request.units):
            at = f"units[{i}]"
            domain.check_unit_number(v, f"{at}.number", unit.number)
            v.check(unit.number not in numbers, f"{at}.number", "appears twice in this request")
            numbers.add(unit.number)
            area = domain.parse_area_cm2(v, f"{at}.exclusive_area_m2", unit.exclusive_area_m2)
            owner = self._owner(v, f"{at}.owner", unit.owner, today)
            if owner is not None:
                given.append(UnitInput(unit.number, area, owner))
        v.raise_if_any()

        def build(connection):
            units = self._registry.register_units(connection, request.project_id, given)
            return pb.RegisterUnitsResponse(units=[_unit(u) for u in units])

        return self._idempotent("RegisterUnits", request, pb.RegisterUnitsResponse, build)

    def _owner(self, v: Violations, at: str, owner: pb.Owner, today: dt.date) -> OwnerInput | None:
        kind = _from_enum(v, f"{at}.kind", pb.OwnerKind, "OWNER_KIND", owner.kind, OwnerKind)
        self._text(v, f"{at}.name", owner.name)
        # Cards print the check character X; people type it in either case.
        id_number = owner.id_number.upper()
        if kind is OwnerKind.PERSON:
            domain.check_resident_id(v, f"{at}.id_number", id_number, today)
        elif kind is not None:
            domain.check_credit_code(v, f"{at}.id_number", id_number)
        if owner.phone:
            domain.check_phone(v, f"{at}.phone", owner.phone)
        return OwnerInput(kind, owner.name, id_number, owner.phone) if kind else None

    def ListUnits(self, request: pb.ListUnitsRequest, context) -> pb.ListUnitsResponse:
        v = Violations()
        v.check(bool(request.project_id), "project_id", "is required")
        v.raise_if_any()
        page = self._page(request, [request.project_id])
        found = self._registry.list_units(request.project_id, page.after, page.size + 1)
        return pb.ListUnitsResponse(
            units=[_unit(u) for u in found[: page.size]],
            next_page_token=next_token(page, [u.unit_id for u in found]),
        )

    def TransferUnitOwnership(self, request: pb.TransferUnitOwnershipRequest, context):
        v = Violations()
        check_request_id(v, request.request_id)
        v.check(bool(request.unit_id), "unit_id", "is required")
        today = self._settings.local_date(self._registry.now())
        owner = self._owner(v, "new_owner", request.new_owner, today)
        v.check(
            owner is None or owner.kind is not OwnerKind.DEVELOPER_UNSOLD,
            "new_owner.kind",
            "a unit passes to a buyer, heir or donee, not back into unsold stock",
        )
        reason = _from_enum(
            v, "reason", pb.TransferReason, "TRANSFER_REASON", request.reason, TransferReason
        )
        register_date = date_of(
            v, "register_date", request.register_date, request.HasField("register_date")
        )
        v.check(
            register_date is None or register_date <= today,
            "register_date",
            "the register cannot have recorded the transfer in the future",
        )
        self._text(v, "register_reference", request.register_reference)
        v.raise_if_any()

        def build(connection):
            unit = self._registry.transfer_ownership(
                connection, request.unit_id, owner, reason, register_date
            )
            return pb.TransferUnitOwnershipResponse(unit=_unit(unit))

        return self._idempotent(
            "TransferUnitOwnership", request, pb.TransferUnitOwnershipResponse, build
        )

    def AssignEnterprise(self, request: pb.AssignEnterpriseRequest, context):
        v = Violations()
        check_request_id(v, request.request_id)
        v.check(bool(request.project_id), "project_id", "is required")
        a = request.assignment
        domain.check_credit_code(v, "assignment.credit_code", a.credit_code)
        start = date_of(
            v, "assignment.contract_start", a.contract_start, a.HasField("contract_start")
        )
        end = date_of(v, "assignment.contract_end", a.contract_end, a.HasField("contract_end"))
        domain.check_contract(v, start, end)
        handover = None
        if v.check(
            a.HasField("handover"),
            "assignment.handover",
            "the handover inspection (承接查验) is required",
        ):
            handover = self._handover(v, a.handover)
        v.raise_if_any()
        assignment = Assignment(a.credit_code, start, end, handover)

        def build(connection):
            project = self._registry.assign_enterprise(connection, request.project_id, assignment)
            return pb.AssignEnterpriseResponse(project=_project(project))

        return self._idempotent("AssignEnterprise", request, pb.AssignEnterpriseResponse, build)

    def _handover(self, v: Violations, h: pb.HandoverInspection) -> Handover | None:
        at = "assignment.handover"
        day = date_of(v, f"{at}.inspection_date", h.inspection_date, h.HasField("inspection_date"))
        items = [HandoverItem(i.facility, i.passed, i.finding) for i in h.items]
        domain.check_handover(v, items, self._settings.max_handover_items)
        for i, item in enumerate(items):
            self._text(v, f"{at}.items[{i}].facility", item.facility)
            self._text(v, f"{at}.items[{i}].finding", item.finding, required=False)
        self._text(v, f"{at}.record_reference", h.record_reference, required=False)
        return Handover(day, tuple(items), h.record_reference) if day else None

    def ExitProject(self, request: pb.ExitProjectRequest, context) -> pb.ExitProjectResponse:
        v = Violations()
        check_request_id(v, request.request_id)
        v.check(bool(request.project_id), "project_id", "is required")
        domain.check_credit_code(v, "credit_code", request.credit_code)
        exit_date = date_of(v, "exit_date", request.exit_date, request.HasField("exit_date"))
        self._text(v, "reason", request.reason)
        v.raise_if_any()

        def build(connection):
            project = self._registry.exit_project(
                connection,
                request.project_id,
                request.credit_code,
                filed=request.filed,
                exit_date=exit_date,
                reason=request.reason,
            )
            return pb.ExitProjectResponse(project=_project(project))

        return self._idempotent("ExitProject", request, pb.ExitProjectResponse, build)

    # ------------------------------------------------------------ disclosure

    def GetDisclosure(self, request: pb.GetDisclosureRequest, context) -> pb.GetDisclosureResponse:
        v = Violations()
        v.check(bool(request.project_id), "project_id", "is required")
        v.raise_if_any()
        disclosure, project = self._registry.get_disclosure(request.project_id)
        return pb.GetDisclosureResponse(disclosure=_disclosure(disclosure, project))

    def UpdateDisclosure(self, request: pb.UpdateDisclosureRequest, context):
        v = Violations()
        d = request.disclosure
        v.check(bool(d.project_id), "disclosure.project_id", "is required")
        paths = list(request.update_mask.paths) or list(domain.DISCLOSURE_FIELDS)
        fields = _mask_paths(v, "update_mask", paths, domain.DISCLOSURE_FIELDS)
        given = self._disclosure(v, d, fields)
        v.raise_if_any()
        disclosure, project = self._registry.update_disclosure(d.project_id, given, fields)
        return pb.UpdateDisclosureResponse(disclosure=_disclosure(disclosure, project))

    def _disclosure(self, v: Violations, d: pb.Disclosure, fields: tuple[str, ...]) -> Disclosure:
        at = "disclosure"
        limit = self._settings.max_list_items
        fee_method = None
        if "service_items" in fields:
            v.check(
                0 < len(d.service_items) <= limit,
                f"{at}.service_items",
                f"list 1 to {limit} service items",
            )
            for i, item in enumerate(d.service_items):
                self._text(v, f"{at}.service_items[{i}]", item)
        if "service_grade" in fields:
            self._text(v, f"{at}.service_grade", d.service_grade)
        if "service_standard" in fields:
            self._text(v, f"{at}.service_standard", d.service_standard)
        if "fee_method" in fields:
            fee_method = _from_enum(
                v, f"{at}.fee_method", pb.FeeMethod, "FEE_METHOD", d.fee_method, FeeMethod
            )
        if "fee_fen_per_m2_month" in fields:
            domain.check_fee(
                v,
                f"{at}.fee_fen_per_m2_month",
                d.fee_fen_per_m2_month,
                self._settings.max_fee_fen_per_m2_month,
            )
        if "service_phone" in fields:
            domain.check_phone(v, f"{at}.service_phone", d.service_phone, public=True)
        if "complaint_phones" in fields:
            v.check(
                0 < len(d.complaint_phones) <= limit,
                f"{at}.complaint_phones",
                f"list 1 to {limit} complaint phones",
            )
            for i, phone in enumerate(d.complaint_phones):
                domain.check_phone(v, f"{at}.complaint_phones[{i}]", phone, public=True)
        return Disclosure(
            project_id=d.project_id,
            service_items=tuple(d.service_items),
            service_grade=d.service_grade,
            service_standard=d.service_standard,
            fee_method=fee_method,
            fee_fen_per_m2_month=d.fee_fen_per_m2_month,
            service_phone=d.service_phone,
            complaint_phones=tuple(d.complaint_phones),
        )

    # ------------------------------------------------------------ practitioners

    def RegisterPractitioner(self, request: pb.RegisterPractitionerRequest, context):
        v = Violations()
        check_request_id(v, request.request_id)
        p = request.practitioner
        domain.check_credit_code(v, "practitioner.credit_code", p.credit_code)
        self._text(v, "practitioner.name", p.name)
        domain.check_resident_id(
            v,
            "practitioner.id_number",
            p.id_number.upper(),
            self._settings.local_date(self._registry.now()),
        )
        self._text(v, "practitioner.position", p.position)
        self._text(v, "practitioner.certificate_number", p.certificate_number, required=False)
        v.raise_if_any()

        def build(connection):
            practitioner = self._registry.register_practitioner(
                connection,
                credit_code=p.credit_code,
                name=p.name,
                id_number=p.id_number.upper(),
                position=p.position,
                certificate_number=p.certificate_number,
            )
            return pb.RegisterPractitionerResponse(practitioner=_practitioner(practitioner))

        return self._idempotent(
            "RegisterPractitioner", request, pb.RegisterPractitionerResponse, build
        )

    def GetPractitioner(self, request: pb.GetPractitionerRequest, context):
        v = Violations()
        v.check(bool(request.practitioner_id), "practitioner_id", "is required")
        v.raise_if_any()
        practitioner = self._registry.get_practitioner(request.practitioner_id)
        return pb.GetPractitionerResponse(practitioner=_practitioner(practitioner))

    def ListPractitioners(self, request: pb.ListPractitionersRequest, context):
        v = Violations()
        domain.check_credit_code(v, "credit_code", request.credit_code)
        v.raise_if_any()
        page = self._page(request, [request.credit_code])
        found = self._registry.list_practitioners(request.credit_code, page.after, page.size + 1)
        return pb.ListPractitionersResponse(
            practitioners=[_practitioner(p) for p in found[: page.size]],
            next_page_token=next_token(page, [p.practitioner_id for p in found]),
        )

    # ------------------------------------------------------------ owners' committees

    def FormOwnersCommittee(self, request: pb.FormOwnersCommitteeRequest, context):
        v = Violations()
        check_request_id(v, request.request_id)
        c = request.committee
        v.check(bool(c.project_id), "committee.project_id", "is required")
        kind = _from_enum(
            v, "committee.kind", pb.CommitteeKind, "COMMITTEE_KIND", c.kind, CommitteeKind
        )
        start = date_of(v, "committee.term_start", c.term_start, c.HasField("term_start"))
        end = date_of(v, "committee.term_end", c.term_end, c.HasField("term_end"))
        members: list[MemberInput] = []
        limit = self._settings.committee_max_members
        if not v.check(len(c.members) <= limit, "committee.members", f"at most {limit} members"):
            v.raise_if_any()
        for i, m in enumerate(c.members):
            at = f"committee.members[{i}]"
            self._text(v, f"{at}.name", m.name)
            role = _from_enum(
                v, f"{at}.role", pb.CommitteeRole, "COMMITTEE_ROLE", m.role, CommitteeRole
            )
            self._text(v, f"{at}.affiliation", m.affiliation, required=False)
            if m.phone:
                domain.check_phone(v, f"{at}.phone", m.phone)
            if role is not None:
                members.append(MemberInput(m.name, role, m.affiliation, m.phone))
        if kind and start and end and len(members) == len(c.members):
            domain.check_committee_shape(
                kind, [m.role for m in members], start, end, self._registry.committee_rules(kind), v
            )
        v.raise_if_any()

        def build(connection):
            committee = self._registry.form_committee(
                connection, c.project_id, kind, members, start, end
            )
            return pb.FormOwnersCommitteeResponse(committee=_committee(committee))

        return self._idempotent(
            "FormOwnersCommittee", request, pb.FormOwnersCommitteeResponse, build
        )

    def GetOwnersCommittee(self, request: pb.GetOwnersCommitteeRequest, context):
        v = Violations()
        v.check(bool(request.project_id), "project_id", "is required")
        v.raise_if_any()
        committee = self._registry.acting_committee(request.project_id)
        return pb.GetOwnersCommitteeResponse(committee=_committee(committee))

    # ---------------------------------------------------------------- domain -> wire

    def _sign_in_id_number(self, v: Violations, id_number: str) -> str:
        # Cards print the check character X; people type it in either case.
        number = id_number.upper()
        today = self._settings.local_date(self._registry.now())
        domain.check_resident_id(v, "id_number", number, today)
        return number

    def StartOwnerSignIn(self, request: pb.StartOwnerSignInRequest, context):
        v = Violations()
        number = self._sign_in_id_number(v, request.id_number)
        v.raise_if_any()
        expires = self._registry.start_owner_sign_in(number)
        return pb.StartOwnerSignInResponse(
            expire_time=timestamp(expires), id_number_masked=mask_id_number(number)
        )

    def CompleteOwnerSignIn(self, request: pb.CompleteOwnerSignInRequest, context):
        v = Violations()
        number = self._sign_in_id_number(v, request.id_number)
        v.check(
            len(request.code) == self._settings.owner_sign_in_code_digits
            and request.code.isascii()
            and request.code.isdigit(),
            "code",
            f"is the {self._settings.owner_sign_in_code_digits} digits the code has",
        )
        v.raise_if_any()
        token, expires, owned = self._registry.complete_owner_sign_in(number, request.code)
        return pb.CompleteOwnerSignInResponse(
            token=token,
            expire_time=timestamp(expires),
            units=[
                pb.OwnedUnit(
                    project_id=o.unit.project_id,
                    project_name=o.project_name,
                    district_code=o.district_code,
                    unit=_unit(o.unit),
                )
                for o in owned
            ],
        )


def _enterprise(e: domain.Enterprise) -> pb.Enterprise:
    p = e.particulars
    return pb.Enterprise(
        credit_code=e.credit_code,
        name=p.name,
        district_code=e.district_code,
        address=p.address,
        legal_representative=p.legal_representative,
        contact_phone=p.contact_phone_masked,
        status=_to_enum(pb.EnterpriseStatus, "ENTERPRISE_STATUS", e.status),
        active_project_count=e.active_project_count,
        create_time=timestamp(e.created_at),
        update_time=timestamp(e.updated_at),
    )


def _filing(f: domain.Filing) -> pb.Filing:
    message = pb.Filing(
        filing_id=f.filing_id,
        credit_code=f.credit_code,
        district_code=f.district_code,
        kind=_to_enum(pb.FilingKind, "FILING_KIND", f.kind),
        state=_to_enum(pb.FilingState, "FILING_STATE", f.state),
        exit_reason=f.exit_reason,
        rejection_reason=f.rejection_reason,
        reviewer=f.reviewer,
        submit_time=timestamp(f.submitted_at),
        review_time=timestamp(f.reviewed_at),
    )
    if f.proposed is not None:
        proposed = f.proposed
        message.proposed.CopyFrom(
            pb.Enterprise(
                credit_code=f.credit_code,
                name=proposed.name if "name" in f.changed_fields else "",
                address=proposed.address if "address" in f.changed_fields else "",
                legal_representative=(
                    proposed.legal_representative
                    if "legal_representative" in f.changed_fields
                    else ""
                ),
                contact_phone=(
                    proposed.contact_phone_masked if "contact_phone" in f.changed_fields else ""
                ),
            )
        )
        message.change_mask.paths.extend(f.changed_fields)
    return message


def _assignment(a: Assignment) -> pb.Assignment:
    h = a.handover
    return pb.Assignment(
        credit_code=a.credit_code,
        enterprise_name=a.enterprise_name,
        contract_start=to_date(a.contract_start),
        contract_end=to_date(a.contract_end),
        handover=pb.HandoverInspection(
            inspection_date=to_date(h.inspection_date),
            items=[
                pb.HandoverItem(facility=i.facility, passed=i.passed, finding=i.finding)
                for i in h.items
            ],
            record_reference=h.record_reference,
        ),
    )


def _project(p: domain.Project) -> pb.Project:
    return pb.Project(
        project_id=p.project_id,
        name=p.name,
        type=_to_enum(pb.ProjectType, "PROJECT_TYPE", p.type),
        district_code=p.district_code,
        sub_district=p.sub_district,
        address=p.address,
        building_area_m2=domain.format_area(p.building_area_cm2),
        current_assignment=_assignment(p.assignment) if p.assignment else None,
        unit_count=p.unit_count,
        exclusive_area_m2=domain.format_area(p.exclusive_area_cm2),
        create_time=timestamp(p.created_at),
        update_time=timestamp(p.updated_at),
    )


def _unit(u: domain.Unit) -> pb.Unit:
    o = u.owner
    return pb.Unit(
        unit_id=u.unit_id,
        number=u.number,
        exclusive_area_m2=domain.format_area(u.exclusive_area_cm2),
        owner=pb.Owner(
            kind=_to_enum(pb.OwnerKind, "OWNER_KIND", o.kind),
            name=o.name,
            id_number_masked=o.id_masked,
            owner_key=o.owner_key,
            phone=o.phone_masked,
        ),
    )


def _disclosure(d: Disclosure, project: domain.Project) -> pb.Disclosure:
    a = project.assignment
    return pb.Disclosure(
        project_id=d.project_id,
        service_items=list(d.service_items),
        service_grade=d.service_grade,
        service_standard=d.service_standard,
        fee_method=_to_enum(pb.FeeMethod, "FEE_METHOD", d.fee_method),
        fee_fen_per_m2_month=d.fee_fen_per_m2_month,
        service_phone=d.service_phone,
        complaint_phones=list(d.complaint_phones),
        enterprise_name=a.enterprise_name if a else "",
        credit_code=a.credit_code if a else "",
        update_time=timestamp(d.updated_at),
    )


def _practitioner(p: domain.Practitioner) -> pb.Practitioner:
    return pb.Practitioner(
        practitioner_id=p.practitioner_id,
        credit_code=p.credit_code,
        district_code=p.district_code,
        name=p.name,
        id_number_masked=p.id_masked,
        person_key=p.person_key,
        position=p.position,
        certificate_number=p.certificate_number,
        create_time=timestamp(p.created_at),
    )


def _committee(c: domain.Committee) -> pb.OwnersCommittee:
    return pb.OwnersCommittee(
        committee_id=c.committee_id,
        project_id=c.project_id,
        kind=_to_enum(pb.CommitteeKind, "COMMITTEE_KIND", c.kind),
        members=[
            pb.CommitteeMember(
                name=m.name,
                role=_to_enum(pb.CommitteeRole, "COMMITTEE_ROLE", m.role),
                affiliation=m.affiliation,
                phone=m.phone_masked,
            )
            for m in c.members
        ],
        term_start=to_date(c.term_start),
        term_end=to_date(c.term_end),
        create_time=timestamp(c.created_at),
    )
