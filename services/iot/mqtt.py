"""The MQTT path of the intake: gateways that publish to a broker rather than call gRPC.

Topic wuye/<district>/<gateway>/readings, QoS 1; the payload is the same signed protobuf batch a
gRPC gateway sends, or the batch as proto3 JSON with its signature (hex, over the payload's
bytes) in the MQTT 5 user property "signature". The session persists, and a message is
acknowledged to the broker only once its batch is durable or refused for good, so the broker
redelivers what an instance had not finished when it stopped. A batch that could not be made
durable (Kafka away) is not acknowledged: the intake resumes its session a little later, and
the broker redelivers it then. Each batch's result (or why it was refused) is published to
wuye/<district>/<gateway>/acks.
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from google.protobuf import json_format
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from wuye.core.errors import DomainError, Unavailable
from wuye.core.logs import log
from wuye.iot.gateway import mqtt_topic
from wuye.iot.intake import Intake
from wuye.iot.v1 import intake_service_pb2 as pb

logger = logging.getLogger("wuye.iot.mqtt")


def readings_topic(district: str, gateway: str = "+") -> str:
    """A gateway's readings topic; by default every gateway's of the district."""
    return mqtt_topic(district, gateway)


class MqttIntake:
    def __init__(
        self,
        url: str,
        intake: Intake,
        districts: frozenset[str],
        deployment: str,
        session_seconds: int,
        resume_seconds: float,
    ) -> None:
        """`deployment` names the database this instance keeps its state in: the broker keeps
        one session per deployment and districts, across restarts. `resume_seconds`: how long
        after a batch could not be made durable the session is resumed for its redelivery."""
        self._url = urlparse(url)
        self._session_seconds = session_seconds
        self._resume_seconds = resume_seconds
        self._resume_lock = threading.Lock()
        self._resume: threading.Timer | None = None
        self._stopped = False
        self._intake = intake
        self._districts = sorted(districts)
        owner = zlib.crc32(f"{deployment}|{','.join(self._districts)}".encode())
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"wuye-iot-{owner:08x}",
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if self._url.username:
            self._client.username_pw_set(self._url.username, self._url.password)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 30)

    def start(self) -> None:
        self._stopped = False
        self._connect()

    def _connect(self) -> None:
        session = Properties(PacketTypes.CONNECT)
        session.SessionExpiryInterval = self._session_seconds
        # Connects in the background and keeps reconnecting: gRPC intake works meanwhile.
        self._client.connect_async(
            self._url.hostname or "127.0.0.1",
            self._url.port or 1883,
            clean_start=False,
            properties=session,
        )
        self._client.loop_start()

    def stop(self) -> None:
        with self._resume_lock:
            self._stopped = True
            if self._resume is not None:
                self._resume.cancel()
        self._client.disconnect()
        self._client.loop_stop()

    def _resume_later(self) -> None:
        """Resumes the session in `resume_seconds` (once however many batches failed): the
        broker redelivers, first, the messages left unacknowledged."""
        with self._resume_lock:
            if self._stopped or self._resume is not None:
                return
            self._resume = threading.Timer(self._resume_seconds, self._resume_session)
            self._resume.daemon = True
            self._resume.start()

    def _resume_session(self) -> None:
        with self._resume_lock:
            self._resume = None
            if self._stopped:
                return
            self._client.disconnect()
            self._client.loop_stop()
            log(logger, "resuming the MQTT session for batches not stored")
            self._connect()

    def _on_connect(self, client, _userdata, _flags, reason, _properties) -> None:
        if reason.is_failure:
            log(logger, "MQTT broker refused", logging.WARNING, reason=str(reason))
            return
        client.subscribe([(readings_topic(d), 1) for d in self._districts])
        log(logger, "subscribed", broker=self._url.hostname, districts=",".join(self._districts))

    def _on_connect_fail(self, _client, _userdata) -> None:
        log(
            logger,
            "MQTT broker unreachable, will retry; readings come by gRPC meanwhile",
            logging.WARNING,
            broker=f"{self._url.hostname}:{self._url.port or 1883}",
        )

    def _on_message(self, client, _userdata, message: mqtt.MQTTMessage) -> None:
        parts = message.topic.split("/")
        # wuye/<district>/<gateway>/readings, the gateway of that district; else none matches.
        gateway = parts[2] if len(parts) == 4 and parts[2].startswith(f"{parts[1]}-") else ""

        def done(result: pb.BatchResult | DomainError) -> None:
            self._answer(gateway, result)
            if isinstance(result, Unavailable):
                self._resume_later()  # unacknowledged, the broker keeps it for redelivery
            else:
                client.ack(message.mid, message.qos)

        try:
            signature = _signature(message) if message.payload[:1] == b"{" else None
            self._intake.submit(message.payload, "mqtt", done, signature, gateway_id=gateway)
        except DomainError as e:
            done(e)

    def _answer(self, gateway: str, result: pb.BatchResult | DomainError) -> None:
        if isinstance(result, DomainError):
            payload = json.dumps(
                {
                    "error": {
                        "code": result.code.name,
                        "reason": result.reason,
                        "message": result.message,
                    }
                }
            )
        else:
            payload = json_format.MessageToJson(result, indent=None)
        district = gateway[:6]
        if district in self._districts:
            self._client.publish(f"wuye/{district}/{gateway}/acks", payload, qos=1)


def _signature(message: mqtt.MQTTMessage) -> bytes:
    for name, value in getattr(message.properties, "UserProperty", None) or ():
        if name == "signature":
            try:
                return bytes.fromhex(value)
            except ValueError:
                return b""
    return b""
