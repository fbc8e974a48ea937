"""The registry's rules (wuye.registry.domain), without a database or a server."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wuye.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Violations,
)
from wuye.core.ids import credit_code_check_char, new_id, resident_id_check_char
from wuye.core.pii import OwnerKeys
from wuye.core.wire import check_text
from wuye.registry import domain
from wuye.registry.domain import (
    FILEABLE,
    ON_REVIEW,
    Assignment,
    Committee,
    CommitteeKind,
    CommitteeRole,
    CommitteeRules,
    Decision,
    Enterprise,
    EnterpriseStatus,
    Filing,
    FilingKind,
    FilingState,
    Handover,
    HandoverItem,
    OwnerKind,
    Particulars,
    Project,
    ProjectType,
)

NOW = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=2)
TODAY = NOW.date()


def credit_code(body: str = "91150602MA0N00001") -> str:
    return body + credit_code_check_char(body)


def resident_id(body: str = "15060219800101123") -> str:
    return body + resident_id_check_char(body)


CODE = credit_code()
OTHER_CODE = credit_code("91150603MA0N00002")


def violations_of(check) -> list[FieldViolation]:
    """Run `check(v)` and return the violations it collected."""
    v = Violations()
    check(v)
    try:
        v.raise_if_any()
    except InvalidArgument as e:
        return e.violations
    return []


def fields_of(check) -> list[str]:
    return [violation.field for violation in violations_of(check)]


def particulars(**changes: str) -> Particulars:
    base = {
        "name": "东胜物业服务有限公司",
        "address": "鄂尔多斯市东胜区天骄路 1 号",
        "legal_representative": "王伟",
        "contact_phone_masked": "138****5678",
        "contact_phone_key": "key-13812345678",
    }
    return Particulars(**{**base, **changes})


def enterprise(status: EnterpriseStatus = EnterpriseStatus.FILED, projects: int = 0) -> Enterprise:
    return Enterprise(
        credit_code=CODE,
        district_code="150602",
        particulars=particulars(),
        status=status,
        active_project_count=projects,
        created_at=NOW,
        updated_at=NOW,
    )


def filing(
    kind: FilingKind = FilingKind.INITIAL,
    state: FilingState = FilingState.SUBMITTED,
    **extra,
) -> Filing:
    return Filing(
        filing_id="150602-Fabcdef012345",
        credit_code=CODE,
        district_code="150602",
        kind=kind,
        state=state,
        submitted_at=NOW,
        **extra,
    )


def project(served_by: str | None = None) -> Project:
    assignment = None
    if served_by:
        assignment = Assignment(
            credit_code=served_by,
            contract_start=dt.date(2026, 1, 1),
            contract_end=dt.date(2028, 12, 31),
            handover=Handover(dt.date(2025, 12, 20), (HandoverItem("电梯", True, ""),), "HJ-1"),
        )
    return Project(
        project_id="150602-0123456789ab",
        name="天骄花园",
        type=ProjectType.RESIDENTIAL,
        district_code="150602",
        sub_district="天骄街道",
        address="天骄路 8 号",
        building_area_cm2=1_250_000_000,
        created_at=NOW,
        updated_at=NOW,
        assignment=assignment,
    )


# ---------------------------------------------------------------- filing kinds by status


@pytest.mark.parametrize(
    ("status", "allowed"),
    [
        (None, {FilingKind.INITIAL}),
        (EnterpriseStatus.PENDING, set()),
        (EnterpriseStatus.FILED, {FilingKind.CHANGE, FilingKind.EXIT}),
        (EnterpriseStatus.REJECTED, {FilingKind.INITIAL}),
        (EnterpriseStatus.EXITED, {FilingKind.INITIAL}),
    ],
)
def test_each_status_admits_only_its_filing_kinds(status, allowed):
    assert FILEABLE[status] == allowed


def test_every_status_and_every_review_outcome_is_in_the_state_tables():
    assert set(FILEABLE) == {None, *EnterpriseStatus}
    assert set(ON_REVIEW) == {(kind, decision) for kind in FilingKind for decision in Decision}


def test_an_unknown_enterprise_files_initial_and_nothing_else():
    domain.check_may_file(None, FilingKind.INITIAL, None)
    for kind in (FilingKind.CHANGE, FilingKind.EXIT):
        with pytest.raises(FailedPrecondition) as raised:
            domain.check_may_file(None, kind, None)
        assert raised.value.reason == "ENTERPRISE_NOT_FILED"


def test_a_filed_enterprise_cannot_file_initial_again():
    with pytest.raises(FailedPrecondition) as raised:
        domain.check_may_file(enterprise(), FilingKind.INITIAL, None)
    assert raised.value.reason == "ENTERPRISE_STATUS_FORBIDS_FILING"
    assert raised.value.metadata == {"status": "FILED"}


def test_a_rejected_or_exited_enterprise_may_file_initial_again():
    domain.check_may_file(enterprise(EnterpriseStatus.REJECTED), FilingKind.INITIAL, None)
    domain.check_may_file(enterprise(EnterpriseStatus.EXITED), FilingKind.INITIAL, None)


def test_a_pending_filing_blocks_any_other_filing():
    pending = filing(FilingKind.CHANGE)
    for kind in FilingKind:
        with pytest.raises(FailedPrecondition) as raised:
            domain.check_may_file(enterprise(), kind, pending)
        assert raised.value.reason == "FILING_ALREADY_PENDING"
        assert raised.value.metadata["filing_id"] == pending.filing_id


# ---------------------------------------------------------------- review


def test_approving_an_initial_filing_files_the_enterprise():
    after, decided = domain.review(
        enterprise(EnterpriseStatus.PENDING), filing(), Decision.APPROVE, "", "authority-1", LATER
    )
    assert after.status is EnterpriseStatus.FILED
    assert after.updated_at == LATER
    assert decided.state is FilingState.APPROVED
    assert decided.reviewer == "authority-1"
    assert decided.reviewed_at == LATER
    assert decided.rejection_reason == ""


def test_rejecting_an_initial_filing_rejects_the_enterprise_with_the_reason():
    after, decided = domain.review(
        enterprise(EnterpriseStatus.PENDING),
        filing(),
        Decision.REJECT,
        "营业执照复印件不清晰",
        "authority-1",
        LATER,
    )
    assert after.status is EnterpriseStatus.REJECTED
    assert decided.state is FilingState.REJECTED
    assert decided.rejection_reason == "营业执照复印件不清晰"


def test_a_reason_given_with_an_approval_is_not_a_rejection_reason():
    _, decided = domain.review(
        enterprise(EnterpriseStatus.PENDING), filing(), Decision.APPROVE, "ok", "a", LATER
    )
    assert decided.rejection_reason == ""


def test_an_approved_change_applies_only_the_fields_in_its_mask():
    proposed = particulars(
        name="新名称物业有限公司",
        address="新地址",
        legal_representative="李娜",
        contact_phone_masked="139****0000",
        contact_phone_key="key-13900000000",
    )
    change = filing(FilingKind.CHANGE, proposed=proposed, changed_fields=("name", "contact_phone"))
    after, decided = domain.review(enterprise(), change, Decision.APPROVE, "", "a", LATER)
    assert decided.state is FilingState.APPROVED
    assert after.status is EnterpriseStatus.FILED
    assert after.particulars == particulars(
        name="新名称物业有限公司",
        contact_phone_masked="139****0000",
        contact_phone_key="key-13900000000",
    )


def test_a_rejected_change_leaves_the_particulars_as_they_were():
    change = filing(
        FilingKind.CHANGE, proposed=particulars(name="别的名字"), changed_fields=("name",)
    )
    after, decided = domain.review(enterprise(), change, Decision.REJECT, "材料不全", "a", LATER)
    assert decided.state is FilingState.REJECTED
    assert after.particulars == particulars()
    assert after.status is EnterpriseStatus.FILED


def test_an_approved_exit_takes_the_enterprise_off_the_market():
    exit_filing = filing(FilingKind.EXIT, exit_reason="歇业")
    after, decided = domain.review(enterprise(), exit_filing, Decision.APPROVE, "", "a", LATER)
    assert after.status is EnterpriseStatus.EXITED
    assert decided.state is FilingState.APPROVED


def test_a_rejected_exit_keeps_the_enterprise_filed():
    after, _ = domain.review(
        enterprise(), filing(FilingKind.EXIT), Decision.REJECT, "x", "a", LATER
    )
    assert after.status is EnterpriseStatus.FILED


def test_an_exit_is_not_approved_while_the_enterprise_serves_projects():
    with pytest.raises(FailedPrecondition) as raised:
        domain.review(
            enterprise(projects=2), filing(FilingKind.EXIT), Decision.APPROVE, "", "a", NOW
        )
    assert raised.value.reason == "ENTERPRISE_SERVES_PROJECTS"
    assert raised.value.metadata == {"projects": "2"}


def test_an_exit_serving_projects_may_still_be_rejected():
    after, decided = domain.review(
        enterprise(projects=2), filing(FilingKind.EXIT), Decision.REJECT, "先退出项目", "a", NOW
    )
    assert decided.state is FilingState.REJECTED
    assert after.status is EnterpriseStatus.FILED


def test_check_exit_allowed_refuses_only_while_serving():
    domain.check_exit_allowed(enterprise(projects=0))
    with pytest.raises(FailedPrecondition):
        domain.check_exit_allowed(enterprise(projects=1))


@pytest.mark.parametrize("state", [FilingState.APPROVED, FilingState.REJECTED])
@pytest.mark.parametrize("decision", list(Decision))
def test_a_decided_filing_cannot_be_reviewed_again(state, decision):
    with pytest.raises(FailedPrecondition) as raised:
        domain.review(enterprise(), filing(state=state), decision, "r", "a", LATER)
    assert raised.value.reason == "FILING_NOT_PENDING"
    assert raised.value.metadata == {"state": state.value}


def test_only_an_authority_reviews():
    domain.check_reviewer("150602", reviewer_is_authority=True)
    with pytest.raises(PermissionDenied) as raised:
        domain.check_reviewer("150602", reviewer_is_authority=False)
    assert raised.value.reason == "NOT_AN_AUTHORITY"
    assert "150602" in raised.value.message


def test_apply_change_of_the_phone_replaces_both_its_masked_form_and_its_key():
    proposed = particulars(contact_phone_masked="139****0000", contact_phone_key="k2")
    changed = domain.apply_change(particulars(), proposed, ("contact_phone",))
    assert (changed.contact_phone_masked, changed.contact_phone_key) == ("139****0000", "k2")
    assert changed.name == particulars().name


def test_new_ids_start_with_the_district_so_they_can_be_routed():
    first, second = new_id("150627", "F"), new_id("150627", "F")
    assert first.startswith("150627-F")
    assert first != second
    assert len(first) <= 32  # the id columns are 32 characters


# ---------------------------------------------------------------- assignments and exits


def test_only_a_filed_enterprise_may_serve_a_project():
    for candidate in (None, *(enterprise(s) for s in EnterpriseStatus if s != "FILED")):
        with pytest.raises(FailedPrecondition) as raised:
            domain.check_assignable(project(), candidate, CODE)
        assert raised.value.reason == "ENTERPRISE_NOT_FILED"
        assert raised.value.metadata == {"credit_code": CODE}
    domain.check_assignable(project(), enterprise(), CODE)


def test_a_served_project_is_not_assigned_until_its_enterprise_exits():
    with pytest.raises(FailedPrecondition) as raised:
        domain.check_assignable(project(served_by=OTHER_CODE), enterprise(), CODE)
    assert raised.value.reason == "PROJECT_ALREADY_SERVED"
    assert raised.value.metadata == {"credit_code": OTHER_CODE}


def test_only_the_serving_enterprise_exits_a_project():
    for served in (None, OTHER_CODE):
        with pytest.raises(FailedPrecondition) as raised:
            domain.check_exit(project(served), CODE, filed=True, caller_is_authority=True)
        assert raised.value.reason == "ENTERPRISE_NOT_SERVING"


def test_a_filed_exit_may_be_recorded_by_the_enterprise_itself():
    domain.check_exit(project(CODE), CODE, filed=True, caller_is_authority=False)


def test_an_unfiled_exit_is_recorded_only_by_an_authority():
    with pytest.raises(PermissionDenied) as raised:
        domain.check_exit(project(CODE), CODE, filed=False, caller_is_authority=False)
    assert raised.value.reason == "NOT_AN_AUTHORITY"
    domain.check_exit(project(CODE), CODE, filed=False, caller_is_authority=True)


def test_a_handover_counts_its_failed_items():
    handover = Handover(
        dt.date(2026, 1, 1),
        (HandoverItem("电梯", True, ""), HandoverItem("消防泵", False, "压力不足")),
        "",
    )
    assert handover.failed_items == 1


# ---------------------------------------------------------------- owners' committees

OWNERS_RULES = CommitteeRules(min_members=5, max_members=11, odd_members=True, max_term_years=5)
TRANSITIONAL_RULES = CommitteeRules(3, 11, odd_members=False, max_term_years=1)
START = dt.date(2026, 4, 1)


def roles(count: int, directors: int = 1) -> list[CommitteeRole]:
    return [CommitteeRole.DIRECTOR] * directors + [CommitteeRole.MEMBER] * (count - directors)


def shape(
    members: list[CommitteeRole],
    start: dt.date = START,
    end: dt.date = dt.date(2031, 3, 31),
    rules: CommitteeRules = OWNERS_RULES,
    kind: CommitteeKind = CommitteeKind.OWNERS,
) -> list[FieldViolation]:
    return violations_of(
        lambda v: domain.check_committee_shape(kind, members, start, end, rules, v)
    )


@pytest.mark.parametrize("count", [5, 7, 9, 11])
def test_an_owners_committee_of_an_odd_size_within_the_bounds_is_accepted(count):
    assert shape(roles(count)) == []


@pytest.mark.parametrize("count", [0, 3, 4, 13])
def test_an_owners_committee_outside_the_member_bounds_is_refused(count):
    found = shape(roles(count, directors=min(1, count)))
    assert [v.field for v in found] == ["committee.members"]
    assert f"got {count}" in found[0].description


@pytest.mark.parametrize("count", [6, 8, 10])
def test_an_owners_committee_needs_an_odd_number_of_members(count):
    found = shape(roles(count))
    assert [v.field for v in found] == ["committee.members"]
    assert "odd" in found[0].description


def test_a_transitional_committee_may_have_an_even_number_of_members():
    assert shape(roles(4), end=START + dt.timedelta(days=300), rules=TRANSITIONAL_RULES) == []


@pytest.mark.parametrize("directors", [0, 2])
def test_a_committee_has_exactly_one_director(directors):
    found = shape(roles(7, directors=directors))
    assert [v.field for v in found] == ["committee.members"]
    assert "director" in found[0].description


def test_a_term_ends_after_it_starts():
    for end in (START, START - dt.timedelta(days=1)):
        assert [v.field for v in shape(roles(5), end=end)] == ["committee.term_end"]


def test_a_term_lasts_at_most_the_configured_years():
    assert shape(roles(5), end=dt.date(2031, 4, 1)) == []
    found = shape(roles(5), end=dt.date(2031, 4, 2))
    assert [v.field for v in found] == ["committee.term_end"]
    assert "2031-04-01" in found[0].description


def test_a_term_from_29_february_ends_by_28_february_of_a_common_year():
    leap_start = dt.date(2024, 2, 29)
    assert shape(roles(5), start=leap_start, end=dt.date(2029, 2, 28)) == []
    assert [v.field for v in shape(roles(5), start=leap_start, end=dt.date(2029, 3, 1))] == [
        "committee.term_end"
    ]


def test_a_term_from_29_february_may_end_on_29_february_of_a_leap_year():
    rules = CommitteeRules(5, 11, True, max_term_years=4)
    leap_start = dt.date(2024, 2, 29)
    assert shape(roles(5), start=leap_start, end=dt.date(2028, 2, 29), rules=rules) == []


def test_add_years_keeps_the_day_or_falls_back_to_28_february():
    assert domain.add_years(dt.date(2026, 4, 1), 5) == dt.date(2031, 4, 1)
    assert domain.add_years(dt.date(2024, 2, 29), 1) == dt.date(2025, 2, 28)
    assert domain.add_years(dt.date(2024, 2, 29), 4) == dt.date(2028, 2, 29)


def test_add_years_past_the_calendar_end_stops_at_the_last_day():
    assert domain.add_years(dt.date(9998, 6, 1), 5) == dt.date.max


def test_a_term_starting_near_the_end_of_the_calendar_is_checked_not_crashed():
    assert shape(roles(5), start=dt.date(9998, 1, 1), end=dt.date(9999, 1, 1)) == []


def committee(kind: CommitteeKind, term_end: dt.date = dt.date(2027, 3, 31)) -> Committee:
    return Committee(
        committee_id="150602-C0123456789ab",
        project_id="150602-0123456789ab",
        kind=kind,
        members=(),
        term_start=dt.date(2026, 4, 1),
        term_end=term_end,
        created_at=NOW,
    )


def test_any_committee_may_form_where_none_acts():
    for kind in CommitteeKind:
        domain.check_may_form(kind, None, START)


def test_no_transitional_committee_is_formed_once_an_owners_committee_exists():
    with pytest.raises(FailedPrecondition) as raised:
        domain.check_may_form(CommitteeKind.TRANSITIONAL, committee(CommitteeKind.OWNERS), START)
    assert raised.value.reason == "OWNERS_COMMITTEE_EXISTS"


def test_an_owners_committee_replaces_the_transitional_one_at_any_time():
    domain.check_may_form(CommitteeKind.OWNERS, committee(CommitteeKind.TRANSITIONAL), START)


@pytest.mark.parametrize("kind", list(CommitteeKind))
def test_a_committee_of_the_same_kind_does_not_overlap_the_acting_one(kind):
    acting = committee(kind, term_end=dt.date(2027, 3, 31))
    with pytest.raises(FailedPrecondition) as raised:
        domain.check_may_form(kind, acting, dt.date(2027, 3, 30))
    assert raised.value.reason == "COMMITTEE_TERM_OVERLAPS"
    assert raised.value.metadata == {"committee_id": acting.committee_id}


def test_the_next_owners_committee_may_start_when_the_term_of_the_last_one_ends():
    acting = committee(CommitteeKind.OWNERS, term_end=dt.date(2027, 3, 31))
    domain.check_may_form(CommitteeKind.OWNERS, acting, dt.date(2027, 3, 31))


# ---------------------------------------------------------------- areas


def area(text: str) -> tuple[int, list[str]]:
    v = Violations()
    cm2 = domain.parse_area_cm2(v, "unit.exclusive_area_m2", text)
    try:
        v.raise_if_any()
    except InvalidArgument as e:
        return cm2, [violation.field for violation in e.violations]
    return cm2, []


@pytest.mark.parametrize(
    ("text", "cm2"),
    [
        ("89.37", 893_700),
        ("1", 10_000),
        ("0.01", 100),
        ("0.1", 1_000),
        ("125000.50", 1_250_005_000),
        ("007.5", 75_000),
        ("999999999.99", 9_999_999_999_900),
    ],
)
def test_an_area_in_square_metres_becomes_exact_integer_square_centimetres(text, cm2):
    assert area(text) == (cm2, [])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "0.00",
        "-1",
        "1.234",
        "1.",
        ".5",
        " 1",
        "1 ",
        "1e3",
        "1,5",
        "NaN",
        "Infinity",
        "1234567890",
        "٨٩.٣٧",  # Arabic-Indic digits
        "８９",  # full-width digits
    ],
)
def test_an_area_that_is_not_a_positive_decimal_with_two_places_is_refused(text):
    _, fields = area(text)
    assert fields == ["unit.exclusive_area_m2"]


def test_format_area_shows_two_decimals():
    assert domain.format_area(0) == "0.00"
    assert domain.format_area(893_700) == "89.37"
    assert domain.format_area(100) == "0.01"
    assert domain.format_area(1_250_005_000) == "125000.50"


@given(st.integers(min_value=1, max_value=99_999_999_999))
def test_a_formatted_area_parses_back_to_the_same_square_centimetres(hundreds):
    cm2 = hundreds * 100
    assert area(domain.format_area(cm2)) == (cm2, [])


@given(st.from_regex(r"[0-9]{1,9}(\.[0-9]{1,2})?", fullmatch=True))
def test_parsing_then_formatting_an_area_keeps_its_value(text):
    cm2, fields = area(text)
    if Decimal(text) == 0:
        assert fields == ["unit.exclusive_area_m2"]
    else:
        assert fields == []
        assert Decimal(domain.format_area(cm2)) == Decimal(text)


# ---------------------------------------------------------------- phones and texts


@pytest.mark.parametrize("phone", ["13812345678", "19912345678", "0477-8581234", "04778581234"])
def test_mobile_and_landline_numbers_are_personal_phones(phone):
    assert domain.is_personal_phone(phone)
    assert domain.is_public_phone(phone)


@pytest.mark.parametrize("phone", ["12345", "400-123-4567", "4001234567", "800-123-4567"])
def test_hotlines_are_public_phones_but_not_personal_ones(phone):
    assert domain.is_public_phone(phone)
    assert not domain.is_personal_phone(phone)


@pytest.mark.parametrize(
    "phone",
    [
        "",
        "12812345678",
        "1381234567",
        "138123456789",
        "+8613812345678",
        "138 1234 5678",
        "477-8581234",
        "13٨12345678",  # an Arabic-Indic digit
        "1٢٣٤٥",
        "１３８１２３４５６７８",  # full-width
        "13812345678\n",
    ],
)
def test_anything_else_is_not_a_phone(phone):
    assert not domain.is_public_phone(phone)
    assert fields_of(lambda v: domain.check_phone(v, "enterprise.contact_phone", phone)) == [
        "enterprise.contact_phone"
    ]


def test_check_phone_for_a_public_number_admits_hotlines():
    assert fields_of(lambda v: domain.check_phone(v, "p", "12345", public=True)) == []
    assert fields_of(lambda v: domain.check_phone(v, "p", "12345")) == ["p"]


@pytest.mark.parametrize(
    ("value", "required", "problem"),
    [
        ("", True, "is required"),
        ("   ", True, "is required"),
        ("", False, None),
        ("x" * 20, True, None),
        ("x" * 21, True, "at most 20"),
        ("line\nbreak", True, "control characters"),
        ("nul\x00", False, "control characters"),
        ("天骄花园", True, None),
    ],
)
def test_check_text_requires_limits_and_refuses_control_characters(value, required, problem):
    found = violations_of(lambda v: check_text(v, "project.name", value, 20, required))
    if problem is None:
        assert found == []
    else:
        assert [v.field for v in found] == ["project.name"]
        assert problem in found[0].description


@pytest.mark.parametrize(
    ("number", "ok"),
    [("3-2-1201", True), ("A#101", True), ("商铺/12", True), ("-1", False), ("", False)],
)
def test_unit_numbers_are_building_entrance_room(number, ok):
    assert (fields_of(lambda v: domain.check_unit_number(v, "units[0].number", number)) == []) is ok


def test_unit_numbers_are_at_most_40_characters():
    assert fields_of(lambda v: domain.check_unit_number(v, "n", "1" * 40)) == []
    assert fields_of(lambda v: domain.check_unit_number(v, "n", "1" * 41)) == ["n"]


# ---------------------------------------------------------------- identifiers


def test_a_valid_credit_code_passes_and_a_bad_check_character_is_named():
    assert fields_of(lambda v: domain.check_credit_code(v, "enterprise.credit_code", CODE)) == []
    wrong = CODE[:17] + ("0" if CODE[17] != "0" else "1")
    found = violations_of(lambda v: domain.check_credit_code(v, "enterprise.credit_code", wrong))
    assert [f.field for f in found] == ["enterprise.credit_code"]
    assert "check character" in found[0].description


def test_a_missing_credit_code_is_required():
    found = violations_of(lambda v: domain.check_credit_code(v, "credit_code", ""))
    assert [(f.field, f.description) for f in found] == [("credit_code", "is required")]


@pytest.mark.parametrize(
    "number",
    [
        resident_id()[:17] + ("0" if resident_id()[17] != "0" else "1"),  # check character
        resident_id()[:17],  # too short
        resident_id("15060220991301123"),  # no such date
        resident_id("15060221000101123"),  # born in the future
        "",
    ],
)
def test_a_bad_resident_id_is_refused_without_repeating_it(number):
    found = violations_of(
        lambda v: domain.check_resident_id(v, "practitioner.id_number", number, TODAY)
    )
    assert [f.field for f in found] == ["practitioner.id_number"]
    if number:
        assert number not in found[0].description


def test_a_valid_resident_id_passes():
    assert fields_of(lambda v: domain.check_resident_id(v, "id", resident_id(), TODAY)) == []


def test_a_district_must_be_one_of_the_city():
    city = {"150602": "东胜区", "150603": "康巴什区"}
    assert (
        fields_of(lambda v: domain.check_district(v, "project.district_code", "150602", city)) == []
    )
    for code in ("", "150699", "150602-x"):
        assert fields_of(lambda v, c=code: domain.check_district(v, "d", c, city)) == ["d"]


# ---------------------------------------------------------------- owners


OWNER_KEYS = OwnerKeys(b"unit-test-key")


def owner_key(kind: OwnerKind, id_number: str, project_id: str) -> str:
    return OWNER_KEYS.key_of(kind, id_number, project_id)


def test_several_units_of_one_person_are_one_owner_across_projects():
    person = resident_id()
    assert owner_key(OwnerKind.PERSON, person, "150602-aaaaaaaaaaaa") == owner_key(
        OwnerKind.PERSON, person, "150602-bbbbbbbbbbbb"
    )
    assert owner_key(OwnerKind.PERSON, person, "p") != owner_key(
        OwnerKind.PERSON, resident_id("15060219900101123"), "p"
    )


def test_the_developers_unsold_units_of_a_project_are_one_owner():
    a = owner_key(OwnerKind.DEVELOPER_UNSOLD, CODE, "150602-aaaaaaaaaaaa")
    assert a == owner_key(OwnerKind.DEVELOPER_UNSOLD, CODE, "150602-aaaaaaaaaaaa")
    # Another project's unsold units are another owner there.
    assert a != owner_key(OwnerKind.DEVELOPER_UNSOLD, CODE, "150602-bbbbbbbbbbbb")


def test_an_organisation_buying_units_is_not_the_developers_unsold_stock():
    assert owner_key(OwnerKind.ORGANIZATION, CODE, "p") != owner_key(
        OwnerKind.DEVELOPER_UNSOLD, CODE, "p"
    )


def test_the_owner_identity_keeps_the_number_only_inside_the_keyed_hash():
    key = owner_key(OwnerKind.PERSON, resident_id(), "p")
    assert resident_id() not in key
    assert len(key) == 32


# ---------------------------------------------------------------- rules the API applies


def test_a_rejection_states_its_reason_and_an_approval_need_not():
    assert fields_of(lambda v: domain.check_review_reason(v, Decision.REJECT, "  ")) == ["reason"]
    assert fields_of(lambda v: domain.check_review_reason(v, Decision.REJECT, "材料不全")) == []
    assert fields_of(lambda v: domain.check_review_reason(v, Decision.APPROVE, "")) == []


def test_a_contract_ends_after_it_starts():
    start = dt.date(2026, 1, 1)

    assert fields_of(lambda v: domain.check_contract(v, start, start)) == [
        "assignment.contract_end"
    ]
    assert fields_of(lambda v: domain.check_contract(v, start, start + dt.timedelta(1))) == []


def test_a_handover_item_that_did_not_pass_states_its_finding():
    items = [
        HandoverItem("电梯", passed=True, finding=""),
        HandoverItem("消防水泵", passed=False, finding=" "),
        HandoverItem("屋面防水", passed=False, finding="渗漏"),
    ]

    assert fields_of(lambda v: domain.check_handover(v, items, max_items=10)) == [
        "assignment.handover.items[1].finding"
    ]
    assert fields_of(lambda v: domain.check_handover(v, items[:1], max_items=10)) == []
    assert fields_of(lambda v: domain.check_handover(v, [], max_items=10)) == [
        "assignment.handover.items"
    ]
    assert fields_of(lambda v: domain.check_handover(v, items[:1] * 3, max_items=2)) == [
        "assignment.handover.items"
    ]


def test_a_disclosed_fee_is_within_the_configured_ceiling():
    assert fields_of(lambda v: domain.check_fee(v, "fee", 100, 100)) == []
    assert fields_of(lambda v: domain.check_fee(v, "fee", 101, 100)) == ["fee"]
    assert fields_of(lambda v: domain.check_fee(v, "fee", -1, 100)) == ["fee"]


def test_a_disclosure_update_changes_only_the_fields_it_names():
    before = domain.revise_disclosure(
        None,
        domain.Disclosure("150602-P1", ("保洁",), "一级", "住宅一级", None, 180, "12345", ()),
        domain.DISCLOSURE_FIELDS,
        NOW,
    )
    given = domain.Disclosure("150602-P1", (), "", "", None, 220, "", ())

    after = domain.revise_disclosure(before, given, ("fee_fen_per_m2_month",), LATER)

    assert (after.fee_fen_per_m2_month, after.service_items, after.service_grade) == (
        220,
        ("保洁",),
        "一级",
    )
    assert (before.updated_at, after.updated_at) == (NOW, LATER)


@pytest.mark.parametrize(
    "status", [EnterpriseStatus.PENDING, EnterpriseStatus.REJECTED, EnterpriseStatus.EXITED]
)
def test_only_a_filed_enterprise_registers_practitioners(status):
    domain.check_may_employ(enterprise())
    with pytest.raises(FailedPrecondition) as raised:
        domain.check_may_employ(enterprise(status))
    assert raised.value.reason == "ENTERPRISE_NOT_FILED"


def test_the_serving_enterprise_or_an_authority_discloses_and_no_one_else():
    domain.check_may_disclose(CODE, caller_is_authority=False, caller_enterprise=CODE)
    domain.check_may_disclose("", caller_is_authority=True, caller_enterprise="")
    for serving, caller in ((CODE, OTHER_CODE), ("", CODE), ("", "")):
        with pytest.raises(PermissionDenied) as raised:
            domain.check_may_disclose(serving, caller_is_authority=False, caller_enterprise=caller)
        assert raised.value.reason == "NOT_SERVING_ENTERPRISE"
