"""What the current RPC runs as: the caller, its ids, and the districts in reach.

Set by the gRPC interceptor for the duration of one call; commands read it to check access to
records whose district is known only after loading them.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from wuye.core.auth import Principal
from wuye.core.errors import FailedPrecondition, PermissionDenied


@dataclass(frozen=True)
class DistrictScope:
    """The districts an instance serves, and how to reach the instances serving the others."""

    service: str
    served: frozenset[str]
    city: dict[str, str]
    endpoint_template: str = ""

    def check_served(self, district: str) -> None:
        if district in self.served:
            return
        where = (
            f"; call {self.endpoint_template.format(district=district)}"
            if self.endpoint_template
            else "; call the instance started for it"
        )
        raise FailedPrecondition(
            "DISTRICT_NOT_SERVED",
            f"this {self.service} instance serves districts {','.join(sorted(self.served))}, "
            f"not {district} ({self.city.get(district, 'unknown')}){where}",
            district=district,
            served=",".join(sorted(self.served)),
        )


@dataclass(frozen=True)
class RequestContext:
    principal: Principal
    scope: DistrictScope
    request_id: str
    trace_id: str

    def require_district(self, district: str) -> None:
        """Refuse unless this instance serves `district` and the caller acts for it."""
        self.scope.check_served(district)
        if not self.principal.covers(district):
            raise PermissionDenied(
                "DISTRICT_OUT_OF_SCOPE",
                f"the caller acts for districts {sorted(self.principal.districts or [])}, "
                f"not {district}",
                district=district,
            )

    def visible_districts(self) -> frozenset[str]:
        """Districts a list may show: served here and covered by the caller."""
        if self.principal.districts is None:
            return self.scope.served
        return self.scope.served & self.principal.districts


_current: ContextVar[RequestContext | None] = ContextVar("wuye_request", default=None)


def current() -> RequestContext:
    request = _current.get()
    if request is None:
        raise RuntimeError("no RPC in progress")
    return request


def current_or_none() -> RequestContext | None:
    return _current.get()


def enter(request: RequestContext):
    return _current.set(request)


def leave(token) -> None:
    _current.reset(token)
