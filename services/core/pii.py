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
        return hmac.new(self._key, identity.encode(), hashlib.sha256).hexdigest()[:32]


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
