"""A whole tender as a new user meets it on the platform `make run` starts, with every period set
to zero through the environment: enterprises filed with the registry reach credit, the housing
authority blacklists one; a developer publishes a tender; three filed enterprises bid and the
blacklisted one is refused with its grade named; no price is readable before the opening; the
timer opens the bids at the deadline; the committee is drawn and checked with `python -m
wuye.tenders verify-committee` against the commitment published at the deadline; the award, a
dismissed complaint, completion and the signed contract follow; and the registry shows the
winner serving the project. Only sockets and the command line."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from e2e_support import CALL_TIMEOUT_SECONDS, DONGSHENG, poll
from google.protobuf import json_format
from google.type import date_pb2
from sample_data import new_credit_code, request_id

from wuye.core.auth import Role, issue_token
from wuye.credit.v1 import credit_service_pb2 as credit_pb
from wuye.credit.v1 import credit_service_pb2_grpc as credit_grpc
from wuye.launcher import read_secrets_file
from wuye.registry.v1 import registry_service_pb2 as registry_pb
from wuye.tenders.v1 import tenders_service_pb2 as pb
from wuye.tenders.v1 import tenders_service_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[2]
# Long enough for the bids to arrive over sockets before it passes.
BIDDING_SECONDS = 15

# Its periods are zero on the test platform (PLATFORM_ENV in conftest.py).
pytestmark = pytest.mark.e2e


@pytest.fixture
def tenders(platform) -> Iterator[pb_grpc.TendersServiceStub]:
    with grpc.insecure_channel(platform.description["grpc"]["tenders"]) as channel:
        yield pb_grpc.TendersServiceStub(channel)


@pytest.fixture
def credit(platform) -> Iterator[credit_grpc.CreditServiceStub]:
    with grpc.insecure_channel(platform.description["grpc"]["credit"]) as channel:
        yield credit_grpc.CreditServiceStub(channel)


def as_(platform, role: Role, subject: str) -> tuple[tuple[str, str], ...]:
    secret = read_secrets_file(platform.state_dir)["WUYE_TOKEN_SECRET"]
    districts = None if role in (Role.EXPERT, Role.ADMIN) else [DONGSHENG]
    token = issue_token(secret, subject=subject, role=role, districts=districts)
    return (("authorization", f"Bearer {token}"),)


def _filed_enterprise(platform) -> str:
    registry, auth = platform.registry(), platform.auth()
    code = new_credit_code(DONGSHENG)
    filed = registry.FileEnterprise(
        registry_pb.FileEnterpriseRequest(
            request_id=request_id(),
            enterprise=registry_pb.Enterprise(
                credit_code=code,
                name=f"鄂尔多斯市{code[-4:]}物业服务有限公司",
                district_code=DONGSHENG,
                address="东胜区天骄路 1 号",
                legal_representative="张三",
                contact_phone="13912345678",
            ),
        ),
        metadata=auth,
        timeout=CALL_TIMEOUT_SECONDS,
    )
    registry.ReviewFiling(
        registry_pb.ReviewFilingRequest(
            filing_id=filed.filing.filing_id, decision=registry_pb.REVIEW_DECISION_APPROVE
        ),
        metadata=auth,
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return code


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_whole_tender_to_the_registrys_new_contract(platform, tenders, credit, tmp_path):
    auth = platform.auth()
    registry = platform.registry()
    codes = [_filed_enterprise(platform) for _ in range(4)]
    bidders, banned = codes[:3], codes[3]
    project_id = registry.RegisterProject(
        registry_pb.RegisterProjectRequest(
            request_id=request_id(),
            project=registry_pb.Project(
                name="康和丽景",
                type=registry_pb.PROJECT_TYPE_RESIDENTIAL,
                district_code=DONGSHENG,
                sub_district="天骄街道",
                address="鄂尔多斯市东胜区天骄路 18 号",
                building_area_m2="98000.00",
            ),
        ),
        metadata=auth,
        timeout=CALL_TIMEOUT_SECONDS,
    ).project.project_id

    def report(code: str):
        try:
            return credit.GetCreditReport(
                credit_pb.GetCreditReportRequest(
                    subject=credit_pb.Subject(kind=credit_pb.SUBJECT_KIND_ENTERPRISE, id=code)
                ),
                metadata=auth,
                timeout=CALL_TIMEOUT_SECONDS,
            ).report
        except grpc.RpcError as e:
            if e.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise

    for code in codes:
        poll(lambda code=code: report(code), f"credit learns that {code} is filed")
    credit.RecordCreditEvent(
        credit_pb.RecordCreditEventRequest(
            request_id=request_id(),
            subject=credit_pb.Subject(kind=credit_pb.SUBJECT_KIND_ENTERPRISE, id=banned),
            record_type="ADMINISTRATIVE_PENALTY",
            evidence_reference="东住建罚字〔2026〕18号",
            reason="围标串标",
        ),
        metadata=auth,
        timeout=CALL_TIMEOUT_SECONDS,
    )
    experts = [f"expert-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    for n, expert_id in enumerate(experts):
        tenders.RegisterExpert(
            pb.RegisterExpertRequest(
                expert=pb.Expert(
                    expert_id=expert_id,
                    name=f"专家{n}",
                    specialities=["物业管理"],
                    district_codes=[DONGSHENG],
                )
            ),
            metadata=auth,
            timeout=CALL_TIMEOUT_SECONDS,
        )

    developer = as_(platform, Role.DEVELOPER, "91150602DEV000001X")
    tender_id = tenders.CreateTender(
        pb.CreateTenderRequest(
            request_id=request_id(),
            tender=pb.Tender(
                district_code=DONGSHENG,
                project_id=project_id,
                title="康和丽景前期物业服务",
                scope="住宅小区公共部位、共用设施设备",
                service_standard="住宅物业服务二级",
                max_price_fen=3_000_000_00,
                price_method=pb.PRICE_METHOD_LOWEST_FULL_MARKS,
                documents_hash=_digest("招标文件"),
                representatives=["rep-1"],
            ),
        ),
        metadata=developer,
        timeout=CALL_TIMEOUT_SECONDS,
    ).tender.tender_id
    publish = pb.PublishTenderRequest(tender_id=tender_id)
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=BIDDING_SECONDS)
    publish.bid_deadline.FromDatetime(deadline)
    tenders.PublishTender(publish, metadata=developer, timeout=CALL_TIMEOUT_SECONDS)

    def get() -> pb.Tender:
        return tenders.GetTender(
            pb.GetTenderRequest(tender_id=tender_id), timeout=CALL_TIMEOUT_SECONDS
        ).tender

    poll(lambda: get().state == pb.TENDER_STATE_TENDERING or None, "the enquiries end")

    def bid(code: str, price: int) -> pb.SubmitBidResponse:
        return tenders.SubmitBid(
            pb.SubmitBidRequest(
                tender_id=tender_id,
                price_fen=price,
                technical_documents=[_digest(f"{code} 技术方案")],
                staff=15,
            ),
            metadata=as_(platform, Role.ENTERPRISE, code),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    with pytest.raises(grpc.RpcError) as refused:
        bid(banned, 2_000_000_00)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "blacklisted: grade" in refused.value.details()
    receipts = {
        code: bid(code, 2_500_000_00 - n * 100_000_00).receipt for n, code in enumerate(bidders)
    }
    sealed = get()
    assert sealed.bids == 3 and not sealed.opened_bids and "250000000" not in str(sealed)

    opened = poll(
        lambda: ((t := get()).state == pb.TENDER_STATE_OPENED and t) or None,
        "the timer opens the bids at the deadline",
    )
    assert {b.credit_code: b.receipt for b in opened.opened_bids} == receipts
    commitment = opened.committee.seed_commitment
    authority = as_(platform, Role.DISTRICT_AUTHORITY, "authority-150602")
    drawn = tenders.DrawCommittee(
        pb.DrawCommitteeRequest(tender_id=tender_id),
        metadata=authority,
        timeout=CALL_TIMEOUT_SECONDS,
    ).tender
    export = tmp_path / "tender.json"
    export.write_text(json_format.MessageToJson(pb.GetTenderResponse(tender=get())))
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "wuye.tenders",
            "verify-committee",
            str(export),
            "--commitment",
            commitment,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert checked.returncode == 0 and checked.stdout.startswith("VERIFIED:"), checked

    members = [as_(platform, Role.DEVELOPER, "rep-1")] + [
        as_(platform, Role.EXPERT, e) for e in drawn.committee.experts
    ]
    for member in members:
        for n, code in enumerate(bidders):
            tenders.ScoreBid(
                pb.ScoreBidRequest(
                    tender_id=tender_id, credit_code=code, technical_score=str(80 + n)
                ),
                metadata=member,
                timeout=CALL_TIMEOUT_SECONDS,
            )
    winner = tenders.Award(
        pb.AwardRequest(tender_id=tender_id), metadata=developer, timeout=CALL_TIMEOUT_SECONDS
    ).tender.winner
    assert winner == bidders[2]  # the lowest price and the best plan
    complaint = tenders.FileComplaint(
        pb.FileComplaintRequest(tender_id=tender_id, reason="评分不公"),
        metadata=as_(platform, Role.ENTERPRISE, bidders[0]),
        timeout=CALL_TIMEOUT_SECONDS,
    ).complaint
    tenders.DecideComplaint(
        pb.DecideComplaintRequest(
            tender_id=tender_id,
            complaint_id=complaint.complaint_id,
            outcome=pb.COMPLAINT_OUTCOME_DISMISSED,
            decision="评分符合招标文件",
        ),
        metadata=authority,
        timeout=CALL_TIMEOUT_SECONDS,
    )

    def complete() -> pb.Tender | None:
        try:
            return tenders.CompleteTender(
                pb.CompleteTenderRequest(tender_id=tender_id),
                metadata=developer,
                timeout=CALL_TIMEOUT_SECONDS,
            ).tender
        except grpc.RpcError as e:
            if "standstill" in (e.details() or ""):
                return None
            raise

    assert poll(complete, "the standstill ends").state == pb.TENDER_STATE_COMPLETE
    tenders.SignContract(
        pb.SignContractRequest(
            tender_id=tender_id,
            contract_hash=_digest("物业服务合同"),
            contract_start=date_pb2.Date(year=2027, month=1, day=1),
            contract_end=date_pb2.Date(year=2029, month=12, day=31),
        ),
        metadata=developer,
        timeout=CALL_TIMEOUT_SECONDS,
    )

    def assigned():
        project = registry.GetProject(
            registry_pb.GetProjectRequest(project_id=project_id),
            metadata=auth,
            timeout=CALL_TIMEOUT_SECONDS,
        ).project
        return project.current_assignment.credit_code or None

    assert poll(assigned, "the registry records the new contract") == winner
