"""The IoT intake's rules in memory: which readings are taken, when each kind of device raises
its alarm and when the condition clears, silence, clock skew, the replay window that makes a
batch count once, and the signature of a batch."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wuye.core.errors import FailedPrecondition
from wuye.iot import domain
from wuye.iot.domain import (
    AlarmAction,
    AlarmKind,
    AlarmState,
    Change,
    DeviceKind,
    DeviceState,
    GatewayState,
    Rejection,
    ReplayWindow,
)
from wuye.iot.gateway import encode_readings
from wuye.iot.settings import DEFAULT_THRESHOLDS, DEFAULT_VALID_RANGES
from wuye.iot.signing import (
    SIGNATURE_BYTES,
    gateway_secret,
    is_signed_by,
    sign,
    signature_of,
    split_signature,
)

GATEWAY = "150602-Ga1b2c3d4e5f6"
OTHER_GATEWAY = "150602-G0f0f0f0f0f0f"
NOW = 1_790_000_000.0  # Unix seconds of the centre's clock in these tests
NOW_NS = int(NOW * 1e9)
LATEST_NS = NOW_NS + 60 * 1_000_000_000  # what the centre allows: 60 s ahead
SECOND = 1_000_000_000


def device(
    kind: DeviceKind = DeviceKind.FIRE_FACILITY,
    device_id: str = "150602-D000000000001",
    gateway_id: str = GATEWAY,
    heartbeat: float = 60.0,
    registered_at: float = NOW - 10,
    **kw,
) -> DeviceState:
    normal, valid = DEFAULT_THRESHOLDS[kind], DEFAULT_VALID_RANGES[kind]
    return DeviceState(
        device_id=device_id,
        gateway_id=gateway_id,
        district="150602",
        project_id="150602-P000000000001",
        kind=kind,
        low=kw.pop("low", normal.low),
        high=kw.pop("high", normal.high),
        valid_low=valid.low,
        valid_high=valid.high,
        heartbeat_seconds=heartbeat,
        registered_at=registered_at,
        **kw,
    )


def reading(device_id: str, value: float, observed_ns: int = NOW_NS):
    return device_id, value, observed_ns


def take(devices: list[DeviceState], *readings, gateway=GATEWAY, received=NOW):
    """Applies one batch; returns (taken, refused, changes)."""
    changes: list[Change] = []
    taken, refused = domain.take_readings(
        {d.device_id: d for d in devices},
        gateway,
        encode_readings(readings),
        received,
        LATEST_NS,
        changes,
    )
    return taken, refused, changes


# (kind, a normal value, an abnormal value, the alarm)
RULES = [
    (DeviceKind.HYDRANT_PRESSURE, 0.35, 0.05, AlarmKind.LOW_PRESSURE),
    (DeviceKind.FIRE_PUMP, 1.0, 0.0, AlarmKind.FACILITY_OFF),
    (DeviceKind.SPRINKLER_VALVE, 1.0, 0.0, AlarmKind.FACILITY_OFF),
    (DeviceKind.FIRE_FACILITY, 1.0, 0.0, AlarmKind.FACILITY_OFF),
    (DeviceKind.SMOKE_DETECTOR, 0.0, 1.0, AlarmKind.FIRE),
    (DeviceKind.FIRE_DOOR, 0.0, 1.0, AlarmKind.FIRE_DOOR_OPEN),
    (DeviceKind.FIRE_LANE, 0.0, 1.0, AlarmKind.FIRE_LANE_BLOCKED),
]


def test_every_kind_of_device_has_a_rule_here():
    assert {kind for kind, *_ in RULES} == set(DeviceKind)


# -- the alarm rules


@pytest.mark.parametrize(("kind", "normal", "abnormal", "alarm"), RULES, ids=lambda r: str(r))
def test_a_condition_raises_its_alarm_once_while_it_lasts_and_clears_when_it_ends(
    kind, normal, abnormal, alarm
):
    d = device(kind)

    _, _, first = take([d], reading(d.device_id, normal, NOW_NS))
    _, _, raised = take([d], reading(d.device_id, abnormal, NOW_NS + 1))
    _, _, again = take(
        [d], reading(d.device_id, abnormal, NOW_NS + 2), reading(d.device_id, abnormal, NOW_NS + 3)
    )
    _, _, cleared = take([d], reading(d.device_id, normal, NOW_NS + 4))
    _, _, still = take([d], reading(d.device_id, normal, NOW_NS + 5))

    assert first == []
    assert raised == [
        Change(alarm, True, GATEWAY, "150602", d.project_id, d.device_id, abnormal, NOW_NS + 1)
    ]
    assert again == []
    assert cleared == [
        Change(alarm, False, GATEWAY, "150602", d.project_id, d.device_id, normal, NOW_NS + 4)
    ]
    assert still == []
    assert (d.last_value, d.last_observed_ns, d.abnormal) == (normal, NOW_NS + 5, False)


@pytest.mark.parametrize(("kind", "normal", "abnormal", "alarm"), RULES, ids=lambda r: str(r))
def test_a_device_abnormal_from_its_first_reading_raises_at_once(kind, normal, abnormal, alarm):
    d = device(kind)

    taken, refused, changes = take([d], reading(d.device_id, abnormal))

    assert (taken, refused) == (1, [])
    assert [(c.kind, c.raised, c.value) for c in changes] == [(alarm, True, abnormal)]


def test_a_hydrant_alarms_below_its_own_threshold_and_not_at_it():
    d = device(DeviceKind.HYDRANT_PRESSURE, low=0.2)

    _, _, at_bound = take([d], reading(d.device_id, 0.2, NOW_NS))
    _, _, below = take([d], reading(d.device_id, 0.19, NOW_NS + 1))

    assert at_bound == []
    assert [(c.kind, c.raised) for c in below] == [(AlarmKind.LOW_PRESSURE, True)]


def test_the_conditions_of_two_devices_in_one_batch_are_their_own():
    pump = device(DeviceKind.FIRE_PUMP, device_id="150602-D000000000001")
    door = device(DeviceKind.FIRE_DOOR, device_id="150602-D000000000002")

    taken, _, changes = take(
        [pump, door], reading(pump.device_id, 0.0), reading(door.device_id, 1.0)
    )

    assert taken == 2
    assert [(c.device_id, c.kind) for c in changes] == [
        (pump.device_id, AlarmKind.FACILITY_OFF),
        (door.device_id, AlarmKind.FIRE_DOOR_OPEN),
    ]


# -- readings refused, the rest taken


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_value_that_is_not_finite_is_refused(value):
    d = device(DeviceKind.HYDRANT_PRESSURE)

    taken, refused, changes = take([d], reading(d.device_id, value))

    assert taken == 0
    assert [(r.index, r.device_id, r.reason) for r in refused] == [
        (0, d.device_id, Rejection.VALUE_NOT_FINITE)
    ]
    assert changes == []
    assert (d.last_value, d.last_seen, d.abnormal) == (None, 0.0, False)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (DeviceKind.HYDRANT_PRESSURE, -0.01),
        (DeviceKind.HYDRANT_PRESSURE, 10.5),
        (DeviceKind.FIRE_FACILITY, 2.0),
        (DeviceKind.SMOKE_DETECTOR, -1.0),
    ],
)
def test_a_value_outside_what_the_kind_can_read_is_refused_not_alarmed(kind, value):
    d = device(kind)

    taken, [refused], changes = take([d], reading(d.device_id, value))

    assert taken == 0
    assert refused.reason == Rejection.VALUE_OUT_OF_RANGE
    assert str(kind) in refused.description
    assert changes == []
    assert d.last_value is None


def test_a_reading_observed_beyond_the_future_limit_is_refused():
    d = device()

    taken, refused, _ = take(
        [d], reading(d.device_id, 1.0, LATEST_NS), reading(d.device_id, 0.0, LATEST_NS + 1)
    )

    assert taken == 1
    assert [(r.index, r.reason) for r in refused] == [(1, Rejection.OBSERVED_IN_FUTURE)]
    assert (d.last_value, d.abnormal) == (1.0, False)


def test_an_unknown_device_or_one_of_another_gateway_is_refused_and_the_rest_taken():
    mine = device(device_id="150602-D000000000001")
    theirs = device(device_id="150602-D000000000002", gateway_id=OTHER_GATEWAY)
    unknown = "150602-D" + "9" * 100

    taken, refused, changes = take(
        [mine, theirs],
        reading(unknown, 0.0),
        reading(theirs.device_id, 0.0),
        reading(mine.device_id, 0.0),
    )

    assert taken == 1
    assert [(r.index, r.device_id, r.reason) for r in refused] == [
        (0, unknown[:64], Rejection.UNKNOWN_DEVICE),
        (1, theirs.device_id, Rejection.UNKNOWN_DEVICE),
    ]
    assert [c.device_id for c in changes] == [mine.device_id]
    assert theirs.last_value is None and not theirs.abnormal


def test_an_older_reading_is_taken_but_changes_no_state():
    d = device()
    take([d], reading(d.device_id, 1.0, NOW_NS))

    taken, refused, changes = take(
        [d], reading(d.device_id, 0.0, NOW_NS - SECOND), received=NOW + 5
    )

    assert (taken, refused, changes) == (1, [], [])
    assert (d.last_value, d.last_observed_ns, d.abnormal) == (1.0, NOW_NS, False)
    assert d.last_seen == NOW + 5  # heard from all the same


def test_a_taken_reading_marks_the_device_heard():
    d = device()

    take([d], reading(d.device_id, 1.0), received=NOW + 3)

    assert d.last_seen == NOW + 3


# -- silence


def test_a_device_never_heard_is_silent_a_heartbeat_after_its_registration():
    d = device(heartbeat=60, registered_at=NOW)
    changes: list[Change] = []

    assert domain.find_silent([d], NOW + 60, changes) == 0
    assert changes == []
    assert domain.find_silent([d], NOW + 60.5, changes) == 1
    assert changes == [
        Change(
            AlarmKind.DEVICE_SILENT,
            True,
            GATEWAY,
            "150602",
            d.project_id,
            d.device_id,
            None,
            int((NOW + 60) * 1e9),
        )
    ]
    assert d.silent and d.dirty


def test_silence_is_raised_once_and_counted_while_it_lasts():
    heard = device(device_id="150602-D000000000001", heartbeat=10, last_seen=NOW)
    quiet = device(device_id="150602-D000000000002", heartbeat=10, last_seen=NOW - 20)
    changes: list[Change] = []

    first = domain.find_silent([heard, quiet], NOW + 1, changes)
    second = domain.find_silent([heard, quiet], NOW + 2, changes)

    assert (first, second) == (1, 1)
    assert [c.device_id for c in changes] == [quiet.device_id]
    assert changes[0].observed_ns == int((NOW - 10) * 1e9)  # when it was due


def test_a_silent_devices_next_reading_clears_its_silence():
    d = device(heartbeat=10, last_seen=NOW - 30, silent=True)

    taken, _, changes = take([d], reading(d.device_id, 1.0))

    assert taken == 1
    assert [(c.kind, c.raised) for c in changes] == [(AlarmKind.DEVICE_SILENT, False)]
    assert not d.silent
    assert domain.find_silent([d], NOW + 1, []) == 0


def test_a_silent_devices_older_reading_still_clears_its_silence():
    d = device(heartbeat=10, last_seen=NOW - 30, silent=True, last_observed_ns=NOW_NS)

    _, _, changes = take([d], reading(d.device_id, 0.0, NOW_NS - SECOND))

    assert [(c.kind, c.raised) for c in changes] == [(AlarmKind.DEVICE_SILENT, False)]
    assert not d.abnormal


def test_a_refused_reading_does_not_clear_silence():
    d = device(heartbeat=10, last_seen=NOW - 30, silent=True)

    _, refused, changes = take([d], reading(d.device_id, math.nan))

    assert len(refused) == 1 and changes == []
    assert d.silent


# -- clock skew


def gateway_state(skewed: bool = False) -> GatewayState:
    return GatewayState(GATEWAY, "150602", "150602-P1", 1, ReplayWindow(64), skewed)


LIMIT = 5 * SECOND


@pytest.mark.parametrize("offset", [-LIMIT, 0, LIMIT])
def test_a_clock_off_by_the_limit_is_not_skewed(offset):
    gateway = gateway_state()

    assert domain.check_clock(gateway, NOW_NS + offset, NOW_NS, LIMIT) is None
    assert not gateway.skewed


@pytest.mark.parametrize("offset", [-LIMIT - 1, LIMIT + 1, 10 * SECOND])
def test_a_clock_off_by_more_than_the_limit_raises_clock_skew_once_and_clears(offset):
    gateway = gateway_state()

    raised = domain.check_clock(gateway, NOW_NS + offset, NOW_NS, LIMIT)
    again = domain.check_clock(gateway, NOW_NS + offset, NOW_NS, LIMIT)
    cleared = domain.check_clock(gateway, NOW_NS + 2, NOW_NS + 2, LIMIT)

    assert raised == Change(
        AlarmKind.CLOCK_SKEW, True, GATEWAY, "150602", "150602-P1", "", None, NOW_NS
    )
    assert again is None
    assert cleared is not None and not cleared.raised and cleared.device_id == ""
    assert not gateway.skewed


# -- the replay window and the gateway's epochs


def test_a_new_sequence_is_not_seen_until_marked():
    window = ReplayWindow(64)

    assert not window.seen(1)
    window.mark(1)
    assert window.seen(1)
    assert not window.seen(2)


def test_sequences_marked_out_of_order_are_each_seen_and_the_gaps_not():
    window = ReplayWindow(64)
    for sequence in (10, 3, 7, 12):
        window.mark(sequence)

    assert [s for s in range(1, 14) if window.seen(s)] == [3, 7, 10, 12]
    assert window.highest == 12


def test_the_window_keeps_all_64_bits():
    window = ReplayWindow(64)
    window.mark(1)
    window.mark(64)  # 63 behind: the window's oldest bit

    assert window.seen(1)
    assert window.bits == (1 << 63) | 1
    window.mark(65)
    assert window.bits < 1 << 64
    assert not window.seen(1)  # beyond the window now: window_for refuses it
    assert not window.seen(2)


def test_marking_a_sequence_older_than_the_window_keeps_the_bits_within_it():
    """An old batch acknowledged after a much newer one (it was on its way to Kafka); its bit
    must not land outside the window, whose bits are stored in a 64-bit column."""
    window = ReplayWindow(64)
    window.mark(100)
    window.mark(1)

    assert window.bits == 1
    assert window.seen(100) and not window.seen(1)


def test_a_big_jump_forgets_the_bits_below():
    window = ReplayWindow(64)
    window.mark(5)
    window.mark(1_000_000)

    assert window.bits == 1
    assert not window.seen(999_999)


def test_a_window_restored_from_its_epoch_highest_and_bits_answers_as_before():
    window = ReplayWindow(64, epoch=7)
    for sequence in (1, 2, 5, 40, 41, 70):
        window.mark(sequence)

    restored = ReplayWindow(64, window.epoch, window.highest, window.bits)

    assert [s for s in range(1, 80) if restored.seen(s)] == [
        s for s in range(1, 80) if window.seen(s)
    ]


def gateway_in(epoch: int, *marked: int, size: int = 64) -> GatewayState:
    window = ReplayWindow(size, epoch)
    for sequence in marked:
        window.mark(sequence)
    return GatewayState(GATEWAY, "150602", "150602-P1", 1, window)


STEP = 1_000


def refusal(gateway: GatewayState, epoch: int, sequence: int) -> str:
    with pytest.raises(FailedPrecondition) as refused:
        domain.window_for(gateway, epoch, sequence, STEP)
    return refused.value.reason


def test_a_restarted_gateway_counting_from_1_in_a_newer_epoch_gets_a_new_window():
    """The defect this guards against: a gateway that sent 200 batches and restarted was told
    its batches were duplicates until it passed 200 again."""
    gateway = gateway_in(1_000, *range(1, 201))

    window = domain.window_for(gateway, 2_000, 1, STEP)

    assert window is gateway.window
    assert (window.epoch, window.highest, window.bits) == (2_000, 0, 0)
    window.mark(1)
    assert domain.window_for(gateway, 2_000, 1, STEP) is None  # now a duplicate
    assert domain.window_for(gateway, 2_000, 2, STEP) is window


def test_a_batch_of_an_epoch_older_than_the_gateways_is_refused_not_a_duplicate():
    gateway = gateway_in(2_000, 1)

    assert refusal(gateway, 1_000, 1) == "STALE_EPOCH"
    assert refusal(gateway, 1_999, 150) == "STALE_EPOCH"
    assert gateway.window.epoch == 2_000


def test_a_sequence_older_than_the_window_is_refused_not_a_duplicate():
    gateway = gateway_in(5, 100, size=8)

    assert refusal(gateway, 5, 92) == "SEQUENCE_TOO_OLD"  # 8 behind: beyond the window
    assert refusal(gateway, 5, 1) == "SEQUENCE_TOO_OLD"
    assert domain.window_for(gateway, 5, 93, STEP) is gateway.window  # 7 behind, never taken


def test_a_sequence_further_ahead_than_the_step_is_refused_and_changes_nothing():
    gateway = gateway_in(5, 10)

    assert refusal(gateway, 5, 10 + STEP + 1) == "SEQUENCE_TOO_FAR_AHEAD"
    assert refusal(gateway, 5, 2**63 - 1) == "SEQUENCE_TOO_FAR_AHEAD"
    assert refusal(gateway, 6, STEP + 1) == "SEQUENCE_TOO_FAR_AHEAD"  # from 0 in a new epoch
    assert (gateway.window.epoch, gateway.window.highest) == (5, 10)
    assert domain.window_for(gateway, 5, 10 + STEP, STEP) is gateway.window


@given(
    size=st.integers(8, 64),
    marks=st.lists(st.integers(1, 300), max_size=60),
    probes=st.lists(st.integers(1, 400), max_size=30),
)
def test_the_replay_window_agrees_with_a_set_of_every_sequence_marked(size, marks, probes):
    """Within one epoch: a sequence marked is a duplicate, one `size` or more below the highest
    is refused, any other (not too far ahead) is taken."""
    gateway = gateway_in(0, size=size)
    marked: set[int] = set()

    def expected(sequence: int) -> str:
        highest = max(marked, default=0)
        if highest - sequence >= size:
            return "SEQUENCE_TOO_OLD"
        return "duplicate" if sequence in marked else "new"

    def answer(sequence: int) -> str:
        try:
            window = domain.window_for(gateway, 0, sequence, STEP)
        except FailedPrecondition as e:
            return e.reason
        return "duplicate" if window is None else "new"

    for sequence in marks:
        assert answer(sequence) == expected(sequence), sequence
        gateway.window.mark(sequence)
        marked.add(sequence)
    assert gateway.window.highest == max(marked, default=0)
    assert 0 <= gateway.window.bits < 1 << size
    for sequence in [*probes, *marks]:
        assert answer(sequence) == expected(sequence), sequence


@pytest.mark.parametrize(
    ("sequence", "epoch", "field"),
    [(0, 0, "sequence"), (2**63, 0, "sequence"), (1, 2**63, "epoch")],
)
def test_a_sequence_or_epoch_beyond_what_is_stored_is_invalid(sequence, epoch, field):
    problems = domain.batch_problems(sequence, epoch, True, 1, 10)

    assert [f for f, _ in problems] == [field]


# -- an alarm's life


A = AlarmState


@pytest.mark.parametrize(
    ("state", "action", "after"),
    [
        (A.RAISED, AlarmAction.ACKNOWLEDGE, A.ACKNOWLEDGED),
        (A.ACKNOWLEDGED, AlarmAction.ACKNOWLEDGE, None),
        (A.RAISED, AlarmAction.RESOLVE, A.RESOLVED),
        (A.ACKNOWLEDGED, AlarmAction.RESOLVE, A.RESOLVED),
        (A.RESOLVED, AlarmAction.RESOLVE, None),
        (A.RAISED, AlarmAction.CLEAR, A.RESOLVED),
        (A.ACKNOWLEDGED, AlarmAction.CLEAR, A.RESOLVED),
    ],
)
def test_an_alarm_moves_as_its_transitions_allow_and_a_repeat_changes_nothing(state, action, after):
    assert domain.alarm_transition(state, action, "150602-A1") == after


@pytest.mark.parametrize("action", [AlarmAction.ACKNOWLEDGE, AlarmAction.CLEAR])
def test_a_resolved_alarm_is_not_acknowledged_or_cleared_again(action):
    with pytest.raises(FailedPrecondition) as refused:
        domain.alarm_transition(A.RESOLVED, action, "150602-A1")

    assert refused.value.reason == "ALARM_RESOLVED"


@pytest.mark.parametrize(("count", "escalated"), [(5, False), (6, True), (7, False)])
def test_false_alarms_escalate_once_when_the_days_count_passes_the_limit(count, escalated):
    assert domain.false_alarms_exceeded(count, 5) is escalated


def test_a_device_takes_the_kinds_normal_range_for_the_bounds_not_given():
    low, high, problems = domain.device_range("HYDRANT_PRESSURE", 0.25, None, (0.1, 10.0), (0, 10))
    _, _, wrong = domain.device_range("HYDRANT_PRESSURE", 2.0, 1.0, (0.1, 10.0), (0, 10))

    assert (low, high, problems) == (0.25, 10.0, [])
    assert wrong == [("thresholds", "low must not exceed high")]


# -- signatures

SECRET = gateway_secret(b"service-key", GATEWAY, 1)


def test_a_signed_batch_splits_into_the_bytes_signed_and_their_signature():
    payload = b"\n\x14" + GATEWAY.encode() + b"\x10\x07"

    raw = sign(SECRET, payload)
    signed, signature = split_signature(raw)

    assert signed == payload
    assert len(signature) == SIGNATURE_BYTES
    assert signature == signature_of(SECRET, payload)
    assert is_signed_by(SECRET, signed, signature)


@given(payload=st.binary(max_size=200), data=st.data())
def test_a_tampered_byte_breaks_the_signature(payload, data):
    raw = bytearray(sign(SECRET, payload))
    index = data.draw(st.integers(0, len(raw) - 1))
    flip = data.draw(st.integers(1, 255))
    raw[index] ^= flip

    signed, signature = split_signature(bytes(raw))

    assert not is_signed_by(SECRET, signed, signature)


def test_another_gateways_secret_or_version_does_not_verify():
    payload = b"batch"
    signature = signature_of(SECRET, payload)

    assert not is_signed_by(gateway_secret(b"service-key", OTHER_GATEWAY, 1), payload, signature)
    assert not is_signed_by(gateway_secret(b"service-key", GATEWAY, 2), payload, signature)
    assert not is_signed_by(gateway_secret(b"other-key", GATEWAY, 1), payload, signature)
    assert gateway_secret(b"service-key", GATEWAY, 1) == SECRET  # derived, so stable


@pytest.mark.parametrize("raw", [b"", b"\n\x03abc", b"x" * 33, b"\x7a\x20" + b"x" * 31])
def test_bytes_without_a_signature_field_last_have_an_empty_signature(raw):
    signed, signature = split_signature(raw)

    assert (signed, signature) == (raw, b"")
    assert not is_signed_by(SECRET, signed, signature)


def test_a_short_signature_never_verifies():
    payload = b"batch"

    assert not is_signed_by(SECRET, payload, signature_of(SECRET, payload)[:16])


def test_a_city_day_runs_from_local_midnight_to_local_midnight():
    zone = ZoneInfo("Asia/Shanghai")
    # 16:30 UTC on 3 December is 00:30 on 4 December in Ordos.
    day, start, end = domain.city_day(dt.datetime(2026, 12, 3, 16, 30, tzinfo=dt.UTC), zone)

    assert day == dt.date(2026, 12, 4)
    assert start == dt.datetime(2026, 12, 3, 16, 0, tzinfo=dt.UTC)
    assert end - start == dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("given", "expected"),
    [(None, (7200.0, None)), (600.0, (600.0, None)), (10.0, (10.0, None))],
)
def test_a_device_reports_at_least_as_often_as_given_or_gb_50440s_longest(given, expected):
    assert domain.device_heartbeat(given, 10, 7200.0) == expected


@pytest.mark.parametrize("given", [9.99, 7200.5])
def test_a_heartbeat_outside_what_is_allowed_is_refused(given):
    _, problem = domain.device_heartbeat(given, 10, 7200.0)

    assert problem == "must be between 10 s and 7200 s"
