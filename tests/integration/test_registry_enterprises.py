"""Enterprises and their filings over gRPC: file, review, change, exit, list; idempotency; the
errors a caller sees; and the events a filing leaves in the outbox and on Kafka."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sample_data import new_credit_code, request_id

from wuye.core.kafka import ensure_topics
from wuye.core.service import build_relay
from wuye.registry.commands import ENTERPRISE_TOPIC
from wuye.registry.service import SPEC
from wuye.registry.v1 import events_pb2 as ev
from wuye.registry.v1 import registry_service_pb2 as pb

pytestmark = pytest.mark.integration

REGISTRY_DOMAIN = "wuye.registry"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def enterprise_message(code: str, district: str = "150602", **fields: str) -> pb.Enterprise:
    values = {
        "name": "康巴什物业服务有限公司",
        "address": "鄂尔多斯市康巴什区北区 2 号",
        "legal_representative": "李娜",
        "contact_phone": "13912345678",
        **fields,
    }
    return pb.Enterprise(credit_code=code, district_code=district, **values)


# ---------------------------------------------------------------- filing and review


def test_an_approved_initial_filing_files_the_enterprise(registry):
    code = new_credit_code()
    filed = registry.admin.FileEnterprise(
        pb.FileEnterpriseRequest(request_id=request_id(), enterprise=enterprise_message(code))
    )
    assert filed.enterprise.status == pb.ENTERPRISE_STATUS_PENDING
    assert filed.enterprise.contact_phone == "139****5678"
    assert filed.filing.kind == pb.FILING_KIND_INITIAL
    assert filed.filing.state == pb.FILING_STATE_SUBMITTED
    assert filed.filing.filing_id.startswith("150602-")

    reviewed = registry.authority("150602").ReviewFiling(
        pb.ReviewFilingRequest(
            filing_id=filed.filing.filing_id, decision=pb.REVIEW_DECISION_APPROVE
        )
    )
    assert reviewed.filing.state == pb.FILING_STATE_APPROVED
    assert reviewed.filing.reviewer == "authority-150602"
    assert reviewed.filing.HasField("review_time")
    assert reviewed.enterprise.status == pb.ENTERPRISE_STATUS_FILED

    got = registry.admin.GetEnterprise(pb.GetEnterpriseRequest(credit_code=code)).enterprise
    assert got.status == pb.ENTERPRISE_STATUS_FILED
    assert got.name == "康巴什物业服务有限公司"
    assert got.contact_phone == "139****5678"
    assert got.active_project_count == 0
    filing = registry.admin.GetFiling(pb.GetFilingRequest(filing_id=filed.filing.filing_id)).filing
    assert filing == reviewed.filing


def test_a_rejected_filing_keeps_its_reason_and_the_enterprise_may_file_again(registry):
    filed = registry.file_enterprise()
    code = filed.enterprise.credit_code
    rejected = registry.admin.ReviewFiling(
        pb.ReviewFilingRequest(
            filing_id=filed.filing.filing_id,
            decision=pb.REVIEW_DECISION_REJECT,
            reason="营业执照复印件不清晰",
        )
    )
    assert rejected.filing.state == pb.FILING_STATE_REJECTED
    assert rejected.filing.rejection_reason == "营业执照复印件不清晰"
    assert rejected.enterprise.status == pb.ENTERPRISE_STATUS_REJECTED

    again = registry.file_enterprise(credit_code=code)
    assert again.enterprise.status == pb.ENTERPRISE_STATUS_PENDING
    assert again.filing.filing_id != filed.filing.filing_id


def test_rejecting_without_a_reason_is_invalid(registry):
    filed = registry.file_enterprise()
    failure = registry.admin.fails(
        "ReviewFiling",
        pb.ReviewFilingRequest(
            filing_id=filed.filing.filing_id, decision=pb.REVIEW_DECISION_REJECT
        ),
    )
    assert failure.code == INVALID
    assert set(failure.violations) == {"reason"}


def test_a_review_without_a_decision_is_invalid(registry):
    filed = registry.file_enterprise()
    failure = registry.admin.fails(
        "ReviewFiling", pb.ReviewFilingRequest(filing_id=filed.filing.filing_id)
    )
    assert failure.code == INVALID
    assert "decision" in failure.violations
    assert "REVIEW_DECISION_APPROVE" in failure.violations["decision"]


def test_a_decided_filing_cannot_be_reviewed_again(registry):
    filed = registry.file_enterprise()
    registry.approve(filed.filing.filing_id)
    failure = registry.admin.fails(
        "ReviewFiling",
        pb.ReviewFilingRequest(
            filing_id=filed.filing.filing_id, decision=pb.REVIEW_DECISION_REJECT, reason="再审"
        ),
    )
    assert failure.code == FAILED_PRECONDITION
    assert (failure.reason, failure.domain) == ("FILING_NOT_PENDING", REGISTRY_DOMAIN)
    assert failure.metadata["state"] == "APPROVED"
    enterprise = registry.admin.GetEnterprise(
        pb.GetEnterpriseRequest(credit_code=filed.enterprise.credit_code)
    ).enterprise
    assert enterprise.status == pb.ENTERPRISE_STATUS_FILED


def test_a_second_filing_while_one_awaits_review_is_refused(registry):
    filed = registry.file_enterprise()
    failure = registry.admin.fails(
        "FileEnterprise",
        pb.FileEnterpriseRequest(
            request_id=request_id(), enterprise=enterprise_message(filed.enterprise.credit_code)
        ),
    )
    assert failure.code == FAILED_PRECONDITION
    assert failure.reason == "FILING_ALREADY_PENDING"
    assert failure.metadata["filing_id"] == filed.filing.filing_id


def test_a_filed_enterprise_cannot_file_initial_again(registry):
    code = registry.filed_enterprise()
    failure = registry.admin.fails(
        "FileEnterprise",
        pb.FileEnterpriseRequest(request_id=request_id(), enterprise=enterprise_message(code)),
    )
    assert failure.code == FAILED_PRECONDITION
    assert failure.reason == "ENTERPRISE_STATUS_FORBIDS_FILING"


# ---------------------------------------------------------------- changes and exits


def test_a_change_filing_applies_only_its_masked_fields_and_only_when_approved(registry):
    code = registry.filed_enterprise(address="原地址 1 号")
    change = (
        registry.enterprise(code)
        .FileEnterpriseChange(
            pb.FileEnterpriseChangeRequest(
                request_id=request_id(),
                credit_code=code,
                enterprise=pb.Enterprise(
                    name="新名称物业有限公司",
                    address="不在掩码中的地址",
                    contact_phone="0477-8581234",
                ),
                update_mask=FieldMask(paths=["name", "contact_phone"]),
            )
        )
        .filing
    )
    assert change.kind == pb.FILING_KIND_CHANGE
    assert change.state == pb.FILING_STATE_SUBMITTED
    assert list(change.change_mask.paths) == ["name", "contact_phone"]
    assert change.proposed.name == "新名称物业有限公司"
    assert change.proposed.address == ""
    assert change.proposed.contact_phone == "047****1234"

    before = registry.admin.GetEnterprise(pb.GetEnterpriseRequest(credit_code=code)).enterprise
    assert before.name != "新名称物业有限公司"

    approved = registry.approve(change.filing_id)
    after = registry.admin.GetEnterprise(pb.GetEnterpriseRequest(credit_code=code)).enterprise
    assert approved.enterprise == after
    assert after.name == "新名称物业有限公司"
    assert after.contact_phone == "047****1234"
    assert after.address == "原地址 1 号"
    assert after.legal_representative == before.legal_representative
    assert after.status == pb.ENTERPRISE_STATUS_FILED


def test_a_rejected_change_changes_nothing(registry):
    code = registry.filed_enterprise()
    before = registry.admin.GetEnterprise(pb.GetEnterpriseRequest(credit_code=code)).enterprise
    change = registry.admin.FileEnterpriseChange(
        pb.FileEnterpriseChangeRequest(
            request_id=request_id(),
            credit_code=code,
            enterprise=pb.Enterprise(name="别的名字"),
            update_mask=FieldMask(paths=["name"]),
        )
    ).filing
    registry.admin.ReviewFiling(
        pb.ReviewFilingRequest(
            filing_id=change.filing_id, decision=pb.REVIEW_DECISION_REJECT, reason="材料不全"
        )
    )
    after = registry.admin.GetEnterprise(pb.GetEnterpriseRequest(credit_code=code)).enterprise
    assert after.name == before.name


def test_a_change_names_known_fields_in_its_mask(registry):
    code = registry.filed_enterprise()
    for paths, problem in ((["status"], "unknown paths"), ([], "name the fields")):
        failure = registry.admin.fails(
            "FileEnterpriseChange",
            pb.FileEnterpriseChangeRequest(
                request_id=request_id(),
                credit_code=code,
                enterprise=pb.Enterprise(name="x"),
                update_mask=FieldMask(paths=paths),
            ),
        )
        assert failure.code == INVALID
        assert problem in failure.violations["update_mask"]
    assert registry.count("filings", credit_code=code) == 1


def test_an_approved_exit_filing_exits_the_enterprise(registry):
    code = registry.filed_enterprise()
    exit_filing = (
        registry.enterprise(code)
        .FileEnterpriseExit(
            pb.FileEnterpriseExitRequest(request_id=request_id(), credit_code=code, reason="歇业")
        )
        .filing
    )
    assert exit_filing.kind == pb.FILING_KIND_EXIT
    assert exit_filing.exit_reason == "歇业"
    reviewed = registry.approve(exit_filing.filing_id)
    assert reviewed.enterprise.status == pb.ENTERPRISE_STATUS_EXITED
    # An exited enterprise may come back with a new initial filing.
    assert registry.file_enterprise(credit_code=code).enterprise.status == (
        pb.ENTERPRISE_STATUS_PENDING
    )


def test_an_enterprise_serving_a_project_cannot_file_its_exit(registry):
    code = registry.filed_enterprise()
    registry.assign(registry.register_project().project_id, code)
    failure = registry.admin.fails(
        "FileEnterpriseExit",
        pb.FileEnterpriseExitRequest(request_id=request_id(), credit_code=code, reason="歇业"),
    )
    assert failure.code == FAILED_PRECONDITION
    assert failure.reason == "ENTERPRISE_SERVES_PROJECTS"
    assert failure.metadata["projects"] == "1"


def test_a_change_or_exit_of_an_unknown_enterprise_is_not_found(registry):
    code = new_credit_code()
    failure = registry.admin.fails(
        "FileEnterpriseExit",
        pb.FileEnterpriseExitRequest(request_id=request_id(), credit_code=code, reason="歇业"),
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "ENTERPRISE_NOT_FOUND")


def test_a_pending_enterprise_cannot_file_a_change(registry):
    code = registry.file_enterprise().enterprise.credit_code
    failure = registry.admin.fails(
        "FileEnterpriseChange",
        pb.FileEnterpriseChangeRequest(
            request_id=request_id(),
            credit_code=code,
            enterprise=pb.Enterprise(name="x"),
            update_mask=FieldMask(paths=["name"]),
        ),
    )
    assert failure.code == FAILED_PRECONDITION
    assert failure.reason == "FILING_ALREADY_PENDING"


# ---------------------------------------------------------------- lists


def test_list_enterprises_pages_through_every_one_exactly_once(registry):
    codes = sorted(registry.file_enterprise().enterprise.credit_code for _ in range(7))
    seen, token, pages = [], "", 0
    while True:
        page = registry.admin.ListEnterprises(
            pb.ListEnterprisesRequest(district_code="150602", page_size=3, page_token=token)
        )
        pages += 1
        assert len(page.enterprises) <= 3
        seen += [e.credit_code for e in page.enterprises]
        token = page.next_page_token
        if not token:
            break
    assert seen == codes
    assert pages == 3


def test_a_page_token_reused_with_other_filters_is_refused(registry):
    for _ in range(3):
        registry.file_enterprise()
    first = registry.admin.ListEnterprises(
        pb.ListEnterprisesRequest(district_code="150602", page_size=2)
    )
    assert first.next_page_token
    failure = registry.admin.fails(
        "ListEnterprises",
        pb.ListEnterprisesRequest(
            district_code="150602",
            status=pb.ENTERPRISE_STATUS_FILED,
            page_size=2,
            page_token=first.next_page_token,
        ),
    )
    assert failure.code == INVALID
    assert "other filters" in failure.violations["page_token"]
    forged = registry.admin.fails(
        "ListEnterprises", pb.ListEnterprisesRequest(page_token="not-a-token")
    )
    assert forged.code == INVALID
    assert "page_token" in forged.violations


def test_list_enterprises_filters_by_district_and_status(registry):
    filed = registry.filed_enterprise("150602")
    pending = registry.file_enterprise("150602").enterprise.credit_code
    elsewhere = registry.filed_enterprise("150627")

    def listed(**filters) -> set[str]:
        page = registry.admin.ListEnterprises(pb.ListEnterprisesRequest(**filters))
        return {e.credit_code for e in page.enterprises}

    assert listed() == {filed, pending, elsewhere}
    assert listed(district_code="150602") == {filed, pending}
    assert listed(status=pb.ENTERPRISE_STATUS_FILED) == {filed, elsewhere}
    assert listed(district_code="150602", status=pb.ENTERPRISE_STATUS_PENDING) == {pending}


def test_list_filings_shows_the_queue_awaiting_review(registry):
    waiting = registry.file_enterprise()
    registry.filed_enterprise()
    queue = registry.admin.ListFilings(
        pb.ListFilingsRequest(district_code="150602", state=pb.FILING_STATE_SUBMITTED)
    )
    assert [f.filing_id for f in queue.filings] == [waiting.filing.filing_id]
    mine = registry.enterprise(waiting.enterprise.credit_code).ListFilings(
        pb.ListFilingsRequest(credit_code=waiting.enterprise.credit_code)
    )
    assert [f.filing_id for f in mine.filings] == [waiting.filing.filing_id]


# ---------------------------------------------------------------- idempotency


def test_a_retried_filing_returns_the_first_answer_and_stores_it_once(registry):
    request = pb.FileEnterpriseRequest(
        request_id=request_id(), enterprise=enterprise_message(new_credit_code())
    )
    first = registry.admin.FileEnterprise(request)
    second = registry.admin.FileEnterprise(request)
    assert second == first
    code = request.enterprise.credit_code
    assert registry.count("enterprises", credit_code=code) == 1
    assert registry.count("filings", credit_code=code) == 1
    assert registry.count("outbox") == 1


def test_a_request_id_reused_for_another_request_is_refused(registry):
    rid = request_id()
    registry.admin.FileEnterprise(
        pb.FileEnterpriseRequest(request_id=rid, enterprise=enterprise_message(new_credit_code()))
    )
    other = new_credit_code()
    failure = registry.admin.fails(
        "FileEnterprise",
        pb.FileEnterpriseRequest(request_id=rid, enterprise=enterprise_message(other)),
    )
    assert failure.code == grpc.StatusCode.ALREADY_EXISTS
    assert (failure.reason, failure.domain) == ("REQUEST_ID_REUSED", REGISTRY_DOMAIN)
    assert registry.count("enterprises", credit_code=other) == 0
    assert registry.count("outbox") == 1


def test_a_filing_needs_a_request_id(registry):
    failure = registry.admin.fails(
        "FileEnterprise", pb.FileEnterpriseRequest(enterprise=enterprise_message(new_credit_code()))
    )
    assert failure.code == INVALID
    assert set(failure.violations) == {"request_id"}


# ---------------------------------------------------------------- bad input


def test_bad_input_names_every_offending_field_and_stores_nothing(registry):
    bad_code = new_credit_code()[:17] + "I"  # I is not in the alphabet, nor the check
    failure = registry.admin.fails(
        "FileEnterprise",
        pb.FileEnterpriseRequest(
            request_id=request_id(),
            enterprise=pb.Enterprise(
                credit_code=bad_code,
                district_code="150602",
                name="",
                address="地址\n第二行",
                contact_phone="12345",
            ),
        ),
    )
    assert failure.code == INVALID
    assert (failure.reason, failure.domain) == ("INVALID_ARGUMENT", REGISTRY_DOMAIN)
    assert set(failure.violations) == {
        "enterprise.credit_code",
        "enterprise.name",
        "enterprise.address",
        "enterprise.contact_phone",
    }
    assert "unified social credit code" in failure.violations["enterprise.credit_code"]
    assert "enterprise.credit_code" in failure.message
    assert registry.count("enterprises") == 0
    assert registry.count("outbox") == 0


@pytest.mark.parametrize("district", ["", "150699", "150602-1", "1506"])
def test_a_filing_in_no_district_of_the_city_is_invalid(registry, district):
    failure = registry.admin.fails(
        "FileEnterprise",
        pb.FileEnterpriseRequest(
            request_id=request_id(), enterprise=enterprise_message(new_credit_code(), district)
        ),
    )
    assert failure.code == INVALID
    assert set(failure.violations) == {"enterprise.district_code"}
    assert registry.count("enterprises") == 0


def test_a_credit_code_with_a_wrong_check_character_is_named(registry):
    code = new_credit_code()
    wrong = code[:17] + ("0" if code[17] != "0" else "1")
    failure = registry.admin.fails("GetEnterprise", pb.GetEnterpriseRequest(credit_code=wrong))
    assert failure.code == INVALID
    assert "check character" in failure.violations["credit_code"]


def test_unknown_enterprises_and_filings_are_not_found(registry):
    code = new_credit_code()
    failure = registry.admin.fails("GetEnterprise", pb.GetEnterpriseRequest(credit_code=code))
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "ENTERPRISE_NOT_FOUND")
    assert failure.metadata == {"credit_code": code}
    failure = registry.admin.fails(
        "GetFiling", pb.GetFilingRequest(filing_id="150602-F000000000000")
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "FILING_NOT_FOUND")
    failure = registry.admin.fails(
        "ReviewFiling",
        pb.ReviewFilingRequest(
            filing_id="150602-F000000000000", decision=pb.REVIEW_DECISION_APPROVE
        ),
    )
    assert failure.code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "filing_id", ["F000000000000", "999999-F000000000000", "150602F000000000000"]
)
def test_an_id_without_a_known_district_prefix_is_invalid(registry, filing_id):
    failure = registry.admin.fails("GetFiling", pb.GetFilingRequest(filing_id=filing_id))
    assert failure.code == INVALID
    assert "filing_id" in failure.violations


# ---------------------------------------------------------------- events


def test_a_filing_and_its_approval_leave_their_events_in_the_outbox(registry):
    filed = registry.file_enterprise()
    assert registry.outbox_types() == ["wuye.registry.v1.EnterpriseFiled"]
    registry.approve(filed.filing.filing_id)
    assert registry.outbox_types() == [
        "wuye.registry.v1.EnterpriseFiled",
        "wuye.registry.v1.FilingApproved",
    ]


def test_the_relay_publishes_the_filing_events_to_kafka_as_cloudevents(registry, read_topic):
    filed = registry.file_enterprise("150627")
    code = filed.enterprise.credit_code
    registry.approve(filed.filing.filing_id)

    ensure_topics(registry.settings, SPEC.topics, SPEC.topic_partitions)
    relay = build_relay(SPEC, registry.settings, registry.engine)
    try:
        assert relay.publish_batch() == 2
    finally:
        relay.close()
    assert registry.count("outbox") == 0

    records = read_topic(ENTERPRISE_TOPIC, count=2, key=code.encode())
    assert [r.headers["ce_type"] for r in records] == [
        "wuye.registry.v1.EnterpriseFiled",
        "wuye.registry.v1.FilingApproved",
    ]
    for record in records:
        assert record.headers["ce_source"] == "/wuye/registry"
        assert record.headers["ce_subject"] == f"enterprises/{code}"
        assert record.headers["ce_district"] == "150627"
        assert record.headers["content-type"] == "application/protobuf"
        assert record.headers["ce_id"]
    assert len({r.partition for r in records}) == 1  # one key, one partition, in order
    approved = ev.FilingApproved.FromString(records[1].value)
    assert approved.filing_id == filed.filing.filing_id
    assert approved.credit_code == code
    assert approved.kind == pb.FILING_KIND_INITIAL
    assert approved.status == pb.ENTERPRISE_STATUS_FILED
    assert approved.district_code == "150627"
    assert approved.reviewer == "admin"


@pytest.mark.parametrize(
    "filing_id",
    ["150602-\x00", "150602-F\x00" + "0" * 11, "150602-" + "F" * 100_000, "150602-F 1", "150602"],
    ids=["nul", "nul-inside", "huge", "space", "no-tail"],
)
def test_an_id_that_is_not_one_of_ours_is_invalid_and_the_answer_stays_short(registry, filing_id):
    failure = registry.admin.fails("GetFiling", pb.GetFilingRequest(filing_id=filing_id))
    assert failure.code == INVALID
    assert set(failure.violations) == {"filing_id"}
    assert len(failure.message) < 200


@pytest.mark.parametrize("district", ["150602-x", "150602-\x00", "150602" + "0" * 50_000])
def test_a_list_for_something_that_is_no_district_is_invalid(registry, district):
    failure = registry.admin.fails(
        "ListEnterprises", pb.ListEnterprisesRequest(district_code=district)
    )
    assert failure.code == INVALID
    assert set(failure.violations) == {"district_code"}


def test_a_page_token_forged_with_a_key_that_is_no_id_is_invalid(registry):
    # The token's fingerprint is computable by anyone; its key still has to look like ours.
    fingerprint = hashlib.sha256(json.dumps(["", 0]).encode()).hexdigest()[:16]
    forged = base64.urlsafe_b64encode(json.dumps({"a": "\x00", "f": fingerprint}).encode())
    failure = registry.admin.fails(
        "ListEnterprises", pb.ListEnterprisesRequest(page_token=forged.decode())
    )
    assert failure.code == INVALID
    assert set(failure.violations) == {"page_token"}


def test_a_change_naming_many_huge_unknown_fields_gets_a_short_answer(registry):
    code = registry.filed_enterprise()
    failure = registry.admin.fails(
        "FileEnterpriseChange",
        pb.FileEnterpriseChangeRequest(
            request_id=request_id(),
            credit_code=code,
            enterprise=pb.Enterprise(name="x"),
            update_mask=FieldMask(paths=[f"{n}" + "p" * 10_000 for n in range(100)]),
        ),
    )
    assert failure.code == INVALID
    assert "unknown paths" in failure.violations["update_mask"]
    assert len(failure.message) < 1000


def call_at_once(calls: list) -> list:
    """Run the calls on threads released together; returns each one's response or RpcError."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait(timeout=10)
        try:
            return call()
        except grpc.RpcError as e:
            return e

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_concurrent_retries_of_one_filing_all_get_the_first_answer(registry):
    request = pb.FileEnterpriseRequest(
        request_id=request_id(), enterprise=enterprise_message(new_credit_code())
    )
    answers = call_at_once([lambda: registry.admin.FileEnterprise(request)] * 6)
    errors = [a for a in answers if isinstance(a, grpc.RpcError)]
    assert not errors, [(e.code(), e.details()) for e in errors]
    assert all(a == answers[0] for a in answers)
    assert registry.count("filings") == 1
    assert registry.count("outbox") == 1


def test_concurrent_filings_of_one_enterprise_file_it_once(registry):
    code = new_credit_code()

    def file():
        return registry.admin.FileEnterprise(
            pb.FileEnterpriseRequest(request_id=request_id(), enterprise=enterprise_message(code))
        )

    answers = call_at_once([file] * 6)
    filed = [a for a in answers if isinstance(a, pb.FileEnterpriseResponse)]
    refused = [a for a in answers if isinstance(a, grpc.RpcError)]
    assert len(filed) == 1
    assert {e.code() for e in refused} == {FAILED_PRECONDITION}
    assert registry.count("filings", credit_code=code) == 1
