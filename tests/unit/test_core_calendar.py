"""Working days: official holidays, make-up Saturdays and Sundays, years not announced yet."""

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wuye.core.calendar import WorkingCalendar, WorkingDaysUnknown
from wuye.core.settings import Settings

D = dt.date
CALENDAR = WorkingCalendar()


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (D(2026, 2, 13), True),  # Friday before the Spring Festival
        (D(2026, 2, 14), True),  # Saturday, a make-up working day
        (D(2026, 2, 16), False),  # Monday, the festival's eve
        (D(2026, 2, 23), False),  # Monday, the last day off
        (D(2026, 2, 24), True),
        (D(2026, 2, 28), True),  # Saturday, the second make-up day
        (D(2026, 3, 1), False),  # a plain Sunday
        (D(2026, 9, 20), True),  # Sunday, made up for the National Day
        (D(2026, 9, 25), False),  # Friday, the Mid-Autumn Festival
        (D(2026, 9, 27), False),  # Sunday of the Mid-Autumn days off
        (D(2026, 10, 7), False),  # Wednesday, the last National Day day off
        (D(2026, 10, 8), True),
        (D(2026, 10, 10), True),  # Saturday, made up
    ],
)
def test_official_holidays_and_make_up_days_of_2026(day: dt.date, working: bool) -> None:
    assert CALENDAR.is_working_day(day) is working


def test_working_days_across_the_spring_festival_skip_the_holiday_and_count_make_up_days():
    assert CALENDAR.add_working_days(D(2026, 2, 12), 1) == D(2026, 2, 13)
    assert CALENDAR.add_working_days(D(2026, 2, 13), 1) == D(2026, 2, 14)
    assert CALENDAR.add_working_days(D(2026, 2, 13), 2) == D(2026, 2, 24)
    assert CALENDAR.add_working_days(D(2026, 2, 15), 5) == D(2026, 2, 28)


def test_zero_working_days_is_the_day_itself_and_negative_is_refused() -> None:
    assert CALENDAR.add_working_days(D(2026, 2, 15), 0) == D(2026, 2, 15)
    with pytest.raises(ValueError, match="negative"):
        CALENDAR.add_working_days(D(2026, 2, 15), -1)


def test_a_moment_counts_from_the_citys_day_not_utcs() -> None:
    # 17:00 UTC on Friday the 13th is already Saturday the 14th in Ordos.
    moment = dt.datetime(2026, 2, 13, 17, 0, tzinfo=dt.UTC)
    assert CALENDAR.local_date(moment) == D(2026, 2, 14)
    assert CALENDAR.add_working_days(moment, 1) == D(2026, 2, 24)
    with pytest.raises(ValueError, match="time zone"):
        CALENDAR.add_working_days(dt.datetime(2026, 2, 13, 17, 0), 1)


# Thirty working days after the last start stay within 2026, the package's last known year.
@given(st.dates(D(2004, 1, 1), D(2026, 11, 1)), st.integers(0, 30))
def test_n_working_days_later_has_exactly_n_working_days_in_between(start, days) -> None:
    end = CALENDAR.add_working_days(start, days)
    between = [start + dt.timedelta(n) for n in range(1, (end - start).days + 1)]
    assert sum(map(CALENDAR.is_working_day, between)) == days
    assert days == 0 or CALENDAR.is_working_day(end)


def test_a_year_nobody_announced_is_refused_rather_than_guessed() -> None:
    with pytest.raises(WorkingDaysUnknown) as refused:
        CALENDAR.add_working_days(D(2026, 12, 30), 5)
    assert refused.value.reason == "WORKING_DAYS_UNKNOWN"
    assert refused.value.metadata == {"year": "2027"}
    assert "WUYE_EXTRA_HOLIDAYS" in refused.value.message


def test_settings_teach_it_a_year_the_package_does_not_know(monkeypatch) -> None:
    # 2027's Spring Festival days off as an operator would list them, and a make-up Saturday.
    monkeypatch.setenv("WUYE_EXTRA_HOLIDAYS", "2027-01-01, 2027-02-06..2027-02-14")
    monkeypatch.setenv("WUYE_EXTRA_WORKDAYS", "2027-02-20")
    calendar = WorkingCalendar.of(Settings())
    assert not calendar.is_working_day(D(2027, 2, 8))  # a Monday off
    assert calendar.is_working_day(D(2027, 2, 20))  # a make-up Saturday
    assert not calendar.is_working_day(D(2027, 2, 21))  # Sunday: the weekend rule
    assert calendar.is_working_day(D(2027, 3, 3))  # a plain Wednesday
    assert calendar.add_working_days(D(2027, 2, 5), 1) == D(2027, 2, 15)
    with pytest.raises(WorkingDaysUnknown):
        calendar.is_working_day(D(2028, 1, 3))


def test_a_day_listed_both_off_and_working_is_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        WorkingCalendar([D(2027, 2, 20)], [D(2027, 2, 20)])


def test_settings_refuse_a_range_that_ends_before_it_starts(monkeypatch) -> None:
    monkeypatch.setenv("WUYE_EXTRA_HOLIDAYS", "2027-02-14..2027-02-06")
    with pytest.raises(ValueError, match="ends before it starts"):
        Settings()
