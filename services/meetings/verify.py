"""`python -m wuye.meetings verify-minutes EXPORT.json --hash HEX`: anyone checks that a copy of
signed minutes is the signed one.

EXPORT is GetMinutes' answer as JSON (grpcurl's output, or any protobuf JSON of
wuye.meetings.v1.GetMinutesResponse). HEX is the content hash as it was published when the
minutes were signed (the MinutesSigned event, or GetMinutes then): without it, the verifier can
only check that the export agrees with itself, which a forger's export also does. The verifier
recomputes the canonical content's hash (domain.py writes the algorithm out), and checks that
every required signer signed exactly that hash.

Exit status: 0 VERIFIED, 1 REFUSED (with the first reason, then the others), 2 unreadable input.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from google.protobuf import json_format

from wuye.meetings import domain
from wuye.meetings.domain import Amendment, Minutes, MinutesState, Signature, Unit
from wuye.meetings.v1 import meetings_service_pb2 as pb

VERIFIED, REFUSED, UNREADABLE = 0, 1, 2
MAX_LISTED_PROBLEMS = 20
_HASH = re.compile(r"[0-9a-f]{64}")


class Unreadable(ValueError):
    """The input is not a GetMinutes export at all: nothing to verify or refuse."""


def read_export(text: str) -> pb.Minutes:
    if not text.lstrip().startswith("{"):
        raise Unreadable("not a GetMinutes export: not a JSON object")
    try:
        return json_format.Parse(text, pb.GetMinutesResponse()).minutes
    except json_format.ParseError as e:
        raise Unreadable(f"not a GetMinutes export: {e}") from e


def minutes_of(message: pb.Minutes) -> Minutes:
    state = pb.MinutesState.Name(message.state).removeprefix("MINUTES_STATE_")
    return Minutes(
        minutes_id=message.minutes_id,
        meeting_id=message.meeting_id,
        district_code=message.district_code,
        hold_time=message.hold_time.ToJsonString(),
        place=message.place,
        text=message.text,
        amendments=tuple(
            Amendment(Unit(a.unit.kind, a.unit.unit_id, a.unit.name), a.text)
            for a in message.amendments
        ),
        amends_minutes_id=message.amends_minutes_id,
        state=MinutesState(state) if state in MinutesState.__members__ else MinutesState.OPEN,
        required_signers=tuple(message.required_signers),
        signatures=tuple(
            Signature(s.signer, s.role, s.content_hash, s.sign_time.ToDatetime())
            for s in message.signatures
        ),
        content_hash=message.content_hash,
    )


def problems_of(text: str, published_hash: str | None = None) -> list[str]:
    """Why the export `text` is refused, first reason first; empty if it verifies. Raises
    Unreadable if `text` is not an export."""
    message = read_export(text)
    if message.algorithm_version != domain.ALGORITHM_VERSION:
        return [f"minutes hash algorithm version {message.algorithm_version} is not known here"]
    try:
        minutes = minutes_of(message)
    except ValueError as e:  # a time out of a Timestamp's range
        return [f"the export is malformed: {e}"]
    return domain.minutes_problems(minutes, published_hash)


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wuye.meetings verify-minutes",
        description="Check a copy of signed joint-meeting minutes: its content must hash to the "
        "hash published when they were signed, and every signer must have signed that hash. "
        "Exit status: 0 VERIFIED, 1 REFUSED, 2 unreadable input.",
    )
    parser.add_argument("export", type=Path, help="GetMinutes' answer as JSON")
    parser.add_argument(
        "--hash",
        metavar="HEX",
        help="the content hash as published when the minutes were signed (64 hex digits); "
        "without it only the export's agreement with itself is checked",
    )
    return parser


def main(argv: list[str]) -> int:
    parser = _arguments()
    try:
        options = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2)
        return UNREADABLE if e.code else VERIFIED
    published = options.hash.lower() if options.hash is not None else None
    if published is not None and not _HASH.fullmatch(published):
        print("--hash must be 64 hexadecimal digits (SHA-256)", file=sys.stderr)
        return UNREADABLE
    try:
        problems = problems_of(options.export.read_bytes().decode(), published)
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
    if published is None:
        print(
            "VERIFIED (self-consistency only): the content matches the export's own hash and "
            "every signer signed it; without --hash (the hash published at signing) a forged "
            "export would verify too"
        )
    else:
        print(
            "VERIFIED: the content hashes to the published hash, and every required signer "
            "signed it"
        )
    return VERIFIED
