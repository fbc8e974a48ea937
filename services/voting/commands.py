"""Voting use cases. Each writes its rows and its events in one transaction, after taking the
row lock of the vote it changes.

Ballots are appended by one thread per server (`BallotAppender`): the hash chain makes a vote's
appends follow one another, so the thread takes every ballot waiting for a vote and appends
them in one transaction under the vote's row lock, instead of each call waiting its turn for
the lock and a commit of its own.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from google.protobuf.message import Message
from sqlalchemy import Connection, Engine

from wuye.core.auth import Role
from wuye.core.consumer import EventMeta, Handler
from wuye.core.context import current
from wuye.core.db import reader
from wuye.core.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Violations,
)
from wuye.core.events import Event, add_events
from wuye.core.ids import new_id
from wuye.core.wire import timestamp, to_date
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.registry.v1 import registry_service_pb2 as registry_pb
from wuye.voting import domain, metrics, store
from wuye.voting.domain import (
    Channel,
    Choice,
    LogEntry,
    MatterDraft,
    RollEntry,
    RollUnit,
    Voter,
    VoteResult,
    VoteSpec,
    VoteState,
)
from wuye.voting.settings import VotingSettings
from wuye.voting.store import RollMember, StoredVote
from wuye.voting.v1 import events_pb2 as ev
from wuye.voting.v1 import voting_service_pb2 as pb

VOTE_TOPIC = "wuye.voting.vote.v1"
TOPICS = (VOTE_TOPIC,)
READ_MODEL_TOPICS = ("wuye.registry.project.v1",)
_DEVELOPER_UNSOLD_KIND = registry_pb.OWNER_KIND_DEVELOPER_UNSOLD


def _event(vote_id: str, district: str, message: Message) -> Event:
    return Event.of_aggregate(VOTE_TOPIC, vote_id, district, message)


def wire_enum(enum_type, prefix: str, value) -> int:
    return enum_type.Value(f"{prefix}_{value.value}") if value is not None else 0


def result_message(result: VoteResult, count_time: dt.datetime | None) -> pb.VoteResult:
    message = pb.VoteResult(
        roll_area_cm2=result.roll_area_cm2,
        roll_owners=result.roll_owners,
        ballots=result.ballots,
        counted_ballots=result.counted_ballots,
        matters=[matter_result_message(m) for m in result.matters],
    )
    if count_time is not None:
        message.count_time.CopyFrom(timestamp(count_time))
    return message


def matter_result_message(m: domain.MatterResult) -> pb.MatterResult:
    return pb.MatterResult(
        matter_id=m.matter_id,
        matter_class=wire_enum(pb.MatterClass, "MATTER_CLASS", m.matter_class),
        participating_area_cm2=m.participating_area_cm2,
        participating_owners=m.participating_owners,
        yes_area_cm2=m.yes_area_cm2,
        yes_owners=m.yes_owners,
        no_area_cm2=m.no_area_cm2,
        no_owners=m.no_owners,
        abstain_area_cm2=m.abstain_area_cm2,
        abstain_owners=m.abstain_owners,
        deemed_choice=wire_enum(pb.Choice, "CHOICE", m.deemed_choice),
        deemed_area_cm2=m.deemed_area_cm2,
        deemed_owners=m.deemed_owners,
        quorum_reached=m.quorum_reached,
        passed=m.passed,
    )


# ---------------------------------------------------------------- ballots


@dataclass(frozen=True)
class Ballot:
    """A ballot offered to a vote's log: by an owner online, or recorded from paper."""

    vote_id: str
    request_id: str
    member: RollMember
    choices: tuple[tuple[str, Choice], ...]
    channel: Channel
    paper_reference: str = ""


@dataclass(frozen=True)
class Accepted:
    entry: LogEntry
    # The receipt of the owner's ballot this one replaced; empty for a first ballot.
    replaced_receipt: str


class _Waiting:
    """A ballot on its way to the log; `done` is held until it is answered (a bare lock: the
    cheapest thing a thread can sleep on)."""

    __slots__ = ("accepted", "ballot", "done", "error")

    def __init__(self, ballot: Ballot) -> None:
        self.ballot = ballot
        self.done = threading.Lock()
        self.done.acquire()
        self.accepted: Accepted | None = None
        self.error: BaseException | None = None


class BallotAppender:
    """Appends ballots to their votes' logs from one thread, a batch per vote and transaction.
    `append` blocks its caller until its ballot is committed (or refused)."""

    def __init__(
        self, engine: Engine, clock: Callable[[], dt.datetime], batch: int, specs: SpecCache
    ) -> None:
        self._log = store.LogWriter(engine)
        self._clock = clock
        self._batch = batch
        self._specs = specs
        self._queue: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ballot-appender", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def append(self, ballot: Ballot) -> Accepted:
        self.start()
        waiting = _Waiting(ballot)
        self._queue.put(waiting)
        waiting.done.acquire()
        if waiting.error is not None:
            raise waiting.error
        assert waiting.accepted is not None
        return waiting.accepted

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._log.close()
                return
            taken = [first]
            while len(taken) < self._batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                taken.append(more)
            by_vote: dict[str, list[_Waiting]] = {}
            for waiting in taken:
                by_vote.setdefault(waiting.ballot.vote_id, []).append(waiting)
            for vote_id, batch in by_vote.items():
                try:
                    self._append(vote_id, batch)
                except Exception as e:  # the transaction failed: every ballot of it did
                    for waiting in batch:
                        if waiting.error is None:
                            waiting.accepted, waiting.error = None, e
                for waiting in batch:
                    waiting.done.release()
                outcomes = Counter((w.ballot.channel, w.error is None) for w in batch)
                for (channel, accepted), count in outcomes.items():
                    outcome = "accepted" if accepted else "refused"
                    metrics.BALLOTS.labels(channel.value.lower(), outcome).inc(count)

    def _append(self, vote_id: str, batch: list[_Waiting]) -> None:
        spec = self._specs.get(vote_id)

        def extend(
            vote: store.Head,
            earlier: dict[str, list[store.Earlier]],
            entry_at: Callable[[int], LogEntry],
        ) -> list[tuple[LogEntry, str]]:
            now = self._clock()
            try:
                domain.check_open(spec, vote.state, now)
            except DomainError as e:
                for waiting in batch:
                    waiting.error = e
                return []
            head, sequence = vote.head, vote.sequence
            # A log's times never go back, whatever the clocks of the servers did.
            cast_time = max(now, domain.EPOCH + dt.timedelta(microseconds=vote.last_cast_micros))
            new: list[tuple[LogEntry, str]] = []
            # This batch's entries by sequence: a retry may name one of them.
            appended: dict[int, LogEntry] = {}
            for waiting in batch:
                ballot = waiting.ballot
                own = earlier.setdefault(ballot.member.pseudonym, [])
                retried = next(
                    (e for e in own if ballot.request_id and e.request_id == ballot.request_id),
                    None,
                )
                if retried is not None:
                    first = appended.get(retried.sequence) or entry_at(retried.sequence)
                    self._answer_retry(waiting, own, retried, first)
                    continue
                entry = domain.append_ballot(
                    spec,
                    head,
                    sequence + 1,
                    Voter(ballot.member.pseudonym, ballot.member.area_cm2, (), ()),
                    ballot.choices,
                    cast_time,
                    ballot.channel,
                    ballot.paper_reference,
                )
                waiting.accepted = Accepted(entry, own[-1].entry_hash if own else "")
                own.append(store.Earlier(entry.sequence, entry.entry_hash, ballot.request_id))
                new.append((entry, ballot.request_id))
                appended[entry.sequence] = entry
                head, sequence = entry.entry_hash, entry.sequence
            return new

        new = self._log.append(vote_id, (w.ballot.member.pseudonym for w in batch), extend)
        metrics.APPEND_BATCH.observe(len(new))

    @staticmethod
    def _answer_retry(
        waiting: _Waiting, own: list[store.Earlier], retried: store.Earlier, first: LogEntry
    ) -> None:
        """A retried request gets its first answer (`first`, the entry of `retried`); the same
        id with other choices is refused."""
        ballot = waiting.ballot
        if (first.choices, first.channel, first.paper_reference) != (
            ballot.choices,
            ballot.channel,
            ballot.paper_reference,
        ):
            waiting.error = AlreadyExists(
                "REQUEST_ID_REUSED",
                f"request {ballot.request_id[:100]} was a ballot with other choices: a new "
                "ballot needs a new request_id",
                vote_id=ballot.vote_id,
            )
            return
        position = own.index(retried)
        waiting.accepted = Accepted(first, own[position - 1].entry_hash if position else "")


class Rolls:
    """Votes' frozen rolls in memory, by owner key: a roll is fixed when its vote opens (a later
    transfer changes the next vote's roll), so a server reads each once instead of once a
    ballot. At most `capacity` owner keys are kept, the rolls used least recently giving way."""

    def __init__(self, engine: Engine, capacity: int) -> None:
        self._reader = reader(engine)
        self._capacity = capacity
        self._rolls: OrderedDict[str, dict[str, RollMember]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        # One roll read at a time: the first ballots of a vote arrive together.
        self._loading = threading.Lock()

    def get(self, vote_id: str) -> dict[str, RollMember] | None:
        """The vote's roll, or None while it has none (before it opens)."""
        members = self._cached(vote_id)
        if members is not None:
            return members
        with self._loading:
            members = self._cached(vote_id)
            if members is not None:
                return members
            with self._reader.connect() as connection:
                members = store.frozen_roll(connection, vote_id)
            if members is None:
                return None
            with self._lock:
                self._rolls[vote_id] = members
                self._size += len(members)
                while self._size > self._capacity and len(self._rolls) > 1:
                    _, dropped = self._rolls.popitem(last=False)
                    self._size -= len(dropped)
        return members

    def _cached(self, vote_id: str) -> dict[str, RollMember] | None:
        with self._lock:
            members = self._rolls.get(vote_id)
            if members is not None:
                self._rolls.move_to_end(vote_id)
            return members


class SpecCache:
    """Votes' specs by id: fixed at creation, so read once per process."""

    def __init__(self, engine: Engine) -> None:
        self._reader = reader(engine)
        self._specs: dict[str, VoteSpec] = {}

    def get(self, vote_id: str) -> VoteSpec:
        spec = self._specs.get(vote_id)
        if spec is None:
            with self._reader.connect() as connection:
                vote = store.get_vote(connection, vote_id)
            if vote is None:
                raise NotFound("VOTE_NOT_FOUND", f"no vote {vote_id}", vote_id=vote_id)
            spec = self._specs[vote_id] = vote.spec
        return spec


# ---------------------------------------------------------------- the service's use cases


@dataclass(frozen=True)
class VoteDraft:
    project_id: str
    title: str
    matters: tuple[MatterDraft, ...]
    open_time: dt.datetime | None
    close_time: dt.datetime | None


@dataclass(frozen=True)
class Participation:
    member: RollMember
    ballots: tuple[LogEntry, ...]


@dataclass(frozen=True)
class ReceiptCheck:
    entry: LogEntry | None
    last_ballot: bool
    state: VoteState


class Voting:
    def __init__(
        self,
        engine: Engine,
        settings: VotingSettings,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.engine = engine
        self.reader = reader(engine)
        self.settings = settings
        self.rules = settings.rules()
        self._clock = clock
        self._key = settings.pseudonym_key()
        self.specs = SpecCache(engine)
        self.rolls = Rolls(engine, settings.vote_roll_cache_owners)
        self.appender = BallotAppender(engine, clock, settings.vote_append_batch, self.specs)

    def now(self) -> dt.datetime:
        return self._clock()

    # ------------------------------------------------------------ who may act for a project

    def _require_organiser(self, connection: Connection, project_id: str) -> None:
        """The acting committee of the project, or an office or authority of its district (the
        interceptor checked the district), calls and runs its votes."""
        principal = current().principal
        if principal.role is Role.OWNERS_COMMITTEE and not store.acts_for(
            connection, principal.subject, project_id
        ):
            raise PermissionDenied(
                "NOT_THE_ACTING_COMMITTEE",
                f"committee {principal.subject[:40]} does not act for project {project_id}",
                project_id=project_id,
            )

    # ------------------------------------------------------------ votes

    def create_vote(self, connection: Connection, draft: VoteDraft) -> StoredVote:
        district = store.project_district(connection, draft.project_id)
        if district is None:
            raise NotFound(
                "PROJECT_NOT_FOUND",
                f"no project {draft.project_id} is known here (registered projects arrive as "
                "events: try again shortly)",
                project_id=draft.project_id,
            )
        self._require_organiser(connection, draft.project_id)
        if not store.has_units(connection, draft.project_id):
            raise FailedPrecondition(
                "NO_UNITS_KNOWN",
                f"no unit of project {draft.project_id} is known here, so nobody could vote "
                "(registered units arrive as events: try again shortly)",
                project_id=draft.project_id,
            )
        now = self.now()
        # No opening time named: the vote opens when the notice period ends (at once where the
        # city gives none).
        open_time = draft.open_time or now + dt.timedelta(days=self.rules.notice_days)
        v = Violations()
        matters = domain.plan_matters(draft.matters, self.rules, v)
        domain.check_schedule(now, open_time, draft.close_time, self.rules, v)
        v.raise_if_any()
        spec = VoteSpec(
            vote_id=new_id(district, "V"),
            project_id=draft.project_id,
            district_code=district,
            title=draft.title.strip(),
            open_time=open_time,
            close_time=draft.close_time,
            rules=self.rules.counting,
            matters=matters,
        )
        store.insert_vote(connection, spec, now, current().principal.subject)
        add_events(
            connection,
            [
                _event(
                    spec.vote_id,
                    district,
                    ev.VoteCreated(
                        vote_id=spec.vote_id,
                        project_id=spec.project_id,
                        district_code=district,
                        title=spec.title,
                        matter_types=[
                            wire_enum(pb.MatterType, "MATTER_TYPE", m.type) for m in matters
                        ],
                        open_time=timestamp(spec.open_time),
                        close_time=timestamp(spec.close_time),
                        occur_time=timestamp(now),
                    ),
                )
            ],
        )
        if spec.open_time <= now:
            # No notice is due (a test city): the vote opens at once.
            self._open(connection, spec.vote_id, now)
        return store.get_vote(connection, spec.vote_id)

    def _vote(self, connection: Connection, vote_id: str, *, lock: bool = False) -> StoredVote:
        vote = store.get_vote(connection, vote_id, lock=lock)
        if vote is None:
            raise NotFound("VOTE_NOT_FOUND", f"no vote {vote_id}", vote_id=vote_id)
        return vote

    def get_vote(self, vote_id: str) -> StoredVote:
        with self.reader.connect() as connection:
            return self._vote(connection, vote_id)

    def list_votes(
        self, district: str, project_id: str, state: VoteState | None, after: str | None, limit: int
    ) -> list[StoredVote]:
        # Votes are public: a list covers every district this instance serves.
        districts = frozenset({district}) if district else current().scope.served
        with self.reader.connect() as connection:
            return store.list_votes(connection, districts, project_id, state, after, limit)

    def cancel_vote(self, vote_id: str, reason: str) -> StoredVote:
        with self.engine.begin() as connection:
            vote = self._vote(connection, vote_id, lock=True)
            self._require_organiser(connection, vote.spec.project_id)
            # Once ballots are being cast, only the count decides: cancelling is for before.
            if vote.state is VoteState.OPEN:
                raise FailedPrecondition(
                    "VOTE_ALREADY_OPEN",
                    f"vote {vote_id} opened at {vote.spec.open_time.isoformat()}: owners are "
                    "voting, and a vote is cancelled only before it opens",
                    vote_id=vote_id,
                )
            domain.transition(vote_id, vote.state, VoteState.CANCELLED)
            now = self.now()
            store.cancel_vote(connection, vote_id, now, reason)
            self._emit_cancelled(connection, vote, reason, now)
            return self._vote(connection, vote_id)

    def _emit_cancelled(
        self, connection: Connection, vote: StoredVote, reason: str, now: dt.datetime
    ) -> None:
        add_events(
            connection,
            [
                _event(
                    vote.spec.vote_id,
                    vote.spec.district_code,
                    ev.VoteCancelled(
                        vote_id=vote.spec.vote_id,
                        project_id=vote.spec.project_id,
                        district_code=vote.spec.district_code,
                        reason=reason,
                        occur_time=timestamp(now),
                    ),
                )
            ],
        )

    # ------------------------------------------------------------ opening: the roll is frozen

    def open_due(self) -> int:
        """Opens the votes whose open_time has come; each in its own transaction."""
        opened = 0
        with self.reader.connect() as connection:
            due = store.due_votes(connection, VoteState.SCHEDULED, "open_at", self.now())
        for vote_id in due:
            with self.engine.begin() as connection:
                vote = self._vote(connection, vote_id, lock=True)
                if vote.state is VoteState.SCHEDULED:
                    self._open(connection, vote_id, self.now())
                    opened += 1
        return opened

    def _open(self, connection: Connection, vote_id: str, now: dt.datetime) -> None:
        vote = self._vote(connection, vote_id)
        spec = vote.spec
        units = store.project_units(connection, spec.project_id)
        pseudonym_of = domain.pseudonymizer(self._key, vote_id).key_of
        voters = domain.build_roll(units, pseudonym_of)
        members = [
            (
                u.unit_id,
                u.owner_key,
                pseudonym_of(domain.DEVELOPER_UNSOLD if u.developer_unsold else u.owner_key),
            )
            for u in units
        ]
        roll = domain.published_roll(voters)
        digest = domain.roll_digest(spec, roll)
        domain.transition(vote_id, vote.state, VoteState.OPEN)
        store.open_vote(connection, vote_id, voters, members, digest)
        add_events(
            connection,
            [
                _event(
                    vote_id,
                    spec.district_code,
                    ev.VoteOpened(
                        vote_id=vote_id,
                        project_id=spec.project_id,
                        district_code=spec.district_code,
                        roll_digest=digest,
                        roll_owners=len(roll),
                        roll_area_cm2=sum(r.area_cm2 for r in roll),
                        close_time=timestamp(spec.close_time),
                        occur_time=timestamp(now),
                    ),
                )
            ],
        )

    # ------------------------------------------------------------ ballots

    def _refuse_if_not_open(self, connection: Connection, vote_id: str) -> None:
        """A caller missing from a roll hears first that the vote is not open, where it is not."""
        state = self._vote(connection, vote_id).state
        if state is not VoteState.OPEN:
            domain.check_open(self.specs.get(vote_id), state, self.now())

    def _choices(
        self, spec: VoteSpec, choices: Sequence[tuple[str, Choice | None]]
    ) -> tuple[tuple[str, Choice], ...]:
        v = Violations()
        checked = domain.check_choices(spec, choices, v, "choices")
        v.raise_if_any()
        return checked

    def cast_ballot(
        self, vote_id: str, request_id: str, choices: Sequence[tuple[str, Choice | None]]
    ) -> Accepted:
        spec = self.specs.get(vote_id)
        checked = self._choices(spec, choices)
        members = self.rolls.get(vote_id)
        member = members.get(current().principal.subject) if members is not None else None
        if member is None:
            with self.reader.connect() as connection:
                self._refuse_if_not_open(connection, vote_id)
            raise PermissionDenied(
                "NOT_ON_ROLL",
                f"the caller owns no unit on the roll of vote {vote_id} (frozen when it opened)",
                vote_id=vote_id,
            )
        return self.appender.append(Ballot(vote_id, request_id, member, checked, Channel.ONLINE))

    def record_paper_ballot(
        self,
        vote_id: str,
        request_id: str,
        unit_id: str,
        choices: Sequence[tuple[str, Choice | None]],
        paper_reference: str,
    ) -> Accepted:
        spec = self.specs.get(vote_id)
        with self.reader.connect() as connection:
            self._require_organiser(connection, spec.project_id)
        checked = self._choices(spec, choices)
        with self.reader.connect() as connection:
            member = store.voter_by_unit(connection, vote_id, unit_id)
            if member is None:
                self._refuse_if_not_open(connection, vote_id)
        if member is None:
            raise NotFound(
                "UNIT_NOT_ON_ROLL",
                f"unit {unit_id[:40]} is not on the roll of vote {vote_id}",
                vote_id=vote_id,
            )
        return self.appender.append(
            Ballot(vote_id, request_id, member, checked, Channel.PAPER, paper_reference)
        )

    def check_receipt(self, vote_id: str, receipt: str) -> ReceiptCheck:
        with self.reader.connect() as connection:
            vote = self._vote(connection, vote_id)
            entry = store.entry_by_hash(connection, vote_id, receipt)
            last = (
                entry is not None
                and store.last_sequence_of(connection, vote_id, entry.pseudonym) == entry.sequence
            )
        return ReceiptCheck(entry, last, vote.state)

    def my_participation(self, vote_id: str) -> Participation:
        owner_key = current().principal.subject
        with self.reader.connect() as connection:
            vote = self._vote(connection, vote_id)
            member = store.voter_by_owner_key(connection, vote_id, owner_key)
            if member is None:
                raise PermissionDenied(
                    "NOT_ON_ROLL",
                    f"the caller is not on the roll of vote {vote_id}"
                    + (" (it is not open yet)" if vote.state is VoteState.SCHEDULED else ""),
                    vote_id=vote_id,
                )
            entries = store.entries_of(connection, vote_id, member.pseudonym)
        return Participation(member, tuple(entries))

    # ------------------------------------------------------------ the close and the count

    def _closed(self, connection: Connection, vote_id: str) -> StoredVote:
        vote = self._vote(connection, vote_id)
        if vote.state is not VoteState.CLOSED:
            raise FailedPrecondition(
                "VOTE_NOT_CLOSED",
                f"vote {vote_id} is {vote.state.value.lower()}: its log and result are "
                "published when it closes",
                vote_id=vote_id,
            )
        return vote

    def result(self, vote_id: str) -> StoredVote:
        with self.reader.connect() as connection:
            return self._closed(connection, vote_id)

    def ballot_log(
        self, vote_id: str
    ) -> tuple[StoredVote, list[RollEntry], Iterator[list[LogEntry]]]:
        """The closed vote, its roll and its log in parts. The log is read in one transaction
        of its own, so the parts are one consistent log."""
        with self.reader.connect() as connection:
            vote = self._closed(connection, vote_id)
            roll = store.roll_entries(connection, vote_id)

        def parts() -> Iterator[list[LogEntry]]:
            with self.reader.connect() as connection:
                yield from store.iter_log(connection, vote_id, self.settings.vote_log_part_entries)

        return vote, roll, parts()

    def close_vote(self, vote_id: str) -> StoredVote:
        """CloseVote: once the close_time has passed, or before where the rules allow it."""
        with self.engine.begin() as connection:
            vote = self._vote(connection, vote_id, lock=True)
            self._require_organiser(connection, vote.spec.project_id)
            now = self.now()
            early = vote.state is VoteState.OPEN and now < vote.spec.close_time
            if early and not self.settings.vote_allow_early_close:
                raise FailedPrecondition(
                    "VOTE_STILL_RUNNING",
                    f"vote {vote_id} runs until {vote.spec.close_time.isoformat()}: owners "
                    "were promised the whole period",
                    vote_id=vote_id,
                )
            self._close(connection, vote, now)
            return self._vote(connection, vote_id)

    def close_due(self) -> int:
        """Closes and counts the votes whose close_time has come."""
        closed = 0
        with self.reader.connect() as connection:
            due = store.due_votes(connection, VoteState.OPEN, "close_at", self.now())
        for vote_id in due:
            with self.engine.begin() as connection:
                vote = self._vote(connection, vote_id, lock=True)
                if vote.state is VoteState.OPEN:
                    self._close(connection, vote, self.now())
                    closed += 1
        with self.reader.connect() as connection:
            metrics.VOTES_OPEN.set(store.count_open(connection))
        return closed

    def _close(self, connection: Connection, vote: StoredVote, now: dt.datetime) -> None:
        spec = vote.spec
        domain.transition(spec.vote_id, vote.state, VoteState.CLOSED)
        started = time.perf_counter()
        roll = store.roll_entries(connection, spec.vote_id)
        result = domain.count(spec, roll, store.counted_ballots(connection, spec.vote_id))
        metrics.TALLY_SECONDS.observe(time.perf_counter() - started)
        store.close_vote(connection, spec.vote_id, now, result)
        decided = self.settings.local_date(now)
        deadline = domain.challenge_deadline(decided, self.rules)
        events = [
            _event(
                spec.vote_id,
                spec.district_code,
                ev.VoteClosed(
                    vote_id=spec.vote_id,
                    project_id=spec.project_id,
                    district_code=spec.district_code,
                    roll_digest=vote.roll_digest,
                    log_head=vote.head,
                    result=result_message(result, now),
                    occur_time=timestamp(now),
                ),
            )
        ]
        for matter, counted in zip(spec.matters, result.matters, strict=True):
            if not counted.passed:
                continue
            events.append(
                _event(
                    spec.vote_id,
                    spec.district_code,
                    ev.DecisionAdopted(
                        vote_id=spec.vote_id,
                        project_id=spec.project_id,
                        district_code=spec.district_code,
                        matter_id=matter.matter_id,
                        matter_type=wire_enum(pb.MatterType, "MATTER_TYPE", matter.type),
                        title=matter.title,
                        fund_amount_fen=matter.fund_amount_fen,
                        unit_ids=list(matter.unit_ids),
                        result=matter_result_message(counted),
                        decision_date=to_date(decided),
                        challenge_deadline=to_date(deadline),
                        occur_time=timestamp(now),
                    ),
                )
            )
        add_events(connection, events)

    # ------------------------------------------------------------ the registry's events

    def handlers(self) -> dict[str, Handler]:
        return {
            "wuye.registry.v1.ProjectRegistered": Handler(
                registry_events.ProjectRegistered, self.on_project_registered
            ),
            "wuye.registry.v1.UnitsRegistered": Handler(
                registry_events.UnitsRegistered, self.on_units_registered
            ),
            "wuye.registry.v1.UnitOwnershipTransferred": Handler(
                registry_events.UnitOwnershipTransferred, self.on_ownership_transferred
            ),
            "wuye.registry.v1.OwnersCommitteeFormed": Handler(
                registry_events.OwnersCommitteeFormed, self.on_committee_formed
            ),
        }

    def on_project_registered(self, connection: Connection, message, meta: EventMeta) -> None:
        store.add_project(connection, message.project_id, message.district_code)

    def on_units_registered(self, connection: Connection, message, meta: EventMeta) -> None:
        store.put_units(
            connection,
            message.project_id,
            (
                RollUnit(
                    unit_id=u.unit_id,
                    area_cm2=u.exclusive_area_cm2,
                    owner_key=u.owner_key,
                    developer_unsold=u.owner_kind == _DEVELOPER_UNSOLD_KIND,
                )
                for u in message.units
            ),
        )

    def on_ownership_transferred(self, connection: Connection, message, meta: EventMeta) -> None:
        # Rolls already frozen keep the owner they had; votes opening later see the new one.
        store.put_units(
            connection,
            message.project_id,
            [
                RollUnit(
                    unit_id=message.unit_id,
                    area_cm2=message.exclusive_area_cm2,
                    owner_key=message.owner_key,
                    developer_unsold=message.owner_kind == _DEVELOPER_UNSOLD_KIND,
                )
            ],
        )

    def on_committee_formed(self, connection: Connection, message, meta: EventMeta) -> None:
        store.add_committee(
            connection, message.committee_id, message.project_id, message.ended_committee_id
        )
