"""The gateway client: batches as the centre checks them, and the window of unacknowledged
batches, threaded and asyncio, over fake transports (no server, no network)."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Iterable, Iterator

import pytest

from wuye.iot import gateway, signing
from wuye.iot.v1 import intake_service_pb2 as pb

SECRET = bytes(range(32))
READINGS = [("150602-D1", 0.32, 1_767_225_600_000_000_001), ("150602-D2", 0.0, 1_767_225_601)]
WAIT = 5.0


def test_a_signed_batch_is_the_message_with_its_signature_checked_as_the_centre_does() -> None:
    raw = gateway.signed_batch(SECRET, "150602-G1", 7, READINGS, send_time_ns=1_500_000_123)
    payload, signature = signing.split_signature(raw)
    assert signing.is_signed_by(SECRET, payload, signature)
    assert not signing.is_signed_by(bytes(32), payload, signature)
    batch = pb.ReadingBatch.FromString(raw)
    assert (batch.gateway_id, batch.sequence, batch.signature) == ("150602-G1", 7, signature)
    assert (batch.send_time.seconds, batch.send_time.nanos) == (1, 500_000_123)
    assert [(r.device_id, r.value, r.observe_time_unix_nano) for r in batch.readings] == READINGS
    # The bytes signed are what any encoder writes for the unsigned message.
    batch.ClearField("signature")
    assert payload == batch.SerializeToString()


def test_the_epoch_is_signed_with_the_batch_and_written_where_any_encoder_writes_it() -> None:
    raw = gateway.signed_batch(SECRET, "150602-G1", 1, READINGS, 5, epoch=1_767_225_600_123)
    payload, signature = signing.split_signature(raw)
    batch = pb.ReadingBatch.FromString(raw)

    assert batch.epoch == 1_767_225_600_123
    assert signing.is_signed_by(SECRET, payload, signature)
    batch.ClearField("signature")
    assert payload == batch.SerializeToString()
    batch.epoch += 1  # another epoch under the same signature does not verify
    assert not signing.is_signed_by(SECRET, batch.SerializeToString(), signature)


def test_every_start_of_a_stream_numbers_from_1_in_an_epoch_of_its_start_time() -> None:
    """Epochs are the start time in milliseconds, so a gateway's next start has a greater one."""
    before = gateway.new_epoch()
    intake = FakeIntake()
    stream = gateway.GatewayStream(intake, "G", SECRET)
    after = gateway.new_epoch()
    stream.connect()
    received, answers = intake.streams[0]

    stream.send(READINGS)
    stream.send(READINGS)
    sent = [pb.ReadingBatch.FromString(received.get(timeout=WAIT)) for _ in range(2)]

    assert before <= stream.epoch <= after
    assert [(b.epoch, b.sequence) for b in sent] == [(stream.epoch, 1), (stream.epoch, 2)]
    answers.put(None)
    stream.close()


def test_pre_encoded_readings_make_the_same_batch() -> None:
    encoded = gateway.encode_readings(READINGS)
    assert gateway.signed_batch(SECRET, "G", 3, encoded, 5) == gateway.signed_batch(
        SECRET, "G", 3, READINGS, 5
    )


def test_the_json_payload_leaves_the_signature_out_and_parses_back() -> None:
    batch = pb.ReadingBatch.FromString(gateway.signed_batch(SECRET, "G", 1, READINGS, 5))
    payload = gateway.json_payload(batch)
    assert "signature" not in json.loads(payload)
    parsed = pb.ReadingBatch()
    gateway.json_format.Parse(payload, parsed)
    assert parsed.readings == batch.readings and not parsed.signature


def test_the_mqtt_topic_names_district_and_gateway() -> None:
    assert gateway.mqtt_topic("150602", "150602-G1") == "wuye/150602/150602-G1/readings"


class FakeIntake:
    """Opens streams like a grpc multicallable. Each stream hands its requests to the test
    (`received`) and answers what the test puts in `answers`: a response, an exception to
    raise, or None to end the stream cleanly."""

    def __init__(self) -> None:
        self.streams: list[tuple[queue.Queue, queue.Queue]] = []
        self.opened = threading.Semaphore(0)

    def __call__(self, requests: Iterator[bytes]) -> Iterable[pb.StreamReadingsResponse]:
        received: queue.Queue = queue.Queue()
        answers: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [received.put(r) for r in requests], daemon=True).start()
        self.streams.append((received, answers))
        self.opened.release()
        return self._answers(answers)

    @staticmethod
    def _answers(answers: queue.Queue) -> Iterator[pb.StreamReadingsResponse]:
        while (answer := answers.get(timeout=WAIT)) is not None:
            if isinstance(answer, Exception):
                raise answer
            yield answer


def ack(*sequences: int, accepted: int = 2) -> pb.StreamReadingsResponse:
    return pb.StreamReadingsResponse(
        results=[pb.BatchResult(sequence=s, accepted=accepted) for s in sequences]
    )


def sequences_of(received: queue.Queue, count: int) -> list[int]:
    return [pb.ReadingBatch.FromString(received.get(timeout=WAIT)).sequence for _ in range(count)]


def test_the_window_holds_back_sends_until_batches_are_acknowledged() -> None:
    intake = FakeIntake()
    results: list[int] = []
    stream = gateway.GatewayStream(
        intake,
        "G",
        SECRET,
        window=2,
        first_sequence=10,
        on_result=lambda r: results.append(r.sequence),
    )
    stream.connect()
    received, answers = intake.streams[0]
    assert [stream.send(READINGS), stream.send(READINGS)] == [10, 11]
    with pytest.raises(TimeoutError):
        stream.send(READINGS, timeout=0.05)
    assert sequences_of(received, 2) == [10, 11]
    answers.put(ack(10))
    assert stream.send(READINGS, timeout=WAIT) == 12
    answers.put(ack(11, 12))
    assert stream.wait_acked(WAIT)
    assert results == [10, 11, 12]
    assert (stream.tally.batches_acked, stream.tally.readings_accepted) == (3, 6)
    answers.put(None)
    stream.close()


def test_after_a_break_the_unacknowledged_batches_are_resent_byte_for_byte_first() -> None:
    intake = FakeIntake()
    stream = gateway.GatewayStream(intake, "G", SECRET, window=4)
    stream.connect()
    received, answers = intake.streams[0]
    for _ in range(3):
        stream.send(READINGS)
    first = [received.get(timeout=WAIT) for _ in range(3)]
    answers.put(ack(1))
    answers.put(RuntimeError("connection reset"))
    assert not stream.wait_acked(WAIT)
    with pytest.raises(gateway.StreamBroken) as broken:
        stream.send(READINGS, timeout=WAIT)
    assert str(broken.value.cause) == "connection reset"
    assert stream.unacked_sequences() == [2, 3]

    stream.connect()
    received, answers = intake.streams[1]
    assert [received.get(timeout=WAIT) for _ in range(2)] == first[1:]
    assert stream.send(READINGS) == 4
    assert sequences_of(received, 1) == [4]
    # The service acknowledges a resend again, marked as a duplicate; a repeat is ignored.
    answers.put(
        pb.StreamReadingsResponse(
            results=[pb.BatchResult(sequence=2, duplicate=True), *ack(3, 4, 3).results]
        )
    )
    assert stream.wait_acked(WAIT)
    assert stream.tally == gateway.StreamTally(
        batches_acked=4, duplicates=1, readings_accepted=6, readings_rejected=0, reconnects=1
    )
    answers.put(None)
    stream.close()


def test_a_stream_the_server_ends_reports_itself_broken_to_waiters() -> None:
    intake = FakeIntake()
    stream = gateway.GatewayStream(intake, "G", SECRET, window=1)
    stream.connect()
    stream.send(READINGS)
    intake.streams[0][1].put(None)
    assert not stream.wait_acked(WAIT)
    assert stream.broken and stream.error is None
    with pytest.raises(gateway.StreamBroken):
        stream.send(READINGS, timeout=WAIT)


def test_closing_half_closes_the_requests() -> None:
    intake = FakeIntake()
    stream = gateway.GatewayStream(intake, "G", SECRET)
    stream.connect()
    done = threading.Event()
    original = intake.streams[0][0]
    stream.send(READINGS)
    assert sequences_of(original, 1) == [1]
    threading.Thread(target=lambda: (stream.close(), done.set()), daemon=True).start()
    intake.streams[0][1].put(ack(1))
    intake.streams[0][1].put(None)
    assert done.wait(WAIT)
    assert stream.in_flight == 0


class FakeAsyncCall:
    """A grpc.aio stream-stream call: what is written goes to `received`, and the test's
    `answers` come back as responses (an exception is raised, None ends the call)."""

    def __init__(self) -> None:
        self.received: asyncio.Queue = asyncio.Queue()
        self.answers: asyncio.Queue = asyncio.Queue()
        self.half_closed = self.cancelled = False

    async def write(self, raw: bytes) -> None:
        if self.cancelled:
            raise RuntimeError("the call is over")
        await self.received.put(raw)

    async def done_writing(self) -> None:
        self.half_closed = True

    def cancel(self) -> None:
        self.cancelled = True

    async def __aiter__(self):
        while (answer := await self.answers.get()) is not None:
            if isinstance(answer, Exception):
                raise answer
            yield answer

    async def sequences(self, count: int) -> list[int]:
        raws = [await asyncio.wait_for(self.received.get(), WAIT) for _ in range(count)]
        return [pb.ReadingBatch.FromString(raw).sequence for raw in raws]


class FakeAsyncIntake:
    """Opens FakeAsyncCalls, as open_stream(channel) on a grpc.aio channel opens calls."""

    def __init__(self) -> None:
        self.calls: list[FakeAsyncCall] = []

    def __call__(self) -> FakeAsyncCall:
        self.calls.append(FakeAsyncCall())
        return self.calls[-1]


def run(coroutine) -> None:
    asyncio.run(asyncio.wait_for(coroutine, WAIT * 2))


def test_the_async_window_holds_back_sends_until_batches_are_acknowledged() -> None:
    async def scenario() -> None:
        intake = FakeAsyncIntake()
        results: list[int] = []
        stream = gateway.AsyncGatewayStream(
            intake,
            "G",
            SECRET,
            window=2,
            first_sequence=10,
            on_result=lambda r: results.append(r.sequence),
        )
        await stream.connect()
        call = intake.calls[0]
        assert [await stream.send(READINGS), await stream.send(READINGS)] == [10, 11]
        with pytest.raises(TimeoutError):
            await stream.send(READINGS, timeout=0.05)
        assert await call.sequences(2) == [10, 11]
        await call.answers.put(ack(10))
        assert await stream.send(READINGS, timeout=WAIT) == 12
        await call.answers.put(ack(11, 12))
        assert await stream.wait_acked(WAIT)
        assert results == [10, 11, 12]
        assert (stream.tally.batches_acked, stream.tally.readings_accepted) == (3, 6)
        await call.answers.put(None)
        await stream.close()
        assert call.half_closed and call.cancelled

    run(scenario())


def test_after_a_break_the_async_stream_resends_the_unacknowledged_batches_first() -> None:
    async def scenario() -> None:
        intake = FakeAsyncIntake()
        calls = intake.calls
        stream = gateway.AsyncGatewayStream(intake, "G", SECRET, window=4)
        await stream.connect()
        for _ in range(3):
            await stream.send(READINGS)
        first = [await calls[0].received.get() for _ in range(3)]
        await calls[0].answers.put(ack(1))
        await calls[0].answers.put(RuntimeError("connection reset"))
        assert not await stream.wait_acked(WAIT)
        with pytest.raises(gateway.StreamBroken) as broken:
            await stream.send(READINGS, timeout=WAIT)
        assert str(broken.value.cause) == "connection reset"
        assert stream.in_flight == 2

        await stream.connect()
        assert [await calls[1].received.get() for _ in range(2)] == first[1:]
        assert await stream.send(READINGS) == 4
        await calls[1].answers.put(
            pb.StreamReadingsResponse(
                results=[pb.BatchResult(sequence=2, duplicate=True), *ack(3, 4, 3).results]
            )
        )
        assert await stream.wait_acked(WAIT)
        assert stream.tally == gateway.StreamTally(
            batches_acked=4, duplicates=1, readings_accepted=6, readings_rejected=0, reconnects=1
        )
        await calls[1].answers.put(None)
        await stream.close()

    run(scenario())


def test_an_async_stream_the_server_ends_is_broken_for_senders() -> None:
    async def scenario() -> None:
        call = FakeAsyncCall()
        stream = gateway.AsyncGatewayStream(lambda: call, "G", SECRET, window=1)
        await stream.connect()
        await stream.send(READINGS)
        await call.answers.put(None)
        assert not await stream.wait_acked(WAIT)
        assert stream.broken and stream.error is None
        with pytest.raises(gateway.StreamBroken):
            await stream.send(READINGS, timeout=WAIT)

    run(scenario())


def test_an_async_stream_sends_its_batches_in_its_own_epoch() -> None:
    async def scenario() -> None:
        intake = FakeAsyncIntake()
        stream = gateway.AsyncGatewayStream(intake, "G", SECRET, epoch=42)
        await stream.connect()
        await stream.send(READINGS)
        raw = await asyncio.wait_for(intake.calls[0].received.get(), WAIT)
        assert (pb.ReadingBatch.FromString(raw).epoch, stream.epoch) == (42, 42)
        intake.calls[0].answers.put_nowait(None)
        await stream.close()

    run(scenario())


def test_a_stream_refused_its_epoch_restarts_its_unacknowledged_batches_in_a_new_one() -> None:
    intake = FakeIntake()
    stream = gateway.GatewayStream(intake, "G", SECRET, window=4, epoch=5)
    stream.connect()
    received, answers = intake.streams[0]
    for _ in range(3):
        stream.send(READINGS, send_time_ns=1_000)
    before = [pb.ReadingBatch.FromString(received.get(timeout=WAIT)) for _ in range(3)]
    answers.put(ack(1))
    answers.put(RuntimeError("FAILED_PRECONDITION: STALE_EPOCH"))
    assert not stream.wait_acked(WAIT)  # the stream ended with batches 2 and 3 unacknowledged
    assert stream.broken

    stream.restart(epoch=9)
    stream.connect()
    resent = intake.streams[1][0]
    after = [resent.get(timeout=WAIT) for _ in range(2)]
    assert stream.send(READINGS) == 3

    batches = [pb.ReadingBatch.FromString(raw) for raw in after]
    assert [(b.epoch, b.sequence) for b in batches] == [(9, 1), (9, 2)]
    assert [b.readings for b in batches] == [b.readings for b in before[1:]]
    assert all(b.send_time.nanos == 1_000 for b in batches)
    for raw in after:
        assert signing.is_signed_by(SECRET, *signing.split_signature(raw))
    intake.streams[1][1].put(None)
    stream.close()
