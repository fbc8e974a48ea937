"""Owners' voting as a new user meets it on the platform `make run` starts: units with areas and
owners registered in the registry reach voting over Kafka; the sub-district office creates a
vote (no notice in the test city: it opens at once); owners cast with tokens from
`python -m wuye token --role owner --id-number ...`, one re-votes, one owns two units; the vote
is closed and counted; anyone exports the log (GetBallotLog as JSON, as a generic client prints
it) and `python -m wuye.voting verify-tally` says VERIFIED, confirms a receipt, and REFUSES the
export with one byte of content changed. Only sockets and the command line."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from e2e_support import CALL_TIMEOUT_SECONDS, DONGSHENG, create_vote_once_known
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from sample_data import new_credit_code, new_resident_id, request_id

from wuye.core.auth import Role
from wuye.registry.v1 import registry_service_pb2 as registry_pb
from wuye.voting.v1 import voting_service_pb2 as pb
from wuye.voting.v1 import voting_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
YES, NO = pb.CHOICE_YES, pb.CHOICE_NO


@pytest.fixture
def voting(platform) -> Iterator[pb_grpc.VotingServiceStub]:
    """The voting service at the address the launcher published."""
    with grpc.insecure_channel(platform.description["grpc"]["voting"]) as channel:
        yield pb_grpc.VotingServiceStub(channel)


def _run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def owner_auth(platform, id_number: str) -> tuple[tuple[str, str], ...]:
    """An owner's call metadata, from the token command as an owner's app would get it."""
    done = _run(
        "wuye",
        "token",
        "--role",
        "owner",
        "--district",
        DONGSHENG,
        "--id-number",
        id_number,
        "--state-dir",
        str(platform.state_dir),
    )
    assert done.returncode == 0, done.stderr
    return (("authorization", f"Bearer {done.stdout.strip()}"),)


def _project_with_owners(platform, owners: list[str]) -> tuple[str, list[str]]:
    """A Dongsheng project whose units are owned by `owners` in order (one may repeat: several
    units, one owner), plus one unsold unit of the developer."""
    registry = platform.registry()
    auth = platform.auth()
    project = registry.RegisterProject(
        registry_pb.RegisterProjectRequest(
            request_id=request_id(),
            project=registry_pb.Project(
                name="伊泰华府",
                type=registry_pb.PROJECT_TYPE_RESIDENTIAL,
                district_code=DONGSHENG,
                sub_district="天骄街道",
                address="鄂尔多斯市东胜区鄂尔多斯西街 1 号",
                building_area_m2="50000",
            ),
        ),
        metadata=auth,
        timeout=CALL_TIMEOUT_SECONDS,
    ).project.project_id
    units = [
        registry_pb.Unit(
            number=f"1-1-{n + 101}",
            exclusive_area_m2=f"{80 + 10 * n}.25",
            owner=registry_pb.Owner(
                kind=registry_pb.OWNER_KIND_PERSON, name="业主", id_number=id_number
            ),
        )
        for n, id_number in enumerate(owners)
    ]
    units.append(
        registry_pb.Unit(
            number="9-9-901",
            exclusive_area_m2="120",
            owner=registry_pb.Owner(
                kind=registry_pb.OWNER_KIND_DEVELOPER_UNSOLD,
                name="开发商",
                id_number=new_credit_code(),
            ),
        )
    )
    registered = registry.RegisterUnits(
        registry_pb.RegisterUnitsRequest(request_id=request_id(), project_id=project, units=units),
        metadata=auth,
        timeout=CALL_TIMEOUT_SECONDS,
    ).units
    return project, [u.unit_id for u in registered]


def test_owners_vote_and_anyone_verifies_the_count_from_the_published_log(
    platform, voting, tmp_path
):
    a, b, c = new_resident_id(), new_resident_id(), new_resident_id()
    # A owns two units: one owner. Areas 80.25 + 110.25 (A), 90.25 (B), 100.25 (C), 120 (the
    # developer's unsold unit).
    project, units = _project_with_owners(platform, [a, b, c, a])
    office = platform.auth(platform.token(Role.SUB_DISTRICT, [DONGSHENG]))
    close = Timestamp()
    close.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=7))

    vote = create_vote_once_known(
        voting,
        pb.Vote(
            project_id=project,
            title="2027 年业主大会",
            matters=[
                pb.Matter(
                    type=pb.MATTER_TYPE_RAISE_FUND,
                    title="续筹维修资金",
                    text="按每平方米 30 元续筹专项维修资金。",
                    fund_amount_fen=1_500_000,
                ),
                pb.Matter(
                    type=pb.MATTER_TYPE_COVENANT,
                    title="修订管理规约",
                    text="修订管理规约第十二条。",
                ),
            ],
            close_time=close,
        ),
        office,
    )
    assert vote.state == pb.VOTE_STATE_OPEN
    assert (vote.roll_owners, vote.roll_area_cm2) == (4, 5_010_000)

    tokens = {number: owner_auth(platform, number) for number in (a, b, c)}

    def ballot(id_number: str, *choices: int) -> pb.CastBallotResponse:
        return voting.CastBallot(
            pb.CastBallotRequest(
                request_id=request_id(),
                vote_id=vote.vote_id,
                choices=[
                    pb.MatterChoice(matter_id=f"M{n + 1}", choice=choice)
                    for n, choice in enumerate(choices)
                ],
            ),
            metadata=tokens[id_number],
            timeout=CALL_TIMEOUT_SECONDS,
        )

    ballot(a, NO, NO)
    kept = ballot(a, YES, YES)  # A re-votes: this one counts
    ballot(b, YES, NO)
    ballot(c, YES, YES)
    voting.RecordPaperBallot(
        pb.RecordPaperBallotRequest(
            request_id=request_id(),
            vote_id=vote.vote_id,
            unit_id=units[-1],
            choices=[
                pb.MatterChoice(matter_id="M1", choice=pb.CHOICE_NO),
                pb.MatterChoice(matter_id="M2", choice=pb.CHOICE_ABSTAIN),
            ],
            paper_reference="纸质表决票 001 号",
        ),
        metadata=office,
        timeout=CALL_TIMEOUT_SECONDS,
    )
    closed = voting.CloseVote(
        pb.CloseVoteRequest(vote_id=vote.vote_id), metadata=office, timeout=CALL_TIMEOUT_SECONDS
    ).vote
    assert closed.state == pb.VOTE_STATE_CLOSED
    # M1 (special, >= 3/4): all 4 take part; yes A, B, C: exactly 3 of 4 owners and 3,810,000
    # of 5,010,000 cm² (76%): passed, since exactly 3/4 passes.
    # M2 (ordinary, > 1/2): all 4 take part; yes A and C: 2 of 4 owners is not more than half.
    m1, m2 = closed.result.matters
    assert (m1.participating_owners, m1.participating_area_cm2) == (4, 5_010_000)
    assert m1.yes_owners == 3
    assert (m1.quorum_reached, m1.passed) == (True, True)
    assert (m2.participating_owners, m2.yes_owners, m2.passed) == (4, 2, False)

    # Anyone exports the log, as a generic client prints it, and re-tallies it.
    parts = voting.GetBallotLog(
        pb.GetBallotLogRequest(vote_id=vote.vote_id), timeout=CALL_TIMEOUT_SECONDS
    )
    log = tmp_path / "log.json"
    log.write_text("\n".join(json_format.MessageToJson(part) for part in parts))
    verified = _run(
        "wuye.voting",
        "verify-tally",
        str(log),
        "--roll-digest",
        vote.roll_digest,
        "--receipt",
        kept.receipt,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "VERIFIED" in verified.stdout and "counted" in verified.stdout

    # One byte of one entry's content changed: the verifier refuses it.
    text = log.read_text()
    at = text.index('"paperReference": "') + len('"paperReference": "')
    changed = tmp_path / "changed.json"
    changed.write_text(text[:at] + "X" + text[at + 1 :])
    refused = _run("wuye.voting", "verify-tally", str(changed), "--roll-digest", vote.roll_digest)
    assert refused.returncode == 1
    assert "REFUSED" in refused.stdout
