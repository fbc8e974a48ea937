"""The registry records a tender's contract: on ContractSigned it assigns the enterprise to the
project as AssignEnterprise does (EnterpriseAssigned announced), and a replay changes nothing."""

from __future__ import annotations

import pytest
from google.type import date_pb2

from wuye.registry.commands import Registry as RegistryCommands
from wuye.registry.v1 import events_pb2 as registry_events
from wuye.registry.v1 import registry_service_pb2 as registry_pb
from wuye.tenders.commands import TENDER_TOPIC
from wuye.tenders.v1 import events_pb2 as ev

pytestmark = pytest.mark.integration


def test_a_signed_contract_assigns_the_winner_to_the_project(registry) -> None:
    registry.handlers = RegistryCommands(registry.engine, registry.settings).handlers()
    winner = registry.filed_enterprise()
    project_id = registry.register_project().project_id
    signed = ev.ContractSigned(
        tender_id="150602-Tabc",
        district_code="150602",
        project_id=project_id,
        credit_code=winner,
        contract_hash="0" * 64,
        contract_start=date_pb2.Date(year=2027, month=1, day=1),
        contract_end=date_pb2.Date(year=2029, month=12, day=31),
    )
    registry.deliver(signed, topic=TENDER_TOPIC)
    registry.deliver(signed, topic=TENDER_TOPIC)

    project = registry.admin.GetProject(
        registry_pb.GetProjectRequest(project_id=project_id)
    ).project
    assert project.current_assignment.credit_code == winner
    assert project.current_assignment.contract_end == date_pb2.Date(year=2029, month=12, day=31)
    assigned = registry.outbox_events(registry_events.EnterpriseAssigned)
    assert [(e.project_id, e.credit_code) for e in assigned] == [(project_id, winner)]
