"""The edge as a new user meets it on the platform `make run` starts: curl-like HTTP/JSON calls
through Envoy file an enterprise and read it back; bad input is refused with a 4xx whose body is
a google.rpc.Status, never a 5xx (a fuzz test drives every transcoded route); a browser's
gRPC-Web call reaches the duty desk's WatchAlarms stream; Envoy's admin reports every upstream
healthy. Only sockets: urllib and http.client, as a script of an integrator would."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import struct
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import PLATFORM_ENV, RunningPlatform
from e2e_support import CALL_TIMEOUT_SECONDS, poll, served_projects
from google.api import annotations_pb2
from google.protobuf import json_format
from hypothesis import given, reject
from hypothesis import strategies as st
from sample_data import new_credit_code

from wuye.core.auth import Role
from wuye.core.catalog import service_names
from wuye.iot.signing import sign
from wuye.iot.v1 import intake_service_pb2 as iot_pb

# The fuzz tests' random messages, sent here as JSON.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
from grpc_support import NASTY, fuzz_settings, messages

pytestmark = pytest.mark.e2e

# Small, so that the test of the public calls' rate limit needs few requests.
PUBLIC_BURST = int(PLATFORM_ENV["WUYE_EDGE_PUBLIC_BURST"])
PAGES_ORIGIN = "http://localhost:8080"
MAX_REQUEST_BYTES = 1024 * 1024
# The edge's refusals and the services' errors alike: the gRPC codes each HTTP status stands for.
CODES_OF_STATUS = {
    400: {3, 9, 11},
    401: {16},
    403: {7},
    404: {5},
    409: {6, 10},
    413: {8},
    429: {8},
}


@pytest.fixture(scope="module")
def edge_platform(platform: RunningPlatform) -> RunningPlatform:
    """The shared platform, its edge's public bucket small (PLATFORM_ENV in conftest.py)."""
    return platform


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> dict:
        return json.loads(self.body)

    def status_body(self) -> dict:
        """The google.rpc.Status a refusal carries, checked for its shape."""
        assert self.headers.get("content-type") == "application/json", self.body[:300]
        status = self.json()
        assert isinstance(status["code"], int) and status["code"] > 0, status
        assert isinstance(status["message"], str), status
        return status


def request(
    platform: RunningPlatform,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    host, _, port = platform.description["edge"]["address"].rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=CALL_TIMEOUT_SECONDS * 3)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def call_json(
    platform: RunningPlatform, method: str, path: str, payload: dict | None = None, **kw
) -> Answer:
    headers = {"authorization": f"Bearer {kw.get('token') or platform.token()}"}
    body = None
    if payload is not None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers["content-type"] = "application/json"
    return request(platform, method, path, body, headers)


# ---------------------------------------------------------------- JSON


def test_an_enterprise_is_filed_and_read_back_as_json_and_a_bad_code_names_its_field(
    edge_platform,
):
    code = new_credit_code("150602")
    filed = call_json(
        edge_platform,
        "POST",
        "/v1/enterprises",
        {
            "requestId": str(uuid.uuid4()),
            "enterprise": {
                "creditCode": code,
                "name": "鄂尔多斯市边缘测试物业服务有限公司",
                "districtCode": "150602",
                "contact_phone": "13912345678",
            },
        },
    )
    assert filed.status == 200, filed.body
    assert filed.json()["filing"]["state"] == "FILING_STATE_SUBMITTED"

    read = call_json(edge_platform, "GET", f"/v1/enterprises/{code}")
    assert read.status == 200, read.body
    enterprise = read.json()["enterprise"]
    # Proto3 JSON: lowerCamelCase, enums by name, zeros printed, personal phones masked.
    assert (enterprise["creditCode"], enterprise["status"]) == (code, "ENTERPRISE_STATUS_PENDING")
    assert enterprise["activeProjectCount"] == 0
    assert enterprise["contactPhone"] == "139****5678"

    bad = call_json(edge_platform, "GET", "/v1/enterprises/91150602XXXX")
    assert bad.status == 400
    status = bad.status_body()
    assert status["code"] == 3
    [violations] = [d for d in status["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    assert [v["field"] for v in violations["fieldViolations"]] == ["credit_code"]

    # A disclosure needs no token; one that does not exist is a 404 with its reason.
    missing = request(edge_platform, "GET", "/v1/projects/150602-P0123456789ab/disclosure")
    assert missing.status == 404
    [info] = [d for d in missing.status_body()["details"] if d["@type"].endswith("ErrorInfo")]
    assert info["reason"] == "PROJECT_NOT_FOUND"
    # Without a token, a call that needs one is refused as such.
    assert request(edge_platform, "GET", f"/v1/enterprises/{code}").status == 401


def test_bad_requests_at_the_edge_are_4xx_with_a_status_body(edge_platform):
    auth = {"authorization": f"Bearer {edge_platform.token()}"}
    json_headers = {**auth, "content-type": "application/json"}
    refusals = {
        "malformed JSON": request(
            edge_platform, "POST", "/v1/rounds", b'{"period": ', json_headers
        ),
        "a JSON array": request(edge_platform, "POST", "/v1/rounds", b"[1, 2]", json_headers),
        "a wrong type": request(
            edge_platform, "POST", "/v1/rounds", b'{"districtCodes": 7}', json_headers
        ),
        "an unknown query parameter": request(edge_platform, "GET", "/v1/grades?colour=red"),
        "an oversize body": request(
            edge_platform,
            "POST",
            "/v1/rounds",
            b'{"period": "' + b"x" * MAX_REQUEST_BYTES + b'"}',
            json_headers,
        ),
        "a wrong method": request(edge_platform, "DELETE", "/v1/enterprises/x", None, auth),
        "an unknown JSON path": request(edge_platform, "GET", "/v1/nothing", None, auth),
        "a POST to the pages": request(edge_platform, "POST", "/index.html", b"{}", json_headers),
    }
    for what, answer in refusals.items():
        assert 400 <= answer.status < 500, f"{what}: {answer.status} {answer.body[:200]!r}"
        status = answer.status_body()
        assert status["code"] in CODES_OF_STATUS[answer.status], f"{what}: {status}"
    assert refusals["an oversize body"].status == 413


def test_calls_without_a_token_are_rate_limited_with_a_status_body(edge_platform):
    answers = [
        request(edge_platform, "GET", "/v1/inspectionResults?districtCode=150603")
        for _ in range(PUBLIC_BURST + 10)
    ]
    statuses = [a.status for a in answers]
    assert 200 in statuses and 429 in statuses, statuses
    limited = next(a for a in answers if a.status == 429)
    assert limited.status_body()["code"] == 8
    # A call with a token on a route of its own is not limited by the public calls' bucket.
    assert call_json(edge_platform, "GET", "/v1/enterprises?districtCode=150603").status == 200


def test_the_pages_origin_may_call_from_a_browser_and_another_may_not(edge_platform):
    def preflight(origin: str) -> Answer:
        return request(
            edge_platform,
            "OPTIONS",
            "/wuye.iot.v1.IntakeService/WatchAlarms",
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type,x-grpc-web,authorization",
            },
        )

    allowed = preflight(PAGES_ORIGIN)
    assert allowed.headers.get("access-control-allow-origin") == PAGES_ORIGIN
    assert "grpc-status" in allowed.headers.get("access-control-expose-headers", "")
    assert "access-control-allow-origin" not in preflight("https://elsewhere.example").headers


def test_the_admin_reports_every_upstream_healthy_for_prometheus(edge_platform):
    admin = edge_platform.description["edge"]["admin"]
    with urllib.request.urlopen(f"http://{admin}/stats/prometheus", timeout=10) as answer:
        text = answer.read().decode()
    healthy = dict(
        re.findall(r'envoy_cluster_membership_healthy\{envoy_cluster_name="([^"]+)"\} (\d+)', text)
    )
    assert {name: healthy.get(name) for name in service_names()} == {
        name: "1" for name in service_names()
    }


# ---------------------------------------------------------------- the fuzz test over JSON


def _bindings() -> list[tuple[str, str, str | None, object]]:
    """(verb, path template, body, request descriptor) of every transcoded unary call."""
    found = []
    for name in service_names():
        package = __import__(f"wuye.{name}.v1", fromlist=["_"])
        for module in Path(package.__path__[0]).glob("*_pb2.py"):
            file = __import__(f"wuye.{name}.v1.{module.stem}", fromlist=["_"]).DESCRIPTOR
            for service in file.services_by_name.values():
                for method in service.methods:
                    if method.server_streaming or method.client_streaming:
                        continue
                    rule = method.GetOptions().Extensions[annotations_pb2.http]
                    for binding in [rule, *rule.additional_bindings]:
                        verb = binding.WhichOneof("pattern")
                        if verb:
                            template = getattr(binding, verb)
                            found.append((verb.upper(), template, binding.body or None, method))
    return found


BINDINGS = _bindings()
_VARIABLE = re.compile(r"\{([\w.]+)(?:=[^}]*)?\}")


def _path(template: str, message) -> str:
    def value(match: re.Match) -> str:
        current = message
        for part in match.group(1).split("."):
            current = getattr(current, part)
        return urllib.parse.quote(str(current), safe="")

    return _VARIABLE.sub(value, template)


@st.composite
def json_requests(draw) -> tuple[str, str, bytes | None]:
    verb, template, body, method = draw(st.sampled_from(BINDINGS))
    message = draw(messages(method.input_type, NASTY, huge=draw(st.booleans())))
    path = _path(template, message)
    if body is None:
        return verb, path, None
    try:
        payload = json_format.MessageToDict(message)
    except json_format.SerializeToJsonError:  # a time out of range has no JSON form
        reject()
    if body != "*":
        payload = payload.get(_camel(body), {})
    mangled = draw(
        st.sampled_from(["as is", "wrong types", "truncated", "not JSON", "nested deep"])
    )
    if mangled == "wrong types" and payload:
        key = draw(st.sampled_from(sorted(payload)))
        payload[key] = draw(st.sampled_from([[], {}, True, 1.5, "x", [None], {"a": []}]))
    text = json.dumps(payload, ensure_ascii=False).encode()
    if mangled == "truncated":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    elif mangled == "not JSON":
        text = draw(st.binary(max_size=200))
    elif mangled == "nested deep":
        text = b'{"a":' * 200 + b"1" + b"}" * 200
    return verb, path, text


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_no_json_request_gets_a_5xx(edge_platform):
    auth = {"authorization": f"Bearer {edge_platform.token(Role.ADMIN)}"}

    @fuzz_settings(max_examples=150)
    @given(json_requests())
    def answer(drawn: tuple[str, str, bytes | None]) -> None:
        verb, path, body = drawn
        headers = {**auth, "content-type": "application/json"} if body is not None else auth
        got = request(edge_platform, verb, path, body, headers)
        assert got.status < 500, f"{verb} {path}: {got.status} {got.body[:300]!r}"
        if got.status >= 400:
            got.status_body()

    answer()


# ---------------------------------------------------------------- gRPC-Web


def _grpc_web_frames(response: http.client.HTTPResponse) -> Iterator[tuple[int, bytes]]:
    """(flags, payload) of each frame of a gRPC-Web response: 0 a message, 0x80 trailers."""
    while True:
        head = response.read(5)
        if len(head) < 5:
            return
        flags, length = struct.unpack(">BI", head)
        yield flags, response.read(length)


def test_a_grpc_web_client_sees_a_new_alarm_on_watch_alarms(edge_platform, new_filing):
    auth = edge_platform.auth()
    _, [project_id], _ = served_projects(edge_platform, new_filing, 1)

    def registered_gateway() -> dict | None:
        answer = call_json(
            edge_platform,
            "POST",
            "/v1/gateways",
            {"requestId": str(uuid.uuid4()), "projectId": project_id, "name": "1 号楼网关"},
        )
        if answer.status == 400 and answer.json()["code"] == 9:  # the project is on its way
            return None
        assert answer.status == 200, answer.body
        return answer.json()

    gateway = poll(registered_gateway, "the intake learnt the project")
    device = call_json(
        edge_platform,
        "POST",
        f"/v1/gateways/{gateway['gateway']['id']}/devices",
        {
            "requestId": str(uuid.uuid4()),
            "kind": "DEVICE_KIND_FIRE_FACILITY",
            "location": "1 号楼消防控制室",
        },
    )
    assert device.status == 200, device.body
    device_id = device.json()["id"]

    # The duty desk's page: WatchAlarms over gRPC-Web, through the edge.
    host, _, port = edge_platform.description["edge"]["address"].rpartition(":")
    watch = http.client.HTTPConnection(host, int(port), timeout=60)
    message = iot_pb.WatchAlarmsRequest(district_codes=["150602"]).SerializeToString()
    watch.request(
        "POST",
        "/wuye.iot.v1.IntakeService/WatchAlarms",
        body=struct.pack(">BI", 0, len(message)) + message,
        headers={
            "content-type": "application/grpc-web+proto",
            "x-grpc-web": "1",
            "origin": PAGES_ORIGIN,
            **dict(auth),
        },
    )
    seen: list[iot_pb.Alarm] = []

    def keep_watching() -> None:
        response = watch.getresponse()
        seen.append(response)  # type: ignore[arg-type]
        # Until the test has seen enough and closes the connection.
        with contextlib.suppress(OSError, http.client.HTTPException):
            for flags, payload in _grpc_web_frames(response):
                if flags == 0:
                    seen.append(iot_pb.Alarm.FromString(payload))

    threading.Thread(target=keep_watching, daemon=True).start()

    # The gateway reports the facility switched off, by native gRPC through the same edge.
    now_ns = time.time_ns()
    batch = iot_pb.ReadingBatch(gateway_id=gateway["gateway"]["id"], sequence=1)
    batch.send_time.FromNanoseconds(now_ns)
    batch.readings.add(device_id=device_id, value=0, observe_time_unix_nano=now_ns)
    post = grpc.insecure_channel(edge_platform.description["edge"]["address"]).unary_unary(
        "/wuye.iot.v1.IntakeService/PostReadings",
        request_serializer=lambda raw: raw,
        response_deserializer=iot_pb.BatchResult.FromString,
    )
    result = post(
        sign(base64.b64decode(gateway["secret"]), batch.SerializeToString()),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    assert result.accepted == 1, result

    def raised() -> iot_pb.Alarm | None:
        return next(
            (
                a
                for a in seen[1:]
                if a.device_id == device_id and a.state == iot_pb.ALARM_STATE_RAISED
            ),
            None,
        )

    alarm = poll(raised, "the gRPC-Web client saw the alarm", timeout=30)
    assert alarm.kind == iot_pb.ALARM_KIND_FACILITY_OFF
    response = seen[0]
    assert response.status == 200
    assert response.getheader("content-type", "").startswith("application/grpc-web")
    assert response.getheader("access-control-allow-origin") == PAGES_ORIGIN
    watch.close()
