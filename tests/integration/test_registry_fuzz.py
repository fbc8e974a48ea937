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

import pytest
from grpc_support import fuzz_every_payload
from sample_data import request_id

from wuye.registry.v1 import registry_service_pb2 as pb

pytestmark = pytest.mark.integration

SERVICE = pb.DESCRIPTOR.services_by_name["RegistryService"]
MESSAGE_EXAMPLES = 40
BYTES_EXAMPLES = 12


def _seed(registry) -> tuple[list[str], str]:
    """Real records, so that fuzzed ids sometimes name them and calls get past validation:
    strings to draw from, and the id of a project that is served and has units."""
    code = registry.filed_enterprise()
    pending = registry.file_enterprise()
    project = registry.register_project().project_id
    registry.assign(project, code)
    person = registry.new_resident_id()
    [unit] = registry.admin.RegisterUnits(
        pb.RegisterUnitsRequest(
            request_id=request_id(),
            project_id=project,
            units=[
                pb.Unit(
                    number="1-1-101",
                    exclusive_area_m2="89.37",
                    owner=pb.Owner(kind=pb.OWNER_KIND_PERSON, name="张三", id_number=person),
                )
            ],
        )
    ).units
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
            request_id=request_id(),
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
        unit.unit_id,
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


@pytest.mark.parametrize("method", list(SERVICE.methods), ids=lambda m: m.name)
def test_no_request_makes_a_method_fail_internally_or_stop_answering(registry, method):
    pool, project = _seed(registry)
    tokens = {"admin": registry.admin.metadata, "anonymous": ()}
    fuzz_every_payload(
        registry,
        method,
        tokens,
        pool,
        bytes_examples=BYTES_EXAMPLES,
        message_examples=MESSAGE_EXAMPLES,
    )
    # And it still does its work.
    got = registry.admin.GetProject(pb.GetProjectRequest(project_id=project))
    assert got.project.project_id == project
