"""Public random draws (inspection rounds, tender committees): a seed committed before the
outcome, revealed after it, and a draw anyone can recompute from what was published.

The construction, written out so it can be reimplemented:

* The lists digest is SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8, non-ASCII
  kept as is) of the draw's parameters and lists.
* The commitment is SHA-256 of the seed's bytes followed by the lists digest, as lowercase hex.
  It is published before anyone knows the seed, so neither the seed nor the lists can be chosen
  afterwards to give a wanted outcome.
* key(label) = HMAC-SHA256(seed, label as UTF-8) read as a big-endian integer; a draw orders
  candidates by their keys, and u(label) = key(label) / 2^256 is a uniform number in [0, 1).

A verifier (`python -m wuye.<service> verify-...`) holds an export to the commitment as it was
published before the outcome, not to the one the export carries: anyone can forge an export
that agrees with itself. `verifier_main` is the command line every such verifier shares.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# u(label) = key(label) / KEY_SCALE.
KEY_SCALE = 2**256
SEED_BYTES = 32
VERIFIED, REFUSED, UNREADABLE = 0, 1, 2
MAX_LISTED_PROBLEMS = 20
_COMMITMENT = re.compile(r"[0-9a-f]{64}")


def new_seed() -> bytes:
    return secrets.token_bytes(SEED_BYTES)


def lists_digest(values: object) -> bytes:
    """SHA-256 of the canonical JSON of `values` (plain JSON values)."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).digest()


def commitment(seed: bytes, digest: bytes) -> str:
    return hashlib.sha256(seed + digest).hexdigest()


def key(seed: bytes, label: str) -> int:
    return int.from_bytes(hmac.new(seed, label.encode(), hashlib.sha256).digest(), "big")


def commitment_problems(
    seed: bytes,
    seed_commitment: str,
    digest: bytes,
    published_commitment: str | None,
    published_when: str,
) -> list[str]:
    """How a revealed seed and its lists fail the commitment: the one published before the
    outcome (`published_when`: "when the round was created"), if given, first; then the
    export's own."""
    problems = []
    if published_commitment is not None and published_commitment != seed_commitment:
        problems.append(
            f"the export's commitment {seed_commitment[:64]!r} is not the one published "
            f"{published_when} ({published_commitment})"
        )
    if commitment(seed, digest) != seed_commitment:
        problems.append("the seed and lists do not match the export's commitment")
    return problems


def read_seed(text: str) -> bytes:
    """A seed as published: lowercase hex. Raises ValueError."""
    seed = bytes.fromhex(text)
    if seed.hex() != text:
        raise ValueError("the seed is not lowercase hex as published")
    return seed


class Unreadable(ValueError):
    """The input is not an export at all: nothing to verify or refuse."""


@dataclass(frozen=True)
class Verifier:
    """One public verifier's command line. `problems_of(text, published_commitment)` gives why
    an export is refused (empty: it verifies) and raises Unreadable for what is no export."""

    prog: str
    description: str
    export_help: str
    commitment_help: str
    problems_of: Callable[[str, str | None], list[str]]
    verified: str
    self_consistent_only: str

    def _arguments(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description)
        parser.add_argument("export", type=Path, help=self.export_help)
        parser.add_argument("--commitment", metavar="HEX", help=self.commitment_help)
        return parser

    def main(self, argv: list[str]) -> int:
        try:
            options = self._arguments().parse_args(argv)
        except SystemExit as e:  # --help (0) or a usage error (2)
            return UNREADABLE if e.code else VERIFIED
        published = options.commitment
        if published is not None and not _COMMITMENT.fullmatch(published.lower()):
            print("--commitment must be 64 hexadecimal digits (SHA-256)", file=sys.stderr)
            return UNREADABLE
        if published is not None:
            published = published.lower()
        try:
            text = options.export.read_bytes().decode()
            problems = self.problems_of(text, published)
        except OSError as e:
            print(f"UNREADABLE: cannot read {options.export}: {e.strerror or e}", file=sys.stderr)
            return UNREADABLE
        except UnicodeDecodeError as e:
            print(f"UNREADABLE: not UTF-8 ({e.reason} at byte {e.start})", file=sys.stderr)
            return UNREADABLE
        except Unreadable as e:
            print(f"UNREADABLE: {e}", file=sys.stderr)
            return UNREADABLE
        if problems:
            first, *others = problems
            print(f"REFUSED: {first}")
            for problem in others[:MAX_LISTED_PROBLEMS]:
                print(f"  - {problem}")
            return REFUSED
        print(self.verified if published is not None else self.self_consistent_only)
        return VERIFIED
