"""A unit's ownership passes to a new owner (sale, inheritance, gift): the district authority
records it, the owner is stored masked and keyed, and the event carries no personal data."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
import sqlalchemy as sa
from sample_data import date, request_id

from wuye.core.auth import Role
from wuye.registry.v1 import events_pb2 as ev
from wuye.registry.v1 import registry_service_pb2 as pb

pytestmark = pytest.mark.integration


def _project_with_unit(registry) -> tuple[str, pb.Unit]:
    project = registry.register_project().project_id
    developer = pb.Owner(
        kind=pb.OWNER_KIND_DEVELOPER_UNSOLD, name="开发商", id_number=registry.new_credit_code()
    )
    [unit] = registry.admin.RegisterUnits(
        pb.RegisterUnitsRequest(
            request_id=request_id(),
            project_id=project,
            units=[pb.Unit(number="2-1-301", exclusive_area_m2="96.52", owner=developer)],
        )
    ).units
    return project, unit


def _transfer(unit_id: str, id_number: str, **fields) -> pb.TransferUnitOwnershipRequest:
    values = {
        "request_id": request_id(),
        "unit_id": unit_id,
        "new_owner": pb.Owner(
            kind=pb.OWNER_KIND_PERSON, name="王五", id_number=id_number, phone="13912345678"
        ),
        "reason": pb.TRANSFER_REASON_SALE,
        "register_date": date(dt.date(2026, 3, 2)),
        "register_reference": "蒙(2026)东胜区不动产权第0012345号",
        **fields,
    }
    return pb.TransferUnitOwnershipRequest(**values)


def test_a_sold_unit_passes_to_its_buyer_and_is_announced_without_personal_data(registry):
    project, unit = _project_with_unit(registry)
    buyer = registry.new_resident_id()
    authority = registry.client(Role.DISTRICT_AUTHORITY, "officer", ["150602"])
    request = _transfer(unit.unit_id, buyer.lower())  # the check character typed in lower case
    moved = authority.TransferUnitOwnership(request).unit
    assert moved.unit_id == unit.unit_id
    assert moved.owner.kind == pb.OWNER_KIND_PERSON
    assert moved.owner.id_number == ""
    assert moved.owner.id_number_masked == buyer[:4] + "*" * 10 + buyer[-4:]
    assert moved.owner.phone == "139****5678"
    assert moved.owner.owner_key != unit.owner.owner_key
    # A retry answers the same and announces nothing more.
    assert authority.TransferUnitOwnership(request).unit == moved
    [listed] = registry.admin.ListUnits(pb.ListUnitsRequest(project_id=project)).units
    assert listed == moved

    # The buyer is the same owner as in a unit registered to them directly.
    other = registry.register_project().project_id
    [direct] = registry.admin.RegisterUnits(
        pb.RegisterUnitsRequest(
            request_id=request_id(),
            project_id=other,
            units=[
                pb.Unit(
                    number="1-1-101",
                    exclusive_area_m2="50",
                    owner=pb.Owner(kind=pb.OWNER_KIND_PERSON, name="王五", id_number=buyer),
                )
            ],
        )
    ).units
    assert direct.owner.owner_key == moved.owner.owner_key

    with registry.engine.connect() as connection:
        payloads = connection.execute(
            sa.text("SELECT payload FROM outbox WHERE event_type = :t"),
            {"t": ev.UnitOwnershipTransferred.DESCRIPTOR.full_name},
        ).all()
        stored = connection.execute(sa.text("SELECT * FROM units")).all()
    [payload] = [row.payload for row in payloads]
    event = ev.UnitOwnershipTransferred.FromString(payload)
    assert (event.unit_id, event.project_id, event.district_code) == (
        unit.unit_id,
        project,
        "150602",
    )
    assert event.owner_key == moved.owner.owner_key
    assert event.owner_kind == pb.OWNER_KIND_PERSON
    assert event.exclusive_area_cm2 == 965_200
    assert event.reason == pb.TRANSFER_REASON_SALE
    assert (event.register_date.year, event.register_date.month) == (2026, 3)
    assert buyer.encode() not in payload and "王五".encode() not in payload
    assert buyer not in repr(stored)

    # To the same owner again: nothing to transfer.
    failure = authority.fails("TransferUnitOwnership", _transfer(unit.unit_id, buyer))
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ALREADY_THE_OWNER",
    )


def test_only_the_projects_housing_authority_transfers_and_bad_requests_name_each_field(
    registry,
):
    project, unit = _project_with_unit(registry)
    buyer = registry.new_resident_id()
    for outsider in (
        registry.client(Role.SUB_DISTRICT, "天骄街道", ["150602"]),
        registry.client(Role.OWNERS_COMMITTEE, "committee", ["150602"]),
        registry.client(Role.OWNER, "someone", ["150602"]),
    ):
        failure = outsider.fails("TransferUnitOwnership", _transfer(unit.unit_id, buyer))
        assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    elsewhere = registry.client(Role.DISTRICT_AUTHORITY, "officer", ["150603"])
    failure = elsewhere.fails("TransferUnitOwnership", _transfer(unit.unit_id, buyer))
    assert failure.code == grpc.StatusCode.PERMISSION_DENIED

    bad = _transfer(
        unit.unit_id,
        buyer[:-1] + ("0" if buyer[-1] != "0" else "1"),
        reason=pb.TRANSFER_REASON_UNSPECIFIED,
        register_date=date(dt.date.today() + dt.timedelta(days=30)),
        register_reference="",
    )
    failure = registry.admin.fails("TransferUnitOwnership", bad)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(failure.violations) == {
        "new_owner.id_number",
        "reason",
        "register_date",
        "register_reference",
    }
    unsold = _transfer(
        unit.unit_id,
        registry.new_credit_code(),
        new_owner=pb.Owner(
            kind=pb.OWNER_KIND_DEVELOPER_UNSOLD, name="开发商", id_number=registry.new_credit_code()
        ),
    )
    failure = registry.admin.fails("TransferUnitOwnership", unsold)
    assert set(failure.violations) == {"new_owner.kind"}
    missing = registry.admin.fails("TransferUnitOwnership", _transfer("150602-U" + "0" * 24, buyer))
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "UNIT_NOT_FOUND")
    # Nothing was stored: the unit is still the developer's.
    [still] = registry.admin.ListUnits(pb.ListUnitsRequest(project_id=project)).units
    assert still.owner.owner_key == unit.owner.owner_key
