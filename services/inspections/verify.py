"""`python -m wuye.inspections verify-draw EXPORT.json --commitment HEX`: anyone checks a
published draw.

EXPORT is GetRound's answer as JSON (grpcurl's output, or any protobuf JSON of
wuye.inspections.v1.GetRoundResponse). HEX is the round's commitment as it was published when the
round was created (GetRound before the draw, or the RoundCreated event): an export is worth only
what it is held to, since anyone can forge one that agrees with itself (a new seed, its own
commitment, its own draw). The verifier checks that the export carries that commitment, that the
revealed seed and the lists match it, and recomputes every selection (domain.py writes the
algorithm out). Without --commitment it checks the export's agreement with itself only, and says
so.

Exit status: 0 VERIFIED, 1 REFUSED (with the first reason, then the others), 2 unreadable input.
"""

from __future__ import annotations

from decimal import Decimal

from google.protobuf import json_format

from wuye.core.draw import Unreadable, Verifier, read_seed
from wuye.inspections import domain
from wuye.inspections.domain import Entity, Inspector, RoundSpec, Selection
from wuye.inspections.v1 import inspections_service_pb2 as pb

__all__ = ["Unreadable", "main", "problems_of"]


def _decimal(text: str) -> Decimal:
    """A rate as the service publishes it: canonical ("0.30", never "+.30"), finite, and with
    an exponent the draw can turn into a fraction quickly."""
    value = Decimal(text)
    if not value.is_finite() or str(value) != text or value.as_tuple().exponent < -20:
        raise ValueError(f"{text[:40]!r} is not a rate as published")
    return value


def spec_of(message: pb.Round) -> RoundSpec:
    return RoundSpec(
        round_id=message.round_id,
        districts=tuple(message.district_codes),
        period=message.period,
        rates={r.grade: _decimal(r.rate) for r in message.rates},
        floor_rate=_decimal(message.floor_rate),
        yearly_floor_rate=_decimal(message.yearly_floor_rate),
        inspectors_per_check=message.inspectors_per_check,
        created_at=message.create_time.ToJsonString(),
        algorithm_version=message.algorithm_version,
        entities=tuple(
            Entity(
                e.project_id,
                e.project_type,
                e.district_code,
                e.credit_code,
                e.grade,
                e.triggered,
                e.complaints,
            )
            for e in message.entities
        ),
        inspectors=tuple(
            Inspector(i.inspector_id, i.name, i.unit, tuple(i.district_codes), tuple(i.conflicts))
            for i in message.inspectors
        ),
        drawn_earlier=tuple(message.drawn_earlier),
        complaint_weights=tuple((w.complaints, w.weight) for w in message.complaint_weights),
    )


def read_export(text: str) -> pb.Round:
    if not text.lstrip().startswith("{"):
        # protobuf's parser takes "[]" for an empty message.
        raise Unreadable("not a GetRound export: not a JSON object")
    try:
        return json_format.Parse(text, pb.GetRoundResponse()).round
    except json_format.ParseError as e:
        raise Unreadable(f"not a GetRound export: {e}") from e


def problems_of(text: str, published_commitment: str | None = None) -> list[str]:
    """Why the export `text` is refused, first reason first; empty if it verifies. Raises
    Unreadable if `text` is not an export."""
    message = read_export(text)
    if message.state != pb.ROUND_STATE_DRAWN:
        return ["the round is not drawn yet: there is no seed to check"]
    if message.algorithm_version != domain.ALGORITHM_VERSION:
        return [f"draw algorithm version {message.algorithm_version} is not known here"]
    try:
        seed = read_seed(message.seed)
        spec = spec_of(message)
    except (ValueError, ArithmeticError) as e:
        return [f"the export is malformed: {e}"]
    published = [
        Selection(s.project_id, s.reason, tuple(s.inspector_ids)) for s in message.selections
    ]
    return domain.verify(seed, message.seed_commitment, spec, published, published_commitment)


VERIFY_DRAW = Verifier(
    prog="python -m wuye.inspections verify-draw",
    description="Check a published inspection draw: the export must carry the commitment "
    "published when the round was created, its seed and lists must match that commitment, "
    "and every selection must recompute. Exit status: 0 VERIFIED, 1 REFUSED, 2 unreadable "
    "input.",
    export_help="GetRound's answer as JSON",
    commitment_help="the round's commitment as published at its creation (64 hex digits); "
    "without it only the export's agreement with itself is checked",
    problems_of=problems_of,
    verified="VERIFIED: the export carries the published commitment, the seed and lists match "
    "it, and every selection recomputes",
    self_consistent_only="VERIFIED (self-consistency only): the seed matches the export's own "
    "commitment and every selection recomputes; without --commitment (the commitment published "
    "when the round was created) a forged export would verify too",
)
main = VERIFY_DRAW.main
