"""Free text people type (names, addresses, reasons, notes): one rule for every service.

A text is one line of visible characters and spaces. Refused: control characters (NUL, tab,
line breaks), line and paragraph separators, invisible format characters (bidirectional
overrides that make a name read differently from what is stored, zero-width characters that
make two names look alike), private-use and unassigned code points, and lone surrogates. Spaces
of any kind (the ideographic space of Chinese text included) are allowed, but not alone.
"""

from __future__ import annotations

import unicodedata

# Unicode general categories a text may not contain.
REFUSED_CATEGORIES = {
    "Cc": "control characters",
    "Cf": "invisible format characters",
    "Cs": "surrogates",
    "Co": "private-use characters",
    "Cn": "unassigned characters",
    "Zl": "line separators",
    "Zp": "paragraph separators",
}


def text_problem(value: str, limit: int, *, required: bool = True) -> str | None:
    """Why `value` is not an acceptable text of at most `limit` characters, or None.

    The message names the offending character by code point and position, never by the text
    itself, which may be personal data.
    """
    if not value.strip():
        return "is required" if required else (None if not value else "must not be only spaces")
    if len(value) > limit:
        return f"must be at most {limit} characters, got {len(value)}"
    for position, character in enumerate(value, start=1):
        refused = REFUSED_CATEGORIES.get(unicodedata.category(character))
        if refused:
            return f"must not contain {refused} (U+{ord(character):04X} at character {position})"
    return None
