"""The IoT intake over a real socket, PostgreSQL and Kafka (Tansu): gateways and devices
registered for projects the registry announced, signed batches by unary call and by stream,
readings refused one by one while the rest are taken, a batch counted once even when resent or
after a restart, batches held back while Kafka is away, and batches refused whole without a
trace."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import threading
import time

import grpc
import pytest
from grpc import aio
from prometheus_client import REGISTRY
from test_iot_support import (
    CREDIT_CODE,
    DEVICE_TOPIC,
    DONGSHENG,
    FACILITY,
    KANGBASHI,
    READING_TOPIC,
    Gateway,
    iot_servers,
    now_ns,
    project_registered,
    request_id,
)

from wuye.core.auth import Role
from wuye.core.kafka import ensure_topics
from wuye.iot import metrics
from wuye.iot.gateway import (
    RESYNCHRONISE,
    AsyncGatewayStream,
    GatewayStream,
    StreamBroken,
    StreamTally,
    open_stream,
    refusal_reason,
)
from wuye.iot.service import readings_retention_seconds
from wuye.iot.settings import IotSettings
from wuye.iot.v1 import events_pb2 as ev
from wuye.iot.v1 import intake_service_pb2 as pb

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT
FAILED = grpc.StatusCode.FAILED_PRECONDITION
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
HYDRANT = pb.DEVICE_KIND_HYDRANT_PRESSURE


@pytest.fixture
def start_iot(make_settings):
    with iot_servers(make_settings) as start:
        yield start


@pytest.fixture
def iot(start_iot):
    return start_iot()


def ce_ids(records) -> list[str]:
    return [r.headers["ce_id"] for r in records]


def ce_id(gateway: Gateway, sequence: int, epoch: int = 0) -> str:
    """The id of a batch's record on the readings topic."""
    return f"{gateway.id}:{epoch}:{sequence}"


# ---------------------------------------------------------------- gateways and devices


def test_a_gateway_is_registered_only_for_a_project_the_registry_announced(iot):
    project_id = f"{DONGSHENG}-Pnotyetknown"
    request = pb.RegisterGatewayRequest(request_id=request_id(), project_id=project_id, name="1号")

    unknown = iot.admin.fails("RegisterGateway", request)
    iot.deliver(project_registered(DONGSHENG, project_id))
    first = iot.admin.RegisterGateway(request)
    retried = iot.admin.RegisterGateway(request)

    assert unknown.code == FAILED
    assert unknown.reason == "PROJECT_UNKNOWN"
    assert project_id in unknown.message
    gateway = first.gateway
    assert gateway.id.startswith(f"{DONGSHENG}-G")
    assert (gateway.project_id, gateway.district_code, gateway.name) == (
        project_id,
        DONGSHENG,
        "1号",
    )
    assert gateway.mqtt_topic == f"wuye/{DONGSHENG}/{gateway.id}/readings"
    assert len(first.secret) == 32
    assert retried == first  # the same gateway and the same secret
    assert iot.count("gateways") == 1
    assert iot.admin.GetGateway(pb.GetGatewayRequest(gateway_id=gateway.id)) == gateway


def test_a_device_takes_the_kinds_default_thresholds_unless_given_its_own(iot):
    gateway = iot.gateway()

    hydrant = iot.device(gateway, HYDRANT)
    own = iot.device(gateway, HYDRANT, thresholds=pb.Thresholds(low=0.25))
    silent_after = iot.device(gateway, FACILITY, heartbeat_interval={"seconds": 600})

    assert (hydrant.thresholds.low, hydrant.thresholds.high) == (0.10, 10.0)
    assert hydrant.heartbeat_interval.seconds == 7200
    assert (own.thresholds.low, own.thresholds.high) == (0.25, 10.0)
    assert silent_after.heartbeat_interval.seconds == 600
    assert not hydrant.HasField("last_value") and not hydrant.silent
    listed = iot.admin.ListDevices(pb.ListDevicesRequest(district_code=DONGSHENG))
    assert sorted(d.id for d in listed.devices) == sorted([hydrant.id, own.id, silent_after.id])


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": 0}, "kind"),
        ({"kind": 99}, "kind"),
        ({"kind": HYDRANT, "thresholds": pb.Thresholds(low=11.0)}, "thresholds.low"),
        ({"kind": HYDRANT, "thresholds": pb.Thresholds(low=math.nan)}, "thresholds.low"),
        ({"kind": HYDRANT, "thresholds": pb.Thresholds(low=2.0, high=1.0)}, "thresholds"),
        ({"kind": FACILITY, "heartbeat_interval": {"seconds": 1}}, "heartbeat_interval"),
        ({"kind": FACILITY, "heartbeat_interval": {"seconds": 7201}}, "heartbeat_interval"),
    ],
)
def test_an_invalid_device_is_refused_naming_the_field(iot, fields, field):
    gateway = iot.gateway()
    request = pb.RegisterDeviceRequest(
        request_id=request_id(), gateway_id=gateway.id, location="泵房", **fields
    )

    failure = iot.admin.fails("RegisterDevice", request)

    assert failure.code == INVALID
    assert field in failure.violations, failure.violations
    assert iot.count("devices") == 0


def test_only_authorities_register_and_only_in_their_districts(iot):
    project_id = iot.project()
    request = pb.RegisterGatewayRequest(request_id=request_id(), project_id=project_id, name="x")

    inspector = iot.client(Role.INSPECTOR, "inspector-1", [DONGSHENG]).fails(
        "RegisterGateway", request
    )
    elsewhere = iot.authority(KANGBASHI).fails("RegisterGateway", request)
    anonymous = iot.anonymous.fails("RegisterGateway", request)

    assert inspector.code == grpc.StatusCode.PERMISSION_DENIED
    assert elsewhere.code == grpc.StatusCode.PERMISSION_DENIED
    assert anonymous.code == UNAUTHENTICATED
    assert iot.authority(DONGSHENG).RegisterGateway(request).gateway.project_id == project_id


def test_a_rotated_secret_replaces_the_old_one_at_once(iot):
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY)
    old = gateway.secret

    rotated = iot.admin.RotateGatewaySecret(pb.RotateGatewaySecretRequest(gateway_id=gateway.id))
    with_old = iot.post_fails(gateway.signed([(device.id, 1.0)]))
    gateway.secret = rotated.secret
    with_new = iot.post(gateway.signed([(device.id, 1.0)]))

    assert rotated.secret != old and len(rotated.secret) == 32
    assert rotated.gateway.id == gateway.id
    assert with_old.code == UNAUTHENTICATED
    assert with_old.reason == "BAD_SIGNATURE"
    assert (with_new.sequence, with_new.accepted) == (2, 1)


# ---------------------------------------------------------------- readings


def test_a_batch_is_taken_but_for_the_readings_that_cannot_be(iot, read_topic):
    gateway = iot.gateway()
    hydrant = iot.device(gateway, HYDRANT)
    other = iot.gateway()
    theirs = iot.device(other, HYDRANT)
    at = now_ns()
    batch = gateway.batch(
        [
            (hydrant.id, 0.35, at),
            (f"{DONGSHENG}-Dnosuchdevice", 0.3, at),
            (theirs.id, 0.3, at),
            (hydrant.id, math.nan, at),
            (hydrant.id, 12.5, at),
            (hydrant.id, 0.3, at + 3600 * 10**9),
            (hydrant.id, 0.4, at + 1),
        ]
    )

    result = iot.post(gateway.sign(batch))

    assert (result.sequence, result.accepted, result.duplicate) == (1, 2, False)
    assert [(r.index, r.device_id, r.reason) for r in result.rejected] == [
        (1, f"{DONGSHENG}-Dnosuchdevice", "UNKNOWN_DEVICE"),
        (2, theirs.id, "UNKNOWN_DEVICE"),
        (3, hydrant.id, "VALUE_NOT_FINITE"),
        (4, hydrant.id, "VALUE_OUT_OF_RANGE"),
        (5, hydrant.id, "OBSERVED_IN_FUTURE"),
    ]
    assert all(r.description for r in result.rejected)
    [record] = read_topic(READING_TOPIC, 1, key=gateway.id.encode())
    stored = pb.ReadingBatch.FromString(record.value)
    assert [(r.device_id, r.value) for r in stored.readings] == [
        (hydrant.id, 0.35),
        (hydrant.id, 0.4),
    ]
    assert (stored.gateway_id, stored.sequence) == (gateway.id, 1)
    assert record.headers["ce_id"] == ce_id(gateway, 1)
    assert record.headers["ce_type"] == "wuye.iot.v1.ReadingBatch"
    assert record.headers["ce_district"] == DONGSHENG
    device = iot.get_device(hydrant.id)
    assert device.last_value == 0.4
    assert device.last_observe_time.ToNanoseconds() == at + 1
    assert device.HasField("last_seen_time") and not device.silent
    assert iot.get_device(theirs.id).HasField("last_value") is False


def test_a_batch_whose_readings_are_all_refused_is_acknowledged_and_not_produced(iot, read_topic):
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY)

    refused = iot.post(gateway.signed([(device.id, 7.0)]))
    taken = iot.post(gateway.signed([(device.id, 1.0)]))

    assert (refused.accepted, len(refused.rejected)) == (0, 1)
    assert taken.accepted == 1
    assert ce_ids(read_topic(READING_TOPIC, 1, key=gateway.id.encode())) == [ce_id(gateway, 2)]


def test_the_same_batch_again_is_a_duplicate_and_on_kafka_once(iot, read_topic):
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY)
    first = gateway.signed([(device.id, 1.0)])

    original = iot.post(first)
    again = iot.post(first)
    resigned = iot.post(gateway.sign(gateway.batch([(device.id, 0.0)], sequence=1)))
    after = iot.post(gateway.signed([(device.id, 1.0)]))

    assert (original.sequence, original.duplicate, original.accepted) == (1, False, 1)
    assert (again.sequence, again.duplicate, again.accepted) == (1, True, 0)
    assert resigned.duplicate  # another batch under a number already taken changes nothing
    assert not after.duplicate
    # Records of one gateway are in order: a second record of batch 1 would come before batch 2's.
    records = read_topic(READING_TOPIC, 2, key=gateway.id.encode())
    assert ce_ids(records) == [ce_id(gateway, 1), ce_id(gateway, 2)]
    assert iot.get_device(device.id).last_value == 1.0
    assert iot.alarms() == []


def test_a_stream_acknowledges_every_batch(iot, read_topic):
    gateway = iot.gateway()
    devices = [iot.device(gateway, FACILITY).id for _ in range(3)]
    batches = [gateway.signed([(d, 1.0) for d in devices]) for _ in range(200)]

    results = iot.stream(batches)

    assert sorted(r.sequence for r in results) == list(range(1, 201))
    assert all(r.accepted == 3 and not r.duplicate for r in results)
    records = read_topic(READING_TOPIC, 200, key=gateway.id.encode())
    assert sorted(ce_ids(records), key=lambda i: int(i.split(":")[2])) == [
        ce_id(gateway, n) for n in range(1, 201)
    ]
    assert iot.replay_highest(gateway.id) == 200


def writer_asleep() -> bool:
    """Whether the intake's writer is waiting for work (in its event's wait)."""
    [writer] = [t for t in threading.enumerate() if t.name == "iot-writer"]
    frame = sys._current_frames().get(writer.ident)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names[:1] == ["wait"] and "_wait_for_work" in names


def test_a_batch_sent_while_the_writer_sleeps_wakes_it_and_is_acknowledged(
    start_iot, read_topic, wait_until
):
    """With its timers an hour away, nothing but the batch itself can wake the writer: a
    batch it slept through would not be acknowledged within the call's deadline."""
    iot = start_iot(iot_silence_check_seconds=3600, iot_escalation_check_seconds=3600)
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY).id

    first = iot.post(gateway.signed([(device, 1.0)]))
    wait_until(writer_asleep, what="the writer waiting for work")
    switched_off = iot.post(gateway.signed([(device, 0.0)]))
    wait_until(writer_asleep, what="the writer waiting again")
    switched_on = iot.post(gateway.signed([(device, 1.0)]))

    assert [(r.sequence, r.accepted) for r in (first, switched_off, switched_on)] == [
        (1, 1),
        (2, 1),
        (3, 1),
    ]
    records = read_topic(READING_TOPIC, 3, key=gateway.id.encode())
    assert ce_ids(records) == [ce_id(gateway, n) for n in (1, 2, 3)]
    assert iot.replay_highest(gateway.id) == 3
    # The alarm the off reading raised, committed by the round the batch woke, then resolved.
    [alarm] = iot.alarms()
    assert (alarm.device_id, alarm.state) == (device, pb.ALARM_STATE_RESOLVED)


def test_batches_resent_on_a_stream_are_duplicates(iot):
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY)
    batches = [gateway.signed([(device.id, 1.0)]) for _ in range(10)]

    first = iot.stream(batches)
    resent = iot.stream(batches[5:])

    assert [r.duplicate for r in first] == [False] * 10
    assert sorted(r.sequence for r in resent) == list(range(6, 11))
    assert all(r.duplicate for r in resent)


def test_an_asyncio_gateway_streams_and_resends_what_a_broken_stream_left(iot, read_topic):
    """AsyncGatewayStream over grpc.aio: batches acknowledged through the window; after its
    call is cut with batches in flight, reconnecting resends them and each is on Kafka once."""
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY)

    async def scenario() -> tuple[StreamTally, int]:
        async with aio.insecure_channel(f"127.0.0.1:{iot.port}") as channel:
            calls = []

            def open_call():
                calls.append(open_stream(channel)())
                return calls[-1]

            stream = AsyncGatewayStream(open_call, gateway.id, gateway.secret, window=8)
            await stream.connect()
            for _ in range(30):
                await stream.send([(device.id, 1.0, time.time_ns())], timeout=10)
            calls[0].cancel()  # the connection is lost with batches unacknowledged
            with contextlib.suppress(StreamBroken):
                while True:
                    await stream.send([(device.id, 1.0, time.time_ns())], timeout=10)
            assert stream.in_flight > 0  # at least the batch written just before the cut
            await stream.connect()
            for _ in range(10):
                await stream.send([(device.id, 1.0, time.time_ns())], timeout=10)
            assert await stream.wait_acked(10)
            await stream.close()
            return stream.tally, stream.epoch

    tally, epoch = asyncio.run(scenario())

    sent = iot.replay_highest(gateway.id)
    assert sent >= 40 and tally.reconnects == 1
    assert tally.batches_acked == sent
    assert tally.readings_accepted == sent - tally.duplicates
    records = read_topic(READING_TOPIC, sent, key=gateway.id.encode())
    assert sorted(ce_ids(records)) == sorted(ce_id(gateway, n, epoch) for n in range(1, sent + 1))


def test_a_sequence_far_ahead_of_one_in_flight_does_not_stop_acknowledgements(iot):
    """Batch 1 is on its way to Kafka when batch 100 (nothing to produce) is acknowledged: then
    batch 1 is marked 99 behind the highest, older than the replay window."""
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY)
    first = gateway.signed([(device.id, 1.0)], sequence=1)
    far = gateway.signed([(f"{DONGSHENG}-Dnosuchdevice", 1.0)], sequence=100)

    results = iot.stream([first, far], timeout=5)
    later = iot.post(gateway.signed([(device.id, 1.0)], sequence=101), timeout=5)

    assert sorted(r.sequence for r in results) == [1, 100]
    assert (later.sequence, later.accepted) == (101, 1)


def test_a_gateway_restarted_after_200_batches_is_taken_and_its_old_batches_refused(iot):
    """A gateway that sent 200 batches restarts and numbers from 1 again: its next reading that
    says "facility switched off" raises the alarm, committed before the batch is acknowledged;
    a batch replayed from before the restart is refused with a reason, not as a duplicate."""
    gateway = iot.gateway(iot.project(DONGSHENG, CREDIT_CODE))
    device = iot.device(gateway, FACILITY).id
    sent: list[bytes] = []

    def recording(requests):
        for raw in requests:
            sent.append(raw)
            yield raw

    opener = open_stream(iot.channel, timeout=30)
    first_boot = GatewayStream(lambda r: opener(recording(r)), gateway.id, gateway.secret)
    first_boot.connect()
    for _ in range(200):
        first_boot.send([(device, 1.0, now_ns())], timeout=10)
    assert first_boot.wait_acked(10)
    first_boot.close()
    assert iot.replay_window(gateway.id) == (first_boot.epoch, 200)

    restarted = GatewayStream(opener, gateway.id, gateway.secret)
    restarted.connect()
    assert restarted.send([(device, 0.0, now_ns())], timeout=10) == 1
    assert restarted.wait_acked(10)
    restarted.close()
    replayed = iot.post_fails(sent[149])

    assert restarted.epoch > first_boot.epoch
    assert (restarted.tally.duplicates, restarted.tally.readings_accepted) == (0, 1)
    [raised] = iot.events(ev.AlarmRaised)
    assert (raised.alarm.kind, raised.alarm.device_id) == (pb.ALARM_KIND_FACILITY_OFF, device)
    assert (replayed.code, replayed.reason) == (FAILED, "STALE_EPOCH")
    assert iot.replay_window(gateway.id) == (restarted.epoch, 1)
    assert iot.get_device(device).last_value == 0.0


def test_a_stream_refused_for_its_epoch_resynchronises_and_its_batch_is_taken(iot):
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY).id
    opener = open_stream(iot.channel, timeout=30)
    newer = GatewayStream(opener, gateway.id, gateway.secret, epoch=2_000)
    newer.connect()
    newer.send([(device, 1.0, now_ns())], timeout=10)
    assert newer.wait_acked(10)
    newer.close()
    stale = GatewayStream(opener, gateway.id, gateway.secret, epoch=1_000)
    stale.connect()
    stale.send([(device, 0.0, now_ns())], timeout=10)

    assert not stale.wait_acked(10)  # the stream ended, the batch unacknowledged
    reason = refusal_reason(stale.error)
    stale.restart()
    stale.connect()
    assert stale.wait_acked(10)
    stale.close()

    assert reason == "STALE_EPOCH" and reason in RESYNCHRONISE
    assert stale.epoch > 2_000
    assert iot.replay_window(gateway.id) == (stale.epoch, 1)
    [raised] = iot.events(ev.AlarmRaised)
    assert raised.alarm.device_id == device


def test_a_sequence_too_old_for_the_window_is_refused_so_the_gateway_resynchronises(iot):
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY).id
    assert iot.post(gateway.signed([(device, 1.0)], sequence=100)).accepted == 1

    too_old = iot.post_fails(gateway.signed([(device, 0.0)], sequence=36))  # 64 behind
    inside = iot.post(gateway.signed([(device, 1.0)], sequence=37))

    assert (too_old.code, too_old.reason) == (FAILED, "SEQUENCE_TOO_OLD")
    assert (inside.duplicate, inside.accepted) == (False, 1)
    assert iot.alarms() == []


def test_a_sequence_further_ahead_than_allowed_is_refused_and_the_gateway_goes_on(start_iot):
    """One batch numbered near 2^63 would leave its gateway no sequence to use after it."""
    iot = start_iot(iot_max_sequence_step=1000)
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY).id
    assert iot.post(gateway.signed([(device, 1.0)])).sequence == 1

    highest = iot.post_fails(gateway.signed([(device, 0.0)], sequence=2**63 - 1))
    beyond = iot.post_fails(gateway.signed([(device, 0.0)], sequence=1002))
    at_the_step = iot.post(gateway.signed([(device, 1.0)], sequence=1001))

    for refused in (highest, beyond):
        assert (refused.code, refused.reason) == (FAILED, "SEQUENCE_TOO_FAR_AHEAD")
    assert (at_the_step.sequence, at_the_step.accepted) == (1001, 1)
    assert iot.replay_highest(gateway.id) == 1001
    assert iot.alarms() == []


def test_a_rotated_secret_starts_the_window_afresh_and_is_an_event(iot):
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY).id
    gateway.restart(epoch=5)
    for _ in range(100):
        gateway.signed([(device, 1.0)])  # numbered, never sent: the gateway jumped ahead
    assert iot.post(gateway.signed([(device, 1.0)])).sequence == 101

    rotated = iot.admin.RotateGatewaySecret(pb.RotateGatewaySecretRequest(gateway_id=gateway.id))
    gateway.secret = rotated.secret
    gateway.restart(epoch=0)
    first = iot.post(gateway.signed([(device, 1.0)]))

    assert (first.sequence, first.duplicate, first.accepted) == (1, False, 1)
    assert iot.replay_window(gateway.id) == (0, 1)
    [event] = iot.outbox_events(ev.GatewaySecretRotated, topic=DEVICE_TOPIC)
    assert (event.gateway.id, event.key_version, event.rotated_by) == (gateway.id, 2, "admin")
    assert rotated.secret not in event.SerializeToString()


def test_an_authority_resets_the_window_of_a_gateway_that_cannot_send_an_epoch(iot):
    """A gateway without epochs restarted and counts from 1 again: refused until an authority
    resets its window; the reset is an event, and older epochs stay refused."""
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY).id
    gateway.restart(epoch=3)
    assert iot.stream([gateway.signed([(device, 1.0)]) for _ in range(100)])
    gateway.restart(epoch=3)  # the same epoch again: it cannot tell
    restarted = gateway.signed([(device, 0.0)])
    request = pb.ResetGatewayWindowRequest(gateway_id=gateway.id, note="网关重启")

    before = iot.post_fails(restarted)
    inspector = iot.client(Role.INSPECTOR, "inspector-1", [DONGSHENG]).fails(
        "ResetGatewayWindow", request
    )
    elsewhere = iot.authority(KANGBASHI).fails("ResetGatewayWindow", request)
    reset = iot.authority(DONGSHENG).ResetGatewayWindow(request)
    after = iot.post(restarted)
    older = iot.post_fails(gateway.signed([(device, 1.0)], epoch=2))

    assert before.reason == "SEQUENCE_TOO_OLD"
    assert inspector.code == elsewhere.code == grpc.StatusCode.PERMISSION_DENIED
    assert (reset.gateway.id, reset.epoch) == (gateway.id, 3)
    assert (after.sequence, after.duplicate, after.accepted) == (1, False, 1)
    assert older.reason == "STALE_EPOCH"
    assert iot.replay_window(gateway.id) == (3, 1)
    [event] = iot.outbox_events(ev.GatewayWindowReset, topic=DEVICE_TOPIC)
    assert (event.epoch, event.highest_before, event.reset_by, event.note) == (
        3,
        100,
        f"authority-{DONGSHENG}",
        "网关重启",
    )
    missing = iot.admin.fails(
        "ResetGatewayWindow", pb.ResetGatewayWindowRequest(gateway_id=gateway.id)
    )
    assert missing.code == INVALID and "note" in missing.violations


def test_acknowledged_batches_and_the_epoch_stay_after_a_restart(start_iot):
    iot = start_iot()
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY)
    older_epoch = gateway.signed([(device.id, 1.0)])
    gateway.restart(epoch=7)
    batches = [gateway.signed([(device.id, 1.0)]) for _ in range(5)]
    out_of_order = gateway.signed([(device.id, 1.0)], sequence=9)
    assert iot.post(older_epoch).sequence == 1
    assert [r.sequence for r in iot.stream(batches)] == [1, 2, 3, 4, 5]
    assert iot.post(out_of_order).sequence == 9
    iot.close()

    restarted = start_iot()
    replayed = restarted.stream([*batches, out_of_order])
    gap = restarted.post(gateway.signed([(device.id, 1.0)], sequence=7))
    stale = restarted.post_fails(older_epoch)

    assert sorted(r.sequence for r in replayed) == [1, 2, 3, 4, 5, 9]
    assert all(r.duplicate and r.epoch == 7 for r in replayed)
    assert (gap.duplicate, gap.accepted, gap.epoch) == (False, 1, 7)
    assert stale.reason == "STALE_EPOCH"
    assert restarted.get_device(device.id).last_value == 1.0


def test_a_restarted_intake_recovers_device_state_from_its_last_snapshot(start_iot):
    """Written when the intake stops: the last reading and the open condition come back, so the
    same condition reported again raises no second alarm."""
    iot = start_iot(iot_snapshot_seconds=3600)
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY)
    assert iot.post(gateway.signed([(device.id, 0.0)])).accepted == 1
    iot.close()

    restarted = start_iot(iot_snapshot_seconds=3600)
    recovered = restarted.get_device(device.id)
    assert (recovered.HasField("last_value"), recovered.last_value) == (True, 0.0)
    assert restarted.post(gateway.signed([(device.id, 0.0)])).accepted == 1
    assert restarted.count("alarms") == 1


def batches_taken() -> float:
    """Batches of Dongsheng the intake has taken by gRPC (whether acknowledged yet or not)."""
    labels = {"district": DONGSHENG, "transport": "grpc", "outcome": "accepted"}
    return REGISTRY.get_sample_value("wuye_iot_batches_total", labels) or 0.0


def test_batches_wait_while_kafka_is_away_and_are_acknowledged_once_it_is_back(
    start_iot, private_broker, read_topic, wait_until
):
    """Kafka is away from the start: a Tansu restarted empty would forget the idempotent
    producer's id, which a real Kafka keeps across restarts."""
    private_broker.stop()
    iot = start_iot(kafka_bootstrap=private_broker.bootstrap)
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY)
    batches = [gateway.signed([(device.id, float(n % 2))]) for n in range(20)]
    results: list[pb.BatchResult] = []
    errors: list[grpc.RpcError] = []

    def send() -> None:
        try:
            for response in iot.open_stream(batches, timeout=60):
                results.extend(response.results)
        except grpc.RpcError as e:
            errors.append(e)

    taken_before = batches_taken()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    wait_until(lambda: batches_taken() - taken_before == 20)  # all 20 wait for Kafka
    unacknowledged = list(results)
    private_broker.start()
    ensure_topics(iot.settings, [READING_TOPIC], partitions=1)
    sender.join(45)

    assert unacknowledged == [], "acknowledged while Kafka was away"
    assert not sender.is_alive() and errors == [], errors
    assert sorted(r.sequence for r in results) == list(range(1, 21))
    stored = read_topic(
        READING_TOPIC, 20, bootstrap=private_broker.bootstrap, key=gateway.id.encode()
    )
    assert sorted(ce_ids(stored)) == sorted(ce_id(gateway, r.sequence) for r in results)
    assert iot.replay_highest(gateway.id) == 20


def test_a_broker_restarted_mid_stream_loses_no_acknowledged_batch(
    start_iot, private_broker, read_topic, wait_until
):
    """The broker goes away while a gateway streams and comes back having lost its state (as a
    restarted Tansu does): batches sent meanwhile fail back or wait, the gateway resends what was
    not acknowledged, and every batch acknowledged after the restart is on the new broker."""
    iot = start_iot(kafka_bootstrap=private_broker.bootstrap, iot_kafka_timeout_seconds=3)
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY)
    assert iot.post(gateway.signed([(device.id, 1.0)])).accepted == 1
    private_broker.stop()
    unacknowledged = {n: gateway.signed([(device.id, 1.0)]) for n in range(2, 12)}
    acknowledged: list[int] = []
    refusals: list[grpc.StatusCode] = []

    def gateway_loop() -> None:
        deadline = time.monotonic() + 60
        while unacknowledged and time.monotonic() < deadline:
            try:
                for response in iot.open_stream(list(unacknowledged.values()), timeout=20):
                    for result in response.results:
                        unacknowledged.pop(result.sequence, None)
                        acknowledged.append(result.sequence)
            except grpc.RpcError as e:  # the batches failed back after the Kafka timeout
                refusals.append(e.code())

    taken_before = batches_taken()
    sender = threading.Thread(target=gateway_loop, daemon=True)
    sender.start()
    wait_until(lambda: batches_taken() - taken_before >= 10)  # batches 2-11 wait for Kafka
    assert acknowledged == [], "acknowledged while Kafka was away"
    private_broker.start()
    ensure_topics(iot.settings, [READING_TOPIC], partitions=1)
    sender.join(70)

    assert unacknowledged == {}, refusals
    assert set(refusals) <= {grpc.StatusCode.UNAVAILABLE}
    assert sorted(set(acknowledged)) == list(range(2, 12))
    stored = read_topic(
        READING_TOPIC, 10, bootstrap=private_broker.bootstrap, key=gateway.id.encode()
    )
    assert {ce_id(gateway, n) for n in range(2, 12)} <= set(ce_ids(stored))


# ---------------------------------------------------------------- the readings topic

YEAR_AND_A_DAY = 366 * 24 * 3600
RETENTION_GAUGE = "wuye_iot_readings_retention_seconds"


def test_an_intake_that_comes_first_creates_the_readings_topic_keeping_a_year(
    start_iot, private_broker, wait_until
):
    metrics.READINGS_RETENTION.set(math.nan)  # what intakes of earlier tests reported
    iot = start_iot(kafka_bootstrap=private_broker.bootstrap)

    wait_until(lambda: REGISTRY.get_sample_value(RETENTION_GAUGE) == YEAR_AND_A_DAY)

    assert readings_retention_seconds(iot.settings) == YEAR_AND_A_DAY


def test_a_readings_topic_that_keeps_less_than_a_year_is_reported_at_start(
    start_iot, private_broker, wait_until, caplog
):
    """Created by someone else first, with a week: the intake starts anyway, and says so."""
    week = 7 * 24 * 3600
    iot_settings = IotSettings(kafka_bootstrap=private_broker.bootstrap, iot_gateway_key="k")
    ensure_topics(iot_settings, [READING_TOPIC], 1, {READING_TOPIC: {"retention.ms": "604800000"}})

    with caplog.at_level(logging.WARNING, logger="wuye.iot"):
        iot = start_iot(kafka_bootstrap=private_broker.bootstrap)
        wait_until(lambda: REGISTRY.get_sample_value("wuye_iot_readings_retention_seconds") == week)

    [warning] = [r for r in caplog.records if "keeps records for less" in r.getMessage()]
    assert warning.fields == {
        "topic": READING_TOPIC,
        "retention_seconds": week,
        "required_seconds": YEAR_AND_A_DAY,
    }
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY).id
    assert iot.post(gateway.signed([(device, 1.0)])).accepted == 1


# ---------------------------------------------------------------- batches refused whole


def refused_whole(iot, gateway: Gateway, raw: bytes, code: grpc.StatusCode):
    """Posts `raw`, expecting `code`; checks nothing was stored or produced; returns the
    failure."""
    outbox_before, alarms_before = iot.count("outbox"), iot.count("alarms")

    failure = iot.post_fails(raw)

    assert failure.code == code, failure
    assert (iot.count("outbox"), iot.count("alarms")) == (outbox_before, alarms_before)
    assert iot.replay_highest(gateway.id) == 0
    return failure


@pytest.fixture
def gateway_with_device(iot) -> tuple[Gateway, str]:
    gateway = iot.gateway()
    return gateway, iot.device(gateway, FACILITY).id


def test_garbage_is_not_a_batch(iot, gateway_with_device):
    gateway, _ = gateway_with_device

    failure = refused_whole(iot, gateway, b"\xff\xfe garbage", INVALID)

    assert "batch" in failure.violations


def test_a_forged_or_missing_signature_is_unauthenticated(iot, gateway_with_device, read_topic):
    gateway, device = gateway_with_device
    batch = gateway.batch([(device, 0.0)], sequence=1)

    forged = refused_whole(iot, gateway, gateway.sign(batch, secret=b"x" * 32), UNAUTHENTICATED)
    tampered = bytearray(gateway.sign(batch))
    tampered[-40] ^= 1
    changed = refused_whole(iot, gateway, bytes(tampered), UNAUTHENTICATED)
    unsigned = refused_whole(iot, gateway, batch.SerializeToString(), UNAUTHENTICATED)

    assert (forged.reason, changed.reason, unsigned.reason) == (
        "BAD_SIGNATURE",
        "BAD_SIGNATURE",
        "SIGNATURE_MISSING",
    )
    assert iot.get_device(device).HasField("last_value") is False
    # Nothing of the refused batches went to Kafka: the first record is the next batch's.
    assert iot.post(gateway.signed([(device, 1.0)], sequence=1)).accepted == 1
    assert ce_ids(read_topic(READING_TOPIC, 1, key=gateway.id.encode())) == [ce_id(gateway, 1)]


def test_an_unknown_gateway_is_not_found(iot, gateway_with_device):
    gateway, device = gateway_with_device
    stranger = Gateway(f"{DONGSHENG}-G000000000000", DONGSHENG, gateway.secret, "")

    failure = refused_whole(iot, gateway, stranger.signed([(device, 0.0)]), NOT_FOUND)

    assert failure.reason == "GATEWAY_NOT_FOUND"


def test_a_gateway_id_that_is_no_gateway_id_is_invalid(iot, gateway_with_device):
    gateway, device = gateway_with_device
    nobody = Gateway("not-a-gateway", DONGSHENG, gateway.secret, "")

    failure = refused_whole(iot, gateway, nobody.signed([(device, 0.0)]), INVALID)

    assert "gateway_id" in failure.violations


def test_a_gateway_of_a_district_the_instance_does_not_serve_is_sent_away(start_iot):
    everywhere = start_iot()
    gateway = everywhere.gateway(district=DONGSHENG)
    device = everywhere.device(gateway, FACILITY)
    kangbashi = start_iot(districts=(KANGBASHI,))

    failure = kangbashi.post_fails(gateway.signed([(device.id, 0.0)]))

    assert failure.code == FAILED
    assert failure.reason == "DISTRICT_NOT_SERVED"
    assert DONGSHENG in failure.message
    assert everywhere.replay_highest(gateway.id) == 0
    assert everywhere.count("alarms") == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: setattr(b, "sequence", 0), "sequence"),
        (lambda b: setattr(b, "sequence", 2**63), "sequence"),
        (lambda b: b.ClearField("send_time"), "send_time"),
        (lambda b: b.readings.extend([b.readings[0]] * 5), "readings"),
    ],
    ids=["sequence-0", "sequence-2^63", "no-send-time", "too-many-readings"],
)
def test_a_batch_out_of_bounds_is_invalid(start_iot, change, field):
    iot = start_iot(iot_max_batch_readings=5)
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY).id
    batch = gateway.batch([(device, 0.0)], sequence=1)
    change(batch)

    failure = refused_whole(iot, gateway, gateway.sign(batch), INVALID)

    assert field in failure.violations, failure.violations
    assert iot.get_device(device).HasField("last_value") is False


def test_a_bad_batch_ends_the_stream_after_the_results_of_those_before_it(iot, read_topic):
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY).id
    good = [gateway.signed([(device, 1.0)]) for _ in range(3)]
    forged = gateway.sign(gateway.batch([(device, 0.0)]), secret=b"y" * 32)
    never = gateway.signed([(device, 0.0)])

    results, failure = iot.stream_fails([*good, forged, never])

    assert [r.sequence for r in results] == [1, 2, 3]
    assert failure.code == UNAUTHENTICATED
    assert iot.replay_highest(gateway.id) == 3
    assert iot.get_device(device).last_value == 1.0
    assert iot.alarms() == []
    records = read_topic(READING_TOPIC, 3, key=gateway.id.encode())
    assert ce_ids(records) == [ce_id(gateway, n) for n in (1, 2, 3)]
