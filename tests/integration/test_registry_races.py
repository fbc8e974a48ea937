"""Commands that race on one aggregate, run at the same moment against PostgreSQL: each takes the
aggregate's row lock before it reads, so of two decisions that exclude each other exactly one
commits and the other is refused with the state the first one left."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import grpc
import pytest
from grpc_support import at_once

from wuye.registry.v1 import events_pb2 as ev
from wuye.registry.v1 import registry_service_pb2 as pb

pytestmark = pytest.mark.integration

ROUNDS = 25


def review(registry, filing_id: str, decision: int) -> Callable[[], object]:
    request = pb.ReviewFilingRequest(filing_id=filing_id, decision=decision, reason="材料不全")
    return lambda: registry.admin.ReviewFiling(request)


def test_of_a_concurrent_approval_and_rejection_of_one_filing_exactly_one_commits(registry):
    for _ in range(ROUNDS):
        filing_id = registry.file_enterprise().filing.filing_id
        approved, rejected = at_once(
            review(registry, filing_id, pb.REVIEW_DECISION_APPROVE),
            review(registry, filing_id, pb.REVIEW_DECISION_REJECT),
        )

        outcomes = [r for r in (approved, rejected) if isinstance(r, pb.ReviewFilingResponse)]
        refusals = [r for r in (approved, rejected) if not isinstance(r, pb.ReviewFilingResponse)]
        assert len(outcomes) == 1 and len(refusals) == 1, (approved, rejected)
        refusal = refusals[0]
        assert (refusal.code, refusal.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "FILING_NOT_PENDING",
        )
        stored = registry.admin.GetFiling(pb.GetFilingRequest(filing_id=filing_id)).filing
        assert stored.state == outcomes[0].filing.state
        decisions = [
            e
            for e in registry.outbox_events(ev.FilingApproved, ev.FilingRejected)
            if e.filing_id == filing_id
        ]
        assert len(decisions) == 1


def test_an_enterprise_whose_exit_is_approved_while_it_is_assigned_is_not_left_serving(registry):
    for _ in range(ROUNDS):
        code = registry.filed_enterprise()
        exit_filing = registry.admin.FileEnterpriseExit(
            pb.FileEnterpriseExitRequest(
                request_id=registry.request_id(), credit_code=code, reason="停止经营"
            )
        ).filing
        project = registry.register_project()
        approved, assigned = at_once(
            review(registry, exit_filing.filing_id, pb.REVIEW_DECISION_APPROVE),
            lambda code=code, project=project: registry.assign(project.project_id, code),
        )

        enterprise = registry.admin.GetEnterprise(pb.GetEnterpriseRequest(credit_code=code))
        served = registry.admin.GetProject(pb.GetProjectRequest(project_id=project.project_id))
        exited = enterprise.enterprise.status == pb.ENTERPRISE_STATUS_EXITED
        serving = served.project.current_assignment.credit_code == code
        assert exited != serving, (approved, assigned)
        refused = assigned if exited else approved
        assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
        expected = "ENTERPRISE_NOT_FILED" if exited else "ENTERPRISE_SERVES_PROJECTS"
        assert refused.reason == expected
        assert enterprise.enterprise.active_project_count == (0 if exited else 1)


def test_first_disclosures_published_at_the_same_moment_are_both_taken_in_turn(registry):
    """UpdateDisclosure serialises on its project: two first publications no longer race to
    insert the row (one used to fail), and each is announced, in the order they were applied."""
    for _ in range(ROUNDS):
        project_id = registry.register_project().project_id

        results = at_once(
            *(
                partial(
                    registry.admin.UpdateDisclosure,
                    pb.UpdateDisclosureRequest(
                        disclosure=pb.Disclosure(
                            project_id=project_id,
                            service_items=["保洁"],
                            service_grade=grade,
                            service_standard="鄂尔多斯市住宅物业服务标准",
                            fee_method=pb.FEE_METHOD_LUMP_SUM,
                            fee_fen_per_m2_month=fee,
                            service_phone="0477-8581234",
                            complaint_phones=["12345"],
                        )
                    ),
                )
                for grade, fee in (("一级", 180), ("二级", 150))
            )
        )

        assert all(isinstance(r, pb.UpdateDisclosureResponse) for r in results), results
        last = max(results, key=lambda r: r.disclosure.update_time.ToDatetime())
        public = registry.anonymous.GetDisclosure(pb.GetDisclosureRequest(project_id=project_id))
        assert public.disclosure == last.disclosure
        announced = [
            e for e in registry.outbox_events(ev.DisclosureUpdated) if e.project_id == project_id
        ]
        assert len(announced) == 2
