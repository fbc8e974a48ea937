"""Voting's settings: DOMAIN.md's numbers by default, another city's through WUYE_* variables,
thresholds only as exact fractions."""

from __future__ import annotations

from fractions import Fraction

import pytest
from pydantic import ValidationError

from wuye.voting.domain import MatterClass, MatterType, Threshold
from wuye.voting.settings import VotingSettings


def test_the_defaults_are_art_278s_and_beijings():
    rules = VotingSettings(pii_key="k").rules()
    assert rules.counting.quorum == Threshold(Fraction(2, 3), inclusive=True)
    assert rules.counting.special_majority == Threshold(Fraction(3, 4), inclusive=True)
    assert rules.counting.ordinary_majority == Threshold(Fraction(1, 2), inclusive=False)
    assert not rules.counting.non_voters_follow_majority
    assert rules.notice_days == 15
    assert rules.class_of(MatterType.RAISE_FUND) is MatterClass.SPECIAL
    assert rules.class_of(MatterType.USE_FUND) is MatterClass.ORDINARY


def test_another_city_sets_its_rules_by_environment(monkeypatch):
    monkeypatch.setenv("WUYE_VOTE_NOTICE_DAYS", "0")
    monkeypatch.setenv("WUYE_VOTE_SPECIAL_MAJORITY", "2/3")
    monkeypatch.setenv("WUYE_VOTE_SPECIAL_MATTERS", '["RAISE_FUND", "USE_FUND"]')
    monkeypatch.setenv("WUYE_VOTE_NON_VOTERS_FOLLOW_MAJORITY", "true")
    rules = VotingSettings().rules()
    assert rules.notice_days == 0
    assert rules.counting.special_majority.fraction == Fraction(2, 3)
    assert rules.class_of(MatterType.USE_FUND) is MatterClass.SPECIAL
    assert rules.class_of(MatterType.REBUILD) is MatterClass.ORDINARY
    assert rules.counting.non_voters_follow_majority


@pytest.mark.parametrize("written", ["0.75", "6/8", "4/3", "0/1", "1/0", " 3/4"])
def test_a_threshold_is_a_fraction_in_lowest_terms_at_most_one(written):
    with pytest.raises(ValidationError):
        VotingSettings(vote_quorum=written)


def test_pseudonyms_have_their_own_key_or_the_pii_keys():
    assert VotingSettings(pii_key="p").pseudonym_key() == b"p"
    assert VotingSettings(pii_key="p", vote_pseudonym_key="v").pseudonym_key() == b"v"
