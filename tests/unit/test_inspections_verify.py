"""The verifier anyone runs on a published draw (wuye.inspections.verify), on exports built as
GetRound builds its answer and written as protobuf JSON (what grpcurl prints): an honest export
verifies against the commitment published when its round was created, an export forged to agree
with itself is refused against it, a change of any one character of the content is refused,
and nothing crashes the verifier."""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from functools import cache
from pathlib import Path

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from wuye.core.ids import credit_code_check_char
from wuye.inspections import domain, verify
from wuye.inspections.api import round_message
from wuye.inspections.domain import Check, Entity, Inspector, Round, RoundSpec, RoundState
from wuye.inspections.settings import DEFAULT_RATES
from wuye.inspections.v1 import inspections_service_pb2 as pb

SEED = hashlib.sha256(b"a published seed").digest()


def credit_code(serial: int) -> str:
    first17 = f"91150602MA{serial:07d}"
    return first17 + credit_code_check_char(first17)


def spec(period: str = "2026H2") -> RoundSpec:
    grades = ["C", "B", "A", "AA", "AAA", "C_UNFILED", ""]
    return RoundSpec(
        round_id="150602-R0a1b2c3d4e5f",
        districts=("150602",),
        period=period,
        rates=dict(DEFAULT_RATES),
        floor_rate=Decimal("0.3"),
        inspectors_per_check=2,
        created_at="2026-03-02T08:30:00Z",
        entities=tuple(
            Entity(
                f"150602-P{n:08d}",
                ("RESIDENTIAL", "OFFICE")[n % 2],
                "150602",
                credit_code(n % 4) if grades[n % 7] else "",
                grades[n % 7],
                n == 4,
                n % 3,
            )
            for n in range(9)
        ),
        yearly_floor_rate=Decimal("0.05"),
        drawn_earlier=("150602-P00000002",),
        complaint_weights=((1, 2), (2, 3)),
        inspectors=(
            Inspector("insp-01", "王伟", "东胜区住建局", ("150602",), (credit_code(1),)),
            Inspector("insp-02", "李娜", "东胜区住建局", ("150602", "150603"), ()),
            Inspector("insp-03", "张敏", "市住建局", ("150602",), (credit_code(2),)),
        ),
    )


def export(the_spec: RoundSpec | None = None, seed: bytes = SEED, drawn: bool = True) -> str:
    """GetRound's answer for a round of `the_spec`, as JSON."""
    the_spec = the_spec or spec()
    selections = domain.draw(seed, the_spec) if drawn else []
    by_id = {e.project_id: e for e in the_spec.entities}
    checks = tuple(
        Check(
            check_id=f"150602-K{n:012x}",
            round_id=the_spec.round_id,
            project_id=s.project_id,
            project_type=by_id[s.project_id].project_type,
            credit_code=by_id[s.project_id].credit_code,
            district_code=by_id[s.project_id].district_code,
            reason=s.reason,
            inspector_ids=s.inspector_ids,
        )
        for n, s in enumerate(selections)
    )
    state = RoundState.DRAWN if drawn else RoundState.COMMITTED
    message = round_message(
        Round(
            the_spec, domain.commitment(seed, the_spec), state, seed.hex() if drawn else "", checks
        )
    )
    return json_format.MessageToJson(pb.GetRoundResponse(round=message))


@cache
def honest() -> str:
    return export()


def test_an_honest_export_verifies():
    assert len(json.loads(honest())["round"]["selections"]) >= 3
    assert verify.problems_of(honest()) == []


def test_a_round_not_drawn_yet_has_nothing_to_verify():
    assert verify.problems_of(export(drawn=False)) == [
        "the round is not drawn yet: there is no seed to check"
    ]


def test_an_unknown_draw_algorithm_is_refused():
    data = json.loads(honest())
    data["round"]["algorithmVersion"] = 1
    assert verify.problems_of(json.dumps(data)) == ["draw algorithm version 1 is not known here"]


@pytest.mark.parametrize(
    "text", ["", "{", "[]", "null", '{"round": 1}', '{"rund": {}}', "\x00", "{" * 100_000]
)
def test_what_is_not_an_export_is_unreadable(text):
    with pytest.raises(verify.Unreadable) as unreadable:
        verify.problems_of(text)
    assert str(unreadable.value).startswith("not a GetRound export")


def test_an_empty_object_is_an_export_of_nothing_drawn():
    assert verify.problems_of("{}") == ["the round is not drawn yet: there is no seed to check"]


def _forged() -> str:
    """The honest export with a new seed, its own commitment and its own draw: it agrees with
    itself."""
    return export(seed=hashlib.sha256(b"a seed chosen after the fact").digest())


def test_an_export_is_held_to_the_commitment_published_first():
    published = json.loads(honest())["round"]["seedCommitment"]
    assert verify.problems_of(honest(), published) == []
    assert verify.problems_of(_forged()) == []
    [first, *_] = verify.problems_of(_forged(), published)
    assert first.startswith("the export's commitment") and published in first
    another = hashlib.sha256(b"another round").hexdigest()
    assert verify.problems_of(honest(), another)[0].startswith("the export's commitment")


def _with(path: tuple, value) -> str:
    data = json.loads(honest())
    target = data["round"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(data, ensure_ascii=False)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("seed",), "A" * 64),  # the seed, in upper case: not as published
        (("seed",), "0" * 63),  # odd length
        (("seed",), "zz" * 32),
        (("rates", 0, "rate"), "NaN"),
        (("rates", 0, "rate"), "Infinity"),
        (("rates", 0, "rate"), "+.02"),
        (("rates", 0, "rate"), "0.0_2"),
        (("rates", 0, "rate"), "twenty"),
        # Would take the draw hours to turn into a fraction.
        (("rates", 0, "rate"), "1E-999999999"),
        (("floorRate",), "1E-999999999"),
        (("floorRate",), ""),
    ],
)
def test_a_malformed_seed_or_rate_is_refused(path, value):
    [problem] = verify.problems_of(_with(path, value))
    assert problem.startswith("the export is malformed")


def _spans(text: str, key: str) -> list[range]:
    """Where the string values of `key` are in `text`."""
    return [range(m.start(1), m.end(1)) for m in re.finditer(rf'"{key}": "([^"]*)"', text)]


def _escapes(text: str) -> list[range]:
    return [range(m.start(), m.end()) for m in re.finditer(r"\\u[0-9a-fA-F]{4}", text)]


def test_every_one_character_change_of_the_content_is_refused():
    """Every position, five replacements each. What may change without a refusal is what does
    not change the content: whitespace between tokens, the case of a \\uXXXX escape's hex
    digits, check ids (assigned by the draw, so outside the commitment) and the spellings of
    the same instant protobuf's timestamp parser accepts."""
    text = honest()
    check_ids = [i for r in _spans(text, "checkId") for i in r]
    create_time = [i for r in _spans(text, "createTime") for i in r]
    escapes = {i: r for r in _escapes(text) for i in r}
    assert check_ids and create_time and escapes
    alphabet = '0 19aAfFzZ.-+_"\t:,{}[]é\\'
    refused = 0
    for i, original in enumerate(text):
        # Five replacements a position, in turn through the alphabet.
        for c in (alphabet * 2)[i % len(alphabet) :][:5]:
            if c == original:
                continue
            try:
                problems = verify.problems_of(text[:i] + c + text[i + 1 :])
            except verify.Unreadable:
                problems = ["unreadable"]
            if problems:
                refused += 1
                continue
            where = f"{text[max(0, i - 30) : i]}[{original}->{c}]{text[i + 1 : i + 10]}"
            assert (
                (original.isspace() and c.isspace())
                or i in check_ids
                or i in create_time
                or (i in escapes and c.lower() == original.lower())
            ), f"verified after changing {where!r}"
    assert refused > 4 * len(text)


@pytest.mark.parametrize(
    "key", ["seed", "seedCommitment", "projectId", "inspectorId", "creditCode", "rate"]
)
def test_a_changed_character_in_each_value_is_refused(key):
    text = honest()
    for span in _spans(text, key):
        i = span.start + len(span) // 2
        changed = text[:i] + ("1" if text[i] != "1" else "2") + text[i + 1 :]
        assert verify.problems_of(changed), f"{key} at {i}"


def test_a_different_create_time_is_refused():
    text = honest()
    assert '"createTime": "2026-03-02T08:30:00Z"' in text
    assert verify.problems_of(text.replace("2026-03-02T08:30:00Z", "2026-03-02T08:31:00Z"))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_edits_never_crash_the_verifier(data):
    text = honest()
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 8)))
    inserted = data.draw(st.text(max_size=8))
    changed = text[:start] + inserted + text[end:]
    try:
        problems = verify.problems_of(changed)
    except verify.Unreadable:
        return
    assert isinstance(problems, list)
    if not problems:
        # Only edits that keep the content verify: parsed, it is the honest export's (but for
        # check ids, which the commitment does not cover).
        assert _content(changed) == _content(text)


def _content(text: str) -> pb.Round:
    message = json_format.Parse(text, pb.GetRoundResponse()).round
    for selection in message.selections:
        selection.check_id = ""
    return message


# -- the command


def _run(path: Path, capsys, *options: str) -> tuple[int, str, str]:
    code = verify.main([str(path), *options])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_command_says_verified_against_the_published_commitment_or_refused(tmp_path, capsys):
    published = json.loads(honest())["round"]["seedCommitment"]
    good = tmp_path / "round.json"
    good.write_text(honest(), encoding="utf-8")
    code, out, _ = _run(good, capsys, "--commitment", published)
    assert (code, out.splitlines()[0][:9]) == (0, "VERIFIED:")
    assert "carries the published commitment" in out
    # Upper-case hex is the same commitment.
    assert _run(good, capsys, "--commitment", published.upper())[0] == 0

    forged = tmp_path / "forged.json"
    forged.write_text(_forged(), encoding="utf-8")
    code, out, _ = _run(forged, capsys, "--commitment", published)
    assert (code, out.splitlines()[0][:34]) == (1, "REFUSED: the export's commitment '")

    bad = tmp_path / "changed.json"
    seed_hex = SEED.hex()
    bad.write_text(honest().replace(seed_hex, seed_hex[:-1] + "0"), encoding="utf-8")
    code, out, _ = _run(bad, capsys, "--commitment", published)
    assert (code, out.splitlines()[0]) == (
        1,
        "REFUSED: the seed and lists do not match the export's commitment",
    )


def test_without_a_commitment_the_command_says_it_checked_self_consistency_only(tmp_path, capsys):
    forged = tmp_path / "forged.json"
    forged.write_text(_forged(), encoding="utf-8")
    code, out, _ = _run(forged, capsys)
    assert code == 0
    assert out.startswith("VERIFIED (self-consistency only)")
    assert "--commitment" in out


def test_a_byte_that_is_not_utf8_is_unreadable_not_a_crash(tmp_path, capsys):
    raw = bytearray(honest().encode())
    raw[len(raw) // 2] = 0xFF
    path = tmp_path / "round.json"
    path.write_bytes(bytes(raw))
    code, out, err = _run(path, capsys)
    assert (code, out) == (2, "") and err.startswith("UNREADABLE:") and "not UTF-8" in err


def test_json_that_is_not_an_export_is_unreadable(tmp_path, capsys):
    path = tmp_path / "round.json"
    path.write_text(honest()[: len(honest()) // 2], encoding="utf-8")
    code, out, err = _run(path, capsys)
    assert (code, out) == (2, "") and err.startswith("UNREADABLE: not a GetRound export")


def test_a_missing_file_a_bad_commitment_or_wrong_arguments_are_usage_errors(tmp_path, capsys):
    code, out, err = _run(tmp_path / "nowhere.json", capsys)
    assert (code, out) == (2, "") and "cannot read" in err
    good = tmp_path / "round.json"
    good.write_text(honest(), encoding="utf-8")
    for commitment in ["abc", "z" * 64, "0" * 65]:
        code, out, err = _run(good, capsys, "--commitment", commitment)
        assert (code, out) == (2, "") and "64 hexadecimal digits" in err
    assert verify.main([]) == 2
    assert verify.main(["a.json", "b.json"]) == 2
    assert "usage: python -m wuye.inspections verify-draw" in capsys.readouterr().err


def test_help_explains_the_command_and_exits_zero(capsys):
    assert verify.main(["--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "--commitment HEX" in shown and "0 VERIFIED, 1 REFUSED, 2 unreadable input" in shown
