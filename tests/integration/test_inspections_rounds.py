"""Rounds of 双随机、一公开 against real PostgreSQL, through the gRPC API: the inspector pool, a
round that commits to a secret seed over frozen lists, a draw that reveals the seed and can never be
repeated, an export anyone verifies with `python -m wuye.inspections verify-draw`, triggered
inspections, and the read model the registry's and credit's events keep."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from test_inspections_support import (
    DONGSHENG,
    GRADE_TOPIC,
    KANGBASHI,
    PRACTITIONER_TOPIC,
    REPO,
    export,
    grade_changed,
    inspections_servers,
    new_credit_code,
    request_id,
    timestamp,
    verify_command,
    verify_draw,
)

from wuye.core.auth import Role
from wuye.core.ids import new_id, resident_id_check_char
from wuye.core.pii import Pseudonymizer
from wuye.core.service import build_relay
from wuye.credit.v1 import credit_service_pb2 as credit_pb
from wuye.inspections import domain, store
from wuye.inspections.commands import ROUND_TOPIC
from wuye.inspections.service import SPEC
from wuye.inspections.v1 import events_pb2 as ev
from wuye.inspections.v1 import inspections_service_pb2 as pb
from wuye.inspections.verify import problems_of, spec_of
from wuye.iot.v1 import events_pb2 as iot_events
from wuye.iot.v1 import intake_service_pb2 as iot_pb
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
    [announced] = inspections.events(ev.InspectorRegistered)
    assert (announced.inspector_id, list(announced.district_codes), list(announced.conflicts)) == (
        "insp-wangwei",
        [DONGSHENG],
        [conflict],
    )
    assert announced.unit == registered.unit and announced.relatives == 0

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


def test_one_round_per_district_and_period_so_a_draw_cannot_be_repeated(inspections):
    inspections.project(credit_code=None)
    inspections.project(KANGBASHI, credit_code=None)
    first = inspections.create_round(period="2026H1")

    for districts, period in [
        ((DONGSHENG,), "2026H1"),
        # A year takes both of its half-years.
        ((DONGSHENG,), "2026"),
        ((KANGBASHI, DONGSHENG), "2026H1"),
    ]:
        refused = inspections.admin.fails(
            "CreateRound",
            pb.CreateRoundRequest(
                request_id=request_id(), district_codes=list(districts), period=period
            ),
        )
        assert (refused.code, refused.reason) == (PRECONDITION, "ROUND_EXISTS_FOR_PERIOD")
        assert refused.metadata == {
            "round_id": first.round_id,
            "district_code": DONGSHENG,
            "period": "2026H1",
        }
    # Another half-year, another district: rounds of their own.
    second = inspections.create_round(period="2026H2")
    kangbashi = inspections.create_round((KANGBASHI,), period="2026")
    refused = inspections.admin.fails(
        "CreateRound",
        pb.CreateRoundRequest(request_id=request_id(), district_codes=[KANGBASHI], period="2026H2"),
    )
    assert refused.reason == "ROUND_EXISTS_FOR_PERIOD"
    assert refused.metadata["round_id"] == kangbashi.round_id
    assert inspections.count("rounds") == 3
    created = inspections.events(ev.RoundCreated)
    assert [(e.round_id, e.seed_commitment) for e in created] == [
        (r.round_id, r.seed_commitment) for r in (first, second, kangbashi)
    ]


def test_concurrent_rounds_for_one_period_leave_one_round(inspections):
    inspections.project(credit_code=None)
    requests = [
        pb.CreateRoundRequest(request_id=request_id(), district_codes=[DONGSHENG], period=period)
        for period in ["2026", "2026H1", "2026H2", "2026", "2026H1", "2026H2"]
    ]

    def create(request):
        try:
            return inspections.admin.CreateRound(request).round.round_id
        except grpc.RpcError as e:
            return e.code()

    with ThreadPoolExecutor(len(requests)) as pool:
        outcomes = list(pool.map(create, requests))
    created = [o for o in outcomes if isinstance(o, str)]
    assert set(outcomes) - set(created) == {PRECONDITION}
    # Either the year's round, or one round for each half-year.
    assert len(created) in (1, 2)
    assert inspections.count("rounds") == len(created)
    assert len(inspections.events(ev.RoundCreated)) == len(created)


def test_a_round_cannot_set_a_grades_rate_below_the_configured_one(inspections):
    inspections.project(credit_code=None)
    refused = inspections.admin.fails(
        "CreateRound",
        pb.CreateRoundRequest(
            request_id=request_id(),
            district_codes=[DONGSHENG],
            period="2026",
            rates=[pb.SamplingRate(grade="C", rate="0.29"), pb.SamplingRate(grade="A", rate="0")],
        ),
    )
    assert refused.code == INVALID
    assert refused.violations == {
        "rates[0].rate": "must be from 0.30 (the configured rate of C) to 1",
        "rates[1].rate": "must be from 0.02 (the configured rate of A) to 1",
    }
    raised = inspections.create_round(period="2026", rates=[pb.SamplingRate(grade="A", rate="0.5")])
    assert {r.grade: r.rate for r in raised.rates}["A"] == "0.5"


def test_the_second_half_year_round_completes_the_yearly_floor(inspections):
    for _ in range(2):
        inspections.register_inspector()
    projects = {inspections.project(credit_code=None, grade=credit_pb.GRADE_AAA) for _ in range(40)}
    first = inspections.draw(
        inspections.create_round(
            period="2026H1", rates=[pb.SamplingRate(grade="AAA", rate="0.01")]
        ).round_id
    )
    drawn_first = {s.project_id for s in first.selections}
    # 2.5% of 40 in the first half-year.
    assert len(drawn_first) == 1

    second = inspections.create_round(period="2026H2")
    assert set(second.drawn_earlier) == drawn_first
    assert second.yearly_floor_rate == "0.05"
    drawn_second = {s.project_id for s in inspections.draw(second.round_id).selections}
    # 5% of 40 over the year: the second half-year adds one not checked yet.
    assert len(drawn_first | drawn_second) >= 2 and drawn_second - drawn_first
    assert drawn_first | drawn_second <= projects


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


def test_an_inspector_whose_relative_works_for_the_enterprise_is_never_sent(inspections):
    related = new_credit_code()
    # His sister's ID number: he declares her.
    sister = "15060219850615001" + resident_id_check_char("15060219850615001")
    registered = inspections.register_inspector(
        "insp-brother", relatives=(sister,), client=inspections.authority()
    )
    # Never returned whole, never stored whole.
    assert [r.masked_id_number for r in registered.relatives] == [
        sister[:4] + "*" * 10 + sister[-4:]
    ]
    assert all(r.id_number == "" for r in registered.relatives)
    for n in range(2):
        inspections.register_inspector(f"insp-free-{n}")
    # The registry announces the sister as a practitioner of the enterprise, keyed as the
    # registry keys persons.
    person_key = Pseudonymizer(
        inspections.settings.pii_key.get_secret_value().encode(), purpose="practitioner"
    ).key_of(sister)
    inspections.deliver(
        registry_events.PractitionerRegistered(
            practitioner_id=new_id(DONGSHENG, "W"),
            credit_code=related,
            district_code=DONGSHENG,
            person_key=person_key,
            position="项目经理",
        ),
        topic=PRACTITIONER_TOPIC,
    )
    for _ in range(4):
        inspections.project(credit_code=related, grade=credit_pb.GRADE_A)

    created = inspections.create_round(floor_rate="1")
    frozen = {i.inspector_id: list(i.conflicts) for i in created.inspectors}
    assert frozen["insp-brother"] == [related]
    assert not any(i.relatives for i in created.inspectors)
    drawn = inspections.draw(created.round_id)
    assert len(drawn.selections) == 4
    assert all("insp-brother" not in s.inspector_ids for s in drawn.selections)
    with inspections.engine.connect() as connection:
        stored = connection.execute(sa.select(store.inspector_relatives)).all()
    assert [(r.person_key, r.masked_id_number) for r in stored] == [
        (person_key, registered.relatives[0].masked_id_number)
    ]
    [announced] = inspections.events(ev.InspectorRegistered)[:1]
    assert (announced.inspector_id, announced.relatives) == ("insp-brother", 1)
    assert sister.encode() not in b"".join(r.payload for r in inspections.outbox_rows())


def test_a_relatives_id_number_must_be_valid_and_is_never_echoed(inspections):
    valid = "15060219850615001" + resident_id_check_char("15060219850615001")
    wrong = valid[:17] + ("0" if valid[17] != "0" else "1")
    refused = inspections.admin.fails(
        "RegisterInspector",
        pb.RegisterInspectorRequest(
            inspector=pb.Inspector(
                inspector_id="insp-1",
                name="王伟",
                unit="东胜区住建局",
                district_codes=[DONGSHENG],
                relatives=[pb.Relative(id_number=wrong)],
            )
        ),
    )
    assert set(refused.violations) == {"inspector.relatives[0].id_number"}
    assert wrong not in refused.message


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


def _verdicts(runs: dict[str, tuple[Path, str | None]]) -> dict[str, tuple[int, str]]:
    """Each `python -m wuye.inspections verify-draw FILE [--commitment HEX]`, run in parallel:
    its exit status and output."""
    running = {
        what: subprocess.Popen(
            verify_command(path, commitment),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        for what, (path, commitment) in runs.items()
    }
    verdicts = {what: (p.wait(60), p.stdout.read()) for what, p in running.items()}
    for p in running.values():
        p.stdout.close()
    return verdicts


def _forged(drawn: pb.Round) -> pb.Round:
    """The round re-drawn with a seed chosen after the fact, with that seed's own commitment:
    an export that agrees with itself."""
    forged = pb.Round()
    forged.CopyFrom(drawn)
    seed = secrets.token_bytes(32)
    spec = spec_of(drawn)
    forged.seed, forged.seed_commitment = seed.hex(), domain.commitment(seed, spec)
    del forged.selections[:]
    for s in domain.draw(seed, spec):
        forged.selections.add(
            project_id=s.project_id, reason=s.reason, inspector_ids=s.inspector_ids
        )
    return forged


def test_the_verifier_holds_an_export_to_the_commitment_its_round_published_at_creation(
    inspections, tmp_path, read_topic, start_loop
):
    for _ in range(3):
        inspections.register_inspector()
    for _ in range(5):
        inspections.project(credit_code=None, grade=credit_pb.GRADE_B)
    created = inspections.create_round(period="2026H1", floor_rate="0.5")
    other = inspections.create_round(period="2026H2")

    # The commitment is published at creation: on Kafka (through the relay) and on GetRound.
    SPEC.ensure_topics(inspections.settings)
    relay = build_relay(SPEC, inspections.settings, inspections.engine)
    start_loop(relay.run, "inspections-relay", after=[relay.close])
    [record] = read_topic(ROUND_TOPIC, 1, key=created.round_id.encode())
    assert record.headers["ce_type"] == "wuye.inspections.v1.RoundCreated"
    announced = ev.RoundCreated.FromString(record.value)
    published = announced.seed_commitment
    assert (announced.round_id, list(announced.district_codes), announced.period) == (
        created.round_id,
        [DONGSHENG],
        "2026H1",
    )
    assert (announced.listed, announced.inspectors) == (5, 3)
    public = inspections.anonymous.GetRound(pb.GetRoundRequest(round_id=created.round_id)).round
    assert (public.seed, public.seed_commitment) == ("", published)
    assert other.seed_commitment != published

    drawn = inspections.draw(created.round_id)
    exported = tmp_path / "round.json"
    exported.write_text(
        export(inspections.anonymous.GetRound(pb.GetRoundRequest(round_id=drawn.round_id)).round),
        encoding="utf-8",
    )
    forged = tmp_path / "forged.json"
    forged.write_text(export(_forged(drawn)), encoding="utf-8")

    verdicts = _verdicts(
        {
            "honest": (exported, published),
            "another round's commitment": (exported, other.seed_commitment),
            "forged": (forged, published),
            "forged, no commitment": (forged, None),
        }
    )
    code, output = verdicts["honest"]
    assert (code, output.split(":")[0]) == (0, "VERIFIED"), output
    for what in ("another round's commitment", "forged"):
        code, output = verdicts[what]
        assert (code, output.split(":")[0]) == (1, "REFUSED"), f"{what}: {output}"
        assert output.startswith("REFUSED: the export's commitment"), output
    # Without the published commitment the forgery agrees with itself, and the verifier says
    # that is all it checked.
    code, output = verdicts["forged, no commitment"]
    assert code == 0 and output.startswith("VERIFIED (self-consistency only)"), output


def test_a_changed_export_is_refused(inspections, tmp_path):
    drawn = inspections.drawn_round(projects=4, inspectors=3)
    published = drawn.seed_commitment
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

    verdicts = _verdicts({what: (path, published) for what, path in paths.items()})

    code, output = verdicts.pop("honest")
    assert (code, output.split(":")[0]) == (0, "VERIFIED"), output
    code, output = verdicts.pop("malformed")
    assert code == 2 and output.startswith("UNREADABLE: not a GetRound export"), output
    for what, (code, output) in verdicts.items():
        # A changed character may leave the export unreadable (a time no longer a time).
        verdict = (code, output.split(":")[0])
        assert verdict in {(1, "REFUSED"), (2, "UNREADABLE")}, f"{what}: {output}"

    assert problems_of(exported, published) == []
    for what, locate in IN_PROCESS_MUTATIONS.items():
        assert problems_of(_change_one_character(exported, *locate(drawn)), published), what


def test_the_export_of_a_round_not_yet_drawn_is_refused(inspections, tmp_path):
    inspections.project(credit_code=None)
    created = inspections.create_round()
    path = tmp_path / "round.json"
    path.write_text(export(created), encoding="utf-8")
    verdict = verify_draw(path, created.seed_commitment)
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
    announced = inspections.events(ev.InspectionTriggered)
    assert [(e.project_id, e.district_code, e.pending_triggers) for e in announced] == [
        (complained, DONGSHENG, 1),
        (complained, DONGSHENG, 2),
    ]

    created = inspections.create_round(period="2026H1")
    triggered = {e.project_id for e in created.entities if e.triggered}
    assert triggered == {complained}
    # Asked for after the lists were frozen: it waits for the next round.
    inspections.clock.advance(seconds=1)
    late = street.TriggerInspection(
        pb.TriggerInspectionRequest(project_id=complained, reason="又一次投诉")
    )
    assert late.pending_triggers == 3
    drawn = inspections.draw(created.round_id)
    reasons = {s.project_id: s.reason for s in drawn.selections}
    assert reasons[complained] == "triggered"
    assert set(reasons) <= {complained, *others}

    # The two before the lists were frozen are spent by that draw; the late one is not.
    assert (
        street.TriggerInspection(
            pb.TriggerInspectionRequest(project_id=complained, reason="再次投诉")
        ).pending_triggers
        == 2
    )
    after = inspections.create_round(period="2026H2")
    assert {e.project_id for e in after.entities if e.triggered} == {complained}


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


def test_complaints_in_the_window_before_a_round_raise_a_projects_weight(inspections):
    complained = inspections.project(credit_code=None, grade=credit_pb.GRADE_B)
    quiet = inspections.project(credit_code=None, grade=credit_pb.GRADE_B)
    alarm = iot_events.AlarmRaised(
        alarm=iot_pb.Alarm(id="A1", project_id=complained, district_code=DONGSHENG)
    )
    # One long ago, outside the window; two recent ones.
    inspections.deliver(alarm, topic="wuye.iot.alarm.v1")
    window = inspections.settings.complaint_window_days
    inspections.clock.advance(days=window + 1)
    for _ in range(2):
        inspections.deliver(alarm, topic="wuye.iot.alarm.v1")
    # A project this instance does not know is no complaint.
    alarm.alarm.project_id = new_id(DONGSHENG)
    inspections.deliver(alarm, topic="wuye.iot.alarm.v1")
    assert inspections.count("complaints") == 3

    created = inspections.create_round(period="2030")
    assert {e.project_id: e.complaints for e in created.entities} == {complained: 2, quiet: 0}
    assert [(w.complaints, w.weight) for w in created.complaint_weights] == list(
        inspections.settings.complaint_weights
    )
    spec = spec_of(created)
    assert spec.entities[[e.project_id for e in spec.entities].index(complained)].complaints == 2


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
            project_id=exited,
            district_code=DONGSHENG,
            credit_code=code,
            filed=True,
            occur_time=timestamp(inspections.clock()),
        )
    )
    # A grade of a practitioner says nothing about an enterprise.
    practitioner = grade_changed(code, DONGSHENG, credit_pb.GRADE_C, inspections.clock())
    practitioner.change.subject.kind = credit_pb.SUBJECT_KIND_PRACTITIONER
    inspections.deliver(practitioner, topic=GRADE_TOPIC)

    listed = {e.project_id: e for e in inspections.create_round(period="2026").entities}
    assert (listed[project].credit_code, listed[project].grade) == (code, "AA")
    assert (listed[exited].credit_code, listed[exited].grade) == ("", "")
    assert listed[project].project_type == "RESIDENTIAL"

    inspections.deliver(
        grade_changed(code, DONGSHENG, credit_pb.GRADE_C, inspections.clock()), topic=GRADE_TOPIC
    )
    later = inspections.create_round(period="2027").entities
    assert {e.project_id: e.grade for e in later}[project] == "C"
