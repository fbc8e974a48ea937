"""The city's working days: China's official holidays and make-up working days (调休).

The State Council announces each year's schedule in the autumn before; the `chinesecalendar`
package carries the years announced when it was released. For a later year, operators list the
announced days in settings (WUYE_EXTRA_HOLIDAYS, WUYE_EXTRA_WORKDAYS); a year the package does
not know counts as known once a holiday of it is listed there. For a year known to neither, a
deadline is refused with WORKING_DAYS_UNKNOWN rather than guessed from weekends alone: a guess
would be wrong by a week around every Spring Festival and National Day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import chinese_calendar

from wuye.core.errors import FailedPrecondition
from wuye.core.settings import Settings


class WorkingDaysUnknown(FailedPrecondition):
    def __init__(self, year: int) -> None:
        super().__init__(
            "WORKING_DAYS_UNKNOWN",
            f"the official working days of {year} are not known here yet: list that year's "
            "holidays in WUYE_EXTRA_HOLIDAYS and its make-up working days in "
            "WUYE_EXTRA_WORKDAYS, or upgrade the chinesecalendar package",
            year=str(year),
        )


class WorkingCalendar:
    def __init__(
        self,
        extra_holidays: Iterable[dt.date] = (),
        extra_workdays: Iterable[dt.date] = (),
        timezone: str = "Asia/Shanghai",
    ) -> None:
        self._holidays = frozenset(extra_holidays)
        self._workdays = frozenset(extra_workdays)
        both = sorted(self._holidays & self._workdays)
        if both:
            raise ValueError(f"days listed as both holidays and working days: {both}")
        self._listed_years = frozenset(day.year for day in self._holidays)
        self._zone = ZoneInfo(timezone)

    @classmethod
    def of(cls, settings: Settings) -> WorkingCalendar:
        return cls(settings.extra_holidays, settings.extra_workdays, settings.city_timezone)

    def local_date(self, moment: dt.date | dt.datetime) -> dt.date:
        """The city's calendar day of `moment` (an aware datetime), or the date itself."""
        if isinstance(moment, dt.datetime):
            if moment.tzinfo is None:
                raise ValueError("a moment needs its time zone")
            return moment.astimezone(self._zone).date()
        return moment

    def is_working_day(self, day: dt.date | dt.datetime) -> bool:
        """Raises WorkingDaysUnknown for a year neither the package nor the settings know."""
        day = self.local_date(day)
        if day in self._workdays:
            return True
        if day in self._holidays:
            return False
        try:
            return chinese_calendar.is_workday(day)
        except NotImplementedError:
            if day.year not in self._listed_years:
                raise WorkingDaysUnknown(day.year) from None
            return day.weekday() < 5

    def add_working_days(self, start: dt.date | dt.datetime, days: int) -> dt.date:
        """The `days`-th working day after `start` (the day itself is not counted: something
        due "within 2 working days" of a Friday request is due on Tuesday of a plain week);
        `start` itself for 0."""
        if days < 0:
            raise ValueError(f"days must not be negative, got {days}")
        day = self.local_date(start)
        while days:
            day += dt.timedelta(days=1)
            if self.is_working_day(day):
                days -= 1
        return day
