"""The rule of development's one-time sign-in codes: a code is redeemed once, before it expires,
and a few wrong guesses void it."""

from __future__ import annotations

import datetime as dt

import pytest

from wuye.core.errors import FailedPrecondition
from wuye.registry.domain import SignInCode, redeem_sign_in_code

NOW = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.UTC)
PENDING = SignInCode(digest="right", expires=NOW + dt.timedelta(minutes=5), attempts_left=2)


def test_the_right_code_before_its_expiry_is_redeemed_and_nothing_stays_pending():
    assert redeem_sign_in_code(PENDING, "right", NOW) is None


def test_a_wrong_code_costs_an_attempt_and_the_last_attempt_voids_the_code():
    left = redeem_sign_in_code(PENDING, "wrong", NOW)
    assert left == SignInCode("right", PENDING.expires, 1)
    with pytest.raises(FailedPrecondition) as refused:
        redeem_sign_in_code(left, "wrong", NOW)
    assert refused.value.reason == "SIGN_IN_ATTEMPTS_EXHAUSTED"


@pytest.mark.parametrize(
    ("pending", "now", "reason"),
    [
        (None, NOW, "SIGN_IN_NOT_STARTED"),
        (PENDING, PENDING.expires, "SIGN_IN_CODE_EXPIRED"),
    ],
)
def test_no_code_or_an_expired_one_is_refused_even_if_right(pending, now, reason):
    with pytest.raises(FailedPrecondition) as refused:
        redeem_sign_in_code(pending, "right", now)
    assert refused.value.reason == reason
