"""Fuzzing every method of wuye.tenders.v1.TendersService over a real socket, with the credit
service answering: random bytes, empty requests and random well-typed requests (odd unicode,
huge strings, extreme integers and times, unknown enum numbers), seeded with real tender,
question, complaint, expert and enterprise ids so that some calls get past validation. A caller
never sees UNKNOWN or INTERNAL (nor a hang), and the server keeps working.

The methods come from the service descriptor, so a new RPC is fuzzed without touching this file;
one pair of servers serves them all, to keep the test's share of the suite small.
"""

from __future__ import annotations

import pytest
from grpc_support import fuzz_every_payload
from test_tenders_support import credit_and_tenders, digest, filed

from wuye.tenders.v1 import tenders_service_pb2 as pb

pytestmark = pytest.mark.integration

SERVICE = pb.DESCRIPTOR.services_by_name["TendersService"]
MESSAGE_EXAMPLES = 12
BYTES_EXAMPLES = 3


def test_no_request_makes_a_method_fail_internally_or_stop_answering(make_settings, pg_url):
    with credit_and_tenders(make_settings, pg_url, min_tendering_days=0, enquiry_days=0) as (
        credit,
        tenders,
    ):
        codes = [filed(credit) for _ in range(3)]
        experts = tenders.register_experts(5)
        draft = tenders.create().tender_id
        opened = tenders.create().tender_id
        tenders.publish(opened, days=1)
        tenders.tick(seconds=1)
        for n, code in enumerate(codes):
            tenders.bid(opened, code, 100_000_00 + n)
        tenders.tick(days=2)
        question_tender = tenders.create().tender_id
        tenders.publish(question_tender, days=1)
        pool = [
            draft,
            opened,
            question_tender,
            *codes,
            *experts,
            "rep-1",
            "150602",
            "150603",
            digest("x"),
            "85.5",
            "100",
        ]
        tokens = {
            "admin": tenders.admin.metadata,
            "enterprise": tenders.enterprise(codes[0]).metadata,
            "developer": tenders.developer().metadata,
            "expert": tenders.expert(experts[0]).metadata,
            "anonymous": (),
        }
        for method in SERVICE.methods:
            fuzz_every_payload(
                tenders,
                method,
                tokens,
                pool,
                bytes_examples=BYTES_EXAMPLES,
                message_examples=MESSAGE_EXAMPLES,
            )
        # And it still does its work.
        assert tenders.get(opened).opened_bids
