"""The one rule for free text: every service refuses the same texts, the same way."""

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wuye.core.errors import InvalidArgument, Violations
from wuye.core.text import REFUSED_CATEGORIES, text_problem
from wuye.core.wire import check_text

LIMIT = 200
# Letters, digits, punctuation, symbols and spaces: what people type.
typed = st.characters(categories=["L", "M", "N", "P", "S", "Zs"])
visible = st.characters(categories=["L", "N", "P", "S"])
refused = st.characters(categories=list(REFUSED_CATEGORIES))


@given(st.text(typed, max_size=LIMIT - 1), visible)
def test_a_line_of_typed_characters_within_the_limit_is_accepted(text: str, mark: str) -> None:
    assert text_problem(text + mark, LIMIT) is None


@given(st.text(typed, max_size=50), refused, st.text(typed, max_size=50))
def test_a_refused_character_anywhere_is_named_by_code_point_and_position(
    before: str, bad: str, after: str
) -> None:
    text = "名" + before + bad + after
    problem = text_problem(text, LIMIT)
    assert problem is not None
    first = next(i for i, ch in enumerate(text) if unicodedata.category(ch) in REFUSED_CATEGORIES)
    assert f"U+{ord(text[first]):04X} at character {first + 1}" in problem
    assert REFUSED_CATEGORIES[unicodedata.category(text[first])] in problem


@given(st.text(st.characters(categories=["Zs"]) | st.sampled_from("\t\n\r\x0b\x0c"), max_size=20))
def test_whitespace_alone_is_not_a_text(spaces: str) -> None:
    assert text_problem(spaces, LIMIT) == "is required"
    assert text_problem(spaces, LIMIT, required=False) == (
        None if not spaces else "must not be only spaces"
    )


@given(st.integers(min_value=1, max_value=300))
def test_the_limit_counts_characters_not_bytes(extra: int) -> None:
    assert text_problem("鄂" * LIMIT, LIMIT) is None
    assert text_problem("鄂" * (LIMIT + extra), LIMIT) == (
        f"must be at most {LIMIT} characters, got {LIMIT + extra}"
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("天骄\x00花园", "control characters (U+0000 at character 3)"),
        ("天骄\n花园", "control characters (U+000A"),
        ("天骄\t花园", "control characters (U+0009"),
        ("天骄\x7f花园", "control characters (U+007F"),
        ("天骄\x85花园", "control characters (U+0085"),
        ("admin\u202egnp.exe", "invisible format characters (U+202E"),
        ("王\u200b伟", "invisible format characters (U+200B"),
        ("天骄\u2028花园", "line separators (U+2028"),
        ("天骄\u2029花园", "paragraph separators (U+2029"),
        ("天骄\ue000花园", "private-use characters (U+E000"),
        ("天骄\U000e0001", "invisible format characters (U+E0001"),
        ("天骄\U0010fffe", "unassigned characters (U+10FFFE"),
    ],
)
def test_the_characters_services_used_to_disagree_on_are_refused(text: str, named: str) -> None:
    assert named in text_problem(text, LIMIT)


@pytest.mark.parametrize(
    "text", ["鄂尔多斯市\u3000东胜区", "Ordos  East", "№ 8 · 天骄路", "A&B (东胜)"]
)
def test_spaces_of_any_kind_and_punctuation_are_accepted(text: str) -> None:
    assert text_problem(text, LIMIT) is None


@given(st.text(max_size=LIMIT + 10), st.booleans())
def test_check_text_reports_exactly_the_rules_problem_for_the_field(text: str, required) -> None:
    v = Violations()
    check_text(v, "project.name", text, LIMIT, required)
    problem = text_problem(text, LIMIT, required=required)
    if problem is None:
        assert not v
    else:
        with pytest.raises(InvalidArgument) as raised:
            v.raise_if_any()
        assert raised.value.violations[0].field == "project.name"
        assert raised.value.violations[0].description == problem
