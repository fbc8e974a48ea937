"""Joint meetings as a new user tries them on the platform `make run` starts, with a generic
gRPC client: nothing but server reflection and JSON, as grpcurl works. An owners' committee's
case is accepted; a meeting held ten days ago and recorded now adopts a resolution with a task
for the enterprise due two working days after the meeting; the timer finds it overdue, and the
enterprise's credit report shows the bad record; the signed minutes verify with
`python -m wuye.meetings verify-minutes`, and a copy with one character changed does not."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from e2e_support import CALL_TIMEOUT_SECONDS, DONGSHENG, poll, served_projects
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from wuye.core.auth import Role, issue_token
from wuye.launcher import read_secrets_file

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MEETINGS = "wuye.meetings.v1.MeetingsService"
SUB_DISTRICT = "天骄街道"
# The task timer looks every second here (60 s by default).


class GenericClient:
    """Calls any method by its full name with a JSON request, learning the types by server
    reflection; answers are JSON too. Failures come back as (code name, details)."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(self.channel))

    def call(self, method: str, request: dict, token: str | None = None) -> dict:
        service_name, _, method_name = method.rpartition(".")
        described = self.pool.FindServiceByName(service_name).FindMethodByName(method_name)
        request_type = message_factory.GetMessageClass(described.input_type)
        response_type = message_factory.GetMessageClass(described.output_type)
        rpc = self.channel.unary_unary(
            f"/{service_name}/{method_name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        answer = rpc(
            json_format.ParseDict(request, request_type()),
            metadata=metadata,
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return json_format.MessageToDict(answer)

    def attempt(self, method: str, request: dict, token: str | None = None) -> dict | None:
        """The answer, or None if the call was refused (for polling)."""
        try:
            return self.call(method, request, token)
        except grpc.RpcError:
            return None


def test_a_committees_case_ends_as_a_bad_credit_record_and_minutes_anyone_can_verify(
    platform, new_filing, tmp_path
):
    secret = read_secrets_file(platform.state_dir)["WUYE_TOKEN_SECRET"]

    def token(role: Role, subject: str) -> str:
        districts = None if role in (Role.ADMIN,) else [DONGSHENG]
        return issue_token(secret, subject=subject, role=role, districts=districts)

    admin = token(Role.ADMIN, "e2e-admin")
    registry = GenericClient(platform.registry_address)
    meetings = GenericClient(platform.description["grpc"]["meetings"])
    credit = GenericClient(platform.description["grpc"]["credit"])

    # The registry: an approved enterprise serving a project, and its owners' committee.
    code, [project_id], _ = served_projects(platform, new_filing, 1)
    members = [{"name": "主任", "role": "COMMITTEE_ROLE_DIRECTOR", "affiliation": "1-1-101"}]
    members += [
        {"name": f"委员{n}", "role": "COMMITTEE_ROLE_MEMBER", "affiliation": f"1-1-{n}02"}
        for n in range(1, 5)
    ]
    committee = registry.call(
        "wuye.registry.v1.RegistryService.FormOwnersCommittee",
        {
            "requestId": str(uuid.uuid4()),
            "committee": {
                "projectId": project_id,
                "kind": "COMMITTEE_KIND_OWNERS",
                "members": members,
                "termStart": {"year": 2026, "month": 1, "day": 1},
                "termEnd": {"year": 2030, "month": 12, "day": 31},
            },
        },
        admin,
    )["committee"]
    committee_token = token(Role.OWNERS_COMMITTEE, committee["committeeId"])
    office = token(Role.SUB_DISTRICT, SUB_DISTRICT)
    enterprise = token(Role.ENTERPRISE, code)

    # The committee raises a case once the meetings service has heard of project and committee.
    raise_case = {
        "requestId": str(uuid.uuid4()),
        "case": {
            "projectId": project_id,
            "category": "FIRE_SAFETY",
            "description": "3 号楼消防通道长期被车辆占用",
            "enterpriseAttempts": "物业张贴告示，劝离无效",
        },
    }
    case = poll(
        lambda: meetings.attempt(f"{MEETINGS}.RaiseCase", raise_case, committee_token),
        "the case raised by the owners' committee",
    )["case"]
    assert case["state"] == "CASE_STATE_RAISED"
    accepted = meetings.call(f"{MEETINGS}.AcceptCase", {"caseId": case["caseId"]}, office)
    assert accepted["case"]["state"] == "CASE_STATE_ACCEPTED"

    # A meeting held ten days ago, recorded now.
    held = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=10)
    unit = {"kind": "ENTERPRISE", "unitId": code, "name": "鄂尔多斯市测试物业服务有限公司"}
    meeting = meetings.call(
        f"{MEETINGS}.ConveneMeeting",
        {
            "requestId": str(uuid.uuid4()),
            "meeting": {
                "holdTime": held.isoformat().replace("+00:00", "Z"),
                "place": "天骄街道办事处三楼会议室",
                "caseIds": [case["caseId"]],
                "invitations": [{"unit": unit}],
            },
        },
        office,
    )["meeting"]
    meetings.call(
        f"{MEETINGS}.RecordAttendance",
        {
            "meetingId": meeting["meetingId"],
            "attendance": [{"unitId": code, "attendance": "ATTENDANCE_PRESENT"}],
        },
        office,
    )
    [task] = meetings.call(
        f"{MEETINGS}.AdoptResolution",
        {
            "meetingId": meeting["meetingId"],
            "caseId": case["caseId"],
            "decision": "清理消防通道，设置禁停标识",
            "tasks": [{"unit": unit, "workingDays": 2, "doneWhen": "消防通道畅通，经街道复查"}],
        },
        office,
    )["resolution"]["tasks"]
    assert task["lateness"] == "LATENESS_ON_TIME"

    # The timer finds it overdue and escalates it to the district.
    def overdue() -> dict | None:
        listed = meetings.call(f"{MEETINGS}.ListTasks", {"caseId": case["caseId"]}, office)
        [found] = listed["tasks"]
        return found if found["lateness"] == "LATENESS_OVERDUE" else None

    assert poll(overdue, "the task marked overdue")["escalationLevel"] == "DISTRICT"

    # The enterprise's credit report shows the bad record.
    def recorded() -> dict | None:
        report = credit.call(
            "wuye.credit.v1.CreditService.GetCreditReport",
            {"subject": {"kind": "SUBJECT_KIND_ENTERPRISE", "id": code}},
            enterprise,
        )["report"]
        return next(
            (r for r in report.get("records", []) if r["recordType"] == "MEETING_TASK_OVERDUE"),
            None,
        )

    assert poll(recorded, "the bad credit record")["direction"] == "DIRECTION_BAD"

    # The minutes, signed by the chair and the attending enterprise; anyone exports and checks
    # them against the hash published at signing.
    minutes_id = meetings.call(
        f"{MEETINGS}.DraftMinutes",
        {
            "meetingId": meeting["meetingId"],
            "text": "一、3 号楼消防通道占用\n物业公司两个工作日内清理。",
        },
        office,
    )["minutes"]["minutesId"]
    meetings.call(f"{MEETINGS}.SignMinutes", {"minutesId": minutes_id}, office)
    signed = meetings.call(f"{MEETINGS}.SignMinutes", {"minutesId": minutes_id}, enterprise)
    published = signed["minutes"]["contentHash"]
    exported = meetings.call(f"{MEETINGS}.GetMinutes", {"minutesId": minutes_id})
    good, changed = tmp_path / "minutes.json", tmp_path / "changed.json"
    good.write_text(json.dumps(exported, ensure_ascii=False))
    exported["minutes"]["text"] = exported["minutes"]["text"].replace("两", "三", 1)
    changed.write_text(json.dumps(exported, ensure_ascii=False))

    def verify(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "wuye.meetings", "verify-minutes", path, "--hash", published],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=REPO,
        )

    verified, refused = verify(good), verify(changed)
    assert verified.returncode == 0 and verified.stdout.startswith("VERIFIED:"), verified
    assert refused.returncode == 1 and refused.stdout.startswith("REFUSED:"), refused
