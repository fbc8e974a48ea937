"""`python -m wuye token`: every role's token, the district rule, and owners' keys."""

import io

import jwt
import pytest

from wuye.__main__ import main
from wuye.core.auth import ROLE_RULES, Reach, Role, TokenVerifier
from wuye.core.ids import resident_id_check_char
from wuye.core.pii import OwnerKeys

SECRET = "unit-test-secret-of-at-least-32-bytes"
PII_KEY = "unit-test-pii-key"
ID_NUMBER = "15060219850615123" + resident_id_check_char("15060219850615123")


@pytest.fixture(autouse=True)
def keys(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("WUYE_TOKEN_SECRET", SECRET)
    monkeypatch.setenv("WUYE_PII_KEY", PII_KEY)
    monkeypatch.setenv("WUYE_STATE_DIR", str(tmp_path))


def token_of(capsys, *argv: str) -> dict:
    assert main(["token", *argv]) == 0
    token = capsys.readouterr().out.strip()
    TokenVerifier(SECRET, "wuye").verify(token)
    return jwt.decode(token, options={"verify_signature": False})


def refusal_of(capsys, *argv: str) -> str:
    assert main(["token", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


@pytest.mark.parametrize("role", [r for r, rule in ROLE_RULES.items() if rule.reach is Reach.CITY])
def test_a_city_role_without_districts_gets_a_city_wide_token(capsys, role: Role) -> None:
    claims = token_of(capsys, "--role", role.value)
    assert claims["districts"] == ["*"]
    assert claims["sub"] == f"dev-{role.value}"


@pytest.mark.parametrize(
    "role", [r for r, rule in ROLE_RULES.items() if rule.reach is Reach.DISTRICTS]
)
def test_a_district_role_without_districts_is_asked_for_them(capsys, role: Role) -> None:
    message = refusal_of(capsys, "--role", role.value)
    assert "--district" in message
    assert role.value in message


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.OWNER])
def test_every_role_gets_a_token_for_named_districts(capsys, role: Role) -> None:
    claims = token_of(capsys, "--role", role.value, "--district", "150602", "--district", "150603")
    assert claims["role"] == role.value
    assert claims["districts"] == ["150602", "150603"]


def test_an_owner_token_names_the_owner_key_and_never_the_number(capsys) -> None:
    assert main(["token", "--role", "owner", "--district", "150602", "--id-number", ID_NUMBER]) == 0
    captured = capsys.readouterr()
    claims = jwt.decode(captured.out.strip(), options={"verify_signature": False})
    assert claims["sub"] == OwnerKeys(PII_KEY.encode()).of_person(ID_NUMBER)
    assert ID_NUMBER not in captured.out + captured.err
    assert ID_NUMBER not in str(claims)


def test_an_owner_id_number_may_come_from_standard_input(capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(ID_NUMBER + "\n"))
    claims = token_of(capsys, "--role", "owner", "--district", "150602", "--id-number", "-")
    assert claims["sub"] == OwnerKeys(PII_KEY.encode()).of_person(ID_NUMBER)


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        (ID_NUMBER[:-1] + ("0" if ID_NUMBER[-1] != "0" else "1"), "check character"),
        ("1506021985061", "18 characters"),
        ("", "needs the owner's --id-number"),
    ],
)
def test_a_bad_owner_id_number_is_refused_without_repeating_it(capsys, number, problem) -> None:
    message = refusal_of(capsys, "--role", "owner", "--district", "150602", "--id-number", number)
    assert problem in message
    assert not number or number not in message


def test_an_owner_token_without_an_id_number_or_with_a_chosen_subject_is_refused(capsys) -> None:
    assert "--id-number" in refusal_of(capsys, "--role", "owner", "--district", "150602")
    message = refusal_of(
        capsys, "--role", "owner", "--district", "150602", "--subject", "someone-else"
    )
    assert "owner key" in message


def test_an_owner_token_needs_the_pii_key(capsys, monkeypatch) -> None:
    monkeypatch.delenv("WUYE_PII_KEY")
    message = refusal_of(
        capsys, "--role", "owner", "--district", "150602", "--id-number", ID_NUMBER
    )
    assert "WUYE_PII_KEY" in message
    assert ID_NUMBER not in message


def test_an_id_number_is_refused_for_other_roles(capsys) -> None:
    message = refusal_of(
        capsys, "--role", "inspector", "--district", "150602", "--id-number", ID_NUMBER
    )
    assert "owner tokens only" in message
