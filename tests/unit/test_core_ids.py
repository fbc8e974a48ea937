import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wuye.core.ids import (
    CREDIT_CODE_ALPHABET,
    credit_code_check_char,
    credit_code_problem,
    resident_id_check_char,
    resident_id_problem,
)

TODAY = dt.date(2025, 6, 1)

credit_code_bodies = st.text(alphabet=CREDIT_CODE_ALPHABET, min_size=17, max_size=17)


@st.composite
def credit_codes(draw: st.DrawFn) -> str:
    body = draw(credit_code_bodies)
    return body + credit_code_check_char(body)


@st.composite
def resident_ids(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(["150602", "150603", "150627", "110105"]))
    born = draw(st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY))
    sequence = draw(st.integers(min_value=0, max_value=999))
    body = f"{region}{born:%Y%m%d}{sequence:03d}"
    return body + resident_id_check_char(body)


def with_char(text: str, position: int, char: str) -> str:
    return text[:position] + char + text[position + 1 :]


# -- unified social credit code (GB 32100-2015)


@pytest.mark.parametrize("code", ["91350100M000100Y43", "91110000802100433B"])
def test_published_credit_codes_are_valid(code: str) -> None:
    assert credit_code_problem(code) is None


@given(credit_codes())
def test_a_credit_code_ending_in_its_computed_check_character_is_valid(code: str) -> None:
    assert credit_code_problem(code) is None


@given(credit_codes())
def test_every_single_character_change_of_a_credit_code_is_rejected(code: str) -> None:
    for position in range(18):
        for char in CREDIT_CODE_ALPHABET + "IOSVZa-":
            if char != code[position]:
                changed = with_char(code, position, char)
                assert credit_code_problem(changed) is not None, changed


@given(credit_codes(), st.integers(min_value=0, max_value=16))
def test_swapping_two_different_adjacent_characters_of_a_credit_code_is_rejected(
    code: str, position: int
) -> None:
    a, b = code[position], code[position + 1]
    if a != b:
        swapped = code[:position] + b + a + code[position + 2 :]
        assert credit_code_problem(swapped) is not None


@pytest.mark.parametrize("code", ["", "91350100M000100Y4", "91350100M000100Y431"])
def test_a_credit_code_of_the_wrong_length_is_rejected_naming_the_length(code: str) -> None:
    assert credit_code_problem(code) == f"must be 18 characters, got {len(code)}"


@pytest.mark.parametrize("bad", ["I", "O", "S", "V", "Z", "m", " ", "中"])
def test_a_credit_code_with_a_character_outside_the_alphabet_is_rejected_naming_it(
    bad: str,
) -> None:
    problem = credit_code_problem(with_char("91350100M000100Y43", 8, bad))
    assert problem is not None
    assert "not allowed" in problem
    assert repr(bad) in problem


def test_a_wrong_credit_code_check_character_is_named_with_the_expected_one() -> None:
    assert credit_code_problem("91350100M000100Y44") == "check character is '4', expected '3'"


# -- resident ID number (GB 11643-1999)


def test_the_sample_resident_id_of_the_standard_is_valid() -> None:
    assert resident_id_problem("11010519491231002X", today=TODAY) is None


@given(resident_ids())
def test_a_resident_id_ending_in_its_computed_check_character_is_valid(number: str) -> None:
    assert resident_id_problem(number, today=TODAY) is None


@given(resident_ids())
def test_every_single_character_change_of_a_resident_id_is_rejected(number: str) -> None:
    for position in range(18):
        for char in "0123456789Xx A":
            if char != number[position]:
                changed = with_char(number, position, char)
                assert resident_id_problem(changed, today=TODAY) is not None, changed


@given(resident_ids(), st.integers(min_value=0, max_value=17))
def test_a_resident_id_problem_never_repeats_the_number(number: str, position: int) -> None:
    replacement = "A" if number[position] != "A" else "B"
    problem = resident_id_problem(with_char(number, position, replacement), today=TODAY)
    assert problem is not None
    assert number[:14] not in problem
    assert number[6:14] not in problem  # the birth date


@pytest.mark.parametrize("number", ["", "11010519491231002", "11010519491231002X1"])
def test_a_resident_id_of_the_wrong_length_is_rejected(number: str) -> None:
    assert resident_id_problem(number, today=TODAY) == f"must be 18 characters, got {len(number)}"


def test_a_resident_id_with_full_width_digits_is_rejected() -> None:
    full_width = "１１０１０５１９４９１２３１００２"
    assert resident_id_problem(full_width + "X", today=TODAY) == (
        "the first 17 characters must be digits"
    )


def test_a_resident_id_ending_in_a_letter_other_than_x_is_rejected() -> None:
    assert resident_id_problem("11010519491231002A", today=TODAY) == (
        "the last character must be a digit or X"
    )


@pytest.mark.parametrize("birth", ["19490230", "19491301", "19490000", "20230229"])
def test_a_resident_id_whose_birth_date_is_no_date_is_rejected(birth: str) -> None:
    body = f"110105{birth}002"
    number = body + resident_id_check_char(body)
    assert resident_id_problem(number, today=TODAY) == (
        "the birth date (characters 7-14) is not a date"
    )


@pytest.mark.parametrize("birth", ["18991231", "20250602", "20300101"])
def test_a_resident_id_born_before_1900_or_after_today_is_rejected(birth: str) -> None:
    body = f"110105{birth}002"
    number = body + resident_id_check_char(body)
    assert resident_id_problem(number, today=TODAY) == (
        "the birth date (characters 7-14) is out of range"
    )


def test_a_resident_id_born_today_is_valid() -> None:
    body = f"110105{TODAY:%Y%m%d}002"
    assert resident_id_problem(body + resident_id_check_char(body), today=TODAY) is None
