"""Fuzzing every method of wuye.inspections.v1.InspectionsService over a real socket, with the
strategies of the fuzz loop in grpc_support: random bytes, empty requests and random well-typed
requests (odd unicode, huge strings, extreme integers and dates, unknown enum numbers), seeded
with real project, round, check, order and inspector ids, grades, periods and checklist items so
that some calls get past validation; then nearly valid rounds, checks and re-inspections. A
caller never sees UNKNOWN or INTERNAL (nor a hang), and the server keeps working.
"""

from __future__ import annotations

import pytest
from google.protobuf.message import Message
from google.type import date_pb2
from grpc_support import NASTY, fuzz_every_payload, fuzz_nearly_valid
from hypothesis import strategies as st
from test_inspections_support import (
    DONGSHENG,
    KANGBASHI,
    RESIDENTIAL_MAX,
    InspectionsServer,
    inspections_servers,
    new_credit_code,
)

from wuye.core.auth import Role
from wuye.credit.v1 import credit_service_pb2 as credit_pb
from wuye.inspections.v1 import inspections_service_pb2 as pb

pytestmark = pytest.mark.integration

SERVICE = pb.DESCRIPTOR.services_by_name["InspectionsService"]
MESSAGE_EXAMPLES = 40
BYTES_EXAMPLES = 8
DEEP_EXAMPLES = 50


@pytest.fixture
def inspections(make_settings):
    with inspections_servers(make_settings) as start:
        yield start()


def _seed(inspections: InspectionsServer) -> tuple[list[str], str]:
    """Real records, so that fuzzed ids sometimes name them; returns the pool and an inspector
    drawn for the checks."""
    drawn = inspections.drawn_round(projects=3, inspectors=2, period="2026H1")
    committed = inspections.create_round(period="2026H2")
    first = drawn.selections[0]
    [order] = inspections.record(first, findings=[inspections.finding()]).rectifications
    pool = [
        drawn.round_id,
        committed.round_id,
        *(s.check_id for s in drawn.selections),
        *(s.project_id for s in drawn.selections),
        *(i.inspector_id for i in drawn.inspectors),
        order.order_id,
        new_credit_code(),
        drawn.entities[0].credit_code,
        "C",
        "AAA",
        "C_UNFILED",
        "UNSERVED",
        "0.30",
        "1",
        "2026",
        "2026H1",
        "2026H2",
        DONGSHENG,
        KANGBASHI,
        # A resident ID number (a relative's) that passes its check.
        "15060219850615001X",
        *RESIDENTIAL_MAX,
        *RESIDENTIAL_MAX.values(),
    ]
    return pool, first.inspector_ids[0]


@pytest.mark.parametrize("method", list(SERVICE.methods), ids=lambda m: m.name)
def test_no_request_makes_a_method_fail_internally_or_stop_answering(inspections, method):
    pool, inspector = _seed(inspections)
    tokens = {
        "admin": inspections.admin.metadata,
        "authority": inspections.authority().metadata,
        "inspector": inspections.inspector(inspector).metadata,
        "sub_district": inspections.client(Role.SUB_DISTRICT, "street", [DONGSHENG]).metadata,
        "anonymous": (),
    }
    fuzz_every_payload(
        inspections,
        method,
        tokens,
        pool,
        bytes_examples=BYTES_EXAMPLES,
        message_examples=MESSAGE_EXAMPLES,
    )
    # And it still does its work.
    assert inspections.anonymous.GetRound(pb.GetRoundRequest(round_id=pool[0])).round.seed


# -- requests valid but for one or two fields, to reach past the first checks

_DECIMALS = st.one_of(
    st.integers(0, 200).map(lambda tenths: str(tenths / 10)),
    st.sampled_from(
        ["1e400", "1E-999999999", "1E+1", "NaN", "-0", "0.05", "8.50", " 8", "8_0", "٨", "Inf"]
    ),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12),
)
_DATES = st.one_of(
    st.dates().map(lambda d: date_pb2.Date(year=d.year, month=d.month, day=d.day)),
    st.builds(
        date_pb2.Date,
        year=st.integers(-(2**31), 2**31 - 1),
        month=st.integers(-1, 13),
        day=st.integers(-1, 32),
    ),
)
_TEXTS = st.one_of(
    st.sampled_from(["消防通道被占用", "x" * 500, "x" * 501]), st.sampled_from(NASTY)
)


def _round_requests(pool: list[str]) -> st.SearchStrategy[Message]:
    return st.builds(
        lambda request_id, districts, period, rates, floor, per_check: pb.CreateRoundRequest(
            request_id=request_id,
            district_codes=districts,
            period=period,
            rates=rates,
            floor_rate=floor,
            inspectors_per_check=per_check,
        ),
        st.one_of(st.uuids().map(str), st.uuids().map(str), st.sampled_from(NASTY)),
        st.lists(st.sampled_from([DONGSHENG, KANGBASHI, "999999", ""]), min_size=1, max_size=3),
        st.one_of(st.sampled_from(["2026", "2026H1", "2026H2", "0000", "9999H1"]), st.text()),
        st.lists(
            st.builds(
                pb.SamplingRate,
                grade=st.sampled_from(["AAA", "AA", "A", "B", "C", "C_UNFILED", "UNSERVED", "D"]),
                rate=_DECIMALS,
            ),
            max_size=4,
        ),
        st.one_of(st.just(""), _DECIMALS),
        st.sampled_from([0, 1, 2, 3, 10, 11, -1, 2**31 - 1]),
    )


def _check_requests(pool: list[str]) -> st.SearchStrategy[Message]:
    def build(check_id, changed, findings) -> Message:
        values = {**RESIDENTIAL_MAX, **changed}
        return pb.RecordCheckRequest(
            check_id=check_id,
            scores=[pb.ItemScore(item_id=k, score=v) for k, v in values.items()],
            findings=findings,
        )

    return st.builds(
        build,
        st.sampled_from([p for p in pool if "-K" in p]),
        st.dictionaries(st.sampled_from([*RESIDENTIAL_MAX, "O01", ""]), _DECIMALS, max_size=3),
        st.lists(
            st.builds(
                pb.Finding,
                item_id=st.sampled_from([*RESIDENTIAL_MAX, "H01", ""]),
                description=_TEXTS,
                rectify_by=_DATES,
            ),
            max_size=3,
        ),
    )


def _reinspection_requests(pool: list[str]) -> st.SearchStrategy[Message]:
    return st.builds(
        pb.RecordReinspectionRequest,
        order_id=st.sampled_from([p for p in pool if "-O" in p]),
        rectified=st.booleans(),
        note=_TEXTS,
        rectify_by=_DATES,
    )


DEEP = {
    "CreateRound": _round_requests,
    "RecordCheck": _check_requests,
    "RecordReinspection": _reinspection_requests,
}


@pytest.mark.parametrize("method_name", sorted(DEEP))
def test_nearly_valid_requests_are_answered_or_refused_never_failed(inspections, method_name):
    pool, _ = _seed(inspections)
    # More drawn checks to record, and a grade mix for the rounds.
    for grade in (credit_pb.GRADE_C, credit_pb.GRADE_B, credit_pb.GRADE_AAA):
        inspections.project(credit_code=None, grade=grade)
    extra = inspections.draw(inspections.create_round(period="2027", floor_rate="1").round_id)
    pool += [s.check_id for s in extra.selections]
    outcomes = fuzz_nearly_valid(
        getattr(inspections.admin, method_name), method_name, DEEP[method_name](pool), DEEP_EXAMPLES
    )
    # Some got past validation, to the rules behind it.
    assert outcomes.keys() - {"INVALID_ARGUMENT"}, outcomes
    assert inspections.anonymous.GetRound(pb.GetRoundRequest(round_id=pool[0])).round.seed
