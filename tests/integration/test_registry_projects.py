"""Projects over gRPC: registration, units and their owners, the serving enterprise (handover,
filed and unfiled exits) and the public disclosure."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.field_mask_pb2 import FieldMask
from google.type import date_pb2
from sample_data import date, request_id

from wuye.core.auth import Role
from wuye.registry.v1 import events_pb2 as ev
from wuye.registry.v1 import registry_service_pb2 as pb

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


def project_message(**fields) -> pb.Project:
    values = {
        "name": "天骄花园",
        "type": pb.PROJECT_TYPE_RESIDENTIAL,
        "district_code": "150602",
        "sub_district": "天骄街道",
        "address": "鄂尔多斯市东胜区天骄路 8 号",
        "building_area_m2": "125000.5",
        **fields,
    }
    return pb.Project(**values)


def person(id_number: str, name: str = "张三", phone: str = "13712345678") -> pb.Owner:
    return pb.Owner(kind=pb.OWNER_KIND_PERSON, name=name, id_number=id_number, phone=phone)


def unit(number: str, area: str, owner: pb.Owner) -> pb.Unit:
    return pb.Unit(number=number, exclusive_area_m2=area, owner=owner)


def outbox_events(registry, event_type: type) -> list:
    with registry.engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT payload FROM outbox WHERE event_type = :t ORDER BY id"),
            {"t": event_type.DESCRIPTOR.full_name},
        )
        return [event_type.FromString(row.payload) for row in rows]


# ---------------------------------------------------------------- projects


def test_a_registered_project_is_returned_by_get(registry):
    registered = registry.admin.RegisterProject(
        pb.RegisterProjectRequest(request_id=request_id(), project=project_message())
    ).project
    assert registered.project_id.startswith("150602-")
    assert registered.building_area_m2 == "125000.50"
    assert registered.unit_count == 0
    assert registered.exclusive_area_m2 == "0.00"
    assert not registered.HasField("current_assignment")
    got = registry.admin.GetProject(pb.GetProjectRequest(project_id=registered.project_id))
    assert got.project == registered
    [event] = outbox_events(registry, ev.ProjectRegistered)
    assert event.building_area_cm2 == 1_250_005_000


def test_a_sub_district_office_registers_projects_of_its_district(registry):
    office = registry.client(Role.SUB_DISTRICT, "天骄街道", ["150602"])
    project = office.RegisterProject(
        pb.RegisterProjectRequest(request_id=request_id(), project=project_message())
    ).project
    assert project.district_code == "150602"
    failure = office.fails(
        "RegisterProject",
        pb.RegisterProjectRequest(
            request_id=request_id(), project=project_message(district_code="150603")
        ),
    )
    assert (failure.code, failure.reason) == (PERMISSION_DENIED, "DISTRICT_OUT_OF_SCOPE")


def test_a_project_with_bad_fields_is_refused_naming_each_and_nothing_is_stored(registry):
    failure = registry.admin.fails(
        "RegisterProject",
        pb.RegisterProjectRequest(
            request_id=request_id(),
            project=project_message(
                type=pb.PROJECT_TYPE_UNSPECIFIED, building_area_m2="12.345", sub_district=""
            ),
        ),
    )
    assert failure.code == INVALID
    assert set(failure.violations) == {
        "project.type",
        "project.building_area_m2",
        "project.sub_district",
    }
    assert registry.count("projects") == 0


def test_list_projects_pages_and_filters_by_type_and_serving_enterprise(registry):
    residential = [registry.register_project().project_id for _ in range(5)]
    hospital = registry.register_project(project_type=pb.PROJECT_TYPE_HOSPITAL).project_id
    registry.register_project("150603")
    code = registry.filed_enterprise()
    registry.assign(residential[2], code)

    seen, token = [], ""
    while True:
        page = registry.admin.ListProjects(
            pb.ListProjectsRequest(district_code="150602", page_size=2, page_token=token)
        )
        seen += [p.project_id for p in page.projects]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted([*residential, hospital])

    hospitals = registry.admin.ListProjects(pb.ListProjectsRequest(type=pb.PROJECT_TYPE_HOSPITAL))
    assert [p.project_id for p in hospitals.projects] == [hospital]
    served = registry.admin.ListProjects(pb.ListProjectsRequest(credit_code=code)).projects
    assert [p.project_id for p in served] == [residential[2]]
    assert served[0].current_assignment.credit_code == code


def test_an_unknown_project_is_not_found(registry):
    failure = registry.admin.fails(
        "GetProject", pb.GetProjectRequest(project_id="150602-000000000000")
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "PROJECT_NOT_FOUND")
    assert failure.metadata == {"project_id": "150602-000000000000"}


# ---------------------------------------------------------------- units and owners


def test_units_are_registered_with_masked_owners_and_counted_on_the_project(registry):
    project = registry.register_project()
    buyer = registry.new_resident_id()
    other = registry.new_resident_id()
    developer = registry.new_credit_code()
    units = registry.admin.RegisterUnits(
        pb.RegisterUnitsRequest(
            request_id=request_id(),
            project_id=project.project_id,
            units=[
                unit("1-1-101", "89.37", person(buyer)),
                unit("1-1-102", "120.5", person(buyer)),
                unit("1-1-201", "89.37", person(other, "李四", "")),
                unit(
                    "1-1-202",
                    "100",
                    pb.Owner(
                        kind=pb.OWNER_KIND_DEVELOPER_UNSOLD, name="开发商", id_number=developer
                    ),
                ),
                unit(
                    "1-1-301",
                    "100",
                    pb.Owner(
                        kind=pb.OWNER_KIND_DEVELOPER_UNSOLD, name="开发商", id_number=developer
                    ),
                ),
            ],
        )
    ).units
    assert [u.exclusive_area_m2 for u in units] == ["89.37", "120.50", "89.37", "100.00", "100.00"]
    first = units[0].owner
    assert first.id_number == ""
    assert first.id_number_masked == buyer[:4] + "*" * 10 + buyer[-4:]
    assert first.phone == "137****5678"
    assert units[2].owner.phone == ""
    # One buyer of two units is one owner; the developer's unsold units are one owner.
    assert units[0].owner.owner_key == units[1].owner.owner_key
    assert units[2].owner.owner_key != units[0].owner.owner_key
    assert units[3].owner.owner_key == units[4].owner.owner_key
    assert len({u.owner.owner_key for u in units}) == 3

    got = registry.admin.GetProject(pb.GetProjectRequest(project_id=project.project_id)).project
    assert got.unit_count == 5
    assert got.exclusive_area_m2 == "499.24"

    # The whole ID number is nowhere in the database.
    with registry.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT * FROM units")).all()
        events = connection.execute(sa.text("SELECT payload FROM outbox")).all()
    assert buyer not in repr(stored)
    assert not any(buyer.encode() in row.payload for row in events)


def test_the_same_person_owning_units_in_two_projects_has_one_owner_key(registry):
    buyer = registry.new_resident_id()
    keys = []
    for _ in range(2):
        project = registry.register_project()
        [registered] = registry.admin.RegisterUnits(
            pb.RegisterUnitsRequest(
                request_id=request_id(),
                project_id=project.project_id,
                units=[unit("2-1-101", "75.00", person(buyer))],
            )
        ).units
        keys.append(registered.owner.owner_key)
    assert keys[0] == keys[1]


def test_list_units_pages_through_every_unit(registry):
    project = registry.register_project()
    registry.admin.RegisterUnits(
        pb.RegisterUnitsRequest(
            request_id=request_id(),
            project_id=project.project_id,
            units=[unit(f"3-1-{n}", "60.00", person(registry.new_resident_id())) for n in range(7)],
        )
    )
    seen, token = [], ""
    while True:
        page = registry.admin.ListUnits(
            pb.ListUnitsRequest(project_id=project.project_id, page_size=3, page_token=token)
        )
        seen += [u.number for u in page.units]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == [f"3-1-{n}" for n in range(7)]
    assert len(seen) == 7


def test_a_unit_number_already_registered_is_refused(registry):
    project = registry.register_project()

    def register(*numbers: str):
        return pb.RegisterUnitsRequest(
            request_id=request_id(),
            project_id=project.project_id,
            units=[unit(n, "80.00", person(registry.new_resident_id())) for n in numbers],
        )

    registry.admin.RegisterUnits(register("1-101"))
    failure = registry.admin.fails("RegisterUnits", register("1-102", "1-101"))
    assert failure.code == grpc.StatusCode.ALREADY_EXISTS
    assert failure.reason == "UNIT_ALREADY_REGISTERED"
    assert failure.metadata["numbers"] == "1-101"
    assert registry.count("units") == 1

    twice = registry.admin.fails("RegisterUnits", register("1-103", "1-103"))
    assert twice.code == INVALID
    assert "units[1].number" in twice.violations


def test_bad_units_name_the_unit_and_field_and_store_nothing(registry):
    project = registry.register_project()
    wrong_id = registry.new_resident_id()
    wrong_id = wrong_id[:17] + ("0" if wrong_id[17] != "0" else "1")
    failure = registry.admin.fails(
        "RegisterUnits",
        pb.RegisterUnitsRequest(
            request_id=request_id(),
            project_id=project.project_id,
            units=[
                unit("1-101", "80.00", person(registry.new_resident_id())),
                unit("1-102", "80.001", person(wrong_id, phone="12345")),
                unit("", "80", pb.Owner(name="无类型")),
            ],
        ),
    )
    assert failure.code == INVALID
    assert set(failure.violations) == {
        "units[1].exclusive_area_m2",
        "units[1].owner.id_number",
        "units[1].owner.phone",
        "units[2].number",
        "units[2].owner.kind",
    }
    assert wrong_id not in failure.message
    assert registry.count("units") == 0


def test_units_of_an_unknown_project_are_not_found(registry):
    failure = registry.admin.fails(
        "RegisterUnits",
        pb.RegisterUnitsRequest(
            request_id=request_id(),
            project_id="150602-000000000000",
            units=[unit("1-101", "80.00", person(registry.new_resident_id()))],
        ),
    )
    assert failure.code == grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------- the serving enterprise


def test_a_filed_enterprise_takes_over_a_project_with_its_handover_inspection(registry):
    code = registry.filed_enterprise(name="伊金霍洛物业")
    project = registry.register_project()
    assigned = registry.admin.AssignEnterprise(
        pb.AssignEnterpriseRequest(
            request_id=request_id(),
            project_id=project.project_id,
            assignment=registry.assignment(code),
        )
    ).project
    current = assigned.current_assignment
    assert current.credit_code == code
    assert current.enterprise_name == "伊金霍洛物业"
    assert current.contract_start == date(dt.date(2026, 1, 1))
    assert [(i.facility, i.passed) for i in current.handover.items] == [
        ("电梯 3 号楼 1 单元", True),
        ("消防水泵", False),
    ]
    assert current.handover.items[1].finding == "压力不足"
    assert current.handover.record_reference == "CJ-2026-001"

    enterprise = registry.admin.GetEnterprise(pb.GetEnterpriseRequest(credit_code=code))
    assert enterprise.enterprise.active_project_count == 1
    [event] = outbox_events(registry, ev.EnterpriseAssigned)
    assert (event.handover_items, event.handover_items_failed) == (2, 1)


def test_only_a_filed_enterprise_may_take_over_a_project(registry):
    pending = registry.file_enterprise().enterprise.credit_code
    project = registry.register_project()
    for code in (pending, registry.new_credit_code()):
        failure = registry.admin.fails(
            "AssignEnterprise",
            pb.AssignEnterpriseRequest(
                request_id=request_id(),
                project_id=project.project_id,
                assignment=registry.assignment(code),
            ),
        )
        assert (failure.code, failure.reason) == (FAILED_PRECONDITION, "ENTERPRISE_NOT_FILED")
    assert registry.count("assignments") == 0


def test_a_served_project_is_not_taken_over_until_its_enterprise_exits(registry):
    first, second = registry.filed_enterprise(), registry.filed_enterprise()
    project = registry.register_project()
    registry.assign(project.project_id, first)
    failure = registry.admin.fails(
        "AssignEnterprise",
        pb.AssignEnterpriseRequest(
            request_id=request_id(),
            project_id=project.project_id,
            assignment=registry.assignment(second),
        ),
    )
    assert (failure.code, failure.reason) == (FAILED_PRECONDITION, "PROJECT_ALREADY_SERVED")
    assert failure.metadata["credit_code"] == first


def test_an_assignment_needs_its_handover_and_ordered_contract_dates(registry):
    code = registry.filed_enterprise()
    project = registry.register_project()
    assignment = registry.assignment(code)
    assignment.ClearField("handover")
    assignment.contract_end.CopyFrom(assignment.contract_start)
    failure = registry.admin.fails(
        "AssignEnterprise",
        pb.AssignEnterpriseRequest(
            request_id=request_id(), project_id=project.project_id, assignment=assignment
        ),
    )
    assert failure.code == INVALID
    assert set(failure.violations) == {"assignment.handover", "assignment.contract_end"}

    assignment = registry.assignment(code)
    assignment.handover.items[1].finding = ""
    assignment.contract_start.CopyFrom(date_pb2.Date(year=2026, month=2, day=30))
    failure = registry.admin.fails(
        "AssignEnterprise",
        pb.AssignEnterpriseRequest(
            request_id=request_id(), project_id=project.project_id, assignment=assignment
        ),
    )
    assert set(failure.violations) == {
        "assignment.contract_start",
        "assignment.handover.items[1].finding",
    }


def exit_request(project_id: str, code: str, filed: bool) -> pb.ExitProjectRequest:
    return pb.ExitProjectRequest(
        request_id=request_id(),
        project_id=project_id,
        credit_code=code,
        filed=filed,
        exit_date=date(dt.date(2026, 6, 30)),
        reason="合同到期",
    )


def test_the_serving_enterprise_files_its_exit_and_the_project_is_free_again(registry):
    code, successor = registry.filed_enterprise(), registry.filed_enterprise()
    project = registry.register_project()
    registry.assign(project.project_id, code)
    left = registry.enterprise(code).ExitProject(exit_request(project.project_id, code, True))
    assert not left.project.HasField("current_assignment")
    enterprise = registry.admin.GetEnterprise(pb.GetEnterpriseRequest(credit_code=code))
    assert enterprise.enterprise.active_project_count == 0
    [event] = outbox_events(registry, ev.EnterpriseExited)
    assert (event.credit_code, event.filed, event.reason) == (code, True, "合同到期")
    assert registry.assign(project.project_id, successor).current_assignment.credit_code == (
        successor
    )


def test_an_unfiled_exit_is_recorded_only_by_an_authority(registry):
    code = registry.filed_enterprise()
    project = registry.register_project()
    registry.assign(project.project_id, code)

    failure = registry.enterprise(code).fails(
        "ExitProject", exit_request(project.project_id, code, False)
    )
    assert (failure.code, failure.reason) == (PERMISSION_DENIED, "NOT_AN_AUTHORITY")
    assert registry.admin.GetProject(
        pb.GetProjectRequest(project_id=project.project_id)
    ).project.HasField("current_assignment")
    assert outbox_events(registry, ev.EnterpriseExited) == []

    registry.authority("150602").ExitProject(exit_request(project.project_id, code, False))
    [event] = outbox_events(registry, ev.EnterpriseExited)
    assert (event.credit_code, event.filed) == (code, False)
    with registry.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT exit_filed FROM assignments")).scalar_one() is (
            False
        )


def test_only_the_serving_enterprise_exits(registry):
    code, other = registry.filed_enterprise(), registry.filed_enterprise()
    project = registry.register_project()
    registry.assign(project.project_id, code)
    failure = registry.admin.fails("ExitProject", exit_request(project.project_id, other, True))
    assert (failure.code, failure.reason) == (FAILED_PRECONDITION, "ENTERPRISE_NOT_SERVING")
    # An enterprise exits only for itself.
    failure = registry.enterprise(other).fails(
        "ExitProject", exit_request(project.project_id, code, True)
    )
    assert (failure.code, failure.reason) == (PERMISSION_DENIED, "NOT_YOUR_ENTERPRISE")


# ---------------------------------------------------------------- public disclosure


def disclosure(project_id: str, **fields) -> pb.Disclosure:
    values = {
        "service_items": ["保洁", "秩序维护", "绿化养护"],
        "service_grade": "一级",
        "service_standard": "鄂尔多斯市住宅物业服务标准",
        "fee_method": pb.FEE_METHOD_LUMP_SUM,
        "fee_fen_per_m2_month": 180,
        "service_phone": "0477-8581234",
        "complaint_phones": ["12345", "400-123-4567"],
        **fields,
    }
    return pb.Disclosure(project_id=project_id, **values)


def test_the_serving_enterprise_publishes_a_disclosure_anyone_reads_without_a_token(registry):
    code = registry.filed_enterprise(name="东胜物业")
    project = registry.register_project()
    registry.assign(project.project_id, code)
    published = (
        registry.enterprise(code)
        .UpdateDisclosure(pb.UpdateDisclosureRequest(disclosure=disclosure(project.project_id)))
        .disclosure
    )
    assert published.credit_code == code
    assert published.enterprise_name == "东胜物业"
    assert published.HasField("update_time")

    public = registry.anonymous.GetDisclosure(
        pb.GetDisclosureRequest(project_id=project.project_id)
    ).disclosure
    assert public == published
    assert list(public.complaint_phones) == ["12345", "400-123-4567"]
    assert public.fee_fen_per_m2_month == 180
    # A token scoped to another district does not stop a public read either.
    elsewhere = registry.authority("150627")
    assert elsewhere.GetDisclosure(pb.GetDisclosureRequest(project_id=project.project_id))


def test_a_masked_disclosure_update_replaces_only_the_named_fields(registry):
    code = registry.filed_enterprise()
    project = registry.register_project()
    registry.assign(project.project_id, code)
    registry.admin.UpdateDisclosure(
        pb.UpdateDisclosureRequest(disclosure=disclosure(project.project_id))
    )
    updated = (
        registry.enterprise(code)
        .UpdateDisclosure(
            pb.UpdateDisclosureRequest(
                disclosure=pb.Disclosure(
                    project_id=project.project_id, fee_fen_per_m2_month=210, service_grade="二级"
                ),
                update_mask=FieldMask(paths=["fee_fen_per_m2_month"]),
            )
        )
        .disclosure
    )
    assert updated.fee_fen_per_m2_month == 210
    assert updated.service_grade == "一级"
    assert list(updated.service_items) == ["保洁", "秩序维护", "绿化养护"]


def test_only_the_serving_enterprise_or_an_authority_updates_the_disclosure(registry):
    code, other = registry.filed_enterprise(), registry.filed_enterprise()
    project = registry.register_project()
    registry.assign(project.project_id, code)
    failure = registry.enterprise(other).fails(
        "UpdateDisclosure", pb.UpdateDisclosureRequest(disclosure=disclosure(project.project_id))
    )
    assert (failure.code, failure.reason) == (PERMISSION_DENIED, "NOT_SERVING_ENTERPRISE")
    assert registry.count("disclosures") == 0


def test_a_disclosure_with_bad_phones_and_fee_names_each_field(registry):
    project = registry.register_project()
    failure = registry.admin.fails(
        "UpdateDisclosure",
        pb.UpdateDisclosureRequest(
            disclosure=disclosure(
                project.project_id,
                service_phone="call us",
                complaint_phones=["12345", "99"],
                fee_fen_per_m2_month=-1,
                fee_method=pb.FEE_METHOD_UNSPECIFIED,
            )
        ),
    )
    assert failure.code == INVALID
    assert set(failure.violations) == {
        "disclosure.service_phone",
        "disclosure.complaint_phones[1]",
        "disclosure.fee_fen_per_m2_month",
        "disclosure.fee_method",
    }
    assert registry.count("disclosures") == 0


def test_a_project_without_a_published_disclosure_is_not_found(registry):
    project = registry.register_project()
    failure = registry.anonymous.fails(
        "GetDisclosure", pb.GetDisclosureRequest(project_id=project.project_id)
    )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "DISCLOSURE_NOT_PUBLISHED",
    )


def test_a_thousand_bad_units_are_refused_with_an_error_the_client_can_read(registry):
    project = registry.register_project()
    failure = registry.admin.fails(
        "RegisterUnits",
        pb.RegisterUnitsRequest(
            request_id=request_id(),
            project_id=project.project_id,
            units=[
                unit(f"9-{n}", "1.234", pb.Owner(kind=pb.OWNER_KIND_PERSON, name="x"))
                for n in range(1000)
            ],
        ),
    )
    # Every unit is wrong twice over; the answer names the first ones and says how many more.
    assert failure.code == INVALID
    assert "units[0].exclusive_area_m2" in failure.violations
    assert "units[0].owner.id_number" in failure.violations
    assert len(failure.violations) <= 20
    assert "1990 more" in failure.message
    assert registry.count("units") == 0


def test_a_retried_unit_registration_returns_the_same_units_once(registry):
    project = registry.register_project()
    request = pb.RegisterUnitsRequest(
        request_id=request_id(),
        project_id=project.project_id,
        units=[unit("5-101", "88.00", person(registry.new_resident_id()))],
    )
    first = registry.admin.RegisterUnits(request)
    assert registry.admin.RegisterUnits(request) == first
    assert registry.count("units") == 1
    assert len(outbox_events(registry, ev.UnitsRegistered)) == 1
