// Just enough gRPC-Web (binary, over fetch) and protobuf for a page to follow a server stream:
// length-prefixed frames (flag byte, 4-byte big-endian length), data frames carry a message,
// the trailer frame (flag 0x80) carries grpc-status and grpc-message.

export class GrpcError extends Error {
  constructor(code, message) {
    super(message || `gRPC status ${code}`);
    this.code = code;
  }
}

// ---------------------------------------------------------------- protobuf, the wire format

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function varint(value) {
  const bytes = [];
  let rest = value;
  while (rest > 0x7f) {
    bytes.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return bytes;
}

// A message of string fields only (repeated allowed): {fieldNumber: [strings]}.
export function encodeStrings(fields) {
  const bytes = [];
  for (const [number, values] of Object.entries(fields)) {
    for (const value of values) {
      const text = encoder.encode(value);
      bytes.push(...varint((Number(number) << 3) | 2), ...varint(text.length), ...text);
    }
  }
  return new Uint8Array(bytes);
}

// Decodes a message by its schema {fieldNumber: [name, kind, schema?]}; kinds: "string",
// "enum" (a number), "double", "message". Unknown fields are skipped, as protobuf does.
export function decode(bytes, schema) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const message = {};
  let at = 0;
  const readVarint = () => {
    let value = 0;
    let scale = 1;
    for (;;) {
      const byte = bytes[at++];
      if (byte === undefined) throw new Error("a varint runs past the message");
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
  };
  while (at < bytes.length) {
    const tag = readVarint();
    const number = Math.floor(tag / 8);
    const wire = tag & 7;
    let value;
    if (wire === 0) value = readVarint();
    else if (wire === 1) {
      value = view.getFloat64(at, true);
      at += 8;
    } else if (wire === 2) {
      const length = readVarint();
      value = bytes.subarray(at, at + length);
      at += length;
    } else if (wire === 5) {
      value = view.getFloat32(at, true);
      at += 4;
    } else throw new Error(`wire type ${wire} is not protobuf 3's`);
    const field = schema[number];
    if (!field) continue;
    const [name, kind, inner] = field;
    if (kind === "string") message[name] = decoder.decode(value);
    else if (kind === "message") message[name] = decode(value, inner);
    else message[name] = value;
  }
  return message;
}

export const TIMESTAMP = { 1: ["seconds", "enum"], 2: ["nanos", "enum"] };
export const millis = (t) => (t ? t.seconds * 1000 + Math.floor((t.nanos || 0) / 1e6) : null);

// ---------------------------------------------------------------- the stream

function frame(message) {
  const framed = new Uint8Array(5 + message.length);
  new DataView(framed.buffer).setUint32(1, message.length);
  framed.set(message, 5);
  return framed;
}

function trailers(bytes) {
  const found = {};
  for (const line of decoder.decode(bytes).split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) found[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return found;
}

function statusOf(found) {
  const code = Number(found["grpc-status"] ?? 2);
  let message = found["grpc-message"] || "";
  try {
    message = decodeURIComponent(message);
  } catch {
    // Kept as sent.
  }
  return code === 0 ? null : new GrpcError(code, message);
}

// Calls a server-streaming method; `onOpen()` once the server answered, `onMessage(bytes)` for
// each message. Resolves when the server ends the stream cleanly, rejects with a GrpcError
// otherwise.
export async function serverStream(path, request, { token, onOpen, onMessage, signal }) {
  const headers = { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(path, { method: "POST", headers, body: frame(request), signal });
  if (!response.ok) throw new GrpcError(14, `HTTP ${response.status}`);
  const early = statusOf(Object.fromEntries(response.headers));
  if (response.headers.has("grpc-status")) {
    if (early) throw early;
    return;
  }
  onOpen?.();
  const reader = response.body.getReader();
  let buffer = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const joined = new Uint8Array(buffer.length + value.length);
    joined.set(buffer);
    joined.set(value, buffer.length);
    buffer = joined;
    while (buffer.length >= 5) {
      const length = new DataView(buffer.buffer, buffer.byteOffset).getUint32(1);
      if (buffer.length < 5 + length) break;
      const flag = buffer[0];
      const body = buffer.slice(5, 5 + length);
      buffer = buffer.slice(5 + length);
      if (flag & 0x80) {
        const status = statusOf(trailers(body));
        if (status) throw status;
        return;
      }
      onMessage(body);
    }
  }
  throw new GrpcError(14, "the stream ended without its status");
}
