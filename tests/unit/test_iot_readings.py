"""The compiled reading loop reads a batch's bytes as protobuf does: generated batches, with the
fields of a reading in any order, repeated, of other wire types or unknown, must give the
readings protobuf's own parser finds; bytes protobuf refuses must not crash it; and a malformed
batch changes no device."""

from __future__ import annotations

import math
import struct
import sys

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wuye.iot import _readings
from wuye.iot.domain import DeviceKind, DeviceState
from wuye.iot.v1 import intake_service_pb2 as pb

GATEWAY = "150602-Ga1b2c3d4e5f6"
EVERYTHING = 2**64 - 1  # no reading is in the future
SLOTS = ("gateway_id", "low", "high", "valid_low", "valid_high", "silent", "last_seen")
SLOTS += ("last_value", "last_observed_ns", "abnormal")


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def tag(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def length_delimited(field: int, payload: bytes) -> bytes:
    return tag(field, 2) + varint(len(payload)) + payload


device_ids = st.sampled_from(["150602-D000000000001", "150602-D000000000002", "", "é设备"])
# One field of a Reading as bytes: its own three, each possibly of the wrong wire type, and
# unknown fields of every wire type (groups included).
reading_fields = st.one_of(
    device_ids.map(lambda d: length_delimited(1, d.encode())),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: tag(2, 1) + struct.pack("<d", v)),
    st.integers(0, 2**64 - 1).map(lambda t: tag(3, 1) + struct.pack("<Q", t)),
    st.integers(0, 2**64 - 1).map(lambda n: tag(2, 0) + varint(n)),  # value, wrong wire type
    st.integers(0, 2**32 - 1).map(lambda n: tag(3, 5) + struct.pack("<I", n)),
    st.integers(4, 99).map(lambda f: tag(f, 0) + varint(f * 1000)),
    st.integers(4, 99).map(lambda f: tag(f, 1) + bytes(8)),
    st.integers(4, 99).map(lambda f: length_delimited(f, b"xyz")),
    st.integers(4, 99).map(lambda f: tag(f, 3) + tag(1, 0) + varint(7) + tag(f, 4)),
)
readings = st.lists(st.lists(reading_fields, max_size=6).map(b"".join), max_size=8)
# Other fields of the batch between readings.
batch_fields = st.sampled_from(
    [
        length_delimited(1, GATEWAY.encode()),
        tag(2, 0) + varint(42),
        length_delimited(3, tag(1, 0) + varint(1_790_000_000)),
        length_delimited(15, bytes(32)),
        tag(9, 5) + bytes(4),
    ]
)


@st.composite
def batches(draw) -> bytes:
    parts = [length_delimited(4, r) for r in draw(readings)]
    for _ in range(draw(st.integers(0, 3))):
        parts.insert(draw(st.integers(0, len(parts))), draw(batch_fields))
    return b"".join(parts)


def state(device_id: str) -> DeviceState:
    return DeviceState(
        device_id=device_id,
        gateway_id=GATEWAY,
        district="150602",
        project_id="150602-P000000000001",
        kind=DeviceKind.HYDRANT_PRESSURE,
        low=-sys.float_info.max,
        high=sys.float_info.max,
        valid_low=-sys.float_info.max,
        valid_high=sys.float_info.max,
        heartbeat_seconds=60.0,
        registered_at=0.0,
    )


def take(devices, raw: bytes):
    return _readings.take(devices, GATEWAY, raw, 1.0, EVERYTHING, lambda *_: None, lambda *_: None)


def same_value(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_it_finds_the_readings_protobuf_finds(raw):
    try:
        expected = pb.ReadingBatch.FromString(raw).readings
    except DecodeError:
        return  # protobuf refuses it (a bad string): the intake never gets this far

    # No device known: every reading comes back refused, with its device id and value.
    taken, refused = take({}, raw)

    assert taken == 0
    assert [(i, d) for i, d, _, _ in refused] == [(i, r.device_id) for i, r in enumerate(expected)]
    assert all(same_value(v, r.value) for (*_, v), r in zip(refused, expected, strict=True))

    # Every device known: each holds its newest reading (the later of equals); a value that is
    # not a number is refused.
    devices = {r.device_id: state(r.device_id) for r in expected}
    taken, refused = take(devices, raw)

    finite = [r for r in expected if math.isfinite(r.value)]
    assert taken == len(finite)
    assert [i for i, *_ in refused] == [
        i for i, r in enumerate(expected) if not math.isfinite(r.value)
    ]
    for device_id, device in devices.items():
        mine = [r for r in finite if r.device_id == device_id]
        if not mine:
            assert device.last_seen == 0.0
            continue
        newest = max(r.observe_time_unix_nano for r in mine)
        last = [r for r in mine if r.observe_time_unix_nano == newest][-1]
        assert device.last_observed_ns == newest
        assert device.last_value == last.value


@settings(max_examples=400)
@given(st.binary(max_size=64))
def test_bytes_protobuf_takes_it_takes_alike_and_others_never_crash_it(raw):
    try:
        expected = pb.ReadingBatch.FromString(raw).readings
    except DecodeError:
        expected = None
    try:
        _, refused = take({}, raw)
    except (ValueError, UnicodeDecodeError):
        assert expected is None
        return
    if expected is not None:
        assert [d for _, d, _, _ in refused] == [r.device_id for r in expected]


@pytest.mark.parametrize(
    "tail",
    [
        tag(4, 2) + varint(100) + b"short",  # a reading longer than the bytes left
        tag(4, 2) + varint(3) + tag(2, 1) + b"\x00",  # a value cut short
        b"\xff" * 11,  # a varint that never ends
        tag(0, 0) + b"\x00",  # field number 0
        tag(5, 7),  # no such wire type
        tag(5, 3) + tag(1, 0) + b"\x01",  # a group that never ends
    ],
)
def test_a_malformed_batch_changes_no_device(tail):
    device = state("150602-D000000000001")
    good = length_delimited(
        4,
        length_delimited(1, device.device_id.encode())
        + tag(2, 1)
        + struct.pack("<d", 0.5)
        + tag(3, 1)
        + struct.pack("<Q", 5),
    )

    with pytest.raises(ValueError, match="not a ReadingBatch"):
        take({device.device_id: device}, good + tail)

    assert (device.last_value, device.last_observed_ns, device.last_seen) == (None, 0, 0.0)


def test_it_binds_only_to_a_class_whose_fields_are_slots():
    class Loose:
        pass

    with pytest.raises(AttributeError):
        _readings.bind(Loose)
    with pytest.raises(TypeError, match="not a slot"):
        _readings.bind(type("Property", (), {name: property() for name in SLOTS}))


def test_a_device_of_another_class_is_an_error_not_a_crash():
    class Impostor:
        __slots__ = SLOTS

    raw = length_delimited(4, length_delimited(1, b"150602-D000000000001"))

    with pytest.raises(TypeError, match="class given to bind"):
        take({"150602-D000000000001": Impostor()}, raw)
