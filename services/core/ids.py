"""Checks of national identifiers: the unified social credit code and the resident ID number."""

from __future__ import annotations

import datetime as dt
import secrets

# GB 32100-2015: the code alphabet leaves out I, O, S, V and Z.
CREDIT_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_VALUE = {ch: i for i, ch in enumerate(CREDIT_CODE_ALPHABET)}
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

# GB 11643-1999.
_RESIDENT_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_CHECK = "10X98765432"


def credit_code_check_char(first17: str) -> str:
    total = sum(_CREDIT_VALUE[ch] * w for ch, w in zip(first17, _CREDIT_WEIGHTS, strict=True))
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def credit_code_problem(code: str) -> str | None:
    """Why `code` is not a valid unified social credit code, or None if it is."""
    if len(code) != 18:
        return f"must be 18 characters, got {len(code)}"
    bad = sorted({ch for ch in code if ch not in _CREDIT_VALUE})
    if bad:
        return f"characters {''.join(bad)!r} are not allowed (0-9 and A-Y without I, O, S, V, Z)"
    expected = credit_code_check_char(code[:17])
    if code[17] != expected:
        return f"check character is {code[17]!r}, expected {expected!r}"
    return None


def resident_id_check_char(first17: str) -> str:
    total = sum(int(ch) * w for ch, w in zip(first17, _RESIDENT_WEIGHTS, strict=True))
    return _RESIDENT_CHECK[total % 11]


def resident_id_problem(number: str, today: dt.date | None = None) -> str | None:
    """Why `number` is not a valid 18-digit resident ID number, or None if it is.

    The message never repeats the number: it is personal data.
    """
    if len(number) != 18:
        return f"must be 18 characters, got {len(number)}"
    if not number[:17].isascii() or not number[:17].isdigit():
        return "the first 17 characters must be digits"
    if number[17] not in "0123456789X":
        return "the last character must be a digit or X"
    try:
        born = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return "the birth date (characters 7-14) is not a date"
    if born > (today or dt.date.today()) or born.year < 1900:
        return "the birth date (characters 7-14) is out of range"
    if number[17] != resident_id_check_char(number[:17]):
        return "the check character does not match"
    return None


def new_id(district: str, prefix: str = "") -> str:
    """Ids start with the district code, so a request that names only an id can be routed and
    authorised before anything is read."""
    return f"{district}-{prefix}{secrets.token_hex(6)}"
