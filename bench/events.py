"""The event the relay suite publishes: a registry EnterpriseFiled, as the registry emits it."""

from __future__ import annotations

import itertools

from google.protobuf.timestamp_pb2 import Timestamp

from wuye.core.events import Event
from wuye.core.ids import credit_code_check_char
from wuye.core.settings import ORDOS_DISTRICTS
from wuye.registry.commands import ENTERPRISE_TOPIC
from wuye.registry.v1 import events_pb2

# Events of a thousand enterprises, spread over the districts and so over the partitions.
ENTERPRISES = 1000
_DISTRICTS = list(itertools.islice(itertools.cycle(sorted(ORDOS_DISTRICTS)), ENTERPRISES))


def credit_code(district: str, serial: int) -> str:
    """A valid unified social credit code of an enterprise (91) registered in `district`."""
    first17 = f"91{district}MA{serial:07d}"
    return first17 + credit_code_check_char(first17)


def enterprise_filed(number: int) -> Event:
    serial = number % ENTERPRISES
    district = _DISTRICTS[serial]
    code = credit_code(district, serial)
    return Event(
        topic=ENTERPRISE_TOPIC,
        key=code,
        subject=f"enterprises/{code}",
        district=district,
        message=events_pb2.EnterpriseFiled(
            filing_id=f"{district}-F{number:012x}",
            credit_code=code,
            name=f"鄂尔多斯市第{serial}物业服务有限公司",
            district_code=district,
            occur_time=Timestamp(seconds=1_767_225_600 + number),
        ),
    )
