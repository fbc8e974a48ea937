"""Practitioners of enterprises and projects' owners' committees over gRPC."""

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

INVALID = grpc.StatusCode.INVALID_ARGUMENT
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


# ---------------------------------------------------------------- practitioners


def practitioner(code: str, id_number: str, **fields) -> pb.Practitioner:
    values = {
        "name": "赵六",
        "position": "项目经理",
        "certificate_number": "WY-2026-0001",
        **fields,
    }
    return pb.Practitioner(credit_code=code, id_number=id_number, **values)


def test_an_enterprise_registers_its_practitioner_whose_id_is_only_shown_masked(registry):
    code = registry.filed_enterprise()
    person = registry.new_resident_id()
    registered = (
        registry.enterprise(code)
        .RegisterPractitioner(
            pb.RegisterPractitionerRequest(
                request_id=request_id(), practitioner=practitioner(code, person)
            )
        )
        .practitioner
    )
    assert registered.practitioner_id.startswith("150602-P")
    assert registered.district_code == "150602"
    assert registered.id_number == ""
    assert registered.id_number_masked == person[:4] + "*" * 10 + person[-4:]
    assert registered.person_key and person not in registered.person_key

    got = registry.client(Role.INSPECTOR, "inspector-1").GetPractitioner(
        pb.GetPractitionerRequest(practitioner_id=registered.practitioner_id)
    )
    assert got.practitioner == registered
    with registry.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT * FROM practitioners")).all()
    assert person not in repr(stored)


def test_the_same_person_has_one_person_key_across_employers(registry):
    person = registry.new_resident_id()
    keys = {
        registry.admin.RegisterPractitioner(
            pb.RegisterPractitionerRequest(
                request_id=request_id(),
                practitioner=practitioner(registry.filed_enterprise(), person),
            )
        ).practitioner.person_key
        for _ in range(2)
    }
    assert len(keys) == 1


def test_a_bad_resident_id_is_invalid_and_named_without_repeating_it(registry):
    code = registry.filed_enterprise()
    person = registry.new_resident_id()
    wrong = person[:17] + ("0" if person[17] != "0" else "1")
    failure = registry.admin.fails(
        "RegisterPractitioner",
        pb.RegisterPractitionerRequest(
            request_id=request_id(), practitioner=practitioner(code, wrong)
        ),
    )
    assert failure.code == INVALID
    assert set(failure.violations) == {"practitioner.id_number"}
    assert "resident ID" in failure.violations["practitioner.id_number"]
    assert wrong not in failure.message
    assert wrong not in failure.violations["practitioner.id_number"]
    assert registry.count("practitioners") == 0


def test_a_practitioner_registered_twice_with_an_enterprise_already_exists(registry):
    code = registry.filed_enterprise()
    person = registry.new_resident_id()
    first = registry.admin.RegisterPractitioner(
        pb.RegisterPractitionerRequest(
            request_id=request_id(), practitioner=practitioner(code, person)
        )
    ).practitioner
    failure = registry.admin.fails(
        "RegisterPractitioner",
        pb.RegisterPractitionerRequest(
            request_id=request_id(), practitioner=practitioner(code, person, position="保安")
        ),
    )
    assert failure.code == grpc.StatusCode.ALREADY_EXISTS
    assert failure.reason == "PRACTITIONER_ALREADY_REGISTERED"
    assert failure.metadata["practitioner_id"] == first.practitioner_id
    assert registry.count("practitioners") == 1


def test_only_a_filed_enterprise_registers_practitioners(registry):
    pending = registry.file_enterprise().enterprise.credit_code
    failure = registry.admin.fails(
        "RegisterPractitioner",
        pb.RegisterPractitionerRequest(
            request_id=request_id(), practitioner=practitioner(pending, registry.new_resident_id())
        ),
    )
    assert (failure.code, failure.reason) == (FAILED_PRECONDITION, "ENTERPRISE_NOT_FILED")


def test_an_enterprise_registers_and_lists_only_its_own_practitioners(registry):
    mine, theirs = registry.filed_enterprise(), registry.filed_enterprise()
    me = registry.enterprise(mine)
    failure = me.fails(
        "RegisterPractitioner",
        pb.RegisterPractitionerRequest(
            request_id=request_id(), practitioner=practitioner(theirs, registry.new_resident_id())
        ),
    )
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_YOUR_ENTERPRISE",
    )
    failure = me.fails("ListPractitioners", pb.ListPractitionersRequest(credit_code=theirs))
    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    assert registry.count("practitioners") == 0


def test_list_practitioners_pages_through_an_enterprises_staff(registry):
    code = registry.filed_enterprise()
    ids = sorted(
        registry.admin.RegisterPractitioner(
            pb.RegisterPractitionerRequest(
                request_id=request_id(), practitioner=practitioner(code, registry.new_resident_id())
            )
        ).practitioner.practitioner_id
        for _ in range(5)
    )
    seen, token = [], ""
    while True:
        page = registry.enterprise(code).ListPractitioners(
            pb.ListPractitionersRequest(credit_code=code, page_size=2, page_token=token)
        )
        seen += [p.practitioner_id for p in page.practitioners]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids


# ---------------------------------------------------------------- owners' committees


def member(name: str, role: int, phone: str = "") -> pb.CommitteeMember:
    return pb.CommitteeMember(name=name, role=role, affiliation="1-1-101", phone=phone)


def committee(project_id: str, kind: int, size: int, start: dt.date, end: dt.date):
    members = [member("主任", pb.COMMITTEE_ROLE_DIRECTOR, "13612345678")]
    members += [member(f"委员{i}", pb.COMMITTEE_ROLE_MEMBER) for i in range(size - 1)]
    return pb.FormOwnersCommitteeRequest(
        request_id=request_id(),
        committee=pb.OwnersCommittee(
            project_id=project_id,
            kind=kind,
            members=members,
            term_start=date(start),
            term_end=date(end),
        ),
    )


TRANSITIONAL = pb.COMMITTEE_KIND_TRANSITIONAL
OWNERS = pb.COMMITTEE_KIND_OWNERS


def test_a_transitional_committee_acts_until_the_owners_committee_is_formed(registry):
    project = registry.register_project().project_id
    office = registry.client(Role.SUB_DISTRICT, "天骄街道", ["150602"])
    missing = office.fails("GetOwnersCommittee", pb.GetOwnersCommitteeRequest(project_id=project))
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "NO_ACTING_COMMITTEE")

    transitional = office.FormOwnersCommittee(
        committee(project, TRANSITIONAL, 4, dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    ).committee
    assert transitional.kind == TRANSITIONAL
    assert transitional.members[0].phone == "136****5678"
    acting = registry.admin.GetOwnersCommittee(pb.GetOwnersCommitteeRequest(project_id=project))
    assert acting.committee == transitional

    owners = office.FormOwnersCommittee(
        committee(project, OWNERS, 7, dt.date(2026, 6, 1), dt.date(2031, 5, 31))
    ).committee
    acting = registry.admin.GetOwnersCommittee(pb.GetOwnersCommitteeRequest(project_id=project))
    assert acting.committee == owners
    assert len(acting.committee.members) == 7
    formed = registry.outbox_events(ev.OwnersCommitteeFormed)
    assert [(e.committee_id, e.ended_committee_id) for e in formed] == [
        (transitional.committee_id, ""),
        (owners.committee_id, transitional.committee_id),
    ]

    failure = office.fails(
        "FormOwnersCommittee",
        committee(project, TRANSITIONAL, 3, dt.date(2026, 7, 1), dt.date(2027, 6, 30)),
    )
    assert (failure.code, failure.reason) == (FAILED_PRECONDITION, "OWNERS_COMMITTEE_EXISTS")


def test_an_owners_committee_whose_term_overlaps_the_acting_one_is_refused(registry):
    project = registry.register_project().project_id
    first = registry.admin.FormOwnersCommittee(
        committee(project, OWNERS, 5, dt.date(2026, 1, 1), dt.date(2030, 12, 31))
    ).committee
    failure = registry.admin.fails(
        "FormOwnersCommittee",
        committee(project, OWNERS, 5, dt.date(2030, 6, 1), dt.date(2035, 5, 31)),
    )
    assert (failure.code, failure.reason) == (FAILED_PRECONDITION, "COMMITTEE_TERM_OVERLAPS")
    assert failure.metadata["committee_id"] == first.committee_id
    assert registry.count("committees") == 1

    following = registry.admin.FormOwnersCommittee(
        committee(project, OWNERS, 5, dt.date(2030, 12, 31), dt.date(2035, 12, 30))
    ).committee
    acting = registry.admin.GetOwnersCommittee(pb.GetOwnersCommitteeRequest(project_id=project))
    assert acting.committee.committee_id == following.committee_id


def test_a_committee_of_a_bad_shape_names_the_problem(registry):
    project = registry.register_project().project_id
    even = registry.admin.fails(
        "FormOwnersCommittee",
        committee(project, OWNERS, 6, dt.date(2026, 1, 1), dt.date(2030, 12, 31)),
    )
    assert even.code == INVALID
    assert "odd" in even.violations["committee.members"]

    too_long = registry.admin.fails(
        "FormOwnersCommittee",
        committee(project, OWNERS, 5, dt.date(2026, 1, 1), dt.date(2031, 1, 2)),
    )
    assert "at most 5 year" in too_long.violations["committee.term_end"]

    request = committee(project, OWNERS, 5, dt.date(2026, 1, 1), dt.date(2030, 1, 1))
    request.committee.members[1].role = pb.COMMITTEE_ROLE_DIRECTOR
    request.committee.members[2].phone = "110"
    request.committee.members[3].role = pb.COMMITTEE_ROLE_UNSPECIFIED
    failure = registry.admin.fails("FormOwnersCommittee", request)
    assert set(failure.violations) == {"committee.members[2].phone", "committee.members[3].role"}

    request.committee.members[2].phone = ""
    request.committee.members[3].role = pb.COMMITTEE_ROLE_MEMBER
    two_directors = registry.admin.fails("FormOwnersCommittee", request)
    assert "director" in two_directors.violations["committee.members"]

    crowd = registry.admin.fails(
        "FormOwnersCommittee",
        committee(project, OWNERS, 99, dt.date(2026, 1, 1), dt.date(2030, 1, 1)),
    )
    assert "at most 11" in crowd.violations["committee.members"]
    assert registry.count("committees") == 0


def test_a_committee_of_an_unknown_project_is_not_found(registry):
    failure = registry.admin.fails(
        "FormOwnersCommittee",
        committee("150602-000000000000", OWNERS, 5, dt.date(2026, 1, 1), dt.date(2030, 1, 1)),
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "PROJECT_NOT_FOUND")
