"""Owners' sign-in as development stands it in for the city's real-name service: a one-time code
in the registry's log (the ID number masked there) buys an owner token whose subject is the
owner key `python -m wuye token --role owner --id-number` derives. Off unless the setting is on."""

from __future__ import annotations

import logging
import re

import grpc
import pytest
from sample_data import request_id

from wuye.core.auth import Role, TokenVerifier
from wuye.core.pii import OwnerKeys
from wuye.registry.v1 import registry_service_pb2 as pb

pytestmark = pytest.mark.integration

CODE_LINE = re.compile(r"owner sign-in code id_number=(\S+) code=([0-9]+) ")


def owned_units(registry, person: str) -> tuple[str, str]:
    """Two units of `person` in projects of two districts; their project ids."""
    projects = []
    for district, number in (("150602", "1-1-101"), ("150627", "2-3-502")):
        project = registry.register_project(district=district).project_id
        registry.admin.RegisterUnits(
            pb.RegisterUnitsRequest(
                request_id=request_id(),
                project_id=project,
                units=[
                    pb.Unit(
                        number=number,
                        exclusive_area_m2="89.37",
                        owner=pb.Owner(kind=pb.OWNER_KIND_PERSON, name="张三", id_number=person),
                    )
                ],
            )
        )
        projects.append(project)
    return projects[0], projects[1]


def logged_code(caplog, masked: str) -> str:
    [code] = [
        m[2] for r in caplog.records if (m := CODE_LINE.match(r.getMessage())) and m[1] == masked
    ]
    return code


def test_an_owner_signs_in_with_the_logged_code_and_gets_a_token_for_their_districts(
    start_registry, caplog
):
    caplog.set_level(logging.INFO, logger="wuye.registry")
    registry = start_registry(owner_sign_in_by_logged_code=True)
    person = registry.new_resident_id()
    first, second = owned_units(registry, person)

    started = registry.anonymous.StartOwnerSignIn(
        pb.StartOwnerSignInRequest(id_number=person.lower())
    )
    assert started.id_number_masked == person[:4] + "*" * 10 + person[-4:]
    assert person not in caplog.text
    code = logged_code(caplog, started.id_number_masked)

    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    refused = registry.anonymous.fails(
        "CompleteOwnerSignIn", pb.CompleteOwnerSignInRequest(id_number=person, code=wrong)
    )
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "SIGN_IN_CODE_WRONG",
    )
    assert "4 attempts left" in refused.message

    signed_in = registry.anonymous.CompleteOwnerSignIn(
        pb.CompleteOwnerSignInRequest(id_number=person, code=code)
    )
    principal = TokenVerifier(
        registry.settings.token_secret.get_secret_value(), registry.settings.token_issuer
    ).verify(signed_in.token)
    owner_key = OwnerKeys(registry.settings.pii_key.get_secret_value().encode()).of_person(person)
    assert (principal.subject, principal.role) == (owner_key, Role.OWNER)
    assert principal.districts == {"150602", "150627"}
    assert [(u.project_id, u.district_code) for u in signed_in.units] == sorted(
        [(first, "150602"), (second, "150627")]
    )
    assert all(u.unit.owner.id_number_masked.count("*") == 10 for u in signed_in.units)
    assert person not in str(signed_in)

    spent = registry.anonymous.fails(
        "CompleteOwnerSignIn", pb.CompleteOwnerSignInRequest(id_number=person, code=code)
    )
    assert (spent.code, spent.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SIGN_IN_NOT_STARTED",
    )


def test_mistyped_codes_void_the_code_and_a_stranger_to_the_register_gets_no_token(
    start_registry, caplog
):
    caplog.set_level(logging.INFO, logger="wuye.registry")
    registry = start_registry(owner_sign_in_by_logged_code=True, owner_sign_in_attempts=2)
    person = registry.new_resident_id()
    owned_units(registry, person)
    masked = registry.anonymous.StartOwnerSignIn(
        pb.StartOwnerSignInRequest(id_number=person)
    ).id_number_masked
    code = logged_code(caplog, masked)
    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    reasons = [
        registry.anonymous.fails(
            "CompleteOwnerSignIn", pb.CompleteOwnerSignInRequest(id_number=person, code=c)
        ).reason
        for c in (wrong, wrong, code)
    ]
    assert reasons == ["SIGN_IN_CODE_WRONG", "SIGN_IN_ATTEMPTS_EXHAUSTED", "SIGN_IN_NOT_STARTED"]

    stranger = registry.new_resident_id()
    masked = registry.anonymous.StartOwnerSignIn(
        pb.StartOwnerSignInRequest(id_number=stranger)
    ).id_number_masked
    unknown = registry.anonymous.fails(
        "CompleteOwnerSignIn",
        pb.CompleteOwnerSignInRequest(id_number=stranger, code=logged_code(caplog, masked)),
    )
    assert (unknown.code, unknown.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "OWNER_HAS_NO_UNITS",
    )


def test_sign_in_by_logged_code_is_off_unless_set_and_a_bad_number_is_named(registry):
    person = registry.new_resident_id()
    off = registry.anonymous.fails("StartOwnerSignIn", pb.StartOwnerSignInRequest(id_number=person))
    assert (off.code, off.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "OWNER_SIGN_IN_DISABLED",
    )
    bad = registry.anonymous.fails(
        "CompleteOwnerSignIn",
        pb.CompleteOwnerSignInRequest(id_number=person[:17] + "?", code="12a"),
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad.violations) == {"id_number", "code"}
    assert person[:17] not in bad.message
