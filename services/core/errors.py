"""Domain errors and their gRPC form.

Rules raise these; one interceptor turns them into a gRPC status carrying google.rpc.ErrorInfo
(reason + domain) and, for bad input, google.rpc.BadRequest naming each offending field.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, reason: str, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = {k: str(v) for k, v in metadata.items()}

    def details(self) -> list[any_pb2.Any]:
        return []


# The status travels in trailers, which a gRPC client drops above its metadata limit (8 KiB soft,
# 16 KiB hard), answering RESOURCE_EXHAUSTED instead: report the first violations only.
MAX_REPORTED_VIOLATIONS = 10


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: Iterable[FieldViolation], reason: str = "INVALID_ARGUMENT"):
        self.violations = list(violations)
        reported = self.violations[:MAX_REPORTED_VIOLATIONS]
        summary = "; ".join(f"{v.field}: {v.description}" for v in reported)
        if len(self.violations) > len(reported):
            summary += f"; and {len(self.violations) - len(reported)} more"
        super().__init__(reason, summary or "invalid request")

    def details(self) -> list[any_pb2.Any]:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in self.violations[:MAX_REPORTED_VIOLATIONS]
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        return [packed]


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(DomainError):
    """Nothing the caller did wrong: the same call may succeed a little later."""

    code = grpc.StatusCode.UNAVAILABLE


class Violations:
    """Collects every problem of a request, so the caller learns all of them at once."""

    def __init__(self) -> None:
        self._found: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self._found.append(FieldViolation(field, description))

    def check(self, ok: bool, field: str, description: str) -> bool:
        if not ok:
            self.add(field, description)
        return ok

    def __bool__(self) -> bool:
        return bool(self._found)

    def raise_if_any(self) -> None:
        if self._found:
            raise InvalidArgument(self._found)


_GRPC_TO_RPC_CODE = {c: getattr(code_pb2, c.name) for c in grpc.StatusCode}


def to_grpc_status(error: DomainError, domain: str) -> grpc.Status:
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(reason=error.reason, domain=domain, metadata=error.metadata)
    )
    status = status_pb2.Status(
        code=_GRPC_TO_RPC_CODE[error.code], message=error.message, details=[info, *error.details()]
    )
    return rpc_status.to_status(status)
