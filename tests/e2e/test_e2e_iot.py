"""The IoT intake as a new user meets it on the platform `make run` starts: a project the
registry announced gets a gateway and a fire facility; an independent MQTT client
(mosquitto_pub) posts that the facility was switched off; the duty desk sees the alarm in
WatchAlarms, and the alarm and the readings are on Kafka. Only sockets and the command line."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest
from e2e_support import CALL_TIMEOUT_SECONDS, poll, read_events, served_projects

from wuye.iot.signing import signature_of
from wuye.iot.v1 import events_pb2 as iot_events
from wuye.iot.v1 import intake_service_pb2 as pb
from wuye.iot.v1 import intake_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883


@pytest.fixture
def iot(platform) -> Iterator[pb_grpc.IntakeServiceStub]:
    """The IoT intake at the address the launcher published."""
    with grpc.insecure_channel(platform.description["grpc"]["iot"]) as channel:
        yield pb_grpc.IntakeServiceStub(channel)


def _register_gateway(platform, iot, project_id: str) -> pb.RegisterGatewayResponse:
    """Once the registry's event has reached the intake, the project takes a gateway."""
    request = pb.RegisterGatewayRequest(
        request_id=str(uuid.uuid4()), project_id=project_id, name="1 号楼消防控制室网关"
    )

    def register() -> pb.RegisterGatewayResponse | None:
        try:
            return iot.RegisterGateway(
                request, metadata=platform.auth(), timeout=CALL_TIMEOUT_SECONDS
            )
        except grpc.RpcError as e:
            if e.code() is grpc.StatusCode.FAILED_PRECONDITION:  # the event is on its way
                return None
            raise

    return poll(register, "the intake learnt the project")


def _mosquitto_pub(topic: str, payload: bytes, signature: bytes) -> None:
    subprocess.run(
        [
            shutil.which("mosquitto_pub") or "mosquitto_pub",
            "-h", MQTT_HOST, "-p", str(MQTT_PORT), "-V", "mqttv5", "-q", "1",
            "-t", topic,
            "-D", "publish", "user-property", "signature", signature.hex(),
            "-s",
        ],
        input=payload,
        check=True,
        timeout=30,
    )  # fmt: skip


def test_a_facility_switched_off_by_mqtt_is_an_alarm_for_the_duty_desk_and_on_kafka(
    platform, iot, new_filing
):
    auth = platform.auth()
    code, [project_id], _ = served_projects(platform, new_filing, 1)
    registered = _register_gateway(platform, iot, project_id)
    gateway = registered.gateway
    assert gateway.mqtt_topic == f"wuye/150602/{gateway.id}/readings"
    # The project's enterprise comes in a later registry event than the project itself.
    poll(
        lambda: (
            iot.GetGateway(
                pb.GetGatewayRequest(gateway_id=gateway.id),
                metadata=auth,
                timeout=CALL_TIMEOUT_SECONDS,
            ).credit_code
            == code
            or None
        ),  # poll waits while the probe gives None
        "the intake learnt the project's enterprise",
    )
    facility = iot.RegisterDevice(
        pb.RegisterDeviceRequest(
            request_id=str(uuid.uuid4()),
            gateway_id=gateway.id,
            kind=pb.DEVICE_KIND_FIRE_FACILITY,
            location="1 号楼消防控制室 火灾报警控制器",
        ),
        metadata=auth,
        timeout=CALL_TIMEOUT_SECONDS,
    )

    # The duty desk watches Dongsheng.
    watched: list[pb.Alarm] = []
    watch = iot.WatchAlarms(pb.WatchAlarmsRequest(district_codes=["150602"]), metadata=auth)

    def keep_watching() -> None:
        with contextlib.suppress(grpc.RpcError):  # cancelled when the test has seen enough
            watched.extend(watch)

    threading.Thread(target=keep_watching, daemon=True).start()

    # A gateway of another make posts by MQTT, as JSON, signed with its secret.
    now_ns = time.time_ns()
    batch = {
        "gatewayId": gateway.id,
        "sequence": "1",
        "sendTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ns / 1e9)),
        "readings": [{"deviceId": facility.id, "value": 0, "observeTimeUnixNano": str(now_ns)}],
    }
    payload = json.dumps(batch).encode()
    _mosquitto_pub(gateway.mqtt_topic, payload, signature_of(registered.secret, payload))

    def raised() -> pb.Alarm | None:
        # Other tests' alarms in the district may be open on the shared platform.
        return next(
            (a for a in watched if a.state == pb.ALARM_STATE_RAISED and a.device_id == facility.id),
            None,
        )

    alarm = poll(raised, "the duty desk saw the alarm", timeout=30)
    watch.cancel()
    assert (alarm.kind, alarm.device_id, alarm.project_id, alarm.credit_code) == (
        pb.ALARM_KIND_FACILITY_OFF,
        facility.id,
        project_id,
        code,
    )
    assert alarm.value == 0

    device = iot.GetDevice(
        pb.GetDeviceRequest(device_id=facility.id), metadata=auth, timeout=CALL_TIMEOUT_SECONDS
    )
    assert (device.last_value, device.last_observe_time.ToNanoseconds()) == (0, now_ns)

    def alarm_event(message) -> pb.Alarm | None:
        if dict(message.headers() or ()).get("ce_type") != b"wuye.iot.v1.AlarmRaised":
            return None
        found = iot_events.AlarmRaised.FromString(message.value()).alarm
        return found if found.id == alarm.id else None

    [published] = read_events(platform.kafka_bootstrap, "wuye.iot.alarm.v1", alarm_event, 1)
    assert published.observe_time.ToMicroseconds() == now_ns // 1000

    def reading_record(message) -> pb.ReadingBatch | None:
        if message.key() != gateway.id.encode():
            return None
        assert dict(message.headers())["ce_id"] == f"{gateway.id}:0:1".encode()  # epoch 0
        return pb.ReadingBatch.FromString(message.value())

    [record] = read_events(platform.kafka_bootstrap, "wuye.iot.reading.v1", reading_record, 1)
    assert [(r.device_id, r.value) for r in record.readings] == [(facility.id, 0.0)]


def test_the_simulator_streams_readings_and_its_faults_raise_alarms(platform):
    """What a newcomer runs beside `make run`: readings acknowledged, faults alarmed, and a
    summary when interrupted."""
    simulator = subprocess.Popen(
        [
            sys.executable, "-m", "wuye.iot.simulate",
            "--state-dir", str(platform.state_dir),
            "--gateways", "2", "--devices", "10", "--rate", "200", "--faults", "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(simulator.stdout), daemon=True)
    reader.start()
    try:
        poll(
            lambda: (
                any("alarms raised" in line and "raised 0 " not in line for line in lines) or None
            ),
            "the simulator saw an alarm raised",
        )
    finally:
        simulator.send_signal(signal.SIGINT)
        simulator.wait(30)
        reader.join(5)
    output = "".join(lines)
    summary = output[output.index("summary after") :]
    sent, acknowledged = re.search(
        r"readings sent ([\d,]+), acknowledged ([\d,]+)", summary
    ).groups()
    assert int(acknowledged.replace(",", "")) > 0, output[-2000:]
    assert int(acknowledged.replace(",", "")) <= int(sent.replace(",", ""))
    assert simulator.returncode == 0, output[-2000:]
