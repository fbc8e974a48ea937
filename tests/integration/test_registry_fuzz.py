"""Fuzzing every method of wuye.registry.v1.RegistryService over a real socket.

The methods come from the service descriptor, so a new RPC is fuzzed without touching this file.
Each gets random bytes, empty requests, and random but well-typed requests built from its message
descriptor (odd unicode, control characters, huge strings, extreme integers, unknown enum numbers,
nested and repeated fields), seeded with real ids so some calls get past validation. A caller
must never see UNKNOWN or INTERNAL (nor a hang), and the server must keep answering.
"""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest
from google.protobuf import descriptor as d
from google.protobuf import message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wuye.registry.v1 import registry_service_pb2 as pb

pytestmark = pytest.mark.integration

SERVICE = pb.DESCRIPTOR.services_by_name["RegistryService"]
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED}
CALL_TIMEOUT_SECONDS = 5.0
MESSAGE_EXAMPLES = 40
BYTES_EXAMPLES = 12
MAX_DEPTH = 4


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


_INT_RANGES = {
    d.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    d.FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    d.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    d.FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

# Strings that trip parsers and databases.
NASTY = [
    "",
    " ",
    "\x00",
    "\x7f",
    "a\x00b",
    "\n",
    "\u200b",
    "\ufeff",
    "𝕏",
    "😀" * 50,
    "'; DROP TABLE enterprises; --",
    "%s%s%n",
    "../../etc/passwd",
    "150602",
    "150602-",
    "150602-\x00",
    "150602-" + "x" * 300,
    "150699-000000000000",
    "-1",
    "9" * 40,
    "1e400",
    "NaN",
    "٨٩.٣٧",
    "0.00",
    "999999999.99",
]


def _integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = [v for v in (lo, hi, 0, 1, -1, 2**31 - 1, -(2**31), 2**63 - 1) if lo <= v <= hi]
    return st.one_of(
        st.sampled_from(edges),
        st.integers(-1000, 1000).filter(lambda v: lo <= v <= hi),
        st.integers(lo, hi),
    )


def _strings(pool: list[str], huge: bool) -> st.SearchStrategy[str]:
    utf8 = st.characters(codec="utf-8")
    choices = [
        st.sampled_from(pool),
        st.sampled_from(NASTY),
        st.text(utf8, max_size=40),
        # Valid values and district prefixes with something after them.
        st.builds(
            lambda valid, junk: valid + junk,
            st.sampled_from([*pool, "150602-", "150603-F"]),
            st.one_of(st.sampled_from(NASTY), st.text(utf8, max_size=8)),
        ),
    ]
    if huge:
        choices.append(
            st.builds(
                lambda start, ch, n: start + ch * n,
                st.sampled_from(["", "150602-", "150602-F"]),
                utf8,
                st.integers(1_000, 50_000),
            )
        )
    return st.one_of(choices)


def _scalars(field: d.FieldDescriptor, pool: list[str], huge: bool) -> st.SearchStrategy:
    t = field.type
    if t == d.FieldDescriptor.TYPE_STRING:
        return _strings(pool, huge)
    if t == d.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == d.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == d.FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), _integers(-(2**31), 2**31 - 1))
    if t == d.FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if t == d.FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if t in _INT_RANGES:
        return _integers(*_INT_RANGES[t])
    raise AssertionError(f"no strategy for field type {t} of {field.full_name}")


def messages(
    descriptor: d.Descriptor, pool: list[str], depth: int = 0, huge: bool = True
) -> st.SearchStrategy:
    """Random messages of `descriptor`: each field set (mostly) or not, to anything its type
    allows; `huge` admits strings of tens of kilobytes."""
    message_class = message_factory.GetMessageClass(descriptor)
    present = st.integers(0, 3).map(bool)

    def values(field: d.FieldDescriptor, huge: bool) -> st.SearchStrategy:
        if field.message_type is not None:
            return messages(field.message_type, pool, depth + 1, huge)
        return _scalars(field, pool, huge)

    @st.composite
    def build(draw) -> Message:
        message = message_class()
        for field in descriptor.fields:
            if not draw(present) or (field.message_type and depth >= MAX_DEPTH):
                continue
            if field.is_repeated:
                items = draw(
                    st.one_of(
                        st.lists(values(field, huge), max_size=4),
                        # Many copies of one small value: past every per-request limit.
                        st.builds(
                            lambda v, n: [v] * n, values(field, False), st.integers(50, 1200)
                        ),
                    )
                )
                getattr(message, field.name).extend(items)
            elif field.message_type is not None:
                getattr(message, field.name).CopyFrom(draw(values(field, huge)))
            else:
                setattr(message, field.name, draw(values(field, huge)))
        return message

    return build()


def _seed(registry) -> tuple[list[str], str]:
    """Real records, so that fuzzed ids sometimes name them and calls get past validation:
    strings to draw from, and the id of a project that is served and has units."""
    code = registry.filed_enterprise()
    pending = registry.file_enterprise()
    project = registry.register_project().project_id
    registry.assign(project, code)
    person = registry.new_resident_id()
    registry.admin.RegisterUnits(
        pb.RegisterUnitsRequest(
            request_id=str(uuid.uuid4()),
            project_id=project,
            units=[
                pb.Unit(
                    number="1-1-101",
                    exclusive_area_m2="89.37",
                    owner=pb.Owner(kind=pb.OWNER_KIND_PERSON, name="张三", id_number=person),
                )
            ],
        )
    )
    registry.admin.UpdateDisclosure(
        pb.UpdateDisclosureRequest(
            disclosure=pb.Disclosure(
                project_id=project,
                service_items=["保洁"],
                service_grade="一级",
                service_standard="住宅物业服务标准",
                fee_method=pb.FEE_METHOD_LUMP_SUM,
                fee_fen_per_m2_month=150,
                service_phone="12345",
                complaint_phones=["12345"],
            )
        )
    )
    practitioner = registry.admin.RegisterPractitioner(
        pb.RegisterPractitionerRequest(
            request_id=str(uuid.uuid4()),
            practitioner=pb.Practitioner(
                credit_code=code, name="赵六", id_number=registry.new_resident_id(), position="经理"
            ),
        )
    ).practitioner.practitioner_id
    strings = [
        code,
        pending.enterprise.credit_code,
        pending.filing.filing_id,
        project,
        practitioner,
        person,
        registry.new_credit_code(),
        "150602",
        "150603",
        "13812345678",
        "0477-8581234",
        "12345",
        "89.37",
        "1-1-102",
        "name",
        "contact_phone",
        "service_items",
        "fee_method",
        str(uuid.uuid4()),
        dt.date.today().isoformat(),
    ]
    return strings, project


@pytest.mark.parametrize("method", SERVICE.methods, ids=lambda m: m.name)
def test_no_request_makes_a_method_fail_internally_or_stop_answering(registry, method):
    pool, project = _seed(registry)
    call = registry.channel.unary_unary(f"/{SERVICE.full_name}/{method.name}")
    tokens = {"admin": registry.admin.metadata, "anonymous": ()}

    # Above the server's message limit RESOURCE_EXHAUSTED is the right answer; below it, it
    # means the client could not read the answer (e.g. trailers too large).
    fits = registry.settings.grpc_max_message_bytes

    def answer(payload: bytes, who: str) -> None:
        try:
            call(payload, metadata=tokens[who], timeout=CALL_TIMEOUT_SECONDS)
        except grpc.RpcError as e:
            code = e.code()
            assert code not in FORBIDDEN, f"{method.name} as {who} answered {code.name}"
            assert code != grpc.StatusCode.RESOURCE_EXHAUSTED or len(payload) > fits, (
                f"{method.name} as {who}: {len(payload)} bytes answered {code.name}: {e.details()}"
            )

    for who in tokens:
        answer(b"", who)

    @fuzz_settings(BYTES_EXAMPLES)
    @given(payload=st.binary(max_size=512), who=st.sampled_from(list(tokens)))
    def random_bytes(payload: bytes, who: str) -> None:
        answer(payload, who)

    @fuzz_settings(MESSAGE_EXAMPLES)
    @given(request=messages(method.input_type, pool), who=st.sampled_from(list(tokens)))
    def random_requests(request: Message, who: str) -> None:
        answer(request.SerializeToString(), who)

    random_bytes()
    random_requests()

    health = health_pb2_grpc.HealthStub(registry.channel)
    status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE.full_name), timeout=5)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    # And it still does its work.
    got = registry.admin.GetProject(pb.GetProjectRequest(project_id=project))
    assert got.project.project_id == project
