"""Credit as a new user meets it on the platform `make run` starts: an enterprise filed and
approved in the registry gets a credit file, an exit from a project it did not file lowers its
grade, and the change reaches Kafka for the city credit platform. Only sockets: gRPC to the
registry and the credit service, and a reader of its own (no consumer group) for the topic."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import grpc
import pytest
from e2e_support import CALL_TIMEOUT_SECONDS, poll, read_events, served_projects
from sample_data import request_id

from wuye.core.wire import to_date
from wuye.credit.v1 import credit_service_pb2 as credit_pb
from wuye.credit.v1 import credit_service_pb2_grpc as credit_grpc
from wuye.credit.v1 import events_pb2 as credit_events
from wuye.registry.v1 import registry_service_pb2 as pb

pytestmark = pytest.mark.e2e

GRADE_TOPIC = "wuye.credit.grade.v1"


@pytest.fixture
def credit(platform) -> Iterator[credit_grpc.CreditServiceStub]:
    """The credit service at the address the launcher published."""
    with grpc.insecure_channel(platform.description["grpc"]["credit"]) as channel:
        yield credit_grpc.CreditServiceStub(channel)


def test_an_approved_enterprise_gets_a_credit_file_and_an_unfiled_exit_lowers_its_grade(
    platform, credit, new_filing
):
    registry = platform.registry()
    auth = platform.auth()
    code = new_filing.enterprise.credit_code
    subject = credit_pb.Subject(kind=credit_pb.SUBJECT_KIND_ENTERPRISE, id=code)

    # 1. The enterprise files, the housing authority approves, and it serves a project.
    _, [project_id], _ = served_projects(platform, new_filing, 1)

    def report(grade: int) -> credit_pb.CreditReport | None:
        try:
            got = credit.GetCreditReport(
                credit_pb.GetCreditReportRequest(subject=subject),
                metadata=auth,
                timeout=CALL_TIMEOUT_SECONDS,
            ).report
        except grpc.RpcError as e:
            if e.code() is grpc.StatusCode.NOT_FOUND:  # the event is on its way
                return None
            raise
        return got if got.grade == grade else None

    # 2. The credit file opens: grade A at the default base.
    opened = poll(lambda: report(credit_pb.GRADE_A), "the credit file opened with grade A")
    assert (opened.filed, opened.score, list(opened.records)) == (True, "70.0", [])

    # 3. It leaves the project without filing its exit.
    registry.ExitProject(
        pb.ExitProjectRequest(
            request_id=request_id(),
            project_id=project_id,
            credit_code=code,
            filed=False,
            exit_date=to_date(dt.date.today()),
            reason="擅自撤离",
        ),
        metadata=auth,
        timeout=CALL_TIMEOUT_SECONDS,
    )

    # 4. The bad record lowers the grade, and the report says why.
    lowered = poll(lambda: report(credit_pb.GRADE_B), "the grade lowered to B")
    [record] = lowered.records
    assert (record.record_type, record.direction) == ("UNFILED_EXIT", credit_pb.DIRECTION_BAD)
    assert lowered.score == "60.0"
    assert lowered.explanation == "default base 70.0 + good 0.0 - bad 10.0 = 60.0 -> B"

    # 5. The city credit platform reads both changes from Kafka.
    changes = _grade_changes(platform.kafka_bootstrap, f"enterprise:{code}", count=2)
    assert [(c.previous_grade, c.grade) for c in changes] == [
        (credit_pb.GRADE_C_UNFILED, credit_pb.GRADE_A),
        (credit_pb.GRADE_A, credit_pb.GRADE_B),
    ]
    assert all(c.subject == subject and c.district_code == "150602" for c in changes)
    assert changes[0].sequence < changes[1].sequence


def _grade_changes(bootstrap: str, key: str, count: int) -> list[credit_pb.GradeChange]:
    """The GradeChanged events keyed `key` on the grade topic."""

    def grade_change(message) -> credit_pb.GradeChange | None:
        headers = dict(message.headers() or ())
        if message.key() != key.encode():
            return None
        if headers.get("ce_type") != b"wuye.credit.v1.GradeChanged":
            return None
        assert headers["content-type"] == b"application/protobuf"
        return credit_events.GradeChanged.FromString(message.value()).change

    return read_events(bootstrap, GRADE_TOPIC, grade_change, count)
