"""Alarms of the IoT intake over a real socket, PostgreSQL and Kafka (Tansu): raised once when a
condition starts, with the project and the enterprise serving it; resolved when it clears (where
configured); acknowledged and resolved by the duty desk; escalated when nobody acknowledged
them in time; silence and clock skew; the duty desk's watch and list; the events on Kafka."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY
from sample_data import request_id
from test_iot_support import (
    ALARM_TOPIC,
    CREDIT_CODE,
    DEVICE_TOPIC,
    DONGSHENG,
    FACILITY,
    KANGBASHI,
    iot_servers,
    now_ns,
    project_registered,
)

from wuye.core.auth import Role
from wuye.core.service import build_relay
from wuye.credit.settings import CreditSettings
from wuye.inspections.settings import InspectionsSettings
from wuye.iot.service import SPEC
from wuye.iot.v1 import events_pb2 as ev
from wuye.iot.v1 import intake_service_pb2 as pb
from wuye.registry.v1 import events_pb2 as registry_events

pytestmark = pytest.mark.integration

RAISED, ACKED, RESOLVED = (
    pb.ALARM_STATE_RAISED,
    pb.ALARM_STATE_ACKNOWLEDGED,
    pb.ALARM_STATE_RESOLVED,
)
HANDLED, FALSE_ALARM = pb.ALARM_RESOLUTION_HANDLED, pb.ALARM_RESOLUTION_FALSE_ALARM


@pytest.fixture
def start_iot(make_settings):
    with iot_servers(make_settings) as start:
        yield start


@pytest.fixture
def iot(start_iot):
    return start_iot()


def facility_off(iot, district: str = DONGSHENG, credit_code: str = CREDIT_CODE):
    """A gateway with a fire facility, switched off: (gateway, device id, the alarm)."""
    gateway = iot.gateway(iot.project(district, credit_code))
    device = iot.device(gateway, FACILITY).id
    iot.post(gateway.signed([(device, 0.0)]))
    [alarm] = [a for a in iot.alarms(district) if a.device_id == device]
    return gateway, device, alarm


def alarm_of(iot, alarm_id: str) -> pb.Alarm:
    return iot.admin.GetAlarm(pb.GetAlarmRequest(alarm_id=alarm_id))


# ---------------------------------------------------------------- raised and resolved


def test_a_facility_switched_off_raises_one_alarm_and_switched_on_resolves_it(iot):
    project_id = iot.project(DONGSHENG, CREDIT_CODE)
    gateway = iot.gateway(project_id)
    device = iot.device(gateway, FACILITY).id
    off_at = now_ns()

    iot.post(gateway.signed([(device, 0.0, off_at)]))
    iot.post(gateway.signed([(device, 0.0), (device, 0.0)]))  # still off: no second alarm
    [raised] = iot.events(ev.AlarmRaised)
    iot.post(gateway.signed([(device, 1.0)]))

    alarm = raised.alarm
    assert alarm.id.startswith(f"{DONGSHENG}-A")
    assert (alarm.kind, alarm.state) == (pb.ALARM_KIND_FACILITY_OFF, RAISED)
    assert (alarm.project_id, alarm.credit_code, alarm.district_code) == (
        project_id,
        CREDIT_CODE,
        DONGSHENG,
    )
    assert (alarm.gateway_id, alarm.device_id, alarm.value) == (gateway.id, device, 0.0)
    assert alarm.observe_time.ToNanoseconds() // 1000 == off_at // 1000
    assert alarm.HasField("raise_time")
    [resolved] = iot.events(ev.AlarmResolved)
    assert resolved.automatic
    assert (resolved.alarm.id, resolved.alarm.state) == (alarm.id, RESOLVED)
    assert resolved.alarm.resolved_by == "auto"
    assert resolved.alarm.resolution == pb.ALARM_RESOLUTION_CLEARED
    assert resolved.alarm.HasField("resolve_time")
    assert alarm_of(iot, alarm.id) == resolved.alarm
    assert len(iot.events()) == 2


def test_the_enterprise_serving_a_project_is_kept_until_it_exits(iot):
    """A project announced again keeps its enterprise; only that enterprise's exit clears it."""
    project_id = iot.project(DONGSHENG, CREDIT_CODE)
    other = "91150602MA0N1K2L4Y"

    iot.deliver(project_registered(DONGSHENG, project_id))
    after_registration = iot.count("projects", project_id=project_id, credit_code=CREDIT_CODE)
    iot.deliver(
        registry_events.EnterpriseExited(
            project_id=project_id, district_code=DONGSHENG, credit_code=other
        )
    )
    after_other_exit = iot.count("projects", project_id=project_id, credit_code=CREDIT_CODE)
    iot.deliver(
        registry_events.EnterpriseExited(
            project_id=project_id, district_code=DONGSHENG, credit_code=CREDIT_CODE
        )
    )

    assert (after_registration, after_other_exit) == (1, 1)
    assert iot.count("projects", project_id=project_id, credit_code="") == 1


def test_a_gateway_names_the_enterprise_its_alarms_will_name(iot):
    """The installer can see which enterprise the intake attributes the gateway's alarms to."""
    project_id = iot.project(DONGSHENG, CREDIT_CODE)
    registered = iot.admin.RegisterGateway(
        pb.RegisterGatewayRequest(request_id=request_id(), project_id=project_id, name="网关")
    ).gateway
    iot.deliver(
        registry_events.EnterpriseExited(
            project_id=project_id, district_code=DONGSHENG, credit_code=CREDIT_CODE
        )
    )
    after_exit = iot.admin.GetGateway(pb.GetGatewayRequest(gateway_id=registered.id))

    assert registered.credit_code == CREDIT_CODE
    assert after_exit.credit_code == ""


def test_an_old_assignment_replayed_after_the_inbox_forgot_it_changes_nothing(iot):
    """A replay older than the inbox's retention comes as an event never seen: the handlers
    keep it from taking effect by what they store, without failing (no dead letter)."""
    project_id = f"{DONGSHENG}-Preplayed"
    earlier, later = Timestamp(seconds=1_790_000_000), Timestamp(seconds=1_790_086_400)
    registered = project_registered(DONGSHENG, project_id)
    assigned = registry_events.EnterpriseAssigned(
        project_id=project_id, district_code=DONGSHENG, credit_code=CREDIT_CODE, occur_time=earlier
    )
    exited = registry_events.EnterpriseExited(
        project_id=project_id, district_code=DONGSHENG, credit_code=CREDIT_CODE, occur_time=later
    )
    for event in (registered, assigned, exited):
        iot.deliver(event)

    for replayed in (registered, assigned):
        iot.deliver(replayed)  # a new event id: the inbox no longer knows it

    assert iot.count("projects", project_id=project_id) == 1
    assert iot.count("projects", project_id=project_id, credit_code="") == 1
    gateway = iot.gateway(project_id)
    device = iot.device(gateway, FACILITY).id
    iot.post(gateway.signed([(device, 0.0)]))
    [alarm] = iot.alarms()
    assert (alarm.project_id, alarm.credit_code) == (project_id, "")


def test_an_alarm_of_a_project_no_enterprise_serves_has_no_credit_code(iot):
    _, _, alarm = facility_off(iot, credit_code="")

    assert alarm.credit_code == ""
    assert alarm.project_id


def test_the_next_time_the_condition_starts_is_another_alarm(iot):
    gateway, device, first = facility_off(iot)

    iot.post(gateway.signed([(device, 1.0)]))
    iot.post(gateway.signed([(device, 0.0)]))

    alarms = iot.alarms()
    assert len(alarms) == 2
    assert alarms[1].id == first.id and alarms[1].state == RESOLVED
    assert alarms[0].id != first.id and alarms[0].state == RAISED


def test_without_auto_resolve_an_alarm_stays_open_after_its_condition_clears(start_iot):
    iot = start_iot(iot_auto_resolve=False)
    gateway, device, alarm = facility_off(iot)

    iot.post(gateway.signed([(device, 1.0)]))
    iot.post(gateway.signed([(device, 0.0)]))  # off again: the open alarm stands for it

    assert [a.id for a in iot.alarms()] == [alarm.id]
    assert alarm_of(iot, alarm.id).state == RAISED
    assert iot.events(ev.AlarmResolved) == []
    resolved = iot.admin.ResolveAlarm(
        pb.ResolveAlarmRequest(alarm_id=alarm.id, note="已恢复", resolution=HANDLED)
    )
    assert (resolved.state, resolved.resolved_by, resolved.note) == (RESOLVED, "admin", "已恢复")
    assert resolved.resolution == HANDLED


# (kind, a normal value, an abnormal value, the alarm)
RULES = [
    (pb.DEVICE_KIND_HYDRANT_PRESSURE, 0.3, 0.02, pb.ALARM_KIND_LOW_PRESSURE),
    (pb.DEVICE_KIND_FIRE_PUMP, 1.0, 0.0, pb.ALARM_KIND_FACILITY_OFF),
    (pb.DEVICE_KIND_SPRINKLER_VALVE, 1.0, 0.0, pb.ALARM_KIND_FACILITY_OFF),
    (pb.DEVICE_KIND_FIRE_FACILITY, 1.0, 0.0, pb.ALARM_KIND_FACILITY_OFF),
    (pb.DEVICE_KIND_SMOKE_DETECTOR, 0.0, 1.0, pb.ALARM_KIND_FIRE),
    (pb.DEVICE_KIND_FIRE_DOOR, 0.0, 1.0, pb.ALARM_KIND_FIRE_DOOR_OPEN),
    (pb.DEVICE_KIND_FIRE_LANE, 0.0, 1.0, pb.ALARM_KIND_FIRE_LANE_BLOCKED),
]


def test_each_kind_of_device_raises_its_alarm_and_clears_it(iot):
    gateway = iot.gateway()
    devices = [iot.device(gateway, kind).id for kind, *_ in RULES]

    normals = [normal for _, normal, _, _ in RULES]
    for values in (normals, [bad for _, _, bad, _ in RULES]):
        iot.post(gateway.signed(list(zip(devices, values, strict=True))))
    raised = {a.device_id: a for a in iot.alarms()}
    iot.post(gateway.signed(list(zip(devices, normals, strict=True))))

    assert {d: (a.kind, a.value) for d, a in raised.items()} == {
        d: (alarm, bad) for d, (_, _, bad, alarm) in zip(devices, RULES, strict=True)
    }
    assert all(a.state == RAISED for a in raised.values())
    assert {a.device_id: a.state for a in iot.alarms()} == dict.fromkeys(devices, RESOLVED)


# ---------------------------------------------------------------- the duty desk


def test_an_alarm_is_acknowledged_then_resolved_by_the_duty_desk(iot):
    _, _, alarm = facility_off(iot)
    desk = iot.client(Role.DISTRICT_AUTHORITY, "duty-150602", [DONGSHENG])

    acked = desk.AckAlarm(pb.AckAlarmRequest(alarm_id=alarm.id, note="已派人"))
    again = desk.AckAlarm(pb.AckAlarmRequest(alarm_id=alarm.id))
    unsaid = desk.fails("ResolveAlarm", pb.ResolveAlarmRequest(alarm_id=alarm.id))
    resolved = desk.ResolveAlarm(
        pb.ResolveAlarmRequest(alarm_id=alarm.id, note="已处理", resolution=HANDLED)
    )
    resolved_again = desk.ResolveAlarm(
        pb.ResolveAlarmRequest(alarm_id=alarm.id, resolution=FALSE_ALARM)
    )
    late_ack = desk.fails("AckAlarm", pb.AckAlarmRequest(alarm_id=alarm.id))

    assert (acked.state, acked.acked_by, acked.note) == (ACKED, "duty-150602", "已派人")
    assert acked.HasField("ack_time")
    assert again == acked
    assert (resolved.state, resolved.resolved_by, resolved.note) == (
        RESOLVED,
        "duty-150602",
        "已处理",
    )
    assert resolved_again == resolved  # a repeat changes nothing, not even the resolution
    assert (unsaid.code, list(unsaid.violations)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["resolution"],
    )
    assert late_ack.code == grpc.StatusCode.FAILED_PRECONDITION
    assert late_ack.reason == "ALARM_RESOLVED"
    assert [type(e).__name__ for e in iot.events()] == [
        "AlarmRaised",
        "AlarmAcknowledged",
        "AlarmResolved",
    ]
    [resolved_event] = iot.events(ev.AlarmResolved)
    assert not resolved_event.automatic


def test_an_acknowledged_alarm_resolves_by_itself_when_its_condition_clears(iot):
    gateway, device, alarm = facility_off(iot)
    iot.admin.AckAlarm(pb.AckAlarmRequest(alarm_id=alarm.id))

    iot.post(gateway.signed([(device, 1.0)]))

    assert (alarm_of(iot, alarm.id).state, alarm_of(iot, alarm.id).resolved_by) == (
        RESOLVED,
        "auto",
    )


def test_who_may_see_acknowledge_and_resolve_an_alarm(iot):
    _, _, alarm = facility_off(iot)
    inspector = iot.client(Role.INSPECTOR, "inspector-1", [DONGSHENG])
    elsewhere = iot.authority(KANGBASHI)
    ack = pb.AckAlarmRequest(alarm_id=alarm.id)

    assert inspector.GetAlarm(pb.GetAlarmRequest(alarm_id=alarm.id)).id == alarm.id
    assert inspector.fails("AckAlarm", ack).code == grpc.StatusCode.PERMISSION_DENIED
    assert (
        inspector.fails(
            "ResolveAlarm", pb.ResolveAlarmRequest(alarm_id=alarm.id, resolution=HANDLED)
        ).code
        == grpc.StatusCode.PERMISSION_DENIED
    )
    assert elsewhere.fails("AckAlarm", ack).code == grpc.StatusCode.PERMISSION_DENIED
    assert (
        elsewhere.fails("GetAlarm", pb.GetAlarmRequest(alarm_id=alarm.id)).code
        == grpc.StatusCode.PERMISSION_DENIED
    )
    assert iot.anonymous.fails("AckAlarm", ack).code == grpc.StatusCode.UNAUTHENTICATED
    assert (
        iot.enterprise(CREDIT_CODE).fails("AckAlarm", ack).code == grpc.StatusCode.PERMISSION_DENIED
    )
    assert alarm_of(iot, alarm.id).state == RAISED
    missing = iot.admin.fails("AckAlarm", pb.AckAlarmRequest(alarm_id=f"{DONGSHENG}-Anone"))
    assert missing.code == grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------- escalation


def test_an_alarm_nobody_acknowledged_in_time_is_escalated_for_credit_and_inspections(
    start_iot, wait_until
):
    iot = start_iot(iot_escalate_after_seconds=0.5)
    project_id = iot.project(DONGSHENG, CREDIT_CODE)
    gateway = iot.gateway(project_id)
    device = iot.device(gateway, FACILITY).id
    iot.post(gateway.signed([(device, 0.0)]))

    [escalated] = wait_until(lambda: iot.events(ev.AlarmEscalated), timeout=10)

    assert (escalated.project_id, escalated.credit_code, escalated.district_code) == (
        project_id,
        CREDIT_CODE,
        DONGSHENG,
    )
    assert escalated.kind == pb.ALARM_KIND_FACILITY_OFF
    assert escalated.HasField("occur_time")
    assert escalated.alarm.HasField("escalate_time")
    assert escalated.alarm.state == RAISED
    assert alarm_of(iot, escalated.alarm.id).escalate_time == escalated.alarm.escalate_time
    # What the credit and inspections services read of it, by their default rules.
    credit_rules = [
        r
        for r in CreditSettings.model_fields["event_rules"].default
        if r.event == "wuye.iot.v1.AlarmEscalated"
    ]
    trigger_rules = [
        r
        for r in InspectionsSettings.model_fields["trigger_rules"].default
        if r.event == "wuye.iot.v1.AlarmEscalated"
    ]
    assert credit_rules and trigger_rules
    for rule in credit_rules:
        assert rule.topic == ALARM_TOPIC
        assert getattr(escalated, rule.subject_field) == CREDIT_CODE
    for rule in trigger_rules:
        assert rule.topic == ALARM_TOPIC
        assert getattr(escalated, rule.project_field) == project_id
    assert iot.intake.escalate_due() == 0  # once: another pass finds nothing to escalate
    assert len(iot.events(ev.AlarmEscalated)) == 1


def test_an_alarm_acknowledged_in_time_is_not_escalated(start_iot, wait_until):
    iot = start_iot(iot_escalate_after_seconds=1.0)
    _, _, alarm = facility_off(iot)
    iot.admin.AckAlarm(pb.AckAlarmRequest(alarm_id=alarm.id))
    _, _, other = facility_off(iot)

    wait_until(lambda: iot.events(ev.AlarmEscalated), timeout=10)

    assert [e.alarm.id for e in iot.events(ev.AlarmEscalated)] == [other.id]
    assert not alarm_of(iot, alarm.id).HasField("escalate_time")


# ---------------------------------------------------------------- false alarms


def false_alarm(iot, gateway, device: str) -> pb.Alarm:
    """The device reports "off", the duty desk finds nothing wrong, and the device is on."""
    iot.post(gateway.signed([(device, 0.0)]))
    [alarm] = iot.alarms(states=[RAISED], kind=pb.ALARM_KIND_FACILITY_OFF)
    resolved = iot.admin.ResolveAlarm(
        pb.ResolveAlarmRequest(alarm_id=alarm.id, note="误报", resolution=FALSE_ALARM)
    )
    iot.post(gateway.signed([(device, 1.0)]))
    return resolved


def exceeded(iot) -> list[ev.DeviceFalseAlarmsExceeded]:
    return iot.outbox_events(ev.DeviceFalseAlarmsExceeded, topic=DEVICE_TOPIC)


def test_more_false_alarms_a_day_than_allowed_escalate_the_device_once(start_iot):
    iot = start_iot(iot_max_false_alarms_per_day=2)
    project_id = iot.project(DONGSHENG, CREDIT_CODE)
    gateway = iot.gateway(project_id)
    device = iot.device(gateway, FACILITY).id
    iot.post(gateway.signed([(device, 0.0)]))
    [handled] = iot.alarms(states=[RAISED])
    iot.admin.ResolveAlarm(pb.ResolveAlarmRequest(alarm_id=handled.id, resolution=HANDLED))
    iot.post(gateway.signed([(device, 1.0)]))

    first, second = false_alarm(iot, gateway, device), false_alarm(iot, gateway, device)
    within_limit = exceeded(iot)
    false_alarm(iot, gateway, device)
    false_alarm(iot, gateway, device)

    assert first.resolution == second.resolution == FALSE_ALARM
    assert within_limit == []  # a handled alarm is not a false one
    [event] = exceeded(iot)
    today = iot.settings.local_date(dt.datetime.now(dt.UTC)).isoformat()
    assert (event.device_id, event.gateway_id, event.project_id) == (device, gateway.id, project_id)
    assert (event.credit_code, event.district_code, event.day) == (CREDIT_CODE, DONGSHENG, today)
    assert (event.false_alarms, event.limit) == (3, 2)
    # What the credit and inspections services make of it, by their default rules.
    credit_rules = [
        r
        for r in CreditSettings.model_fields["event_rules"].default
        if r.event == "wuye.iot.v1.DeviceFalseAlarmsExceeded"
    ]
    trigger_rules = [
        r
        for r in InspectionsSettings.model_fields["trigger_rules"].default
        if r.event == "wuye.iot.v1.DeviceFalseAlarmsExceeded"
    ]
    assert credit_rules and trigger_rules
    for rule in credit_rules:
        assert rule.topic == DEVICE_TOPIC
        assert getattr(event, rule.subject_field) == CREDIT_CODE
    for rule in trigger_rules:
        assert rule.topic == DEVICE_TOPIC
        assert getattr(event, rule.project_field) == project_id


def test_false_alarms_are_counted_by_the_city_day_they_were_raised_on(start_iot):
    iot = start_iot(iot_max_false_alarms_per_day=2)
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY).id
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with iot.engine.begin() as connection:
        for n in range(2):
            connection.execute(
                sa.text(
                    "INSERT INTO alarms (alarm_id, district_code, project_id, gateway_id, "
                    "device_id, condition, credit_code, kind, state, observed_at, raised_at, "
                    "acked_by, resolved_at, resolved_by, note, resolution) VALUES (:id, :d, :p, "
                    ":g, :dev, :c, '', 'FACILITY_OFF', 'RESOLVED', :at, :at, '', :at, 'admin', "
                    "'', 'FALSE_ALARM')"
                ),
                {
                    "id": f"{DONGSHENG}-Ayesterday{n}",
                    "d": DONGSHENG,
                    "p": gateway.project_id,
                    "g": gateway.id,
                    "dev": device,
                    "c": f"{device}/FACILITY_OFF",
                    "at": yesterday,
                },
            )

    false_alarm(iot, gateway, device)
    false_alarm(iot, gateway, device)
    within_today = exceeded(iot)
    false_alarm(iot, gateway, device)

    assert within_today == []
    [event] = exceeded(iot)
    assert (event.false_alarms, event.day) == (
        3,
        iot.settings.local_date(dt.datetime.now(dt.UTC)).isoformat(),
    )


def test_a_person_resolves_an_alarm_as_handled_or_false_never_as_cleared(iot):
    _, _, alarm = facility_off(iot)

    cleared = iot.admin.fails(
        "ResolveAlarm",
        pb.ResolveAlarmRequest(alarm_id=alarm.id, resolution=pb.ALARM_RESOLUTION_CLEARED),
    )
    unknown = iot.admin.fails(
        "ResolveAlarm", pb.ResolveAlarmRequest(alarm_id=alarm.id, resolution=99)
    )

    for failure in (cleared, unknown):
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "resolution" in failure.violations
    assert alarm_of(iot, alarm.id).state == RAISED


# ---------------------------------------------------------------- silence and clock skew


def test_a_silent_device_is_alarmed_and_its_next_reading_clears_it(start_iot, wait_until):
    iot = start_iot(iot_min_heartbeat_seconds=1)
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY, heartbeat_interval={"seconds": 1}).id
    iot.post(gateway.signed([(device, 1.0)]))
    heard = iot.get_device(device).last_seen_time.ToNanoseconds()

    [raised] = wait_until(lambda: iot.events(ev.AlarmRaised), timeout=5, interval=0.02)
    due = raised.alarm.observe_time.ToNanoseconds()
    listed = iot.admin.ListDevices(
        pb.ListDevicesRequest(district_code=DONGSHENG, silent_only=True)
    ).devices
    iot.post(gateway.signed([(device, 1.0)]))

    assert (raised.alarm.kind, raised.alarm.device_id) == (pb.ALARM_KIND_DEVICE_SILENT, device)
    assert not raised.alarm.HasField("value")
    # Observed silent when it was due (a heartbeat after it was heard), raised only after.
    assert abs(due - (heard + 10**9)) < 1_000, (due, heard)
    assert raised.alarm.raise_time.ToNanoseconds() >= due
    assert [d.id for d in listed] == [device]
    [resolved] = iot.events(ev.AlarmResolved)
    assert (resolved.alarm.id, resolved.automatic) == (raised.alarm.id, True)
    assert not iot.get_device(device).silent


def test_a_gateway_whose_clock_is_off_raises_clock_skew_until_it_is_right(iot):
    gateway = iot.gateway()
    device = iot.device(gateway, FACILITY).id

    iot.post(gateway.signed([(device, 1.0)], sent_ns=now_ns() - 10 * 10**9))
    iot.post(gateway.signed([(device, 1.0)], sent_ns=now_ns() + 10 * 10**9))
    [raised] = iot.events(ev.AlarmRaised)
    iot.post(gateway.signed([(device, 1.0)]))

    assert raised.alarm.kind == pb.ALARM_KIND_CLOCK_SKEW
    assert (raised.alarm.gateway_id, raised.alarm.device_id) == (gateway.id, "")
    [resolved] = iot.events(ev.AlarmResolved)
    assert resolved.alarm.id == raised.alarm.id and resolved.automatic


# ---------------------------------------------------------------- watch and list


def test_a_watch_gets_the_open_alarms_then_each_change_of_its_districts(iot, wait_until):
    gateway, device, open_alarm = facility_off(iot)
    closed_gateway, closed_device, _ = facility_off(iot)
    iot.post(closed_gateway.signed([(closed_device, 1.0)]))

    watch = iot.watch(iot.authority(DONGSHENG))
    wait_until(lambda: len(watch.alarms) == 1)
    facility_off(iot, KANGBASHI)
    iot.post(gateway.signed([(device, 1.0)]))
    new_gateway = iot.gateway()
    new_device = iot.device(new_gateway, pb.DEVICE_KIND_SMOKE_DETECTOR).id
    iot.post(new_gateway.signed([(new_device, 1.0)]))
    wait_until(lambda: len(watch.alarms) == 3)

    first, resolved, fire = watch.alarms
    assert (first.id, first.state) == (open_alarm.id, RAISED)
    assert (resolved.id, resolved.state) == (open_alarm.id, RESOLVED)
    assert (fire.kind, fire.device_id, fire.state) == (pb.ALARM_KIND_FIRE, new_device, RAISED)
    assert all(a.district_code == DONGSHENG for a in watch.alarms)
    assert watch.error is None


def test_a_watch_of_every_district_sees_acknowledgements_too(iot, wait_until):
    watch = iot.watch()
    _, _, alarm = facility_off(iot, KANGBASHI)
    wait_until(lambda: len(watch.alarms) == 1)

    iot.admin.AckAlarm(pb.AckAlarmRequest(alarm_id=alarm.id))

    wait_until(lambda: len(watch.alarms) == 2)
    assert [(a.id, a.state) for a in watch.alarms] == [(alarm.id, RAISED), (alarm.id, ACKED)]


def test_a_watch_of_a_district_outside_the_callers_is_refused(iot, wait_until):
    watch = iot.watch(iot.authority(DONGSHENG), [KANGBASHI])

    wait_until(lambda: watch.error is not None)
    assert watch.error.code() == grpc.StatusCode.PERMISSION_DENIED


def test_alarms_are_listed_newest_first_by_page_and_filtered(iot):
    gateway = iot.gateway()
    devices = [iot.device(gateway, FACILITY).id for _ in range(4)]
    smoke = iot.device(gateway, pb.DEVICE_KIND_SMOKE_DETECTOR).id
    for device in devices:
        iot.post(gateway.signed([(device, 0.0)]))
    iot.post(gateway.signed([(smoke, 1.0)]))
    iot.post(gateway.signed([(devices[0], 1.0)]))  # resolves the first
    facility_off(iot, KANGBASHI)

    pages, token = [], ""
    while True:
        page = iot.admin.ListAlarms(
            pb.ListAlarmsRequest(district_code=DONGSHENG, page_size=2, page_token=token)
        )
        pages.append(list(page.alarms))
        token = page.next_page_token
        if not token:
            break
    listed = [a for p in pages for a in p]
    open_only = iot.alarms(states=[RAISED, ACKED])
    fires = iot.alarms(kind=pb.ALARM_KIND_FIRE)

    assert [len(p) for p in pages] == [2, 2, 1]
    assert [a.device_id for a in listed] == [smoke, *reversed(devices)]
    times = [a.raise_time.ToNanoseconds() for a in listed]
    assert times == sorted(times, reverse=True)
    assert [a.device_id for a in open_only] == [smoke, *reversed(devices[1:])]
    assert [a.device_id for a in fires] == [smoke]
    assert iot.alarms(states=[RESOLVED])[0].device_id == devices[0]
    invalid = iot.admin.fails("ListAlarms", pb.ListAlarmsRequest(district_code=DONGSHENG, kind=99))
    assert invalid.code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_device_shows_its_last_value_and_whether_it_is_silent(iot):
    gateway = iot.gateway()
    device = iot.device(gateway, pb.DEVICE_KIND_HYDRANT_PRESSURE).id
    at = now_ns()

    iot.post(gateway.signed([(device, 0.31, at - 10**9), (device, 0.33, at)]))
    iot.post(gateway.signed([(device, 0.05, at - 5 * 10**9)]))  # older: changes nothing

    shown = iot.get_device(device)
    assert (shown.last_value, shown.last_observe_time.ToNanoseconds()) == (0.33, at)
    assert not shown.silent and shown.HasField("last_seen_time")
    assert iot.alarms() == []


# ---------------------------------------------------------------- on Kafka


def forwarded(kind: str) -> float:
    """How many raised alarms of `kind` the relay measured from raising to Kafka."""
    return (
        REGISTRY.get_sample_value("wuye_iot_alarm_forward_latency_seconds_count", {"kind": kind})
        or 0.0
    )


def test_alarm_events_reach_kafka_through_the_relay(iot, start_loop, read_topic, wait_until):
    forwarded_before = forwarded("FACILITY_OFF")
    gateway, device, alarm = facility_off(iot)
    iot.post(gateway.signed([(device, 1.0)]))
    relay = build_relay(SPEC, iot.settings, iot.engine)
    start_loop(relay.run, "iot-relay", after=[relay.close])

    records = read_topic(ALARM_TOPIC, 2, key=alarm.id.encode())

    assert [r.headers["ce_type"] for r in records] == [
        "wuye.iot.v1.AlarmRaised",
        "wuye.iot.v1.AlarmResolved",
    ]
    assert ev.AlarmRaised.FromString(records[0].value).alarm.id == alarm.id
    assert all(r.headers["ce_district"] == DONGSHENG for r in records)
    # GB 50440's 3 s to forward a confirmed alarm is measured for the alert rule.
    wait_until(lambda: forwarded("FACILITY_OFF") == forwarded_before + 1)
