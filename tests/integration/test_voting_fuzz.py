"""Fuzzing every method of wuye.voting.v1.VotingService over a real socket, with the strategies of
the fuzz loop in grpc_support: random bytes, empty requests and random well-typed requests,
seeded with real vote, unit and matter ids, receipts and choices, as an organiser, an owner on
the roll and nobody, so that some calls get past validation. The streamed GetBallotLog is read
to its end. A caller never sees UNKNOWN or INTERNAL (nor a hang), and the server keeps working.
"""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from grpc_support import (
    FORBIDDEN,
    FUZZ_CALL_TIMEOUT_SECONDS,
    fuzz_every_payload,
    fuzz_settings,
    messages,
)
from hypothesis import given
from hypothesis import strategies as st
from test_voting_support import VotingServer, cast, voting_servers

from wuye.voting.v1 import voting_service_pb2 as pb

pytestmark = pytest.mark.integration

SERVICE = pb.DESCRIPTOR.services_by_name["VotingService"]
UNARY = [m for m in SERVICE.methods if not m.server_streaming]
[LOG] = [m for m in SERVICE.methods if m.server_streaming]
MESSAGE_EXAMPLES = 15
BYTES_EXAMPLES = 5


@pytest.fixture
def voting(make_settings):
    with voting_servers(make_settings) as start:
        yield start(vote_allow_early_close=True)


def _seed(voting: VotingServer) -> tuple[list[str], dict[str, tuple]]:
    """An open vote with ballots, a closed one and a scheduled one; the pool of strings to draw
    from and the callers' tokens."""
    owner, other = voting.owner(), voting.owner()
    project = voting.project([(owner.key, 100_000), (other.key, 90_000)], developer_units=[50_000])
    running = voting.create_vote(project)
    receipt = cast(owner, running.vote_id, pb.CHOICE_YES, pb.CHOICE_NO).receipt
    closed = voting.create_vote(project)
    cast(other, closed.vote_id, pb.CHOICE_NO, pb.CHOICE_YES)
    voting.committee(project).CloseVote(pb.CloseVoteRequest(vote_id=closed.vote_id))
    scheduled = voting.create_vote(project, opens_in=dt.timedelta(days=1))
    pool = [
        running.vote_id,
        closed.vote_id,
        scheduled.vote_id,
        project.project_id,
        *project.units,
        receipt,
        running.roll_digest,
        "M1",
        "M2",
        "150602",
        "150603",
        "纸质表决票 1 号",
    ]
    tokens = {
        "committee": voting.committee(project).metadata,
        "owner": owner.client.metadata,
        "anonymous": (),
    }
    return pool, tokens


def test_no_request_makes_a_method_fail_internally_or_stop_answering(voting):
    pool, tokens = _seed(voting)
    for method in UNARY:
        fuzz_every_payload(
            voting,
            method,
            tokens,
            pool,
            bytes_examples=BYTES_EXAMPLES,
            message_examples=MESSAGE_EXAMPLES,
        )
    call = voting.channel.unary_stream(f"/{SERVICE.full_name}/{LOG.name}")

    @fuzz_settings(MESSAGE_EXAMPLES)
    @given(
        request=st.one_of(
            messages(LOG.input_type, pool),
            st.sampled_from(pool).map(lambda vote_id: pb.GetBallotLogRequest(vote_id=vote_id)),
        ),
        who=st.sampled_from(list(tokens)),
    )
    def read_to_the_end(request, who: str) -> None:
        try:
            for _ in call(
                request.SerializeToString(), metadata=tokens[who], timeout=FUZZ_CALL_TIMEOUT_SECONDS
            ):
                pass
        except grpc.RpcError as e:
            assert e.code() not in FORBIDDEN, f"{LOG.name} answered {e.code().name}"

    read_to_the_end()
    # And it still does its work.
    listed = voting.anonymous.ListVotes(pb.ListVotesRequest())
    assert len(listed.votes) >= 3
