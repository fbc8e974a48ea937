"""The gateway side of the IoT intake: signed batches, a stream with a window of unacknowledged
batches, one-off posts, and the MQTT topic and JSON payload. The simulator, the bench and the
tests drive the intake through it, so it stays lean: it runs in load generators.

Batches travel pre-serialized: the gRPC calls are made without a request serializer, so the
signed bytes reach the wire as they are (a signature covers bytes, not a message that another
encoder might write differently).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from wuye.iot import signing
from wuye.iot.v1 import intake_service_pb2 as pb

SERVICE = "wuye.iot.v1.IntakeService"
STREAM_METHOD = f"/{SERVICE}/StreamReadings"
POST_METHOD = f"/{SERVICE}/PostReadings"

# What each kind of device reads when all is well, by DeviceKind name without its prefix; the
# simulator and the bench give a gateway's devices these kinds in turn, in this order.
NORMAL_VALUES = {
    "HYDRANT_PRESSURE": 0.35,
    "FIRE_PUMP": 1.0,
    "SPRINKLER_VALVE": 1.0,
    "FIRE_FACILITY": 1.0,
    "SMOKE_DETECTOR": 0.0,
    "FIRE_DOOR": 0.0,
    "FIRE_LANE": 0.0,
}

# (device_id, value, observe_time_unix_nano)
Reading = tuple[str, float, int]
Metadata = Sequence[tuple[str, str]]
# Opens StreamReadings: signed batches in, responses out (a grpc multicallable fits).
OpenStream = Callable[[Iterator[bytes]], Iterable[pb.StreamReadingsResponse]]


def encode_readings(readings: Iterable[Reading]) -> bytes:
    """The batch's `readings` field alone. Encoded once, it can go into many batches: the
    encoder writes fields in number order, so header + readings is the whole batch's bytes."""
    return pb.ReadingBatch(
        readings=[
            pb.Reading(device_id=device, value=value, observe_time_unix_nano=at)
            for device, value, at in readings
        ]
    ).SerializeToString()


def new_epoch() -> int:
    """A boot epoch for a gateway starting now: the time in milliseconds, greater at each start
    of a gateway whose clock is right. A gateway without a trustworthy clock keeps a boot
    counter instead."""
    return time.time_ns() // 1_000_000


def signed_batch(
    secret: bytes,
    gateway_id: str,
    sequence: int,
    readings: Iterable[Reading] | bytes,
    send_time_ns: int | None = None,
    epoch: int = 0,
) -> bytes:
    """A batch as sent: serialized with the signature unset, then signed (signing.sign).
    `readings` may be tuples or the bytes of encode_readings; send_time defaults to now."""
    at = time.time_ns() if send_time_ns is None else send_time_ns
    header = pb.ReadingBatch(
        gateway_id=gateway_id,
        sequence=sequence,
        send_time=Timestamp(seconds=at // 1_000_000_000, nanos=at % 1_000_000_000),
    ).SerializeToString()
    body = readings if isinstance(readings, bytes) else encode_readings(readings)
    # The epoch's field (5) after the readings (4): the bytes an encoder writes for the whole.
    return signing.sign(secret, header + body + _epoch_field(epoch))


@functools.lru_cache(maxsize=64)
def _epoch_field(epoch: int) -> bytes:
    """Encoded once per epoch: a load generator signs thousands of batches a second."""
    return pb.ReadingBatch(epoch=epoch).SerializeToString()


def open_stream(
    channel: Any, metadata: Metadata = (), timeout: float | None = None
) -> Callable[..., Any]:
    """StreamReadings, bytes in and StreamReadingsResponse out, on either kind of channel:
    on a grpc channel, call it with a request iterator (GatewayStream); on a grpc.aio channel,
    call it with no arguments, then write() batches and read responses with `async for`
    (AsyncGatewayStream). Each call opens one stream."""
    call = channel.stream_stream(
        STREAM_METHOD,
        request_serializer=None,
        response_deserializer=pb.StreamReadingsResponse.FromString,
    )
    return functools.partial(call, metadata=tuple(metadata), timeout=timeout)


def post_batch(
    channel: Any, raw: bytes, metadata: Metadata = (), timeout: float | None = 10.0
) -> pb.BatchResult:
    """PostReadings: one signed batch, answered once it is durable."""
    call = channel.unary_unary(
        POST_METHOD, request_serializer=None, response_deserializer=pb.BatchResult.FromString
    )
    return call(raw, metadata=tuple(metadata), timeout=timeout)


# Why the centre refuses a batch for its numbering: the gateway resynchronises (restart()).
RESYNCHRONISE = frozenset({"STALE_EPOCH", "SEQUENCE_TOO_OLD", "SEQUENCE_TOO_FAR_AHEAD"})


def refusal_reason(error: BaseException | None) -> str:
    """The reason (google.rpc.ErrorInfo) the centre gave for refusing a call; "" if none."""
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    info = error_details_pb2.ErrorInfo()
    for detail in status.details if status is not None else ():
        if detail.Unpack(info):
            return info.reason
    return ""


class StreamBroken(Exception):
    """The stream ended (an error, or the server hung up) with batches still unacknowledged;
    `cause` is the RpcError or None. Reconnect to resend them."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__(f"the reading stream ended: {cause!r}")
        self.cause = cause


@dataclass
class StreamTally:
    batches_acked: int = 0
    duplicates: int = 0
    readings_accepted: int = 0
    readings_rejected: int = 0
    reconnects: int = 0


class _Book:
    """What a gateway's stream keeps, whichever way it is driven: its epoch, the next sequence,
    the batches sent and not yet acknowledged (in sequence order), and the tally. The callers
    hold their own lock around it."""

    def __init__(
        self,
        gateway_id: str,
        secret: bytes,
        window: int,
        first_sequence: int,
        epoch: int | None,
        on_result: Callable[[pb.BatchResult], None] | None,
    ) -> None:
        self.gateway_id = gateway_id
        self.secret = secret
        self.window = window
        self.epoch = new_epoch() if epoch is None else epoch
        self.next = first_sequence
        self.on_result = on_result
        self.unacked: dict[int, bytes] = {}
        self.tally = StreamTally()

    def has_room(self) -> bool:
        return len(self.unacked) < self.window

    def add(
        self, readings: Iterable[Reading] | bytes, send_time_ns: int | None
    ) -> tuple[int, bytes]:
        """The next batch, numbered and signed, kept until acknowledged: (sequence, bytes)."""
        sequence = self.next
        raw = signed_batch(
            self.secret, self.gateway_id, sequence, readings, send_time_ns, self.epoch
        )
        self.unacked[sequence] = raw
        self.next += 1
        return sequence, raw

    def restart(self, epoch: int | None) -> None:
        """A new epoch (new_epoch() unless given): the unacknowledged batches, in order, are
        numbered from 1 in it and signed again; their readings and send times stay."""
        self.epoch = new_epoch() if epoch is None else epoch
        renumbered: dict[int, bytes] = {}
        for sequence, raw in enumerate(self.unacked.values(), start=1):
            batch = pb.ReadingBatch.FromString(raw)
            batch.ClearField("signature")
            batch.epoch, batch.sequence = self.epoch, sequence
            renumbered[sequence] = signing.sign(self.secret, batch.SerializeToString())
        self.unacked = renumbered
        self.next = len(renumbered) + 1

    def take(self, response: pb.StreamReadingsResponse) -> list[pb.BatchResult]:
        """The results of a response not seen before (a resend may be acknowledged twice)."""
        tally = self.tally
        fresh = []
        for result in response.results:
            if self.unacked.pop(result.sequence, None) is None:
                continue
            fresh.append(result)
            tally.batches_acked += 1
            tally.duplicates += result.duplicate
            tally.readings_accepted += result.accepted
            tally.readings_rejected += len(result.rejected)
        return fresh

    def report(self, fresh: list[pb.BatchResult]) -> None:
        if self.on_result is not None:
            for result in fresh:
                self.on_result(result)


class _GatewayStreamBase:
    """What both streams share: the book, the call's state, and how they look from outside."""

    def __init__(
        self,
        open_stream: Any,
        gateway_id: str,
        secret: bytes,
        window: int,
        first_sequence: int,
        epoch: int | None,
        on_result: Callable[[pb.BatchResult], None] | None,
    ) -> None:
        self._open = open_stream
        self._book = _Book(gateway_id, secret, window, first_sequence, epoch, on_result)
        self._call: Any = None
        self._ended = True
        self.error: BaseException | None = None
        self.connected_once = False

    @property
    def gateway_id(self) -> str:
        return self._book.gateway_id

    @property
    def tally(self) -> StreamTally:
        return self._book.tally

    @property
    def epoch(self) -> int:
        return self._book.epoch

    @property
    def in_flight(self) -> int:
        return len(self._book.unacked)

    @property
    def broken(self) -> bool:
        return self._ended

    def _restart(self, epoch: int | None) -> None:
        if not self._ended:
            raise RuntimeError("restart a broken stream only, before connecting again")
        self._book.restart(epoch)

    def _opening(self) -> None:
        """A new call: not ended, and a reconnection if there was one before."""
        self._ended, self.error = False, None
        if self.connected_once:
            self._book.tally.reconnects += 1
        self.connected_once = True

    def _next_batch(
        self, readings: Iterable[Reading] | bytes, send_time_ns: int | None
    ) -> tuple[int, bytes]:
        """The next batch to send, (sequence, bytes); StreamBroken if the stream ended.
        Called holding the stream's lock, once the window has room."""
        if self._ended:
            raise StreamBroken(self.error)
        return self._book.add(readings, send_time_ns)


_END = object()


def _requests(outgoing: queue.SimpleQueue) -> Iterator[bytes]:
    while (raw := outgoing.get()) is not _END:
        yield raw


class GatewayStream(_GatewayStreamBase):
    """One gateway's StreamReadings, with at most `window` batches unacknowledged.

    `send` numbers and signs a batch, keeps it until its result comes and blocks while the
    window is full. When the stream breaks, `send` raises StreamBroken; `connect` opens a new
    stream and first resends every unacknowledged batch, byte for byte (so under its first
    sequence number), which the service acknowledges without taking it twice.
    A stream is one start of the gateway: it numbers from `first_sequence` in its own `epoch`
    (by default new_epoch(), so that the centre takes a restarted gateway's batches).
    `on_result` runs on the receiving thread for each BatchResult: keep it short.
    For many gateways in one process, AsyncGatewayStream costs far less a batch.
    """

    def __init__(
        self,
        open_stream: OpenStream,
        gateway_id: str,
        secret: bytes,
        *,
        window: int = 8,
        first_sequence: int = 1,
        epoch: int | None = None,
        on_result: Callable[[pb.BatchResult], None] | None = None,
    ) -> None:
        super().__init__(open_stream, gateway_id, secret, window, first_sequence, epoch, on_result)
        self._cond = threading.Condition()
        self._outgoing: queue.SimpleQueue | None = None
        self._receiver: threading.Thread | None = None

    # -- state

    def unacked_sequences(self) -> list[int]:
        with self._cond:
            return list(self._book.unacked)

    def restart(self, epoch: int | None = None) -> None:
        """After the centre refused the stream's epoch or sequence (FAILED_PRECONDITION:
        STALE_EPOCH, SEQUENCE_TOO_OLD, SEQUENCE_TOO_FAR_AHEAD): resynchronise as a gateway that
        restarted, the unacknowledged batches numbered from 1 in a new epoch. Then connect."""
        with self._cond:
            self._restart(epoch)

    # -- connecting

    def connect(self) -> None:
        """Opens a stream; what the last one left unacknowledged goes first, in order."""
        with self._cond:
            self._stop_requests()
            outgoing: queue.SimpleQueue = queue.SimpleQueue()
            for raw in self._book.unacked.values():
                outgoing.put(raw)
            self._outgoing = outgoing
            self._opening()
        call = self._open(_requests(outgoing))
        self._call = call
        self._receiver = threading.Thread(
            target=self._receive, args=(call, outgoing), name=f"acks-{self.gateway_id}", daemon=True
        )
        self._receiver.start()

    def _stop_requests(self) -> None:
        if self._outgoing is not None:
            self._outgoing.put(_END)  # ends the request iterator: the stream half-closes

    def _receive(self, call: Iterable[pb.StreamReadingsResponse], outgoing: Any) -> None:
        error: BaseException | None = None
        try:
            for response in call:
                with self._cond:
                    fresh = self._book.take(response)
                    self._cond.notify_all()
                self._book.report(fresh)
        except Exception as e:  # grpc.RpcError, or a transport's own
            error = e
        with self._cond:
            if outgoing is self._outgoing:
                self._ended, self.error = True, error
                self._stop_requests()
            self._cond.notify_all()

    # -- sending

    def send(
        self,
        readings: Iterable[Reading] | bytes,
        timeout: float | None = None,
        send_time_ns: int | None = None,
    ) -> int:
        """Numbers, signs and sends one batch once the window has room; returns its sequence.
        Raises StreamBroken when the stream ended, TimeoutError when the window stays full."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._ended or self._book.has_room(), timeout):
                raise TimeoutError(f"{self._book.window} batches unacknowledged for {timeout} s")
            sequence, raw = self._next_batch(readings, send_time_ns)
            self._outgoing.put(raw)
        return sequence

    def wait_acked(self, timeout: float | None = None) -> bool:
        """True once nothing is unacknowledged; False on timeout or when the stream ended."""
        with self._cond:
            self._cond.wait_for(lambda: self._ended or not self._book.unacked, timeout)
            return not self._book.unacked

    def close(self, timeout: float = 10.0) -> None:
        """Half-closes the stream, waits for the server to finish it, then cancels it."""
        with self._cond:
            self._stop_requests()
        if self._receiver is not None:
            self._receiver.join(timeout)
        cancel = getattr(self._call, "cancel", None)
        if cancel is not None:
            cancel()
        if self._receiver is not None:
            self._receiver.join(1.0)


class AsyncGatewayStream(_GatewayStreamBase):
    """GatewayStream for asyncio (grpc.aio): the same window, numbering and resending, with
    coroutines instead of threads. One event loop drives many gateways, and a batch costs
    its writer a fraction of what a thread-driven stream costs (the bench's load generators
    use it). `open_stream`: open_stream(channel) on a grpc.aio channel, or anything opening
    such a call.
    """

    def __init__(
        self,
        open_stream: Callable[[], Any],
        gateway_id: str,
        secret: bytes,
        *,
        window: int = 8,
        first_sequence: int = 1,
        epoch: int | None = None,
        on_result: Callable[[pb.BatchResult], None] | None = None,
    ) -> None:
        super().__init__(open_stream, gateway_id, secret, window, first_sequence, epoch, on_result)
        self._changed = asyncio.Condition()
        self._receiver: asyncio.Task | None = None

    def restart(self, epoch: int | None = None) -> None:
        """As GatewayStream.restart: the unacknowledged batches numbered from 1 in a new epoch,
        after the centre refused the stream's epoch or sequence. Then connect."""
        self._restart(epoch)

    async def connect(self) -> None:
        """Opens a stream; what the last one left unacknowledged goes first, in order."""
        if self._call is not None:
            self._call.cancel()
        call = self._call = self._open()
        self._opening()
        self._receiver = asyncio.create_task(self._receive(call))
        for raw in list(self._book.unacked.values()):
            await self._write(call, raw)

    async def _receive(self, call: Any) -> None:
        error: BaseException | None = None
        try:
            async for response in call:
                fresh = self._book.take(response)
                async with self._changed:
                    self._changed.notify_all()
                self._book.report(fresh)
        except asyncio.CancelledError:
            error = StreamBroken(None)
        except Exception as e:  # grpc.aio.AioRpcError, or a transport's own
            error = e
        if call is self._call:
            self._ended, self.error = True, error
        async with self._changed:
            self._changed.notify_all()

    async def _write(self, call: Any, raw: bytes) -> None:
        try:
            await call.write(raw)
        except Exception as e:  # the call ended; the batch stays unacknowledged
            raise StreamBroken(self.error or e) from e

    async def send(
        self,
        readings: Iterable[Reading] | bytes,
        timeout: float | None = None,
        send_time_ns: int | None = None,
    ) -> int:
        """Numbers, signs and sends one batch once the window has room; returns its sequence.
        Raises StreamBroken when the stream ended, TimeoutError when the window stays full."""
        async with self._changed:
            if not (self._ended or self._book.has_room()):
                try:
                    async with asyncio.timeout(timeout):  # no task per wait, as wait_for makes
                        await self._changed.wait_for(lambda: self._ended or self._book.has_room())
                except TimeoutError:
                    raise TimeoutError(
                        f"{self._book.window} batches unacknowledged for {timeout} s"
                    ) from None
            sequence, raw = self._next_batch(readings, send_time_ns)
        await self._write(self._call, raw)
        return sequence

    async def wait_acked(self, timeout: float | None = None) -> bool:
        """True once nothing is unacknowledged; False on timeout or when the stream ended."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: self._ended or not self._book.unacked)
            return not self._book.unacked

    async def close(self, timeout: float = 10.0) -> None:
        """Half-closes the stream, waits for the server to finish it, then cancels it."""
        if self._call is None:
            return
        with contextlib.suppress(Exception):  # already ended
            await self._call.done_writing()
        if self._receiver is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._receiver), timeout)
        self._call.cancel()
        if self._receiver is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver


# ---------------------------------------------------------------- MQTT


def mqtt_topic(district_code: str, gateway_id: str) -> str:
    return f"wuye/{district_code}/{gateway_id}/readings"


def json_payload(batch: pb.ReadingBatch) -> bytes:
    """The proto3 JSON of a batch, its signature left out (it travels beside the payload)."""
    unsigned = pb.ReadingBatch()
    unsigned.CopyFrom(batch)
    unsigned.ClearField("signature")
    return json_format.MessageToJson(unsigned, indent=None).encode()
