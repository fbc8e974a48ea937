// A closed vote re-counted in this browser (tally.js) and drawn: every matter's turnout
// against the quorum and its yes votes against the majority, by area and by headcount.

import { area, call, el, shareBar, yuan } from "./api.js";
import { meets, verifyExport } from "./tally.js";

const MATTER_TYPES = {
  RULES_OF_PROCEDURE: "议事规则", COVENANT: "管理规约", ELECT_COMMITTEE: "选举业主委员会",
  HIRE_ENTERPRISE: "选聘、解聘物业服务企业", USE_FUND: "使用维修资金", RAISE_FUND: "筹集维修资金",
  REBUILD: "改建、重建", CHANGE_COMMON_USE: "改变共有部分用途", COMMON_BUSINESS: "利用共有部分经营",
  OTHER_MAJOR: "其他重大事项",
};

export const matterType = (name) => MATTER_TYPES[name.replace(/^MATTER_TYPE_/, "")] || name;
// A matter's class with the majority the vote's own rules set for it: the thresholds are a
// city's settings, so the page states the vote's, never its own.
export function matterClass(name, majority) {
  const special = name.replace(/^MATTER_CLASS_/, "") === "SPECIAL";
  const fraction = majority.text ?? majority.fraction;
  return `${special ? "特别事项" : "一般事项"}（同意的面积和人数均须${majority.inclusive ? "达到" : "超过"} ${fraction}）`;
}

// The verdict, in the words a person acts on.
export function verdictBox(outcome) {
  if (outcome.status === "VERIFIED") {
    return el("div", { class: "verdict verified", "data-verdict": "VERIFIED" },
      "VERIFIED 已核验：本机按公开算法重新计票，与公布结果一致",
      el("p", { class: "muted" }, outcome.anchored
        ? "名册摘要与表决开始时公布的一致，投票记录链完整。"
        : "未取得表决开始时公布的名册摘要，只核对了记录本身的一致性。"));
  }
  const word = { UNREADABLE: "无法读取", UNAVAILABLE: "无法核对" }[outcome.status] || "拒绝";
  return el("div", { class: "verdict refused", "data-verdict": outcome.status },
    `${outcome.status} ${word}：${outcome.reason}`,
    outcome.status === "UNAVAILABLE" ? null
      : el("p", { class: "muted" }, "公布的结果无法由公开记录重算得出。请保存记录并向街道办事处或住建部门反映。"));
}

function matterCard(matter, counted, rules) {
  const quorum = rules.quorum;
  const majority = counted.majority;
  return el("div", { class: "card", "data-matter": matter.matter_id },
    el("h3", {}, `${matter.matter_id} ${matter.title} `,
      el("span", { class: `tag ${counted.passed ? "good" : "bad"}` },
        counted.passed ? "通过" : "未通过")),
    el("p", { class: "muted" }, `${matterType(matter.type)} · ${matterClass(matter.matter_class, majority)}`,
      matter.fund_amount_fen > 0n ? ` · 金额 ${yuan(matter.fund_amount_fen)}` : ""),
    el("p", {}, `参与 ${counted.participating_owners} 人，${area(counted.participating_area_cm2)}；` +
      `同意 ${counted.yes_owners} 人，反对 ${counted.no_owners} 人，弃权 ${counted.abstain_owners} 人`),
    counted.deemed_choice
      ? el("p", { class: "muted" }, `未表决的 ${counted.deemed_owners} 人按多数计为“${counted.deemed_choice}”`)
      : null,
    shareBar("参与面积占总面积", counted.participating_area_cm2, rules.rollArea, quorum,
      meets(counted.participating_area_cm2, rules.rollArea, quorum)),
    shareBar("参与人数占总人数", counted.participating_owners, rules.rollOwners, quorum,
      meets(counted.participating_owners, rules.rollOwners, quorum)),
    shareBar("同意面积占参与面积", counted.yes_area_cm2, counted.participating_area_cm2, majority,
      meets(counted.yes_area_cm2, counted.participating_area_cm2, majority)),
    shareBar("同意人数占参与人数", counted.yes_owners, counted.participating_owners, majority,
      meets(counted.yes_owners, counted.participating_owners, majority)));
}

// The recount drawn, one card per matter.
export function resultView(outcome) {
  const { spec, result } = outcome;
  const rules = { ...spec.rules, rollArea: result.roll_area_cm2, rollOwners: result.roll_owners };
  return el("div", { class: "result" },
    el("p", {}, `业主共 ${result.roll_owners} 人、专有面积 ${area(result.roll_area_cm2)}；` +
      `收到 ${result.ballots} 张票，计入 ${result.counted_ballots} 张（每位业主只计最后一张）。`),
    spec.matters.map((m, n) => matterCard(m, result.matters[n], rules)));
}

// Fetches a closed vote's ballot log and re-counts it here; `anchor` is the roll digest seen
// while the vote was open (null if this browser never saw it open).
export async function recountVote(voteId, { anchor = null, receipt = null } = {}) {
  const text = await call("GET", `/v1/votes/${encodeURIComponent(voteId)}/ballotLog`,
    { text: true });
  return verifyExport(text, { rollDigest: anchor, receipt });
}

// A file input that re-counts a ballot log someone downloaded (or was sent).
export function fileVerifier(target) {
  const input = el("input", { type: "file", accept: ".json,application/json", id: "log-file" });
  const digest = el("input", { type: "text", id: "log-digest", placeholder: "可选：开始时公布的名册摘要" });
  const out = el("div", { id: "log-file-result" });
  input.addEventListener("change", async () => {
    const file = input.files[0];
    if (!file) return;
    const outcome = await verifyExport(await file.text(), { rollDigest: digest.value.trim() || null });
    out.replaceChildren(verdictBox(outcome),
      outcome.status === "VERIFIED" ? resultView(outcome) : "");
  });
  target.append(el("div", { class: "card" },
    el("h3", {}, "核对下载的投票记录"),
    el("p", { class: "muted" }, "选择一份投票记录（GetBallotLog 的 JSON），本机按公开算法重新计票。"),
    el("label", { for: "log-digest" }, "名册摘要"), digest,
    el("label", { for: "log-file" }, "记录文件"), input, out));
}
