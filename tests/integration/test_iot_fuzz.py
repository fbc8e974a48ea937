"""Fuzzing wuye.iot.v1.IntakeService over a real socket, with the strategies of the fuzz loop in
grpc_support: random bytes, empty requests and random well-typed requests, seeded with real
gateway, device and alarm ids so that some calls get past validation; and batches correctly
signed by a real gateway whose contents are random, so that the intake itself (not only the
signature check) sees them. A caller never sees UNKNOWN or INTERNAL (nor a hang), and the
intake keeps working."""

from __future__ import annotations

import itertools

import grpc
import pytest
from grpc_support import FORBIDDEN, fuzz_every_payload, fuzz_settings, messages
from hypothesis import given
from hypothesis import strategies as st
from test_iot_support import CREDIT_CODE, DONGSHENG, KANGBASHI, iot_servers, now_ns

from wuye.core.auth import Role
from wuye.iot.v1 import intake_service_pb2 as pb

pytestmark = pytest.mark.integration

SERVICE = pb.DESCRIPTOR.services_by_name["IntakeService"]
UNARY = [m for m in SERVICE.methods if not m.client_streaming and not m.server_streaming]
MESSAGE_EXAMPLES = 30
BYTES_EXAMPLES = 8
SIGNED_EXAMPLES = 60


@pytest.fixture
def iot(make_settings):
    with iot_servers(make_settings) as start:
        yield start(iot_max_batch_readings=50)


def _seed(iot):
    """A gateway with devices and an alarm (its clock is off: nothing goes to Kafka), so that
    fuzzed ids sometimes name them."""
    gateway = iot.gateway(iot.project(DONGSHENG, CREDIT_CODE))
    facility = iot.device(gateway, pb.DEVICE_KIND_FIRE_FACILITY).id
    hydrant = iot.device(gateway, pb.DEVICE_KIND_HYDRANT_PRESSURE).id
    iot.post(gateway.signed(sent_ns=now_ns() - 60 * 10**9))
    [alarm] = iot.alarms()
    pool = [
        gateway.id,
        gateway.project_id,
        facility,
        hydrant,
        alarm.id,
        DONGSHENG,
        KANGBASHI,
        f"{DONGSHENG}-G000000000000",
        f"{DONGSHENG}-Pnotannounced",
    ]
    return gateway, facility, pool


def still_works(iot, project_id: str) -> None:
    """A new gateway's batch is acknowledged (its one reading refused: no Kafka)."""
    gateway = iot.gateway(project_id)
    result = iot.post(gateway.signed([(f"{DONGSHENG}-Dnone", 1.0)]))
    assert (result.sequence, result.accepted, len(result.rejected)) == (1, 0, 1)


def _tokens(iot):
    return {
        "admin": iot.admin.metadata,
        "authority": iot.authority(DONGSHENG).metadata,
        "elsewhere": iot.authority(KANGBASHI).metadata,
        "inspector": iot.client(Role.INSPECTOR, "inspector-1", [DONGSHENG]).metadata,
        "service": iot.client(Role.SERVICE, "credit").metadata,
        "anonymous": (),
    }


@pytest.mark.parametrize("method", UNARY, ids=lambda m: m.name)
def test_no_request_makes_a_method_fail_internally_or_stop_answering(iot, method):
    gateway, _, pool = _seed(iot)

    fuzz_every_payload(
        iot,
        method,
        _tokens(iot),
        pool,
        bytes_examples=BYTES_EXAMPLES,
        message_examples=MESSAGE_EXAMPLES,
    )

    # And it still does its work (with a gateway of its own: the fuzz may have rotated one).
    still_works(iot, gateway.project_id)


def test_random_bytes_are_never_a_batch(iot):
    gateway, _, _ = _seed(iot)

    @fuzz_settings(150)
    @given(payload=st.binary(max_size=2048))
    def post(payload: bytes) -> None:
        try:
            result = iot.post(payload, timeout=5)
        except grpc.RpcError as e:
            assert e.code() not in FORBIDDEN, f"{e.code().name}: {e.details()}"
            assert e.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.FAILED_PRECONDITION,
            ), e.code()
        else:
            raise AssertionError(f"random bytes were taken as a batch: {result}")

    post()
    still_works(iot, gateway.project_id)


# Sequences near the gateway's and anywhere up to the largest a uint64 holds.
SEQUENCES = st.one_of(st.integers(0, 10_000), st.integers(0, 2**64 - 1))


def _signed_batches(gateway, pool, sequences=SEQUENCES):
    """Batches of this gateway, correctly signed, with anything else random: epochs, times,
    device ids and values (NaN, infinities, extremes), and unknown fields."""
    readings = st.builds(
        lambda device, value, at: pb.Reading(
            device_id=device, value=value, observe_time_unix_nano=at
        ),
        st.one_of(st.sampled_from(pool), st.text(max_size=80)),
        st.floats(),
        st.one_of(
            st.integers(0, 2**64 - 1),
            st.integers(1_700_000_000 * 10**9, 1_900_000_000 * 10**9),
        ),
    )

    def build(batch: pb.ReadingBatch, items, sequence) -> bytes:
        batch.gateway_id = gateway.id
        batch.ClearField("signature")
        batch.sequence = sequence
        batch.readings.extend(items)
        return gateway.sign(batch)

    return st.builds(
        build,
        messages(pb.ReadingBatch.DESCRIPTOR, pool, huge=False),
        st.lists(readings, max_size=8),
        sequences,
    )


def test_signed_batches_with_random_contents_are_answered_never_failed(iot):
    gateway, facility, pool = _seed(iot)

    @fuzz_settings(SIGNED_EXAMPLES)
    @given(raw=_signed_batches(gateway, pool))
    def post(raw: bytes) -> None:
        try:
            result = iot.post(raw, timeout=5)
        except grpc.RpcError as e:
            assert e.code() not in FORBIDDEN, f"{e.code().name}: {e.details()}"
            # Invalid, or refused for its epoch or sequence (stale, too old, too far ahead).
            assert e.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.FAILED_PRECONDITION,
            ), (e.code(), e.details())
        else:
            assert result.duplicate or result.accepted + len(result.rejected) <= 50

    post()
    # Whatever epoch and sequence the fuzz left it in, a rotation starts the gateway afresh.
    rotated = iot.admin.RotateGatewaySecret(pb.RotateGatewaySecretRequest(gateway_id=gateway.id))
    gateway.secret = rotated.secret
    after = iot.post(gateway.signed([(facility, 1.0)], sequence=1, epoch=0))
    assert (after.duplicate, after.accepted) == (False, 1)


def test_a_stream_of_signed_random_batches_ends_with_a_result_or_a_refusal(iot):
    gateway, _, pool = _seed(iot)

    # A stream numbers its batches one after another, as a gateway does.
    numbers = itertools.count(2)
    consecutive = st.builds(lambda _: next(numbers), st.none())

    @fuzz_settings(15)
    @given(batches=st.lists(_signed_batches(gateway, pool, consecutive), min_size=1, max_size=5))
    def stream(batches: list[bytes]) -> None:
        try:
            for _ in iot.open_stream(batches, timeout=10):
                pass
        except grpc.RpcError as e:
            assert e.code() not in FORBIDDEN, f"{e.code().name}: {e.details()}"

    stream()
    health = iot.admin.GetGateway(pb.GetGatewayRequest(gateway_id=gateway.id))
    assert health.id == gateway.id
