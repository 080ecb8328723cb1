// Frames of the /so WebSocket (docs/PROTOCOL.md §1.3, §1.4): parsing what the server sends, building what
// the client sends. Nothing here keeps state.
import { SyncCode } from "./codes.js";
import { ProtocolError } from "./errors.js";

/** Per-connection limits announced in `hello` (§1.1). */
export interface Limits {
  maxFrameBytes: number;
  maxValueBytes: number;
  maxSlots: number;
  maxObjectBytes: number;
  maxChanges: number;
  maxSubscriptions: number;
  maxNameBytes: number;
  framesPerSecond: number;
  resyncWindow: number;
}

/** One entry of a sync frame (§1.4). A property that the server left out is absent, not undefined. */
export type SyncChange =
  /** Every slot was dropped; the entries that follow are the full state. */
  | { code: "clear" }
  /** Slot `name` now holds `value`; `oldValue` is absent when the slot did not exist. */
  | { code: "change"; name: string; value: unknown; oldValue?: unknown }
  /** Slot `name` was deleted. */
  | { code: "delete"; name: string; oldValue?: unknown }
  /** Your change to `name` was committed. */
  | { code: "success"; name: string }
  /**
   * Your change to `name` was refused; `value` is the slot's current value (absent: no such slot). `reason`
   * is "conflict", a validation hook's text, or (for a batch the server refused with an error frame, which
   * the SDK reports as rejects too) the error code.
   */
  | { code: "reject"; name: string; value?: unknown; reason?: string };

export interface HelloFrame {
  op: "hello";
  session: string;
  user: string;
  limits: Limits;
}

export interface SyncFrame {
  op: "sync";
  obj: string;
  persistent: boolean;
  epoch: string;
  version: number;
  id: string | undefined;
  changes: SyncChange[];
}

export interface MessageFrame {
  op: "message";
  obj: string;
  persistent: boolean;
  handler: string;
  args: unknown[];
  from: string;
  id: string | undefined;
}

export interface ErrorFrame {
  op: "error";
  code: string;
  message: string;
  id: string | undefined;
  obj: string | undefined;
  persistent: boolean;
}

export interface PongFrame {
  op: "pong";
  id: string | undefined;
}

export type ServerFrame = HelloFrame | SyncFrame | MessageFrame | ErrorFrame | PongFrame;

export type JsonObject = { readonly [key: string]: unknown };

export const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Splits one WebSocket message into frames (§1.1: frames are separated by "\n", empty pieces are ignored)
 * and parses each. Frames with an op this SDK does not know are skipped (forward compatibility). A
 * malformed frame throws a ProtocolError.
 */
export function parseMessage(message: string): ServerFrame[] {
  return splitMessage(message, parseFrame);
}

/** Splits a message on "\n" and parses each non-empty piece; pieces parsed as undefined are skipped. */
export function splitMessage<F>(message: string, parse: (piece: string) => F | undefined): F[] {
  const frames: F[] = [];
  for (const piece of message.split("\n")) {
    if (piece === "") continue;
    const frame = parse(piece);
    if (frame !== undefined) frames.push(frame);
  }
  return frames;
}

/** Reads one frame's JSON object and its op; anything else is a ProtocolError. */
export function frameRoot(text: string): { op: string; root: JsonObject } {
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError(`server sent a frame that is not JSON: ${text.slice(0, 200)}`, { cause: err });
  }
  if (!isObject(root)) throw new ProtocolError(`server sent a frame that is not a JSON object: ${text.slice(0, 200)}`);
  const op = root["op"];
  if (typeof op !== "string") throw new ProtocolError(`server sent a frame without "op": ${text.slice(0, 200)}`);
  return { op, root };
}

/** Parses one frame; undefined for an unknown op. */
export function parseFrame(text: string): ServerFrame | undefined {
  const { op, root } = frameRoot(text);
  const f = new Fields(op, root);
  switch (op) {
    case "hello":
      return { op, session: f.str("session"), user: f.str("user"), limits: parseLimits(f) };
    case "sync":
      return {
        op,
        obj: f.str("obj"),
        persistent: f.bool("persistent"),
        epoch: f.str("epoch"),
        version: f.version(),
        id: f.optStr("id"),
        changes: f.entries(),
      };
    case "message":
      return {
        op,
        obj: f.str("obj"),
        persistent: f.bool("persistent"),
        handler: f.str("handler"),
        args: f.array("args"),
        from: f.str("from"),
        id: f.optStr("id"),
      };
    case "error":
      return {
        op,
        code: f.str("code"),
        message: f.str("message"),
        id: f.optStr("id"),
        obj: f.optStr("obj"),
        persistent: f.bool("persistent"),
      };
    case "pong":
      return { op, id: f.optStr("id") };
    default:
      return undefined;
  }
}

/** Reads the fields of one frame, throwing a ProtocolError that names the first bad one. */
export class Fields {
  constructor(
    readonly op: string,
    readonly o: JsonObject,
  ) {}

  fail(field: string, want: string): never {
    throw new ProtocolError(`server sent a ${this.op} frame whose field "${field}" is not ${want}`);
  }

  str(field: string): string {
    const v = this.o[field];
    return typeof v === "string" ? v : this.fail(field, "a string");
  }

  optStr(field: string): string | undefined {
    const v = this.o[field];
    return v === undefined || typeof v === "string" ? v : this.fail(field, "a string");
  }

  /** Absent means false (§1.2: `persistent` false or absent). */
  bool(field: string): boolean {
    const v = this.o[field];
    return v === undefined || typeof v === "boolean" ? v === true : this.fail(field, "true or false");
  }

  number(field: string, o: JsonObject = this.o): number {
    const v = o[field];
    return typeof v === "number" && Number.isFinite(v) ? v : this.fail(field, "a number");
  }

  version(): number {
    const v = this.o["version"];
    return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : this.fail("version", "an integer in [0, 2^53)");
  }

  array(field: string): unknown[] {
    const v = this.o[field];
    return Array.isArray(v) ? v : this.fail(field, "an array");
  }

  entries(): SyncChange[] {
    const out: SyncChange[] = [];
    for (const e of this.array("changes")) {
      if (!isObject(e)) this.fail("changes", "an array of objects");
      const entry = this.entry(e);
      if (entry !== undefined) out.push(entry);
    }
    return out;
  }

  entry(e: JsonObject): SyncChange | undefined {
    const code = e["code"];
    if (typeof code !== "string") return this.fail("changes.code", "a string");
    if (code === SyncCode.Clear) return { code };
    const name = e["name"];
    const known = code === SyncCode.Change || code === SyncCode.Delete || code === SyncCode.Success || code === SyncCode.Reject;
    if (!known) return undefined; // an entry code this SDK does not know (forward compatibility)
    if (typeof name !== "string") return this.fail("changes.name", "a string");
    switch (code) {
      case SyncCode.Change: {
        if (!("value" in e)) return this.fail("changes.value", "present in a change");
        const c: SyncChange = { code, name, value: e["value"] };
        if ("oldValue" in e) c.oldValue = e["oldValue"];
        return c;
      }
      case SyncCode.Delete: {
        const c: SyncChange = { code, name };
        if ("oldValue" in e) c.oldValue = e["oldValue"];
        return c;
      }
      case SyncCode.Success:
        return { code, name };
      case SyncCode.Reject: {
        const c: SyncChange = { code, name };
        if ("value" in e) c.value = e["value"];
        const reason = e["reason"];
        if (reason !== undefined) c.reason = typeof reason === "string" ? reason : this.fail("changes.reason", "a string");
        return c;
      }
    }
  }
}

function parseLimits(f: Fields): Limits {
  const l = f.o["limits"];
  if (!isObject(l)) return f.fail("limits", "an object");
  const n = (field: string): number => f.number(field, l);
  return {
    maxFrameBytes: n("max_frame_bytes"),
    maxValueBytes: n("max_value_bytes"),
    maxSlots: n("max_slots"),
    maxObjectBytes: n("max_object_bytes"),
    maxChanges: n("max_changes"),
    maxSubscriptions: n("max_subscriptions"),
    maxNameBytes: n("max_name_bytes"),
    framesPerSecond: n("frames_per_second"),
    resyncWindow: n("resync_window"),
  };
}

// Client frames. JSON.stringify never writes a raw newline, so a frame can never be split in two (§1.1).

const head = (op: string, obj: string, persistent: boolean): string =>
  `{"op":"${op}","obj":${JSON.stringify(obj)},"persistent":${persistent}`;

/** A `sub`; version and epoch are sent once a sync was applied, for a delta (§1.5). */
export function subFrame(id: string, obj: string, persistent: boolean, version: number, epoch: string): string {
  let s = `${head("sub", obj, persistent)},"id":${JSON.stringify(id)}`;
  if (version > 0 || epoch !== "") s += `,"version":${version}`;
  if (epoch !== "") s += `,"epoch":${JSON.stringify(epoch)}`;
  return s + "}";
}

export function unsubFrame(obj: string, persistent: boolean): string {
  return head("unsub", obj, persistent) + "}";
}

/** One change of an update: `value` is the JSON text to store, or undefined to delete the slot. */
export function updateItem(name: string, base: number, value: string | undefined): string {
  const item = `{"name":${JSON.stringify(name)},"base":${base}`;
  return value === undefined ? `${item},"delete":true}` : `${item},"value":${value}}`;
}

/** An `update` of the items made by updateItem. */
export function updateFrame(id: string, obj: string, persistent: boolean, items: readonly string[], epoch = ""): string {
  const ep = epoch === "" ? "" : `,"epoch":${JSON.stringify(epoch)}`;
  return `${head("update", obj, persistent)},"id":${JSON.stringify(id)}${ep},"changes":[${items.join(",")}]}`;
}

/** A `send`; `args` is the JSON text of the argument array. */
export function sendFrame(id: string, obj: string, persistent: boolean, handler: string, args: string): string {
  return `${head("send", obj, persistent)},"id":${JSON.stringify(id)},"handler":${JSON.stringify(handler)},"args":${args}}`;
}

export function pingFrame(id: string): string {
  return `{"op":"ping","id":${JSON.stringify(id)}}`;
}
