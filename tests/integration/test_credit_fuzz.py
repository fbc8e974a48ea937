"""Fuzzing every method of wuye.credit.v1.CreditService over a real socket, with the strategies
of the fuzz loop in grpc_support: random bytes, empty requests and random well-typed requests (odd
unicode, huge strings, extreme integers and times, unknown enum numbers), seeded with real
credit codes, record ids, record types and checklist items so that some calls get past
validation. A caller never sees UNKNOWN or INTERNAL (nor a hang), and the server keeps working.
"""

from __future__ import annotations

import time

import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_support import NASTY, fuzz_every_payload, fuzz_nearly_valid
from hypothesis import strategies as st
from sample_data import request_id
from test_credit_support import (
    DONGSHENG,
    RESIDENTIAL_MAX,
    assessment_request,
    credit_servers,
    new_credit_code,
)

from wuye.core.auth import Role
from wuye.credit.v1 import credit_service_pb2 as pb

pytestmark = pytest.mark.integration

SERVICE = pb.DESCRIPTOR.services_by_name["CreditService"]
MESSAGE_EXAMPLES = 50
DEEP_EXAMPLES = 60
BYTES_EXAMPLES = 8


@pytest.fixture
def credit(make_settings):
    with credit_servers(make_settings) as start:
        yield start()


def _seed(credit) -> tuple[list[str], str]:
    """Real files and records, so that fuzzed ids sometimes name them; returns the pool and the
    enterprise whose token the fuzz also calls with."""
    code = credit.open_file()
    other = credit.open_file()
    credit.exit_project(code)
    credit.assess(other)
    bad = credit.record(code, "CONTRACT_BREACH").record.record_id
    serious = credit.record(other, "ADMINISTRATIVE_PENALTY").record.record_id
    pool = [
        code,
        other,
        bad,
        serious,
        new_credit_code(),
        "AWARD",
        "ADMINISTRATIVE_PENALTY",
        "UNFILED_EXIT",
        "2026",
        "2026H1",
        "8.5",
        "100",
        "f" * 32,
        DONGSHENG,
        "150603",
        *RESIDENTIAL_MAX,
    ]
    return pool, code


@pytest.mark.parametrize("method", list(SERVICE.methods), ids=lambda m: m.name)
def test_no_request_makes_a_method_fail_internally_or_stop_answering(credit, method):
    pool, code = _seed(credit)
    tokens = {
        "admin": credit.admin.metadata,
        "authority": credit.authority().metadata,
        "enterprise": credit.enterprise(code).metadata,
        "service": credit.client(Role.SERVICE, "tenders").metadata,
        "anonymous": (),
    }
    fuzz_every_payload(
        credit,
        method,
        tokens,
        pool,
        bytes_examples=BYTES_EXAMPLES,
        message_examples=MESSAGE_EXAMPLES,
    )
    # And it still does its work.
    assert credit.admin.report(pool[1]).grade in (pb.GRADE_AAA, pb.GRADE_C)


# -- requests valid but for one or two fields, to reach past the first checks

MIN_SECONDS, MAX_SECONDS = -62135596800, 253402300799  # what a Timestamp may hold


def _times() -> st.SearchStrategy[Timestamp]:
    """Mostly recent past moments (valid), sometimes anything a Timestamp can carry."""
    now = int(time.time())
    seconds = st.one_of(
        st.integers(now - 3 * 365 * 86400, now - 1),
        st.integers(now - 3 * 365 * 86400, now - 1),
        st.sampled_from([MIN_SECONDS, MAX_SECONDS, 0, -1, 2**63 - 1, -(2**63)]),
        st.integers(MIN_SECONDS, MAX_SECONDS),
    )
    nanos = st.one_of(st.just(0), st.integers(0, 999_999_999), st.integers(-(2**31), 2**31 - 1))
    return st.builds(lambda s, n: Timestamp(seconds=s, nanos=n), seconds, nanos)


_DECIMALS = st.one_of(
    st.integers(0, 160).map(lambda tenths: str(tenths / 10)),
    st.sampled_from(
        ["1e400", "1E+1", "NaN", "-0", "-0.0", "0.05", "8.50", " 8", "8_0", "٨", "Infinity"]
    ),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12),
)
_TEXTS = st.one_of(
    st.sampled_from(["东住建罚字〔2026〕8号", "检查发现", "x" * 200, "x" * 201]),
    st.sampled_from(NASTY),
    st.text(max_size=250),
)


def _report_requests(pool: list[str]) -> st.SearchStrategy[Message]:
    return st.builds(
        lambda kind, subject_id, as_of: pb.GetCreditReportRequest(
            subject=pb.Subject(kind=kind, id=subject_id), as_of=as_of
        ),
        st.sampled_from([1, 1, 2, 0, 99]),
        st.sampled_from(pool),
        _times(),
    )


def _record_requests(pool: list[str]) -> st.SearchStrategy[Message]:
    text = _TEXTS
    return st.builds(
        lambda subject_id, record_type, evidence, reason, when: pb.RecordCreditEventRequest(
            request_id=request_id(),
            subject=pb.Subject(kind=pb.SUBJECT_KIND_ENTERPRISE, id=subject_id),
            record_type=record_type,
            evidence_reference=evidence,
            reason=reason,
            occur_time=when,
        ),
        st.sampled_from(pool),
        st.sampled_from(["AWARD", "HONOUR", "ADMINISTRATIVE_PENALTY", "COMPLAINT_VERIFIED"]),
        text,
        text,
        _times(),
    )


def _assessment_requests(pool: list[str]) -> st.SearchStrategy[Message]:
    def build(subject_id, period, item, score, cycle) -> Message:
        request = assessment_request(subject_id)
        request.assessment.period = period
        request.assessment.cycle = cycle
        for entry in request.assessment.scores:
            if entry.item_id == item:
                entry.score = score
        return request

    return st.builds(
        build,
        st.sampled_from(pool),
        st.one_of(st.sampled_from(["2026", "2026H1", "2026H2", "0000", "9999H1"]), st.text()),
        st.sampled_from(sorted(RESIDENTIAL_MAX)),
        _DECIMALS,
        st.sampled_from([1, 1, 2, 0, 7]),
    )


DEEP = {
    "GetCreditReport": _report_requests,
    "RecordCreditEvent": _record_requests,
    "CreateAssessment": _assessment_requests,
}


@pytest.mark.parametrize("method_name", sorted(DEEP))
def test_nearly_valid_requests_are_answered_or_refused_never_failed(credit, method_name):
    pool, _ = _seed(credit)
    fuzz_nearly_valid(
        getattr(credit.admin, method_name), method_name, DEEP[method_name](pool[:5]), DEEP_EXAMPLES
    )
    assert credit.admin.report(pool[0]).filed
