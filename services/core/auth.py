"""Bearer tokens (PyJWT, HS256) and what a caller may do.

Claims: `sub` (who), `role`, `districts` (codes the caller acts for; absent or ["*"]: the whole
city). Each RPC declares the roles it admits in a `Policy`; `admin` is admitted everywhere.
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


AUTHORITIES = frozenset({Role.CITY_AUTHORITY, Role.DISTRICT_AUTHORITY})


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
) -> str:
    now = int(time.time())
    claims = {
        "sub": subject,
        "role": role.value,
        "districts": districts or [ALL_DISTRICTS],
        "iss": issuer,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


class TokenVerifier:
    """Verifies tokens, remembering recent verdicts: a busy client sends the same token on every
    call, and checking its signature each time would cost more than the call itself."""

    def __init__(
        self, secret: str, issuer: str, cache_size: int = 4096, previous_secret: str = ""
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
        districts = claims.get("districts") or [ALL_DISTRICTS]
        if not isinstance(districts, list) or not all(isinstance(d, str) for d in districts):
            raise Unauthenticated("TOKEN_INVALID", "the districts claim must be a list of codes")
        scope = None if ALL_DISTRICTS in districts else frozenset(districts)
        return Principal(subject=str(claims["sub"]), role=role, districts=scope), float(
            claims["exp"]
        )
