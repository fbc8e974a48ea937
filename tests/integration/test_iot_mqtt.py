"""The MQTT path of the IoT intake against a real Mosquitto, PostgreSQL and Kafka (Tansu): a
gateway publishes its batch (signed protobuf, or proto3 JSON signed in the MQTT 5 user property
"signature") to wuye/<district>/<gateway>/readings; the alarm it raises reaches the duty desk's
watch and the batch's result comes back on wuye/<district>/<gateway>/acks. A forged batch is
refused on the acks topic and changes nothing.

The broker may be shared with other intakes (a platform started by hand, other suites), which
answer for the districts they serve: each test's intake serves a city of one district of its
own, so only it answers for the test's gateways and it never answers for anyone else's."""

from __future__ import annotations

import json
import queue
import random
import subprocess
import uuid

import paho.mqtt.client as mqtt
import pytest
from google.protobuf import json_format
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from test_iot_support import FACILITY, READING_TOPIC, Gateway, iot_servers

from wuye.core.kafka import ensure_topics
from wuye.iot.signing import signature_of
from wuye.iot.v1 import events_pb2 as ev
from wuye.iot.v1 import intake_service_pb2 as pb

pytestmark = pytest.mark.integration

MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883
ACK_TIMEOUT_SECONDS = 10.0


class Listener:
    """An MQTT 5 client of the test's own: publishes as a gateway, collects the acks."""

    def __init__(self) -> None:
        self.acks: queue.SimpleQueue = queue.SimpleQueue()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"wuye-test-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = lambda _c, _u, message: self.acks.put(json.loads(message.payload))
        self.client.connect(MQTT_HOST, MQTT_PORT)
        self.client.loop_start()

    def follow(self, gateway: Gateway) -> None:
        _, mid = self.client.subscribe(f"wuye/{gateway.district}/{gateway.id}/acks", qos=1)
        assert mid is not None

    def publish(self, gateway: Gateway, payload: bytes, signature: bytes | None = None) -> None:
        properties = None
        if signature is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = [("signature", signature.hex())]
        info = self.client.publish(
            f"wuye/{gateway.district}/{gateway.id}/readings", payload, qos=1, properties=properties
        )
        info.wait_for_publish(5)

    def next_ack(self) -> dict:
        return self.acks.get(timeout=ACK_TIMEOUT_SECONDS)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def listener():
    client = Listener()
    yield client
    client.close()


@pytest.fixture
def district() -> str:
    return f"19{random.randint(0, 9999):04d}"


def mqtt_settings(district: str, **overrides) -> dict:
    """An intake on the test's MQTT broker, serving a city of the test's own district."""
    return {
        "iot_mqtt_url": f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
        "city_districts": {district: "测试区"},
        **overrides,
    }


@pytest.fixture
def iot(make_settings, district):
    with iot_servers(make_settings) as start:
        yield start(**mqtt_settings(district))


@pytest.fixture
def gateway(iot, listener, district) -> Gateway:
    return subscribed_gateway(iot, listener, district)


def subscribed_gateway(iot, listener: Listener, district: str) -> Gateway:
    """A gateway whose acks the listener follows, once the intake is subscribed: garbage is
    published until its refusal comes back."""
    registered = iot.gateway(district=district)
    listener.follow(registered)
    for _ in range(int(ACK_TIMEOUT_SECONDS / 0.5)):
        listener.publish(registered, b"\xff not a batch")
        try:
            ack = listener.acks.get(timeout=0.5)
        except queue.Empty:
            continue
        assert ack["error"]["code"] == "INVALID_ARGUMENT"
        while not listener.acks.empty():
            listener.acks.get()
        return registered
    raise AssertionError("the intake never answered on MQTT")


def json_batch(batch: pb.ReadingBatch) -> bytes:
    return json_format.MessageToJson(batch, indent=None).encode()


def test_a_protobuf_batch_by_mqtt_raises_the_alarm_the_duty_desk_watches(
    iot, gateway, listener, district, wait_until
):
    device = iot.device(gateway, FACILITY).id
    watch = iot.watch(iot.authority(district))

    listener.publish(gateway, gateway.signed([(device, 0.0), (f"{district}-Dnone", 1.0)]))

    ack = listener.next_ack()
    assert (ack["sequence"], ack["accepted"]) == ("1", 1)
    assert ack["rejected"][0]["reason"] == "UNKNOWN_DEVICE"
    [alarm] = wait_until(lambda: watch.alarms)
    assert (alarm.kind, alarm.device_id) == (pb.ALARM_KIND_FACILITY_OFF, device)
    assert iot.get_device(device).last_value == 0.0


def test_a_json_batch_signed_in_the_user_property_is_taken(iot, gateway, listener, wait_until):
    device = iot.device(gateway, FACILITY).id
    watch = iot.watch()
    payload = json_batch(gateway.batch([(device, 0.0)]))

    listener.publish(gateway, payload, signature=signature_of(gateway.secret, payload))

    ack = listener.next_ack()
    assert (ack["sequence"], ack["accepted"]) == ("1", 1)
    [alarm] = wait_until(lambda: watch.alarms)
    assert (alarm.kind, alarm.gateway_id) == (pb.ALARM_KIND_FACILITY_OFF, gateway.id)
    listener.publish(gateway, payload, signature=signature_of(gateway.secret, payload))
    assert listener.next_ack() == {"sequence": "1", "duplicate": True}


def test_a_batch_published_by_mosquitto_pub_is_taken(iot, gateway, listener, wait_until):
    device = iot.device(gateway, FACILITY).id
    watch = iot.watch()
    payload = json_batch(gateway.batch([(device, 0.0)]))

    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            MQTT_HOST,
            "-p",
            str(MQTT_PORT),
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            f"wuye/{gateway.district}/{gateway.id}/readings",
            "-D",
            "publish",
            "user-property",
            "signature",
            signature_of(gateway.secret, payload).hex(),
            "-m",
            payload.decode(),
        ],
        check=True,
        timeout=10,
    )

    ack = listener.next_ack()
    assert (ack["sequence"], ack["accepted"]) == ("1", 1)
    [alarm] = wait_until(lambda: watch.alarms)
    assert alarm.device_id == device
    [raised] = iot.events(ev.AlarmRaised)
    assert raised.alarm.id == alarm.id


def test_a_forged_batch_by_mqtt_is_refused_and_changes_nothing(iot, gateway, listener):
    device = iot.device(gateway, FACILITY).id
    payload = json_batch(gateway.batch([(device, 0.0)], sequence=1))
    forged_protobuf = gateway.sign(gateway.batch([(device, 0.0)], sequence=1), secret=b"z" * 32)

    listener.publish(gateway, payload, signature=signature_of(b"z" * 32, payload))
    forged_json = listener.next_ack()
    listener.publish(gateway, payload)  # no signature at all
    unsigned = listener.next_ack()
    listener.publish(gateway, forged_protobuf)
    forged = listener.next_ack()

    for ack in (forged_json, unsigned, forged):
        assert ack["error"]["code"] == "UNAUTHENTICATED", ack
    assert iot.count("alarms") == 0
    assert iot.count("outbox", event_type="wuye.iot.v1.AlarmRaised") == 0
    assert iot.replay_highest(gateway.id) == 0
    assert not iot.get_device(device).HasField("last_value")


def test_a_batch_naming_another_gateway_than_its_topic_is_refused(iot, gateway, listener, district):
    other = iot.gateway(district=district)
    device = iot.device(other, FACILITY).id
    theirs = other.signed([(device, 0.0)])

    listener.publish(gateway, theirs)  # on this gateway's topic

    ack = listener.next_ack()
    assert ack["error"]["code"] == "INVALID_ARGUMENT"
    assert iot.replay_highest(other.id) == 0
    assert iot.count("alarms") == 0


def test_a_payload_larger_than_a_grpc_message_is_refused_unread(iot, gateway, listener):
    """Brokers carry messages of hundreds of megabytes; the intake reads no more than gRPC
    would let through."""
    limit = iot.settings.grpc_max_message_bytes
    listener.publish(gateway, b"{" + b" " * limit + b"}")

    ack = listener.next_ack()
    assert ack["error"]["code"] == "INVALID_ARGUMENT", ack
    assert str(limit) in ack["error"]["message"]
    assert iot.replay_highest(gateway.id) == 0


def test_a_json_batch_carries_its_epoch_and_an_older_epoch_is_refused_with_its_reason(
    iot, gateway, listener
):
    device = iot.device(gateway, FACILITY).id
    gateway.restart(epoch=9)
    newer = json_batch(gateway.batch([(device, 1.0)]))
    older = json_batch(gateway.batch([(device, 0.0)], sequence=1, epoch=8))

    listener.publish(gateway, newer, signature=signature_of(gateway.secret, newer))
    taken = listener.next_ack()
    listener.publish(gateway, older, signature=signature_of(gateway.secret, older))
    refused = listener.next_ack()

    assert (taken["sequence"], taken["epoch"], taken["accepted"]) == ("1", "9", 1)
    assert refused["error"]["code"] == "FAILED_PRECONDITION"
    assert refused["error"]["reason"] == "STALE_EPOCH"
    assert iot.replay_window(gateway.id) == (9, 1)
    assert iot.count("alarms") == 0


def test_a_batch_not_stored_is_not_acknowledged_and_the_broker_redelivers_it(
    make_settings, district, listener, private_broker
):
    """Kafka is away: the batch fails back (UNAVAILABLE on the acks topic) and stays
    unacknowledged with the broker, which redelivers it when the intake resumes its session;
    once Kafka is back it is taken, without the gateway publishing it again."""
    private_broker.stop()
    with iot_servers(make_settings) as start:
        iot = start(
            **mqtt_settings(
                district,
                kafka_bootstrap=private_broker.bootstrap,
                iot_kafka_timeout_seconds=1,
                iot_mqtt_resume_seconds=0.5,
            )
        )
        gateway = subscribed_gateway(iot, listener, district)
        device = iot.device(gateway, FACILITY).id
        listener.publish(gateway, gateway.signed([(device, 0.0)]))

        not_stored = listener.next_ack()
        private_broker.start()
        ensure_topics(iot.settings, [READING_TOPIC], partitions=1)
        ack = listener.next_ack()
        while "error" in ack:  # redelivered before Kafka was back
            assert ack["error"]["code"] == "UNAVAILABLE", ack
            ack = listener.next_ack()

        assert not_stored["error"]["code"] == "UNAVAILABLE"
        assert not_stored["error"]["reason"] == "BATCH_NOT_STORED"
        assert (ack["sequence"], ack["accepted"]) == ("1", 1)
        [raised] = iot.events(ev.AlarmRaised)
        assert raised.alarm.device_id == device
