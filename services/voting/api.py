"""The gRPC face of voting: requests in, use cases run, responses out. Wire details (enums,
times, pages, the log's parts) live here; the rules live in domain.py."""

from __future__ import annotations

import re

from wuye.core.auth import AUTHORITIES, Role, allow, public
from wuye.core.errors import Violations
from wuye.core.events import run_idempotent
from wuye.core.grpcserver import Route
from wuye.core.paging import next_token, read_page
from wuye.core.wire import check_request_id, check_text, enum_name, moment_of, timestamp
from wuye.voting.commands import (
    Accepted,
    VoteDraft,
    Voting,
    result_message,
    wire_enum,
)
from wuye.voting.domain import (
    Choice,
    LogEntry,
    MatterDraft,
    MatterType,
    VoteState,
)
from wuye.voting.store import StoredVote
from wuye.voting.v1 import voting_service_pb2 as pb
from wuye.voting.v1 import voting_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["VotingService"].full_name

# Who calls and runs a project's votes: its acting committee (checked against the registry's
# committees), the sub-district office (a first meeting), the housing authorities.
_ORGANISERS = (Role.OWNERS_COMMITTEE, Role.SUB_DISTRICT, *AUTHORITIES)

ROUTES: dict[str, Route] = {
    "CreateVote": Route(allow(*_ORGANISERS), "vote.project_id"),
    # Votes, receipts, results and logs are public (results are published; the log once closed).
    "GetVote": Route(public(), "vote_id"),
    "ListVotes": Route(public(), "district_code"),
    "CancelVote": Route(allow(*_ORGANISERS), "vote_id"),
    "CastBallot": Route(allow(Role.OWNER), "vote_id"),
    "RecordPaperBallot": Route(allow(*_ORGANISERS), "vote_id"),
    "CheckReceipt": Route(public(), "vote_id"),
    "GetMyParticipation": Route(allow(Role.OWNER), "vote_id"),
    "GetBallotLog": Route(public(), "vote_id"),
    "GetResult": Route(public(), "vote_id"),
    "CloseVote": Route(allow(*_ORGANISERS), "vote_id"),
}

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
# Choices by wire number: the unspecified one, and numbers the enum lacks, are None.
_CHOICE_OF = {
    number: Choice(name.removeprefix("CHOICE_")) for name, number in pb.Choice.items() if number
}


def _vote(vote: StoredVote) -> pb.Vote:
    spec = vote.spec
    rules = spec.rules
    message = pb.Vote(
        vote_id=spec.vote_id,
        project_id=spec.project_id,
        district_code=spec.district_code,
        title=spec.title,
        matters=[
            pb.Matter(
                matter_id=m.matter_id,
                type=wire_enum(pb.MatterType, "MATTER_TYPE", m.type),
                matter_class=wire_enum(pb.MatterClass, "MATTER_CLASS", m.matter_class),
                title=m.title,
                text=m.text,
                fund_amount_fen=m.fund_amount_fen,
                unit_ids=list(m.unit_ids),
            )
            for m in spec.matters
        ],
        open_time=timestamp(spec.open_time),
        close_time=timestamp(spec.close_time),
        state=wire_enum(pb.VoteState, "VOTE_STATE", vote.state),
        rules=pb.CountingRules(
            quorum=_threshold(rules.quorum),
            special_majority=_threshold(rules.special_majority),
            ordinary_majority=_threshold(rules.ordinary_majority),
            non_voters_follow_majority=rules.non_voters_follow_majority,
        ),
        roll_digest=vote.roll_digest,
        roll_owners=vote.roll_owners,
        roll_area_cm2=vote.roll_area_cm2,
        algorithm_version=spec.algorithm_version,
        create_time=timestamp(vote.created_at),
        cancel_reason=vote.cancel_reason,
    )
    if vote.result is not None:
        message.result.CopyFrom(result_message(vote.result, vote.closed_at))
        message.log_head = vote.head
    if vote.cancelled_at is not None:
        message.cancel_time.CopyFrom(timestamp(vote.cancelled_at))
    return message


def _threshold(t) -> pb.Threshold:
    fraction, inclusive = t.canonical()
    return pb.Threshold(fraction=fraction, inclusive=inclusive)


def _choices(entry: LogEntry) -> list[pb.MatterChoice]:
    return [
        pb.MatterChoice(matter_id=m, choice=wire_enum(pb.Choice, "CHOICE", c))
        for m, c in entry.choices
    ]


def _log_entry(e: LogEntry) -> pb.LogEntry:
    return pb.LogEntry(
        sequence=e.sequence,
        pseudonym=e.pseudonym,
        area_cm2=e.area_cm2,
        choices=_choices(e),
        cast_time=timestamp(e.cast_time),
        channel=wire_enum(pb.BallotChannel, "BALLOT_CHANNEL", e.channel),
        paper_reference=e.paper_reference,
        previous_hash=e.previous_hash,
        entry_hash=e.entry_hash,
    )


class VotingApi(pb_grpc.VotingServiceServicer):
    def __init__(self, voting: Voting) -> None:
        self._voting = voting
        self._settings = voting.settings

    def start(self) -> None:
        self._voting.appender.start()

    def stop(self) -> None:
        self._voting.appender.stop()

    # -- shared checks

    def _text(
        self, v: Violations, field: str, value: str, required: bool = True, limit: int = 0
    ) -> None:
        check_text(v, field, value, limit or self._settings.max_text_length, required)

    def _vote_id(self, v: Violations, vote_id: str) -> None:
        v.check(bool(vote_id), "vote_id", "is required")
        v.check(len(vote_id) <= 32, "vote_id", "is not a vote id")

    def _choices(self, v: Violations, choices) -> list[tuple[str, Choice | None]]:
        """Choices as the domain checks them; the shape of each is checked here."""
        read: list[tuple[str, Choice | None]] = []
        for n, c in enumerate(choices):
            matter_id = c.matter_id
            if len(matter_id) > 16:
                v.add(f"choices[{n}].matter_id", "is not a matter of this vote")
            read.append((matter_id, _CHOICE_OF.get(c.choice)))
        return read

    # ------------------------------------------------------------ votes

    def CreateVote(self, request: pb.CreateVoteRequest, context) -> pb.CreateVoteResponse:
        v = Violations()
        check_request_id(v, request.request_id)
        given = request.vote
        v.check(bool(given.project_id), "vote.project_id", "is required")
        v.check(len(given.project_id) <= 32, "vote.project_id", "is not a project id")
        self._text(v, "vote.title", given.title)
        limit = self._settings.vote_max_matters
        v.check(len(given.matters) <= limit, "vote.matters", f"at most {limit} matters a vote")
        drafts = []
        for n, m in enumerate(given.matters[:limit]):
            at = f"vote.matters[{n}]"
            self._text(v, f"{at}.title", m.title, required=False)
            self._text(
                v, f"{at}.text", m.text, required=False, limit=self._settings.vote_max_matter_text
            )
            v.check(m.fund_amount_fen >= 0, f"{at}.fund_amount_fen", "must not be negative")
            units = self._settings.vote_max_units_per_matter
            v.check(len(m.unit_ids) <= units, f"{at}.unit_ids", f"at most {units} units")
            for k, unit_id in enumerate(m.unit_ids[:units]):
                v.check(
                    0 < len(unit_id) <= 32 and unit_id.isprintable(),
                    f"{at}.unit_ids[{k}]",
                    "is not a unit id",
                )
            name = enum_name(pb.MatterType, "MATTER_TYPE", m.type)
            drafts.append(
                MatterDraft(
                    type=MatterType(name) if name else None,
                    title=m.title,
                    text=m.text,
                    fund_amount_fen=m.fund_amount_fen,
                    unit_ids=tuple(m.unit_ids),
                )
            )
        open_time = (
            moment_of(v, "vote.open_time", given.open_time, True)
            if given.HasField("open_time")
            else None
        )
        close_time = moment_of(v, "vote.close_time", given.close_time, given.HasField("close_time"))
        v.raise_if_any()
        draft = VoteDraft(given.project_id, given.title, tuple(drafts), open_time, close_time)

        def build(connection):
            return pb.CreateVoteResponse(vote=_vote(self._voting.create_vote(connection, draft)))

        return run_idempotent(
            self._voting.engine,
            pii_key=self._settings.pii_key,
            method="CreateVote",
            request_id=request.request_id,
            request=request,
            response_type=pb.CreateVoteResponse,
            command=build,
        )

    def GetVote(self, request: pb.GetVoteRequest, context) -> pb.GetVoteResponse:
        v = Violations()
        self._vote_id(v, request.vote_id)
        v.raise_if_any()
        return pb.GetVoteResponse(vote=_vote(self._voting.get_vote(request.vote_id)))

    def ListVotes(self, request: pb.ListVotesRequest, context) -> pb.ListVotesResponse:
        v = Violations()
        v.check(len(request.project_id) <= 32, "project_id", "is not a project id")
        state = None
        if request.state:
            name = enum_name(pb.VoteState, "VOTE_STATE", request.state)
            if v.check(bool(name), "state", "is not a vote state"):
                state = VoteState(name)
        v.raise_if_any()
        page = read_page(
            request.page_size,
            request.page_token,
            [request.project_id, request.district_code, request.state],
            self._settings.page_size_default,
            self._settings.page_size_max,
        )
        found = self._voting.list_votes(
            request.district_code, request.project_id, state, page.after, page.size + 1
        )
        return pb.ListVotesResponse(
            votes=[_vote(vote) for vote in found[: page.size]],
            next_page_token=next_token(page, [vote.spec.vote_id for vote in found]),
        )

    def CancelVote(self, request: pb.CancelVoteRequest, context) -> pb.CancelVoteResponse:
        v = Violations()
        self._vote_id(v, request.vote_id)
        self._text(v, "reason", request.reason)
        v.raise_if_any()
        return pb.CancelVoteResponse(
            vote=_vote(self._voting.cancel_vote(request.vote_id, request.reason))
        )

    # ------------------------------------------------------------ ballots

    def CastBallot(self, request: pb.CastBallotRequest, context) -> pb.CastBallotResponse:
        v = Violations()
        check_request_id(v, request.request_id)
        self._vote_id(v, request.vote_id)
        choices = self._choices(v, request.choices)
        v.raise_if_any()
        accepted = self._voting.cast_ballot(request.vote_id, request.request_id, choices)
        return pb.CastBallotResponse(**_receipt(accepted))

    def RecordPaperBallot(self, request: pb.RecordPaperBallotRequest, context):
        v = Violations()
        check_request_id(v, request.request_id)
        self._vote_id(v, request.vote_id)
        v.check(bool(request.unit_id), "unit_id", "is required")
        choices = self._choices(v, request.choices)
        self._text(v, "paper_reference", request.paper_reference)
        v.raise_if_any()
        accepted = self._voting.record_paper_ballot(
            request.vote_id,
            request.request_id,
            request.unit_id,
            choices,
            request.paper_reference,
        )
        return pb.RecordPaperBallotResponse(**_receipt(accepted))

    def CheckReceipt(self, request: pb.CheckReceiptRequest, context) -> pb.CheckReceiptResponse:
        v = Violations()
        self._vote_id(v, request.vote_id)
        v.check(
            bool(_HEX_DIGEST.fullmatch(request.receipt)),
            "receipt",
            "a receipt is 64 lowercase hex digits",
        )
        v.raise_if_any()
        found = self._voting.check_receipt(request.vote_id, request.receipt)
        state = wire_enum(pb.VoteState, "VOTE_STATE", found.state)
        if found.entry is None:
            return pb.CheckReceiptResponse(in_log=False, vote_state=state)
        return pb.CheckReceiptResponse(
            in_log=True,
            last_ballot=found.last_ballot,
            sequence=found.entry.sequence,
            cast_time=timestamp(found.entry.cast_time),
            vote_state=state,
        )

    def GetMyParticipation(self, request: pb.GetMyParticipationRequest, context):
        v = Violations()
        self._vote_id(v, request.vote_id)
        v.raise_if_any()
        mine = self._voting.my_participation(request.vote_id)
        last = mine.ballots[-1].sequence if mine.ballots else 0
        return pb.GetMyParticipationResponse(
            pseudonym=mine.member.pseudonym,
            area_cm2=mine.member.area_cm2,
            unit_count=mine.member.unit_count,
            ballots=[
                pb.MyBallot(
                    receipt=e.entry_hash,
                    sequence=e.sequence,
                    cast_time=timestamp(e.cast_time),
                    channel=wire_enum(pb.BallotChannel, "BALLOT_CHANNEL", e.channel),
                    choices=_choices(e),
                    last_ballot=e.sequence == last,
                )
                for e in mine.ballots
            ],
        )

    # ------------------------------------------------------------ the close, the count, the log

    def GetBallotLog(self, request: pb.GetBallotLogRequest, context):
        v = Violations()
        self._vote_id(v, request.vote_id)
        v.raise_if_any()
        vote, roll, parts = self._voting.ballot_log(request.vote_id)
        yield pb.GetBallotLogResponse(vote=_vote(vote))
        size = self._settings.vote_log_part_entries
        for start in range(0, len(roll), size):
            yield pb.GetBallotLogResponse(
                roll=[
                    pb.RollEntry(pseudonym=r.pseudonym, area_cm2=r.area_cm2)
                    for r in roll[start : start + size]
                ]
            )
        for entries in parts:
            yield pb.GetBallotLogResponse(entries=[_log_entry(e) for e in entries])

    def GetResult(self, request: pb.GetResultRequest, context) -> pb.GetResultResponse:
        v = Violations()
        self._vote_id(v, request.vote_id)
        v.raise_if_any()
        vote = self._voting.result(request.vote_id)
        return pb.GetResultResponse(
            vote_id=vote.spec.vote_id,
            result=result_message(vote.result, vote.closed_at),
            roll_digest=vote.roll_digest,
            log_head=vote.head,
        )

    def CloseVote(self, request: pb.CloseVoteRequest, context) -> pb.CloseVoteResponse:
        v = Violations()
        self._vote_id(v, request.vote_id)
        v.raise_if_any()
        return pb.CloseVoteResponse(vote=_vote(self._voting.close_vote(request.vote_id)))


def _receipt(accepted: Accepted) -> dict:
    return {
        "receipt": accepted.entry.entry_hash,
        "sequence": accepted.entry.sequence,
        "cast_time": timestamp(accepted.entry.cast_time),
        "replaced_receipt": accepted.replaced_receipt,
    }
