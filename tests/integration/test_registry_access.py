"""Who may call the registry: tokens, roles, districts of the caller, districts of the instance."""

from __future__ import annotations

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sample_data import request_id

from wuye.core.auth import Role, issue_token
from wuye.registry.api import SERVICE_NAME
from wuye.registry.v1 import registry_service_pb2 as pb

pytestmark = pytest.mark.integration

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def file_request(code: str, district: str = "150602") -> pb.FileEnterpriseRequest:
    return pb.FileEnterpriseRequest(
        request_id=request_id(),
        enterprise=pb.Enterprise(
            credit_code=code, name="准格尔物业", district_code=district, contact_phone="13812345678"
        ),
    )


# ---------------------------------------------------------------- tokens


def test_a_call_without_a_token_is_unauthenticated(registry):
    failure = registry.anonymous.fails(
        "ListEnterprises", pb.ListEnterprisesRequest(district_code="150602")
    )
    assert (failure.code, failure.reason, failure.domain) == (
        UNAUTHENTICATED,
        "TOKEN_MISSING",
        "wuye.registry",
    )


def test_an_expired_token_is_unauthenticated(registry):
    expired = registry.token(Role.ADMIN, "admin", ttl_seconds=-60)
    failure = registry.with_token(expired).fails("ListEnterprises", pb.ListEnterprisesRequest())
    assert (failure.code, failure.reason) == (UNAUTHENTICATED, "TOKEN_EXPIRED")


FORGERIES = {
    "other-secret": lambda secret: issue_token("another-secret", subject="a", role=Role.ADMIN),
    "other-issuer": lambda secret: issue_token(
        secret, subject="admin", role=Role.ADMIN, issuer="someone-else"
    ),
    "unknown-role": lambda secret: jwt.encode(
        {"sub": "admin", "role": "root", "iss": "wuye", "exp": 4102444800}, secret
    ),
    "no-expiry": lambda secret: jwt.encode(
        {"sub": "admin", "role": "admin", "iss": "wuye"}, secret
    ),
    "garbage": lambda secret: "not.a.jwt",
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_forged_or_malformed_token_is_unauthenticated(registry, forgery):
    token = FORGERIES[forgery](registry.settings.token_secret.get_secret_value())
    failure = registry.with_token(token).fails("ListEnterprises", pb.ListEnterprisesRequest())
    assert (failure.code, failure.reason) == (UNAUTHENTICATED, "TOKEN_INVALID")
    assert registry.count("enterprises") == 0


def test_an_authorization_header_that_is_not_bearer_is_unauthenticated(registry):
    try:
        registry.stub.ListEnterprises(
            pb.ListEnterprisesRequest(),
            metadata=(("authorization", f"Basic {registry.admin.token}"),),
            timeout=10,
        )
    except grpc.RpcError as e:
        assert e.code() == UNAUTHENTICATED
    else:
        raise AssertionError("a Basic authorization was accepted")


# ---------------------------------------------------------------- roles


@pytest.mark.parametrize(
    ("role", "method", "request_message"),
    [
        (Role.INSPECTOR, "FileEnterprise", pb.FileEnterpriseRequest()),
        (Role.SUB_DISTRICT, "ReviewFiling", pb.ReviewFilingRequest()),
        (Role.ENTERPRISE, "RegisterProject", pb.RegisterProjectRequest()),
        (Role.SERVICE, "AssignEnterprise", pb.AssignEnterpriseRequest()),
        (Role.INSPECTOR, "ListUnits", pb.ListUnitsRequest()),
    ],
)
def test_a_role_the_method_does_not_admit_is_refused_before_the_request_is_read(
    registry, role, method, request_message
):
    failure = registry.client(role).fails(method, request_message)
    assert (failure.code, failure.reason) == (PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
    assert failure.metadata == {"role": role.value}


# ---------------------------------------------------------------- the caller's districts


def test_a_district_authority_does_not_review_another_districts_filing(registry):
    filed = registry.file_enterprise("150602")
    failure = registry.authority("150603").fails(
        "ReviewFiling",
        pb.ReviewFilingRequest(
            filing_id=filed.filing.filing_id, decision=pb.REVIEW_DECISION_APPROVE
        ),
    )
    assert (failure.code, failure.reason) == (PERMISSION_DENIED, "DISTRICT_OUT_OF_SCOPE")
    assert failure.metadata["district"] == "150602"
    filing = registry.admin.GetFiling(pb.GetFilingRequest(filing_id=filed.filing.filing_id))
    assert filing.filing.state == pb.FILING_STATE_SUBMITTED


def test_a_district_authority_acts_and_sees_only_in_its_districts(registry):
    here = registry.filed_enterprise("150602")
    there = registry.filed_enterprise("150603")
    authority = registry.authority("150603")

    failure = authority.fails("FileEnterprise", file_request(registry.new_credit_code()))
    assert (failure.code, failure.reason) == (PERMISSION_DENIED, "DISTRICT_OUT_OF_SCOPE")
    failure = authority.fails("GetEnterprise", pb.GetEnterpriseRequest(credit_code=here))
    assert (failure.code, failure.reason) == (PERMISSION_DENIED, "DISTRICT_OUT_OF_SCOPE")
    failure = authority.fails("ListEnterprises", pb.ListEnterprisesRequest(district_code="150602"))
    assert failure.code == PERMISSION_DENIED

    listed = authority.ListEnterprises(pb.ListEnterprisesRequest()).enterprises
    assert [e.credit_code for e in listed] == [there]
    assert registry.count("enterprises") == 2


def test_an_enterprise_does_not_act_for_another(registry):
    mine, theirs = registry.filed_enterprise(), registry.filed_enterprise()
    me = registry.enterprise(mine)

    failure = me.fails("FileEnterprise", file_request(registry.new_credit_code()))
    assert (failure.code, failure.reason) == (PERMISSION_DENIED, "NOT_YOUR_ENTERPRISE")
    failure = me.fails(
        "FileEnterpriseExit",
        pb.FileEnterpriseExitRequest(request_id=request_id(), credit_code=theirs, reason="x"),
    )
    assert (failure.code, failure.reason) == (PERMISSION_DENIED, "NOT_YOUR_ENTERPRISE")
    their_filing = registry.admin.ListFilings(pb.ListFilingsRequest(credit_code=theirs)).filings[0]
    failure = me.fails("GetFiling", pb.GetFilingRequest(filing_id=their_filing.filing_id))
    assert (failure.code, failure.reason) == (PERMISSION_DENIED, "NOT_YOUR_ENTERPRISE")
    failure = me.fails("ListFilings", pb.ListFilingsRequest())
    assert (failure.code, failure.reason) == (PERMISSION_DENIED, "NOT_YOUR_ENTERPRISE")
    assert registry.count("filings") == 2


def test_an_enterprise_files_for_itself(registry):
    code = registry.new_credit_code()
    filed = registry.enterprise(code).FileEnterprise(file_request(code))
    assert filed.enterprise.credit_code == code


# ---------------------------------------------------------------- the instance's districts


def test_an_instance_refuses_a_district_it_does_not_serve_and_names_it(start_registry):
    everywhere = start_registry()
    project = everywhere.register_project("150603").project_id
    elsewhere = everywhere.filed_enterprise("150603")
    dongsheng = start_registry(districts=("150602",))

    failure = dongsheng.admin.fails(
        "FileEnterprise", file_request(dongsheng.new_credit_code(), "150603")
    )
    assert (failure.code, failure.reason, failure.domain) == (
        FAILED_PRECONDITION,
        "DISTRICT_NOT_SERVED",
        "wuye.registry",
    )
    assert "150603" in failure.message
    assert failure.metadata == {"district": "150603", "served": "150602"}
    assert dongsheng.count("enterprises", district_code="150603") == 1  # only `elsewhere`

    for method, request in [
        ("GetProject", pb.GetProjectRequest(project_id=project)),
        ("GetEnterprise", pb.GetEnterpriseRequest(credit_code=elsewhere)),
        ("ListEnterprises", pb.ListEnterprisesRequest(district_code="150603")),
        ("GetDisclosure", pb.GetDisclosureRequest(project_id=project)),
    ]:
        client = dongsheng.anonymous if method == "GetDisclosure" else dongsheng.admin
        failure = client.fails(method, request)
        assert (failure.code, failure.reason) == (FAILED_PRECONDITION, "DISTRICT_NOT_SERVED"), (
            method
        )
        assert "150603" in failure.message

    here = dongsheng.filed_enterprise("150602")
    listed = dongsheng.admin.ListEnterprises(pb.ListEnterprisesRequest()).enterprises
    assert [e.credit_code for e in listed] == [here]


def test_the_refusal_names_the_instance_serving_the_district(start_registry):
    dongsheng = start_registry(
        districts=("150602",), district_endpoint_template="registry-{district}:50051"
    )
    failure = dongsheng.admin.fails(
        "GetProject", pb.GetProjectRequest(project_id="150603-000000000000")
    )
    assert failure.reason == "DISTRICT_NOT_SERVED"
    assert "registry-150603:50051" in failure.message


# ---------------------------------------------------------------- health and reflection


def test_the_server_answers_health_checks_and_reflection_without_a_token(registry):
    health = health_pb2_grpc.HealthStub(registry.channel)
    for service in ("", SERVICE_NAME):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(registry.channel)
    [answer] = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for s in answer.list_services_response.service}
    assert SERVICE_NAME in names
