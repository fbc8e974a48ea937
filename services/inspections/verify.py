"""`python -m wuye.inspections verify-draw EXPORT.json`: anyone checks a published draw.

EXPORT is GetRound's answer as JSON (grpcurl's output, or any protobuf JSON of
wuye.inspections.v1.GetRoundResponse). The verifier checks that the revealed seed and the lists
match the commitment published when the round was created, and recomputes every selection.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

from google.protobuf import json_format

from wuye.inspections import domain
from wuye.inspections.domain import Entity, Inspector, RoundSpec, Selection
from wuye.inspections.v1 import inspections_service_pb2 as pb


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
        inspectors_per_check=message.inspectors_per_check,
        created_at=message.create_time.ToJsonString(),
        algorithm_version=message.algorithm_version,
        entities=tuple(
            Entity(
                e.project_id, e.project_type, e.district_code, e.credit_code, e.grade, e.triggered
            )
            for e in message.entities
        ),
        inspectors=tuple(
            Inspector(i.inspector_id, i.name, i.unit, tuple(i.district_codes), tuple(i.conflicts))
            for i in message.inspectors
        ),
    )


def problems_of(text: str) -> list[str]:
    try:
        answer = json_format.Parse(text, pb.GetRoundResponse())
    except json_format.ParseError as e:
        return [f"not a GetRound export: {e}"]
    message = answer.round
    if message.state != pb.ROUND_STATE_DRAWN:
        return ["the round is not drawn yet: there is no seed to check"]
    if message.algorithm_version != domain.ALGORITHM_VERSION:
        return [f"draw algorithm version {message.algorithm_version} is not known here"]
    try:
        seed = bytes.fromhex(message.seed)
        if seed.hex() != message.seed:
            raise ValueError("the seed is not lowercase hex as published")
        spec = spec_of(message)
    except (ValueError, ArithmeticError) as e:
        return [f"the export is malformed: {e}"]
    published = [
        Selection(s.project_id, s.reason, tuple(s.inspector_ids)) for s in message.selections
    ]
    return domain.verify(seed, message.seed_commitment, spec, published)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m wuye.inspections verify-draw ROUND_EXPORT.json", file=sys.stderr)
        return 2
    try:
        text = Path(argv[0]).read_bytes().decode()
    except OSError as e:
        print(f"cannot read {argv[0]}: {e.strerror or e}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as e:
        problems = [f"not a GetRound export: not UTF-8 ({e.reason} at byte {e.start})"]
    else:
        problems = problems_of(text)
    if problems:
        print("REFUSED: the export does not match its commitment and draw")
        for problem in problems[:20]:
            print(f"  - {problem}")
        return 1
    print("VERIFIED: the seed matches the commitment and every selection recomputes")
    return 0
