"""Rules of owners' voting (DOMAIN.md section 4, Civil Code Art. 278). Pure: no IO, no wire types.

Who counts. The roll is built from the registry's units when a vote opens: units with the same
owner key are one owner, with their exclusive areas summed; all the developer's unsold units of
the project are one owner (SPC interpretation on building ownership, Arts. 8-9). Every owner
counts once by headcount. In the published roll and log an owner appears only as a pseudonym,
HMAC-SHA256 under a key of the service's and the vote's id, so pseudonyms of one owner in two
votes cannot be linked and nobody can test a guessed owner against them.

Algorithm version 1: how anyone checks a vote's ballot log and recomputes its result.

Notation. canon(x) is x written as JSON with object keys sorted, no whitespace, non-ASCII
characters as themselves, as UTF-8 bytes; x only ever holds strings, integers, booleans, arrays
and objects (RFC 8785 gives the same bytes for such values). H(x) is SHA-256 of canon(x), as 64
lowercase hex digits. A time is an integer: microseconds since 1970-01-01T00:00:00Z (the RFC
3339 times of the export, parsed exactly; the service keeps no finer time). An enumeration is
its proto name without the type's prefix: CHOICE_YES is "YES", MATTER_TYPE_RAISE_FUND is
"RAISE_FUND", MATTER_CLASS_SPECIAL is "SPECIAL", BALLOT_CHANNEL_PAPER is "PAPER". A threshold
is [fraction, inclusive] with the fraction written "p/q" in lowest terms. int64 fields are
printed as strings in proto3 JSON; in canon they are integers.

1. The roll digest D = H({"algorithm_version": 1, "vote_id", "project_id", "district_code",
   "title", "open_time", "close_time", "rules": {"quorum", "special_majority",
   "ordinary_majority" (thresholds), "non_voters_follow_majority" (boolean)}, "matters": [{
   "matter_id", "type", "matter_class", "title", "text", "fund_amount_fen", "unit_ids": [...]}
   in the vote's order], "roll": [[pseudonym, area_cm2] for each owner, ordered by pseudonym]}).
   D must equal the digest published when the vote opened (the verifier's --roll-digest) and
   the digest the export states. Pseudonyms on the roll are distinct and every area is a
   positive integer.
2. The chain. The n-th entry of the log (n = 1, 2, ...) has sequence n; its previous_hash is D
   for the first entry and the (n-1)-th entry's entry_hash after; and its entry_hash is
   H({"vote_id", "sequence", "pseudonym", "area_cm2", "choices": [[matter_id, choice] in the
   entry's order], "cast_time", "channel", "paper_reference", "previous_hash"}).
3. Each entry: its pseudonym is on the roll and area_cm2 is that owner's area there; it has
   exactly one choice for each of the vote's matters and none for anything else; open_time <=
   cast_time < close_time, and no entry is earlier than the one before it.
4. Only the last ballot counts: of an owner's entries, the one with the highest sequence. The
   number of entries is `ballots`, the number of owners with an entry `counted_ballots`.
5. The count of matter m over the counted ballots that have a choice for m: owners and area
   voting yes (Yn, Ya), no (Nn, Na), abstaining (An, Aa); taking part Pn = Yn + Nn + An and
   Pa = Ya + Na + Aa. If non_voters_follow_majority: the roll's owners with no counted choice
   for m are "deemed" and join yes when Yn > Nn and Ya > Na, no when Nn > Yn and Na > Ya,
   nobody otherwise; the deemed join the side's totals and Pn, Pa. The roll's totals are Tn
   owners and Ta area. meets(x, of, [p/q, inclusive]) is x*q >= p*of if inclusive, else
   x*q > p*of (integers: exactly 2/3 and 3/4 pass at inclusive thresholds, exactly 1/2 fails a
   strict one).
      quorum_reached = meets(Pa, Ta, quorum) and meets(Pn, Tn, quorum)
      passed = quorum_reached and Pn > 0 and meets(Ya, Pa, M) and meets(Yn, Pn, M)
   where M is special_majority for a SPECIAL matter and ordinary_majority otherwise.
6. The published result must equal the recomputed one in every field, and the roll's totals
   the vote stated at opening (roll_owners, roll_area_cm2) the result's.
A receipt R is counted when some entry's entry_hash is R and no later entry has its pseudonym.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from fractions import Fraction
from json.encoder import encode_basestring
from typing import NamedTuple, TypeVar

from wuye.core.errors import FailedPrecondition, Violations
from wuye.core.pii import Pseudonymizer

ALGORITHM_VERSION = 1
# The identity all of a project's developer-unsold units vote under, whatever their owner keys.
DEVELOPER_UNSOLD = "developer-unsold"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_FRACTION = re.compile(r"([1-9][0-9]{0,8})/([1-9][0-9]{0,8})", re.ASCII)


class MatterType(StrEnum):
    RULES_OF_PROCEDURE = "RULES_OF_PROCEDURE"
    COVENANT = "COVENANT"
    ELECT_COMMITTEE = "ELECT_COMMITTEE"
    HIRE_ENTERPRISE = "HIRE_ENTERPRISE"
    USE_FUND = "USE_FUND"
    RAISE_FUND = "RAISE_FUND"
    REBUILD = "REBUILD"
    CHANGE_COMMON_USE = "CHANGE_COMMON_USE"
    COMMON_BUSINESS = "COMMON_BUSINESS"
    OTHER_MAJOR = "OTHER_MAJOR"


FUND_MATTERS = frozenset({MatterType.USE_FUND, MatterType.RAISE_FUND})


class MatterClass(StrEnum):
    SPECIAL = "SPECIAL"
    ORDINARY = "ORDINARY"


class Choice(StrEnum):
    YES = "YES"
    NO = "NO"
    ABSTAIN = "ABSTAIN"


class Channel(StrEnum):
    ONLINE = "ONLINE"
    PAPER = "PAPER"


class VoteState(StrEnum):
    SCHEDULED = "SCHEDULED"
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    CANCELLED = "CANCELLED"


# ---------------------------------------------------------------- rules


@dataclass(frozen=True)
class Threshold:
    fraction: Fraction
    # True: met at the fraction itself ("以上", Civil Code Art. 1259); False: only above it
    # ("过半数").
    inclusive: bool

    def met(self, part: int, whole: int) -> bool:
        left = part * self.fraction.denominator
        right = self.fraction.numerator * whole
        return left >= right if self.inclusive else left > right

    def canonical(self) -> list:
        return [format_fraction(self.fraction), self.inclusive]


@dataclass(frozen=True)
class CountingRules:
    """What a vote's count depends on: fixed at creation and covered by the roll digest."""

    quorum: Threshold = Threshold(Fraction(2, 3), inclusive=True)
    special_majority: Threshold = Threshold(Fraction(3, 4), inclusive=True)
    ordinary_majority: Threshold = Threshold(Fraction(1, 2), inclusive=False)
    # Local rules that count non-voters with the majority defeat the quorum rule: off by default.
    non_voters_follow_majority: bool = False

    def majority_for(self, matter_class: MatterClass) -> Threshold:
        if matter_class is MatterClass.SPECIAL:
            return self.special_majority
        return self.ordinary_majority

    def canonical(self) -> dict:
        return {
            "quorum": self.quorum.canonical(),
            "special_majority": self.special_majority.canonical(),
            "ordinary_majority": self.ordinary_majority.canonical(),
            "non_voters_follow_majority": self.non_voters_follow_majority,
        }


# Civil Code Art. 278 (6)-(8): raising the fund, rebuilding, changing the use of common parts or
# running a business in them.
DEFAULT_SPECIAL_MATTERS = frozenset(
    {
        MatterType.RAISE_FUND,
        MatterType.REBUILD,
        MatterType.CHANGE_COMMON_USE,
        MatterType.COMMON_BUSINESS,
    }
)


@dataclass(frozen=True)
class VoteRules:
    """The rules a city configures; defaults from DOMAIN.md section 4."""

    counting: CountingRules = CountingRules()
    special_matters: frozenset[MatterType] = DEFAULT_SPECIAL_MATTERS
    # Days between creating a vote and opening it (Beijing 2024 Art. 35).
    notice_days: int = 15
    # Length of the voting period (Hangzhou 2021).
    min_voting_days: int = 5
    max_voting_days: int = 60
    # An owner may ask a court to revoke a decision within this many years (Civil Code Art. 280).
    challenge_years: int = 1

    def class_of(self, matter_type: MatterType) -> MatterClass:
        if matter_type in self.special_matters:
            return MatterClass.SPECIAL
        return MatterClass.ORDINARY


def parse_fraction(text: str) -> Fraction:
    """A threshold as published: "p/q" in lowest terms, 0 < p/q <= 1."""
    match = _FRACTION.fullmatch(text)
    if not match:
        raise ValueError(f"{text[:40]!r} is not a fraction written p/q")
    value = Fraction(int(match[1]), int(match[2]))
    if format_fraction(value) != text or value > 1:
        raise ValueError(f"{text!r} is not a fraction in lowest terms between 0 and 1")
    return value


def format_fraction(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


# ---------------------------------------------------------------- votes and their matters


@dataclass(frozen=True)
class Matter:
    matter_id: str
    type: MatterType
    matter_class: MatterClass
    title: str
    text: str
    fund_amount_fen: int = 0
    unit_ids: tuple[str, ...] = ()

    def canonical(self) -> dict:
        return {
            "matter_id": self.matter_id,
            "type": self.type.value,
            "matter_class": self.matter_class.value,
            "title": self.title,
            "text": self.text,
            "fund_amount_fen": self.fund_amount_fen,
            "unit_ids": list(self.unit_ids),
        }


@dataclass(frozen=True)
class MatterDraft:
    """A matter as a caller proposes it; `type` None when the request left it unspecified."""

    type: MatterType | None
    title: str
    text: str
    fund_amount_fen: int = 0
    unit_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class VoteSpec:
    """What a vote is: its parameters and matters, fixed at creation."""

    vote_id: str
    project_id: str
    district_code: str
    title: str
    open_time: dt.datetime
    close_time: dt.datetime
    rules: CountingRules
    matters: tuple[Matter, ...]
    algorithm_version: int = ALGORITHM_VERSION

    def matter(self, matter_id: str) -> Matter | None:
        return next((m for m in self.matters if m.matter_id == matter_id), None)


def plan_matters(
    drafts: Sequence[MatterDraft], rules: VoteRules, v: Violations
) -> tuple[Matter, ...]:
    """The matters of a new vote, numbered M1, M2, ... and classed by the rules; every problem
    is added to `v` under the field `vote.matters[i]...`."""
    v.check(bool(drafts), "vote.matters", "a vote decides at least one matter")
    matters = []
    for n, draft in enumerate(drafts):
        where = f"vote.matters[{n}]"
        v.check(draft.type is not None, f"{where}.type", "must be one of Art. 278's matter types")
        v.check(bool(draft.title.strip()), f"{where}.title", "must not be empty")
        v.check(bool(draft.text.strip()), f"{where}.text", "owners decide on a text: give it")
        if draft.type in FUND_MATTERS:
            v.check(
                draft.fund_amount_fen > 0,
                f"{where}.fund_amount_fen",
                "a fund matter names its amount in fen",
            )
        else:
            v.check(
                draft.fund_amount_fen == 0,
                f"{where}.fund_amount_fen",
                "only fund matters have an amount",
            )
            v.check(
                not draft.unit_ids, f"{where}.unit_ids", "only fund matters name units concerned"
            )
        v.check(
            len(set(draft.unit_ids)) == len(draft.unit_ids),
            f"{where}.unit_ids",
            "names a unit twice",
        )
        if draft.type is not None:
            matters.append(
                Matter(
                    matter_id=f"M{n + 1}",
                    type=draft.type,
                    matter_class=rules.class_of(draft.type),
                    title=draft.title.strip(),
                    text=draft.text,
                    fund_amount_fen=draft.fund_amount_fen,
                    unit_ids=tuple(draft.unit_ids),
                )
            )
    return tuple(matters)


def check_schedule(
    created_at: dt.datetime,
    open_time: dt.datetime | None,
    close_time: dt.datetime | None,
    rules: VoteRules,
    v: Violations,
) -> None:
    """Owners get the notice period before a vote opens, and a voting period within bounds."""
    if not v.check(open_time is not None, "vote.open_time", "is required"):
        return
    if not v.check(close_time is not None, "vote.close_time", "is required"):
        return
    v.check(
        open_time >= created_at + dt.timedelta(days=rules.notice_days),
        "vote.open_time",
        f"owners get {rules.notice_days} days of notice: open on or after "
        f"{(created_at + dt.timedelta(days=rules.notice_days)).isoformat()}",
    )
    period = close_time - open_time
    v.check(
        dt.timedelta(days=rules.min_voting_days)
        <= period
        <= dt.timedelta(days=rules.max_voting_days),
        "vote.close_time",
        f"the voting period is {rules.min_voting_days} to {rules.max_voting_days} days",
    )


# One state machine: allowed transitions as data, and one function that applies them.
TRANSITIONS: Mapping[VoteState, frozenset[VoteState]] = {
    VoteState.SCHEDULED: frozenset({VoteState.OPEN, VoteState.CANCELLED}),
    VoteState.OPEN: frozenset({VoteState.CLOSED, VoteState.CANCELLED}),
    VoteState.CLOSED: frozenset(),
    VoteState.CANCELLED: frozenset(),
}


def transition(vote_id: str, state: VoteState, to: VoteState) -> VoteState:
    if to not in TRANSITIONS[state]:
        raise FailedPrecondition(
            f"VOTE_{state.value}",
            f"vote {vote_id} is {state.value.lower()}: it cannot become {to.value.lower()}",
            vote_id=vote_id,
        )
    return to


def challenge_deadline(decision_date: dt.date, rules: VoteRules) -> dt.date:
    """The last day to ask a court to revoke a decision; a 29 February decision's falls on
    28 February."""
    year = decision_date.year + rules.challenge_years
    try:
        return decision_date.replace(year=year)
    except ValueError:
        return decision_date.replace(year=year, day=28)


# ---------------------------------------------------------------- the roll


@dataclass(frozen=True)
class RollUnit:
    """A unit as the registry announced it."""

    unit_id: str
    area_cm2: int
    owner_key: str
    developer_unsold: bool = False


@dataclass(frozen=True)
class Voter:
    """One owner on a vote's roll; only the pseudonym and the area are published."""

    pseudonym: str
    area_cm2: int
    # Keys under which callers vote as this owner (the developer's may be several).
    owner_keys: tuple[str, ...]
    unit_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RollEntry:
    pseudonym: str
    area_cm2: int


def pseudonymizer(key: bytes, vote_id: str) -> Pseudonymizer:
    """The keyed hash of a vote's pseudonyms: a key of its own for every vote."""
    return Pseudonymizer(key, purpose=f"ballot-log:{vote_id}")


def build_roll(units: Iterable[RollUnit], pseudonym_of: Callable[[str], str]) -> tuple[Voter, ...]:
    """Owners from units: one per owner key, all developer-unsold units as one; ordered by
    pseudonym as published."""
    groups: dict[str, list[RollUnit]] = {}
    for unit in units:
        if unit.area_cm2 <= 0:
            raise ValueError(f"unit {unit.unit_id} has no exclusive area")
        identity = DEVELOPER_UNSOLD if unit.developer_unsold else unit.owner_key
        groups.setdefault(identity, []).append(unit)
    voters = [
        Voter(
            pseudonym=pseudonym_of(identity),
            area_cm2=sum(u.area_cm2 for u in members),
            owner_keys=tuple(sorted({u.owner_key for u in members})),
            unit_ids=tuple(sorted(u.unit_id for u in members)),
        )
        for identity, members in groups.items()
    ]
    voters.sort(key=lambda voter: voter.pseudonym)
    if len({voter.pseudonym for voter in voters}) != len(voters):
        raise ValueError("two owners have one pseudonym")
    return tuple(voters)


def published_roll(voters: Iterable[Voter]) -> tuple[RollEntry, ...]:
    return tuple(sorted((RollEntry(v.pseudonym, v.area_cm2) for v in voters), key=_by_pseudonym))


def _by_pseudonym(entry: RollEntry) -> str:
    return entry.pseudonym


_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# A string as _CANONICAL_JSON writes it (the function it uses when ensure_ascii is off).
_json_string = encode_basestring


def _canon(value: object) -> bytes:
    return _CANONICAL_JSON.encode(value).encode()


def _hash(value: object) -> str:
    return hashlib.sha256(_canon(value)).hexdigest()


def micros(time: dt.datetime) -> int:
    """Microseconds since the Unix epoch, exactly."""
    return (time - EPOCH) // _MICROSECOND


def roll_digest(spec: VoteSpec, roll: Sequence[RollEntry]) -> str:
    """Step 1 of the algorithm: the digest published when the vote opens."""
    return _hash(
        {
            "algorithm_version": spec.algorithm_version,
            "vote_id": spec.vote_id,
            "project_id": spec.project_id,
            "district_code": spec.district_code,
            "title": spec.title,
            "open_time": micros(spec.open_time),
            "close_time": micros(spec.close_time),
            "rules": spec.rules.canonical(),
            "matters": [m.canonical() for m in spec.matters],
            "roll": [[r.pseudonym, r.area_cm2] for r in sorted(roll, key=_by_pseudonym)],
        }
    )


# ---------------------------------------------------------------- ballots and the log


@dataclass(frozen=True, slots=True)
class LogEntry:
    sequence: int
    pseudonym: str
    area_cm2: int
    choices: tuple[tuple[str, Choice], ...]
    cast_time: dt.datetime
    channel: Channel
    paper_reference: str
    previous_hash: str
    entry_hash: str


# canon of step 2's object, its keys in sorted order: the bytes _canon gives, written without
# building the object and encoding it generically, since a log's every entry is hashed.
_ENTRY_CANON = (
    '{"area_cm2":%d,"cast_time":%d,"channel":%s,"choices":[%s],"paper_reference":%s,'
    '"previous_hash":%s,"pseudonym":%s,"sequence":%d,"vote_id":%s}'
)


def entry_hash(vote_id: str, entry: LogEntry) -> str:
    """Step 2: the hash of an entry (its own entry_hash field aside): the ballot's receipt."""
    choices = ",".join(
        [
            f"[{_json_string(matter_id)},{_json_string(choice.value)}]"
            for matter_id, choice in entry.choices
        ]
    )
    canonical = _ENTRY_CANON % (
        entry.area_cm2,
        micros(entry.cast_time),
        _json_string(entry.channel.value),
        choices,
        _json_string(entry.paper_reference),
        _json_string(entry.previous_hash),
        _json_string(entry.pseudonym),
        entry.sequence,
        _json_string(vote_id),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_choices(
    spec: VoteSpec, choices: Sequence[tuple[str, Choice | None]], v: Violations, where: str
) -> tuple[tuple[str, Choice], ...]:
    """A ballot's choices, in the vote's order of matters; problems go to `v`."""
    matter_ids = [m.matter_id for m in spec.matters]
    chosen: dict[str, Choice] = {}
    for n, (matter_id, choice) in enumerate(choices):
        if matter_id not in matter_ids:
            v.add(f"{where}[{n}].matter_id", "is not a matter of this vote")
            continue
        if matter_id in chosen:
            v.add(f"{where}[{n}].matter_id", "has a choice already")
        if choice is None:
            v.add(f"{where}[{n}].choice", "is YES, NO or ABSTAIN")
        else:
            chosen.setdefault(matter_id, choice)
    named = {matter_id for matter_id, _ in choices}
    missing = [m for m in matter_ids if m not in named]
    if missing:
        v.add(
            where,
            f"has no choice for {', '.join(missing)}: a ballot answers every matter, "
            "ABSTAIN included",
        )
    return tuple((m, chosen[m]) for m in matter_ids if m in chosen)


def check_open(spec: VoteSpec, state: VoteState, now: dt.datetime) -> None:
    """Ballots are accepted only while the vote is open, between its opening and closing."""
    if state is not VoteState.OPEN or not spec.open_time <= now < spec.close_time:
        raise FailedPrecondition(
            "VOTE_NOT_OPEN",
            f"vote {spec.vote_id} accepts ballots from {spec.open_time.isoformat()} until "
            f"{spec.close_time.isoformat()}, and is {state.value.lower()}",
            vote_id=spec.vote_id,
        )


def append_ballot(
    spec: VoteSpec,
    head: str,
    sequence: int,
    voter: Voter,
    choices: tuple[tuple[str, Choice], ...],
    cast_time: dt.datetime,
    channel: Channel,
    paper_reference: str = "",
) -> LogEntry:
    """The log entry of an accepted ballot. `head` is the last entry's hash (the roll digest
    before the first ballot); `sequence` the number of entries so far plus one."""
    unhashed = LogEntry(
        sequence=sequence,
        pseudonym=voter.pseudonym,
        area_cm2=voter.area_cm2,
        choices=choices,
        cast_time=cast_time,
        channel=channel,
        paper_reference=paper_reference,
        previous_hash=head,
        entry_hash="",
    )
    return _with_hash(spec.vote_id, unhashed)


def _with_hash(vote_id: str, entry: LogEntry) -> LogEntry:
    return replace(entry, entry_hash=entry_hash(vote_id, entry))


# ---------------------------------------------------------------- the count


@dataclass(frozen=True)
class MatterResult:
    matter_id: str
    matter_class: MatterClass
    participating_area_cm2: int
    participating_owners: int
    yes_area_cm2: int
    yes_owners: int
    no_area_cm2: int
    no_owners: int
    abstain_area_cm2: int
    abstain_owners: int
    quorum_reached: bool
    passed: bool
    deemed_choice: Choice | None = None
    deemed_area_cm2: int = 0
    deemed_owners: int = 0


@dataclass(frozen=True)
class VoteResult:
    roll_area_cm2: int
    roll_owners: int
    ballots: int
    counted_ballots: int
    matters: tuple[MatterResult, ...] = field(default_factory=tuple)


class CountedBallot(NamedTuple):
    """What the count reads of a log entry (steps 4 and 5): the service counts 60,000 ballots
    at a close without rebuilding each whole entry."""

    sequence: int
    pseudonym: str
    choices: tuple[tuple[str, Choice], ...]


Ballot = TypeVar("Ballot", LogEntry, CountedBallot)


def last_ballots(entries: Iterable[Ballot]) -> dict[str, Ballot]:
    """Step 4: each owner's entry with the highest sequence, whatever order entries come in."""
    last: dict[str, LogEntry] = {}
    for entry in entries:
        seen = last.get(entry.pseudonym)
        if seen is None or entry.sequence > seen.sequence:
            last[entry.pseudonym] = entry
    return last


def count(
    spec: VoteSpec, roll: Sequence[RollEntry], entries: Sequence[LogEntry] | Sequence[CountedBallot]
) -> VoteResult:
    """Step 5: the result of every matter from the owners' last ballots. Weights come from the
    roll; an entry whose pseudonym is not on it is an error of the caller (ValueError)."""
    areas = {r.pseudonym: r.area_cm2 for r in roll}
    index = {m.matter_id: n for n, m in enumerate(spec.matters)}
    # Per matter: yes owners, yes area, no owners, no area, abstain owners, abstain area.
    sums = [[0, 0, 0, 0, 0, 0] for _ in spec.matters]
    slot = {Choice.YES: 0, Choice.NO: 2, Choice.ABSTAIN: 4}
    last = last_ballots(entries)
    for pseudonym, entry in last.items():
        area = areas.get(pseudonym)
        if area is None:
            raise ValueError(f"entry {entry.sequence}: {pseudonym} is not on the roll")
        for matter_id, choice in entry.choices:
            tally = sums[index[matter_id]]
            k = slot[choice]
            tally[k] += 1
            tally[k + 1] += area
    roll_owners, roll_area = len(areas), sum(areas.values())
    return VoteResult(
        roll_area_cm2=roll_area,
        roll_owners=roll_owners,
        ballots=len(entries),
        counted_ballots=len(last),
        matters=tuple(
            _decide(matter, tally, roll_owners, roll_area, spec.rules)
            for matter, tally in zip(spec.matters, sums, strict=True)
        ),
    )


def _decide(
    matter: Matter, tally: list[int], roll_owners: int, roll_area: int, rules: CountingRules
) -> MatterResult:
    yes_n, yes_a, no_n, no_a, abstain_n, abstain_a = tally
    deemed, deemed_n, deemed_a = None, 0, 0
    if rules.non_voters_follow_majority:
        absent_n = roll_owners - (yes_n + no_n + abstain_n)
        absent_a = roll_area - (yes_a + no_a + abstain_a)
        if yes_n > no_n and yes_a > no_a:
            deemed, deemed_n, deemed_a = Choice.YES, absent_n, absent_a
            yes_n, yes_a = yes_n + absent_n, yes_a + absent_a
        elif no_n > yes_n and no_a > yes_a:
            deemed, deemed_n, deemed_a = Choice.NO, absent_n, absent_a
            no_n, no_a = no_n + absent_n, no_a + absent_a
    part_n = yes_n + no_n + abstain_n
    part_a = yes_a + no_a + abstain_a
    quorum = rules.quorum.met(part_a, roll_area) and rules.quorum.met(part_n, roll_owners)
    majority = rules.majority_for(matter.matter_class)
    return MatterResult(
        matter_id=matter.matter_id,
        matter_class=matter.matter_class,
        participating_area_cm2=part_a,
        participating_owners=part_n,
        yes_area_cm2=yes_a,
        yes_owners=yes_n,
        no_area_cm2=no_a,
        no_owners=no_n,
        abstain_area_cm2=abstain_a,
        abstain_owners=abstain_n,
        quorum_reached=quorum,
        passed=quorum
        and part_n > 0
        and majority.met(yes_a, part_a)
        and majority.met(yes_n, part_n),
        deemed_choice=deemed,
        deemed_area_cm2=deemed_a,
        deemed_owners=deemed_n,
    )


# ---------------------------------------------------------------- verification


@dataclass(frozen=True)
class ReceiptStatus:
    in_log: bool
    last_ballot: bool = False
    sequence: int = 0
    # The sequence of the owner's later ballot that replaced this one.
    replaced_by: int = 0


def check_receipt(entries: Iterable[LogEntry], receipt: str) -> ReceiptStatus:
    found: LogEntry | None = None
    replaced_by = 0
    for entry in entries:
        if found is None and entry.entry_hash == receipt:
            found = entry
        elif found is not None and entry.pseudonym == found.pseudonym:
            replaced_by = entry.sequence
    if found is None:
        return ReceiptStatus(in_log=False)
    return ReceiptStatus(True, replaced_by == 0, found.sequence, replaced_by)


def verify(
    spec: VoteSpec,
    roll: Sequence[RollEntry],
    entries: Sequence[LogEntry],
    published: VoteResult,
    stated_digest: str,
    anchor_digest: str | None,
) -> str | None:
    """Steps 1 to 6: the first way the export departs from the algorithm, or None if none.
    `stated_digest` is the digest the export states; `anchor_digest` the one published at the
    opening (None: only the export's self-consistency is checked)."""
    return next(_problems(spec, roll, entries, published, stated_digest, anchor_digest), None)


def _problems(
    spec: VoteSpec,
    roll: Sequence[RollEntry],
    entries: Sequence[LogEntry],
    published: VoteResult,
    stated_digest: str,
    anchor_digest: str | None,
) -> Iterator[str]:
    if spec.algorithm_version != ALGORITHM_VERSION:
        yield f"algorithm version {spec.algorithm_version} is not known here"
        return
    yield from _roll_problems(roll)
    digest = roll_digest(spec, roll)
    if anchor_digest is not None and digest != anchor_digest:
        yield (
            f"the vote's parameters and roll hash to {digest}, not to the digest published at "
            f"opening ({anchor_digest})"
        )
    if digest != stated_digest:
        yield f"the vote's parameters and roll hash to {digest}, not to the stated {stated_digest}"
    yield from _log_problems(spec, roll, entries, digest)
    recount = count(spec, roll, entries)
    if recount != published:
        yield _first_difference(recount, published)


def _roll_problems(roll: Sequence[RollEntry]) -> Iterator[str]:
    seen: set[str] = set()
    for n, owner in enumerate(roll):
        if owner.area_cm2 <= 0:
            yield f"roll entry {n + 1} ({owner.pseudonym}) has no area"
        if owner.pseudonym in seen:
            yield f"roll entry {n + 1}: {owner.pseudonym} is on the roll twice"
        seen.add(owner.pseudonym)
    if not roll:
        yield "the roll is empty"


def _log_problems(
    spec: VoteSpec, roll: Sequence[RollEntry], entries: Sequence[LogEntry], digest: str
) -> Iterator[str]:
    areas = {r.pseudonym: r.area_cm2 for r in roll}
    matter_ids = {m.matter_id for m in spec.matters}
    head, previous_time = digest, spec.open_time
    for n, entry in enumerate(entries, start=1):
        where = f"entry {n}"
        if entry.sequence != n:
            yield f"{where} has sequence {entry.sequence}: an entry is missing or out of place"
        if entry.previous_hash != head:
            yield f"{where} does not link to the entry before it ({entry.previous_hash})"
        if entry_hash(spec.vote_id, entry) != entry.entry_hash:
            yield f"{where}'s content does not hash to its entry hash {entry.entry_hash}"
        area = areas.get(entry.pseudonym)
        if area is None:
            yield f"{where}: {entry.pseudonym} is not on the roll"
        elif area != entry.area_cm2:
            yield f"{where}: {entry.pseudonym} weighs {area} cm² on the roll, not {entry.area_cm2}"
        ids = [matter_id for matter_id, _ in entry.choices]
        if len(ids) != len(matter_ids) or set(ids) != matter_ids:
            yield f"{where} does not have exactly one choice for each matter of the vote"
        if not previous_time <= entry.cast_time < spec.close_time:
            yield (
                f"{where} was cast at {entry.cast_time.isoformat()}: before the entry ahead of it "
                "or outside the voting period"
            )
        head, previous_time = entry.entry_hash, entry.cast_time


def _first_difference(recount: VoteResult, published: VoteResult) -> str:
    for name in ("roll_area_cm2", "roll_owners", "ballots", "counted_ballots"):
        if getattr(recount, name) != getattr(published, name):
            return (
                f"the result states {name} {getattr(published, name)}, the log gives "
                f"{getattr(recount, name)}"
            )
    if len(recount.matters) != len(published.matters):
        return f"the result has {len(published.matters)} matters, the vote {len(recount.matters)}"
    for mine, theirs in zip(recount.matters, published.matters, strict=True):
        for name in MatterResult.__dataclass_fields__:
            if getattr(mine, name) != getattr(theirs, name):
                return (
                    f"matter {mine.matter_id}: the result states {name} {getattr(theirs, name)}, "
                    f"the log gives {getattr(mine, name)}"
                )
    return "the result differs from the recount"
