"""Where a call to another service goes, and the token it carries."""

import json

import jwt
import pytest

from wuye.core.client import ServiceToken, channel_options, endpoint
from wuye.core.settings import Settings

SECRET = "unit-test-secret-of-at-least-32-bytes"


def settings(**values) -> Settings:
    return Settings(service="tenders", token_secret=SECRET, **values)


def test_a_listed_service_is_called_at_its_address() -> None:
    s = settings(service_endpoints={"credit": "credit:50051"})
    assert endpoint(s, "credit") == "credit:50051"
    assert endpoint(s, "credit", "150602") == "credit:50051"


def test_a_service_deployed_per_district_is_called_at_the_districts_instance() -> None:
    s = settings(service_endpoints={"registry": "registry-{district}:50051"})
    assert endpoint(s, "registry", "150627") == "registry-150627:50051"
    with pytest.raises(ValueError, match="per district: name the district"):
        endpoint(s, "registry")
    with pytest.raises(ValueError, match="not a district"):
        endpoint(s, "registry", "999999")


def test_an_unlisted_service_is_found_by_the_template() -> None:
    s = settings(
        service_endpoints={"credit": "10.0.0.7:50051"},
        service_endpoint_template="wuye-{service}-{district}:50051",
    )
    assert endpoint(s, "registry", "150602") == "wuye-registry-150602:50051"
    assert endpoint(s, "credit", "150602") == "10.0.0.7:50051"


def test_a_service_with_no_address_is_refused_naming_the_settings() -> None:
    with pytest.raises(
        ValueError, match=r"WUYE_SERVICE_ENDPOINTS .*WUYE_SERVICE_ENDPOINT_TEMPLATE"
    ):
        endpoint(settings(), "credit")


@pytest.mark.parametrize(
    "raw",
    [
        "credit=credit:50051, registry=registry-{district}:50051",
        '{"credit": "credit:50051", "registry": "registry-{district}:50051"}',
    ],
)
def test_endpoints_are_read_as_pairs_or_json(monkeypatch, raw) -> None:
    monkeypatch.setenv("WUYE_SERVICE_ENDPOINTS", raw)
    assert Settings().service_endpoints == {
        "credit": "credit:50051",
        "registry": "registry-{district}:50051",
    }


def test_an_endpoint_without_an_address_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("WUYE_SERVICE_ENDPOINTS", "credit=credit:50051,registry")
    with pytest.raises(ValueError, match="service=host:port"):
        Settings()


def test_only_unavailable_is_retried_for_every_method() -> None:
    options = dict(channel_options(settings(client_max_attempts=4)))
    (method,) = json.loads(options["grpc.service_config"])["methodConfig"]
    assert method["name"] == [{}]
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert method["retryPolicy"]["maxAttempts"] == 4
    assert options["grpc.enable_retries"] == 1
    assert options["grpc.keepalive_time_ms"] == 30_000


def test_the_service_token_is_short_lived_and_signed_again_after_half_its_life() -> None:
    now = [1_000.0]
    token = ServiceToken(settings(client_token_ttl_seconds=300, districts="150602"), lambda: now[0])
    first = token()
    claims = jwt.decode(first, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert (claims["sub"], claims["role"], claims["districts"]) == (
        "tenders",
        "service",
        ["150602"],
    )
    now[0] += 149
    assert token() == first
    now[0] += 2
    renewed = jwt.decode(token(), SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert renewed["iat"] == 1_151
    assert renewed["exp"] == 1_151 + 300
