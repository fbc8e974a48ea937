"""`python -m wuye.voting verify-tally LOG.json [--roll-digest D] [--receipt R]`: anyone re-tallies
a closed vote from its public ballot log.

LOG is GetBallotLog's answer as proto3 JSON: one wuye.voting.v1.GetBallotLogResponse object, the
stream of them a generic gRPC client prints one after another, or a JSON array of them (the
HTTP gateway's form of a stream). The parts are merged as protobuf merges messages. The
verifier checks the chain, the roll and every entry, and recomputes the result with the vote's
own counting rules (services/voting/domain.py, steps 1-6). `--roll-digest` is the digest
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
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

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


def _enum(enum_type, prefix: str, pb_enum, value: int):
    """A wire enum's domain twin, e.g. CHOICE_YES -> Choice.YES; unspecified is malformed."""
    name = pb_enum.Name(value)
    if not name.startswith(prefix) or name == f"{prefix}UNSPECIFIED":
        raise ValueError(f"{name} is not a value the service publishes")
    return enum_type(name.removeprefix(prefix))


def _time(stamp: Timestamp) -> dt.datetime:
    if stamp.nanos % 1000:
        raise ValueError(f"{stamp.ToJsonString()} is finer than the microseconds published")
    return domain.EPOCH + dt.timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


def _threshold(message: pb.Threshold) -> Threshold:
    return Threshold(domain.parse_fraction(message.fraction), message.inclusive)


def spec_of(vote: pb.Vote) -> VoteSpec:
    return VoteSpec(
        vote_id=vote.vote_id,
        project_id=vote.project_id,
        district_code=vote.district_code,
        title=vote.title,
        open_time=_time(vote.open_time),
        close_time=_time(vote.close_time),
        rules=CountingRules(
            quorum=_threshold(vote.rules.quorum),
            special_majority=_threshold(vote.rules.special_majority),
            ordinary_majority=_threshold(vote.rules.ordinary_majority),
            non_voters_follow_majority=vote.rules.non_voters_follow_majority,
        ),
        matters=tuple(
            Matter(
                matter_id=m.matter_id,
                type=_enum(MatterType, "MATTER_TYPE_", pb.MatterType, m.type),
                matter_class=_enum(MatterClass, "MATTER_CLASS_", pb.MatterClass, m.matter_class),
                title=m.title,
                text=m.text,
                fund_amount_fen=m.fund_amount_fen,
                unit_ids=tuple(m.unit_ids),
            )
            for m in vote.matters
        ),
        algorithm_version=vote.algorithm_version,
    )


def entry_of(message: pb.LogEntry) -> LogEntry:
    return LogEntry(
        sequence=message.sequence,
        pseudonym=message.pseudonym,
        area_cm2=message.area_cm2,
        choices=tuple(
            (c.matter_id, _enum(Choice, "CHOICE_", pb.Choice, c.choice)) for c in message.choices
        ),
        cast_time=_time(message.cast_time),
        channel=_enum(Channel, "BALLOT_CHANNEL_", pb.BallotChannel, message.channel),
        paper_reference=message.paper_reference,
        previous_hash=message.previous_hash,
        entry_hash=message.entry_hash,
    )


def result_of(message: pb.VoteResult) -> VoteResult:
    return VoteResult(
        roll_area_cm2=message.roll_area_cm2,
        roll_owners=message.roll_owners,
        ballots=message.ballots,
        counted_ballots=message.counted_ballots,
        matters=tuple(
            MatterResult(
                matter_id=m.matter_id,
                matter_class=_enum(MatterClass, "MATTER_CLASS_", pb.MatterClass, m.matter_class),
                participating_area_cm2=m.participating_area_cm2,
                participating_owners=m.participating_owners,
                yes_area_cm2=m.yes_area_cm2,
                yes_owners=m.yes_owners,
                no_area_cm2=m.no_area_cm2,
                no_owners=m.no_owners,
                abstain_area_cm2=m.abstain_area_cm2,
                abstain_owners=m.abstain_owners,
                quorum_reached=m.quorum_reached,
                passed=m.passed,
                deemed_choice=(
                    _enum(Choice, "CHOICE_", pb.Choice, m.deemed_choice)
                    if m.deemed_choice
                    else None
                ),
                deemed_area_cm2=m.deemed_area_cm2,
                deemed_owners=m.deemed_owners,
            )
            for m in message.matters
        ),
    )


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


def read_export(text: str) -> pb.GetBallotLogResponse:
    """The merged export; raises Unreadable if the text is not one."""
    export = pb.GetBallotLogResponse()
    try:
        for part in _json_values(text):
            export.MergeFrom(json_format.ParseDict(part, pb.GetBallotLogResponse()))
    except (ValueError, RecursionError, json_format.ParseError) as e:
        raise Unreadable(f"not a GetBallotLog export: {e}") from e
    return export


@dataclass(frozen=True)
class Outcome:
    status: int
    lines: tuple[str, ...]


def check(export: pb.GetBallotLogResponse, roll_digest: str | None, receipt: str | None) -> Outcome:
    vote = export.vote
    if vote.state != pb.VOTE_STATE_CLOSED or not vote.HasField("result"):
        state = pb.VoteState.Name(vote.state)
        return Outcome(REFUSED, (f"REFUSED: the vote is not closed ({state}): no result to check",))
    try:
        spec = spec_of(vote)
        roll = tuple(RollEntry(r.pseudonym, r.area_cm2) for r in export.roll)
        entries = tuple(entry_of(e) for e in export.entries)
        published = result_of(vote.result)
    except ValueError as e:
        return Outcome(REFUSED, (f"REFUSED: the export is malformed: {e}",))
    problem = domain.verify(spec, roll, entries, published, vote.roll_digest, roll_digest)
    if not problem and (vote.roll_owners, vote.roll_area_cm2) != (
        published.roll_owners,
        published.roll_area_cm2,
    ):
        problem = (
            f"the vote states a roll of {vote.roll_owners} owners and {vote.roll_area_cm2} cm², "
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
