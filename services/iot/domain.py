"""The IoT intake's rules, pure and in memory: which readings are taken, when an alarm is raised
and when its condition clears, an alarm's life after that, silence, clock skew, false alarms,
and the replay window that makes a batch count once.

Each device kind has one condition (DOMAIN.md section 6): its reading leaves the device's normal
range. An alarm is raised when the condition starts and cleared when it ends, never again while
it lasts, so a device that reports "off" every second raises one alarm. Silence (nothing heard
for longer than the device's heartbeat) and a gateway's clock skew work the same way.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

from wuye.core.errors import FailedPrecondition
from wuye.iot import _readings


class DeviceKind(StrEnum):
    HYDRANT_PRESSURE = "HYDRANT_PRESSURE"
    FIRE_PUMP = "FIRE_PUMP"
    SPRINKLER_VALVE = "SPRINKLER_VALVE"
    FIRE_FACILITY = "FIRE_FACILITY"
    SMOKE_DETECTOR = "SMOKE_DETECTOR"
    FIRE_DOOR = "FIRE_DOOR"
    FIRE_LANE = "FIRE_LANE"


class AlarmKind(StrEnum):
    LOW_PRESSURE = "LOW_PRESSURE"
    FACILITY_OFF = "FACILITY_OFF"
    FIRE = "FIRE"
    FIRE_DOOR_OPEN = "FIRE_DOOR_OPEN"
    FIRE_LANE_BLOCKED = "FIRE_LANE_BLOCKED"
    DEVICE_SILENT = "DEVICE_SILENT"
    CLOCK_SKEW = "CLOCK_SKEW"


class AlarmState(StrEnum):
    RAISED = "RAISED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    RESOLVED = "RESOLVED"


class AlarmAction(StrEnum):
    ACKNOWLEDGE = "ACKNOWLEDGE"  # the duty desk is handling it
    RESOLVE = "RESOLVE"  # by a person: handled, or a false alarm
    CLEAR = "CLEAR"  # the condition ended by itself (auto-resolve)


class Resolution(StrEnum):
    HANDLED = "HANDLED"
    FALSE_ALARM = "FALSE_ALARM"
    CLEARED = "CLEARED"


# An alarm's life: the state each action takes it to. An action not listed for a state is
# refused; one that leaves the state as it is (acknowledging twice) changes nothing.
ALARM_TRANSITIONS: dict[tuple[AlarmState, AlarmAction], AlarmState] = {
    (AlarmState.RAISED, AlarmAction.ACKNOWLEDGE): AlarmState.ACKNOWLEDGED,
    (AlarmState.ACKNOWLEDGED, AlarmAction.ACKNOWLEDGE): AlarmState.ACKNOWLEDGED,
    (AlarmState.RAISED, AlarmAction.RESOLVE): AlarmState.RESOLVED,
    (AlarmState.ACKNOWLEDGED, AlarmAction.RESOLVE): AlarmState.RESOLVED,
    (AlarmState.RESOLVED, AlarmAction.RESOLVE): AlarmState.RESOLVED,
    (AlarmState.RAISED, AlarmAction.CLEAR): AlarmState.RESOLVED,
    (AlarmState.ACKNOWLEDGED, AlarmAction.CLEAR): AlarmState.RESOLVED,
}

# Why each refused action is refused, as an ErrorInfo reason.
_REFUSED_BECAUSE = {AlarmState.RESOLVED: "ALARM_RESOLVED"}


def alarm_transition(state: AlarmState, action: AlarmAction, alarm_id: str) -> AlarmState | None:
    """The state `action` takes an alarm in `state` to; None when it changes nothing (a repeat).
    Raises FailedPrecondition when the state forbids the action."""
    after = ALARM_TRANSITIONS.get((state, action))
    if after is None:
        raise FailedPrecondition(
            _REFUSED_BECAUSE.get(state, "ALARM_STATE_FORBIDS"),
            f"alarm {alarm_id} is {state.lower()}: it cannot take {action.lower()}",
            alarm_id=alarm_id,
        )
    return None if after == state else after


def city_day(moment: dt.datetime, zone: ZoneInfo) -> tuple[dt.date, dt.datetime, dt.datetime]:
    """The city's calendar day at `moment`, with when it starts and when the next one does (a
    day of the city is counted in its own time zone, not in UTC)."""
    day = moment.astimezone(zone).date()
    start = dt.datetime.combine(day, dt.time(), zone)
    return day, start, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)


def false_alarms_exceeded(false_alarms_that_day: int, limit: int) -> bool:
    """GB 50440: more than `limit` false alarms of one device in one day escalates, once: at the
    resolution that takes the day's count past the limit."""
    return false_alarms_that_day == limit + 1


# What each kind's values may be at all, (low, high); a reading outside is refused, not alarmed.
VALID_RANGES: dict[DeviceKind, tuple[float, float]] = {
    DeviceKind.HYDRANT_PRESSURE: (0.0, 10.0),  # MPa
    DeviceKind.FIRE_PUMP: (0.0, 1.0),
    DeviceKind.SPRINKLER_VALVE: (0.0, 1.0),
    DeviceKind.FIRE_FACILITY: (0.0, 1.0),
    DeviceKind.SMOKE_DETECTOR: (0.0, 1.0),
    DeviceKind.FIRE_DOOR: (0.0, 1.0),
    DeviceKind.FIRE_LANE: (0.0, 1.0),
}

# The normal range a device gets unless it is registered with its own: a reading outside raises
# the kind's alarm. Hydrants: 0.10 MPa is the least static pressure at the least favourable
# hydrant of GB 50974; a city sets its own (settings start from these).
DEFAULT_THRESHOLDS: dict[DeviceKind, tuple[float, float]] = {
    DeviceKind.HYDRANT_PRESSURE: (0.10, 10.0),
    DeviceKind.FIRE_PUMP: (1.0, 1.0),
    DeviceKind.SPRINKLER_VALVE: (1.0, 1.0),
    DeviceKind.FIRE_FACILITY: (1.0, 1.0),
    DeviceKind.SMOKE_DETECTOR: (0.0, 0.0),
    DeviceKind.FIRE_DOOR: (0.0, 0.0),
    DeviceKind.FIRE_LANE: (0.0, 0.0),
}

# The condition each kind of device reports.
ALARM_OF: dict[DeviceKind, AlarmKind] = {
    DeviceKind.HYDRANT_PRESSURE: AlarmKind.LOW_PRESSURE,
    DeviceKind.FIRE_PUMP: AlarmKind.FACILITY_OFF,
    DeviceKind.SPRINKLER_VALVE: AlarmKind.FACILITY_OFF,
    DeviceKind.FIRE_FACILITY: AlarmKind.FACILITY_OFF,
    DeviceKind.SMOKE_DETECTOR: AlarmKind.FIRE,
    DeviceKind.FIRE_DOOR: AlarmKind.FIRE_DOOR_OPEN,
    DeviceKind.FIRE_LANE: AlarmKind.FIRE_LANE_BLOCKED,
}


class Rejection(StrEnum):
    UNKNOWN_DEVICE = "UNKNOWN_DEVICE"
    VALUE_NOT_FINITE = "VALUE_NOT_FINITE"
    VALUE_OUT_OF_RANGE = "VALUE_OUT_OF_RANGE"
    OBSERVED_IN_FUTURE = "OBSERVED_IN_FUTURE"


@dataclass(slots=True, eq=False)
class DeviceState:
    """A device as the instance owning its gateway knows it: registration and latest state."""

    device_id: str
    gateway_id: str
    district: str
    project_id: str
    kind: DeviceKind
    low: float  # normal range
    high: float
    valid_low: float  # what a reading may be at all
    valid_high: float
    heartbeat_seconds: float
    registered_at: float  # Unix seconds
    location: str = ""
    last_value: float | None = None
    last_observed_ns: int = 0
    last_seen: float = 0.0  # Unix seconds of the centre's clock; 0: never heard
    abnormal: bool = False
    silent: bool = False
    # A condition changed since the last snapshot (readings alone show in last_seen).
    dirty: bool = False

    @property
    def alarm_kind(self) -> AlarmKind:
        return ALARM_OF[self.kind]


_readings.bind(DeviceState)  # the compiled loop reads and writes these slots directly


@dataclass(slots=True, eq=False)
class GatewayState:
    gateway_id: str
    district: str
    project_id: str
    key_version: int
    window: ReplayWindow
    skewed: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """A condition started (`raised`) or ended; the intake turns it into an alarm or clears one."""

    kind: AlarmKind
    raised: bool
    gateway_id: str
    district: str
    project_id: str
    device_id: str  # empty for the gateway's own conditions
    value: float | None
    observed_ns: int


@dataclass(frozen=True, slots=True)
class Refused:
    index: int
    device_id: str
    reason: Rejection
    description: str


def threshold_problems(
    kind: str, low: float, high: float, valid_low: float, valid_high: float
) -> list[tuple[str, str]]:
    """Why [low, high] cannot be a device's normal range, as (field, why): each bound is a
    value the kind can read, and low is not above high."""
    problems = [
        (f"thresholds.{name}", f"must lie between {valid_low:g} and {valid_high:g} for a {kind}")
        for name, bound in (("low", low), ("high", high))
        if not (math.isfinite(bound) and valid_low <= bound <= valid_high)
    ]
    if not low <= high:
        problems.append(("thresholds", "low must not exceed high"))
    return problems


def device_range(
    kind: str,
    low: float | None,
    high: float | None,
    normal: tuple[float, float],
    valid: tuple[float, float],
) -> tuple[float, float, list[tuple[str, str]]]:
    """A new device's normal range: the bounds given, the kind's `normal` range for those not
    given; with why it cannot be (threshold_problems)."""
    low = normal[0] if low is None else low
    high = normal[1] if high is None else high
    return low, high, threshold_problems(kind, low, high, *valid)


def device_heartbeat(seconds: float | None, least: float, most: float) -> tuple[float, str | None]:
    """A new device's heartbeat: the one given, else the longest allowed; with why it cannot be.
    GB 50440 patrols devices at least every 2 h (`most`); too short floods the intake."""
    if seconds is None:
        return most, None
    if least <= seconds <= most:
        return seconds, None
    return seconds, f"must be between {least:g} s and {most:g} s"


# Replay windows (epochs and sequences) are stored as signed 64-bit numbers.
MAX_SEQUENCE = (1 << 63) - 1


def batch_problems(
    sequence: int, epoch: int, has_send_time: bool, readings: int, max_readings: int
) -> list[tuple[str, str]]:
    """What makes a whole batch unacceptable, as (field, why)."""
    problems = []
    if not 1 <= sequence <= MAX_SEQUENCE:
        problems.append(("sequence", "must be between 1 and 2^63 - 1"))
    if epoch > MAX_SEQUENCE:
        problems.append(("epoch", "must be at most 2^63 - 1"))
    if not has_send_time:
        problems.append(("send_time", "is required"))
    if readings > max_readings:
        problems.append(("readings", f"at most {max_readings} per batch"))
    return problems


def _change(device: DeviceState, raised: bool, kind: AlarmKind, value: float | None, at: int):
    return Change(
        kind,
        raised,
        device.gateway_id,
        device.district,
        device.project_id,
        device.device_id,
        value,
        at,
    )


def take_readings(
    devices: dict[str, DeviceState],
    gateway_id: str,
    batch: bytes,
    received_at: float,
    latest_ns: int,
    changes: list[Change],
) -> tuple[int, list[Refused]]:
    """Applies one batch's readings (a ReadingBatch's bytes, already parsed once by protobuf,
    which checks them) to the devices' state; appends the conditions that started or ended to
    `changes`.

    Returns how many readings were taken and the refused ones. A reading is refused when its
    device is not behind this gateway, it was observed after `latest_ns`, or its value is one
    the device cannot read (not a number, or outside its kind's valid range). A taken reading
    marks its device heard (ending a silence); unless it is older than the device's latest, it
    becomes the device's state, and leaving or re-entering the normal range starts or ends the
    device's condition.

    The loop over the readings is compiled (_readings.c); it calls back here for whatever is
    not a normal reading.
    """

    def silence_ended(device: DeviceState, observed_ns: int) -> None:
        device.silent = False
        device.dirty = True
        changes.append(_change(device, False, AlarmKind.DEVICE_SILENT, None, observed_ns))

    def condition_changed(device: DeviceState, raised: bool, value: float, observed_ns: int):
        device.abnormal = raised
        device.dirty = True
        changes.append(_change(device, raised, device.alarm_kind, value, observed_ns))

    taken, refusals = _readings.take(
        devices, gateway_id, batch, received_at, latest_ns, silence_ended, condition_changed
    )
    return taken, [_refused(devices, *refusal) for refusal in refusals]


def _refused(devices: dict[str, DeviceState], index: int, device_id: str, reason: int, _value):
    """A refusal of the compiled loop, in words."""
    if reason == _readings.UNKNOWN_DEVICE:
        return Refused(
            index, device_id[:64], Rejection.UNKNOWN_DEVICE, "no such device behind this gateway"
        )
    if reason == _readings.OBSERVED_IN_FUTURE:
        return Refused(
            index,
            device_id,
            Rejection.OBSERVED_IN_FUTURE,
            "observed later than the centre's clock allows",
        )
    if reason == _readings.VALUE_NOT_FINITE:
        return Refused(
            index, device_id, Rejection.VALUE_NOT_FINITE, "value must be a finite number"
        )
    device = devices[device_id]
    return Refused(
        index,
        device_id,
        Rejection.VALUE_OUT_OF_RANGE,
        f"a {device.kind} reads between {device.valid_low:g} and {device.valid_high:g}",
    )


def find_silent(devices, now: float, changes: list[Change]) -> int:
    """Marks devices not heard for longer than their heartbeat (counted from registration for a
    device never heard) as silent; returns how many are silent now."""
    silent = 0
    for device in devices:
        if device.silent:
            silent += 1
            continue
        heard = device.last_seen or device.registered_at
        if now - heard > device.heartbeat_seconds:
            device.silent = True
            device.dirty = True
            silent += 1
            due_ns = int((heard + device.heartbeat_seconds) * 1e9)
            changes.append(_change(device, True, AlarmKind.DEVICE_SILENT, None, due_ns))
    return silent


def check_clock(
    gateway: GatewayState, sent_ns: int, received_ns: int, max_skew_ns: int
) -> Change | None:
    """The gateway's clock skew condition, judged by the batch's send time."""
    skewed = abs(received_ns - sent_ns) > max_skew_ns
    if skewed is gateway.skewed:
        return None
    gateway.skewed = skewed
    return Change(
        AlarmKind.CLOCK_SKEW,
        skewed,
        gateway.gateway_id,
        gateway.district,
        gateway.project_id,
        "",
        None,
        received_ns,
    )


class ReplayWindow:
    """Which of a gateway's batch sequences of one boot epoch were processed: the highest, and a
    bitmap of the `size` below it (RFC 4303's anti-replay window). A sequence older than the
    window cannot be told apart from one processed: `window_for` refuses it."""

    __slots__ = ("bits", "epoch", "highest", "size")

    def __init__(self, size: int, epoch: int = 0, highest: int = 0, bits: int = 0) -> None:
        self.size = size
        self.epoch = epoch
        self.highest = highest
        self.bits = bits

    def seen(self, sequence: int) -> bool:
        """Whether `sequence`, not older than the window, was marked."""
        behind = self.highest - sequence
        return 0 <= behind < self.size and bool(self.bits >> behind & 1)

    def mark(self, sequence: int) -> None:
        if sequence > self.highest:
            shift = sequence - self.highest
            # A jump past the window forgets it (shifting by a jump of 2^63 would not end).
            kept = (self.bits << shift) & ((1 << self.size) - 1) if shift < self.size else 0
            self.bits = kept | 1
            self.highest = sequence
        elif self.highest - sequence < self.size:  # one older than the window is not kept
            self.bits |= 1 << (self.highest - sequence)


def window_for(
    gateway: GatewayState, epoch: int, sequence: int, max_step: int
) -> ReplayWindow | None:
    """The replay window batch (epoch, sequence) of `gateway` counts in, or None when the batch
    was processed already (a duplicate, answered as such).

    A newer epoch (the gateway restarted) replaces the gateway's window with an empty one of
    that epoch. Refused with FailedPrecondition, so that the gateway resynchronises rather than
    believe its batch taken: an epoch older than the gateway's (STALE_EPOCH), a sequence more
    than `max_step` beyond the highest of the epoch (SEQUENCE_TOO_FAR_AHEAD: one such jump
    would make every later sequence too old), and one older than the window
    (SEQUENCE_TOO_OLD).
    """
    window = gateway.window
    gateway_id = gateway.gateway_id
    if epoch < window.epoch:
        raise FailedPrecondition(
            "STALE_EPOCH",
            f"epoch {epoch} is older than the gateway's epoch {window.epoch}: send the batches "
            "of the current epoch",
            gateway_id=gateway_id,
            epoch=str(window.epoch),
        )
    fresh = epoch > window.epoch
    highest = 0 if fresh else window.highest
    if sequence - highest > max_step:
        raise FailedPrecondition(
            "SEQUENCE_TOO_FAR_AHEAD",
            f"sequence {sequence} is more than {max_step} beyond the highest taken ({highest}) "
            f"in epoch {epoch}",
            gateway_id=gateway_id,
            highest=str(highest),
        )
    if fresh:
        window = gateway.window = ReplayWindow(window.size, epoch)
        return window
    if highest - sequence >= window.size:
        raise FailedPrecondition(
            "SEQUENCE_TOO_OLD",
            f"sequence {sequence} is older than the {window.size} below the highest taken "
            f"({highest}) in epoch {epoch}: start a new epoch",
            gateway_id=gateway_id,
            highest=str(highest),
        )
    return None if window.seen(sequence) else window
