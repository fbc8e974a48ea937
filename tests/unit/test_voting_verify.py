"""The verifier anyone runs on a closed vote's ballot log (wuye.voting.verify), on exports built
from the domain's own roll, log and count and written as proto3 JSON the way a generic gRPC
client prints GetBallotLog: an honest log verifies; a flipped choice, a removed entry or a
changed weight is refused; nothing a file can hold crashes it."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from wuye.voting import domain, verify
from wuye.voting.domain import (
    Channel,
    Choice,
    CountingRules,
    LogEntry,
    Matter,
    MatterClass,
    MatterType,
    RollUnit,
    VoteResult,
    VoteSpec,
)
from wuye.voting.v1 import voting_service_pb2 as pb

YES, NO, ABSTAIN = Choice.YES, Choice.NO, Choice.ABSTAIN
OPEN = dt.datetime(2026, 6, 1, 1, 0, tzinfo=dt.UTC)
SPEC = VoteSpec(
    vote_id="150602-V00000000abcd",
    project_id="150602-P00000001",
    district_code="150602",
    title="2026 年第一次业主共同决定",
    open_time=OPEN,
    close_time=OPEN + dt.timedelta(days=14),
    rules=CountingRules(),
    matters=(
        Matter(
            "M1",
            MatterType.RAISE_FUND,
            MatterClass.SPECIAL,
            "续筹维修资金",
            "每平方米专有面积续筹 30 元",
            fund_amount_fen=1_234_500_00,
            unit_ids=("150602-U1", "150602-U2"),
        ),
        Matter("M2", MatterType.HIRE_ENTERPRISE, MatterClass.ORDINARY, "续聘物业", "续聘三年"),
    ),
)
# Ten units: a buyer of two units, the developer's three unsold ones, five other owners.
UNITS = [
    RollUnit("150602-U1", 89_37_00, "buyer-two-units"),
    RollUnit("150602-U2", 120_05_00, "buyer-two-units"),
    *(RollUnit(f"150602-D{n}", 95_00_00, "developer", developer_unsold=True) for n in range(3)),
    *(RollUnit(f"150602-U{n}", (80 + n) * 100_00, f"owner-{n}") for n in range(3, 8)),
]
VOTERS = domain.build_roll(UNITS, domain.pseudonymizer(b"pii key", SPEC.vote_id).key_of)
ROLL = domain.published_roll(VOTERS)
DIGEST = domain.roll_digest(SPEC, ROLL)


def voter(owner_key: str) -> domain.Voter:
    return next(v for v in VOTERS if owner_key in v.owner_keys)


BALLOTS: list[tuple[str, dict[str, Choice], str]] = [
    ("buyer-two-units", {"M1": NO, "M2": YES}, ""),
    ("owner-3", {"M1": YES, "M2": YES}, ""),
    ("developer", {"M1": YES, "M2": ABSTAIN}, ""),
    ("owner-4", {"M1": YES, "M2": YES}, "纸质表决票 2026-第 017 号"),
    ("owner-5", {"M1": YES, "M2": NO}, ""),
    ("buyer-two-units", {"M1": YES, "M2": YES}, ""),
    ("owner-6", {"M1": ABSTAIN, "M2": YES}, ""),
]


def chain(ballots=BALLOTS) -> list[LogEntry]:
    entries, head = [], DIGEST
    for n, (owner_key, choices, paper) in enumerate(ballots, start=1):
        entry = domain.append_ballot(
            SPEC,
            head,
            n,
            voter(owner_key),
            tuple(choices.items()),
            OPEN + dt.timedelta(hours=n, microseconds=n),
            Channel.PAPER if paper else Channel.ONLINE,
            paper,
        )
        entries.append(entry)
        head = entry.entry_hash
    return entries


ENTRIES = chain()


# ---------------------------------------------------------------- domain -> wire, as the API will


def timestamp(time: dt.datetime) -> Timestamp:
    us = domain.micros(time)
    return Timestamp(seconds=us // 1_000_000, nanos=us % 1_000_000 * 1000)


def threshold(t: domain.Threshold) -> pb.Threshold:
    return pb.Threshold(fraction=domain.format_fraction(t.fraction), inclusive=t.inclusive)


def result_message(result: VoteResult) -> pb.VoteResult:
    return pb.VoteResult(
        roll_area_cm2=result.roll_area_cm2,
        roll_owners=result.roll_owners,
        ballots=result.ballots,
        counted_ballots=result.counted_ballots,
        count_time=timestamp(SPEC.close_time),
        matters=[
            pb.MatterResult(
                matter_id=m.matter_id,
                matter_class=pb.MatterClass.Value(f"MATTER_CLASS_{m.matter_class}"),
                participating_area_cm2=m.participating_area_cm2,
                participating_owners=m.participating_owners,
                yes_area_cm2=m.yes_area_cm2,
                yes_owners=m.yes_owners,
                no_area_cm2=m.no_area_cm2,
                no_owners=m.no_owners,
                abstain_area_cm2=m.abstain_area_cm2,
                abstain_owners=m.abstain_owners,
                deemed_choice=pb.Choice.Value(f"CHOICE_{m.deemed_choice}")
                if m.deemed_choice
                else 0,
                deemed_area_cm2=m.deemed_area_cm2,
                deemed_owners=m.deemed_owners,
                quorum_reached=m.quorum_reached,
                passed=m.passed,
            )
            for m in result.matters
        ],
    )


def vote_message(spec: VoteSpec, result: VoteResult) -> pb.Vote:
    return pb.Vote(
        vote_id=spec.vote_id,
        project_id=spec.project_id,
        district_code=spec.district_code,
        title=spec.title,
        matters=[
            pb.Matter(
                matter_id=m.matter_id,
                type=pb.MatterType.Value(f"MATTER_TYPE_{m.type}"),
                matter_class=pb.MatterClass.Value(f"MATTER_CLASS_{m.matter_class}"),
                title=m.title,
                text=m.text,
                fund_amount_fen=m.fund_amount_fen,
                unit_ids=m.unit_ids,
            )
            for m in spec.matters
        ],
        open_time=timestamp(spec.open_time),
        close_time=timestamp(spec.close_time),
        state=pb.VOTE_STATE_CLOSED,
        rules=pb.CountingRules(
            quorum=threshold(spec.rules.quorum),
            special_majority=threshold(spec.rules.special_majority),
            ordinary_majority=threshold(spec.rules.ordinary_majority),
            non_voters_follow_majority=spec.rules.non_voters_follow_majority,
        ),
        roll_digest=DIGEST,
        roll_owners=result.roll_owners,
        roll_area_cm2=result.roll_area_cm2,
        result=result_message(result),
        algorithm_version=spec.algorithm_version,
    )


def entry_message(e: LogEntry) -> pb.LogEntry:
    return pb.LogEntry(
        sequence=e.sequence,
        pseudonym=e.pseudonym,
        area_cm2=e.area_cm2,
        choices=[
            pb.MatterChoice(matter_id=m, choice=pb.Choice.Value(f"CHOICE_{c}"))
            for m, c in e.choices
        ],
        cast_time=timestamp(e.cast_time),
        channel=pb.BallotChannel.Value(f"BALLOT_CHANNEL_{e.channel}"),
        paper_reference=e.paper_reference,
        previous_hash=e.previous_hash,
        entry_hash=e.entry_hash,
    )


def export_parts(entries: list[LogEntry] = ENTRIES) -> list[pb.GetBallotLogResponse]:
    """GetBallotLog's stream: the vote and the roll first, then the entries in two parts."""
    result = domain.count(SPEC, ROLL, entries)
    half = len(entries) // 2
    return [
        pb.GetBallotLogResponse(
            vote=vote_message(SPEC, result),
            roll=[pb.RollEntry(pseudonym=r.pseudonym, area_cm2=r.area_cm2) for r in ROLL],
        ),
        pb.GetBallotLogResponse(entries=[entry_message(e) for e in entries[:half]]),
        pb.GetBallotLogResponse(entries=[entry_message(e) for e in entries[half:]]),
    ]


def export_json(entries: list[LogEntry] = ENTRIES) -> str:
    """The whole export as one message, as proto3 JSON."""
    whole = pb.GetBallotLogResponse()
    for part in export_parts(entries):
        whole.MergeFrom(part)
    return json_format.MessageToJson(whole, ensure_ascii=False)


def outcome(text: str, roll_digest: str | None = DIGEST, receipt: str | None = None):
    return verify.check(verify.read_export(text), roll_digest, receipt)


def edited(change) -> str:
    """The export after `change` edited its JSON value in place."""
    value = json.loads(export_json())
    change(value)
    return json.dumps(value, ensure_ascii=False)


def assert_refused(text: str, reason: str, roll_digest: str | None = DIGEST) -> None:
    result = outcome(text, roll_digest)
    assert result.status == verify.REFUSED
    assert result.lines[-1].startswith("REFUSED: ")
    assert reason in result.lines[-1]


# ---------------------------------------------------------------- honest logs


def test_the_export_is_a_realistic_vote():
    result = domain.count(SPEC, ROLL, ENTRIES)
    assert (result.roll_owners, result.ballots, result.counted_ballots) == (7, 7, 6)
    assert [m.passed for m in result.matters] == [True, True]


def test_an_honest_log_verifies_against_the_digest_published_at_opening():
    result = outcome(export_json())
    assert result.status == verify.VERIFIED
    assert result.lines[-1].startswith("VERIFIED: the roll matches the digest published")
    assert "M1 (special): passed" in "\n".join(result.lines)


def test_without_the_published_digest_the_verifier_says_it_checked_self_consistency_only():
    result = outcome(export_json(), roll_digest=None)
    assert result.status == verify.VERIFIED
    assert "self-consistency only" in result.lines[-1]
    assert "not to the one published at opening" in result.lines[-1]


def test_an_empty_log_of_a_vote_nobody_voted_in_verifies():
    assert outcome(export_json([])).status == verify.VERIFIED


def test_the_stream_a_generic_client_prints_and_a_json_array_both_read():
    parts = [json_format.MessageToJson(p) for p in export_parts()]
    assert outcome("\n".join(parts)).status == verify.VERIFIED
    assert outcome("[" + ",".join(parts) + "]").status == verify.VERIFIED


def test_a_counted_receipt_verifies_and_a_replaced_one_is_refused():
    counted = outcome(export_json(), receipt=ENTRIES[5].entry_hash)
    assert counted.status == verify.VERIFIED
    assert f"receipt {ENTRIES[5].entry_hash} is entry 6, its owner's last: counted" in counted.lines
    replaced = outcome(export_json(), receipt=ENTRIES[0].entry_hash)
    assert replaced.status == verify.REFUSED
    assert "is entry 1, replaced by the same owner's entry 6" in replaced.lines[-1]
    unknown = outcome(export_json(), receipt="ab" * 32)
    assert unknown.status == verify.REFUSED
    assert "is not in the log" in unknown.lines[-1]


# ---------------------------------------------------------------- reading proto3 JSON


def test_proto_field_names_numbers_for_int64_and_enums_read_as_the_printed_form():
    whole = pb.GetBallotLogResponse()
    for part in export_parts():
        whole.MergeFrom(part)
    other_form = json_format.MessageToDict(
        whole, preserving_proto_field_name=True, use_integers_for_enums=True
    )
    for entry in other_form["entries"]:
        entry["sequence"] = int(entry["sequence"])
        entry["cast_time"] = entry["cast_time"].replace("Z", "+00:00")
    assert verify.read_export(json.dumps(other_form)) == verify.read_export(export_json())
    assert outcome(json.dumps(other_form)).status == verify.VERIFIED


def test_a_time_with_an_offset_is_the_same_instant():
    stamp = verify.read_message(
        {"castTime": "2026-06-01T09:30:00.25+08:00"}, pb.LogEntry.DESCRIPTOR
    )
    assert (
        stamp["cast_time"]
        == domain.micros(dt.datetime(2026, 6, 1, 1, 30, tzinfo=dt.UTC)) * 1000 + 250_000_000
    )


@pytest.mark.parametrize(
    "entry",
    [
        {"sequence": ""},
        {"areaCm2": "1", "area_cm2": "1"},
        {"sequence": "1.5"},
        {"sequence": True},
        {"sequence": str(2**63)},
        {"channel": "ONLINE"},
        {"channel": 7},
        {"choices": {"matterId": "M1"}},
        {"choices": [{"choice": "CHOICE_MAYBE"}]},
        {"castTime": "2026-06-01 01:00:00Z"},
        {"castTime": "2026-02-30T01:00:00Z"},
        {"pseudonym": 12},
        {"pseudonym": "\ud800"},
        {"castTime": "9999-12-31T23:59:59-01:00"},
        {"castTime": "0000-01-01T00:00:00Z"},
    ],
)
def test_a_field_not_as_proto3_json_writes_it_is_unreadable(entry):
    with pytest.raises(verify.Unreadable):
        verify.read_message(entry, pb.LogEntry.DESCRIPTOR)


log_entries = st.builds(
    pb.LogEntry,
    sequence=st.integers(-(2**63), 2**63 - 1),
    pseudonym=st.text(),
    area_cm2=st.integers(-(2**63), 2**63 - 1),
    choices=st.lists(
        st.builds(pb.MatterChoice, matter_id=st.text(), choice=st.sampled_from([0, 1, 2, 3]))
    ),
    cast_time=st.builds(
        Timestamp,
        seconds=st.integers(-62135596800, 253402300799),
        nanos=st.integers(0, 999_999_999),
    ),
    channel=st.sampled_from([0, 1, 2]),
    paper_reference=st.text(),
)


@settings(max_examples=200, deadline=None)
@given(log_entries)
def test_the_reader_reads_what_protobuf_prints(message):
    read = verify.read_message(
        json.loads(json_format.MessageToJson(message)), pb.LogEntry.DESCRIPTOR
    )
    stamp = message.cast_time
    assert read == {
        "sequence": message.sequence,
        "pseudonym": message.pseudonym,
        "area_cm2": message.area_cm2,
        "choices": tuple(
            {"matter_id": c.matter_id, "choice": pb.Choice.Name(c.choice)} for c in message.choices
        ),
        "cast_time": stamp.seconds * 1_000_000_000 + stamp.nanos,
        "channel": pb.BallotChannel.Name(message.channel),
        "paper_reference": message.paper_reference,
        "previous_hash": "",
        "entry_hash": "",
    }


# ---------------------------------------------------------------- tampered logs


def flip_choice(value):
    value["entries"][2]["choices"][0]["choice"] = "CHOICE_NO"


def test_one_flipped_choice_is_refused():
    assert_refused(edited(flip_choice), "entry 3's content does not hash to its entry hash")


def test_a_removed_entry_is_refused():
    def remove(value):
        del value["entries"][3]

    assert_refused(edited(remove), "entry 4 has sequence 5")


def test_a_removed_last_entry_is_refused_by_the_published_result():
    def remove(value):
        del value["entries"][-1]

    assert_refused(edited(remove), "the result states ballots 7, the log gives 6")


def test_a_changed_weight_on_the_roll_is_refused():
    def heavier(value):
        value["roll"][0]["areaCm2"] = str(int(value["roll"][0]["areaCm2"]) + 1)

    assert_refused(edited(heavier), "not to the digest published at opening")
    assert_refused(edited(heavier), "not to the stated", roll_digest=None)


def test_a_changed_weight_in_an_entry_is_refused():
    def heavier(value):
        value["entries"][1]["areaCm2"] = "99999999"

    assert_refused(edited(heavier), "entry 2's content does not hash")


def test_a_changed_result_is_refused():
    def overturned(value):
        value["vote"]["result"]["matters"][1]["passed"] = False

    assert_refused(edited(overturned), "matter M2: the result states passed False")


def test_changed_rules_are_refused_even_with_a_restated_digest():
    def lenient(value):
        value["vote"]["rules"]["specialMajority"]["fraction"] = "1/2"
        value["vote"]["rollDigest"] = "0" * 64

    assert_refused(edited(lenient), "not to the digest published at opening")


def test_a_log_rewritten_after_a_flipped_choice_loses_the_owners_receipt():
    """Whoever rewrites the chain from a changed ballot on, with a recount to match, is caught
    by the owner holding the receipt of the original ballot."""
    forged = [*BALLOTS]
    forged[5] = ("buyer-two-units", {"M1": NO, "M2": YES}, "")
    forgery = export_json(chain(forged))
    assert outcome(forgery).status == verify.VERIFIED
    refused = outcome(forgery, receipt=ENTRIES[5].entry_hash)
    assert refused.status == verify.REFUSED
    assert "is not in the log" in refused.lines[-1]


def test_a_vote_not_closed_has_no_result_to_verify():
    def still_open(value):
        value["vote"]["state"] = "VOTE_STATE_OPEN"
        del value["vote"]["result"]

    assert_refused(edited(still_open), "the vote is not closed (VOTE_STATE_OPEN)")


def test_a_time_finer_than_published_is_refused_not_crashed():
    def finer(value):
        value["entries"][0]["castTime"] = "2026-06-01T02:00:00.000001001Z"

    assert_refused(edited(finer), "is finer than the microseconds published")


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_one_character_changed_is_refused_or_changes_nothing_counted(data):
    text = export_json()
    position = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.sampled_from('0123456789abcdefABCDEF"{}[],:-. NOxyz'))
    changed = text[:position] + replacement + text[position + 1 :]
    try:
        export = verify.read_export(changed)
    except verify.Unreadable:
        return
    result = verify.check(export, DIGEST, None)
    assert result.status in (verify.VERIFIED, verify.REFUSED)
    if result.status == verify.VERIFIED:
        # Only what the count does not read may differ (e.g. the time the count was made).
        original = verify.read_export(text)
        assert verify.spec_of(export.vote) == verify.spec_of(original.vote)
        assert verify.result_of(export.vote["result"]) == verify.result_of(original.vote["result"])
        assert [verify.roll_entry_of(r) for r in export.roll] == [
            verify.roll_entry_of(r) for r in original.roll
        ]
        assert [verify.entry_of(e) for e in export.entries] == [
            verify.entry_of(e) for e in original.entries
        ]


# ---------------------------------------------------------------- the command line


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wuye.voting", "verify-tally", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_verifies_an_honest_log_and_a_counted_receipt(tmp_path):
    log = tmp_path / "log.json"
    log.write_text(export_json())
    done = run(log, "--roll-digest", DIGEST, "--receipt", ENTRIES[6].entry_hash)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("VERIFIED: ")


def test_cli_refuses_a_tampered_log_with_its_first_reason(tmp_path):
    log = tmp_path / "log.json"
    log.write_text(edited(flip_choice))
    done = run(log, "--roll-digest", DIGEST)
    assert done.returncode == 1
    assert done.stdout.strip() == (
        f"REFUSED: entry 3's content does not hash to its entry hash {ENTRIES[2].entry_hash}"
    )


@pytest.mark.parametrize(
    "content", [b"", b"not json", b'{"tally": 1}', b'{"entries": "x"}', b"\xff\xfe", b"[" * 100_000]
)
def test_cli_exits_2_on_unreadable_input(tmp_path, content):
    log = tmp_path / "log.json"
    log.write_bytes(content)
    done = run(log)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip()


def test_cli_exits_2_on_a_missing_file_or_a_malformed_digest(tmp_path):
    assert run(tmp_path / "absent.json").returncode == 2
    log = tmp_path / "log.json"
    log.write_text(export_json())
    done = run(log, "--roll-digest", "ABC")
    assert done.returncode == 2
    assert "64 lowercase hex digits" in done.stderr


def test_cli_help_names_the_published_digest():
    done = run("--help")
    assert done.returncode == 0
    assert "--roll-digest" in done.stdout and "--receipt" in done.stdout
