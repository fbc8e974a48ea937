import os

import pytest
from pydantic import ValidationError

from wuye.core.settings import ORDOS_DISTRICTS, Settings


@pytest.fixture(autouse=True)
def no_wuye_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests set the environment themselves; the developer's shell must not leak in."""
    for name in os.environ:
        if name.startswith("WUYE_"):
            monkeypatch.delenv(name)


def test_districts_are_read_from_a_comma_separated_variable(monkeypatch) -> None:
    monkeypatch.setenv("WUYE_DISTRICTS", "150602,150603")
    settings = Settings()
    assert settings.districts == ("150602", "150603")
    assert settings.served_districts == frozenset({"150602", "150603"})


def test_spaces_and_empty_items_in_the_districts_variable_are_ignored(monkeypatch) -> None:
    monkeypatch.setenv("WUYE_DISTRICTS", " 150602 , ,150627, ")
    assert Settings().districts == ("150602", "150627")


def test_no_districts_means_every_district_of_the_city() -> None:
    settings = Settings()
    assert settings.districts == ()
    assert settings.served_districts == frozenset(ORDOS_DISTRICTS)


def test_an_unknown_district_in_the_environment_is_rejected_naming_it(monkeypatch) -> None:
    monkeypatch.setenv("WUYE_DISTRICTS", "150602,110101")
    with pytest.raises(ValidationError, match="110101"):
        Settings()


def test_an_unknown_district_given_as_an_argument_is_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown district codes"):
        Settings(districts=("150699",))


def test_another_city_brings_its_own_districts(monkeypatch) -> None:
    monkeypatch.setenv("WUYE_CITY_DISTRICTS", '{"110101": "东城区", "110102": "西城区"}')
    monkeypatch.setenv("WUYE_DISTRICTS", "110102")
    settings = Settings()
    assert settings.served_districts == frozenset({"110102"})
    monkeypatch.setenv("WUYE_DISTRICTS", "150602")
    with pytest.raises(ValidationError, match="150602"):
        Settings()


def test_settings_are_read_from_wuye_prefixed_variables(monkeypatch) -> None:
    monkeypatch.setenv("WUYE_SERVICE", "registry")
    monkeypatch.setenv("WUYE_GRPC_PORT", "50099")
    monkeypatch.setenv("WUYE_TOKEN_SECRET", "s3cret")
    settings = Settings()
    assert (settings.service, settings.grpc_port) == ("registry", 50099)
    assert settings.token_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [("WUYE_GRPC_PORT", "70000"), ("WUYE_RELAY_POLL_SECONDS", "0"), ("WUYE_GRPC_WORKERS", "0")],
)
def test_out_of_range_values_are_rejected(monkeypatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.service = "other"  # type: ignore[misc]


def test_the_schema_is_the_service_name_unless_given() -> None:
    assert Settings(service="registry").schema == "registry"
    assert Settings(service="registry", database_schema="t_1").schema == "t_1"


def test_without_a_database_url_each_service_gets_a_sqlite_file_in_the_state_dir() -> None:
    settings = Settings(service="registry", state_dir="/var/lib/wuye")
    assert settings.resolved_database_url() == "sqlite:////var/lib/wuye/registry.db"
    assert Settings(database_url="postgresql://db/x").resolved_database_url() == (
        "postgresql://db/x"
    )
