"""`python -m wuye.tenders verify-committee EXPORT.json --commitment HEX`: anyone checks a
tender's expert committee.

EXPORT is GetTender's answer as JSON (grpcurl's output, or any protobuf JSON of
wuye.tenders.v1.GetTenderResponse) once the committee is drawn. HEX is the commitment as it was
published at the bid deadline, before the bids were opened (the BidsOpened event, or GetTender
before the draw). The verifier checks that the export carries that commitment, that the revealed
seed and the frozen lists match it, and recomputes the drawn experts (domain.py writes the
algorithm out). Without --commitment it checks the export's agreement with itself only.

Exit status: 0 VERIFIED, 1 REFUSED (with the first reason, then the others), 2 unreadable input.
"""

from __future__ import annotations

from google.protobuf import json_format

from wuye.core.draw import Unreadable, Verifier, read_seed
from wuye.tenders import domain
from wuye.tenders.v1 import tenders_service_pb2 as pb


def lists_of(tender: pb.Tender) -> dict:
    """The committee's frozen lists as domain.committee_lists writes them."""
    committee = tender.committee
    return {
        "algorithm_version": committee.algorithm_version,
        "tender_id": tender.tender_id,
        "size": committee.size,
        "representatives": list(committee.representatives),
        "bidders": list(committee.bidders),
        "pool": [
            [e.expert_id, list(e.specialities), list(e.district_codes), list(e.conflicts)]
            for e in committee.pool
        ],
    }


def read_export(text: str) -> pb.Tender:
    if not text.lstrip().startswith("{"):
        raise Unreadable("not a GetTender export: not a JSON object")
    try:
        return json_format.Parse(text, pb.GetTenderResponse()).tender
    except json_format.ParseError as e:
        raise Unreadable(f"not a GetTender export: {e}") from e


def problems_of(text: str, published_commitment: str | None = None) -> list[str]:
    """Why the export `text` is refused, first reason first; empty if it verifies."""
    tender = read_export(text)
    committee = tender.committee
    if not committee.seed:
        return ["the committee is not drawn yet: there is no seed to check"]
    if committee.algorithm_version != domain.COMMITTEE_ALGORITHM_VERSION:
        return [f"committee algorithm version {committee.algorithm_version} is not known here"]
    try:
        seed = read_seed(committee.seed)
    except ValueError as e:
        return [f"the export is malformed: {e}"]
    return domain.verify_committee(
        seed,
        committee.seed_commitment,
        lists_of(tender),
        tuple(committee.experts),
        published_commitment,
    )


main = Verifier(
    prog="python -m wuye.tenders verify-committee",
    description="Check a tender's expert committee: the export must carry the commitment "
    "published at the bid deadline, its seed and lists must match that commitment, and the "
    "drawn experts must recompute. Exit status: 0 VERIFIED, 1 REFUSED, 2 unreadable input.",
    export_help="GetTender's answer as JSON",
    commitment_help="the tender's commitment as published at the bid deadline (64 hex digits); "
    "without it only the export's agreement with itself is checked",
    problems_of=problems_of,
    verified="VERIFIED: the export carries the published commitment, the seed and lists match "
    "it, and the committee recomputes",
    self_consistent_only="VERIFIED (self-consistency only): the seed matches the export's own "
    "commitment and the committee recomputes; without --commitment (the commitment published at "
    "the bid deadline) a forged export would verify too",
).main
