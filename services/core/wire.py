"""Small translations between the wire (protobuf well-known and google.type messages) and
Python values, and the input checks every API shares."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2

from wuye.core.errors import Violations
from wuye.core.text import text_problem

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def timestamp(moment: dt.datetime | None) -> Timestamp | None:
    """`moment` on the wire (a naive one read as UTC, as Timestamp.FromDatetime reads it), from
    its microseconds since the epoch: a tenth of FromDatetime's cost, which every ballot's
    receipt and every entry of an exported log pay."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    micros = (moment - _EPOCH) // _MICROSECOND
    return Timestamp(seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1_000)


def moment_of(
    v: Violations, field: str, stamp: Timestamp, present: bool = True
) -> dt.datetime | None:
    """The time a request gives in `field` (`present`: whether the request set it), or None
    with the problem added to `v`: missing, or beyond what a Timestamp may hold."""
    if not present:
        v.add(field, "is required")
        return None
    try:
        if 0 <= stamp.nanos < 1_000_000_000:  # ToDatetime would carry other nanos over
            return stamp.ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        pass
    v.add(field, "is not a valid time")
    return None


def to_date(day: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def date_of(
    v: Violations, field: str, value: date_pb2.Date, present: bool = True
) -> dt.date | None:
    """The calendar date `value` names, or None with a violation if it is absent or invalid."""
    if not present:
        v.add(field, "is required")
        return None
    try:
        return dt.date(value.year, value.month, value.day)
    except ValueError:
        v.add(field, "is not a valid calendar date")
        return None


def enum_name(enum_type, prefix: str, number: int) -> str:
    """The name of a proto enum value without its prefix ("GRADE_A" -> "A"); empty for the
    unspecified value and for numbers the enum does not have."""
    if number not in enum_type.values():
        return ""
    name = enum_type.Name(number)
    return "" if name.endswith("_UNSPECIFIED") else name.removeprefix(f"{prefix}_")


def check_request_id(v: Violations, request_id: str) -> None:
    if not request_id:
        v.add("request_id", "is required (a UUID chosen by the caller, reused on retries)")
    elif len(request_id) > 100 or not request_id.isprintable():
        v.add("request_id", "must be at most 100 printable characters")


def check_text(v: Violations, field: str, value: str, limit: int, required: bool = True) -> None:
    """A violation for `field` if `value` breaks the text rule (wuye.core.text)."""
    problem = text_problem(value, limit, required=required)
    if problem:
        v.add(field, problem)
