"""Rounds of 双随机、一公开 against real PostgreSQL, through the gRPC API: the inspector pool, a
round that commits to a secret seed over frozen lists, a draw that reveals the seed and can never be
repeated, an export anyone verifies with `python -m wuye.inspections verify-draw`, triggered
inspections, and the read model the registry's and credit's events keep."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

import grpc
import pytest
import sqlalchemy as sa
from test_inspections_support import (
    DONGSHENG,
    GRADE_TOPIC,
    KANGBASHI,
    REPO,
    export,
    grade_changed,
    inspections_servers,
    new_credit_code,
    request_id,
    verify_draw,
)

from wuye.core.auth import Role
from wuye.credit.v1 import credit_service_pb2 as credit_pb
from wuye.inspections import domain, store
from wuye.inspections.v1 import events_pb2 as ev
from wuye.inspections.v1 import inspections_service_pb2 as pb
from wuye.inspections.verify import problems_of, spec_of
from wuye.registry.v1 import events_pb2 as registry_events

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture
def start_inspections(make_settings):
    with inspections_servers(make_settings) as start:
        yield start


@pytest.fixture
def inspections(start_inspections):
    return start_inspections()


# ---------------------------------------------------------------- the inspector pool


def test_an_authority_registers_inspectors_of_its_own_districts(inspections):
    authority = inspections.authority(DONGSHENG)
    conflict = new_credit_code()
    registered = inspections.register_inspector(
        "insp-wangwei", (DONGSHENG,), (conflict,), client=authority
    )
    assert (registered.inspector_id, list(registered.conflicts)) == ("insp-wangwei", [conflict])

    again = authority.fails("RegisterInspector", pb.RegisterInspectorRequest(inspector=registered))
    assert (again.code, again.reason) == (grpc.StatusCode.ALREADY_EXISTS, "INSPECTOR_EXISTS")

    for districts in [(KANGBASHI,), (DONGSHENG, KANGBASHI)]:
        request = pb.RegisterInspectorRequest(
            inspector=pb.Inspector(
                inspector_id="insp-other",
                name="李娜",
                unit="康巴什区住建局",
                district_codes=list(districts),
            )
        )
        refused = authority.fails("RegisterInspector", request)
        assert (refused.code, refused.reason) == (DENIED, "DISTRICT_OUT_OF_SCOPE")
    for who in [inspections.inspector("insp-wangwei"), inspections.client(Role.ENTERPRISE)]:
        refused = who.fails("RegisterInspector", request)
        assert (refused.code, refused.reason) == (DENIED, "ROLE_NOT_ALLOWED")
    assert inspections.anonymous.fails("RegisterInspector", request).code == (
        grpc.StatusCode.UNAUTHENTICATED
    )

    listed = inspections.inspector("insp-wangwei").ListInspectors(
        pb.ListInspectorsRequest(district_code=DONGSHENG)
    )
    assert [i.inspector_id for i in listed.inspectors] == ["insp-wangwei"]
    assert not inspections.admin.ListInspectors(
        pb.ListInspectorsRequest(district_code=KANGBASHI)
    ).inspectors
    inspections.register_inspector("insp-liu", (DONGSHENG, KANGBASHI), client=inspections.city)
    first = inspections.admin.ListInspectors(pb.ListInspectorsRequest(page_size=1))
    rest = inspections.admin.ListInspectors(
        pb.ListInspectorsRequest(page_size=1, page_token=first.next_page_token)
    )
    assert [i.inspector_id for i in [*first.inspectors, *rest.inspectors]] == [
        "insp-liu",
        "insp-wangwei",
    ]


def test_an_inspector_must_be_named_placed_in_districts_and_conflicts_be_credit_codes(
    inspections,
):
    refused = inspections.admin.fails(
        "RegisterInspector",
        pb.RegisterInspectorRequest(
            inspector=pb.Inspector(
                inspector_id="",
                name=" ",
                unit="x" * 201,
                district_codes=["150602", "999999"],
                conflicts=["91150602MA00000000", "not-a-code"],
            )
        ),
    )
    assert refused.code == INVALID
    assert set(refused.violations) == {
        "inspector.inspector_id",
        "inspector.name",
        "inspector.unit",
        "inspector.district_codes[1]",
        "inspector.conflicts[0]",
        "inspector.conflicts[1]",
    }
    nowhere = inspections.admin.fails(
        "RegisterInspector",
        pb.RegisterInspectorRequest(
            inspector=pb.Inspector(inspector_id="insp-1", name="王伟", unit="东胜区住建局")
        ),
    )
    assert set(nowhere.violations) == {"inspector.district_codes"}
    assert not inspections.admin.ListInspectors(pb.ListInspectorsRequest()).inspectors


# ---------------------------------------------------------------- creating a round


def test_a_new_round_freezes_the_lists_and_publishes_a_commitment_but_not_its_seed(inspections):
    graded = new_credit_code()
    served = inspections.project(credit_code=graded, grade=credit_pb.GRADE_B)
    unfiled_code = new_credit_code()
    unfiled = inspections.project(credit_code=unfiled_code)
    self_managed = inspections.project(credit_code="")
    elsewhere = inspections.project(KANGBASHI, credit_code=None, grade=credit_pb.GRADE_C)
    wang = inspections.register_inspector("insp-wang", (DONGSHENG,), (graded,))
    inspections.register_inspector("insp-li", (KANGBASHI,))

    created = inspections.create_round(period="2026H1")

    assert created.state == pb.ROUND_STATE_COMMITTED
    assert created.round_id.startswith(f"{DONGSHENG}-R")
    assert (created.seed, list(created.selections)) == ("", [])
    assert len(created.seed_commitment) == 64
    assert (created.period, created.floor_rate, created.inspectors_per_check) == (
        "2026H1",
        "0.025",
        2,
    )
    assert {r.grade: r.rate for r in created.rates} == {
        "AAA": "0.01",
        "AA": "0.01",
        "A": "0.02",
        "B": "0.10",
        "C": "0.30",
        "C_UNFILED": "0.30",
        "UNSERVED": "0.10",
    }
    assert {e.project_id: (e.credit_code, e.grade) for e in created.entities} == {
        served: (graded, "B"),
        # No grade from credit yet: the enterprise has no approved filing.
        unfiled: (unfiled_code, "C_UNFILED"),
        self_managed: ("", ""),
    }
    assert elsewhere not in {e.project_id for e in created.entities}
    assert list(created.inspectors) == [wang]
    assert created.create_time.seconds > 0

    # Anyone reads it: the lists and the commitment, not the seed.
    public = inspections.anonymous.GetRound(pb.GetRoundRequest(round_id=created.round_id))
    assert public.round == created

    # The commitment binds the seed the service keeps to exactly these lists.
    with inspections.engine.connect() as connection:
        seed = connection.execute(
            sa.select(store.rounds.c.seed).where(store.rounds.c.round_id == created.round_id)
        ).scalar_one()
    spec = spec_of(created)
    assert created.seed_commitment == domain.commitment(bytes.fromhex(seed), spec)
    assert (
        created.seed_commitment
        == hashlib.sha256(bytes.fromhex(seed) + domain.lists_digest(spec)).hexdigest()
    )

    # Later projects and inspectors do not change a created round.
    inspections.project(credit_code=None)
    inspections.register_inspector("insp-zhao")
    assert inspections.anonymous.GetRound(pb.GetRoundRequest(round_id=created.round_id)).round == (
        created
    )


def test_creating_a_round_again_with_the_same_request_id_gives_the_same_round(inspections):
    inspections.project(credit_code=None)
    request = pb.CreateRoundRequest(
        request_id=request_id(), district_codes=[DONGSHENG], period="2026"
    )
    first = inspections.admin.CreateRound(request).round
    assert inspections.admin.CreateRound(request).round == first
    with inspections.engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(store.rounds)).scalar() == 1
        )
    assert first.floor_rate == "0.05"


def test_a_round_names_districts_a_period_and_rates_within_bounds(inspections):
    started = time.monotonic()
    refused = inspections.admin.fails(
        "CreateRound",
        pb.CreateRoundRequest(
            district_codes=[DONGSHENG, "999999"],
            period="2026H3",
            rates=[
                pb.SamplingRate(grade="C", rate="1.5"),
                pb.SamplingRate(grade="D", rate="0.1"),
                # Exact, yet a fraction the draw would take hours to compute.
                pb.SamplingRate(grade="B", rate="1E-999999999"),
                pb.SamplingRate(grade="A", rate="NaN"),
            ],
            floor_rate="0.01",  # below the yearly floor of 5%
            inspectors_per_check=1,
        ),
    )
    assert time.monotonic() - started < 5
    assert refused.code == INVALID
    assert set(refused.violations) == {
        "request_id",
        "district_codes[1]",
        "period",
        "rates[0].rate",
        "rates[1].grade",
        "rates[2].rate",
        "rates[3].rate",
        "floor_rate",
        "inspectors_per_check",
    }
    assert "2 to 10 inspectors" in refused.violations["inspectors_per_check"]
    nothing = inspections.admin.fails(
        "CreateRound", pb.CreateRoundRequest(request_id=request_id(), period="2026")
    )
    assert set(nothing.violations) == {"district_codes"}
    # Unknown grades are named once each, not repeated into every later message: the status
    # must fit the 8 KiB a client accepts.
    long_grades = inspections.admin.fails(
        "CreateRound",
        pb.CreateRoundRequest(
            request_id=request_id(),
            district_codes=[DONGSHENG],
            period="2026",
            rates=[pb.SamplingRate(grade="Æ" * 1000, rate="0.1")]
            + [pb.SamplingRate(grade="", rate="0.1")] * 9,
        ),
    )
    assert long_grades.code == INVALID
    assert "Æ" not in long_grades.violations["rates[9].grade"]
    # A request id PostgreSQL cannot store is the caller's mistake, not an internal error.
    unstorable = inspections.admin.fails(
        "CreateRound",
        pb.CreateRoundRequest(request_id="a\x00b", district_codes=[DONGSHENG], period="2026"),
    )
    assert (unstorable.code, set(unstorable.violations)) == (INVALID, {"request_id"})


def test_only_authorities_create_and_draw_rounds_and_only_for_their_districts(inspections):
    inspections.project(credit_code=None)
    request = pb.CreateRoundRequest(
        request_id=request_id(), district_codes=[DONGSHENG], period="2026"
    )
    for role in (Role.INSPECTOR, Role.SUB_DISTRICT, Role.ENTERPRISE, Role.SERVICE):
        refused = inspections.client(role).fails("CreateRound", request)
        assert (refused.code, refused.reason) == (DENIED, "ROLE_NOT_ALLOWED"), role
    refused = inspections.authority(KANGBASHI).fails("CreateRound", request)
    assert (refused.code, refused.reason) == (DENIED, "DISTRICT_OUT_OF_SCOPE")

    created = inspections.authority(DONGSHENG).CreateRound(request).round
    draw = pb.DrawRoundRequest(round_id=created.round_id)
    for who in (inspections.client(Role.INSPECTOR), inspections.client(Role.SUB_DISTRICT)):
        assert who.fails("DrawRound", draw).reason == "ROLE_NOT_ALLOWED"
    refused = inspections.authority(KANGBASHI).fails("DrawRound", draw)
    assert (refused.code, refused.reason) == (DENIED, "DISTRICT_OUT_OF_SCOPE")
    assert inspections.anonymous.fails("DrawRound", draw).code == grpc.StatusCode.UNAUTHENTICATED
    assert inspections.events(ev.RoundDrawn) == []


# ---------------------------------------------------------------- drawing


def test_the_draw_reveals_the_seed_and_selects_projects_and_inspectors_once(inspections):
    for _ in range(4):
        inspections.register_inspector()
    projects = [
        inspections.project(credit_code=None, grade=grade)
        for grade in [credit_pb.GRADE_C] * 10 + [credit_pb.GRADE_AAA] * 30
    ]
    created = inspections.create_round(period="2026")

    drawn = inspections.draw(created.round_id, client=inspections.authority(DONGSHENG))

    assert drawn.state == pb.ROUND_STATE_DRAWN
    seed = bytes.fromhex(drawn.seed)
    assert len(seed) == 32
    assert drawn.seed_commitment == created.seed_commitment
    assert domain.commitment(seed, spec_of(drawn)) == created.seed_commitment
    listed = {e.project_id for e in drawn.entities}
    assert listed == set(projects)
    # Grade C at 30% gives 3 of 10; the AAA at 1% 0 or 1; the floor (5% of 40) 2 at least.
    assert 3 <= len(drawn.selections) <= 5
    pool = {i.inspector_id for i in drawn.inspectors}
    check_ids = set()
    for selection in drawn.selections:
        assert selection.project_id in listed
        assert selection.reason in ("sampled", "floor")
        assert len(set(selection.inspector_ids)) == 2 and set(selection.inspector_ids) <= pool
        assert selection.check_id.startswith(f"{DONGSHENG}-K")
        check_ids.add(selection.check_id)
    assert len(check_ids) == len(drawn.selections)
    assert domain.draw(seed, spec_of(drawn)) == [
        domain.Selection(s.project_id, s.reason, tuple(s.inspector_ids)) for s in drawn.selections
    ]

    [announced] = inspections.events(ev.RoundDrawn)
    assert (announced.round_id, announced.seed, announced.seed_commitment) == (
        drawn.round_id,
        drawn.seed,
        drawn.seed_commitment,
    )
    assert (announced.selected, announced.listed, list(announced.district_codes)) == (
        len(drawn.selections),
        40,
        [DONGSHENG],
    )
    assert announced.period == "2026"

    assert inspections.anonymous.GetRound(pb.GetRoundRequest(round_id=drawn.round_id)).round == (
        drawn
    )

    # Never again: the seed is out, a second draw could be chosen.
    again = inspections.admin.fails("DrawRound", pb.DrawRoundRequest(round_id=drawn.round_id))
    assert (again.code, again.reason) == (PRECONDITION, "ROUND_ALREADY_DRAWN")
    assert len(inspections.events(ev.RoundDrawn)) == 1
    assert inspections.anonymous.GetRound(pb.GetRoundRequest(round_id=drawn.round_id)).round == (
        drawn
    )


def test_an_unknown_round_is_not_found(inspections):
    missing = f"{DONGSHENG}-Rffffffffffff"
    for method, request in [
        ("GetRound", pb.GetRoundRequest(round_id=missing)),
        ("DrawRound", pb.DrawRoundRequest(round_id=missing)),
    ]:
        refused = inspections.admin.fails(method, request)
        assert (refused.code, refused.reason) == (grpc.StatusCode.NOT_FOUND, "ROUND_NOT_FOUND")
    refused = inspections.anonymous.fails("GetRound", pb.GetRoundRequest(round_id="nonsense"))
    assert refused.code == INVALID


def test_inspectors_with_a_conflict_of_interest_are_never_sent(inspections):
    related = new_credit_code()
    for n in range(3):
        inspections.register_inspector(f"insp-free-{n}")
    for n in range(3):
        inspections.register_inspector(f"insp-related-{n}", conflicts=(related,))
    for _ in range(8):
        inspections.project(credit_code=related, grade=credit_pb.GRADE_A)
    created = inspections.create_round(floor_rate="1")
    drawn = inspections.draw(created.round_id)
    assert len(drawn.selections) == 8
    sent = {i for s in drawn.selections for i in s.inspector_ids}
    assert sent <= {"insp-free-0", "insp-free-1", "insp-free-2"}


def test_a_round_without_enough_eligible_inspectors_cannot_be_drawn_and_stays_sealed(
    inspections,
):
    inspections.register_inspector("insp-only")
    inspections.register_inspector("insp-kangbashi", (KANGBASHI,))
    inspections.project(credit_code=None)
    created = inspections.create_round(floor_rate="1")

    refused = inspections.admin.fails("DrawRound", pb.DrawRoundRequest(round_id=created.round_id))

    assert (refused.code, refused.reason) == (PRECONDITION, "NOT_ENOUGH_INSPECTORS")
    still = inspections.anonymous.GetRound(pb.GetRoundRequest(round_id=created.round_id)).round
    assert (still.state, still.seed) == (pb.ROUND_STATE_COMMITTED, "")
    assert inspections.events(ev.RoundDrawn) == []


def test_a_city_may_configure_more_inspectors_per_check(start_inspections):
    inspections = start_inspections(inspectors_per_check=3)
    drawn = inspections.drawn_round(projects=2, inspectors=3)
    assert drawn.inspectors_per_check == 3
    assert all(len(set(s.inspector_ids)) == 3 for s in drawn.selections)


def test_inspectors_per_check_above_two_are_honoured(inspections):
    drawn = inspections.drawn_round(projects=3, inspectors=5, inspectors_per_check=4)
    assert drawn.inspectors_per_check == 4
    assert all(len(set(s.inspector_ids)) == 4 for s in drawn.selections)


# ---------------------------------------------------------------- verifying


MUTATIONS = {
    "seed": lambda r: ("seed", r.seed),
    "project id": lambda r: ("projectId", r.entities[0].project_id),
    "inspector id": lambda r: ("inspectorId", r.inspectors[0].inspector_id),
    "rate": lambda r: ("rate", r.rates[0].rate),
    "create time": lambda r: ("createTime", r.create_time.ToJsonString()),
}
# Checked in-process (problems_of is what the command runs), to spare a process each.
IN_PROCESS_MUTATIONS = {
    "selected inspector": lambda r: ("inspectorIds", r.selections[0].inspector_ids[0]),
    "reason": lambda r: ("reason", r.selections[0].reason),
    "commitment": lambda r: ("seedCommitment", r.seed_commitment),
    "a listed grade": lambda r: ("grade", r.entities[0].grade),
}


def _change_one_character(text: str, key: str, value: str) -> str:
    """The export with one character of the first `key` whose value is `value` changed."""
    quoted = json.dumps(value)
    where = text.index(quoted, text.index(f'"{key}"')) + 1 + len(value) // 2
    replacement = "1" if text[where] != "1" else "2"
    changed = text[:where] + replacement + text[where + 1 :]
    assert len(changed) == len(text) and changed != text
    return changed


def test_anyone_verifies_an_exported_draw_and_a_changed_export_is_refused(inspections, tmp_path):
    drawn = inspections.drawn_round(projects=4, inspectors=3)
    exported = export(
        inspections.anonymous.GetRound(pb.GetRoundRequest(round_id=drawn.round_id)).round
    )
    files = {"honest": exported}
    for what, locate in MUTATIONS.items():
        files[what] = _change_one_character(exported, *locate(drawn))
    files["malformed"] = exported[: len(exported) // 2]
    paths = {}
    for what, text in files.items():
        paths[what] = tmp_path / f"{what.replace(' ', '-')}.json"
        paths[what].write_text(text, encoding="utf-8")

    # In parallel: each is a `python -m wuye.inspections verify-draw FILE`.
    running = {
        what: subprocess.Popen(
            [sys.executable, "-m", "wuye.inspections", "verify-draw", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        for what, path in paths.items()
    }
    verdicts = {what: (p.wait(60), p.stdout.read()) for what, p in running.items()}
    for p in running.values():
        p.stdout.close()

    code, output = verdicts.pop("honest")
    assert (code, output.split(":")[0]) == (0, "VERIFIED"), output
    for what, (code, output) in verdicts.items():
        assert (code, output.split(":")[0]) == (1, "REFUSED"), f"{what}: {output}"
    assert "not a GetRound export" in verdicts["malformed"][1]

    assert problems_of(exported) == []
    for what, locate in IN_PROCESS_MUTATIONS.items():
        assert problems_of(_change_one_character(exported, *locate(drawn))), what


def test_the_export_of_a_round_not_yet_drawn_is_refused(inspections, tmp_path):
    inspections.project(credit_code=None)
    created = inspections.create_round()
    path = tmp_path / "round.json"
    path.write_text(export(created), encoding="utf-8")
    verdict = verify_draw(path)
    assert verdict.code == 1 and "not drawn yet" in verdict.output


# ---------------------------------------------------------------- triggered inspections


def test_a_triggered_project_joins_the_next_round_and_the_trigger_is_spent(inspections):
    for _ in range(2):
        inspections.register_inspector()
    complained = inspections.project(credit_code=None, grade=credit_pb.GRADE_AAA)
    others = [inspections.project(credit_code=None, grade=credit_pb.GRADE_AAA) for _ in range(5)]
    street = inspections.client(Role.SUB_DISTRICT, "tianjiao-street", [DONGSHENG])

    first = street.TriggerInspection(
        pb.TriggerInspectionRequest(project_id=complained, reason="业主投诉：电梯停运 3 天")
    )
    second = inspections.authority().TriggerInspection(
        pb.TriggerInspectionRequest(project_id=complained, reason="12345 热线转办")
    )
    assert (first.pending_triggers, second.pending_triggers) == (1, 2)

    created = inspections.create_round()
    triggered = {e.project_id for e in created.entities if e.triggered}
    assert triggered == {complained}
    drawn = inspections.draw(created.round_id)
    reasons = {s.project_id: s.reason for s in drawn.selections}
    assert reasons[complained] == "triggered"
    assert set(reasons) <= {complained, *others}

    # Spent by that draw: the next round lists the project as an ordinary one.
    after = inspections.create_round()
    assert not any(e.triggered for e in after.entities)
    assert (
        street.TriggerInspection(
            pb.TriggerInspectionRequest(project_id=complained, reason="再次投诉")
        ).pending_triggers
        == 1
    )


def test_a_trigger_names_a_known_project_and_a_reason(inspections):
    project = inspections.project(credit_code=None)
    missing = inspections.admin.fails(
        "TriggerInspection",
        pb.TriggerInspectionRequest(project_id=f"{DONGSHENG}-ffffffffffff", reason="投诉"),
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "PROJECT_NOT_FOUND")
    blank = inspections.admin.fails(
        "TriggerInspection", pb.TriggerInspectionRequest(project_id=project, reason=" ")
    )
    assert set(blank.violations) == {"reason"}
    refused = inspections.client(Role.ENTERPRISE, new_credit_code()).fails(
        "TriggerInspection", pb.TriggerInspectionRequest(project_id=project, reason="投诉")
    )
    assert refused.reason == "ROLE_NOT_ALLOWED"
    refused = inspections.client(Role.SUB_DISTRICT, "kangbashi", [KANGBASHI]).fails(
        "TriggerInspection", pb.TriggerInspectionRequest(project_id=project, reason="投诉")
    )
    assert refused.reason == "DISTRICT_OUT_OF_SCOPE"


# ---------------------------------------------------------------- the read model


def test_the_lists_follow_the_registrys_and_credits_events(inspections):
    code = new_credit_code()
    # A grade may arrive before the enterprise serves anything here.
    inspections.deliver(
        grade_changed(code, DONGSHENG, credit_pb.GRADE_AA, inspections.clock()), topic=GRADE_TOPIC
    )
    project = inspections.project(credit_code=code)
    exited = inspections.project(credit_code=code)
    inspections.deliver(
        registry_events.EnterpriseExited(
            project_id=exited, district_code=DONGSHENG, credit_code=code, filed=True
        )
    )
    # A grade of a practitioner says nothing about an enterprise.
    practitioner = grade_changed(code, DONGSHENG, credit_pb.GRADE_C, inspections.clock())
    practitioner.change.subject.kind = credit_pb.SUBJECT_KIND_PRACTITIONER
    inspections.deliver(practitioner, topic=GRADE_TOPIC)

    listed = {e.project_id: e for e in inspections.create_round().entities}
    assert (listed[project].credit_code, listed[project].grade) == (code, "AA")
    assert (listed[exited].credit_code, listed[exited].grade) == ("", "")
    assert listed[project].project_type == "RESIDENTIAL"

    inspections.deliver(
        grade_changed(code, DONGSHENG, credit_pb.GRADE_C, inspections.clock()), topic=GRADE_TOPIC
    )
    assert {e.project_id: e.grade for e in inspections.create_round().entities}[project] == "C"
