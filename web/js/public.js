// The public pages (一公开), no sign-in: a project's disclosure, enterprises' credit grades,
// inspection results and draws, and the results of closed votes re-counted here.

import { DISTRICTS, call, districtSelect, el, errorBox, query, show, when, yuan } from "./api.js";
import { fileVerifier, recountVote, resultView, verdictBox } from "./results.js";

const page = document.getElementById("page");

const TASKS = {
  disclosure: ["项目公示", "物业服务项目、等级、收费标准和投诉电话", disclosureView],
  credit: ["企业信用等级", "物业服务企业的信用分和等级，红名单和黑名单", creditView],
  inspections: ["双随机抽查", "抽查结果，以及每轮抽签的公开核验", inspectionsView],
  votes: ["业主表决结果", "已结束表决的结果，在本机重新计票核验", votesView],
  fund: ["维修资金", "项目的专项维修资金余额和使用情况", fundView],
  tenders: ["招投标", "物业服务招标项目和中标结果", tendersView],
};

function index() {
  show(page, el("h2", {}, "公开信息"),
    Object.entries(TASKS).map(([key, [title, what]]) =>
      el("a", { href: `#${key}`, class: "card", style: "display:block;color:inherit" },
        el("h3", {}, title), el("p", { class: "muted" }, what))));
}

function route() {
  const [key, ...rest] = location.hash.slice(1).split("/");
  const task = TASKS[key];
  if (!task) return index();
  const view = el("div", { id: `view-${key}` });
  show(page, el("h2", {}, task[0]), view);
  task[2](view, rest.map(decodeURIComponent));
}

// A form of a few fields whose submission shows its answer below it.
function lookup(view, fields, submit, label = "查询") {
  const out = el("div", { class: "answer" });
  const form = el("form", { class: "card" }, fields,
    el("div", { class: "row" }, el("button", { type: "submit" }, label)));
  form.onsubmit = async (event) => {
    event.preventDefault();
    show(out, el("p", { class: "muted" }, "正在读取…"));
    try {
      show(out, await submit());
    } catch (error) {
      show(out, errorBox(error));
    }
  };
  view.append(form, out);
  return form;
}

// ---------------------------------------------------------------- 公示

const FEE_METHODS = { FEE_METHOD_LUMP_SUM: "包干制", FEE_METHOD_COMMISSION: "酬金制" };

function disclosureView(view, [projectId]) {
  const input = el("input", { type: "text", id: "project-id", value: projectId || "",
    placeholder: "如 150602-P00000001（见小区公示栏）" });
  const form = lookup(view, [el("label", { for: "project-id" }, "项目编号"), input], async () => {
    const id = input.value.trim();
    history.replaceState(null, "", `#disclosure/${encodeURIComponent(id)}`);
    const { disclosure: d } = await call("GET", `/v1/projects/${encodeURIComponent(id)}/disclosure`);
    return el("div", { class: "card disclosure" },
      el("h3", {}, d.enterpriseName || "（尚无物业服务企业）"),
      el("p", { class: "muted" }, `统一社会信用代码 ${d.creditCode || "—"} · 更新于 ${when(d.updateTime)}`),
      el("table", {},
        el("tr", {}, el("th", {}, "服务内容"), el("td", {}, d.serviceItems.join("、"))),
        el("tr", {}, el("th", {}, "服务等级"), el("td", {}, d.serviceGrade)),
        el("tr", {}, el("th", {}, "服务标准"), el("td", {}, d.serviceStandard)),
        el("tr", {}, el("th", {}, "收费方式"), el("td", {}, FEE_METHODS[d.feeMethod] || "—")),
        el("tr", {}, el("th", {}, "收费标准"),
          el("td", {}, `${yuan(d.feeFenPerM2Month)} / m²·月（按建筑面积）`)),
        el("tr", {}, el("th", {}, "服务电话"), el("td", {}, d.servicePhone)),
        el("tr", {}, el("th", {}, "投诉电话"), el("td", {}, d.complaintPhones.join("、")))));
  });
  if (projectId) form.requestSubmit();
}

// ---------------------------------------------------------------- 信用

const GRADES = {
  GRADE_AAA: "AAA", GRADE_AA: "AA", GRADE_A: "A", GRADE_B: "B", GRADE_C: "C",
  GRADE_C_UNFILED: "C（未备案）",
};

function creditView(view) {
  const district = districtSelect("credit-district");
  const list = el("select", { id: "credit-list" },
    el("option", { value: "" }, "全部企业"),
    el("option", { value: "red" }, "红名单（守信激励）"),
    el("option", { value: "black" }, "黑名单（失信惩戒）"));
  view.append(el("div", { class: "notice" },
    el("p", {}, "信用分 = 考核基础分 + 良好记录加分 − 不良记录扣分；等级由分数段确定，" +
      "有不良记录且分数低于 C 级线的为 C 级。记录满期自动失效，严重记录整改后失效。"),
    el("p", {}, "AAA 级企业列入红名单；C 级或有严重不良记录的列入黑名单，不得参加物业项目招投标。")));
  lookup(view, [el("label", { for: "credit-district" }, "旗区"), district,
    el("label", { for: "credit-list" }, "范围"), list], async () => {
    const found = await call("GET", `/v1/grades${query({
      district_code: district.value, page_size: 100,
      red_listed_only: list.value === "red" ? "true" : "",
      blacklisted_only: list.value === "black" ? "true" : "" })}`);
    if (!found.grades?.length) return el("p", { class: "muted" }, "该范围内没有企业。");
    return el("table", { class: "grades" },
      el("tr", {}, el("th", {}, "企业"), el("th", {}, "等级"), el("th", {}, "信用分")),
      found.grades.map((g) => el("tr", {},
        el("td", {}, g.name || g.subject.id, el("div", { class: "muted mono" }, g.subject.id)),
        el("td", {}, el("span", { class: `tag ${g.redListed ? "good" : g.blacklisted ? "bad" : ""}` },
          GRADES[g.grade] || g.grade),
        g.redListed ? " 红名单" : "", g.blacklisted ? " 黑名单" : ""),
        el("td", {}, g.score))));
  });
}

// ---------------------------------------------------------------- 双随机

function inspectionsView(view, [roundId]) {
  const district = districtSelect("inspection-district");
  lookup(view, [el("label", { for: "inspection-district" }, "旗区"), district], async () => {
    const found = await call("GET", `/v1/inspectionResults${query({
      district_code: district.value, page_size: 50 })}`);
    if (!found.results?.length) return el("p", { class: "muted" }, "暂无公布的抽查结果。");
    return el("table", { class: "inspection-results" },
      el("tr", {}, el("th", {}, "项目"), el("th", {}, "得分"), el("th", {}, "问题")),
      found.results.map((r) => el("tr", {},
        el("td", {}, r.projectId, el("div", { class: "muted" }, `${r.creditCode} · ${when(r.recordTime)}`)),
        el("td", {}, r.score),
        el("td", {}, r.findings ? `${r.findings} 项：${r.findingsSummary}` : "无"))));
  });
  const round = el("input", { type: "text", id: "round-id", value: roundId || "",
    placeholder: "抽查轮次编号" });
  const form = lookup(view, [el("h3", {}, "核验一轮抽签"), el("label", { for: "round-id" }, "轮次编号"),
    round], async () => {
    const { round: r } = await call("GET", `/v1/rounds/${encodeURIComponent(round.value.trim())}`);
    return el("div", { class: "card round" },
      el("p", {}, `${r.period} · ${r.districtCodes.map((c) => DISTRICTS[c] || c).join("、")} · ` +
        `名单 ${r.entities.length} 个项目、${r.inspectors.length} 名检查人员`),
      el("p", {}, "创建时公布的承诺（种子与名单的 SHA-256）："),
      el("p", { class: "mono" }, r.seedCommitment),
      el("p", {}, r.seed ? "抽签后公布的种子：" : "尚未抽签：种子在抽签时公布。"),
      r.seed ? el("p", { class: "mono" }, r.seed) : null,
      el("table", {}, el("tr", {}, el("th", {}, "抽中项目"), el("th", {}, "原因"), el("th", {}, "检查人员")),
        r.selections.map((s) => el("tr", {}, el("td", {}, s.projectId), el("td", {}, s.reason),
          el("td", {}, s.inspectorIds.join("、"))))),
      el("p", { class: "muted" }, "任何人可下载本轮 JSON，用公开的核验程序重算抽签：" +
        `python -m wuye.inspections verify-draw ROUND.json --commitment ${r.seedCommitment}`));
  }, "核验");
  if (roundId) form.requestSubmit();
}

// ---------------------------------------------------------------- 表决结果

function votesView(view) {
  const district = districtSelect("vote-district");
  lookup(view, [el("label", { for: "vote-district" }, "旗区"), district], async () => {
    const found = await call("GET", `/v1/votes${query({
      district_code: district.value, state: "VOTE_STATE_CLOSED", page_size: 20 })}`);
    if (!found.votes?.length) return el("p", { class: "muted" }, "该旗区暂无已结束的表决。");
    return found.votes.map((vote) => {
      const card = el("section", { class: "card vote", "data-vote-id": vote.voteId },
        el("h3", {}, vote.title),
        el("p", { class: "muted" }, `${vote.projectId} · ${when(vote.closeTime)} 结束 · ` +
          `名册摘要 ${vote.rollDigest.slice(0, 16)}…`),
        el("p", { class: "muted" }, "正在本机重新计票…"));
      recountVote(vote.voteId).then((outcome) => card.replaceChildren(card.firstChild,
        card.children[1], verdictBox(outcome),
        outcome.status === "VERIFIED" ? resultView(outcome) : ""),
      (error) => card.append(errorBox(error)));
      return card;
    });
  });
  fileVerifier(view);
}

// ---------------------------------------------------------------- 维修资金

const USE_STATES = {
  USE_STATE_DRAFT: "草拟", USE_STATE_PENDING_APPROVAL: "待审批", USE_STATE_ESCALATED: "已督办",
  USE_STATE_APPROVED: "已批准", USE_STATE_REAPPROVAL_REQUIRED: "超预算待重新审批",
  USE_STATE_COMPLETED: "已完成", USE_STATE_REJECTED: "未批准", USE_STATE_CANCELLED: "已取消",
};

function fundView(view, [projectId]) {
  const input = el("input", { type: "text", id: "fund-project-id", value: projectId || "",
    placeholder: "项目编号" });
  const form = lookup(view, [el("label", { for: "fund-project-id" }, "项目编号"), input], async () => {
    const id = encodeURIComponent(input.value.trim());
    history.replaceState(null, "", `#fund/${id}`);
    const { fund: f } = await call("GET", `/v1/projects/${id}/fund`);
    const { uses } = await call("GET", `/v1/projects/${id}/fundUses${query({ page_size: 50 })}`);
    return [
      el("div", { class: "card project-fund" },
        el("p", { class: "muted" }, `截至 ${when(f.asOfTime)}，${f.accounts} 个分户账`),
        el("table", {},
          el("tr", {}, el("th", {}, "余额"), el("td", {}, yuan(f.balanceFen))),
          el("tr", {}, el("th", {}, "累计交存"), el("td", {}, yuan(f.depositedFen))),
          el("tr", {}, el("th", {}, "累计利息"), el("td", {}, yuan(f.interestFen))),
          el("tr", {}, el("th", {}, "累计使用"), el("td", {}, yuan(f.usedFen))),
          el("tr", {}, el("th", {}, "需续交的分户"), el("td", {}, `${f.topUpRequiredAccounts} 户`)))),
      uses?.length ? el("table", { class: "fund-uses" },
        el("tr", {}, el("th", {}, "使用事项"), el("th", {}, "预算"), el("th", {}, "状态")),
        uses.map((u) => el("tr", {}, el("td", {}, u.title, el("div", { class: "muted" }, when(u.openTime))),
          el("td", {}, yuan(u.budgetFen)), el("td", {}, USE_STATES[u.state] || u.state))))
        : el("p", { class: "muted" }, "暂无公布的使用事项。"),
    ];
  });
  if (projectId) form.requestSubmit();
}

// ---------------------------------------------------------------- 招投标

const TENDER_STATES = {
  TENDER_STATE_ENQUIRIES: "答疑期", TENDER_STATE_TENDERING: "投标中", TENDER_STATE_OPENED: "已开标",
  TENDER_STATE_EVALUATION: "评标中", TENDER_STATE_AWARDED: "中标公示", TENDER_STATE_COMPLETE: "已完成",
  TENDER_STATE_CANCELLED: "已取消", TENDER_STATE_UNSUCCESSFUL: "流标",
};

function tendersView(view) {
  const district = districtSelect("tender-district");
  lookup(view, [el("label", { for: "tender-district" }, "旗区"), district], async () => {
    const code = encodeURIComponent(district.value);
    const { tenders } = await call("GET", `/v1/districts/${code}/tenders${query({ page_size: 20 })}`);
    const { awards } = await call("GET", `/v1/districts/${code}/awards${query({ page_size: 20 })}`);
    return [
      el("h3", {}, "招标项目"),
      tenders?.length ? el("table", { class: "tenders" }, tenders.map((t) => el("tr", {},
        el("td", {}, t.title, el("div", { class: "muted" }, `${t.projectId} · 截标 ${when(t.bidDeadline)}`)),
        el("td", {}, TENDER_STATES[t.state] || t.state))))
        : el("p", { class: "muted" }, "暂无招标项目。"),
      el("h3", {}, "中标结果"),
      awards?.length ? el("table", { class: "awards" }, awards.map((a) => el("tr", {},
        el("td", {}, a.winner, el("div", { class: "muted" }, `${a.projectId} · ${when(a.awardTime)}`)),
        el("td", {}, yuan(a.priceFen)), el("td", {}, a.totalScore))))
        : el("p", { class: "muted" }, "暂无中标结果。"),
    ];
  });
}

addEventListener("hashchange", route);
route();
