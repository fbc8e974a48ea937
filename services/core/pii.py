"""Personal data (PIPL): stored as a keyed hash plus a masked form, never whole."""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymizer:
    """Turns an identity into a stable keyed hash: equal inputs give equal keys, and without
    the key nobody can test a guessed ID number against a stored one."""

    def __init__(self, key: bytes, *, purpose: str) -> None:
        if not key:
            raise ValueError("a PII key is required (WUYE_PII_KEY)")
        self._key = hmac.new(key, purpose.encode(), hashlib.sha256).digest()

    def key_of(self, identity: str) -> str:
        return self.digest(identity.encode())[:32]

    def digest(self, data: bytes) -> str:
        """The whole keyed hash of `data`, 64 hex characters."""
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()


# Kinds of owner, as the registry's OwnerKind names them.
PERSON_OWNER = "PERSON"
DEVELOPER_UNSOLD = "DEVELOPER_UNSOLD"


class OwnerKeys:
    """Who an owner is, without the ID number: the registry keeps this key with each unit, and
    an owner's bearer token carries it as its subject. Both compute it here, so they agree.

    One buyer of several units is one owner; the developer's unsold units of a project together
    count as one owner (Civil Code practice).
    """

    def __init__(self, key: bytes) -> None:
        self._hash = Pseudonymizer(key, purpose="owner")

    def key_of(self, kind: str, number: str, project_id: str = "") -> str:
        """`number`: a person's ID number, or an organisation's unified social credit code."""
        if kind == DEVELOPER_UNSOLD:
            return self._hash.key_of(f"developer-unsold:{project_id}:{number}")
        return self._hash.key_of(f"{kind.lower()}:{number}")

    def of_person(self, id_number: str) -> str:
        return self.key_of(PERSON_OWNER, id_number)


def mask_id_number(number: str) -> str:
    """1506**********123X: the region prefix and the last four stay, as ID cards are shown."""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def mask_phone(phone: str) -> str:
    """138****5678: the first three and last four digits stay."""
    digits = phone.replace("-", "").replace(" ", "")
    if len(digits) <= 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_name(name: str) -> str:
    """王*明: the first and, for names of three or more characters, the last character stay."""
    if len(name) <= 1:
        return "*" * len(name)
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]
