"""Fuzzing every method of wuye.meetings.v1.MeetingsService over a real socket, with the
strategies of the fuzz loop in grpc_support: random bytes, empty requests and random well-typed
requests (odd unicode, huge strings, extreme integers and times, unknown enum numbers), seeded
with real project, case, meeting, task and minutes ids, unit kinds and categories so that some
calls get past validation; then nearly valid meetings and resolutions. A caller never sees
UNKNOWN or INTERNAL (nor a hang), and the server keeps working.
"""

from __future__ import annotations

import datetime as dt

import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2
from grpc_support import NASTY, fuzz_every_payload, fuzz_nearly_valid
from hypothesis import strategies as st
from test_meetings_support import (
    DONGSHENG,
    NOW,
    POLICE,
    SUB_DISTRICT,
    WATER,
    MeetingsServer,
    enterprise_unit,
    meetings_servers,
    timestamp,
)

from wuye.core.auth import Role
from wuye.meetings.settings import DEFAULT_CATEGORIES, DEFAULT_UNIT_KINDS
from wuye.meetings.v1 import meetings_service_pb2 as pb

pytestmark = pytest.mark.integration

SERVICE = pb.DESCRIPTOR.services_by_name["MeetingsService"]
MESSAGE_EXAMPLES = 10
BYTES_EXAMPLES = 3
DEEP_EXAMPLES = 25


@pytest.fixture
def meetings(make_settings):
    with meetings_servers(make_settings) as start:
        yield start()


def _seed(meetings: MeetingsServer) -> tuple[list[str], str]:
    """Real records, so that fuzzed ids sometimes name them; returns the pool and the
    enterprise's credit code."""
    project_id, code, committee_id = meetings.project()
    committee = meetings.committee(committee_id)
    case = meetings.accepted_case(committee, project_id)
    raised = meetings.raise_case(committee, project_id)
    meeting = meetings.convene(
        [case.case_id], [enterprise_unit(code), WATER, POLICE], NOW - dt.timedelta(days=3)
    )
    meetings.attendance(meeting.meeting_id, {WATER.unit_id: pb.ATTENDANCE_PRESENT})
    [task] = meetings.adopt(meeting.meeting_id, case.case_id, [(WATER, 3)]).tasks
    minutes = meetings.office.DraftMinutes(
        pb.DraftMinutesRequest(meeting_id=meeting.meeting_id, text="会议纪要")
    ).minutes
    pool = [
        project_id,
        code,
        committee_id,
        case.case_id,
        raised.case_id,
        meeting.meeting_id,
        task.task_id,
        minutes.minutes_id,
        WATER.unit_id,
        POLICE.unit_id,
        SUB_DISTRICT,
        DONGSHENG,
        "150603",
        "13812345678",
        *DEFAULT_CATEGORIES,
        *DEFAULT_UNIT_KINDS,
    ]
    return pool, code


def test_no_request_makes_any_method_fail_internally_or_stop_answering(meetings):
    pool, code = _seed(meetings)
    tokens = {
        "admin": meetings.admin.metadata,
        "office": meetings.office.metadata,
        "water": meetings.unit(WATER).metadata,
        "enterprise": meetings.unit(enterprise_unit(code)).metadata,
        "resident": meetings.client(Role.OWNER, "owner-key", [DONGSHENG]).metadata,
        "anonymous": (),
    }
    # One server and one seed for every method: the methods share the records they fuzz.
    for method in SERVICE.methods:
        fuzz_every_payload(
            meetings,
            method,
            tokens,
            pool,
            bytes_examples=BYTES_EXAMPLES,
            message_examples=MESSAGE_EXAMPLES,
        )
    # And it still does its work.
    assert meetings.office.GetCase(pb.GetCaseRequest(case_id=pool[3])).case.case_id == pool[3]


# -- requests valid but for one or two fields, to reach past the first checks

_TEXTS = st.one_of(
    st.sampled_from(["消防通道被占用", "第一行\n第二行", "x" * 2000, "x" * 2001]),
    st.sampled_from(NASTY),
)
_TIMES = st.one_of(
    st.integers(-40 * 86400, 100 * 86400).map(lambda s: timestamp(NOW + dt.timedelta(seconds=s))),
    st.integers(-86400, 86400).map(lambda s: timestamp(NOW + dt.timedelta(seconds=s))),
    st.builds(
        lambda seconds, nanos: Timestamp(seconds=seconds, nanos=nanos),
        st.integers(-(2**63), 2**63 - 1),
        st.integers(-(2**31), 2**31 - 1),
    ),
)


def _units(pool: list[str], invited: list[pb.MemberUnit]) -> st.SearchStrategy[pb.MemberUnit]:
    """Mostly the units invited to the seeded meeting, else anything."""
    return st.one_of(
        st.sampled_from(invited),
        st.sampled_from(invited),
        st.builds(
            pb.MemberUnit,
            kind=st.sampled_from([*DEFAULT_UNIT_KINDS, "", "SPACE"]),
            unit_id=st.one_of(st.sampled_from(pool), st.sampled_from(NASTY)),
            name=_TEXTS,
        ),
    )


def _meeting_requests(pool: list[str], invited: list) -> st.SearchStrategy[Message]:
    return st.builds(
        lambda request_id, held, cases, units: pb.ConveneMeetingRequest(
            request_id=request_id,
            meeting=pb.Meeting(
                hold_time=held,
                place="天骄街道办事处",
                case_ids=cases,
                invitations=[pb.Invitation(unit=u) for u in units],
            ),
        ),
        st.one_of(st.uuids().map(str), st.uuids().map(str), st.sampled_from(NASTY)),
        _TIMES,
        st.one_of(
            st.lists(st.sampled_from([p for p in pool if "-J" in p]), min_size=1, max_size=2),
            st.lists(st.sampled_from([p for p in pool if "-J" in p] + NASTY[:5]), max_size=3),
        ),
        st.lists(_units(pool, invited), max_size=3),
    )


def _resolution_requests(pool: list[str], invited: list) -> st.SearchStrategy[Message]:
    return st.builds(
        lambda meeting_id, case_id, decision, tasks: pb.AdoptResolutionRequest(
            meeting_id=meeting_id, case_id=case_id, decision=decision, tasks=tasks
        ),
        st.sampled_from([p for p in pool if "-M" in p]),
        st.sampled_from([p for p in pool if "-J" in p] + ["", "150602-x"]),
        st.one_of(st.just("清理消防通道"), _TEXTS),
        st.lists(
            st.builds(
                pb.Task,
                unit=_units(pool, invited),
                working_days=st.one_of(
                    st.integers(1, 20), st.sampled_from([0, 250, 251, -1, 2**31 - 1])
                ),
                done_when=st.one_of(st.just("消防通道畅通"), _TEXTS),
            ),
            min_size=1,
            max_size=2,
        ),
    )


def _report_requests(pool: list[str], invited: list) -> st.SearchStrategy[Message]:
    dates = st.one_of(
        st.dates(dt.date(2025, 1, 1), dt.date(2028, 12, 31)).map(
            lambda d: date_pb2.Date(year=d.year, month=d.month, day=d.day)
        ),
        st.builds(
            date_pb2.Date,
            year=st.integers(-(2**31), 2**31 - 1) | st.integers(2000, 2030),
            month=st.integers(-1, 13),
            day=st.integers(-1, 32),
        ),
    )
    return st.builds(
        pb.GetDistrictReportRequest,
        district_code=st.sampled_from([DONGSHENG, "150603", "", "999999"]),
        start_date=dates,
        end_date=dates,
    )


DEEP = {
    "ConveneMeeting": _meeting_requests,
    "AdoptResolution": _resolution_requests,
    "GetDistrictReport": _report_requests,
}


def test_nearly_valid_requests_are_answered_or_refused_never_failed(meetings):
    pool, code = _seed(meetings)
    units = [WATER, POLICE, enterprise_unit(code)]
    for method_name, requests in DEEP.items():
        outcomes = fuzz_nearly_valid(
            getattr(meetings.office, method_name),
            method_name,
            requests(pool, units),
            DEEP_EXAMPLES,
        )
        # Some got past validation, to the rules behind it.
        assert outcomes.keys() - {"INVALID_ARGUMENT"}, (method_name, outcomes)
