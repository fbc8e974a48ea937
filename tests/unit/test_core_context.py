import pytest

from wuye.core import context
from wuye.core.auth import Principal, Role
from wuye.core.context import DistrictScope, RequestContext
from wuye.core.errors import FailedPrecondition, PermissionDenied
from wuye.core.settings import ORDOS_DISTRICTS

DONGSHENG, KANGBASHI, EJIN_HORO = "150602", "150603", "150627"


def scope(template: str = "") -> DistrictScope:
    return DistrictScope("registry", frozenset({DONGSHENG, KANGBASHI}), ORDOS_DISTRICTS, template)


def call(districts: frozenset[str] | None) -> RequestContext:
    principal = Principal("someone", Role.DISTRICT_AUTHORITY, districts)
    return RequestContext(principal, scope(), "req-1", "")


def test_a_request_for_an_unserved_district_names_the_instance_to_call() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        scope("registry-{district}:50051").check_served(EJIN_HORO)
    error = caught.value
    assert error.reason == "DISTRICT_NOT_SERVED"
    assert "registry-150627:50051" in error.message
    assert "伊金霍洛旗" in error.message
    assert error.metadata == {"district": EJIN_HORO, "served": "150602,150603"}


def test_without_an_endpoint_template_the_refusal_still_says_where_to_go() -> None:
    with pytest.raises(FailedPrecondition, match="the instance started for it"):
        scope().check_served(EJIN_HORO)


def test_a_caller_outside_its_districts_is_denied() -> None:
    with pytest.raises(PermissionDenied) as caught:
        call(frozenset({DONGSHENG})).require_district(KANGBASHI)
    assert caught.value.reason == "DISTRICT_OUT_OF_SCOPE"


def test_a_served_district_the_caller_acts_for_is_allowed() -> None:
    call(frozenset({DONGSHENG})).require_district(DONGSHENG)
    call(None).require_district(KANGBASHI)


def test_an_unserved_district_is_refused_before_the_callers_scope_is_checked() -> None:
    with pytest.raises(FailedPrecondition):
        call(frozenset({DONGSHENG})).require_district(EJIN_HORO)


def test_lists_show_served_districts_the_caller_acts_for() -> None:
    assert call(frozenset({KANGBASHI, EJIN_HORO})).visible_districts() == {KANGBASHI}
    assert call(None).visible_districts() == {DONGSHENG, KANGBASHI}


def test_the_current_request_is_known_only_inside_a_call() -> None:
    assert context.current_or_none() is None
    with pytest.raises(RuntimeError):
        context.current()
    request = call(None)
    token = context.enter(request)
    try:
        assert context.current() is request
    finally:
        context.leave(token)
    assert context.current_or_none() is None
