"""Test data every folder's tests share, one copy of each: identifiers that pass their checks,
request ids and proto dates. tests/ is on sys.path (pytest puts the root conftest's folder
there), so any test module or support module imports it as `sample_data`; conftest.py modules
cannot be imported by name, every folder has one.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import uuid

from google.type import date_pb2

from wuye.core.ids import CREDIT_CODE_ALPHABET, credit_code_check_char, resident_id_check_char

DONGSHENG = "150602"


def new_credit_code(district: str = DONGSHENG) -> str:
    """A valid unified social credit code (GB 32100-2015), random in its last nine characters."""
    body = "91" + district + "".join(random.choices(CREDIT_CODE_ALPHABET, k=9))
    return body + credit_code_check_char(body)


_serial = itertools.count(100)


def new_resident_id(district: str = DONGSHENG, born: dt.date = dt.date(1985, 6, 15)) -> str:
    """A valid resident ID number (GB 11643); each call gives another person."""
    body = f"{district}{born:%Y%m%d}{next(_serial) % 1000:03d}"
    return body + resident_id_check_char(body)


def request_id() -> str:
    """A fresh request id for a Create-like call (idempotent on it)."""
    return str(uuid.uuid4())


def date(day: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)
