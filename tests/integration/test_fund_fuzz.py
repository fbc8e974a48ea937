"""Fuzzing every method of wuye.fund.v1.FundService over a real socket, with the strategies of the
fuzz loop in grpc_support: random bytes, empty requests and random well-typed requests (odd
unicode, huge strings, extreme integers, unknown enum numbers), seeded with real project, unit,
use and entry ids so that some calls get past validation; then nearly valid payments, deposits
and emergency requests. A caller never sees UNKNOWN or INTERNAL (nor a hang), the server keeps
working, and the ledger still reconciles."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message
from grpc_support import NASTY, fuzz_every_payload, fuzz_nearly_valid
from hypothesis import strategies as st
from sample_data import request_id
from test_fund_support import DONGSHENG, KANGBASHI, FundServer, fund_servers

from wuye.fund.v1 import fund_service_pb2 as pb

pytestmark = pytest.mark.integration

SERVICE = pb.DESCRIPTOR.services_by_name["FundService"]
MESSAGE_EXAMPLES = 25
BYTES_EXAMPLES = 5
DEEP_EXAMPLES = 40
AREAS = [893_700, 1_204_500, 655_300]


@pytest.fixture
def fund(make_settings):
    with fund_servers(make_settings) as start:
        yield start()


def _seed(fund: FundServer) -> tuple[list[str], dict]:
    """A project with deposits, an approved use the owners decided with a payment, and an
    emergency request; returns the pool of real values and the units' registration."""
    units = fund.open_project(AREAS)
    ids = [u.unit_id for u in units.units]
    entries = [fund.deposit(unit_id, 300_000).entry.entry_id for unit_id in ids]
    fund.deliver(fund.decision_adopted(units.project_id, 200_000), topic="wuye.voting.vote.v1")
    authority = fund.authority()
    [decided] = authority.ListUses(pb.ListUsesRequest(project_id=units.project_id)).uses
    authority.ApproveUse(
        pb.ApproveUseRequest(
            use_id=decided.use_id, works_kind=pb.WORKS_KIND_COMMON_PARTS, budget_fen=200_000
        )
    )
    paid = authority.PayWorks(
        pb.PayWorksRequest(request_id=request_id(), use_id=decided.use_id, amount_fen=50_000)
    )
    emergency = (
        fund.requester()
        .RequestEmergencyUse(
            pb.RequestEmergencyUseRequest(
                request_id=request_id(),
                project_id=units.project_id,
                title="屋面渗漏",
                kind=pb.EMERGENCY_KIND_ROOF_LEAK,
                requester=pb.EMERGENCY_REQUESTER_ENTERPRISE,
                works_kind=pb.WORKS_KIND_COMMON_PARTS,
                budget_fen=90_000,
                evidence=["photo:1"],
            )
        )
        .use
    )
    pool = [
        units.project_id,
        *ids,
        *entries,
        paid.payment.entry_id,
        decided.use_id,
        emergency.use_id,
        units.units[0].owner_key,
        "2026",
        "2026-H1",
        DONGSHENG,
        KANGBASHI,
        f"{DONGSHENG}-Wnotause0000",
    ]
    return pool, {"units": units, "decided": decided.use_id, "emergency": emergency.use_id}


def test_no_request_makes_any_method_fail_internally_or_stop_answering(fund):
    pool, seeded = _seed(fund)
    owner = seeded["units"].units[0].owner_key
    tokens = {
        "admin": fund.admin.metadata,
        "authority": fund.authority().metadata,
        "elsewhere": fund.authority(KANGBASHI).metadata,
        "enterprise": fund.requester().metadata,
        "owner": fund.owner(owner).metadata,
        "anonymous": (),
    }
    for method in SERVICE.methods:
        fuzz_every_payload(
            fund,
            method,
            tokens,
            pool,
            bytes_examples=BYTES_EXAMPLES,
            message_examples=MESSAGE_EXAMPLES,
        )
    # It still does its work, and whatever was accepted kept the ledger sound.
    project_id = seeded["units"].project_id
    assert fund.anonymous.GetProjectFund(pb.GetProjectFundRequest(project_id=project_id)).fund
    assert fund.admin.ReconcileFund(pb.ReconcileFundRequest()).reconciled


# -- requests valid but for a field or two, to reach past the first checks

_AMOUNTS = st.one_of(
    st.integers(-2, 200_000),
    st.sampled_from([0, 1, 60_000, 60_001, 10**13, 10**13 + 1, 2**63 - 1, -(2**63)]),
)
_TEXTS = st.one_of(st.sampled_from(["屋面渗漏", "x" * 200, "x" * 201]), st.sampled_from(NASTY))


def _payments(pool: list[str], seeded: dict) -> st.SearchStrategy[Message]:
    return st.builds(
        pb.PayWorksRequest,
        request_id=st.one_of(st.uuids().map(str), st.sampled_from(NASTY)),
        use_id=st.sampled_from([seeded["decided"], seeded["emergency"], *pool]),
        amount_fen=_AMOUNTS,
        bank_reference=_TEXTS,
    )


def _deposits(pool: list[str], seeded: dict) -> st.SearchStrategy[Message]:
    return st.builds(
        pb.RecordDepositRequest,
        request_id=st.uuids().map(str),
        unit_id=st.sampled_from(pool),
        kind=st.sampled_from([0, 1, 2, 3, -1]),
        construction_cost_fen_per_m2=st.one_of(_AMOUNTS, st.just(10**8)),
        amount_fen=_AMOUNTS,
    )


def _mostly(valid, other: st.SearchStrategy) -> st.SearchStrategy:
    """The valid value half the time: with several fields varied at once, some requests must
    still reach the rules."""
    return st.one_of(st.just(valid), other)


def _emergencies(pool: list[str], seeded: dict) -> st.SearchStrategy[Message]:
    units = [u.unit_id for u in seeded["units"].units]
    return st.builds(
        pb.RequestEmergencyUseRequest,
        request_id=st.uuids().map(str),
        project_id=_mostly(seeded["units"].project_id, st.sampled_from(pool)),
        title=_mostly("屋面渗漏", _TEXTS),
        kind=_mostly(pb.EMERGENCY_KIND_ROOF_LEAK, st.integers(-1, 7)),
        requester=_mostly(pb.EMERGENCY_REQUESTER_SUB_DISTRICT, st.integers(-1, 4)),
        works_kind=_mostly(pb.WORKS_KIND_COMMON_PARTS, st.integers(-1, 7)),
        budget_fen=_mostly(50_000, _AMOUNTS),
        unit_ids=_mostly([], st.lists(st.sampled_from([*units, *pool, ""]), max_size=4)),
        evidence=_mostly(["photo:2"], st.lists(_TEXTS, max_size=3)),
        extremely_urgent=st.booleans(),
    )


DEEP = {"PayWorks": _payments, "RecordDeposit": _deposits, "RequestEmergencyUse": _emergencies}


@pytest.mark.parametrize("method_name", sorted(DEEP))
def test_nearly_valid_requests_are_answered_or_refused_never_failed(fund, method_name):
    pool, seeded = _seed(fund)
    outcomes = fuzz_nearly_valid(
        getattr(fund.admin, method_name),
        method_name,
        DEEP[method_name](pool, seeded),
        DEEP_EXAMPLES,
    )
    # Some got past validation, to the rules behind it.
    assert outcomes.keys() - {"INVALID_ARGUMENT"}, outcomes
    assert fund.admin.ReconcileFund(pb.ReconcileFundRequest()).reconciled
