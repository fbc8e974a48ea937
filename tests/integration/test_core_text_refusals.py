"""The same bad text is refused the same way by every service: INVALID_ARGUMENT naming the field,
with the core's description, and nothing stored."""

import grpc
import pytest
import sqlalchemy as sa
from test_credit_support import credit_servers
from test_inspections_support import inspections_servers
from test_iot_support import iot_servers

from wuye.core.events import outbox
from wuye.core.text import text_problem
from wuye.credit.v1 import credit_service_pb2 as credit_pb
from wuye.inspections.v1 import inspections_service_pb2 as inspections_pb
from wuye.iot.v1 import intake_service_pb2 as iot_pb
from wuye.registry.v1 import registry_service_pb2 as registry_pb

pytestmark = pytest.mark.integration

BAD_TEXTS = {
    "nul": "天骄\x00花园",
    "line-break": "天骄\n花园",
    "bidi-override": "天骄\u202e园花",
    "zero-width": "王\u200b伟",
    "line-separator": "天骄\u2028花园",
    "private-use": "天骄\ue000",
    "spaces-only": "\u3000 ",
    "too-long": "鄂" * 201,
}


def assert_refused_like_the_core(server, method: str, field: str, request_with) -> None:
    """Every bad text in `field` gets INVALID_ARGUMENT with the core's description, and leaves
    no event behind."""
    limit = server.settings.max_text_length
    for name, bad in BAD_TEXTS.items():
        failure = server.admin.fails(method, request_with(bad))
        assert failure.code is grpc.StatusCode.INVALID_ARGUMENT, name
        assert failure.violations.get(field) == text_problem(bad, limit), name
    with server.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one() == 0


def test_the_registry_refuses_bad_text_as_the_core_says(registry):
    assert_refused_like_the_core(
        registry,
        "FileEnterprise",
        "enterprise.name",
        lambda bad: registry_pb.FileEnterpriseRequest(
            request_id=registry.request_id(),
            enterprise=registry_pb.Enterprise(
                credit_code=registry.new_credit_code(),
                name=bad,
                district_code="150602",
                address="鄂尔多斯市东胜区天骄北路 1 号",
                legal_representative="王伟",
                contact_phone="13712345678",
            ),
        ),
    )


@pytest.fixture
def credit(make_settings):
    with credit_servers(make_settings) as start:
        yield start()


def test_credit_refuses_bad_text_as_the_core_says(credit):
    assert_refused_like_the_core(
        credit,
        "AppealRecord",
        "reason",
        lambda bad: credit_pb.AppealRecordRequest(record_id="150602-R1", reason=bad),
    )


@pytest.fixture
def inspections(make_settings):
    with inspections_servers(make_settings) as start:
        yield start()


def test_inspections_refuses_bad_text_as_the_core_says(inspections):
    assert_refused_like_the_core(
        inspections,
        "RegisterInspector",
        "inspector.name",
        lambda bad: inspections_pb.RegisterInspectorRequest(
            inspector=inspections_pb.Inspector(
                inspector_id="insp-text", name=bad, unit="东胜区住建局", district_codes=["150602"]
            )
        ),
    )


@pytest.fixture
def iot(make_settings):
    with iot_servers(make_settings) as start:
        yield start()


def test_iot_refuses_bad_text_as_the_core_says(iot):
    assert_refused_like_the_core(
        iot,
        "RegisterGateway",
        "name",
        lambda bad: iot_pb.RegisterGatewayRequest(request_id="req-text-1", name=bad),
    )
