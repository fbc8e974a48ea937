"""The rules of joint meetings: the case and task state machines exhaustively, deadlines in
working days across the Spring Festivals of 2026 and 2027 and a make-up Saturday, the timer's
thresholds against counting day by day, and the minutes' hash and signing."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wuye.core.calendar import WorkingCalendar
from wuye.core.consumer import message_class
from wuye.core.errors import FailedPrecondition, PermissionDenied
from wuye.credit.settings import DEFAULT_EVENT_RULES
from wuye.inspections.settings import InspectionsSettings
from wuye.meetings import domain
from wuye.meetings.commands import CASE_TOPIC, TASK_TOPIC
from wuye.meetings.domain import (
    CASE_TRANSITIONS,
    TASK_TRANSITIONS,
    Amendment,
    Attendance,
    CaseAction,
    CaseState,
    Invitation,
    Lateness,
    Meeting,
    MeetingState,
    Minutes,
    MinutesState,
    TaskAction,
    TaskState,
    Unit,
)

D = dt.date
CALENDAR = WorkingCalendar()
# 2027 is not in the calendar package yet: the schedule an operator would list in settings.
CALENDAR_2027 = WorkingCalendar(
    extra_holidays=[D(2027, 2, 6) + dt.timedelta(days=n) for n in range(9)],
    extra_workdays=[D(2027, 2, 20)],
)
LADDER = ("SUB_DISTRICT", "DISTRICT", "CITY")

# ---------------------------------------------------------------- state machines


@pytest.mark.parametrize(
    ("state", "action"), list(itertools.product(CaseState, CaseAction)), ids=str
)
def test_every_case_state_and_action_is_allowed_exactly_as_the_table_says(state, action):
    expected = CASE_TRANSITIONS.get((state, action))
    if expected is None:
        with pytest.raises(FailedPrecondition) as refused:
            domain.case_transition(state, action)
        assert refused.value.reason == "CASE_STATE_FORBIDS"
        assert refused.value.metadata == {"state": state.value, "action": action.value}
    else:
        assert domain.case_transition(state, action) is expected


def test_the_case_lifecycle_of_the_issue():
    # Raised by an owners' committee, accepted, resolved at a meeting, every task accepted.
    state = CaseState.RAISED
    for action in (CaseAction.ACCEPT, CaseAction.ADOPT, CaseAction.RESOLVE):
        state = domain.case_transition(state, action)
    assert state is CaseState.RESOLVED
    # A resident reopens it: back before a meeting.
    assert domain.case_transition(state, CaseAction.REOPEN) is CaseState.ACCEPTED
    # Rejected and referred cases end or settle without a meeting.
    assert not any((CaseState.REJECTED, a) in CASE_TRANSITIONS for a in CaseAction)
    assert domain.case_transition(CaseState.REFERRED, CaseAction.RESOLVE) is CaseState.RESOLVED


@pytest.mark.parametrize(
    ("state", "action"), list(itertools.product(TaskState, TaskAction)), ids=str
)
def test_every_task_state_and_action_is_allowed_exactly_as_the_table_says(state, action):
    expected = TASK_TRANSITIONS.get((state, action))
    if expected is None:
        with pytest.raises(FailedPrecondition) as refused:
            domain.task_transition(state, action)
        assert refused.value.reason == "TASK_STATE_FORBIDS"
    else:
        assert domain.task_transition(state, action) is expected


def test_an_accepted_task_is_final_and_a_reopened_one_is_open_again():
    assert not any((TaskState.ACCEPTED, a) in TASK_TRANSITIONS for a in TaskAction)
    assert domain.task_transition(TaskState.DONE, TaskAction.REOPEN) is TaskState.OPEN


@pytest.mark.parametrize(
    ("states", "settled"),
    [
        ((), False),
        ((TaskState.ACCEPTED,), True),
        ((TaskState.ACCEPTED, TaskState.DONE), False),
        ((TaskState.ACCEPTED, TaskState.OPEN), False),
        ((TaskState.ACCEPTED, TaskState.ACCEPTED), True),
    ],
)
def test_a_case_is_settled_when_every_task_is_done_and_accepted(states, settled):
    assert domain.case_settled(states) is settled


@pytest.mark.parametrize(
    ("lateness", "level"),
    [
        (Lateness.ON_TIME, "SUB_DISTRICT"),
        (Lateness.OVERDUE, "DISTRICT"),
        (Lateness.VERY_LATE, "CITY"),
    ],
)
def test_a_late_task_climbs_the_ladder_one_step_per_stage(lateness, level):
    assert domain.escalation_level(LADDER, lateness) == level
    # A shorter ladder stays on its last step.
    assert domain.escalation_level(("SUB_DISTRICT",), lateness) == "SUB_DISTRICT"


# ---------------------------------------------------------------- deadlines


@pytest.mark.parametrize(
    ("calendar", "meeting", "days", "due"),
    [
        # A plain week: Monday + 2 working days is Wednesday.
        (CALENDAR, D(2026, 3, 2), 2, D(2026, 3, 4)),
        # Friday before the Spring Festival 2026: Saturday the 14th is a make-up working day,
        # then nine days off (15-23), so the second working day is Tuesday the 24th.
        (CALENDAR, D(2026, 2, 13), 1, D(2026, 2, 14)),
        (CALENDAR, D(2026, 2, 13), 2, D(2026, 2, 24)),
        # Across the make-up Saturday of the 28th.
        (CALENDAR, D(2026, 2, 26), 2, D(2026, 2, 28)),
        # 2027: the days off listed in settings (6-14 February), and the make-up Saturday 20th.
        (CALENDAR_2027, D(2027, 2, 5), 1, D(2027, 2, 15)),
        (CALENDAR_2027, D(2027, 2, 18), 2, D(2027, 2, 20)),
    ],
)
def test_a_deadline_counts_official_working_days(calendar, meeting, days, due):
    assert domain.due_date(calendar, meeting, days) == due


def _thresholds(calendar: WorkingCalendar, today: dt.date) -> domain.LateThresholds:
    return domain.late_thresholds(calendar, today, very_late_working_days=5, reminder_days=2)


@pytest.mark.parametrize(
    ("due", "today", "lateness"),
    [
        # Due Friday 13 February 2026: the working day after is the make-up Saturday.
        (D(2026, 2, 13), D(2026, 2, 13), Lateness.ON_TIME),
        (D(2026, 2, 13), D(2026, 2, 14), Lateness.OVERDUE),
        # Due on the make-up Saturday: not overdue during the holiday, overdue on the 24th.
        (D(2026, 2, 14), D(2026, 2, 20), Lateness.ON_TIME),
        (D(2026, 2, 14), D(2026, 2, 23), Lateness.ON_TIME),
        (D(2026, 2, 14), D(2026, 2, 24), Lateness.OVERDUE),
        # Five working days after the 14th: 24, 25, 26, 27, 28 (a make-up Saturday).
        (D(2026, 2, 14), D(2026, 2, 27), Lateness.OVERDUE),
        (D(2026, 2, 14), D(2026, 2, 28), Lateness.VERY_LATE),
    ],
)
def test_overdue_is_the_working_day_after_the_deadline_and_very_late_a_delay_later(
    due, today, lateness
):
    assert domain.lateness_on(due, _thresholds(CALENDAR, today)) is lateness


@given(
    due=st.dates(D(2026, 1, 1), D(2026, 10, 31)),
    days_later=st.integers(0, 40),
    very_late=st.integers(1, 25),
)
def test_the_timers_thresholds_agree_with_counting_day_by_day(due, days_later, very_late):
    today = due + dt.timedelta(days=days_later)
    thresholds = domain.late_thresholds(CALENDAR, today, very_late, reminder_days=2)
    overdue = CALENDAR.add_working_days(due, 1) <= today
    very = CALENDAR.add_working_days(due, very_late) <= today
    expected = Lateness.VERY_LATE if very else Lateness.OVERDUE if overdue else Lateness.ON_TIME
    assert domain.lateness_on(due, thresholds) is expected


def test_a_reminder_goes_out_the_configured_working_days_before_the_deadline():
    # Thursday 12 February 2026: two working days on is the make-up Saturday 14th.
    thresholds = _thresholds(CALENDAR, D(2026, 2, 12))
    assert thresholds.remind_through == D(2026, 2, 14)


def test_without_next_years_schedule_there_are_no_reminders_but_lateness_is_marked():
    thresholds = _thresholds(CALENDAR, D(2026, 12, 31))
    assert thresholds.remind_through is None
    assert domain.lateness_on(D(2026, 12, 29), thresholds) is Lateness.OVERDUE


def test_a_meeting_may_be_recorded_up_to_the_configured_days_back():
    now = dt.datetime(2026, 12, 3, 10, tzinfo=dt.UTC)
    assert domain.check_hold_time(now - dt.timedelta(days=10), now, 30, 90) is None
    assert "30 days ago" in domain.check_hold_time(now - dt.timedelta(days=31), now, 30, 90)
    assert "90 days" in domain.check_hold_time(now + dt.timedelta(days=91), now, 30, 90)


# ---------------------------------------------------------------- who acts


KIND_ROLES = {"ENTERPRISE": "enterprise", "OWNERS_COMMITTEE": "owners_committee"}


def test_a_unit_acts_only_as_itself_with_the_role_of_its_kind():
    water = Unit("WATER", "东胜区供水公司")
    domain.check_unit_acts(water, "member_unit", "东胜区供水公司", KIND_ROLES)
    enterprise = Unit("ENTERPRISE", "91150602MA0000000X")
    domain.check_unit_acts(enterprise, "enterprise", "91150602MA0000000X", KIND_ROLES)
    for role, subject in (
        ("member_unit", "东胜区供电公司"),
        ("enterprise", "东胜区供水公司"),
        ("member_unit", "91150602MA0000000X"),
    ):
        for unit in (water, enterprise):
            if (role, subject) != (domain.unit_role(unit.kind, KIND_ROLES), unit.unit_id):
                with pytest.raises(PermissionDenied):
                    domain.check_unit_acts(unit, role, subject, KIND_ROLES)


def test_only_the_projects_sub_district_office_follows_its_cases():
    domain.check_office("天骄街道", "sub_district", "天骄街道")
    domain.check_office("天骄街道", "district_authority", "anyone")
    with pytest.raises(PermissionDenied) as refused:
        domain.check_office("天骄街道", "sub_district", "交通街道")
    assert refused.value.reason == "NOT_YOUR_SUB_DISTRICT"


# ---------------------------------------------------------------- minutes

HELD = dt.datetime(2026, 11, 23, 2, tzinfo=dt.UTC)
WATER = Unit("WATER", "东胜区供水公司")
ENTERPRISE = Unit("ENTERPRISE", "91150602MA0000000X")
ABSENT = Unit("POLICE", "天骄派出所")
MEETING = Meeting(
    meeting_id="150602-M1",
    district_code="150602",
    sub_district="天骄街道",
    held_at=HELD,
    place="天骄街道办事处三楼会议室",
    case_ids=("150602-J1",),
    invitations=(
        Invitation(WATER, Attendance.PRESENT),
        Invitation(ENTERPRISE, Attendance.PRESENT),
        Invitation(ABSENT, Attendance.ABSENT_WITHOUT_LEAVE),
    ),
    state=MeetingState.CONVENED,
    chair="天骄街道",
)
DRAFT = Minutes(
    minutes_id="150602-N1",
    meeting_id="150602-M1",
    district_code="150602",
    hold_time="2026-11-23T02:00:00Z",
    place=MEETING.place,
    text="一、消防通道占用问题\n物业公司两个工作日内清理。",
    amendments=(Amendment(WATER, "补充：供水公司配合检查消防水泵。"),),
)


def signed_by_all(minutes: Minutes = DRAFT) -> Minutes:
    for signer, role in (
        ("天骄街道", domain.CHAIR),
        (WATER.key, WATER.kind),
        (ENTERPRISE.key, ENTERPRISE.kind),
    ):
        minutes = domain.sign(minutes, signer, role, MEETING, HELD)
    return minutes


def test_the_canonical_content_is_sorted_compact_utf8_json_of_the_named_fields():
    frozen = replace(DRAFT, required_signers=domain.required_signers(MEETING))
    text = domain.canonical_content(frozen).decode()
    assert text.startswith('{"algorithm_version":1,"amendments":[{"text":"补充')
    assert (
        '"required_signers":["ENTERPRISE:91150602MA0000000X","WATER:东胜区供水公司","天骄街道"]'
        in text
    )
    assert " " not in text.replace("三楼会议室", "")
    assert len(domain.content_hash(frozen)) == 64


def test_minutes_signed_by_the_chair_and_every_attending_unit_are_frozen_with_their_hash():
    first = domain.sign(DRAFT, "天骄街道", domain.CHAIR, MEETING, HELD)
    assert first.state is MinutesState.SIGNING and first.content_hash == ""
    # The absent police station is no signer.
    assert first.required_signers == (
        "ENTERPRISE:91150602MA0000000X",
        "WATER:东胜区供水公司",
        "天骄街道",
    )
    with pytest.raises(FailedPrecondition) as twice:
        domain.sign(first, "天骄街道", domain.CHAIR, MEETING, HELD)
    assert twice.value.reason == "ALREADY_SIGNED"
    with pytest.raises(PermissionDenied):
        domain.sign(first, ABSENT.key, ABSENT.kind, MEETING, HELD)
    with pytest.raises(FailedPrecondition) as frozen:
        domain.check_amendable(first)
    assert frozen.value.reason == "MINUTES_NOT_OPEN"

    signed = signed_by_all()
    assert signed.state is MinutesState.SIGNED
    assert signed.content_hash == domain.content_hash(signed)
    assert {s.content_hash for s in signed.signatures} == {signed.content_hash}
    with pytest.raises(FailedPrecondition) as refused:
        domain.check_amendable(signed)
    assert refused.value.reason == "MINUTES_SIGNED"
    with pytest.raises(FailedPrecondition):
        domain.sign(signed, WATER.key, WATER.kind, MEETING, HELD)
    assert domain.minutes_problems(signed, signed.content_hash) == []


@given(position=st.integers(0, len(DRAFT.text) - 1), replacement=st.characters(codec="utf-8"))
def test_one_character_changed_anywhere_in_the_text_is_refused(position, replacement):
    signed = signed_by_all()
    text = signed.text[:position] + replacement + signed.text[position + 1 :]
    changed = replace(signed, text=text)
    problems = domain.minutes_problems(changed, signed.content_hash)
    assert (problems == []) is (text == signed.text)


def test_a_copy_is_refused_if_not_signed_by_all_or_not_the_published_hash():
    signed = signed_by_all()
    assert domain.minutes_problems(replace(signed, signatures=signed.signatures[:2]), None) == [
        "ENTERPRISE:91150602MA0000000X has not signed"
    ]
    assert "not the published" in domain.minutes_problems(signed, "0" * 64)[0]
    assert domain.minutes_problems(DRAFT, None) == ["the minutes are open, not signed"]


@pytest.mark.parametrize(
    ("durations", "median"),
    [([], ""), ([86400], "1.0"), ([86400, 3 * 86400], "2.0"), ([3600, 86400 * 10, 43200], "0.5")],
)
def test_the_median_days_to_resolution(durations, median):
    assert domain.median_days(durations) == median


# ---------------------------------------------------------------- other services' rules


def test_credits_rule_and_inspections_complaint_rule_read_fields_the_events_have():
    [credit_rule] = [r for r in DEFAULT_EVENT_RULES if r.event.startswith("wuye.meetings.")]
    overdue = message_class(credit_rule.event)
    assert credit_rule.topic == TASK_TOPIC
    fields = overdue.DESCRIPTOR.fields_by_name
    assert {credit_rule.subject_field, credit_rule.reason_field, *credit_rule.when} <= set(fields)
    # Only the enterprise's overdue tasks make records.
    assert credit_rule.when == {"assigned_to_enterprise": True}

    [complaint] = [
        r for r in InspectionsSettings().complaint_rules if r.event.startswith("wuye.meetings.")
    ]
    assert complaint.topic == CASE_TOPIC
    assert complaint.project_field in message_class(complaint.event).DESCRIPTOR.fields_by_name
