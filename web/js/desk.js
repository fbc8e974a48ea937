// The fire duty desk: a district's open alarms as they happen (WatchAlarms over gRPC-Web),
// oldest first with their age in seconds, acknowledged and resolved from here.

import { DISTRICTS, call, districtSelect, el, errorBox, show } from "./api.js";
import { TIMESTAMP, decode, encodeStrings, millis, serverStream } from "./grpcweb.js";

const page = document.getElementById("page");
const TOKEN = "wuye.desk.token";
const WATCH = "/wuye.iot.v1.IntakeService/WatchAlarms";

const KINDS = ["未指定", "消火栓水压低", "消防设施被关停", "火警", "防火门未关闭", "消防通道堵塞",
  "设备失联", "网关时钟偏差"];
const KIND_NAMES = ["ALARM_KIND_UNSPECIFIED", "ALARM_KIND_LOW_PRESSURE", "ALARM_KIND_FACILITY_OFF",
  "ALARM_KIND_FIRE", "ALARM_KIND_FIRE_DOOR_OPEN", "ALARM_KIND_FIRE_LANE_BLOCKED",
  "ALARM_KIND_DEVICE_SILENT", "ALARM_KIND_CLOCK_SKEW"];
const STATES = ["ALARM_STATE_UNSPECIFIED", "ALARM_STATE_RAISED", "ALARM_STATE_ACKNOWLEDGED",
  "ALARM_STATE_RESOLVED"];

// wuye.iot.v1.Alarm, the fields the desk shows.
const ALARM = {
  1: ["id", "string"], 2: ["kind", "enum"], 3: ["state", "enum"], 4: ["districtCode", "string"],
  5: ["projectId", "string"], 6: ["gatewayId", "string"], 7: ["deviceId", "string"],
  9: ["value", "double"], 11: ["raiseTime", "message", TIMESTAMP],
  12: ["ackTime", "message", TIMESTAMP], 13: ["ackedBy", "string"],
};

const fromStream = (m) => ({ ...m, kind: KIND_NAMES[m.kind] || "", state: STATES[m.state] || "",
  raiseTime: millis(m.raiseTime), ackTime: millis(m.ackTime) });
const fromJson = (a) => ({ ...a, raiseTime: Date.parse(a.raiseTime),
  ackTime: a.ackTime ? Date.parse(a.ackTime) : null });

const alarms = new Map();
const seen = new Set();
let watching = null;
let list;
let status;

function setup() {
  const token = el("input", { type: "password", id: "token", autocomplete: "off",
    value: sessionStorage.getItem(TOKEN) || "", placeholder: "值班人员的令牌" });
  const district = districtSelect("district");
  const form = el("form", { class: "card", id: "watch" },
    el("label", { for: "district" }, "旗区"), district,
    el("label", { for: "token" }, "令牌"), token,
    el("p", { class: "muted" }, "开发环境：python -m wuye token --role district_authority --district 150602"),
    el("div", { class: "row" }, el("button", { type: "submit" }, "开始值班")));
  status = el("p", { id: "status", class: "muted" }, el("span", { class: "live" }), " 未连接");
  list = el("div", { id: "alarms" });
  // While on duty the alarms take the screen; the form comes back to change district.
  const change = el("button", { class: "secondary", id: "change", hidden: true,
    onclick: () => {
      form.hidden = false;
      change.hidden = true;
    } }, "更换旗区或令牌");
  form.onsubmit = (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN, token.value.trim());
    form.hidden = true;
    change.hidden = false;
    watch(district.value, token.value.trim());
  };
  show(page, form, el("div", { class: "row" }, status, change), list);
}

function setStatus(live, text) {
  show(status, el("span", { class: `live ${live ? "on" : ""}` }), ` ${text}`);
}

// Follows the district's alarms until the page leaves; reconnects after a break, waiting
// longer each time (up to 10 s).
async function watch(code, token) {
  watching?.abort();
  const control = new AbortController();
  watching = control;
  let wait = 1000;
  while (!control.signal.aborted) {
    alarms.clear();
    const started = Date.now();
    const live = () => setStatus(true, `${DISTRICTS[code]} 值班中`);
    setStatus(false, "正在连接…");
    render(token);
    try {
      // The server may answer only with the first alarm: either one means the desk is live.
      await serverStream(WATCH, encodeStrings({ 1: [code] }), {
        token,
        signal: control.signal,
        onOpen: live,
        onMessage: (bytes) => {
          live();
          const alarm = fromStream(decode(bytes, ALARM));
          // A stream's first second is the snapshot of open alarms: only later ones ring.
          receive(alarm, Date.now() - started > 1000, token);
          wait = 1000;
        },
      });
    } catch (error) {
      if (control.signal.aborted) return;
      if (error.code === 16 || error.code === 7) {
        setStatus(false, `无法值班：${error.message}。请检查令牌和旗区。`);
        return;
      }
      setStatus(false, `连接中断（${error.message}），${wait / 1000} 秒后重连`);
    }
    await new Promise((resolve) => setTimeout(resolve, wait));
    wait = Math.min(wait * 2, 10000);
  }
}

function receive(alarm, ring, token) {
  if (alarm.state === "ALARM_STATE_RESOLVED") alarms.delete(alarm.id);
  else alarms.set(alarm.id, alarm);
  const isNew = !seen.has(alarm.id);
  seen.add(alarm.id);
  render(token, isNew ? alarm.id : null);
  if (isNew && ring) beep();
}

function beep() {
  try {
    const audio = new AudioContext();
    const tone = audio.createOscillator();
    tone.frequency.value = 880;
    tone.connect(audio.destination);
    tone.start();
    tone.stop(audio.currentTime + 0.3);
  } catch {
    // No sound device: the flash is the cue.
  }
}

function render(token, fresh = null) {
  const open = [...alarms.values()].sort((a, b) =>
    (a.state === b.state ? a.raiseTime - b.raiseTime : a.state === "ALARM_STATE_RAISED" ? -1 : 1));
  if (!open.length) return show(list, el("p", { class: "notice" }, "没有未处理的告警。"));
  show(list, open.map((a) => alarmCard(a, token, a.id === fresh)));
}

function alarmCard(alarm, token, fresh) {
  const acknowledged = alarm.state === "ALARM_STATE_ACKNOWLEDGED";
  const problems = el("div");
  const act = async (verb, body) => {
    try {
      const changed = await call("POST", `/v1/alarms/${encodeURIComponent(alarm.id)}:${verb}`,
        { body, token });
      receive(fromJson(changed), false, token);
    } catch (error) {
      show(problems, errorBox(error));
    }
  };
  return el("section", { class: `card alarm ${acknowledged ? "acknowledged" : ""} ${fresh ? "new" : ""}`,
    "data-alarm-id": alarm.id, "data-state": alarm.state },
  el("div", { class: "row" },
    el("span", { class: "age", "data-raised": alarm.raiseTime }, age(alarm.raiseTime)),
    el("strong", { style: "flex:1" }, KINDS[KIND_NAMES.indexOf(alarm.kind)] || alarm.kind)),
  el("p", {}, `${alarm.projectId} · 网关 ${alarm.gatewayId}${alarm.deviceId ? ` · 设备 ${alarm.deviceId}` : ""}` +
    (alarm.value !== undefined ? ` · 读数 ${alarm.value}` : "")),
  acknowledged ? el("p", { class: "muted" }, `${alarm.ackedBy} 已确认`) : null,
  el("div", { class: "row" },
    acknowledged ? null
      : el("button", { class: "acknowledge", onclick: () => act("acknowledge", { note: "" }) }, "确认"),
    el("button", { class: "secondary resolve",
      onclick: () => act("resolve", { note: "", resolution: "ALARM_RESOLUTION_HANDLED" }) }, "已处理"),
    el("button", { class: "secondary false-alarm",
      onclick: () => act("resolve", { note: "", resolution: "ALARM_RESOLUTION_FALSE_ALARM" }) }, "误报")),
  problems);
}

const age = (raised) => `${Math.max(0, Math.floor((Date.now() - raised) / 1000))} 秒`;

// Ages tick every second without redrawing the cards.
setInterval(() => {
  for (const node of document.querySelectorAll(".age[data-raised]")) {
    node.textContent = age(Number(node.dataset.raised));
  }
}, 1000);

setup();
