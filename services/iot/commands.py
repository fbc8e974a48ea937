"""Use cases of the IoT intake other than the readings themselves: registering gateways and
devices, handling alarms, and learning projects from the registry's events."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from google.protobuf.message import Message
from sqlalchemy import Connection, Engine

from wuye.core import context
from wuye.core.consumer import EventMeta, Handler
from wuye.core.db import reader, utc
from wuye.core.errors import FailedPrecondition, NotFound
from wuye.core.events import Event, add_events, run_idempotent
from wuye.core.ids import new_id
from wuye.core.paging import Page
from wuye.core.wire import timestamp
from wuye.iot import domain, store
from wuye.iot.domain import AlarmAction, AlarmState, DeviceKind, DeviceState, Resolution
from wuye.iot.gateway import mqtt_topic
from wuye.iot.intake import (
    ALARM_TOPIC,
    READING_TOPIC,
    Intake,
    alarm_event,
    alarm_message,
    resolve,
    update_alarm,
)
from wuye.iot.settings import IotSettings
from wuye.iot.v1 import events_pb2 as events
from wuye.iot.v1 import intake_service_pb2 as pb
from wuye.registry.v1 import events_pb2 as registry

DEVICE_TOPIC = "wuye.iot.device.v1"
TOPICS = (ALARM_TOPIC, DEVICE_TOPIC, READING_TOPIC)

REGISTRY_TOPICS = ("wuye.registry.project.v1",)


def device_event(gateway_id: str, subject: str, district: str, message: Message) -> Event:
    """An event of the device topic, keyed by gateway: one gateway's events, its devices'
    included, stay in order."""
    return Event(DEVICE_TOPIC, gateway_id, subject, district, message)


def gateway_message(row, credit_code: str) -> pb.Gateway:
    return pb.Gateway(
        id=row.gateway_id,
        project_id=row.project_id,
        district_code=row.district_code,
        name=row.name,
        mqtt_topic=mqtt_topic(row.district_code, row.gateway_id),
        create_time=timestamp(utc(row.created_at)),
        credit_code=credit_code,
    )


def device_message(device: DeviceState) -> pb.Device:
    message = pb.Device(
        id=device.device_id,
        gateway_id=device.gateway_id,
        project_id=device.project_id,
        district_code=device.district,
        kind=pb.DeviceKind.Value(f"DEVICE_KIND_{device.kind}"),
        location=device.location,
        thresholds=pb.Thresholds(low=device.low, high=device.high),
        silent=device.silent,
        create_time=timestamp(dt.datetime.fromtimestamp(device.registered_at, dt.UTC)),
    )
    message.heartbeat_interval.FromNanoseconds(int(device.heartbeat_seconds * 1e9))
    if device.last_value is not None:
        message.last_value = device.last_value
        message.last_observe_time.FromNanoseconds(device.last_observed_ns)
    if device.last_seen:
        message.last_seen_time.FromNanoseconds(int(device.last_seen * 1e9))
    return message


def _stored_gateway(connection: Connection, row) -> pb.Gateway:
    """A stored gateway with the enterprise its project is served by, as last heard of."""
    return gateway_message(row, store.credit_code_of(connection, row.project_id))

class Iot:
    def __init__(self, engine: Engine, settings: IotSettings, intake: Intake | None = None):
        self.engine = engine
        self.reader = reader(engine)
        self.settings = settings
        self._intake = intake

    @property
    def intake(self) -> Intake:
        assert self._intake is not None, "only the serving process has an intake"
        return self._intake

    # -- gateways and devices

    def register_gateway(self, request: pb.RegisterGatewayRequest) -> pb.RegisterGatewayResponse:
        def command(connection: Connection) -> pb.RegisterGatewayResponse:
            project = connection.execute(
                sa.select(store.projects).where(store.projects.c.project_id == request.project_id)
            ).first()
            if project is None:
                raise FailedPrecondition(
                    "PROJECT_UNKNOWN",
                    f"the registry has not announced project {request.project_id} (yet)",
                    project_id=request.project_id,
                )
            values = {
                "gateway_id": new_id(project.district_code, "G"),
                "project_id": project.project_id,
                "district_code": project.district_code,
                "name": request.name,
                "key_version": 1,
                "created_at": dt.datetime.now(dt.UTC),
                "replay_epoch": 0,
                "replay_highest": 0,
                "replay_bits": 0,
                "clock_skewed": False,
            }
            connection.execute(store.gateways.insert().values(values))
            gateway = gateway_message(SimpleNamespace(**values), project.credit_code)
            add_events(
                connection,
                [
                    device_event(
                        gateway.id,
                        gateway.id,
                        gateway.district_code,
                        events.GatewayRegistered(gateway=gateway),
                    )
                ],
            )
            return pb.RegisterGatewayResponse(gateway=gateway)

        response = run_idempotent(
            self.engine,
            pii_key=self.settings.pii_key,
            method="RegisterGateway",
            request_id=request.request_id,
            request=request,
            response_type=pb.RegisterGatewayResponse,
            command=command,
        )
        # The secret is derived, never stored (not even in the idempotency record).
        gateway = response.gateway
        version = self._key_version(gateway.id)
        self.intake.add_gateway(gateway.id, gateway.district_code, gateway.project_id, version)
        response.secret = self.intake.secret_of(gateway.id, version)
        return response

    def _gateway_row(self, connection: Connection, gateway_id: str, lock: bool = False):
        query = sa.select(store.gateways).where(store.gateways.c.gateway_id == gateway_id)
        row = connection.execute(query.with_for_update() if lock else query).first()
        if row is None:
            raise NotFound("GATEWAY_NOT_FOUND", f"no gateway {gateway_id}")
        return row

    def _key_version(self, gateway_id: str) -> int:
        with self.reader.connect() as connection:
            return self._gateway_row(connection, gateway_id).key_version

    def get_gateway(self, gateway_id: str) -> pb.Gateway:
        with self.reader.connect() as connection:
            row = self._gateway_row(connection, gateway_id)
            return _stored_gateway(connection, row)

    def rotate_secret(self, gateway_id: str) -> pb.RotateGatewaySecretResponse:
        """A new key version, and a replay window starting afresh (epoch 0): every batch signed
        before is refused by its signature, so none can be replayed into the new window."""
        by = context.current().principal.subject
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as connection:
            row = self._gateway_row(connection, gateway_id, lock=True)
            version = row.key_version + 1
            self._write_window(connection, gateway_id, 0, key_version=version)
            gateway = _stored_gateway(connection, row)
            add_events(
                connection,
                [
                    device_event(
                        gateway_id,
                        gateway_id,
                        row.district_code,
                        events.GatewaySecretRotated(
                            gateway=gateway,
                            key_version=version,
                            rotated_by=by,
                            occur_time=timestamp(now),
                        ),
                    )
                ],
            )
        self.intake.reset_window(gateway_id, version, epoch=0)
        return pb.RotateGatewaySecretResponse(
            gateway=gateway, secret=self.intake.secret_of(gateway_id, version)
        )

    def reset_window(self, gateway_id: str, note: str) -> pb.ResetGatewayWindowResponse:
        """Forgets the sequences of the gateway's current epoch (a gateway that cannot change
        its epoch restarted and counts from 1 again); older epochs stay refused."""
        by = context.current().principal.subject
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as connection:
            row = self._gateway_row(connection, gateway_id, lock=True)
            epoch, highest = self.intake.window_of(gateway_id)
            self._write_window(connection, gateway_id, epoch)
            gateway = _stored_gateway(connection, row)
            add_events(
                connection,
                [
                    device_event(
                        gateway_id,
                        gateway_id,
                        row.district_code,
                        events.GatewayWindowReset(
                            gateway=gateway,
                            epoch=epoch,
                            highest_before=highest,
                            reset_by=by,
                            note=note,
                            occur_time=timestamp(now),
                        ),
                    )
                ],
            )
        self.intake.reset_window(gateway_id, row.key_version, epoch=None)
        return pb.ResetGatewayWindowResponse(gateway=gateway, epoch=epoch)

    @staticmethod
    def _write_window(connection: Connection, gateway_id: str, epoch: int, **values) -> None:
        connection.execute(
            store.gateways.update()
            .where(store.gateways.c.gateway_id == gateway_id)
            .values(replay_epoch=epoch, replay_highest=0, replay_bits=0, **values)
        )

    def register_device(
        self,
        request: pb.RegisterDeviceRequest,
        kind: DeviceKind,
        low: float,
        high: float,
        heartbeat_seconds: float,
    ) -> pb.Device:
        def command(connection: Connection) -> pb.Device:
            gateway = self._gateway_row(connection, request.gateway_id)
            values = {
                "device_id": new_id(gateway.district_code, "D"),
                "gateway_id": gateway.gateway_id,
                "district_code": gateway.district_code,
                "project_id": gateway.project_id,
                "kind": kind,
                "location": request.location,
                "low": low,
                "high": high,
                "heartbeat_seconds": heartbeat_seconds,
                "created_at": dt.datetime.now(dt.UTC),
                "last_value": None,
                "last_observed_ns": 0,
                "last_seen": 0.0,
                "abnormal": False,
                "silent": False,
            }
            connection.execute(store.devices.insert().values(values))
            state = store.device_state(SimpleNamespace(**values), self.intake.valid_ranges)
            device = device_message(state)
            add_events(
                connection,
                [
                    device_event(
                        gateway.gateway_id,
                        device.id,
                        device.district_code,
                        events.DeviceRegistered(device=device),
                    )
                ],
            )
            return device

        device = run_idempotent(
            self.engine,
            pii_key=self.settings.pii_key,
            method="RegisterDevice",
            request_id=request.request_id,
            request=request,
            response_type=pb.Device,
            command=command,
        )
        with self.reader.connect() as connection:
            row = connection.execute(
                sa.select(store.devices).where(store.devices.c.device_id == device.id)
            ).one()
        self.intake.add_device(row)
        return self.get_device(device.id)

    def get_device(self, device_id: str) -> pb.Device:
        device = self.intake.devices.get(device_id)
        if device is None:
            raise NotFound("DEVICE_NOT_FOUND", f"no device {device_id}")
        return device_message(device)

    def list_devices(
        self, district: str, gateway_id: str, silent_only: bool, page: Page
    ) -> list[DeviceState]:
        found = sorted(
            (
                d
                for d in list(self.intake.devices.values())
                if d.district == district
                and (not gateway_id or d.gateway_id == gateway_id)
                and (not silent_only or d.silent)
                and (page.after is None or d.device_id > page.after)
            ),
            key=lambda d: d.device_id,
        )
        return found[: page.size + 1]

    # -- alarms

    def _alarm_row(self, connection: Connection, alarm_id: str, lock: bool = False):
        query = sa.select(store.alarms).where(store.alarms.c.alarm_id == alarm_id)
        row = connection.execute(query.with_for_update() if lock else query).first()
        if row is None:
            raise NotFound("ALARM_NOT_FOUND", f"no alarm {alarm_id}")
        return row

    def get_alarm(self, alarm_id: str) -> pb.Alarm:
        with self.reader.connect() as connection:
            return alarm_message(self._alarm_row(connection, alarm_id)._asdict())

    def list_alarms(
        self, district: str, states: list[str], kind: str, page: Page
    ) -> list[pb.Alarm]:
        """Newest first; the page key is "<raised_at ISO>|<alarm_id>"."""
        alarms = store.alarms.c
        query = sa.select(store.alarms).where(alarms.district_code == district)
        if states:
            query = query.where(alarms.state.in_(states))
        if kind:
            query = query.where(alarms.kind == kind)
        if page.after is not None:
            raised, _, alarm_id = page.after.partition("|")
            at = dt.datetime.fromisoformat(raised)
            query = query.where(
                sa.or_(
                    alarms.raised_at < at,
                    sa.and_(alarms.raised_at == at, alarms.alarm_id > alarm_id),
                )
            )
        query = query.order_by(alarms.raised_at.desc(), alarms.alarm_id).limit(page.size + 1)
        with self.reader.connect() as connection:
            return [alarm_message(row._asdict()) for row in connection.execute(query)]

    def open_alarms(self, districts: frozenset[str]) -> list[pb.Alarm]:
        alarms = store.alarms.c
        query = (
            sa.select(store.alarms)
            .where(
                alarms.district_code.in_(sorted(districts)),
                alarms.state != AlarmState.RESOLVED,
            )
            .order_by(alarms.raised_at)
        )
        with self.reader.connect() as connection:
            return [alarm_message(row._asdict()) for row in connection.execute(query)]

    def acknowledge(self, alarm_id: str, note: str) -> pb.Alarm:
        by = context.current().principal.subject
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as connection:
            row = self._alarm_row(connection, alarm_id, lock=True)
            state = domain.alarm_transition(row.state, AlarmAction.ACKNOWLEDGE, alarm_id)
            if state is None:
                return alarm_message(row._asdict())
            alarm = update_alarm(
                connection, row, state=state, acked_at=now, acked_by=by, note=note or row.note
            )
            add_events(connection, [alarm_event(alarm, events.AlarmAcknowledged(alarm=alarm))])
        self.intake.announce([alarm], "acknowledged")
        return alarm

    def resolve(self, alarm_id: str, resolution: Resolution, note: str) -> pb.Alarm:
        """Resolves an alarm by hand; a false alarm is counted against its device for the day
        it was raised, and escalated when the day's count passes the limit."""
        by = context.current().principal.subject
        with self.engine.begin() as connection:
            row = self._alarm_row(connection, alarm_id, lock=True)
            if domain.alarm_transition(row.state, AlarmAction.RESOLVE, alarm_id) is None:
                return alarm_message(row._asdict())
            alarm = resolve(connection, row, by, resolution, note, dt.datetime.now(dt.UTC))
            emitted = [alarm_event(alarm, events.AlarmResolved(alarm=alarm))]
            if resolution == Resolution.FALSE_ALARM and row.device_id:
                emitted.extend(self._false_alarms_exceeded(connection, row))
            add_events(connection, emitted)
        self.intake.announce([alarm], "resolved")
        return alarm

    def _false_alarms_exceeded(self, connection: Connection, row) -> list[Event]:
        """The escalation of the device's false alarms on the city's calendar day the alarm was
        raised, if this one takes the day past the limit."""
        store.lock_device(connection, row.device_id)  # one count at a time per device
        day, start, end = domain.city_day(utc(row.raised_at), ZoneInfo(self.settings.city_timezone))
        count = store.false_alarms_between(connection, row.device_id, start, end)
        limit = self.settings.iot_max_false_alarms_per_day
        if not domain.false_alarms_exceeded(count, limit):
            return []
        return [
            device_event(
                row.gateway_id,
                row.device_id,
                row.district_code,
                events.DeviceFalseAlarmsExceeded(
                    device_id=row.device_id,
                    gateway_id=row.gateway_id,
                    project_id=row.project_id,
                    district_code=row.district_code,
                    credit_code=store.credit_code_of(connection, row.project_id),
                    day=day.isoformat(),
                    false_alarms=count,
                    limit=limit,
                    occur_time=timestamp(dt.datetime.now(dt.UTC)),
                ),
            )
        ]

    # -- the registry's events: where projects are and who serves them

    def handlers(self) -> dict[str, Handler]:
        return {
            "wuye.registry.v1.ProjectRegistered": Handler(
                registry.ProjectRegistered, self.on_project_registered
            ),
            "wuye.registry.v1.EnterpriseAssigned": Handler(
                registry.EnterpriseAssigned, self.on_enterprise_assigned
            ),
            "wuye.registry.v1.EnterpriseExited": Handler(
                registry.EnterpriseExited, self.on_enterprise_exited
            ),
        }

    # Each handler is idempotent by itself, not only through the inbox (which forgets after its
    # retention): a project is added once, and an assignment or exit applies only if nothing
    # later was applied.

    def on_project_registered(self, connection: Connection, message, _meta: EventMeta) -> None:
        store.add_project(
            connection, project_id=message.project_id, district_code=message.district_code
        )

    def on_enterprise_assigned(self, connection: Connection, message, _meta: EventMeta) -> None:
        store.assign_service(
            connection,
            project_id=message.project_id,
            district_code=message.district_code,
            credit_code=message.credit_code,
            happened=message.occur_time.ToDatetime(dt.UTC),
        )

    def on_enterprise_exited(self, connection: Connection, message, _meta: EventMeta) -> None:
        store.end_service(
            connection,
            project_id=message.project_id,
            credit_code=message.credit_code,
            happened=message.occur_time.ToDatetime(dt.UTC),
        )
