"""Helpers the end-to-end tests share: waiting for what the platform does eventually, an
enterprise serving projects, and reading events from Kafka as any client would (librdkafka)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import grpc
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from sample_data import request_id

from wuye.core.wire import to_date
from wuye.registry.v1 import registry_service_pb2 as registry_pb
from wuye.voting.v1 import voting_service_pb2 as voting_pb

DONGSHENG = "150602"

# Through Kafka and another service's consumer (whose first group join on Tansu takes seconds).
EVENTUAL_SECONDS = 60.0
CALL_TIMEOUT_SECONDS = 10.0

T = TypeVar("T")


def poll(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = EVENTUAL_SECONDS,
    interval: float = 0.2,
) -> T:
    """`probe()` until it returns something, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(interval)


def create_vote_once_known(voting, vote: voting_pb.Vote, metadata) -> voting_pb.Vote:
    """CreateVote as soon as the voting service has learnt of the project and its units from the
    registry's events (until then it refuses with NOT_FOUND or FAILED_PRECONDITION)."""

    def create() -> voting_pb.Vote | None:
        try:
            return voting.CreateVote(
                voting_pb.CreateVoteRequest(request_id=request_id(), vote=vote),
                metadata=metadata,
                timeout=CALL_TIMEOUT_SECONDS,
            ).vote
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                raise
            return None

    return poll(create, "a vote on the project once voting has learnt of its units")


def served_projects(platform, new_filing, count: int) -> tuple[str, list[str], list[str]]:
    """An approved enterprise serving `count` new Dongsheng projects, and one self-managed
    project; returns the credit code, the served and the self-managed project ids."""
    registry = platform.registry()
    auth = platform.auth()
    code = new_filing.enterprise.credit_code
    filed = registry.FileEnterprise(new_filing, metadata=auth, timeout=CALL_TIMEOUT_SECONDS)
    registry.ReviewFiling(
        registry_pb.ReviewFilingRequest(
            filing_id=filed.filing.filing_id,
            decision=registry_pb.REVIEW_DECISION_APPROVE,
            reason="",
        ),
        metadata=auth,
        timeout=CALL_TIMEOUT_SECONDS,
    )
    start = dt.date(2026, 1, 1)
    projects = []
    for n in range(count + 1):
        project = registry.RegisterProject(
            registry_pb.RegisterProjectRequest(
                request_id=request_id(),
                project=registry_pb.Project(
                    name=f"天骄花园{n}期",
                    type=registry_pb.PROJECT_TYPE_RESIDENTIAL,
                    district_code=DONGSHENG,
                    sub_district="天骄街道",
                    address=f"鄂尔多斯市东胜区天骄路 {n + 8} 号",
                    building_area_m2="125000.50",
                ),
            ),
            metadata=auth,
            timeout=CALL_TIMEOUT_SECONDS,
        ).project
        projects.append(project.project_id)
    for project_id in projects[:count]:
        registry.AssignEnterprise(
            registry_pb.AssignEnterpriseRequest(
                request_id=request_id(),
                project_id=project_id,
                assignment=registry_pb.Assignment(
                    credit_code=code,
                    contract_start=to_date(start),
                    contract_end=to_date(dt.date(2028, 12, 31)),
                    handover=registry_pb.HandoverInspection(
                        inspection_date=to_date(start - dt.timedelta(days=10)),
                        items=[registry_pb.HandoverItem(facility="消防水泵", passed=True)],
                        record_reference="CJ-2026-001",
                    ),
                ),
            ),
            metadata=auth,
            timeout=CALL_TIMEOUT_SECONDS,
        )
    return code, projects[:count], projects[count:]


def read_events(
    bootstrap: str, topic: str, accept: Callable[[Message], T | None], count: int
) -> list[T]:
    """What `accept` makes of the first `count` records it accepts on `topic`, read from the
    beginning with partitions assigned by hand (joining a group is slow on Tansu)."""
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"e2e-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    deadline = time.monotonic() + EVENTUAL_SECONDS
    found: list[T] = []
    try:
        reader.assign(
            [
                TopicPartition(topic, p, OFFSET_BEGINNING)
                for p in _partitions(reader, topic, deadline)
            ]
        )
        while len(found) < count and time.monotonic() < deadline:
            message = reader.poll(0.5)
            if message is None or message.error() is not None:
                continue
            accepted = accept(message)
            if accepted is not None:
                found.append(accepted)
    finally:
        reader.close()
    assert len(found) == count, f"{len(found)} of {count} records found on {topic}"
    return found


def _partitions(reader: Consumer, topic: str, deadline: float) -> list[int]:
    while True:
        try:
            metadata = reader.list_topics(topic, timeout=5).topics[topic]
            if metadata.error is None and metadata.partitions:
                return sorted(metadata.partitions)
        except KafkaException:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"topic {topic} did not appear in {EVENTUAL_SECONDS} s")
        time.sleep(0.2)
