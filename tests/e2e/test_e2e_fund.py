"""The maintenance fund as a new user meets it on the platform `make run` starts: units
registered in the registry get fund accounts, deposits are recorded, the owners vote in the
voting service to use the fund and their decision opens a use, the authority approves it, it is
paid in two stages and completed; each unit's debit is its exact area share, the shares add up
to each payment, and ReconcileFund balances. Then an emergency roof leak is approved without a
vote and its first payment over 60% of the budget is refused. Only sockets: gRPC."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from fractions import Fraction

import grpc
import pytest
from e2e_support import CALL_TIMEOUT_SECONDS, DONGSHENG, create_vote_once_known, poll
from google.protobuf.timestamp_pb2 import Timestamp
from sample_data import new_resident_id, request_id

from wuye.core.auth import Role, issue_token
from wuye.fund.v1 import fund_service_pb2 as pb
from wuye.fund.v1 import fund_service_pb2_grpc as pb_grpc
from wuye.launcher import read_secrets_file
from wuye.registry.v1 import registry_service_pb2 as registry_pb
from wuye.voting.v1 import voting_service_pb2 as voting_pb
from wuye.voting.v1 import voting_service_pb2_grpc as voting_grpc

pytestmark = pytest.mark.e2e

# Exclusive areas as the property register gives them, m².
AREAS = {"1-1-101": "89.37", "1-1-102": "120.45", "1-2-201": "65.53", "1-2-202": "143.39"}


@pytest.fixture
def fund(platform) -> Iterator[pb_grpc.FundServiceStub]:
    """The fund service at the address the launcher published."""
    with grpc.insecure_channel(platform.description["grpc"]["fund"]) as channel:
        yield pb_grpc.FundServiceStub(channel)


@pytest.fixture
def voting(platform) -> Iterator[voting_grpc.VotingServiceStub]:
    with grpc.insecure_channel(platform.description["grpc"]["voting"]) as channel:
        yield voting_grpc.VotingServiceStub(channel)


def _as(platform, role: Role, subject: str) -> tuple[tuple[str, str], ...]:
    secret = read_secrets_file(platform.state_dir)["WUYE_TOKEN_SECRET"]
    token = issue_token(secret, subject=subject, role=role, districts=[DONGSHENG])
    return (("authorization", f"Bearer {token}"),)


def _registered_units(platform) -> tuple[str, list[registry_pb.Unit]]:
    registry = platform.registry()
    auth = platform.auth()
    project = registry.RegisterProject(
        registry_pb.RegisterProjectRequest(
            request_id=request_id(),
            project=registry_pb.Project(
                name="维修资金小区",
                type=registry_pb.PROJECT_TYPE_RESIDENTIAL,
                district_code=DONGSHENG,
                sub_district="天骄街道",
                address="鄂尔多斯市东胜区天骄路 18 号",
                building_area_m2="5000.00",
            ),
        ),
        metadata=auth,
        timeout=CALL_TIMEOUT_SECONDS,
    ).project
    units = registry.RegisterUnits(
        registry_pb.RegisterUnitsRequest(
            request_id=request_id(),
            project_id=project.project_id,
            units=[
                registry_pb.Unit(
                    number=number,
                    exclusive_area_m2=area,
                    owner=registry_pb.Owner(
                        kind=registry_pb.OWNER_KIND_PERSON,
                        name="业主",
                        id_number=new_resident_id(),
                        phone="13812345678",
                    ),
                )
                for number, area in AREAS.items()
            ],
        ),
        metadata=auth,
        timeout=CALL_TIMEOUT_SECONDS,
    ).units
    return project.project_id, list(units)


def _decided_by_vote(
    platform, voting, project_id: str, units: list[registry_pb.Unit], amount: int
) -> str:
    """The owners vote to use the fund: the sub-district office opens the vote (no notice in the
    test city), every owner votes yes with their own token, and the office closes it."""
    office = _as(platform, Role.SUB_DISTRICT, "天骄街道办事处")
    close = Timestamp()
    close.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=7))

    vote = create_vote_once_known(
        voting,
        voting_pb.Vote(
            project_id=project_id,
            title="使用维修资金更换屋面防水层",
            matters=[
                voting_pb.Matter(
                    type=voting_pb.MATTER_TYPE_USE_FUND,
                    title="更换屋面防水层",
                    text="使用专项维修资金 15,000 元更换屋面防水层，按专有面积分摊。",
                    fund_amount_fen=amount,
                    unit_ids=[u.unit_id for u in units],
                )
            ],
            close_time=close,
        ),
        office,
    )
    assert vote.roll_owners == len(units)
    for unit in units:
        voting.CastBallot(
            voting_pb.CastBallotRequest(
                request_id=request_id(),
                vote_id=vote.vote_id,
                choices=[voting_pb.MatterChoice(matter_id="M1", choice=voting_pb.CHOICE_YES)],
            ),
            metadata=_as(platform, Role.OWNER, unit.owner.owner_key),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    closed = voting.CloseVote(
        voting_pb.CloseVoteRequest(vote_id=vote.vote_id),
        metadata=office,
        timeout=CALL_TIMEOUT_SECONDS,
    ).vote
    assert closed.result.matters[0].passed
    return vote.vote_id


def test_a_decided_use_is_paid_in_exact_shares_and_an_emergency_needs_no_vote(
    platform, fund, voting
):
    project_id, units = _registered_units(platform)
    authority = _as(platform, Role.DISTRICT_AUTHORITY, "fund-centre")
    call = {"metadata": authority, "timeout": CALL_TIMEOUT_SECONDS}

    # 1. The registry's units reach the fund: an account each.
    def accounts() -> list[pb.UnitAccount] | None:
        found = fund.ListAccounts(pb.ListAccountsRequest(project_id=project_id), **call).accounts
        return list(found) if len(found) == len(units) else None

    opened = poll(accounts, "the units' fund accounts")
    areas = {a.unit_id: a.exclusive_area_cm2 for a in opened}
    assert sorted(areas.values()) == sorted(round(float(a) * 10_000) for a in AREAS.values())

    # 2. First deposits: 5% of 2,000 yuan per m² of each unit's area.
    for unit in units:
        deposited = fund.RecordDeposit(
            pb.RecordDepositRequest(
                request_id=request_id(),
                unit_id=unit.unit_id,
                kind=pb.DEPOSIT_KIND_FIRST,
                construction_cost_fen_per_m2=200_000,
            ),
            **call,
        )
        # 5% of 200,000 fen is 10,000 fen a m², one fen a cm².
        assert deposited.amount_fen == areas[unit.unit_id]
    # An owner reads their own account.
    mine = fund.GetAccount(
        pb.GetAccountRequest(unit_id=units[0].unit_id),
        metadata=_as(platform, Role.OWNER, units[0].owner.owner_key),
        timeout=CALL_TIMEOUT_SECONDS,
    ).account
    assert mine.balance_fen == mine.first_deposit_fen == areas[units[0].unit_id]

    # 3. The owners vote to use the fund; their decision opens a use.
    vote_id = _decided_by_vote(platform, voting, project_id, units, 1_500_000)

    def opened_use() -> pb.Use | None:
        found = fund.ListUses(pb.ListUsesRequest(project_id=project_id), **call).uses
        return found[0] if found else None

    use = poll(opened_use, "the use opened by the owners' decision")
    assert (use.state, use.origin, use.budget_fen, use.decision.vote_id) == (
        pb.USE_STATE_PENDING_APPROVAL,
        pb.USE_ORIGIN_DECISION,
        1_500_000,
        vote_id,
    )

    # 4. Approved, paid in two stages, completed: every share exact, summing to its payment.
    fund.ApproveUse(
        pb.ApproveUseRequest(
            use_id=use.use_id, works_kind=pb.WORKS_KIND_COMMON_PARTS, budget_fen=1_500_000
        ),
        **call,
    )
    whole = sum(areas.values())
    payments = []
    for amount in (600_000, 700_000):
        payment = fund.PayWorks(
            pb.PayWorksRequest(request_id=request_id(), use_id=use.use_id, amount_fen=amount),
            **call,
        ).payment
        assert sum(s.share_fen for s in payment.shares) == amount
        for share in payment.shares:
            assert abs(share.share_fen - Fraction(amount * areas[share.unit_id], whole)) < 1
            assert share.debited_fen == share.share_fen
        payments.append(payment)
    completed = fund.CompleteUse(
        pb.CompleteUseRequest(request_id=request_id(), use_id=use.use_id, final_cost_fen=1_400_000),
        **call,
    )
    assert completed.use.state == pb.USE_STATE_COMPLETED
    assert sum(s.share_fen for s in completed.settlement.shares) == 100_000
    for unit in units:
        account = fund.GetAccount(pb.GetAccountRequest(unit_id=unit.unit_id), **call).account
        debited = sum(
            s.debited_fen
            for p in (*payments, completed.settlement)
            for s in p.shares
            if s.unit_id == unit.unit_id
        )
        assert account.balance_fen == areas[unit.unit_id] - debited
    reconciled = fund.ReconcileFund(pb.ReconcileFundRequest(project_id=project_id), **call)
    assert reconciled.reconciled
    assert reconciled.book_balance_fen == whole - 1_400_000

    # 5. An emergency roof leak: requested by the enterprise, approved without a vote, and its
    # first payment over 60% of the budget refused.
    requested = fund.RequestEmergencyUse(
        pb.RequestEmergencyUseRequest(
            request_id=request_id(),
            project_id=project_id,
            title="3 号楼屋面渗漏",
            kind=pb.EMERGENCY_KIND_ROOF_LEAK,
            requester=pb.EMERGENCY_REQUESTER_ENTERPRISE,
            works_kind=pb.WORKS_KIND_COMMON_PARTS,
            budget_fen=200_000,
            evidence=["photo:leak-3.jpg"],
        ),
        metadata=_as(platform, Role.ENTERPRISE, "911506027563457898"),
        timeout=CALL_TIMEOUT_SECONDS,
    ).use
    approved = fund.ApproveUse(
        pb.ApproveUseRequest(
            use_id=requested.use_id, works_kind=pb.WORKS_KIND_COMMON_PARTS, budget_fen=200_000
        ),
        **call,
    ).use
    assert approved.state == pb.USE_STATE_APPROVED and not approved.HasField("decision")
    with pytest.raises(grpc.RpcError) as refused:
        fund.PayWorks(
            pb.PayWorksRequest(
                request_id=request_id(), use_id=requested.use_id, amount_fen=120_001
            ),
            **call,
        )
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "120000 fen" in refused.value.details()
    after = fund.ReconcileFund(pb.ReconcileFundRequest(project_id=project_id), **call)
    assert after.reconciled and after.book_balance_fen == reconciled.book_balance_fen
