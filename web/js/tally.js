// A second implementation of the ballot log's check and count (algorithm version 1, written
// out in services/voting/domain.py), so that a vote's result is re-counted in the owner's own
// browser from the published log. Every number is a BigInt: areas, counts and the thresholds'
// cross-multiplied fractions are compared exactly, never as floats.
//
// verifyExport(text, {rollDigest, receipt}) answers {status, reason, result, receiptStatus}:
// status "VERIFIED", "REFUSED" (reason: the first way the export departs from the algorithm),
// "UNREADABLE" (the text is not a GetBallotLog export in proto3 JSON) or "UNAVAILABLE" (this
// browser cannot hash here: the page is not on a secure origin).

export const ALGORITHM_VERSION = 1n;

class Unreadable extends Error {}
class Malformed extends Error {}

// ---------------------------------------------------------------- proto3 JSON, by schema

const VOTE_STATES = ["VOTE_STATE_UNSPECIFIED", "VOTE_STATE_SCHEDULED", "VOTE_STATE_OPEN",
  "VOTE_STATE_CLOSED", "VOTE_STATE_CANCELLED"];
const MATTER_TYPES = ["MATTER_TYPE_UNSPECIFIED", "MATTER_TYPE_RULES_OF_PROCEDURE",
  "MATTER_TYPE_COVENANT", "MATTER_TYPE_ELECT_COMMITTEE", "MATTER_TYPE_HIRE_ENTERPRISE",
  "MATTER_TYPE_USE_FUND", "MATTER_TYPE_RAISE_FUND", "MATTER_TYPE_REBUILD",
  "MATTER_TYPE_CHANGE_COMMON_USE", "MATTER_TYPE_COMMON_BUSINESS", "MATTER_TYPE_OTHER_MAJOR"];
const MATTER_CLASSES = ["MATTER_CLASS_UNSPECIFIED", "MATTER_CLASS_SPECIAL", "MATTER_CLASS_ORDINARY"];
const CHOICES = ["CHOICE_UNSPECIFIED", "CHOICE_YES", "CHOICE_NO", "CHOICE_ABSTAIN"];
const CHANNELS = ["BALLOT_CHANNEL_UNSPECIFIED", "BALLOT_CHANNEL_ONLINE", "BALLOT_CHANNEL_PAPER"];

const INT32 = [-(2n ** 31n), 2n ** 31n - 1n];
const INT64 = [-(2n ** 63n), 2n ** 63n - 1n];
const str = { kind: "string" };
const bool = { kind: "bool" };
const time = { kind: "time" };
const int32 = { kind: "int", limits: INT32 };
const int64 = { kind: "int", limits: INT64 };
const enumOf = (names) => ({ kind: "enum", names });
const repeated = (type) => ({ ...type, repeated: true });

const THRESHOLD = { fraction: str, inclusive: bool };
const COUNTING_RULES = {
  quorum: { kind: "message", fields: THRESHOLD },
  special_majority: { kind: "message", fields: THRESHOLD },
  ordinary_majority: { kind: "message", fields: THRESHOLD },
  non_voters_follow_majority: bool,
};
const MATTER = {
  matter_id: str, type: enumOf(MATTER_TYPES), matter_class: enumOf(MATTER_CLASSES), title: str,
  text: str, fund_amount_fen: int64, unit_ids: repeated(str),
};
const MATTER_RESULT = {
  matter_id: str, matter_class: enumOf(MATTER_CLASSES), participating_area_cm2: int64,
  participating_owners: int32, yes_area_cm2: int64, yes_owners: int32, no_area_cm2: int64,
  no_owners: int32, abstain_area_cm2: int64, abstain_owners: int32,
  deemed_choice: enumOf(CHOICES), deemed_area_cm2: int64, deemed_owners: int32,
  quorum_reached: bool, passed: bool,
};
const VOTE_RESULT = {
  roll_area_cm2: int64, roll_owners: int32, ballots: int32, counted_ballots: int32,
  matters: repeated({ kind: "message", fields: MATTER_RESULT }), count_time: time,
};
const VOTE = {
  vote_id: str, project_id: str, district_code: str, title: str,
  matters: repeated({ kind: "message", fields: MATTER }), open_time: time, close_time: time,
  state: enumOf(VOTE_STATES), rules: { kind: "message", fields: COUNTING_RULES },
  roll_digest: str, roll_owners: int32, roll_area_cm2: int64,
  result: { kind: "message", fields: VOTE_RESULT }, algorithm_version: int32,
  create_time: time, cancel_time: time, cancel_reason: str, log_head: str,
};
const MATTER_CHOICE = { matter_id: str, choice: enumOf(CHOICES) };
const ROLL_ENTRY = { pseudonym: str, area_cm2: int64 };
const LOG_ENTRY = {
  sequence: int64, pseudonym: str, area_cm2: int64,
  choices: repeated({ kind: "message", fields: MATTER_CHOICE }), cast_time: time,
  channel: enumOf(CHANNELS), paper_reference: str, previous_hash: str, entry_hash: str,
};
const EXPORT_PART = {
  vote: { kind: "message", fields: VOTE },
  roll: repeated({ kind: "message", fields: ROLL_ENTRY }),
  entries: repeated({ kind: "message", fields: LOG_ENTRY }),
};

// The messages and enumerations as this reader knows them, to be held to the protos.
export const SCHEMA = {
  messages: {
    GetBallotLogResponse: EXPORT_PART, Vote: VOTE, Matter: MATTER, CountingRules: COUNTING_RULES,
    Threshold: THRESHOLD, VoteResult: VOTE_RESULT, MatterResult: MATTER_RESULT,
    RollEntry: ROLL_ENTRY, LogEntry: LOG_ENTRY, MatterChoice: MATTER_CHOICE,
  },
  enums: {
    VoteState: VOTE_STATES, MatterType: MATTER_TYPES, MatterClass: MATTER_CLASSES,
    Choice: CHOICES, BallotChannel: CHANNELS,
  },
};

const jsonName = (name) => name.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());

function defaultOf(type) {
  if (type.repeated) return [];
  switch (type.kind) {
    case "string": return "";
    case "bool": return false;
    case "int": return 0n;
    case "enum": return type.names[0];
    default: return null;
  }
}

// A message of parsed JSON as an object keyed by proto field names, every field present.
function readMessage(value, fields, path) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Unreadable(`${path} 不是 JSON 对象`);
  }
  const byName = new Map();
  for (const name of Object.keys(fields)) {
    byName.set(name, name);
    byName.set(jsonName(name), name);
  }
  const message = {};
  for (const [name, type] of Object.entries(fields)) message[name] = defaultOf(type);
  const seen = new Set();
  for (const [key, item] of Object.entries(value)) {
    const name = byName.get(key);
    if (name === undefined) throw new Unreadable(`${path} 没有字段 ${key.slice(0, 40)}`);
    if (seen.has(name)) throw new Unreadable(`${path}.${name} 出现了两次`);
    seen.add(name);
    if (item === null) continue;
    const type = fields[name];
    if (type.repeated) {
      if (!Array.isArray(item)) throw new Unreadable(`${path}.${key} 不是 JSON 数组`);
      message[name] = item.map((each, n) => readValue(each, type, `${path}.${key}[${n}]`));
    } else {
      message[name] = readValue(item, type, `${path}.${key}`);
    }
  }
  return message;
}

const INTEGER_TEXT = /^-?[0-9]{1,20}$/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function readValue(item, type, path) {
  switch (type.kind) {
    case "string":
      if (typeof item === "string" && !LONE_SURROGATE.test(item)) return item;
      break;
    case "bool":
      if (typeof item === "boolean") return item;
      break;
    case "int": {
      let value = null;
      if (typeof item === "string" && INTEGER_TEXT.test(item)) value = BigInt(item);
      if (typeof item === "number" && Number.isSafeInteger(item)) value = BigInt(item);
      if (value !== null && type.limits[0] <= value && value <= type.limits[1]) return value;
      break;
    }
    case "enum":
      if (typeof item === "string" && type.names.includes(item)) return item;
      if (Number.isInteger(item) && item >= 0 && item < type.names.length) return type.names[item];
      break;
    case "time":
      return nanoseconds(item, path);
    case "message":
      return readMessage(item, type.fields, path);
  }
  throw new Unreadable(`${path} 不是 proto3 JSON 的写法`);
}

const RFC3339 = new RegExp(
  "^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\\.([0-9]{1,9}))?" +
  "(?:Z|([+-])([0-9]{2}):([0-9]{2}))$");

// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (H. Hinnant's algorithm).
function daysFromCivil(year, month, day) {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) +
    dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}

function daysInMonth(year, month) {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
}

const MIN_SECONDS = BigInt(daysFromCivil(1, 1, 1)) * 86400n;
const MAX_SECONDS = BigInt(daysFromCivil(10000, 1, 1)) * 86400n;

// An RFC 3339 time as nanoseconds since the epoch, exactly; years 1 to 9999 as Python reads them.
function nanoseconds(item, path) {
  const match = typeof item === "string" ? RFC3339.exec(item) : null;
  if (!match) throw new Unreadable(`${path} 不是 RFC 3339 时间`);
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number);
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) ||
      hour > 23 || minute > 59 || second > 59) {
    throw new Unreadable(`${path} 不是有效的时间`);
  }
  let seconds = BigInt(daysFromCivil(year, month, day)) * 86400n +
    BigInt(hour * 3600 + minute * 60 + second);
  if (match[8]) {
    const offset = BigInt(Number(match[9]) * 3600 + Number(match[10]) * 60);
    seconds += match[8] === "+" ? -offset : offset;
  }
  if (seconds < MIN_SECONDS || seconds >= MAX_SECONDS) throw new Unreadable(`${path} 超出年份范围`);
  return seconds * 1_000_000_000n + BigInt((match[7] || "").padEnd(9, "0"));
}

// The JSON values of a text: one, several one after another (a streamed answer printed as it
// came), or the items of one array (the HTTP gateway's form of a stream).
function jsonValues(text) {
  const values = [];
  let start = null;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    if (c === "{" || c === "[") {
      if (depth === 0) start = i;
      depth++;
    } else if (c === "}" || c === "]") {
      depth--;
      if (depth === 0) values.push(JSON.parse(text.slice(start, i + 1)));
      if (depth < 0) throw new SyntaxError("unbalanced brackets");
    } else if (depth === 0 && !/\s/.test(c)) {
      throw new SyntaxError(`unexpected ${JSON.stringify(c)} between values`);
    }
  }
  if (depth !== 0 || inString) throw new SyntaxError("the text ends inside a value");
  if (values.length === 1 && Array.isArray(values[0])) return values[0];
  if (values.length === 0) throw new SyntaxError("no JSON value");
  return values;
}

export function readExport(text) {
  let parts;
  try {
    parts = jsonValues(text);
  } catch (e) {
    throw new Unreadable(`不是 JSON：${e.message}`);
  }
  const votes = [];
  const roll = [];
  const entries = [];
  parts.forEach((part, n) => {
    const message = readMessage(part, EXPORT_PART, `第 ${n + 1} 部分`);
    if (message.vote !== null) votes.push(message.vote);
    roll.push(...message.roll);
    entries.push(...message.entries);
  });
  if (votes.length !== 1) throw new Unreadable(`导出应有一个表决，此导出有 ${votes.length} 个`);
  return { vote: votes[0], roll, entries };
}

// ---------------------------------------------------------------- the export as the algorithm's

function shortName(names, prefix, name) {
  if (name === names[0]) throw new Malformed(`${name} 不是服务公布的值`);
  return name.slice(prefix.length);
}

function micros(nanos) {
  if (nanos % 1000n !== 0n) throw new Malformed(`时间 ${nanos} ns 比公布的微秒更精细`);
  return nanos / 1000n;
}

const FRACTION = /^([1-9][0-9]{0,8})\/([1-9][0-9]{0,8})$/;

function gcd(a, b) {
  return b === 0n ? a : gcd(b, a % b);
}

function threshold(message) {
  if (message === null) throw new Malformed("缺少一个计票门槛");
  const match = FRACTION.exec(message.fraction);
  if (!match) throw new Malformed(`${message.fraction.slice(0, 40)} 不是 p/q 形式的分数`);
  const p = BigInt(match[1]);
  const q = BigInt(match[2]);
  if (gcd(p, q) !== 1n || p > q) throw new Malformed(`${message.fraction} 不是 0 到 1 之间的最简分数`);
  return { p, q, text: message.fraction, inclusive: message.inclusive };
}

function specOf(vote) {
  const rules = vote.rules;
  if (rules === null || vote.open_time === null || vote.close_time === null) {
    throw new Malformed("表决缺少计票规则或表决期");
  }
  return {
    vote_id: vote.vote_id,
    project_id: vote.project_id,
    district_code: vote.district_code,
    title: vote.title,
    open_time: micros(vote.open_time),
    close_time: micros(vote.close_time),
    rules: {
      quorum: threshold(rules.quorum),
      special_majority: threshold(rules.special_majority),
      ordinary_majority: threshold(rules.ordinary_majority),
      non_voters_follow_majority: rules.non_voters_follow_majority,
    },
    matters: vote.matters.map((m) => ({
      matter_id: m.matter_id,
      type: shortName(MATTER_TYPES, "MATTER_TYPE_", m.type),
      matter_class: shortName(MATTER_CLASSES, "MATTER_CLASS_", m.matter_class),
      title: m.title,
      text: m.text,
      fund_amount_fen: m.fund_amount_fen,
      unit_ids: m.unit_ids,
    })),
    algorithm_version: vote.algorithm_version,
  };
}

function entryOf(message) {
  if (message.cast_time === null) throw new Malformed(`第 ${message.sequence} 条没有投票时间`);
  return {
    sequence: message.sequence,
    pseudonym: message.pseudonym,
    area_cm2: message.area_cm2,
    choices: message.choices.map((c) => [c.matter_id, shortName(CHOICES, "CHOICE_", c.choice)]),
    cast_time: micros(message.cast_time),
    channel: shortName(CHANNELS, "BALLOT_CHANNEL_", message.channel),
    paper_reference: message.paper_reference,
    previous_hash: message.previous_hash,
    entry_hash: message.entry_hash,
  };
}

const RESULT_FIELDS = ["matter_id", "matter_class", "participating_area_cm2",
  "participating_owners", "yes_area_cm2", "yes_owners", "no_area_cm2", "no_owners",
  "abstain_area_cm2", "abstain_owners", "quorum_reached", "passed", "deemed_choice",
  "deemed_area_cm2", "deemed_owners"];

function resultOf(message) {
  return {
    roll_area_cm2: message.roll_area_cm2,
    roll_owners: message.roll_owners,
    ballots: message.ballots,
    counted_ballots: message.counted_ballots,
    matters: message.matters.map((m) => ({
      ...m,
      matter_class: shortName(MATTER_CLASSES, "MATTER_CLASS_", m.matter_class),
      deemed_choice: m.deemed_choice === CHOICES[0] ? null
        : shortName(CHOICES, "CHOICE_", m.deemed_choice),
    })),
  };
}

// ---------------------------------------------------------------- canon and H

// canon(x): JSON with keys sorted, no whitespace, non-ASCII as itself; integers are BigInts.
export function canon(value) {
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "string" || typeof value === "boolean") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canon).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canon(value[k])}`).join(",")}}`;
}

const encoder = new TextEncoder();

async function hash(value) {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(canon(value)));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

const byPseudonym = (a, b) => (a.pseudonym < b.pseudonym ? -1 : a.pseudonym > b.pseudonym ? 1 : 0);

// Step 1.
export function rollDigest(spec, roll) {
  const threshold = (t) => [t.text, t.inclusive];
  return hash({
    algorithm_version: spec.algorithm_version,
    vote_id: spec.vote_id,
    project_id: spec.project_id,
    district_code: spec.district_code,
    title: spec.title,
    open_time: spec.open_time,
    close_time: spec.close_time,
    rules: {
      quorum: threshold(spec.rules.quorum),
      special_majority: threshold(spec.rules.special_majority),
      ordinary_majority: threshold(spec.rules.ordinary_majority),
      non_voters_follow_majority: spec.rules.non_voters_follow_majority,
    },
    matters: spec.matters,
    roll: [...roll].sort(byPseudonym).map((r) => [r.pseudonym, r.area_cm2]),
  });
}

// Step 2: an entry's hash, its receipt.
export function entryHash(voteId, entry) {
  return hash({
    vote_id: voteId,
    sequence: entry.sequence,
    pseudonym: entry.pseudonym,
    area_cm2: entry.area_cm2,
    choices: entry.choices,
    cast_time: entry.cast_time,
    channel: entry.channel,
    paper_reference: entry.paper_reference,
    previous_hash: entry.previous_hash,
  });
}

// ---------------------------------------------------------------- steps 1 to 6

function rollProblem(roll) {
  const seen = new Set();
  for (const [n, owner] of roll.entries()) {
    if (owner.area_cm2 <= 0n) return `名册第 ${n + 1} 条（${owner.pseudonym}）没有面积`;
    if (seen.has(owner.pseudonym)) return `名册第 ${n + 1} 条：${owner.pseudonym} 出现两次`;
    seen.add(owner.pseudonym);
  }
  return roll.length === 0 ? "名册为空" : null;
}

async function logProblem(spec, roll, entries, digest) {
  const areas = new Map(roll.map((r) => [r.pseudonym, r.area_cm2]));
  const matterIds = new Set(spec.matters.map((m) => m.matter_id));
  let head = digest;
  let previousTime = spec.open_time;
  for (const [index, entry] of entries.entries()) {
    const n = BigInt(index + 1);
    const where = `第 ${n} 条`;
    if (entry.sequence !== n) return `${where}的序号是 ${entry.sequence}：有一条缺失或错位`;
    if (entry.previous_hash !== head) return `${where}没有链接到前一条（${entry.previous_hash}）`;
    if (await entryHash(spec.vote_id, entry) !== entry.entry_hash) {
      return `${where}的内容与其哈希 ${entry.entry_hash} 不符`;
    }
    const area = areas.get(entry.pseudonym);
    if (area === undefined) return `${where}：${entry.pseudonym} 不在名册上`;
    if (area !== entry.area_cm2) {
      return `${where}：${entry.pseudonym} 在名册上的面积是 ${area} cm²，不是 ${entry.area_cm2}`;
    }
    const ids = entry.choices.map(([matterId]) => matterId);
    if (ids.length !== matterIds.size || new Set(ids).size !== ids.length ||
        !ids.every((id) => matterIds.has(id))) {
      return `${where}没有对每一表决事项恰好作出一个选择`;
    }
    if (!(previousTime <= entry.cast_time && entry.cast_time < spec.close_time)) {
      return `${where}的投票时间早于前一条或在表决期之外`;
    }
    head = entry.entry_hash;
    previousTime = entry.cast_time;
  }
  return null;
}

// Step 4: each owner's entry with the highest sequence.
export function lastBallots(entries) {
  const last = new Map();
  for (const entry of entries) {
    const seen = last.get(entry.pseudonym);
    if (seen === undefined || entry.sequence > seen.sequence) last.set(entry.pseudonym, entry);
  }
  return last;
}

// meets(x, of, [p/q, inclusive]): x*q >= p*of if inclusive, else x*q > p*of.
export function meets(part, whole, t) {
  const left = part * t.q;
  const right = t.p * whole;
  return t.inclusive ? left >= right : left > right;
}

// Step 5.
export function count(spec, roll, entries) {
  const areas = new Map(roll.map((r) => [r.pseudonym, r.area_cm2]));
  const sums = new Map(spec.matters.map((m) => [m.matter_id,
    { YES: [0n, 0n], NO: [0n, 0n], ABSTAIN: [0n, 0n] }]));
  const last = lastBallots(entries);
  for (const [pseudonym, entry] of last) {
    const area = areas.get(pseudonym);
    for (const [matterId, choice] of entry.choices) {
      const side = sums.get(matterId)[choice];
      side[0] += 1n;
      side[1] += area;
    }
  }
  const rollOwners = BigInt(areas.size);
  const rollArea = [...areas.values()].reduce((a, b) => a + b, 0n);
  return {
    roll_area_cm2: rollArea,
    roll_owners: rollOwners,
    ballots: BigInt(entries.length),
    counted_ballots: BigInt(last.size),
    matters: spec.matters.map((m) => decide(m, sums.get(m.matter_id), rollOwners, rollArea,
      spec.rules)),
  };
}

function decide(matter, tally, rollOwners, rollArea, rules) {
  let [yesN, yesA] = tally.YES;
  let [noN, noA] = tally.NO;
  const [abstainN, abstainA] = tally.ABSTAIN;
  let deemed = null;
  let deemedN = 0n;
  let deemedA = 0n;
  if (rules.non_voters_follow_majority) {
    const absentN = rollOwners - (yesN + noN + abstainN);
    const absentA = rollArea - (yesA + noA + abstainA);
    if (yesN > noN && yesA > noA) {
      [deemed, deemedN, deemedA] = ["YES", absentN, absentA];
      yesN += absentN;
      yesA += absentA;
    } else if (noN > yesN && noA > yesA) {
      [deemed, deemedN, deemedA] = ["NO", absentN, absentA];
      noN += absentN;
      noA += absentA;
    }
  }
  const partN = yesN + noN + abstainN;
  const partA = yesA + noA + abstainA;
  const quorum = meets(partA, rollArea, rules.quorum) && meets(partN, rollOwners, rules.quorum);
  const majority = matter.matter_class === "SPECIAL" ? rules.special_majority
    : rules.ordinary_majority;
  return {
    matter_id: matter.matter_id,
    matter_class: matter.matter_class,
    participating_area_cm2: partA,
    participating_owners: partN,
    yes_area_cm2: yesA,
    yes_owners: yesN,
    no_area_cm2: noA,
    no_owners: noN,
    abstain_area_cm2: abstainA,
    abstain_owners: abstainN,
    quorum_reached: quorum,
    passed: quorum && partN > 0n && meets(yesA, partA, majority) && meets(yesN, partN, majority),
    deemed_choice: deemed,
    deemed_area_cm2: deemedA,
    deemed_owners: deemedN,
    majority,
  };
}

function firstDifference(recount, published) {
  for (const name of ["roll_area_cm2", "roll_owners", "ballots", "counted_ballots"]) {
    if (recount[name] !== published[name]) {
      return `公布结果的 ${name} 是 ${published[name]}，日志算得 ${recount[name]}`;
    }
  }
  if (recount.matters.length !== published.matters.length) {
    return `公布结果有 ${published.matters.length} 个事项，表决有 ${recount.matters.length} 个`;
  }
  for (const [n, mine] of recount.matters.entries()) {
    const theirs = published.matters[n];
    for (const name of RESULT_FIELDS) {
      if (mine[name] !== theirs[name]) {
        return `事项 ${mine.matter_id}：公布结果的 ${name} 是 ${theirs[name]}，日志算得 ${mine[name]}`;
      }
    }
  }
  return null;
}

// Whether a receipt is in the log, and whether it is its owner's last ballot.
export function checkReceipt(entries, receipt) {
  let found = null;
  let replacedBy = 0n;
  for (const entry of entries) {
    if (found === null && entry.entry_hash === receipt) found = entry;
    else if (found !== null && entry.pseudonym === found.pseudonym) replacedBy = entry.sequence;
  }
  if (found === null) return { inLog: false };
  return { inLog: true, lastBallot: replacedBy === 0n, sequence: found.sequence, replacedBy };
}

async function problemOf(spec, roll, entries, published, statedDigest, anchorDigest) {
  if (spec.algorithm_version !== ALGORITHM_VERSION) {
    return `本页不认识算法版本 ${spec.algorithm_version}`;
  }
  const rollIssue = rollProblem(roll);
  if (rollIssue) return rollIssue;
  const digest = await rollDigest(spec, roll);
  if (anchorDigest != null && digest !== anchorDigest) {
    return `表决参数和名册的摘要是 ${digest}，不是开始时公布的 ${anchorDigest}`;
  }
  if (digest !== statedDigest) return `表决参数和名册的摘要是 ${digest}，不是导出声明的 ${statedDigest}`;
  const logIssue = await logProblem(spec, roll, entries, digest);
  if (logIssue) return logIssue;
  return firstDifference(count(spec, roll, entries), published);
}

export async function verifyExport(text, { rollDigest: anchorDigest = null, receipt = null } = {}) {
  if (!globalThis.crypto?.subtle) {
    // Browsers offer SHA-256 only to pages of secure origins (HTTPS, or this machine).
    return { status: "UNAVAILABLE", reason: "此浏览器只在 HTTPS 连接下计算 SHA-256：请通过 HTTPS 打开本页再核对" };
  }
  let exported;
  try {
    exported = readExport(text);
  } catch (e) {
    if (e instanceof Unreadable) return { status: "UNREADABLE", reason: e.message };
    throw e;
  }
  const vote = exported.vote;
  if (vote.state !== "VOTE_STATE_CLOSED" || vote.result === null) {
    return { status: "REFUSED", reason: `表决尚未结束（${vote.state}）：没有可核对的结果` };
  }
  let spec;
  let entries;
  let published;
  try {
    spec = specOf(vote);
    entries = exported.entries.map(entryOf);
    published = resultOf(vote.result);
    let problem = await problemOf(spec, exported.roll, entries, published, vote.roll_digest,
      anchorDigest);
    if (!problem && (vote.roll_owners !== published.roll_owners ||
        vote.roll_area_cm2 !== published.roll_area_cm2)) {
      problem = `表决声明名册 ${vote.roll_owners} 人 ${vote.roll_area_cm2} cm²，结果为 ` +
        `${published.roll_owners} 人 ${published.roll_area_cm2} cm²`;
    }
    if (problem) return { status: "REFUSED", reason: problem };
  } catch (e) {
    if (e instanceof Malformed) return { status: "REFUSED", reason: `导出格式有误：${e.message}` };
    throw e;
  }
  const result = count(spec, exported.roll, entries);
  const outcome = { status: "VERIFIED", spec, result, entries, anchored: anchorDigest != null };
  if (receipt != null) {
    const status = checkReceipt(entries, receipt);
    outcome.receiptStatus = status;
    if (!status.inLog) return { ...outcome, status: "REFUSED", reason: `回执 ${receipt} 不在日志中` };
    if (!status.lastBallot) {
      return {
        ...outcome,
        status: "REFUSED",
        reason: `回执 ${receipt} 是第 ${status.sequence} 条，已被同一业主的第 ` +
          `${status.replacedBy} 条取代：不计入`,
      };
    }
  }
  return outcome;
}
