"""Opaque page tokens for keyset pagination (AIP-158).

A token carries the last key of the page and a fingerprint of the filters it was made for, so
a token reused with other filters is refused instead of silently skipping records.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from wuye.core.errors import FieldViolation, InvalidArgument


@dataclass(frozen=True)
class Page:
    size: int
    after: str | None
    filters: str


def _fingerprint(filters: object) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]


def read_page(page_size: int, page_token: str, filters: object, default: int, maximum: int) -> Page:
    if page_size < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    size = min(page_size or default, maximum)
    fingerprint = _fingerprint(filters)
    if not page_token:
        return Page(size, None, fingerprint)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(page_token.encode() + b"=="))
        after, made_for = str(decoded["a"]), decoded["f"]
        if not after.isprintable() or len(after) > 200:  # keys are ids: a forged token's is not
            raise ValueError("not a key of ours")
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidArgument(
            [FieldViolation("page_token", "is not a token this API issued")]
        ) from e
    if made_for != fingerprint:
        raise InvalidArgument(
            [
                FieldViolation(
                    "page_token", "was issued for other filters; start from the first page"
                )
            ]
        )
    return Page(size, after, fingerprint)


def next_token(page: Page, keys: list[str]) -> str:
    """The token of the page after one that returned `keys` (one more than asked for means a
    next page exists)."""
    if len(keys) <= page.size:
        return ""
    raw = json.dumps({"a": keys[page.size - 1], "f": page.filters}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
