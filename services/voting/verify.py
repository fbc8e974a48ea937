"""`python -m wuye.voting verify-tally LOG.json [--roll-digest D] [--receipt R]`: anyone re-tallies
a closed vote from its public ballot log.

LOG is GetBallotLog's answer as proto3 JSON: one wuye.voting.v1.GetBallotLogResponse object, the
stream of them a generic gRPC client prints one after another, or a JSON array of them (the
HTTP gateway's form of a stream): the first part carries the vote, and the roll and the log are
the parts' lists one after another. The verifier checks the chain, the roll and every entry,
and recomputes the result with the vote's own counting rules (services/voting/domain.py, steps
1-6). `--roll-digest` is the digest
published when the vote opened (GetVote, the VoteOpened event): without it only the export's
self-consistency is checked. Exit status: 0 VERIFIED, 1 REFUSED (with the first reason),
2 unreadable input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from wuye.voting import domain
from wuye.voting.domain import (
    Channel,
    Choice,
    CountingRules,
    LogEntry,
    Matter,
    MatterClass,
    MatterResult,
    MatterType,
    RollEntry,
    Threshold,
    VoteResult,
    VoteSpec,
)
from wuye.voting.v1 import voting_service_pb2 as pb

VERIFIED, REFUSED, UNREADABLE = 0, 1, 2
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class Unreadable(Exception):
    """The input is not a ballot log export at all."""


# ---------------------------------------------------------------- proto3 JSON, read quickly
# protobuf's json_format took 2.3 s of CPU to read the export of 60,000 ballots (37 MB) into
# messages; this reader of the same proto3 JSON rules (either field name, int64 as string or
# number, enums by name or number, null as the default, RFC 3339 times) takes 0.8 s, 0.4 s of it
# json's parse.
# Messages become dicts keyed by proto field names; times become nanoseconds since the epoch.

_INTEGER_LIMITS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
}
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,20}", re.ASCII)
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:Z|([+-])([0-9]{2}):([0-9]{2}))",
    re.ASCII,
)
_SECOND = dt.timedelta(seconds=1)
_STRING, _BOOL = FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BOOL
_ENUM, _MESSAGE = FieldDescriptor.TYPE_ENUM, FieldDescriptor.TYPE_MESSAGE


class _Misread(Exception):
    """A value that is not what its field holds; the message gathers the path on its way up."""


@dataclass(frozen=True, slots=True)
class _Field:
    """What reading one field needs, taken from its descriptor once (descriptor attributes are
    slow to read, and a log has hundreds of thousands of fields)."""

    name: str
    repeated: bool
    kind: int
    limits: tuple[int, int] | None
    enum_names: frozenset[str]
    enum_numbers: Mapping[int, str]
    layout: _Layout | None
    timestamp: bool


@dataclass(frozen=True, slots=True)
class _Layout:
    # Under both names: the JSON name (lowerCamelCase) and the proto field name.
    fields: Mapping[str, _Field]
    defaults: Mapping[str, object]
    # Proto field names whose JSON name differs, with that name.
    json_names: Mapping[str, str]


@cache
def _layout(descriptor: Descriptor) -> _Layout:
    fields: dict[str, _Field] = {}
    defaults: dict[str, object] = {}
    for f in descriptor.fields:
        timestamp = f.type == _MESSAGE and f.message_type.full_name == "google.protobuf.Timestamp"
        enum = f.enum_type if f.type == _ENUM else None
        field = _Field(
            name=f.name,
            repeated=f.is_repeated,
            kind=f.type,
            limits=_INTEGER_LIMITS.get(f.type),
            enum_names=frozenset(enum.values_by_name) if enum else frozenset(),
            enum_numbers={n: v.name for n, v in enum.values_by_number.items()} if enum else {},
            layout=_layout(f.message_type) if f.type == _MESSAGE and not timestamp else None,
            timestamp=timestamp,
        )
        fields[f.json_name] = fields[f.name] = field
        if field.repeated:
            defaults[f.name] = ()
        elif enum is not None:
            defaults[f.name] = field.enum_numbers[0]
        else:
            defaults[f.name] = None if f.type == _MESSAGE else f.default_value
    json_names = {f.name: f.json_name for f in descriptor.fields if f.name != f.json_name}
    return _Layout(fields, defaults, json_names)


def _message(value: object, layout: _Layout) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _Misread("is not a JSON object")
    message = dict(layout.defaults)
    for key, item in value.items():
        field = layout.fields.get(key)
        if field is None:
            raise _Misread(f"has no field {key[:40]!r}")
        if key in layout.json_names and layout.json_names[key] in value:
            raise _Misread(f"has the field {field.name} twice, under both its names")
        if item is None:
            continue
        try:
            message[field.name] = _repeated(field, item) if field.repeated else _value(field, item)
        except _Misread as e:
            raise _Misread(f".{key}{_continued(e)}") from None
    return message


def _repeated(field: _Field, items: object) -> tuple[object, ...]:
    if not isinstance(items, list):
        raise _Misread("is not a JSON array")
    values = []
    for n, item in enumerate(items):
        try:
            values.append(_value(field, item))
        except _Misread as e:
            raise _Misread(f"[{n}]{_continued(e)}") from None
    return tuple(values)


def _continued(error: _Misread) -> str:
    """The rest of a path ('.x', '[3]') as is; a description after a space."""
    text = str(error)
    return text if text[:1] in ".[" else f" {text}"


def _value(field: _Field, item: object) -> object:
    kind = field.kind
    if kind == _STRING:
        if isinstance(item, str) and (item.isascii() or _is_unicode_text(item)):
            return item
    elif field.limits is not None:
        if isinstance(item, str) and _INTEGER_TEXT.fullmatch(item):
            item = int(item)
        if isinstance(item, int) and not isinstance(item, bool):
            low, high = field.limits
            if low <= item <= high:
                return item
    elif kind == _ENUM:
        if isinstance(item, str) and item in field.enum_names:
            return item
        if isinstance(item, int) and not isinstance(item, bool) and item in field.enum_numbers:
            return field.enum_numbers[item]
    elif kind == _BOOL:
        if isinstance(item, bool):
            return item
    elif field.timestamp:
        return _nanoseconds(item)
    elif field.layout is not None:
        return _message(item, field.layout)
    raise _Misread(f"is not a {field.name} as proto3 JSON writes it")


def _is_unicode_text(text: str) -> bool:
    """False for a lone surrogate (JSON can escape one; a protobuf string cannot hold it)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _nanoseconds(item: object) -> int:
    """An RFC 3339 time as nanoseconds since the epoch, exactly."""
    match = _RFC3339.fullmatch(item) if isinstance(item, str) else None
    if match is None:
        raise _Misread("is not an RFC 3339 time")
    year, month, day, hour, minute, second = (int(match[n]) for n in range(1, 7))
    try:
        time = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
        if match[8]:
            offset = dt.timedelta(hours=int(match[9]), minutes=int(match[10]))
            time -= offset if match[8] == "+" else -offset
    except (ValueError, OverflowError) as e:
        raise _Misread(f"is not a time: {e}") from None
    fraction = int((match[7] or "").ljust(9, "0"))
    return (time - domain.EPOCH) // _SECOND * 1_000_000_000 + fraction


def read_message(value: object, descriptor: Descriptor) -> dict[str, object]:
    """One message of parsed proto3 JSON as a dict of its fields, every field present."""
    try:
        return _message(value, _layout(descriptor))
    except _Misread as e:
        raise Unreadable(f"not a {descriptor.name}: the message{_continued(e)}") from None


def _json_values(text: str) -> list[object]:
    """The JSON values of `text`: one, several one after another, or the items of one array."""
    decoder = json.JSONDecoder()
    position, length = 0, len(text)
    values = []
    while True:
        while position < length and text[position].isspace():
            position += 1
        if position == length:
            break
        value, position = decoder.raw_decode(text, position)
        values.append(value)
    if len(values) == 1 and isinstance(values[0], list):
        values = values[0]
    if not values:
        raise ValueError("no JSON value")
    return values


@dataclass(frozen=True)
class Export:
    """GetBallotLog's parts put together: the vote, the roll and the log, as read."""

    vote: dict[str, object]
    roll: tuple[dict[str, object], ...]
    entries: tuple[dict[str, object], ...]


def read_export(text: str) -> Export:
    """The export of `text`; raises Unreadable if the text is not one."""
    try:
        parts = _json_values(text)
    except (ValueError, RecursionError) as e:
        raise Unreadable(f"not JSON: {e}") from e
    votes, roll, entries = [], [], []
    layout = _layout(pb.GetBallotLogResponse.DESCRIPTOR)
    for n, part in enumerate(parts, start=1):
        try:
            message = _message(part, layout)
        except _Misread as e:
            raise Unreadable(f"not a GetBallotLog export: part {n}{_continued(e)}") from None
        if message["vote"] is not None:
            votes.append(message["vote"])
        roll += message["roll"]
        entries += message["entries"]
    if len(votes) != 1:
        raise Unreadable(f"an export has one vote, this one {len(votes)}")
    return Export(votes[0], tuple(roll), tuple(entries))


# ---------------------------------------------------------------- the export as the domain's


def _wire_names(enum_type: type[StrEnum], prefix: str) -> dict[str, StrEnum]:
    """A wire enum's names and their domain twins: CHOICE_YES -> Choice.YES."""
    return {prefix + member.value: member for member in enum_type}


_MATTER_TYPES = _wire_names(MatterType, "MATTER_TYPE_")
_MATTER_CLASSES = _wire_names(MatterClass, "MATTER_CLASS_")
_CHOICES = _wire_names(Choice, "CHOICE_")
_CHANNELS = _wire_names(Channel, "BALLOT_CHANNEL_")


def _enum(twins: Mapping[str, StrEnum], name: str):
    try:
        return twins[name]
    except KeyError:
        raise ValueError(f"{name} is not a value the service publishes") from None


def _time(nanoseconds: int) -> dt.datetime:
    if nanoseconds % 1000:
        raise ValueError(f"a time of {nanoseconds} ns is finer than the microseconds published")
    return domain.EPOCH + dt.timedelta(microseconds=nanoseconds // 1000)


def _threshold(message: dict | None) -> Threshold:
    if message is None:
        raise ValueError("a counting threshold is missing")
    return Threshold(domain.parse_fraction(message["fraction"]), message["inclusive"])


def spec_of(vote: dict) -> VoteSpec:
    rules = vote["rules"]
    if rules is None or vote["open_time"] is None or vote["close_time"] is None:
        raise ValueError("the vote has no counting rules or voting period")
    return VoteSpec(
        vote_id=vote["vote_id"],
        project_id=vote["project_id"],
        district_code=vote["district_code"],
        title=vote["title"],
        open_time=_time(vote["open_time"]),
        close_time=_time(vote["close_time"]),
        rules=CountingRules(
            quorum=_threshold(rules["quorum"]),
            special_majority=_threshold(rules["special_majority"]),
            ordinary_majority=_threshold(rules["ordinary_majority"]),
            non_voters_follow_majority=rules["non_voters_follow_majority"],
        ),
        matters=tuple(
            Matter(
                matter_id=m["matter_id"],
                type=_enum(_MATTER_TYPES, m["type"]),
                matter_class=_enum(_MATTER_CLASSES, m["matter_class"]),
                title=m["title"],
                text=m["text"],
                fund_amount_fen=m["fund_amount_fen"],
                unit_ids=m["unit_ids"],
            )
            for m in vote["matters"]
        ),
        algorithm_version=vote["algorithm_version"],
    )


def roll_entry_of(message: dict) -> RollEntry:
    return RollEntry(message["pseudonym"], message["area_cm2"])


def entry_of(message: dict) -> LogEntry:
    if message["cast_time"] is None:
        raise ValueError(f"entry {message['sequence']} has no cast time")
    return LogEntry(
        sequence=message["sequence"],
        pseudonym=message["pseudonym"],
        area_cm2=message["area_cm2"],
        choices=tuple((c["matter_id"], _enum(_CHOICES, c["choice"])) for c in message["choices"]),
        cast_time=_time(message["cast_time"]),
        channel=_enum(_CHANNELS, message["channel"]),
        paper_reference=message["paper_reference"],
        previous_hash=message["previous_hash"],
        entry_hash=message["entry_hash"],
    )


def result_of(message: dict) -> VoteResult:
    return VoteResult(
        roll_area_cm2=message["roll_area_cm2"],
        roll_owners=message["roll_owners"],
        ballots=message["ballots"],
        counted_ballots=message["counted_ballots"],
        matters=tuple(
            MatterResult(
                matter_id=m["matter_id"],
                matter_class=_enum(_MATTER_CLASSES, m["matter_class"]),
                participating_area_cm2=m["participating_area_cm2"],
                participating_owners=m["participating_owners"],
                yes_area_cm2=m["yes_area_cm2"],
                yes_owners=m["yes_owners"],
                no_area_cm2=m["no_area_cm2"],
                no_owners=m["no_owners"],
                abstain_area_cm2=m["abstain_area_cm2"],
                abstain_owners=m["abstain_owners"],
                quorum_reached=m["quorum_reached"],
                passed=m["passed"],
                deemed_choice=(
                    None
                    if m["deemed_choice"] == "CHOICE_UNSPECIFIED"
                    else _enum(_CHOICES, m["deemed_choice"])
                ),
                deemed_area_cm2=m["deemed_area_cm2"],
                deemed_owners=m["deemed_owners"],
            )
            for m in message["matters"]
        ),
    )


@dataclass(frozen=True)
class Outcome:
    status: int
    lines: tuple[str, ...]


def check(export: Export, roll_digest: str | None, receipt: str | None) -> Outcome:
    vote = export.vote
    if vote["state"] != "VOTE_STATE_CLOSED" or vote["result"] is None:
        return Outcome(
            REFUSED, (f"REFUSED: the vote is not closed ({vote['state']}): no result to check",)
        )
    try:
        spec = spec_of(vote)
        roll = tuple(roll_entry_of(r) for r in export.roll)
        entries = tuple(entry_of(e) for e in export.entries)
        published = result_of(vote["result"])
    except ValueError as e:
        return Outcome(REFUSED, (f"REFUSED: the export is malformed: {e}",))
    problem = domain.verify(spec, roll, entries, published, vote["roll_digest"], roll_digest)
    stated_roll = (vote["roll_owners"], vote["roll_area_cm2"])
    if not problem and stated_roll != (published.roll_owners, published.roll_area_cm2):
        problem = (
            f"the vote states a roll of {stated_roll[0]} owners and {stated_roll[1]} cm², "
            f"its result {published.roll_owners} owners and {published.roll_area_cm2} cm²"
        )
    if problem:
        return Outcome(REFUSED, (f"REFUSED: {problem}",))
    lines = [f"vote {spec.vote_id}: {len(entries)} ballots, {published.counted_ballots} counted"]
    lines += [_summary(m) for m in published.matters]
    if receipt is not None:
        status = domain.check_receipt(entries, receipt)
        if not status.in_log:
            return Outcome(REFUSED, (*lines, f"REFUSED: receipt {receipt} is not in the log"))
        if not status.last_ballot:
            return Outcome(
                REFUSED,
                (
                    *lines,
                    f"REFUSED: receipt {receipt} is entry {status.sequence}, replaced by the same "
                    f"owner's entry {status.replaced_by}: it is not counted",
                ),
            )
        lines.append(f"receipt {receipt} is entry {status.sequence}, its owner's last: counted")
    if roll_digest is None:
        lines.append(
            "VERIFIED (self-consistency only): no --roll-digest was given, so the roll and the "
            "vote's rules were held only to the digest the export itself states, not to the one "
            "published at opening"
        )
    else:
        lines.append(
            "VERIFIED: the roll matches the digest published at opening, the log chains from it, "
            "and the result recomputes"
        )
    return Outcome(VERIFIED, tuple(lines))


def _summary(m: MatterResult) -> str:
    outcome = "passed" if m.passed else "not passed"
    quorum = "quorum reached" if m.quorum_reached else "no quorum"
    return (
        f"  {m.matter_id} ({m.matter_class.lower()}): {outcome}, {quorum}; taking part "
        f"{m.participating_owners} owners, {m.participating_area_cm2} cm²; yes "
        f"{m.yes_owners} owners, {m.yes_area_cm2} cm²"
    )


def _digest(text: str) -> str:
    if not _HEX_DIGEST.fullmatch(text):
        raise argparse.ArgumentTypeError("a SHA-256 digest is 64 lowercase hex digits")
    return text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wuye.voting verify-tally",
        description="Check a closed vote's ballot log and recompute its result.",
    )
    parser.add_argument("log", help="GetBallotLog's answer as proto3 JSON")
    parser.add_argument(
        "--roll-digest",
        type=_digest,
        help="the roll digest published when the vote opened; without it only the export's "
        "self-consistency is checked",
    )
    parser.add_argument(
        "--receipt", type=_digest, help="also check that the ballot with this receipt counts"
    )
    args = parser.parse_args(argv)
    try:
        export = read_export(Path(args.log).read_bytes().decode())
    except OSError as e:
        print(f"cannot read {args.log}: {e.strerror or e}", file=sys.stderr)
        return UNREADABLE
    except UnicodeDecodeError as e:
        print(f"{args.log} is not UTF-8 ({e.reason} at byte {e.start})", file=sys.stderr)
        return UNREADABLE
    except Unreadable as e:
        print(f"{args.log}: {e}", file=sys.stderr)
        return UNREADABLE
    outcome = check(export, args.roll_digest, args.receipt)
    print("\n".join(outcome.lines))
    return outcome.status
