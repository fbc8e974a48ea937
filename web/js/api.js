// The platform's HTTP/JSON API as the edge transcodes it, and what every page shows with it.

// Errors arrive as google.rpc.Status JSON: {code, message, details: [...]}.
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    const details = this.body.details || [];
    this.reason = details.find((d) => d.reason)?.reason || "";
    this.violations = details.flatMap((d) => d.fieldViolations || []);
  }
}

// A JSON call; `token` is sent as a bearer token. Answers the parsed body, or the text with
// {text: true}.
export async function call(method, path, { body, token, text = false } = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.text();
  if (!response.ok) {
    let parsed = null;
    try {
      parsed = JSON.parse(answer);
    } catch {
      parsed = { message: answer.slice(0, 200) };
    }
    throw new ApiError(response.status, parsed);
  }
  if (text) return answer;
  return answer ? JSON.parse(answer) : {};
}

export const query = (params) => {
  const found = Object.entries(params).filter(([, v]) => v !== undefined && v !== "");
  return found.length ? `?${new URLSearchParams(found)}` : "";
};

// ---------------------------------------------------------------- building the page

// el("p", {class: "muted"}, "text", child, ...): text is always text, never HTML.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function show(target, ...children) {
  target.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
}

// What went wrong and what to do next, in plain words.
export function errorBox(error) {
  if (!(error instanceof ApiError)) {
    return el("div", { class: "error", role: "alert" },
      `无法连接平台：${error.message}。请检查网络后重试。`);
  }
  const fields = error.violations.map((v) => el("li", {}, `${v.field}：${v.description}`));
  return el("div", { class: "error", role: "alert" },
    el("p", {}, error.message),
    fields.length ? el("ul", {}, fields) : null,
    error.reason ? el("p", { class: "muted" }, `原因代码 ${error.reason}`) : null);
}

// ---------------------------------------------------------------- numbers with their units

const CM2_PER_M2 = 10000n;

// An area in cm² (a BigInt or an int64 string) as square metres with two decimals.
export function area(cm2) {
  const value = BigInt(cm2);
  const whole = value / CM2_PER_M2;
  const cents = (value % CM2_PER_M2) / 100n;
  return `${whole}.${cents.toString().padStart(2, "0")} m²`;
}

export function yuan(fen) {
  const value = BigInt(fen);
  return `${value / 100n}.${(value % 100n).toString().padStart(2, "0")} 元`;
}

const TIME = new Intl.DateTimeFormat("zh-CN", {
  timeZone: "Asia/Shanghai",
  year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
});

export const when = (rfc3339) => (rfc3339 ? TIME.format(new Date(rfc3339)) : "—");

export const DISTRICTS = {
  150602: "东胜区", 150603: "康巴什区", 150621: "达拉特旗", 150622: "准格尔旗",
  150623: "鄂托克前旗", 150624: "鄂托克旗", 150625: "杭锦旗", 150626: "乌审旗",
  150627: "伊金霍洛旗",
};

export function districtSelect(id, selected = "150602") {
  return el("select", { id, name: id },
    Object.entries(DISTRICTS).map(([code, name]) =>
      el("option", { value: code, selected: code === selected }, `${name}（${code}）`)));
}

// A share of a whole drawn against a threshold p/q. The drawing's widths are only pictures;
// whether the share meets the threshold is decided exactly, by the caller, and passed as `met`.
export function shareBar(label, part, whole, threshold, met) {
  const [p, q] = threshold.text.split("/").map(BigInt);
  const percent = (a, b) => (b === 0n ? 0 : Number((a * 10000n) / b) / 100);
  const share = percent(part, whole);
  const mark = percent(p, q);
  const comparison = threshold.inclusive ? "≥" : ">";
  return el("div", { class: `bar ${met ? "met" : "unmet"}`, role: "img",
    "aria-label": `${label} ${share}%，门槛 ${comparison}${threshold.text}` },
  el("div", { class: "legend" },
    el("span", {}, label),
    el("span", {}, `${share.toFixed(2)}%（门槛 ${comparison} ${threshold.text}）${met ? "✓" : "✗"}`)),
  el("div", { class: "track" },
    el("div", { class: "fill", style: `width:${Math.min(share, 100)}%` }),
    el("div", { class: "mark", style: `left:${mark}%` })));
}
