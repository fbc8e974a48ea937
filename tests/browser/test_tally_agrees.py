"""The owners' page re-counts a closed vote in the browser with its own implementation of the
algorithm domain.py writes out (web/js/tally.js). Here both implementations judge the same
exports, honest and tampered, built from random votes: Chromium's and `python -m wuye.voting
verify-tally`'s verdicts must agree on every one, and on an honest one so must every figure of
the recount."""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
from collections.abc import Callable
from fractions import Fraction

from wuye.voting import domain, verify
from wuye.voting.domain import (
    Channel,
    Choice,
    CountingRules,
    Matter,
    MatterClass,
    MatterType,
    RollUnit,
    Threshold,
    VoteSpec,
)
from wuye.voting.v1 import voting_service_pb2 as pb

OPEN = dt.datetime(2026, 6, 1, 1, 0, tzinfo=dt.UTC)
THRESHOLDS = [
    Threshold(Fraction(2, 3), inclusive=True),
    Threshold(Fraction(3, 4), inclusive=True),
    Threshold(Fraction(1, 2), inclusive=False),
    Threshold(Fraction(1, 2), inclusive=True),
    Threshold(Fraction(3, 5), inclusive=False),
]
# Areas in cm²: the smallest, a flat's, and one so large that a sum passes 2**53 (a float
# would round it; the recount must not).
AREAS = [
    lambda rng: 1,
    lambda rng: rng.randint(1, 200_00_00),
    lambda rng: 2**52 + rng.randint(0, 99),
]
VERDICTS = {verify.VERIFIED: "VERIFIED", verify.REFUSED: "REFUSED", verify.UNREADABLE: "UNREADABLE"}


def rfc3339(time: dt.datetime) -> str:
    return time.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def random_vote(rng: random.Random, n: int) -> tuple[dict, str, list[str]]:
    """A closed vote's export as proto3 JSON (int64 as strings, enums by name), the digest
    published at its opening, and its receipts."""
    spec = VoteSpec(
        vote_id=f"150602-V{n:012x}",
        project_id="150602-P00000001",
        district_code="150602",
        title=f'第 {n} 次业主共同决定 "续筹"\n',
        open_time=OPEN,
        close_time=OPEN + dt.timedelta(days=14),
        rules=CountingRules(
            quorum=rng.choice(THRESHOLDS),
            special_majority=rng.choice(THRESHOLDS),
            ordinary_majority=rng.choice(THRESHOLDS),
            non_voters_follow_majority=rng.random() < 0.3,
        ),
        matters=tuple(
            Matter(
                f"M{m + 1}",
                MatterType.RAISE_FUND if special else MatterType.HIRE_ENTERPRISE,
                MatterClass.SPECIAL if special else MatterClass.ORDINARY,
                f"事项 {m + 1}",
                "每平方米专有面积续筹 30 元" if special else "续聘三年",
                fund_amount_fen=1_234_500_00 if special else 0,
            )
            for m, special in enumerate(rng.choice([True, False]) for _ in range(rng.randint(1, 3)))
        ),
    )
    units = [
        RollUnit(f"150602-U{u}", rng.choice(AREAS)(rng), f"owner-{u % 9}")
        for u in range(rng.randint(1, 14))
    ]
    voters = domain.build_roll(units, domain.pseudonymizer(b"key", spec.vote_id).key_of)
    roll = domain.published_roll(voters)
    digest = domain.roll_digest(spec, roll)
    entries, head = [], digest
    for sequence in range(1, rng.randint(0, 2 * len(voters)) + 1):
        paper = rng.random() < 0.2
        entry = domain.append_ballot(
            spec,
            head,
            sequence,
            rng.choice(voters),
            tuple((m.matter_id, rng.choice(list(Choice))) for m in spec.matters),
            OPEN + dt.timedelta(minutes=sequence, microseconds=rng.randint(0, 999_999)),
            Channel.PAPER if paper else Channel.ONLINE,
            f"纸质票 {sequence} 号" if paper else "",
        )
        entries.append(entry)
        head = entry.entry_hash
    result = domain.count(spec, roll, entries)
    threshold = lambda t: {  # noqa: E731
        "fraction": domain.format_fraction(t.fraction),
        "inclusive": t.inclusive,
    }
    vote = {
        "voteId": spec.vote_id,
        "projectId": spec.project_id,
        "districtCode": spec.district_code,
        "title": spec.title,
        "matters": [
            {
                "matterId": m.matter_id,
                "type": f"MATTER_TYPE_{m.type}",
                "matterClass": f"MATTER_CLASS_{m.matter_class}",
                "title": m.title,
                "text": m.text,
                "fundAmountFen": str(m.fund_amount_fen),
            }
            for m in spec.matters
        ],
        "openTime": rfc3339(spec.open_time),
        "closeTime": rfc3339(spec.close_time),
        "state": "VOTE_STATE_CLOSED",
        "rules": {
            "quorum": threshold(spec.rules.quorum),
            "specialMajority": threshold(spec.rules.special_majority),
            "ordinaryMajority": threshold(spec.rules.ordinary_majority),
            "nonVotersFollowMajority": spec.rules.non_voters_follow_majority,
        },
        "rollDigest": digest,
        "rollOwners": result.roll_owners,
        "rollAreaCm2": str(result.roll_area_cm2),
        "result": {
            "rollAreaCm2": str(result.roll_area_cm2),
            "rollOwners": result.roll_owners,
            "ballots": result.ballots,
            "countedBallots": result.counted_ballots,
            "matters": [
                {
                    "matterId": m.matter_id,
                    "matterClass": f"MATTER_CLASS_{m.matter_class}",
                    "participatingAreaCm2": str(m.participating_area_cm2),
                    "participatingOwners": m.participating_owners,
                    "yesAreaCm2": str(m.yes_area_cm2),
                    "yesOwners": m.yes_owners,
                    "noAreaCm2": str(m.no_area_cm2),
                    "noOwners": m.no_owners,
                    "abstainAreaCm2": str(m.abstain_area_cm2),
                    "abstainOwners": m.abstain_owners,
                    "deemedChoice": f"CHOICE_{m.deemed_choice or 'UNSPECIFIED'}",
                    "deemedAreaCm2": str(m.deemed_area_cm2),
                    "deemedOwners": m.deemed_owners,
                    "quorumReached": m.quorum_reached,
                    "passed": m.passed,
                }
                for m in result.matters
            ],
            "countTime": rfc3339(spec.close_time),
        },
        "algorithmVersion": spec.algorithm_version,
    }
    export = {
        "vote": vote,
        "roll": [{"pseudonym": r.pseudonym, "areaCm2": str(r.area_cm2)} for r in roll],
        "entries": [
            {
                "sequence": str(e.sequence),
                "pseudonym": e.pseudonym,
                "areaCm2": str(e.area_cm2),
                "choices": [{"matterId": m, "choice": f"CHOICE_{c}"} for m, c in e.choices],
                "castTime": rfc3339(e.cast_time),
                "channel": f"BALLOT_CHANNEL_{e.channel}",
                "paperReference": e.paper_reference,
                "previousHash": e.previous_hash,
                "entryHash": e.entry_hash,
            }
            for e in entries
        ],
    }
    return export, digest, [e.entry_hash for e in entries]


def _flip_choice(export: dict, rng: random.Random) -> None:
    choice = rng.choice(export["entries"])["choices"][0]
    choice["choice"] = "CHOICE_NO" if choice["choice"] != "CHOICE_NO" else "CHOICE_YES"


def _drop_entry(export: dict, rng: random.Random) -> None:
    export["entries"].pop(rng.randrange(len(export["entries"])))


def _heavier_owner(export: dict, rng: random.Random) -> None:
    owner = rng.choice(export["roll"])
    owner["areaCm2"] = str(int(owner["areaCm2"]) + 1)


def _published_yes(export: dict, rng: random.Random) -> None:
    matter = rng.choice(export["vote"]["result"]["matters"])
    matter["passed"] = not matter["passed"]


def _one_more_yes(export: dict, rng: random.Random) -> None:
    matter = rng.choice(export["vote"]["result"]["matters"])
    matter["yesAreaCm2"] = str(int(matter["yesAreaCm2"]) + 1)


def _softer_quorum(export: dict, rng: random.Random) -> None:
    export["vote"]["rules"]["quorum"] = {"fraction": "1/2", "inclusive": True}


def _swap_entries(export: dict, rng: random.Random) -> None:
    entries = export["entries"]
    entries[0], entries[-1] = entries[-1], entries[0]


def _still_open(export: dict, rng: random.Random) -> None:
    export["vote"]["state"] = "VOTE_STATE_OPEN"


def _late_ballot(export: dict, rng: random.Random) -> None:
    export["entries"][-1]["castTime"] = export["vote"]["closeTime"]


def _unknown_field(export: dict, rng: random.Random) -> None:
    export["vote"]["turnout"] = "99%"


def _unspecified_channel(export: dict, rng: random.Random) -> None:
    export["entries"][0]["channel"] = "BALLOT_CHANNEL_UNSPECIFIED"


def _finer_than_microseconds(export: dict, rng: random.Random) -> None:
    export["vote"]["openTime"] = export["vote"]["openTime"].replace("Z", "001Z")


def _unreduced_fraction(export: dict, rng: random.Random) -> None:
    export["vote"]["rules"]["ordinaryMajority"]["fraction"] = "2/4"


# Each tampering, and whether it needs an entry to act on.
TAMPERINGS: list[tuple[Callable[[dict, random.Random], None], bool]] = [
    (_flip_choice, True),
    (_drop_entry, True),
    (_heavier_owner, False),
    (_published_yes, False),
    (_one_more_yes, False),
    (_softer_quorum, False),
    (_swap_entries, True),
    (_still_open, False),
    (_late_ballot, True),
    (_unknown_field, False),
    (_unspecified_channel, True),
    (_finer_than_microseconds, False),
    (_unreduced_fraction, False),
]


def cases(count: int) -> list[dict]:
    """Honest exports (some with a receipt to check), each tampered in every way that applies,
    and each checked against a wrong published digest too."""
    rng = random.Random(17)
    found = []
    for n in range(count):
        export, digest, receipts = random_vote(rng, n)
        text = json.dumps(export, ensure_ascii=False)
        found.append({"text": text, "digest": digest, "receipt": None})
        found.append({"text": text, "digest": None, "receipt": None})
        found.append({"text": text, "digest": "0" * 64, "receipt": None})
        if receipts:
            found.append({"text": text, "digest": digest, "receipt": rng.choice(receipts)})
        for tamper, needs_entry in TAMPERINGS:
            if needs_entry and not export["entries"]:
                continue
            changed = copy.deepcopy(export)
            tamper(changed, rng)
            found.append({"text": json.dumps(changed), "digest": digest, "receipt": None})
    # The forms a streamed answer takes: a JSON array of parts, and parts one after another.
    export, digest, _ = random_vote(rng, count)
    parts = [{"vote": export["vote"], "roll": export["roll"]}, {"entries": export["entries"]}]
    found.append({"text": json.dumps(parts), "digest": digest, "receipt": None})
    found.append({"text": "\n".join(map(json.dumps, parts)), "digest": digest, "receipt": None})
    found.append({"text": json.dumps(parts)[:-9], "digest": digest, "receipt": None})
    return found


def python_verdict(case: dict) -> tuple[str, dict | None]:
    try:
        export = verify.read_export(case["text"])
    except verify.Unreadable:
        return "UNREADABLE", None
    outcome = verify.check(export, case["digest"], case["receipt"])
    verdict = VERDICTS[outcome.status]
    if verdict != "VERIFIED":
        return verdict, None
    result = domain.count(
        verify.spec_of(export.vote),
        [verify.roll_entry_of(r) for r in export.roll],
        [verify.entry_of(e) for e in export.entries],
    )
    figures = {
        "ballots": str(result.ballots),
        "counted_ballots": str(result.counted_ballots),
        "matters": [
            [
                str(m.participating_area_cm2),
                str(m.participating_owners),
                str(m.yes_area_cm2),
                str(m.yes_owners),
                m.quorum_reached,
                m.passed,
            ]
            for m in result.matters
        ],
    }
    return verdict, figures


BROWSER_TALLY = """
const [cases, done] = arguments;
import("/js/tally.js").then(async (tally) => {
  const verdicts = [];
  for (const c of cases) {
    const outcome = await tally.verifyExport(c.text, {rollDigest: c.digest, receipt: c.receipt});
    let figures = null;
    if (outcome.status === "VERIFIED") {
      const r = outcome.result;
      figures = {ballots: String(r.ballots), counted_ballots: String(r.counted_ballots),
        matters: r.matters.map((m) => [String(m.participating_area_cm2),
          String(m.participating_owners), String(m.yes_area_cm2), String(m.yes_owners),
          m.quorum_reached, m.passed])};
    }
    verdicts.push([outcome.status, figures, outcome.reason || null]);
  }
  done(verdicts);
}).catch((e) => done(String(e.stack || e)));
"""


def test_the_browser_and_the_python_verifier_agree_on_honest_and_tampered_logs(
    browser, static_pages
):
    checked = cases(24)
    browser.get(f"{static_pages}/index.html")
    verdicts = browser.execute_async_script(BROWSER_TALLY, checked)
    assert isinstance(verdicts, list), verdicts
    seen = set()
    for case, (verdict, figures, reason) in zip(checked, verdicts, strict=True):
        expected, expected_figures = python_verdict(case)
        assert (verdict, figures) == (expected, expected_figures), (case, reason)
        seen.add(verdict)
        if verdict != "VERIFIED":
            assert reason, "a refusal names its reason"
    assert seen == {"VERIFIED", "REFUSED", "UNREADABLE"}


def test_the_browser_reads_every_field_of_the_export_as_the_protos_define_it(browser, static_pages):
    """The page's reader is written by hand: a field the protos gain must be added to it, or
    the page would call every export unreadable."""
    browser.get(f"{static_pages}/index.html")
    schema = browser.execute_async_script(
        """const done = arguments[0];
        import("/js/tally.js").then((tally) => done({
          messages: Object.fromEntries(Object.entries(tally.SCHEMA.messages).map(
            ([name, fields]) => [name, Object.keys(fields)])),
          enums: tally.SCHEMA.enums}));"""
    )
    for name, fields in schema["messages"].items():
        assert fields == [f.name for f in pb.DESCRIPTOR.message_types_by_name[name].fields], name
    for name, values in schema["enums"].items():
        descriptor = pb.DESCRIPTOR.enum_types_by_name[name]
        assert values == [descriptor.values_by_number[n].name for n in range(len(values))], name
        assert len(values) == len(descriptor.values), name
