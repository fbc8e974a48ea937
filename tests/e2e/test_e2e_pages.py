"""The pages as people use them, in a phone-sized Chromium against the platform `make run`
starts, through its edge: an owner signs in with the logged code, votes, re-votes and checks the
receipt; after the close the page re-counts the log and shows VERIFIED, and a tampered copy of
the log is refused; a project's disclosure and the credit grades render without personal data;
an alarm a gateway raises appears on the duty desk, is acknowledged and resolved.

Every page is photographed at 360x780 into the run's screenshots folder."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from browser_support import found, gone, photograph, text_of, until
from google.protobuf.timestamp_pb2 import Timestamp
from sample_data import date, new_credit_code, new_resident_id, request_id
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from wuye.core.auth import Role, issue_token
from wuye.core.pii import OwnerKeys
from wuye.iot.signing import sign
from wuye.iot.v1 import intake_service_pb2 as iot_pb
from wuye.launcher import SERVING_PARTS, read_secrets_file
from wuye.registry.v1 import registry_service_pb2 as registry_pb
from wuye.voting.v1 import voting_service_pb2 as voting_pb
from wuye.voting.v1 import voting_service_pb2_grpc as voting_grpc

pytestmark = pytest.mark.e2e

CALL_SECONDS = 10.0
OWNER_NAME = "张三丰"
OWNER_PHONE = "13912345678"
# What a public page's form shows while it reads.
LOADING = "正在读取…"


def timestamp(time_: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(time_)
    return stamp


def answered(browser, css: str) -> str | None:
    """The answer a public page's form shows, once it has read it."""
    shown = text_of(browser, css)
    return shown if shown and shown != LOADING else None


# ---------------------------------------------------------------- the city the pages show


class City:
    """An enterprise serving a project with units, its disclosure, and an open vote."""

    def __init__(self, platform, edge: str) -> None:
        self.platform = platform
        self.edge = edge
        self.auth = platform.auth()
        registry = platform.registry()
        code = new_credit_code("150602")
        filed = registry.FileEnterprise(
            registry_pb.FileEnterpriseRequest(
                request_id=request_id(),
                enterprise=registry_pb.Enterprise(
                    credit_code=code,
                    name="鄂尔多斯市天骄物业服务有限公司",
                    district_code="150602",
                    address="东胜区天骄路 1 号",
                    legal_representative="王伟",
                    contact_phone="13812345678",
                ),
            ),
            metadata=self.auth,
            timeout=CALL_SECONDS,
        )
        registry.ReviewFiling(
            registry_pb.ReviewFilingRequest(
                filing_id=filed.filing.filing_id,
                decision=registry_pb.REVIEW_DECISION_APPROVE,
                reason="",
            ),
            metadata=self.auth,
            timeout=CALL_SECONDS,
        )
        self.credit_code = code
        self.project_id = registry.RegisterProject(
            registry_pb.RegisterProjectRequest(
                request_id=request_id(),
                project=registry_pb.Project(
                    name="天骄花园",
                    type=registry_pb.PROJECT_TYPE_RESIDENTIAL,
                    district_code="150602",
                    sub_district="天骄街道",
                    address="鄂尔多斯市东胜区天骄路 8 号",
                    building_area_m2="125000.50",
                ),
            ),
            metadata=self.auth,
            timeout=CALL_SECONDS,
        ).project.project_id
        registry.AssignEnterprise(
            registry_pb.AssignEnterpriseRequest(
                request_id=request_id(),
                project_id=self.project_id,
                assignment=registry_pb.Assignment(
                    credit_code=code,
                    contract_start=date(dt.date(2026, 1, 1)),
                    contract_end=date(dt.date(2028, 12, 31)),
                    handover=registry_pb.HandoverInspection(
                        inspection_date=date(dt.date(2025, 12, 20)),
                        items=[registry_pb.HandoverItem(facility="消防水泵", passed=True)],
                        record_reference="CJ-2026-001",
                    ),
                ),
            ),
            metadata=self.auth,
            timeout=CALL_SECONDS,
        )
        registry.UpdateDisclosure(
            registry_pb.UpdateDisclosureRequest(
                disclosure=registry_pb.Disclosure(
                    project_id=self.project_id,
                    service_items=["保洁", "绿化", "秩序维护", "共用设施维修"],
                    service_grade="一级",
                    service_standard="鄂尔多斯市住宅物业服务标准",
                    fee_method=registry_pb.FEE_METHOD_LUMP_SUM,
                    fee_fen_per_m2_month=150,
                    service_phone="0477-8888888",
                    complaint_phones=["12345"],
                )
            ),
            metadata=self.auth,
            timeout=CALL_SECONDS,
        )
        # The owner of two flats, and three neighbours.
        self.owner_id = new_resident_id()
        self.neighbours = [new_resident_id() for _ in range(3)]
        units = [("1-1-101", "89.37", self.owner_id), ("1-1-102", "120.50", self.owner_id)]
        units += [(f"1-2-{n}01", "95.00", person) for n, person in enumerate(self.neighbours)]
        registry.RegisterUnits(
            registry_pb.RegisterUnitsRequest(
                request_id=request_id(),
                project_id=self.project_id,
                units=[
                    registry_pb.Unit(
                        number=number,
                        exclusive_area_m2=size,
                        owner=registry_pb.Owner(
                            kind=registry_pb.OWNER_KIND_PERSON,
                            name=OWNER_NAME,
                            id_number=person,
                            phone=OWNER_PHONE,
                        ),
                    )
                    for number, size, person in units
                ],
            ),
            metadata=self.auth,
            timeout=CALL_SECONDS,
        )
        self.voting = voting_grpc.VotingServiceStub(
            grpc.insecure_channel(platform.description["grpc"]["voting"])
        )
        self.vote_id = self._open_vote(owners=4)
        # Two neighbours vote yes on both matters before the owner does.
        for neighbour in self.neighbours[:2]:
            self.voting.CastBallot(
                voting_pb.CastBallotRequest(
                    request_id=request_id(),
                    vote_id=self.vote_id,
                    choices=[
                        voting_pb.MatterChoice(matter_id="M1", choice=voting_pb.CHOICE_YES),
                        voting_pb.MatterChoice(matter_id="M2", choice=voting_pb.CHOICE_YES),
                    ],
                ),
                metadata=self.owner_auth(neighbour),
                timeout=CALL_SECONDS,
            )

    def owner_auth(self, person: str) -> tuple[tuple[str, str], ...]:
        secrets = read_secrets_file(self.platform.state_dir)
        token = issue_token(
            secrets["WUYE_TOKEN_SECRET"],
            subject=OwnerKeys(secrets["WUYE_PII_KEY"].encode()).of_person(person),
            role=Role.OWNER,
            districts=["150602"],
        )
        return (("authorization", f"Bearer {token}"),)

    def _open_vote(self, owners: int) -> str:
        """An open vote whose frozen roll has every owner: the units reach the voting service as
        events, so a vote that opened before they all arrived is closed and another one made."""
        while True:
            vote_id = until(self._created_vote)
            vote = until(functools.partial(self._vote_if, vote_id, voting_pb.VOTE_STATE_OPEN))
            if vote.roll_owners == owners:
                return vote_id
            self.close_vote(vote_id)

    def _created_vote(self) -> str | None:
        now = dt.datetime.now(dt.UTC)
        try:
            return self.voting.CreateVote(
                voting_pb.CreateVoteRequest(
                    request_id=request_id(),
                    vote=voting_pb.Vote(
                        project_id=self.project_id,
                        title="2026 年天骄花园业主共同决定",
                        open_time=timestamp(now + dt.timedelta(seconds=1)),
                        close_time=timestamp(now + dt.timedelta(days=5, minutes=1)),
                        matters=[
                            voting_pb.Matter(
                                type=voting_pb.MATTER_TYPE_HIRE_ENTERPRISE,
                                title="续聘物业服务企业",
                                text="续聘鄂尔多斯市天骄物业服务有限公司，服务期三年，收费标准不变。",
                            ),
                            voting_pb.Matter(
                                type=voting_pb.MATTER_TYPE_RAISE_FUND,
                                title="续筹维修资金",
                                text="按每平方米专有面积 30 元续筹专项维修资金。",
                                fund_amount_fen=1_500_000,
                            ),
                        ],
                    ),
                ),
                metadata=self.auth,
                timeout=CALL_SECONDS,
            ).vote.vote_id
        except grpc.RpcError as e:
            # The project, then its units, are on their way to voting as events.
            if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                return None
            raise

    def _vote_if(self, vote_id: str, state: int) -> voting_pb.Vote | None:
        vote = self.voting.GetVote(
            voting_pb.GetVoteRequest(vote_id=vote_id), timeout=CALL_SECONDS
        ).vote
        return vote if vote.state == state else None

    def close_vote(self, vote_id: str) -> None:
        self.voting.CloseVote(
            voting_pb.CloseVoteRequest(vote_id=vote_id), metadata=self.auth, timeout=CALL_SECONDS
        )
        until(lambda: self._vote_if(vote_id, voting_pb.VOTE_STATE_CLOSED))

    def http(self, method: str, path: str, payload: dict | None = None) -> bytes:
        headers = {"authorization": self.auth[0][1]}
        body = None
        if payload is not None:
            body = json.dumps(payload, ensure_ascii=False).encode()
            headers["content-type"] = "application/json"
        request = urllib.request.Request(self.edge + path, body, headers, method=method)
        with urllib.request.urlopen(request, timeout=CALL_SECONDS) as answer:
            return answer.read()

    def logged_code(self, masked: str) -> str | None:
        """The one-time code the registry logged for an ID number shown as `masked`."""
        log = next(
            Path(process["log"])
            for process in self.platform.description["processes"]
            if process["name"] in {f"registry {part}" for part in SERVING_PARTS}
        )
        codes = [
            event.split(" code=")[1].split()[0]
            for line in log.read_text().splitlines()
            if f"id_number={masked} " in (event := json.loads(line).get("event", ""))
        ]
        return codes[-1] if codes else None


@pytest.fixture(scope="module")
def edge(platform) -> str:
    return f"http://{platform.description['edge']['address']}"


@pytest.fixture(scope="module")
def city(platform, edge) -> City:
    return City(platform, edge)


# ---------------------------------------------------------------- the owners' page


def sign_in(browser, city: City) -> None:
    browser.get(f"{city.edge}/owner.html")
    until(lambda: found(browser, "#id-number"))
    browser.find_element(By.ID, "id-number").send_keys(city.owner_id)
    browser.find_element(By.ID, "start").click()
    notice = until(lambda: text_of(browser, "#sign-in-step .notice"))
    masked = city.owner_id[:4] + "*" * 10 + city.owner_id[-4:]
    assert masked in notice and city.owner_id not in notice
    code = until(lambda: city.logged_code(masked))
    browser.find_element(By.ID, "code").send_keys(code)
    browser.find_element(By.ID, "complete").click()
    until(lambda: found(browser, f'[data-vote-id="{city.vote_id}"] form'))


def cast(browser, vote_id: str, choices: dict[str, str]) -> str:
    """Chooses and submits; answers the receipt the page shows afterwards."""
    card = f'[data-vote-id="{vote_id}"]'
    before = text_of(browser, f"{card} .receipt")
    for matter, choice in choices.items():
        browser.find_element(
            By.CSS_SELECTOR, f'{card} input[name="{matter}"][value="{choice}"]'
        ).find_element(By.XPATH, "..").click()
    browser.find_element(By.CSS_SELECTOR, f"{card} button.cast").click()

    def new_receipt() -> str | None:
        shown = text_of(browser, f"{card} .receipt")
        return shown if shown != before else None

    return until(new_receipt)


def test_an_owner_signs_in_votes_re_votes_and_sees_the_receipt_counted(browser, city, screenshots):
    sign_in(browser, city)
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "天骄花园 1-1-101" in page and "续筹维修资金" in page
    assert city.owner_id not in page
    photograph(browser, screenshots, "owner-open-vote")

    first = cast(browser, city.vote_id, {"M1": "CHOICE_NO", "M2": "CHOICE_YES"})
    second = cast(browser, city.vote_id, {"M1": "CHOICE_YES", "M2": "CHOICE_YES"})
    assert first != second and len(second) == 64

    card = f'[data-vote-id="{city.vote_id}"]'
    browser.find_element(By.CSS_SELECTOR, f"{card} button.check-receipt").click()
    status = until(lambda: text_of(browser, f"{card} .receipt-status"))
    assert "已计入" in status
    ballots = until(lambda: text_of(browser, f"{card} .my-ballots"))
    assert ballots.count("计入") == 1 and ballots.count("已被取代") == 1
    stored = browser.execute_script("return JSON.parse(localStorage.getItem('wuye.receipts'))")
    assert [r["receipt"] for r in stored[city.vote_id]] == [first, second]
    photograph(browser, screenshots, "owner-receipt-counted")


def test_after_the_close_the_owners_page_recounts_the_log_and_shows_verified(
    browser, city, screenshots
):
    city.close_vote(city.vote_id)
    browser.get(f"{city.edge}/owner.html")
    card = f'[data-vote-id="{city.vote_id}"]'
    verdict = until(lambda: found(browser, f"{card} [data-verdict]"))
    assert verdict.get_attribute("data-verdict") == "VERIFIED", verdict.text
    # Anchored: the page kept the roll digest it saw while the vote was open.
    assert "名册摘要与表决开始时公布的一致" in verdict.text
    assert "已计入" in browser.find_element(By.CSS_SELECTOR, f"{card} .receipt-status").text
    matters = browser.find_elements(By.CSS_SELECTOR, f"{card} [data-matter]")
    assert [m.get_attribute("data-matter") for m in matters] == ["M1", "M2"]
    # 3 of 4 owners took part in M1 and all three said yes: an ordinary matter passes.
    assert "通过" in matters[0].text and "参与 3 人" in matters[0].text
    browser.execute_script("arguments[0].scrollIntoView()", matters[0])
    photograph(browser, screenshots, "owner-result-verified")


def test_a_tampered_log_is_refused_and_the_published_one_verifies(
    browser, city, screenshots, tmp_path
):
    if not city._vote_if(city.vote_id, voting_pb.VOTE_STATE_CLOSED):
        city.close_vote(city.vote_id)
    honest = json.loads(city.http("GET", f"/v1/votes/{city.vote_id}/ballotLog"))
    parts = honest if isinstance(honest, list) else [honest]
    entries = [e for part in parts for e in part.get("entries", [])]
    entries[0]["choices"][0]["choice"] = "CHOICE_NO"
    tampered = tmp_path / "tampered-log.json"
    tampered.write_text(json.dumps(parts, ensure_ascii=False))

    browser.get(f"{city.edge}/public.html#votes")
    Select(until(lambda: found(browser, "#vote-district"))).select_by_value("150602")
    browser.find_element(By.CSS_SELECTOR, "#view-votes form button").click()
    verdict = until(lambda: found(browser, f'[data-vote-id="{city.vote_id}"] [data-verdict]'))
    assert verdict.get_attribute("data-verdict") == "VERIFIED", verdict.text

    browser.find_element(By.ID, "log-file").send_keys(str(tampered))
    refusal = until(lambda: found(browser, "#log-file-result [data-verdict]"))
    assert refusal.get_attribute("data-verdict") == "REFUSED"
    assert "第 1 条的内容与其哈希" in refusal.text
    browser.execute_script("arguments[0].scrollIntoView()", refusal)
    photograph(browser, screenshots, "public-tampered-log-refused")


# ---------------------------------------------------------------- the public pages


def test_the_public_pages_render_without_personal_data(browser, city, screenshots):
    browser.get(f"{city.edge}/public.html#disclosure/{city.project_id}")
    card = until(lambda: found(browser, ".disclosure"))
    assert "鄂尔多斯市天骄物业服务有限公司" in card.text
    assert "1.50 元 / m²·月" in card.text and "12345" in card.text
    page = browser.find_element(By.TAG_NAME, "body").text
    for personal in (city.owner_id, *city.neighbours, OWNER_NAME, OWNER_PHONE, "王伟"):
        assert personal not in page
    photograph(browser, screenshots, "public-disclosure")

    browser.get(f"{city.edge}/public.html#credit")
    Select(until(lambda: found(browser, "#credit-district"))).select_by_value("150602")

    def graded():
        browser.find_element(By.CSS_SELECTOR, "#view-credit form button").click()
        table = until(lambda: answered(browser, "#view-credit .answer"))
        return table if city.credit_code in table else None

    row = next(
        line for line in until(graded, interval=0.5).splitlines() if city.credit_code in line
    )
    assert "王伟" not in browser.find_element(By.TAG_NAME, "body").text, row
    photograph(browser, screenshots, "public-credit-grades")

    # The fund opens the project's accounts when it learns the units: asked again until then.
    browser.get(f"{city.edge}/public.html#fund/{city.project_id}")

    def fund() -> str | None:
        answer = until(lambda: answered(browser, "#view-fund .answer"))
        if "分户账" in answer:
            return answer
        browser.find_element(By.CSS_SELECTOR, "#view-fund form button").click()
        return None

    assert "5 个分户账" in until(fund, interval=0.5)
    photograph(browser, screenshots, "public-fund")
    browser.get(f"{city.edge}/public.html#inspections")
    Select(until(lambda: found(browser, "#inspection-district"))).select_by_value("150602")
    browser.find_element(By.CSS_SELECTOR, "#view-inspections form button").click()
    until(lambda: answered(browser, "#view-inspections .answer"))
    photograph(browser, screenshots, "public-inspections")
    browser.get(f"{city.edge}/public.html#tenders")
    Select(until(lambda: found(browser, "#tender-district"))).select_by_value("150602")
    browser.find_element(By.CSS_SELECTOR, "#view-tenders form button").click()
    assert "中标结果" in until(lambda: answered(browser, "#view-tenders .answer"))
    page = browser.find_element(By.TAG_NAME, "body").text
    assert not any(person in page for person in (city.owner_id, OWNER_NAME, OWNER_PHONE))
    photograph(browser, screenshots, "public-tenders")


# ---------------------------------------------------------------- the duty desk


def test_an_alarm_a_gateway_raises_appears_on_the_duty_desk_and_is_handled(
    browser, city, screenshots
):
    browser.get(f"{city.edge}/desk.html")
    until(lambda: found(browser, "#token")).send_keys(
        city.platform.token(Role.DISTRICT_AUTHORITY, ["150602"])
    )
    browser.find_element(By.CSS_SELECTOR, "#watch button").click()
    # The snapshot: the district's open alarms (other tests' among them), or a notice of none.
    until(lambda: found(browser, "#alarms .notice") or found(browser, "#alarms [data-alarm-id]"))

    def registered_gateway() -> dict | None:
        try:
            return json.loads(
                city.http(
                    "POST",
                    "/v1/gateways",
                    {"requestId": str(uuid.uuid4()), "projectId": city.project_id, "name": "网关"},
                )
            )
        except urllib.error.HTTPError as e:
            if e.code == 400 and json.loads(e.read())["code"] == 9:  # the project is on its way
                return None
            raise

    gateway = until(registered_gateway, interval=0.3)
    device = json.loads(
        city.http(
            "POST",
            f"/v1/gateways/{gateway['gateway']['id']}/devices",
            {
                "requestId": str(uuid.uuid4()),
                "kind": "DEVICE_KIND_FIRE_FACILITY",
                "location": "1 号楼消防控制室",
            },
        )
    )
    now_ns = time.time_ns()
    batch = iot_pb.ReadingBatch(gateway_id=gateway["gateway"]["id"], sequence=1)
    batch.send_time.FromNanoseconds(now_ns)
    batch.readings.add(device_id=device["id"], value=0, observe_time_unix_nano=now_ns)
    post = grpc.insecure_channel(city.platform.description["edge"]["address"]).unary_unary(
        "/wuye.iot.v1.IntakeService/PostReadings",
        request_serializer=lambda raw: raw,
        response_deserializer=iot_pb.BatchResult.FromString,
    )
    signed = sign(base64.b64decode(gateway["secret"]), batch.SerializeToString())
    assert post(signed, timeout=CALL_SECONDS).accepted == 1

    # Read in one script, since the desk redraws its list as other alarms come and go.
    ours = """
        for (const a of document.querySelectorAll("#alarms [data-alarm-id]")) {
          if (a.textContent.includes(arguments[0])) {
            return {id: a.dataset.alarmId, state: a.dataset.state, text: a.innerText,
                    classes: a.className};
          }
        }
        return null;"""
    alarm = until(lambda: browser.execute_script(ours, device["id"]))
    assert alarm["state"] == "ALARM_STATE_RAISED"
    assert "消防设施被关停" in alarm["text"] and "秒" in alarm["text"]
    assert "new" in alarm["classes"].split()
    photograph(browser, screenshots, "desk-new-alarm")

    def click(css: str) -> bool | None:
        try:
            button = found(browser, css)
            return button.click() or True if button is not None else None
        except StaleElementReferenceException:  # drawn again between finding and clicking
            return None

    shown = f'[data-alarm-id="{alarm["id"]}"]'
    until(lambda: click(f"{shown} button.acknowledge"))
    until(lambda: click(f'{shown}[data-state="ALARM_STATE_ACKNOWLEDGED"] button.resolve'))
    until(lambda: gone(browser, shown))
    photograph(browser, screenshots, "desk-handled")
