"""Inspections as a new user meets them on the platform `make run` starts: projects registered in
the registry reach the inspections lists, the housing authority registers inspectors, creates
and draws a round, anyone fetches the round without a token and checks it with
`python -m wuye.inspections verify-draw` against the commitment published when the round was
created, and a changed export is refused. Then a failed check reaches the credit service as a bad
record. Only sockets and the command line."""

from __future__ import annotations

import datetime as dt
import itertools
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from e2e_support import CALL_TIMEOUT_SECONDS, DONGSHENG, poll, served_projects
from google.protobuf import json_format

from wuye.core.auth import Role, issue_token
from wuye.core.wire import to_date
from wuye.credit.v1 import credit_service_pb2 as credit_pb
from wuye.credit.v1 import credit_service_pb2_grpc as credit_grpc
from wuye.inspections.v1 import inspections_service_pb2 as pb
from wuye.inspections.v1 import inspections_service_pb2_grpc as pb_grpc
from wuye.launcher import read_secrets_file

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# One round per district and period: each round these tests create takes a year of its own.
_years = itertools.count(2031)


@pytest.fixture
def inspections(platform) -> Iterator[pb_grpc.InspectionsServiceStub]:
    """The inspections service at the address the launcher published."""
    with grpc.insecure_channel(platform.description["grpc"]["inspections"]) as channel:
        yield pb_grpc.InspectionsServiceStub(channel)


def as_inspector(platform, inspector_id: str) -> tuple[tuple[str, str], ...]:
    """Call metadata of an inspector's token: its subject is the inspector's id."""
    secret = read_secrets_file(platform.state_dir)["WUYE_TOKEN_SECRET"]
    token = issue_token(secret, subject=inspector_id, role=Role.INSPECTOR, districts=[DONGSHENG])
    return (("authorization", f"Bearer {token}"),)


def verify_draw(path: Path, commitment: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "wuye.inspections",
            "verify-draw",
            str(path),
            "--commitment",
            commitment,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def _register_inspectors(platform, inspections, conflict: str) -> list[str]:
    authority = platform.auth(platform.token(Role.DISTRICT_AUTHORITY, [DONGSHENG]))
    ids = [f"insp-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for n, inspector_id in enumerate(ids):
        inspections.RegisterInspector(
            pb.RegisterInspectorRequest(
                inspector=pb.Inspector(
                    inspector_id=inspector_id,
                    name=f"检查员{n}",
                    unit="东胜区住房和城乡建设局",
                    district_codes=[DONGSHENG],
                    # The last one's relative works for the enterprise.
                    conflicts=[conflict] if n == 2 and conflict else [],
                )
            ),
            metadata=authority,
            timeout=CALL_TIMEOUT_SECONDS,
        )
    return ids


def _round_listing(platform, inspections, served: list[str], unserved: list[str]) -> pb.Round:
    """Create rounds (each for a year of its own) until one lists every project, the served ones
    with their enterprise's grade from the credit service: the lists follow the registry's and
    credit's events."""
    authority = platform.auth(platform.token(Role.DISTRICT_AUTHORITY, [DONGSHENG]))

    def create() -> pb.Round | None:
        created = inspections.CreateRound(
            pb.CreateRoundRequest(
                request_id=str(uuid.uuid4()),
                district_codes=[DONGSHENG],
                period=str(next(_years)),
            ),
            metadata=authority,
            timeout=CALL_TIMEOUT_SECONDS,
        ).round
        grades = {e.project_id: e.grade for e in created.entities}
        wanted = {**dict.fromkeys(served, "A"), **dict.fromkeys(unserved, "")}
        return created if all(grades.get(p) == g for p, g in wanted.items()) else None

    return poll(create, "a round listing every project with its grade", interval=0.5)


def test_a_round_is_drawn_and_anyone_verifies_it_from_the_public_export(
    platform, inspections, new_filing, tmp_path
):
    code, served, unserved = served_projects(platform, new_filing, count=6)
    inspectors = _register_inspectors(platform, inspections, conflict=code)
    created = _round_listing(platform, inspections, served, unserved)
    assert created.state == pb.ROUND_STATE_COMMITTED and created.seed == ""
    assert set(inspectors) <= {i.inspector_id for i in created.inspectors}

    # Only the housing authority draws.
    with pytest.raises(grpc.RpcError) as refused:
        inspections.DrawRound(
            pb.DrawRoundRequest(round_id=created.round_id),
            metadata=as_inspector(platform, inspectors[0]),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    authority = platform.auth(platform.token(Role.DISTRICT_AUTHORITY, [DONGSHENG]))
    drawn = inspections.DrawRound(
        pb.DrawRoundRequest(round_id=created.round_id),
        metadata=authority,
        timeout=CALL_TIMEOUT_SECONDS,
    ).round
    assert drawn.state == pb.ROUND_STATE_DRAWN and len(drawn.seed) == 64
    assert drawn.selections, "the floor draws at least one project"
    for selection in drawn.selections:
        assert len(selection.inspector_ids) == 2
        if selection.project_id in served:
            assert inspectors[2] not in selection.inspector_ids
    with pytest.raises(grpc.RpcError) as again:
        inspections.DrawRound(
            pb.DrawRoundRequest(round_id=created.round_id),
            metadata=authority,
            timeout=CALL_TIMEOUT_SECONDS,
        )
    assert again.value.code() is grpc.StatusCode.FAILED_PRECONDITION

    # Anyone: no token, the export as grpcurl would print it, the verifier.
    public = inspections.GetRound(
        pb.GetRoundRequest(round_id=created.round_id), timeout=CALL_TIMEOUT_SECONDS
    )
    assert public.round == drawn
    export = tmp_path / "round.json"
    export.write_text(json_format.MessageToJson(public), encoding="utf-8")
    # Held to the commitment published when the round was created.
    verified = verify_draw(export, created.seed_commitment)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("VERIFIED:")

    # One byte of the seed changed.
    raw = bytearray(export.read_bytes())
    at = raw.index(drawn.seed.encode()) + 10
    raw[at] = ord("0") if raw[at] != ord("0") else ord("1")
    changed = tmp_path / "changed.json"
    changed.write_bytes(bytes(raw))
    refused_export = verify_draw(changed, created.seed_commitment)
    assert refused_export.returncode == 1, refused_export.stdout + refused_export.stderr
    assert refused_export.stdout.startswith(
        "REFUSED: the seed and lists do not match the export's commitment"
    )


@pytest.fixture
def credit(platform) -> Iterator[credit_grpc.CreditServiceStub]:
    with grpc.insecure_channel(platform.description["grpc"]["credit"]) as channel:
        yield credit_grpc.CreditServiceStub(channel)


def test_a_failed_check_is_published_and_becomes_a_bad_credit_record(
    platform, inspections, credit, new_filing
):
    code, served, unserved = served_projects(platform, new_filing, count=1)
    _register_inspectors(platform, inspections, conflict="")
    _round_listing(platform, inspections, served, unserved)
    authority = platform.auth(platform.token(Role.DISTRICT_AUTHORITY, [DONGSHENG]))
    # A complaint: the project joins the next round.
    triggered = inspections.TriggerInspection(
        pb.TriggerInspectionRequest(project_id=served[0], reason="业主投诉：消防通道被占用"),
        metadata=authority,
        timeout=CALL_TIMEOUT_SECONDS,
    )
    assert triggered.pending_triggers == 1
    created = inspections.CreateRound(
        pb.CreateRoundRequest(
            request_id=str(uuid.uuid4()), district_codes=[DONGSHENG], period=str(next(_years))
        ),
        metadata=authority,
        timeout=CALL_TIMEOUT_SECONDS,
    ).round
    assert {e.project_id for e in created.entities if e.triggered} == {served[0]}
    drawn = inspections.DrawRound(
        pb.DrawRoundRequest(round_id=created.round_id),
        metadata=authority,
        timeout=CALL_TIMEOUT_SECONDS,
    ).round
    selection = next(s for s in drawn.selections if s.project_id == served[0])
    assert selection.reason == "triggered"

    scores = {"R01": "4", "R02": "6", "R03": "7", "R04": "4", "R05": "6", "R06": "6"}
    scores |= {"R07": "4", "R08": "8"}
    recorded = inspections.RecordCheck(
        pb.RecordCheckRequest(
            check_id=selection.check_id,
            scores=[pb.ItemScore(item_id=k, score=v) for k, v in scores.items()],
            findings=[
                pb.Finding(
                    item_id="R04",
                    description="消防通道被占用",
                    rectify_by=to_date(dt.date.today() + dt.timedelta(days=14)),
                )
            ],
        ),
        metadata=as_inspector(platform, selection.inspector_ids[1]),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    assert recorded.check.score == "45.0"
    assert len(recorded.rectifications) == 1

    published = inspections.ListPublishedResults(
        pb.ListPublishedResultsRequest(credit_code=code), timeout=CALL_TIMEOUT_SECONDS
    )
    assert [(r.check_id, r.score, r.findings_summary) for r in published.results] == [
        (selection.check_id, "45.0", "R04")
    ]

    def bad_record() -> credit_pb.CreditReport | None:
        report = credit.GetCreditReport(
            credit_pb.GetCreditReportRequest(
                subject=credit_pb.Subject(kind=credit_pb.SUBJECT_KIND_ENTERPRISE, id=code)
            ),
            metadata=platform.auth(),
            timeout=CALL_TIMEOUT_SECONDS,
        ).report
        failed = [r for r in report.records if r.record_type == "INSPECTION_FAILED"]
        return report if failed else None

    report = poll(
        bad_record, "the failed check as a bad record in the credit service", interval=0.5
    )
    [record] = report.records
    assert record.direction == credit_pb.DIRECTION_BAD
