"""What the IoT integration tests share (this module holds no tests): the intake's gRPC server
built in-process as `python -m wuye.iot serve` builds it, over this test's PostgreSQL schema and
the session's Kafka; the registry's project events delivered to the consumer's handlers; and
gateways that build, sign and send batches as a real one does (bytes on the wire, no bearer
token).

The test modules import from here by module name: pytest puts tests/integration on sys.path.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import grpc
import sqlalchemy as sa
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_support import CALL_TIMEOUT_SECONDS, Client, Failure, InProcessServer, failure_of
from grpc_support import started_servers as _started_servers
from sample_data import request_id

from wuye.core.grpcserver import ServiceDefinition
from wuye.iot.commands import Iot
from wuye.iot.gateway import open_stream, post_batch
from wuye.iot.service import SPEC
from wuye.iot.signing import sign
from wuye.iot.v1 import events_pb2 as ev
from wuye.iot.v1 import intake_service_pb2 as pb
from wuye.iot.v1 import intake_service_pb2_grpc as pb_grpc
from wuye.registry.v1 import events_pb2 as registry_events

PROJECT_TOPIC = "wuye.registry.project.v1"
READING_TOPIC = "wuye.iot.reading.v1"
ALARM_TOPIC = "wuye.iot.alarm.v1"
DEVICE_TOPIC = "wuye.iot.device.v1"
DONGSHENG, KANGBASHI = "150602", "150603"
FACILITY = pb.DEVICE_KIND_FIRE_FACILITY
# The enterprise serving the projects of tests that need one.
CREDIT_CODE = "91150602MA0N1K2L3X"
GATEWAY_KEY = "wuye-test-gateway-key-0123456789"

# Short intervals: the writer's rounds, silence and escalation checks happen within the tests'
# waits. MQTT is off unless a test asks for it.
FAST = {
    "iot_gateway_key": GATEWAY_KEY,
    "iot_mqtt_url": "",
    "iot_flush_seconds": 0.005,
    "iot_silence_check_seconds": 0.2,
    "iot_escalation_check_seconds": 0.2,
    "iot_snapshot_seconds": 0.5,
    "iot_topic_check_retry_seconds": 0.2,
}

EVENT_TYPES = (ev.AlarmRaised, ev.AlarmAcknowledged, ev.AlarmResolved, ev.AlarmEscalated)


def now_ns() -> int:
    return time.time_ns()


def send_time(at_ns: int | None = None) -> Timestamp:
    at = time.time_ns() if at_ns is None else at_ns
    return Timestamp(seconds=at // 1_000_000_000, nanos=at % 1_000_000_000)


def project_registered(district: str = DONGSHENG, project_id: str | None = None):
    return registry_events.ProjectRegistered(
        project_id=project_id or f"{district}-P{uuid.uuid4().hex[:12]}",
        name="天骄花园",
        district_code=district,
        sub_district="天骄街道",
    )


@dataclass
class Gateway:
    """A registered gateway as the device in the field knows it: its id, district and secret,
    the epoch it started in and the last sequence it numbered a batch with."""

    id: str
    district: str
    secret: bytes
    project_id: str
    sequence: int = 0
    epoch: int = 0

    def restart(self, epoch: int) -> None:
        """The gateway restarts: a new epoch, numbering from 1 again."""
        self.epoch, self.sequence = epoch, 0

    def batch(
        self,
        readings: Iterable[tuple[str, float] | tuple[str, float, int]] = (),
        *,
        sequence: int | None = None,
        sent_ns: int | None = None,
        epoch: int | None = None,
    ) -> pb.ReadingBatch:
        """An unsigned batch; the next sequence in the gateway's epoch unless they are given. A
        reading is (device, value) observed now, or (device, value, observe_time_unix_nano)."""
        if sequence is None:
            self.sequence += 1
            sequence = self.sequence
        batch = pb.ReadingBatch(
            gateway_id=self.id, sequence=sequence, epoch=self.epoch if epoch is None else epoch
        )
        batch.send_time.CopyFrom(send_time(sent_ns))
        for reading in readings:
            device, value, *at = reading
            batch.readings.add(
                device_id=device, value=value, observe_time_unix_nano=at[0] if at else now_ns()
            )
        return batch

    def sign(self, batch: pb.ReadingBatch, secret: bytes | None = None) -> bytes:
        return sign(self.secret if secret is None else secret, batch.SerializeToString())

    def signed(self, readings=(), **kw) -> bytes:
        return self.sign(self.batch(readings, **kw))


@dataclass
class Watch:
    """A WatchAlarms stream read on a thread of its own; `alarms` grows as they come."""

    call: grpc.Future
    alarms: list[pb.Alarm] = field(default_factory=list)
    error: grpc.RpcError | None = None

    def read(self) -> None:
        try:
            for alarm in self.call:
                self.alarms.append(alarm)
        except grpc.RpcError as e:
            self.error = e

    def cancel(self) -> None:
        self.call.cancel()


class IotServer(InProcessServer):
    """One running intake server, its database, and builders of projects, gateways and
    devices."""

    spec = SPEC
    stub_class = pb_grpc.IntakeServiceStub
    event_topic = PROJECT_TOPIC
    event_types = EVENT_TYPES

    def definitions(self) -> list[ServiceDefinition]:
        self.handlers = Iot(self.engine, self.settings).handlers()
        served = super().definitions()
        [intake_service] = served
        self.intake = intake_service.servicer.intake
        self._watches: list[Watch] = []
        return served

    def close(self) -> None:
        """Stops the server (once: a test may close it before the fixture does)."""
        if getattr(self, "closed", False):
            return
        self.closed = True
        for watch in self._watches:
            watch.cancel()
        super().close()

    # -- raw calls, as a gateway makes them

    def post(self, raw: bytes, timeout: float = CALL_TIMEOUT_SECONDS) -> pb.BatchResult:
        return post_batch(self.channel, raw, timeout=timeout)

    def post_fails(self, raw: bytes) -> Failure:
        try:
            result = self.post(raw)
        except grpc.RpcError as e:
            return failure_of(e)
        raise AssertionError(f"PostReadings succeeded, expected a failure: {result}")

    def open_stream(self, batches: Iterable[bytes], timeout: float = 30.0):
        return open_stream(self.channel, timeout=timeout)(iter(batches))

    def stream(self, batches: Iterable[bytes], timeout: float = 30.0) -> list[pb.BatchResult]:
        """Every result of a stream that ends normally."""
        return [
            r for response in self.open_stream(batches, timeout=timeout) for r in response.results
        ]

    def stream_fails(self, batches: Iterable[bytes]) -> tuple[list[pb.BatchResult], Failure]:
        """The results a stream got before it ended with an error, and the error."""
        results: list[pb.BatchResult] = []
        try:
            for response in self.open_stream(batches):
                results.extend(response.results)
        except grpc.RpcError as e:
            return results, failure_of(e)
        raise AssertionError(f"the stream ended without an error after {results}")

    # -- the registry's events

    def project(self, district: str = DONGSHENG, credit_code: str = "") -> str:
        """A project the registry announced (served by `credit_code` if given); its id."""
        registered = project_registered(district)
        self.deliver(registered)
        if credit_code:
            self.deliver(
                registry_events.EnterpriseAssigned(
                    project_id=registered.project_id,
                    district_code=district,
                    credit_code=credit_code,
                )
            )
        return registered.project_id

    # -- builders through the API

    def gateway(
        self, project_id: str | None = None, district: str = DONGSHENG, client: Client | None = None
    ) -> Gateway:
        project_id = project_id or self.project(district)
        registered = (client or self.admin).RegisterGateway(
            pb.RegisterGatewayRequest(request_id=request_id(), project_id=project_id, name="网关")
        )
        return Gateway(
            registered.gateway.id,
            registered.gateway.district_code,
            registered.secret,
            project_id,
        )

    def device(self, gateway: Gateway | str, kind: int, **fields) -> pb.Device:
        gateway_id = gateway if isinstance(gateway, str) else gateway.id
        return self.admin.RegisterDevice(
            pb.RegisterDeviceRequest(
                request_id=request_id(),
                gateway_id=gateway_id,
                kind=kind,
                location=fields.pop("location", "3 号楼地下一层"),
                **fields,
            )
        )

    def get_device(self, device_id: str) -> pb.Device:
        return self.admin.GetDevice(pb.GetDeviceRequest(device_id=device_id))

    def alarms(self, district: str = DONGSHENG, **filters) -> list[pb.Alarm]:
        return list(
            self.admin.ListAlarms(
                pb.ListAlarmsRequest(district_code=district, page_size=500, **filters)
            ).alarms
        )

    def watch(self, client: Client | None = None, districts: Iterable[str] = ()) -> Watch:
        caller = client or self.admin
        call = self.stub.WatchAlarms(
            pb.WatchAlarmsRequest(district_codes=list(districts)),
            metadata=caller.metadata,
            timeout=60,
        )
        watch = Watch(call)
        threading.Thread(target=watch.read, name="watch-alarms", daemon=True).start()
        self._watches.append(watch)
        return watch

    # -- what was stored and announced

    def events(self, *types: type[Message]) -> list[Message]:
        """Decoded alarm events of the outbox, oldest first, of the given types."""
        return self.outbox_events(*types, topic=ALARM_TOPIC)

    def replay_highest(self, gateway_id: str) -> int:
        return self.replay_window(gateway_id)[1]

    def replay_window(self, gateway_id: str) -> tuple[int, int]:
        """(epoch, highest sequence) of the gateway's replay window as stored."""
        with self.engine.connect() as connection:
            return tuple(
                connection.execute(
                    sa.text(
                        "SELECT replay_epoch, replay_highest FROM gateways WHERE gateway_id = :g"
                    ),
                    {"g": gateway_id},
                ).one()
            )


def iot_servers(make_settings) -> contextlib.AbstractContextManager[Callable[..., IotServer]]:
    """For a test module's fixture: `start(**settings overrides) -> IotServer` with the fast
    test settings (FAST) under the overrides; migrates the test's schema once; every server
    started is stopped at the end."""

    @contextlib.contextmanager
    def servers() -> Iterator[Callable[..., IotServer]]:
        with _started_servers(make_settings, IotServer) as start:
            yield lambda **overrides: start(**{**FAST, **overrides})

    return servers()
