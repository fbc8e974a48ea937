// The owners' page: sign in, vote and re-vote on the open votes of one's projects, keep the
// receipts, check that one's ballot is counted, and after the close re-count the published log.

import { area, call, el, errorBox, query, show, when, yuan } from "./api.js";
import { matterClass, matterType, recountVote, resultView, verdictBox } from "./results.js";
import { checkReceipt } from "./tally.js";

const page = document.getElementById("page");
const SESSION = "wuye.owner";
// Kept on the phone, across sign-ins: the receipts of the ballots cast here, and each vote's
// roll digest as first seen while it was open (the anchor the re-count is held to).
const RECEIPTS = "wuye.receipts";
const DIGESTS = "wuye.rollDigests";

const CHOICES = [["CHOICE_YES", "同意"], ["CHOICE_NO", "反对"], ["CHOICE_ABSTAIN", "弃权"]];
const CHOICE_WORDS = Object.fromEntries(CHOICES);

const stored = (key, fallback) => JSON.parse(localStorage.getItem(key) || "null") ?? fallback;
const keep = (key, value) => localStorage.setItem(key, JSON.stringify(value));

function session() {
  const found = JSON.parse(sessionStorage.getItem(SESSION) || "null");
  if (!found || new Date(found.expireTime) <= new Date()) return null;
  return found;
}

function receiptsOf(voteId) {
  return stored(RECEIPTS, {})[voteId] || [];
}

function keepReceipt(voteId, cast, choices) {
  const all = stored(RECEIPTS, {});
  all[voteId] = [...(all[voteId] || []),
    { receipt: cast.receipt, sequence: cast.sequence, castTime: cast.castTime, choices }];
  keep(RECEIPTS, all);
}

function requestId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// ---------------------------------------------------------------- sign-in

function signIn() {
  const idNumber = el("input", { type: "text", id: "id-number", autocomplete: "off",
    inputmode: "text", maxlength: 18, placeholder: "18 位身份证号" });
  const code = el("input", { type: "text", id: "code", inputmode: "numeric",
    autocomplete: "one-time-code", maxlength: 12, placeholder: "验证码" });
  const step = el("div", { id: "sign-in-step" });
  const problems = el("div");

  const start = async (event) => {
    event.preventDefault();
    problems.replaceChildren();
    try {
      const started = await call("POST", "/v1/ownerSignIns:start",
        { body: { idNumber: idNumber.value.trim() } });
      show(step,
        el("p", { class: "notice" }, `验证码已发出（${started.idNumberMasked}），` +
          `${when(started.expireTime)} 前有效。开发环境中验证码打印在平台日志里。`),
        el("label", { for: "code" }, "验证码"), code,
        el("div", { class: "row" }, el("button", { id: "complete", type: "submit" }, "登录")));
      form.onsubmit = complete;
      code.focus();
    } catch (error) {
      problems.replaceChildren(errorBox(error));
    }
  };

  const complete = async (event) => {
    event.preventDefault();
    problems.replaceChildren();
    try {
      const done = await call("POST", "/v1/ownerSignIns:complete",
        { body: { idNumber: idNumber.value.trim(), code: code.value.trim() } });
      sessionStorage.setItem(SESSION, JSON.stringify(
        { token: done.token, expireTime: done.expireTime, units: done.units }));
      home();
    } catch (error) {
      problems.replaceChildren(errorBox(error));
    }
  };

  const form = el("form", { id: "sign-in", class: "card" },
    el("h2", {}, "业主登录"),
    el("p", { class: "muted" }, "用本人身份证号登录，平台据不动产登记确认您的房屋和表决权。"),
    el("label", { for: "id-number" }, "身份证号"), idNumber, step,
    el("div", { class: "row" }, el("button", { id: "start", type: "submit" }, "获取验证码")),
    problems);
  form.onsubmit = start;
  show(page, form);
}

// ---------------------------------------------------------------- home

async function home() {
  const me = session();
  if (!me) return signIn();
  const projects = new Map(me.units.map((u) => [u.projectId, u.projectName]));
  const votes = el("div", { id: "votes" }, el("p", { class: "muted" }, "正在读取表决…"));
  show(page,
    el("div", { class: "row" },
      el("h2", { style: "flex:1" }, "我的房屋"),
      el("button", { class: "secondary", id: "sign-out", onclick: () => {
        sessionStorage.removeItem(SESSION);
        signIn();
      } }, "退出")),
    el("div", { class: "card", id: "units" },
      el("ul", {}, me.units.map((u) => el("li", {},
        `${u.projectName} ${u.unit.number}，专有面积 ${u.unit.exclusiveAreaM2} m²`)))),
    el("h2", {}, "表决"), votes);
  const cards = [];
  try {
    for (const [projectId, name] of projects) {
      const listed = await call("GET", `/v1/votes${query({ project_id: projectId, page_size: 50 })}`,
        { token: me.token });
      for (const vote of listed.votes || []) cards.push(voteCard(vote, name, me));
    }
  } catch (error) {
    return show(votes, errorBox(error));
  }
  show(votes, cards.length ? cards : el("p", { class: "muted" }, "您的小区目前没有表决。"));
}

function voteCard(vote, projectName, me) {
  const card = el("section", { class: "card vote", "data-vote-id": vote.voteId,
    "data-state": vote.state });
  const head = [
    el("h3", {}, vote.title),
    el("p", { class: "muted" }, `${projectName} · 表决期 ${when(vote.openTime)} 至 ${when(vote.closeTime)}`),
  ];
  if (vote.state === "VOTE_STATE_OPEN") {
    const digests = stored(DIGESTS, {});
    if (!digests[vote.voteId] && vote.rollDigest) {
      digests[vote.voteId] = vote.rollDigest;
      keep(DIGESTS, digests);
    }
    openVote(card, head, vote, me);
  } else if (vote.state === "VOTE_STATE_CLOSED") {
    closedVote(card, head, vote);
  } else if (vote.state === "VOTE_STATE_CANCELLED") {
    show(card, head, el("p", {}, `已取消：${vote.cancelReason}`));
  } else {
    show(card, head, el("p", {}, `尚未开始，${when(vote.openTime)} 开始投票。`),
      vote.matters.map((m) => matterText(m, vote.rules)));
  }
  return card;
}

function matterText(matter, rules) {
  return [
    el("h3", {}, `${matter.matterId} ${matter.title}`),
    el("p", { class: "muted" }, `${matterType(matter.type)} · ${matterClass(matter.matterClass,
      matter.matterClass === "MATTER_CLASS_SPECIAL" ? rules.specialMajority : rules.ordinaryMajority)}`,
      BigInt(matter.fundAmountFen || 0) > 0n ? ` · 金额 ${yuan(matter.fundAmountFen)}` : ""),
    el("p", { style: "white-space:pre-wrap" }, matter.text),
  ];
}

// ---------------------------------------------------------------- an open vote

async function openVote(card, head, vote, me) {
  const mine = await participation(vote.voteId, me);
  const last = mine?.ballots?.findLast((b) => b.lastBallot);
  const chosen = Object.fromEntries((last?.choices || []).map((c) => [c.matterId, c.choice]));
  const problems = el("div");
  const form = el("form", { id: `ballot-${vote.voteId}` },
    vote.matters.map((m) => [
      ...matterText(m, vote.rules),
      el("div", { class: "choices", role: "radiogroup" }, CHOICES.map(([value, word]) =>
        el("label", {}, el("input", { type: "radio", name: m.matterId, value,
          checked: chosen[m.matterId] === value }), word))),
    ]),
    el("div", { class: "row" }, el("button", { type: "submit", class: "cast" },
      last ? "重新表决（以最后一次为准）" : "提交表决")),
    problems);
  form.onsubmit = async (event) => {
    event.preventDefault();
    const choices = vote.matters
      .map((m) => ({ matterId: m.matterId, choice: form.elements[m.matterId].value }))
      .filter((c) => c.choice);
    if (choices.length < vote.matters.length) {
      show(problems, el("div", { class: "error" }, "请对每个事项作出选择（弃权也是一种选择）。"));
      return;
    }
    try {
      const cast = await call("POST", `/v1/votes/${encodeURIComponent(vote.voteId)}:castBallot`,
        { body: { requestId: requestId(), choices }, token: me.token });
      keepReceipt(vote.voteId, cast, choices);
      openVote(card, head, vote, me);
    } catch (error) {
      show(problems, errorBox(error));
    }
  };
  show(card, head,
    mine ? el("p", {}, `我的表决权：${mine.unitCount} 套房，专有面积 ${area(mine.areaCm2)}，计 1 人。`)
      : null,
    form, receiptsView(vote, mine));
}

async function participation(voteId, me) {
  try {
    return await call("GET", `/v1/votes/${encodeURIComponent(voteId)}/myParticipation`,
      { token: me.token });
  } catch {
    return null;
  }
}

// The receipts kept here and every ballot in the owner's name, with whether each counts.
function receiptsView(vote, mine) {
  const kept = receiptsOf(vote.voteId);
  const status = el("div", { class: "receipt-status" });
  const latest = kept.at(-1);
  const check = async () => {
    try {
      const checked = await call("GET",
        `/v1/votes/${encodeURIComponent(vote.voteId)}/receipts/${latest.receipt}`);
      show(status, el("p", { class: checked.inLog && checked.lastBallot ? "notice" : "error" },
        checked.inLog
          ? (checked.lastBallot ? `已计入：在投票记录第 ${checked.sequence} 条，是您最后一次表决。`
            : `在记录第 ${checked.sequence} 条，但之后有以您名义的新表决，以新的为准。`)
          : "投票记录中没有这张回执。请立即向街道办事处反映。"));
    } catch (error) {
      show(status, errorBox(error));
    }
  };
  const local = new Set(kept.map((k) => k.receipt));
  const ballots = mine?.ballots || [];
  return el("div", { class: "receipts" },
    latest ? [
      el("h3", {}, "我的回执"),
      el("p", { class: "mono receipt" }, latest.receipt),
      el("p", { class: "muted" }, `${when(latest.castTime)} 投出，已保存在本机。`),
      el("div", { class: "row" }, el("button", { class: "secondary check-receipt", type: "button",
        onclick: check }, "核对我的票是否计入")),
      status,
    ] : null,
    ballots.length ? [
      el("h3", {}, "以我名义的全部表决"),
      el("ul", { class: "my-ballots" }, ballots.map((b) => el("li", {},
        `第 ${b.sequence} 条，${when(b.castTime)}，${b.channel === "BALLOT_CHANNEL_PAPER" ? "纸质" : "网上"}，`,
        b.lastBallot ? el("span", { class: "tag good" }, "计入") : el("span", { class: "tag" }, "已被取代"),
        local.has(b.receipt) ? "" : el("span", { class: "tag bad" }, "非本机投出")))),
    ] : null);
}

// ---------------------------------------------------------------- a closed vote

async function closedVote(card, head, vote) {
  show(card, head, el("p", { class: "muted" }, "正在本机重新计票…"));
  const anchor = stored(DIGESTS, {})[vote.voteId] || null;
  let outcome;
  try {
    outcome = await recountVote(vote.voteId, { anchor });
  } catch (error) {
    return show(card, head, errorBox(error));
  }
  const kept = receiptsOf(vote.voteId);
  const latest = kept.at(-1);
  let mine = null;
  if (latest && outcome.status === "VERIFIED") {
    const found = checkReceipt(outcome.entries, latest.receipt);
    mine = el("p", { class: `receipt-status ${found.inLog && found.lastBallot ? "notice" : "error"}` },
      !found.inLog ? "您的回执不在公布的记录中。请向街道办事处反映。"
        : found.lastBallot ? `您的票在记录第 ${found.sequence} 条，已计入。`
          : `您的票在记录第 ${found.sequence} 条，已被以您名义的第 ${found.replacedBy} 条取代。`);
  }
  show(card, head, verdictBox(outcome), mine,
    outcome.status === "VERIFIED" ? resultView(outcome) : null);
}

home();
