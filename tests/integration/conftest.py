"""Registry fixtures: the registry's gRPC server built in-process on a loopback socket, over this
test's PostgreSQL schema, with clients that call it as one principal or another.

`registry` is a server for every district; `start_registry(**overrides)` builds more (e.g. one
that serves only `districts=("150602",)`). Every server, channel and engine a test starts is
closed after it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from grpc_support import InProcessServer, started_servers
from sample_data import date, new_credit_code, new_resident_id, request_id

from wuye.core.events import outbox
from wuye.registry.service import SPEC
from wuye.registry.v1 import registry_service_pb2 as pb
from wuye.registry.v1 import registry_service_pb2_grpc as pb_grpc

REGISTRY_DOMAIN = "wuye.registry"

# -- the server


class Registry(InProcessServer):
    """One running registry server with its settings and database, and builders of records."""

    spec = SPEC
    stub_class = pb_grpc.RegistryServiceStub

    # test data, as methods so test modules need not import this conftest
    new_credit_code = staticmethod(new_credit_code)
    new_resident_id = staticmethod(new_resident_id)
    request_id = staticmethod(request_id)
    DOMAIN = REGISTRY_DOMAIN

    # -- the database, to check what was (not) stored

    def outbox_types(self) -> list[str]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(outbox.c.event_type).order_by(outbox.c.id))
            return [row.event_type for row in rows]

    # -- builders of records, through the API

    def file_enterprise(
        self, district: str = "150602", credit_code: str | None = None, **fields: str
    ) -> pb.FileEnterpriseResponse:
        code = credit_code or new_credit_code(district)
        enterprise = pb.Enterprise(
            credit_code=code,
            name=fields.get("name", f"鄂尔多斯{code[-4:]}物业服务有限公司"),
            district_code=district,
            address=fields.get("address", "鄂尔多斯市东胜区天骄北路 1 号"),
            legal_representative=fields.get("legal_representative", "王伟"),
            contact_phone=fields.get("contact_phone", "13812345678"),
        )
        return self.admin.FileEnterprise(
            pb.FileEnterpriseRequest(request_id=request_id(), enterprise=enterprise)
        )

    def approve(self, filing_id: str) -> pb.ReviewFilingResponse:
        return self.admin.ReviewFiling(
            pb.ReviewFilingRequest(
                filing_id=filing_id, decision=pb.REVIEW_DECISION_APPROVE, reason=""
            )
        )

    def filed_enterprise(self, district: str = "150602", **fields: str) -> str:
        """A filed enterprise's credit code."""
        filed = self.file_enterprise(district, **fields)
        self.approve(filed.filing.filing_id)
        return filed.enterprise.credit_code

    def register_project(
        self,
        district: str = "150602",
        project_type: int = pb.PROJECT_TYPE_RESIDENTIAL,
        name: str = "天骄花园",
    ) -> pb.Project:
        return self.admin.RegisterProject(
            pb.RegisterProjectRequest(
                request_id=request_id(),
                project=pb.Project(
                    name=name,
                    type=project_type,
                    district_code=district,
                    sub_district="天骄街道",
                    address="鄂尔多斯市东胜区天骄路 8 号",
                    building_area_m2="125000.50",
                ),
            )
        ).project

    def assignment(self, credit_code: str, start: dt.date = dt.date(2026, 1, 1)) -> pb.Assignment:
        return pb.Assignment(
            credit_code=credit_code,
            contract_start=date(start),
            contract_end=date(start.replace(year=start.year + 3) - dt.timedelta(days=1)),
            handover=pb.HandoverInspection(
                inspection_date=date(start - dt.timedelta(days=10)),
                items=[
                    pb.HandoverItem(facility="电梯 3 号楼 1 单元", passed=True),
                    pb.HandoverItem(facility="消防水泵", passed=False, finding="压力不足"),
                ],
                record_reference="CJ-2026-001",
            ),
        )

    def assign(self, project_id: str, credit_code: str) -> pb.Project:
        return self.admin.AssignEnterprise(
            pb.AssignEnterpriseRequest(
                request_id=request_id(),
                project_id=project_id,
                assignment=self.assignment(credit_code),
            )
        ).project


@pytest.fixture
def start_registry(make_settings) -> Iterator[Callable[..., Registry]]:
    """start_registry(**settings overrides) -> Registry: migrates this test's schema (once) and
    starts a server; all are stopped after the test."""
    with started_servers(make_settings, Registry) as start:
        yield start


@pytest.fixture
def registry(start_registry) -> Registry:
    """A registry server serving every district of the city."""
    return start_registry()
