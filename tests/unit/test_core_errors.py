import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from wuye.core.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Violations,
    to_grpc_status,
)


def rich_status(status: grpc.Status) -> status_pb2.Status:
    """The google.rpc.Status a client finds in the trailing metadata."""
    details = dict(status.trailing_metadata)["grpc-status-details-bin"]
    return status_pb2.Status.FromString(details)


def unpack(status: status_pb2.Status, message_type):
    found = [d for d in status.details if d.Is(message_type.DESCRIPTOR)]
    assert len(found) == 1, status.details
    message = message_type()
    found[0].Unpack(message)
    return message


@pytest.mark.parametrize(
    ("error_type", "code"),
    [
        (DomainError, grpc.StatusCode.FAILED_PRECONDITION),
        (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
        (NotFound, grpc.StatusCode.NOT_FOUND),
        (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
        (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
        (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    ],
)
def test_a_domain_error_becomes_its_status_code_with_error_info(error_type, code) -> None:
    error = error_type("FILING_NOT_PENDING", "the filing is approved", filing_id="f-1", count=3)
    status = to_grpc_status(error, "wuye.registry")
    assert status.code is code
    assert status.details == "the filing is approved"
    rich = rich_status(status)
    assert rich.code == getattr(code_pb2, code.name)
    assert rich.message == "the filing is approved"
    info = unpack(rich, error_details_pb2.ErrorInfo)
    assert info.reason == "FILING_NOT_PENDING"
    assert info.domain == "wuye.registry"
    assert dict(info.metadata) == {"filing_id": "f-1", "count": "3"}
    assert len(rich.details) == 1


def test_invalid_argument_carries_every_field_violation_in_a_bad_request() -> None:
    error = InvalidArgument(
        [
            FieldViolation("enterprise.credit_code", "must be 18 characters, got 3"),
            FieldViolation("enterprise.district_code", "unknown district"),
        ]
    )
    status = to_grpc_status(error, "wuye.registry")
    assert status.code is grpc.StatusCode.INVALID_ARGUMENT
    rich = rich_status(status)
    assert unpack(rich, error_details_pb2.ErrorInfo).reason == "INVALID_ARGUMENT"
    bad_request = unpack(rich, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("enterprise.credit_code", "must be 18 characters, got 3"),
        ("enterprise.district_code", "unknown district"),
    ]
    assert rich.message == (
        "enterprise.credit_code: must be 18 characters, got 3; "
        "enterprise.district_code: unknown district"
    )


def test_invalid_argument_may_name_its_own_reason() -> None:
    error = InvalidArgument([FieldViolation("request", "garbled")], reason="MALFORMED_REQUEST")
    info = unpack(rich_status(to_grpc_status(error, "wuye.x")), error_details_pb2.ErrorInfo)
    assert info.reason == "MALFORMED_REQUEST"


def test_violations_collect_every_problem_before_refusing() -> None:
    violations = Violations()
    assert violations.check(True, "name", "must not be empty")
    assert not violations.check(False, "name", "must not be empty")
    violations.add("area", "must be positive")
    assert violations
    with pytest.raises(InvalidArgument) as caught:
        violations.raise_if_any()
    assert caught.value.violations == [
        FieldViolation("name", "must not be empty"),
        FieldViolation("area", "must be positive"),
    ]


def test_no_violations_raise_nothing() -> None:
    violations = Violations()
    assert not violations
    violations.raise_if_any()
