"""An owner's token and the registry name an owner by the same key."""

import pytest

from wuye.__main__ import main
from wuye.core.auth import Role, TokenVerifier
from wuye.registry.v1 import registry_service_pb2 as pb

pytestmark = pytest.mark.integration


def test_an_owner_token_carries_the_owner_key_the_registry_keeps(registry, monkeypatch, capsys):
    buyer = registry.new_resident_id()
    project = registry.register_project()
    owner = pb.Owner(kind=pb.OWNER_KIND_PERSON, name="张三", id_number=buyer)
    kept = (
        registry.admin.RegisterUnits(
            pb.RegisterUnitsRequest(
                request_id=registry.request_id(),
                project_id=project.project_id,
                units=[pb.Unit(number="1-1-101", exclusive_area_m2="89.37", owner=owner)],
            )
        )
        .units[0]
        .owner.owner_key
    )
    settings = registry.settings
    monkeypatch.setenv("WUYE_TOKEN_SECRET", settings.token_secret.get_secret_value())
    monkeypatch.setenv("WUYE_PII_KEY", settings.pii_key.get_secret_value())

    argv = ["token", "--role", "owner", "--district", "150602", "--id-number", buyer]
    assert main(argv) == 0
    printed = capsys.readouterr()
    principal = TokenVerifier(settings.token_secret.get_secret_value(), "wuye").verify(
        printed.out.strip()
    )

    assert principal.role is Role.OWNER
    assert principal.subject == kept
    assert principal.districts == frozenset({"150602"})
    assert buyer not in printed.out + printed.err
