"""The fund on PostgreSQL and Kafka, as its callers and the services it listens to meet it: the
registry's units open accounts through Kafka, deposits are recorded, the owners' decision
(DecisionAdopted, produced as voting announces it) opens a use once however often it arrives,
the authority approves it, it is paid in two stages and completed; every share is the unit's
exact area share and the shares add up to the payment; the ledger reconciles. Then an emergency
without a vote, its first payment limit, its escalation, an alarm's draft, interest and a
correction."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest
from kafka_support import EventProducer, HandDriven
from sample_data import request_id
from test_fund_support import (
    DONGSHENG,
    KANGBASHI,
    FundServer,
    exact_share,
    fund_servers,
)

from wuye.core.auth import Role
from wuye.fund.commands import Fund
from wuye.fund.service import SPEC
from wuye.fund.v1 import events_pb2 as ev
from wuye.fund.v1 import fund_service_pb2 as pb
from wuye.registry.v1 import events_pb2 as registry_events

pytestmark = pytest.mark.integration

POLL_TIMEOUT_SECONDS = 30.0
# Exclusive areas in cm² (89.37 m², ...): unequal, so that remainders decide fen.
AREAS = [893_700, 1_204_500, 655_300, 1_433_900, 999_900]


@pytest.fixture
def start_fund(make_settings):
    with fund_servers(make_settings) as start:
        yield start


@pytest.fixture
def fund(start_fund) -> FundServer:
    return start_fund()


def test_a_decided_use_through_kafka_is_approved_paid_in_two_stages_completed_and_reconciles(
    start_fund, wait_until
):
    # Events list the shares of at most 4 units: this project's 5 are left out of WorksPaid.
    fund = start_fund(fund_max_event_shares=4)
    driven = HandDriven.of(SPEC.consumers[0], fund.settings, fund.engine)
    producer = EventProducer(fund.settings)

    authority = fund.authority()
    try:
        units = fund.units_registered(AREAS)
        project_id = units.project_id
        producer.produce("wuye.registry.project.v1", units, project_id, str(uuid.uuid4()))
        wait_until(
            lambda: (
                driven.poll() >= 0
                and fund.count("accounts", project_id=project_id) == len(AREAS)
            ),
            timeout=POLL_TIMEOUT_SECONDS,
            what="the accounts opened by UnitsRegistered",
        )
        ids = [u.unit_id for u in units.units]

        # The first deposit of unit 0 from the construction cost: 5% of 2,000 yuan/m² × 89.37 m².
        first = authority.RecordDeposit(
            pb.RecordDepositRequest(
                request_id=request_id(),
                unit_id=ids[0],
                kind=pb.DEPOSIT_KIND_FIRST,
                construction_cost_fen_per_m2=200_000,
            )
        )
        assert (first.amount_fen, first.rate) == (893_700, "1/20")
        assert first.account.balance_fen == first.account.first_deposit_fen == 893_700
        for unit_id in ids[1:4]:
            fund.deposit(unit_id, 1_000_000)
        # Unit 4 deposited little: it will owe most of its shares.
        fund.deposit(ids[4], 10_000)

        decision = fund.decision_adopted(project_id, 1_000_000, ids)
        event_id = str(uuid.uuid4())
        producer.produce("wuye.voting.vote.v1", decision, decision.vote_id, event_id)
        wait_until(
            lambda: (
                driven.poll() >= 0
                and fund.count("uses", project_id=project_id) == 1
            ),
            timeout=POLL_TIMEOUT_SECONDS,
            what="the use opened by DecisionAdopted",
        )
        # Delivered again, as after a rebalance, and once more under a new event id: nothing
        # opens twice.
        for again in (event_id, str(uuid.uuid4())):
            where = producer.produce("wuye.voting.vote.v1", decision, decision.vote_id, again)
            wait_until(lambda w=where: driven.past("wuye.voting.vote.v1", *w))
    finally:
        driven.close()
        producer.close()
    assert fund.count("uses", project_id=project_id) == 1
    assert len(fund.outbox_events(ev.UseOpened)) == 1

    [use] = authority.ListUses(pb.ListUsesRequest(project_id=project_id)).uses
    assert use.state == pb.USE_STATE_PENDING_APPROVAL and use.origin == pb.USE_ORIGIN_DECISION
    assert (use.decision.vote_id, use.decision.passed, use.budget_fen) == (
        decision.vote_id,
        True,
        1_000_000,
    )
    # What the fund never pays (Art. 25) is refused by name.
    refused = authority.fails(
        "ApproveUse",
        pb.ApproveUseRequest(
            use_id=use.use_id, works_kind=pb.WORKS_KIND_UNDER_WARRANTY, budget_fen=1_000_000
        ),
    )
    assert refused.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "warranty" in refused.violations["works_kind"]
    # Only an authority approves.
    denied = fund.requester().fails(
        "ApproveUse",
        pb.ApproveUseRequest(
            use_id=use.use_id, works_kind=pb.WORKS_KIND_COMMON_PARTS, budget_fen=1_000_000
        ),
    )
    assert denied.code is grpc.StatusCode.PERMISSION_DENIED
    approved = authority.ApproveUse(
        pb.ApproveUseRequest(
            use_id=use.use_id, works_kind=pb.WORKS_KIND_COMMON_PARTS, budget_fen=1_000_000
        )
    ).use
    assert approved.state == pb.USE_STATE_APPROVED

    paid = []
    for amount in (400_000, 500_000):
        answer = authority.PayWorks(
            pb.PayWorksRequest(request_id=request_id(), use_id=use.use_id, amount_fen=amount)
        )
        payment = answer.payment
        assert sum(s.share_fen for s in payment.shares) == amount
        area_of = dict(zip(ids, AREAS, strict=True))
        assert sorted(s.unit_id for s in payment.shares) == sorted(ids)
        for share in payment.shares:
            assert abs(share.share_fen - exact_share(amount, area_of[share.unit_id], AREAS)) < 1
            assert share.debited_fen + share.owed_fen == share.share_fen
        assert payment.debited_fen + payment.owed_fen == amount
        paid.append(payment)
    announced = fund.outbox_events(ev.WorksPaid)
    assert [(e.shares_omitted, len(e.payment.shares)) for e in announced] == [(True, 0)] * 2
    assert [e.payment.debited_fen + e.payment.owed_fen for e in announced] == [400_000, 500_000]
    owing = fund.admin.GetAccount(pb.GetAccountRequest(unit_id=ids[4])).account
    assert owing.balance_fen == 0 and owing.owed_fen > 0 and owing.top_up_required

    # Past the approved budget: refused, and the ledger is as it was.
    before = fund.ledger_size()
    over = authority.fails(
        "PayWorks",
        pb.PayWorksRequest(request_id=request_id(), use_id=use.use_id, amount_fen=100_001),
    )
    assert (over.code, over.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PAYMENT_OVER_BUDGET",
    )
    assert fund.ledger_size() == before

    completed = authority.CompleteUse(
        pb.CompleteUseRequest(request_id=request_id(), use_id=use.use_id, final_cost_fen=950_000)
    )
    assert completed.use.state == pb.USE_STATE_COMPLETED
    assert completed.settlement.amount_fen == 50_000 and completed.use.paid_fen == 950_000

    # Each unit was charged its shares, debited from its balance as far as it went.
    for unit_id in ids:
        account = fund.admin.GetAccount(pb.GetAccountRequest(unit_id=unit_id)).account
        debited = sum(
            s.debited_fen
            for p in (*paid, completed.settlement)
            for s in p.shares
            if s.unit_id == unit_id
        )
        assert account.used_fen == debited
        assert account.balance_fen == account.deposited_fen - debited

    # The unit that owed tops up: what it owes is paid from the new balance, to the use's works.
    owed = fund.admin.GetAccount(pb.GetAccountRequest(unit_id=ids[4])).account
    topped = fund.deposit(ids[4], owed.owed_fen + 1_000, kind=pb.DEPOSIT_KIND_TOP_UP).account
    assert (topped.owed_fen, topped.balance_fen) == (0, 1_000)
    assert topped.used_fen == owed.used_fen + owed.owed_fen
    settled = authority.GetUse(pb.GetUseRequest(use_id=use.use_id)).use
    assert settled.owed_fen == 0

    project = authority.ReconcileFund(pb.ReconcileFundRequest(project_id=project_id))
    city = fund.admin.ReconcileFund(pb.ReconcileFundRequest())
    for result in (project, city):
        assert result.reconciled and not result.discrepancies
        assert result.book_balance_fen == result.unit_balances_fen
    statement = pb.BankStatement(project_id=project_id, balance_fen=project.book_balance_fen + 1)
    off = authority.ReconcileFund(
        pb.ReconcileFundRequest(project_id=project_id, bank_statements=[statement])
    )
    assert not off.reconciled and off.discrepancies[0].bank_statement_fen == statement.balance_fen

    # Published to anyone: the decision, the payments and every unit's share by number.
    [published] = fund.anonymous.ListPublishedUses(
        pb.ListPublishedUsesRequest(project_id=project_id)
    ).uses
    assert [p.amount_fen for p in published.payments] == [400_000, 500_000, 50_000]
    assert {s.unit_number for s in published.payments[0].shares} == {u.number for u in units.units}
    summary = fund.anonymous.GetProjectFund(pb.GetProjectFundRequest(project_id=project_id)).fund
    assert summary.balance_fen == project.book_balance_fen and summary.completed_uses == 1

    # An owner reads their own unit's account, and no other.
    mine = fund.owner(units.units[1].owner_key)
    held = mine.GetAccount(pb.GetAccountRequest(unit_id=ids[1])).account
    assert mine.fails("GetAccount", pb.GetAccountRequest(unit_id=ids[2])).reason == (
        "NOT_OWNER_OF_UNIT"
    )
    # Sold: the balance stays with the unit, and its new owner reads it, the seller no more.
    fund.deliver(
        registry_events.UnitOwnershipTransferred(
            unit_id=ids[1], project_id=project_id, district_code=DONGSHENG, owner_key="buyer-key"
        )
    )
    bought = fund.owner("buyer-key").GetAccount(pb.GetAccountRequest(unit_id=ids[1])).account
    assert bought.balance_fen == held.balance_fen
    assert mine.fails("GetAccount", pb.GetAccountRequest(unit_id=ids[1])).reason == (
        "NOT_OWNER_OF_UNIT"
    )


def test_an_emergency_is_approved_without_a_vote_and_its_first_payment_is_limited(fund):
    units = fund.open_project(AREAS)
    project_id = units.project_id
    ids = [u.unit_id for u in units.units]
    for unit_id in ids:
        fund.deposit(unit_id, 500_000)
    enterprise = fund.requester(Role.ENTERPRISE)
    request = pb.RequestEmergencyUseRequest(
        request_id=request_id(),
        project_id=project_id,
        title="1 号楼屋面渗漏",
        kind=pb.EMERGENCY_KIND_ROOF_LEAK,
        requester=pb.EMERGENCY_REQUESTER_ENTERPRISE,
        works_kind=pb.WORKS_KIND_COMMON_PARTS,
        budget_fen=100_000,
        evidence=["photo:roof-0001.jpg"],
    )
    requested = enterprise.RequestEmergencyUse(request).use
    assert requested.state == pb.USE_STATE_PENDING_APPROVAL and not requested.HasField("decision")
    assert requested.emergency.HasField("notify_time") and requested.emergency.approve_by.year
    [notice] = fund.outbox_events(ev.EmergencyRequested)
    assert notice.use_id == requested.use_id and list(notice.unit_ids) == sorted(ids)
    # Not yet published: an emergency is published after its works.
    assert not fund.anonymous.ListPublishedUses(
        pb.ListPublishedUsesRequest(project_id=project_id)
    ).uses

    authority = fund.authority()
    approved = authority.ApproveUse(
        pb.ApproveUseRequest(
            use_id=requested.use_id, works_kind=pb.WORKS_KIND_COMMON_PARTS, budget_fen=100_000
        )
    ).use
    assert approved.state == pb.USE_STATE_APPROVED
    [approval] = fund.outbox_events(ev.EmergencyApproved)
    assert approval.first_payment_limit_fen == 60_000

    before = (
        fund.ledger_size(),
        authority.ListAccounts(pb.ListAccountsRequest(project_id=project_id)),
    )
    over = authority.fails(
        "PayWorks",
        pb.PayWorksRequest(request_id=request_id(), use_id=requested.use_id, amount_fen=60_001),
    )
    assert (over.code, over.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "FIRST_PAYMENT_OVER_LIMIT",
    )
    assert "60000 fen" in over.message
    assert (
        fund.ledger_size(),
        authority.ListAccounts(pb.ListAccountsRequest(project_id=project_id)),
    ) == before
    first = authority.PayWorks(
        pb.PayWorksRequest(request_id=request_id(), use_id=requested.use_id, amount_fen=60_000)
    ).payment
    assert sum(s.share_fen for s in first.shares) == 60_000

    # An extremely urgent request is due the same day: the next day the timer escalates it.
    urgent = enterprise.RequestEmergencyUse(
        pb.RequestEmergencyUseRequest(
            request_id=request_id(),
            project_id=project_id,
            title="2 号电梯困人",
            kind=pb.EMERGENCY_KIND_DANGEROUS_LIFT_FAULT,
            requester=pb.EMERGENCY_REQUESTER_ENTERPRISE,
            works_kind=pb.WORKS_KIND_COMMON_FACILITIES,
            budget_fen=50_000,
            evidence=["report:lift-2"],
            extremely_urgent=True,
        )
    ).use
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert Fund(fund.engine, fund.settings, clock=lambda: later).escalate_overdue() == 1
    assert Fund(fund.engine, fund.settings, clock=lambda: later).escalate_overdue() == 0
    escalated = authority.GetUse(pb.GetUseRequest(use_id=urgent.use_id)).use
    assert escalated.state == pb.USE_STATE_ESCALATED
    assert escalated.emergency.HasField("escalate_time")

    # A fire-system alarm escalated by the intake opens a draft, once; the enterprise files it.
    alarm = fund.alarm_escalated(project_id)
    fund.deliver(alarm, topic="wuye.iot.alarm.v1")
    fund.deliver(alarm, topic="wuye.iot.alarm.v1")
    drafts = authority.ListUses(
        pb.ListUsesRequest(project_id=project_id, state=pb.USE_STATE_DRAFT)
    ).uses
    assert [d.emergency.alarm_id for d in drafts] == [alarm.alarm.id]
    filed = enterprise.RequestEmergencyUse(
        pb.RequestEmergencyUseRequest(
            request_id=request_id(),
            project_id=project_id,
            draft_use_id=drafts[0].use_id,
            title="消防水泵压力不足",
            kind=pb.EMERGENCY_KIND_FIRE_SYSTEM_FAULT,
            requester=pb.EMERGENCY_REQUESTER_ENTERPRISE,
            works_kind=pb.WORKS_KIND_COMMON_FACILITIES,
            budget_fen=80_000,
            evidence=["alarm:" + alarm.alarm.id],
        )
    ).use
    assert (filed.use_id, filed.state) == (drafts[0].use_id, pb.USE_STATE_PENDING_APPROVAL)

    # Interest by balances, once per period; a deposit corrected by its exact reverse.
    interest = authority.AllocateInterest(
        pb.AllocateInterestRequest(
            request_id=request_id(), project_id=project_id, period="2026", interest_fen=12_345
        )
    )
    assert interest.accounts == len(ids)
    again = authority.fails(
        "AllocateInterest",
        pb.AllocateInterestRequest(
            request_id=request_id(), project_id=project_id, period="2026", interest_fen=1
        ),
    )
    assert (again.code, again.reason) == (grpc.StatusCode.ALREADY_EXISTS, "INTEREST_ALLOCATED")
    # Nor again as part of its district's.
    district = authority.fails(
        "AllocateInterest",
        pb.AllocateInterestRequest(
            request_id=request_id(), district_code=DONGSHENG, period="2026", interest_fen=1
        ),
    )
    assert (district.reason, district.metadata["scope"]) == ("INTEREST_ALLOCATED", project_id)
    accounts = authority.ListAccounts(pb.ListAccountsRequest(project_id=project_id)).accounts
    assert sum(a.interest_fen for a in accounts) == 12_345
    topped = fund.deposit(ids[0], 7_000, kind=pb.DEPOSIT_KIND_TOP_UP)
    undone = authority.ReverseEntry(
        pb.ReverseEntryRequest(
            request_id=request_id(), entry_id=topped.entry.entry_id, reason="录入错误"
        )
    ).reversal
    assert undone.reverses_entry_id == topped.entry.entry_id
    restored = fund.admin.GetAccount(pb.GetAccountRequest(unit_id=ids[0])).account
    assert restored.balance_fen == topped.account.balance_fen - 7_000
    assert authority.ReconcileFund(pb.ReconcileFundRequest(district_code=DONGSHENG)).reconciled
    # Another district's authority reaches none of it.
    stranger = fund.authority(KANGBASHI)
    assert (
        stranger.fails("GetUse", pb.GetUseRequest(use_id=requested.use_id)).code
        is grpc.StatusCode.PERMISSION_DENIED
    )
