import time

import jwt
import pytest

from wuye.core.auth import (
    ANONYMOUS,
    ROLE_RULES,
    Principal,
    Reach,
    Role,
    TokenVerifier,
    allow,
    issue_token,
    public,
)
from wuye.core.errors import Unauthenticated

SECRET = "unit-test-secret-of-at-least-32-bytes"


def verifier(secret: str = SECRET, issuer: str = "wuye") -> TokenVerifier:
    return TokenVerifier(secret, issuer)


def raw_token(claims: dict, secret: str = SECRET) -> str:
    now = int(time.time())
    return jwt.encode({"iss": "wuye", "iat": now, "exp": now + 60, **claims}, secret, "HS256")


def refusal(token: str, check: TokenVerifier | None = None) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        (check or verifier()).verify(token)
    return caught.value


def test_an_issued_token_verifies_to_its_subject_role_and_districts() -> None:
    token = issue_token(
        SECRET, subject="alice", role=Role.DISTRICT_AUTHORITY, districts=["150602", "150603"]
    )
    assert verifier().verify(token) == Principal(
        subject="alice", role=Role.DISTRICT_AUTHORITY, districts=frozenset({"150602", "150603"})
    )


CITY_WIDE_ROLES = [role for role, rule in ROLE_RULES.items() if rule.reach is Reach.CITY]
DISTRICT_ROLES = [role for role, rule in ROLE_RULES.items() if rule.reach is Reach.DISTRICTS]


def test_every_role_has_a_district_rule() -> None:
    assert set(ROLE_RULES) == set(Role)
    assert set(CITY_WIDE_ROLES) == {Role.ADMIN, Role.CITY_AUTHORITY, Role.SERVICE, Role.EXPERT}


@pytest.mark.parametrize("role", CITY_WIDE_ROLES)
def test_a_city_role_issued_without_districts_acts_for_the_whole_city_explicitly(role: Role):
    token = issue_token(SECRET, subject="city", role=role)
    assert jwt.decode(token, options={"verify_signature": False})["districts"] == ["*"]
    principal = verifier().verify(token)
    assert principal.districts is None
    assert principal.covers("150602")
    assert principal.covers("150627")


@pytest.mark.parametrize("role", DISTRICT_ROLES)
def test_a_district_role_is_not_issued_without_districts(role: Role) -> None:
    for city_wide in (None, ["*"]):
        with pytest.raises(ValueError, match=f"role {role.value} may not"):
            issue_token(SECRET, subject="x", role=role, districts=city_wide)
    with pytest.raises(ValueError, match=f"role {role.value} must name"):
        issue_token(SECRET, subject="x", role=role, districts=[])


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("districts", [None, []])
def test_a_token_that_names_no_districts_is_refused_for_every_role(role: Role, districts) -> None:
    claims = {"sub": "bob", "role": role.value}
    if districts is not None:
        claims["districts"] = districts
    error = refusal(raw_token(claims))
    assert error.reason == "TOKEN_DISTRICTS_INVALID"
    assert f"role {role.value} must name" in error.message


@pytest.mark.parametrize("role", DISTRICT_ROLES)
def test_a_district_role_claiming_the_whole_city_is_refused(role: Role) -> None:
    error = refusal(raw_token({"sub": "bob", "role": role.value, "districts": ["*"]}))
    assert error.reason == "TOKEN_DISTRICTS_INVALID"
    assert "acts for the whole city" in error.message
    assert role.value in error.message


def test_the_whole_city_mixed_with_named_districts_is_refused() -> None:
    error = refusal(raw_token({"sub": "c", "role": "city_authority", "districts": ["*", "150602"]}))
    assert error.reason == "TOKEN_DISTRICTS_INVALID"


@pytest.mark.parametrize("role", list(Role))
def test_every_role_may_act_for_named_districts(role: Role) -> None:
    token = issue_token(SECRET, subject="x", role=role, districts=["150602"])
    assert verifier().verify(token).districts == frozenset({"150602"})


def test_a_verified_token_is_remembered() -> None:
    check = verifier()
    token = issue_token(SECRET, subject="svc", role=Role.SERVICE)
    assert check.verify(token) is check.verify(token)


def test_an_expired_token_is_refused_as_expired() -> None:
    token = issue_token(
        SECRET, subject="alice", role=Role.INSPECTOR, districts=["150602"], ttl_seconds=-10
    )
    error = refusal(token)
    assert error.reason == "TOKEN_EXPIRED"


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    check = verifier()
    token = issue_token(
        SECRET, subject="alice", role=Role.INSPECTOR, districts=["150602"], ttl_seconds=1
    )
    check.verify(token)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    assert refusal(token, check).reason == "TOKEN_EXPIRED"


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = issue_token("someone-elses-secret-of-32-bytes-too", subject="mallory", role=Role.ADMIN)
    assert refusal(token).reason == "TOKEN_INVALID"


def test_a_token_of_another_issuer_is_refused() -> None:
    token = issue_token(SECRET, subject="alice", role=Role.ADMIN, issuer="elsewhere")
    assert refusal(token).reason == "TOKEN_INVALID"


def test_a_token_with_an_unknown_role_is_refused_naming_the_role() -> None:
    error = refusal(raw_token({"sub": "bob", "role": "janitor"}))
    assert error.reason == "TOKEN_INVALID"
    assert "janitor" in error.message


@pytest.mark.parametrize("missing", ["sub", "role", "exp"])
def test_a_token_missing_a_required_claim_is_refused(missing: str) -> None:
    now = int(time.time())
    claims = {"iss": "wuye", "sub": "bob", "role": "admin", "exp": now + 60}
    del claims[missing]
    assert refusal(jwt.encode(claims, SECRET, "HS256")).reason == "TOKEN_INVALID"


@pytest.mark.parametrize("districts", ["150602", [150602], {"150602": True}])
def test_a_token_whose_districts_are_not_a_list_of_codes_is_refused(districts: object) -> None:
    error = refusal(raw_token({"sub": "bob", "role": "inspector", "districts": districts}))
    assert error.reason == "TOKEN_INVALID"


def test_an_unsigned_token_is_refused() -> None:
    token = jwt.encode({"iss": "wuye", "sub": "x", "role": "admin", "exp": 2**40}, None, "none")
    assert refusal(token).reason == "TOKEN_INVALID"


@pytest.mark.parametrize("garbage", ["", "not-a-token", "a.b.c"])
def test_garbage_is_refused_as_an_invalid_token(garbage: str) -> None:
    assert refusal(garbage).reason == "TOKEN_INVALID"


def test_a_verifier_without_a_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="WUYE_TOKEN_SECRET"):
        TokenVerifier("", "wuye")


def test_a_district_scoped_principal_covers_its_districts_only() -> None:
    principal = Principal("dongsheng", Role.DISTRICT_AUTHORITY, frozenset({"150602"}))
    assert principal.covers("150602")
    assert not principal.covers("150603")


def test_a_policy_admits_its_roles_and_admin_only() -> None:
    policy = allow(Role.ENTERPRISE, Role.INSPECTOR)
    assert policy.admits(Principal("e", Role.ENTERPRISE, None))
    assert policy.admits(Principal("i", Role.INSPECTOR, None))
    assert policy.admits(Principal("root", Role.ADMIN, None))
    assert not policy.admits(Principal("c", Role.CITY_AUTHORITY, None))
    assert not policy.admits(ANONYMOUS)


def test_a_public_policy_admits_anonymous_callers() -> None:
    assert public().admits(ANONYMOUS)
    assert public().admits(Principal("e", Role.ENTERPRISE, None))


def test_an_empty_policy_admits_admin_alone() -> None:
    policy = allow()
    assert policy.admits(Principal("root", Role.ADMIN, None))
    assert not any(policy.admits(Principal("x", role, None)) for role in Role if role != Role.ADMIN)


@pytest.mark.parametrize(
    ("role", "authority"),
    [
        (Role.ADMIN, True),
        (Role.CITY_AUTHORITY, True),
        (Role.DISTRICT_AUTHORITY, True),
        (Role.SUB_DISTRICT, False),
        (Role.ENTERPRISE, False),
        (Role.INSPECTOR, False),
        (Role.SERVICE, False),
        (Role.OWNER, False),
        (Role.OWNERS_COMMITTEE, False),
        (Role.EXPERT, False),
        (Role.MEMBER_UNIT, False),
        (None, False),
    ],
)
def test_authorities_are_the_housing_authorities_and_admin(role: Role | None, authority: bool):
    assert Principal("x", role, None).is_authority is authority


def test_during_a_rotation_tokens_of_the_previous_key_are_still_accepted() -> None:
    old, new = SECRET, "the-new-secret-of-at-least-32-bytes!!"
    rotating = TokenVerifier(new, "wuye", previous_secret=old)
    for key in (old, new):
        token = issue_token(key, subject="a", role=Role.CITY_AUTHORITY)
        assert rotating.verify(token).subject == "a"
    stranger = issue_token("some-other-secret-of-32-bytes-at-least", subject="a", role=Role.ADMIN)
    assert refusal(stranger, rotating).reason == "TOKEN_INVALID"
    # Once the previous key is removed, its tokens are refused.
    done = TokenVerifier(new, "wuye")
    assert refusal(issue_token(old, subject="a", role=Role.ADMIN), done).reason == "TOKEN_INVALID"
