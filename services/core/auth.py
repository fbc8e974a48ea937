"""Bearer tokens (PyJWT, HS256) and what a caller may do.

Claims: `sub` (who), `role`, `districts` (the codes the caller acts for, or ["*"]: the whole
city). Every token names its districts: only the roles `ROLE_RULES` lets act city-wide may carry
["*"]. Each RPC declares the roles it admits in a `Policy`; `admin` is admitted everywhere.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from threading import Lock

import jwt

from wuye.core.errors import Unauthenticated

ALL_DISTRICTS = "*"
# Subjects are recorded (a filing's reviewer, a record's source): keep them short.
MAX_SUBJECT_LENGTH = 128


class Role(StrEnum):
    ADMIN = "admin"
    # The municipal housing authority (市住建局): acts city-wide.
    CITY_AUTHORITY = "city_authority"
    # A banner/district housing authority: acts in its districts.
    DISTRICT_AUTHORITY = "district_authority"
    # Sub-district office (街道办事处).
    SUB_DISTRICT = "sub_district"
    # A property-service enterprise; `sub` is its unified social credit code.
    ENTERPRISE = "enterprise"
    INSPECTOR = "inspector"
    # Another Wuye service or an integrating system that reads.
    SERVICE = "service"
    # An owner (业主); `sub` is the owner key the registry keeps with each unit.
    OWNER = "owner"
    # An owners' committee (业主委员会) or the transitional committee acting for it.
    OWNERS_COMMITTEE = "owners_committee"
    # An expert of the city's pool, drawn onto tender evaluation committees.
    EXPERT = "expert"
    # A member unit of a joint meeting (联席会议): utilities, urban management, police...
    MEMBER_UNIT = "member_unit"
    # A real-estate developer: tenders a project's first property service (前期物业).
    DEVELOPER = "developer"
    # A residents' committee (居委会): raises cases and sits on joint meetings.
    RESIDENTS_COMMITTEE = "residents_committee"


class Reach(StrEnum):
    """How far a role's token may reach."""

    # The whole city (districts ["*"]) or the districts it names.
    CITY = "city"
    # Only the districts it names: a token without them is refused.
    DISTRICTS = "districts"


@dataclass(frozen=True)
class RoleRule:
    reach: Reach
    # What the token's subject is, as `python -m wuye token` explains it.
    subject: str


# Who may act city-wide, and what each role's subject names. A new role is one line here.
ROLE_RULES: dict[Role, RoleRule] = {
    Role.ADMIN: RoleRule(Reach.CITY, "an operator's account"),
    Role.CITY_AUTHORITY: RoleRule(Reach.CITY, "an officer of the municipal housing authority"),
    Role.SERVICE: RoleRule(Reach.CITY, "the calling service's or system's name"),
    Role.EXPERT: RoleRule(Reach.CITY, "the expert's id in the city's pool"),
    Role.DISTRICT_AUTHORITY: RoleRule(Reach.DISTRICTS, "an officer of a district authority"),
    Role.SUB_DISTRICT: RoleRule(Reach.DISTRICTS, "the sub-district office"),
    Role.ENTERPRISE: RoleRule(Reach.DISTRICTS, "the enterprise's unified social credit code"),
    Role.INSPECTOR: RoleRule(Reach.DISTRICTS, "the inspector's id"),
    Role.OWNER: RoleRule(Reach.DISTRICTS, "the owner key (from the owner's ID number)"),
    Role.OWNERS_COMMITTEE: RoleRule(Reach.DISTRICTS, "the committee's id"),
    Role.MEMBER_UNIT: RoleRule(Reach.DISTRICTS, "the member unit's name"),
    Role.RESIDENTS_COMMITTEE: RoleRule(Reach.DISTRICTS, "the residents' committee's name"),
    Role.DEVELOPER: RoleRule(Reach.DISTRICTS, "the developer's unified social credit code"),
}

AUTHORITIES = frozenset({Role.CITY_AUTHORITY, Role.DISTRICT_AUTHORITY})


def district_scope(role: Role, districts: list[str] | None) -> frozenset[str] | None:
    """The districts a token of `role` acts for (None: the whole city), or why it may not.

    Raises ValueError naming the rule the claim breaks.
    """
    if not districts:
        raise ValueError(
            f"names no districts: a token of role {role.value} must name those it acts for"
            + (f' (["{ALL_DISTRICTS}"]: the whole city)' if _city_wide(role) else "")
        )
    if ALL_DISTRICTS not in districts:
        return frozenset(districts)
    if not _city_wide(role):
        raise ValueError(
            f"acts for the whole city, which a token of role {role.value} may not: "
            "it must name its districts"
        )
    if len(districts) > 1:
        raise ValueError(f'names "{ALL_DISTRICTS}" (the whole city) beside other districts')
    return None


def _city_wide(role: Role) -> bool:
    return ROLE_RULES[role].reach is Reach.CITY


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role | None
    # None: every district of the city.
    districts: frozenset[str] | None

    def covers(self, district: str) -> bool:
        return self.districts is None or district in self.districts

    @property
    def is_authority(self) -> bool:
        return self.role in AUTHORITIES or self.role is Role.ADMIN


ANONYMOUS = Principal(subject="anonymous", role=None, districts=frozenset())


@dataclass(frozen=True)
class Policy:
    """Who may call one RPC. `roles` None: public, no token needed."""

    roles: frozenset[Role] | None

    def admits(self, principal: Principal) -> bool:
        return self.roles is None or principal.role is Role.ADMIN or principal.role in self.roles


def public() -> Policy:
    return Policy(roles=None)


def allow(*roles: Role) -> Policy:
    return Policy(roles=frozenset(roles))


def issue_token(
    secret: str,
    *,
    subject: str,
    role: Role,
    districts: list[str] | None = None,
    issuer: str = "wuye",
    ttl_seconds: int = 12 * 3600,
    now: float | None = None,
) -> str:
    """A signed token; `districts` None: the whole city, for the roles that may act city-wide.

    Raises ValueError for a token the verifier would refuse (a district role without districts).
    """
    claimed = districts if districts is not None else [ALL_DISTRICTS]
    try:
        district_scope(role, claimed)
    except ValueError as e:
        raise ValueError(f"the token {e}") from None
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": subject,
        "role": role.value,
        "districts": claimed,
        "iss": issuer,
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


class TokenVerifier:
    """Verifies tokens, remembering recent verdicts: a busy client sends the same token on every
    call, and checking its signature each time would cost more than the call itself. The cache
    holds a large project's owners, each casting and re-casting a ballot with a token of their
    own (about 1 KB a token)."""

    def __init__(
        self, secret: str, issuer: str, cache_size: int = 32_768, previous_secret: str = ""
    ) -> None:
        if not secret:
            raise ValueError("a token secret is required (WUYE_TOKEN_SECRET)")
        # During a key rotation tokens signed with the previous key are still accepted.
        self._secrets = [secret, *([previous_secret] if previous_secret else [])]
        self._issuer = issuer
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = Lock()

    def verify(self, token: str) -> Principal:
        now = time.time()
        with self._lock:
            hit = self._cache.get(token)
            if hit is not None and hit[1] > now:
                self._cache.move_to_end(token)
                return hit[0]
        principal, expires = self._decode(token)
        with self._lock:
            self._cache[token] = (principal, expires)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return principal

    def _claims(self, token: str) -> dict:
        for secret in self._secrets[:-1]:
            try:
                return self._decode_with(token, secret)
            except jwt.InvalidSignatureError:
                continue
        return self._decode_with(token, self._secrets[-1])

    def _decode_with(self, token: str, secret: str) -> dict:
        return jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=self._issuer,
            options={"require": ["sub", "role", "exp"]},
        )

    def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            claims = self._claims(token)
        except jwt.ExpiredSignatureError as e:
            raise Unauthenticated("TOKEN_EXPIRED", "the bearer token has expired") from e
        except jwt.InvalidTokenError as e:
            raise Unauthenticated("TOKEN_INVALID", f"the bearer token is invalid: {e}") from e
        try:
            role = Role(claims["role"])
        except ValueError as e:
            raise Unauthenticated("TOKEN_INVALID", f"unknown role {claims['role']!r}") from e
        if not isinstance(claims["sub"], str) or not 0 < len(claims["sub"]) <= MAX_SUBJECT_LENGTH:
            raise Unauthenticated(
                "TOKEN_INVALID", f"the subject must be 1 to {MAX_SUBJECT_LENGTH} characters"
            )
        districts = claims.get("districts")
        if districts is not None and (
            not isinstance(districts, list) or not all(isinstance(d, str) for d in districts)
        ):
            raise Unauthenticated("TOKEN_INVALID", "the districts claim must be a list of codes")
        try:
            scope = district_scope(role, districts)
        except ValueError as e:
            raise Unauthenticated("TOKEN_DISTRICTS_INVALID", f"the bearer token {e}") from e
        return Principal(subject=str(claims["sub"]), role=role, districts=scope), float(
            claims["exp"]
        )
