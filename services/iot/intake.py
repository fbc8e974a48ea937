"""The intake engine of one instance: takes signed batches from any transport, keeps the state
of the devices it owns in memory, sends each accepted batch to Kafka as one record, and turns
conditions into alarms.

A batch's path:
1. `submit` (the transport's thread): check the signature and the sequence, apply the readings
   to the devices' state (domain.take_readings), hand the record to the readings producer
   (librdkafka) and the conditions to the writer.
2. The producer's delivery report marks the batch durable on Kafka.
3. The writer thread, every few milliseconds while batches are on their way, commits in one
   transaction the alarms raised or cleared since its last round (rows and outbox events) and
   the replay windows of the batches now on Kafka; then it acknowledges those batches and
   tells alarm watchers. With nothing on its way it sleeps until work is given or a timer is
   due.

So an acknowledged batch is on Kafka, its alarms are committed and its sequence is remembered;
a batch resent after a lost acknowledgement is acknowledged again without being processed twice.
Alarm events go through the outbox and the relay's own producer: a backlog of readings on the
readings producer never delays them. The writer also finds silent devices and escalates alarms
nobody acknowledged; device snapshots are written on a thread of their own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from confluent_kafka import KafkaError as LibrdkafkaError
from confluent_kafka import Producer
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from wuye.core.context import DistrictScope
from wuye.core.db import utc
from wuye.core.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from wuye.core.events import Event, add_events
from wuye.core.ids import new_id
from wuye.core.kafka import cloudevent_headers
from wuye.core.logs import log
from wuye.core.wire import timestamp
from wuye.iot import domain, metrics, store
from wuye.iot.domain import (
    AlarmAction,
    AlarmState,
    Change,
    DeviceState,
    GatewayState,
    ReplayWindow,
    Resolution,
)
from wuye.iot.settings import IotSettings
from wuye.iot.signing import gateway_secret, is_signed_by, split_signature
from wuye.iot.v1 import events_pb2 as events
from wuye.iot.v1 import intake_service_pb2 as pb

logger = logging.getLogger("wuye.iot")

ALARM_TOPIC = "wuye.iot.alarm.v1"
# One record per accepted batch, keyed by gateway.
READING_TOPIC = "wuye.iot.reading.v1"
READING_TYPE = pb.ReadingBatch.DESCRIPTOR.full_name
AUTO = "auto"
_PURGED = (LibrdkafkaError._PURGE_QUEUE, LibrdkafkaError._PURGE_INFLIGHT)

Done = Callable[[pb.BatchResult | DomainError], None]


@dataclass(eq=False)
class _Pending:
    """A batch between submit and acknowledgement; `done` gets the result or the failure.
    `window`: the replay window it was checked against, where it is marked once durable (a
    window replaced meanwhile, by a newer epoch or a reset, is not touched)."""

    gateway: GatewayState
    window: ReplayWindow
    sequence: int
    result: pb.BatchResult
    received: float
    waiters: list[Done] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.gateway.gateway_id, self.window.epoch, self.sequence)


class AlarmHub:
    """Fans committed alarm changes out to WatchAlarms streams. A watcher that falls behind is
    dropped (its stream ends and it reconnects) rather than slowing the writer."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._watchers: dict[queue.Queue, frozenset[str]] = {}

    def watch(self, districts: frozenset[str]) -> queue.Queue:
        watcher: queue.Queue = queue.Queue(self._capacity)
        with self._lock:
            self._watchers[watcher] = districts
        return watcher

    def leave(self, watcher: queue.Queue) -> None:
        with self._lock:
            self._watchers.pop(watcher, None)

    def publish(self, alarms: list[pb.Alarm]) -> None:
        with self._lock:
            watchers = list(self._watchers.items())
        for watcher, districts in watchers:
            for alarm in alarms:
                if alarm.district_code not in districts:
                    continue
                try:
                    watcher.put_nowait(alarm)
                except queue.Full:
                    self.leave(watcher)
                    with contextlib.suppress(queue.Full):
                        watcher.get_nowait()
                        watcher.put_nowait(None)  # the end of this watcher's stream
                    break


class Intake:
    def __init__(self, settings: IotSettings, engine: Engine, scope: DistrictScope) -> None:
        key = settings.iot_gateway_key.get_secret_value().encode()
        if not key:
            raise ValueError("WUYE_IOT_GATEWAY_KEY must be set: gateways' secrets derive from it")
        self.settings = settings
        self.hub = AlarmHub(settings.iot_watch_queue)
        self._engine = engine
        self._scope = scope
        self._keys = [key]
        previous = settings.iot_gateway_previous_key.get_secret_value().encode()
        if previous:
            self._keys.append(previous)
        # What each kind of device may read at all, by kind.
        self.valid_ranges = {k: (r.low, r.high) for k, r in settings.iot_valid_ranges.items()}
        self._lock = threading.Lock()
        self.devices: dict[str, DeviceState] = {}
        self.gateways: dict[str, GatewayState] = {}
        self._secrets: dict[tuple[str, int], list[bytes]] = {}
        self._pending: dict[tuple[str, int, int], _Pending] = {}
        self._changes: list[Change] = []
        self._durable: list[_Pending] = []
        # Gateways whose replay window was reset, to be written down in the next round.
        self._reset: list[GatewayState] = []
        self._stop = threading.Event()
        # Set by whatever gives the writer work, after queuing it: wakes an idle writer.
        self._work = threading.Event()
        self._threads: list[threading.Thread] = []
        self._producer: Producer | None = None
        self._max_future_ns = int(settings.iot_max_future_seconds * 1e9)
        self._max_skew_ns = int(settings.iot_max_clock_skew_seconds * 1e9)
        self._district_counters: dict[str, tuple] = {}
        self._headers: dict[str, list[tuple[str, bytes]]] = {}
        self._headers_second = 0
        # Batches Kafka acknowledged, appended by delivery reports in the writer's thread.
        self._delivered: list[_Pending] = []
        self._snapshot_at = 0.0
        self._connection: Connection | None = None
        self._producer_failed = False
        self._retired: list[Producer] = []
        self._window_writer = store.window_writer(engine)
        self._snapshot_writer = store.snapshot_writer(engine)

    # -- life cycle

    def start(self) -> None:
        with self._engine.connect() as connection:
            self.gateways = store.load_gateways(
                connection, self._scope.served, self.settings.iot_replay_window
            )
            self.devices = store.load_devices(connection, self._scope.served, self.valid_ranges)
        self._producer = self._new_producer()
        # How long a thread holding the GIL keeps it from one waiting (the writer, between its
        # database calls): shorter shortens the alarm path but adds switches among the threads.
        sys.setswitchinterval(self.settings.iot_gil_switch_seconds)
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._write_loop, name="iot-writer", daemon=True),
            threading.Thread(target=self._snapshot_loop, name="iot-snapshots", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._update_gauges()
        log(
            logger,
            "intake ready",
            gateways=len(self.gateways),
            devices=len(self.devices),
        )

    def _new_producer(self) -> Producer:
        return Producer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "client.id": f"wuye-iot-intake-{','.join(sorted(self._scope.served))}"[:200],
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "batch.size": 1024 * 1024,
                "queue.buffering.max.kbytes": 256 * 1024,
                "message.timeout.ms": int(self.settings.iot_kafka_timeout_seconds * 1000),
                "reconnect.backoff.max.ms": 2_000,
                # librdkafka's own complaints (a broker away) as our log lines, not raw stderr.
                "logger": logging.getLogger("wuye.iot.kafka"),
            }
        )

    def _renew_producer(self) -> None:
        """After batches failed: a new producer re-reads the cluster and opens a new idempotent
        session, where the old one may stay fenced for good (a broker that lost its state no
        longer knows the producer's id). What the old one still holds fails back to its
        gateways, which resend."""
        old, self._producer = self._producer, self._new_producer()
        self._producer_failed = False
        if old is not None:
            self._retired.append(old)
        log(logger, "readings producer renewed", logging.WARNING)

    def _drain_retired(self) -> None:
        """Fails back what retired producers hold (a batch may have reached one just as it was
        replaced), until they hold nothing."""
        for old in list(self._retired):
            old.purge()
            old.poll(0)
            if len(old) == 0:
                self._retired.remove(old)

    def stop(self) -> None:
        """Finish what was accepted: deliver to Kafka, commit, acknowledge, snapshot; each
        wait bounded by the shutdown grace."""
        timeout = self.settings.shutdown_grace_seconds
        if self._producer is not None:
            self._producer.flush(timeout)
        self._stop.set()
        self._work.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        try:
            self._snapshot()
        except DBAPIError as e:
            log(logger, "last snapshot not written", logging.WARNING, error=repr(e)[:300])

    # -- registration (commands call these after committing)

    def add_gateway(self, gateway_id: str, district: str, project_id: str, version: int) -> None:
        with self._lock:
            if gateway_id not in self.gateways:
                self.gateways[gateway_id] = GatewayState(
                    gateway_id,
                    district,
                    project_id,
                    version,
                    ReplayWindow(self.settings.iot_replay_window),
                )

    def reset_window(self, gateway_id: str, version: int, epoch: int | None) -> None:
        """After a committed rotation or reset: the gateway's window starts empty in `epoch`
        (None: the epoch it is in now) with key `version`. Batches still in flight are marked in
        the window they were taken into, not in this one; the writer writes it down in its next
        round."""
        with self._lock:
            gateway = self.gateways.get(gateway_id)
            if gateway is None:  # an instance that does not serve the gateway's district
                return
            gateway.key_version = version
            kept = gateway.window.epoch if epoch is None else epoch
            gateway.window = ReplayWindow(self.settings.iot_replay_window, kept)
            self._reset.append(gateway)
        self._work.set()

    def window_of(self, gateway_id: str) -> tuple[int, int]:
        """(epoch, highest sequence) of the gateway's replay window in memory."""
        with self._lock:
            window = self.gateways[gateway_id].window
            return window.epoch, window.highest

    def add_device(self, row) -> None:
        device = store.device_state(row, self.valid_ranges)
        with self._lock:
            self.devices.setdefault(device.device_id, device)
        self._update_gauges()

    def secret_of(self, gateway_id: str, version: int) -> bytes:
        return gateway_secret(self._keys[0], gateway_id, version)

    # -- intake

    def submit(
        self,
        raw: bytes,
        transport: str,
        done: Done,
        signature: bytes | None = None,
        gateway_id: str | None = None,
    ) -> None:
        """Takes one batch: raises DomainError if the batch cannot be taken at all; otherwise
        `done` is called once with its result when it is durable, or with the failure.

        `raw` is a serialized batch with its signature as the last field, or (MQTT) a JSON
        batch whose signature comes separately. `gateway_id`: the gateway the transport
        says sent it (an MQTT topic), which the batch must name."""
        received = time.time()
        batch = None
        try:
            batch, signed, signature, encoded = self._parse(raw, signature)
            if gateway_id is not None and batch.gateway_id != gateway_id:
                raise InvalidArgument(
                    [FieldViolation("gateway_id", "is not the gateway the topic names")]
                )
            gateway = self._check(batch, signed, signature)
        except DomainError:
            district = batch.gateway_id[:6] if batch is not None else ""
            known = district if district in self._scope.city else ""
            metrics.BATCHES.labels(known, transport, "refused").inc()
            raise
        sequence, epoch = batch.sequence, batch.epoch
        with self._lock:
            pending = self._pending.get((gateway.gateway_id, epoch, sequence))
            if pending is not None:  # resent while the first is still on its way
                pending.waiters.append(done)
                self._count(gateway.district, transport, "duplicate", len(batch.readings))
                return
            try:
                window = domain.window_for(
                    gateway, epoch, sequence, self.settings.iot_max_sequence_step
                )
            except DomainError:
                metrics.BATCHES.labels(gateway.district, transport, "refused").inc()
                raise
            duplicate = window is None
            if window is not None:
                changes = self._changes
                taken, refused = domain.take_readings(
                    self.devices,
                    gateway.gateway_id,
                    encoded or batch.SerializeToString(),
                    received,
                    time.time_ns() + self._max_future_ns,
                    changes,
                )
                sent_ns = batch.send_time.seconds * 1_000_000_000 + batch.send_time.nanos
                skew = domain.check_clock(gateway, sent_ns, int(received * 1e9), self._max_skew_ns)
                if skew is not None:
                    changes.append(skew)
                result = pb.BatchResult(sequence=sequence, epoch=epoch, accepted=taken)
                for r in refused:
                    result.rejected.add(
                        index=r.index,
                        device_id=r.device_id,
                        reason=r.reason,
                        description=r.description,
                    )
                pending = _Pending(gateway, window, sequence, result, received, [done])
                self._pending[pending.key] = pending
        if duplicate:
            self._count(gateway.district, transport, "duplicate", len(batch.readings))
            done(pb.BatchResult(sequence=sequence, epoch=epoch, duplicate=True))
            return
        self._count(gateway.district, transport, "accepted", taken, len(refused))
        metrics.BATCH_READINGS.observe(len(batch.readings))
        if taken:
            value = encoded if encoded and not refused else self._kept(batch, refused)
            self._produce(gateway, pending, value, received)
        else:
            self._durable_now(pending)
        self._work.set()

    def _parse(self, raw: bytes, signature: bytes | None):
        """(batch, the bytes signed, signature, the batch's protobuf bytes if it came so)."""
        if len(raw) > self.settings.grpc_max_message_bytes:  # MQTT brokers allow far more
            raise InvalidArgument(
                [FieldViolation("batch", f"at most {self.settings.grpc_max_message_bytes} bytes")]
            )
        try:
            if signature is None:
                signed, signature = split_signature(raw)
                return pb.ReadingBatch.FromString(signed), signed, signature, signed
            return json_format.Parse(raw, pb.ReadingBatch()), raw, signature, b""
        except (DecodeError, json_format.ParseError, UnicodeDecodeError) as e:
            raise InvalidArgument(
                [FieldViolation("batch", f"not a valid ReadingBatch: {str(e)[:120]}")],
                reason="MALFORMED_BATCH",
            ) from e

    def _check(self, batch: pb.ReadingBatch, signed: bytes, signature: bytes) -> GatewayState:
        gateway_id = batch.gateway_id
        district = gateway_id[:6]
        if district not in self._scope.city or gateway_id[6:7] != "-":
            raise InvalidArgument([FieldViolation("gateway_id", "is not a gateway id")])
        self._scope.check_served(district)
        gateway = self.gateways.get(gateway_id)
        if gateway is None:
            raise NotFound("GATEWAY_NOT_FOUND", f"no gateway {gateway_id[:40]}")
        if not any(is_signed_by(secret, signed, signature) for secret in self._secrets_of(gateway)):
            raise Unauthenticated(
                "BAD_SIGNATURE" if signature else "SIGNATURE_MISSING",
                "the batch is not signed with this gateway's secret"
                if signature
                else "the batch carries no signature (field 15, HMAC-SHA256)",
                gateway_id=gateway_id,
            )
        problems = domain.batch_problems(
            batch.sequence,
            batch.epoch,
            batch.HasField("send_time"),
            len(batch.readings),
            self.settings.iot_max_batch_readings,
        )
        if problems:
            raise InvalidArgument([FieldViolation(field, text) for field, text in problems])
        return gateway

    def _secrets_of(self, gateway: GatewayState) -> list[bytes]:
        key = (gateway.gateway_id, gateway.key_version)
        secrets = self._secrets.get(key)
        if secrets is None:
            secrets = self._secrets[key] = [
                gateway_secret(k, gateway.gateway_id, gateway.key_version) for k in self._keys
            ]
        return secrets

    @staticmethod
    def _kept(batch: pb.ReadingBatch, refused: list[domain.Refused]) -> bytes:
        """The batch as it goes to Kafka when some readings were refused: without them."""
        dropped = {r.index for r in refused}
        kept = pb.ReadingBatch(
            gateway_id=batch.gateway_id,
            sequence=batch.sequence,
            send_time=batch.send_time,
            epoch=batch.epoch,
        )
        kept.readings.extend(r for i, r in enumerate(batch.readings) if i not in dropped)
        return kept.SerializeToString()

    def _count(
        self, district: str, transport: str, outcome: str, readings: int, rejected: int = 0
    ) -> None:
        counters = self._district_counters.get((district, transport))
        if counters is None:
            counters = self._district_counters[(district, transport)] = (
                metrics.BATCHES.labels(district, transport, "accepted"),
                metrics.BATCHES.labels(district, transport, "duplicate"),
                metrics.READINGS.labels(district, "accepted"),
                metrics.READINGS.labels(district, "duplicate"),
                metrics.READINGS.labels(district, "rejected"),
            )
        if outcome == "accepted":
            counters[0].inc()
            counters[2].inc(readings)
            if rejected:
                counters[4].inc(rejected)
        else:
            counters[1].inc()
            counters[3].inc(readings)

    def _produce(self, gateway: GatewayState, pending: _Pending, value: bytes, at: float) -> None:
        headers = self._headers_of(gateway, pending.window.epoch, pending.sequence, at)

        def delivered(error, _message) -> None:  # in the writer's thread (its poll)
            if error is None:
                self._delivered.append(pending)
            else:
                self._fail(pending, error)

        assert self._producer is not None
        while True:
            try:
                self._producer.produce(
                    READING_TOPIC,
                    value=value,
                    key=gateway.gateway_id.encode(),
                    headers=headers,
                    on_delivery=delivered,
                )
                return
            except BufferError:  # the local queue is full: the broker is slow or away
                time.sleep(0.005)

    def _headers_of(self, gateway: GatewayState, epoch: int, sequence: int, at: float):
        """CloudEvents headers of a readings record: the gateway's fixed ones made once, the
        time once a second; the id is the batch's "<gateway>:<epoch>:<sequence>"."""
        second = int(at)
        fixed = self._headers.get(gateway.gateway_id)
        if fixed is None or self._headers_second != second:
            if self._headers_second != second:
                self._headers.clear()
                self._headers_second = second
            fixed = self._headers[gateway.gateway_id] = [
                header
                for header in cloudevent_headers(
                    event_id="",
                    event_type=READING_TYPE,
                    source="/wuye/iot",
                    subject=gateway.gateway_id,
                    time=second,
                    district=gateway.district,
                    trace_id="",
                )
                if header[0] != "ce_id"
            ]
        return [("ce_id", f"{gateway.gateway_id}:{epoch}:{sequence}".encode()), *fixed]

    def _durable_now(self, pending: _Pending) -> None:
        with self._lock:
            self._durable.append(pending)

    def _fail(self, pending: _Pending, error: LibrdkafkaError) -> None:
        log(logger, "batch not stored", logging.WARNING, error=str(error)[:200])
        if error.code() not in _PURGED:  # purged by a renewal already under way
            self._producer_failed = True
        with self._lock:
            self._pending.pop(pending.key, None)
            waiters = pending.waiters
        failure = Unavailable(
            "BATCH_NOT_STORED", "the batch could not be stored; send it again", error=str(error)
        )
        for done in waiters:
            done(failure)

    # -- the writer

    def _write_loop(self) -> None:
        """Rounds of at most every `iot_flush_seconds` while there is work: take Kafka's
        delivery reports, commit, acknowledge; and the timers' work when it is due. Without
        work, a round waits for some or for the next timer."""
        assert self._producer is not None
        flush = self.settings.iot_flush_seconds
        due = {"silence": 0.0, "escalation": 0.0}
        while True:
            busy = self._stop.is_set() or self._wait_for_work(min(due.values()))
            stopping = self._stop.is_set()
            if busy:
                began = time.monotonic()
                self._producer.poll(flush)  # wakes at the first report, or after `flush`
                rest = flush - (time.monotonic() - began)
                if rest > 0 and not stopping:
                    time.sleep(rest)  # let the round's work gather
            self._producer.poll(0)
            if self._producer_failed and not stopping:
                self._renew_producer()
            if self._retired:
                self._drain_retired()
            now = time.monotonic()
            try:
                if now >= due["silence"]:
                    self._find_silent()
                    due["silence"] = now + self.settings.iot_silence_check_seconds
                self._write_round()
                if now >= due["escalation"]:
                    self.escalate_due()
                    due["escalation"] = now + self.settings.iot_escalation_check_seconds
            except DBAPIError as e:
                log(logger, "write failed, will retry", logging.WARNING, error=repr(e)[:300])
                self._stop.wait(0.5)
            except Exception:
                # A bug must not stop every acknowledgement of the instance: report it, go on.
                logger.exception("writer round failed, will retry")
                self._stop.wait(0.5)
            if stopping:
                if self._connection is not None:
                    self._connection.close()
                return

    def _wait_for_work(self, due: float) -> bool:
        """Waits until the writer has work or is stopped (True), or until `due` on the
        monotonic clock (False). The event is cleared before looking: work given after the look
        sets it again, so none is slept through."""
        while True:
            self._work.clear()
            if self._stop.is_set() or self._has_work():
                return True
            rest = due - time.monotonic()
            if rest <= 0:
                return False
            self._work.wait(rest)

    def _has_work(self) -> bool:
        """Whether a round has something to do: batches or events of the producers to take
        (len counts records on their way, reports and log lines not yet served), a renewal,
        or changes, acknowledgements or windows to write."""
        assert self._producer is not None
        return bool(
            len(self._producer)
            or self._producer_failed
            or self._retired
            or self._delivered
            or self._changes
            or self._durable
            or self._reset
        )

    def _write_round(self) -> None:
        delivered, self._delivered = self._delivered, []
        with self._lock:
            changes, self._changes = self._changes, []
            durable, self._durable = self._durable + delivered, []
            reset, self._reset = self._reset, []
            for pending in durable:
                pending.window.mark(pending.sequence)
        if not changes and not durable and not reset:
            return
        try:
            connection = self._writer_connection()
            with connection.begin():
                alarms = [a for change in changes if (a := self._apply(connection, change))]
                touched = {id(g): g for g in [*reset, *(p.gateway for p in durable)]}
                if touched:
                    store.save_windows(connection, self._window_writer, list(touched.values()))
        except BaseException:
            with self._lock:  # try again next round; the windows are marked already
                self._changes[:0] = changes
                self._durable[:0] = durable
                self._reset[:0] = reset
            self._drop_writer_connection()
            raise
        acknowledged = time.time()
        with self._lock:
            for pending in durable:
                self._pending.pop(pending.key, None)
        for pending in durable:
            metrics.ACK_LATENCY.observe(acknowledged - pending.received)
            for index, done in enumerate(pending.waiters):
                done(
                    pending.result
                    if index == 0
                    else pb.BatchResult(
                        sequence=pending.sequence, epoch=pending.window.epoch, duplicate=True
                    )
                )
        for alarm, transition in alarms:
            self.announce([alarm], transition)

    def announce(self, alarms: list[pb.Alarm], transition: str) -> None:
        """Tells watchers and the metrics of alarm changes once they are committed."""
        self.hub.publish(alarms)
        metrics.count_alarms(alarms, transition)

    def _writer_connection(self) -> Connection:
        """The writer's own connection, kept: a round is one transaction on it."""
        if self._connection is None:
            self._connection = self._engine.connect()
        return self._connection

    def _drop_writer_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(DBAPIError):
                self._connection.invalidate()
            self._connection = None

    def _apply(self, connection: Connection, change: Change) -> tuple[pb.Alarm, str] | None:
        """Raises the alarm of a condition that started (unless one is open), or resolves the
        open one of a condition that ended (where alarms resolve by themselves)."""
        subject = change.device_id or change.gateway_id
        condition = store.condition_of(subject, change.kind)
        open_row = store.open_alarm(connection, condition)
        now = dt.datetime.now(dt.UTC)
        if change.raised:
            if open_row is not None:
                return None
            values = {
                "alarm_id": new_id(change.district, "A"),
                "district_code": change.district,
                "project_id": change.project_id,
                "gateway_id": change.gateway_id,
                "device_id": change.device_id,
                "condition": condition,
                "credit_code": store.credit_code_of(connection, change.project_id),
                "kind": change.kind,
                "state": AlarmState.RAISED,
                "value": change.value,
                "observed_at": _moment(change.observed_ns),
                "raised_at": now,
                "acked_at": None,
                "acked_by": "",
                "resolved_at": None,
                "resolved_by": "",
                "escalated_at": None,
                "note": "",
                "resolution": "",
            }
            connection.execute(store.alarms.insert().values(values))
            alarm = alarm_message(values)
            add_events(connection, [alarm_event(alarm, events.AlarmRaised(alarm=alarm))])
            return alarm, "raised"
        if open_row is None or not self.settings.iot_auto_resolve:
            return None
        if domain.alarm_transition(open_row.state, AlarmAction.CLEAR, open_row.alarm_id) is None:
            return None
        alarm = resolve(
            connection, open_row, AUTO, Resolution.CLEARED, "the condition cleared", now
        )
        add_events(
            connection, [alarm_event(alarm, events.AlarmResolved(alarm=alarm, automatic=True))]
        )
        return alarm, "resolved"

    def _find_silent(self) -> None:
        with self._lock:
            domain.find_silent(self.devices.values(), time.time(), self._changes)
        self._update_gauges()

    def _update_gauges(self) -> None:
        counts: dict[str, list[int]] = {d: [0, 0] for d in self._scope.served}
        with self._lock:
            for device in self.devices.values():
                count = counts.setdefault(device.district, [0, 0])
                count[0] += 1
                count[1] += device.silent
        for district, (total, silent) in counts.items():
            metrics.DEVICES.labels(district).set(total)
            metrics.DEVICES_SILENT.labels(district).set(silent)

    def _snapshot_loop(self) -> None:
        """Snapshots on a thread of their own: writing a district's devices takes seconds,
        which the writer's acknowledgements and alarms must not wait for."""
        while not self._stop.wait(self.settings.iot_snapshot_seconds):
            try:
                self._snapshot()
            except Exception:
                logger.exception("snapshot failed, will retry")

    def _snapshot(self) -> None:
        """Writes down the devices heard or changed since the last snapshot."""
        since, taken_at = self._snapshot_at, time.time()
        with self._lock:  # each device's fields as one reading left them
            dirty = [d for d in self.devices.values() if d.dirty or d.last_seen >= since]
            rows = [store.snapshot_row(d) for d in dirty]
            for device in dirty:
                device.dirty = False
        if not rows:
            return
        try:
            with self._engine.begin() as connection:
                self._snapshot_writer.run(connection, rows)
        except BaseException:
            for device in dirty:
                device.dirty = True
            raise
        self._snapshot_at = taken_at

    def escalate_due(self) -> int:
        """Escalates the alarms of the served districts raised longer ago than allowed and not
        acknowledged; safe to run in several places (each alarm escalates once)."""
        now = dt.datetime.now(dt.UTC)
        cutoff = now - dt.timedelta(seconds=self.settings.iot_escalate_after_seconds)
        due = (
            sa.select(store.alarms)
            .where(
                store.alarms.c.state == AlarmState.RAISED,
                store.alarms.c.escalated_at.is_(None),
                store.alarms.c.raised_at < cutoff,
                store.alarms.c.district_code.in_(sorted(self._scope.served)),
            )
            .order_by(store.alarms.c.raised_at)
            .limit(self.settings.iot_escalation_batch)
        )
        escalated: list[pb.Alarm] = []
        with self._engine.begin() as connection:
            for row in connection.execute(due).all():
                claimed = connection.execute(
                    store.alarms.update()
                    .where(
                        store.alarms.c.alarm_id == row.alarm_id,
                        store.alarms.c.escalated_at.is_(None),
                        store.alarms.c.state == AlarmState.RAISED,
                    )
                    .values(escalated_at=now)
                ).rowcount
                if not claimed:
                    continue
                alarm = alarm_message({**row._asdict(), "escalated_at": now})
                add_events(
                    connection,
                    [
                        alarm_event(
                            alarm,
                            events.AlarmEscalated(
                                alarm=alarm,
                                project_id=alarm.project_id,
                                credit_code=alarm.credit_code,
                                district_code=alarm.district_code,
                                kind=alarm.kind,
                                occur_time=timestamp(now),
                            ),
                        )
                    ],
                )
                escalated.append(alarm)
        if escalated:
            self.announce(escalated, "escalated")
        return len(escalated)


def _moment(ns: int) -> dt.datetime:
    """A time in nanoseconds since the epoch, to the microsecond (exactly: no float on the way)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return dt.datetime.fromtimestamp(seconds, dt.UTC) + dt.timedelta(microseconds=rest // 1000)


def update_alarm(connection: Connection, row, **changes) -> pb.Alarm:
    """Writes `changes` to an alarm's row; returns the alarm as it is then."""
    connection.execute(
        store.alarms.update().where(store.alarms.c.alarm_id == row.alarm_id).values(**changes)
    )
    return alarm_message({**row._asdict(), **changes})


def resolve(
    connection: Connection, row, by: str, resolution: Resolution, note: str, now: dt.datetime
) -> pb.Alarm:
    return update_alarm(
        connection,
        row,
        state=AlarmState.RESOLVED,
        resolved_at=now,
        resolved_by=by,
        resolution=resolution,
        note=note or row.note,
    )


def alarm_message(values: dict) -> pb.Alarm:
    alarm = pb.Alarm(
        id=values["alarm_id"],
        kind=pb.AlarmKind.Value(f"ALARM_KIND_{values['kind']}"),
        state=pb.AlarmState.Value(f"ALARM_STATE_{values['state']}"),
        district_code=values["district_code"],
        project_id=values["project_id"],
        gateway_id=values["gateway_id"],
        device_id=values["device_id"],
        credit_code=values["credit_code"],
        acked_by=values["acked_by"],
        resolved_by=values["resolved_by"],
        note=values["note"],
    )
    if values["resolution"]:
        alarm.resolution = pb.AlarmResolution.Value(f"ALARM_RESOLUTION_{values['resolution']}")
    if values["value"] is not None:
        alarm.value = values["value"]
    for name, moment in (
        ("observe_time", values["observed_at"]),
        ("raise_time", values["raised_at"]),
        ("ack_time", values["acked_at"]),
        ("resolve_time", values["resolved_at"]),
        ("escalate_time", values["escalated_at"]),
    ):
        if moment is not None:
            getattr(alarm, name).CopyFrom(timestamp(utc(moment)))
    return alarm


def alarm_event(alarm: pb.Alarm, message) -> Event:
    return Event(
        topic=ALARM_TOPIC,
        key=alarm.id,
        subject=alarm.id,
        district=alarm.district_code,
        message=message,
    )
