// Frames of the private-chat WebSocket /relay (docs/PROTOCOL.md §3.2, §3.8): parsing what the server sends,
// building what the client sends. Nothing here keeps state.
import { Fields, frameRoot, isObject, splitMessage, type JsonObject } from "./frames.js";

/** Per-connection limits announced in the relay's `hello` (§3.1, §3.9). */
export interface RelayLimits {
  duplicateWindowMs: number;
  framesPerSecond: number;
  friendsOnly: boolean;
  historyLimit: number;
  maxFrameBytes: number;
  maxHistoryLimit: number;
  maxMessageBytes: number;
  messagesPerSecond: number;
  presenceGraceMs: number;
  syncMaxMessages: number;
}

/** The defaults of §3.9, used for a limit a server leaves out. */
export const defaultRelayLimits: Readonly<RelayLimits> = {
  duplicateWindowMs: 600_000,
  framesPerSecond: 50,
  friendsOnly: false,
  historyLimit: 50,
  maxFrameBytes: 65_536,
  maxHistoryLimit: 200,
  maxMessageBytes: 16_384,
  messagesPerSecond: 20,
  presenceGraceMs: 5_000,
  syncMaxMessages: 500,
};

export type PresenceStatus = "online" | "away" | "offline";
export type ReceiptKind = "delivered" | "read";
export type FriendAction = "request" | "accept" | "remove" | "block" | "unblock";

/** A stored message as the server writes it in `message`, `sync` and `history` frames (§3.3). */
export interface WireMessage {
  seq: number;
  from: string;
  to: string;
  cid: string;
  ts: number;
  body: unknown;
}

export interface RelayHelloFrame {
  op: "hello";
  session: string;
  user: string;
  device: string;
  limits: RelayLimits;
}

export interface SentFrame {
  op: "sent";
  id: string;
  to: string;
  seq: number;
  ts: number;
  duplicate: boolean;
}

export interface OkFrame {
  op: "ok";
  id: string | undefined;
}

export interface WireConversation {
  peer: string;
  last: number;
  delivered: number;
  read: number;
  peerDelivered: number;
  peerRead: number;
  messages: WireMessage[];
  more: boolean;
}

export interface ChatSyncFrame {
  op: "sync";
  id: string | undefined;
  convs: WireConversation[];
}

export interface HistoryFrame {
  op: "history";
  id: string | undefined;
  peer: string | undefined;
  last: number;
  messages: WireMessage[];
  more: boolean;
}

export interface PresenceItem {
  user: string;
  status: PresenceStatus;
  rev: number;
}

export interface FriendLists {
  friends: string[];
  incoming: string[];
  outgoing: string[];
  blocked: string[];
}

export interface FriendsFrame {
  op: "friends";
  id: string | undefined;
  hash: string;
  /** Absent when `notModified`. */
  lists: FriendLists | undefined;
  notModified: boolean;
  presence: PresenceItem[];
}

export interface ChatMessageFrame extends WireMessage {
  op: "message";
}

export interface ReceiptFrame {
  op: "receipt";
  peer: string;
  by: string;
  kind: ReceiptKind;
  seq: number;
}

export interface PresenceFrame extends PresenceItem {
  op: "presence";
}

export interface SignalFrame {
  op: "signal";
  from: string;
  device: string | undefined;
  data: unknown;
}

export interface ResyncFrame {
  op: "resync";
}

export interface RelayErrorFrame {
  op: "error";
  code: string;
  message: string;
  id: string | undefined;
}

export interface RelayPongFrame {
  op: "pong";
  id: string | undefined;
}

export type RelayFrame =
  | RelayHelloFrame
  | SentFrame
  | OkFrame
  | ChatSyncFrame
  | HistoryFrame
  | FriendsFrame
  | ChatMessageFrame
  | ReceiptFrame
  | PresenceFrame
  | SignalFrame
  | ResyncFrame
  | RelayErrorFrame
  | RelayPongFrame;

/** Splits one WebSocket message into frames and parses each; unknown ops are skipped, malformed frames throw. */
export function parseRelayMessage(message: string): RelayFrame[] {
  return splitMessage(message, (piece) => (piece === "\r" ? undefined : parseRelayFrame(piece)));
}

/** Parses one relay frame; undefined for an op this SDK does not know (or `close`, which is TCP only). */
export function parseRelayFrame(text: string): RelayFrame | undefined {
  const { op, root } = frameRoot(text);
  const f = new RelayFields(op, root);
  switch (op) {
    case "hello":
      return { op, session: f.str("session"), user: f.str("user"), device: f.optStr("device") ?? "", limits: f.limits() };
    case "sent":
      return { op, id: f.str("id"), to: f.str("to"), seq: f.seq("seq"), ts: f.number("ts"), duplicate: f.bool("duplicate") };
    case "ok":
      return { op, id: f.optStr("id") };
    case "sync":
      return { op, id: f.optStr("id"), convs: f.objects("convs").map((c) => f.conversation(c)) };
    case "history":
      return { op, id: f.optStr("id"), peer: f.optStr("peer"), last: f.seq("last"), messages: f.messages(f.o), more: f.bool("more") };
    case "friends": {
      const notModified = f.bool("not_modified");
      const presence = f.o["presence"] === undefined ? [] : f.objects("presence").map((p) => f.presenceItem(p));
      const lists = notModified
        ? undefined
        : { friends: f.strings("friends"), incoming: f.strings("incoming"), outgoing: f.strings("outgoing"), blocked: f.strings("blocked") };
      return { op, id: f.optStr("id"), hash: f.str("hash"), lists, notModified, presence };
    }
    case "message":
      return { op, ...f.message(f.o) };
    case "receipt": {
      const kind = f.str("kind");
      if (kind !== "delivered" && kind !== "read") return f.fail("kind", `"delivered" or "read"`);
      return { op, peer: f.str("peer"), by: f.str("by"), kind, seq: f.seq("seq") };
    }
    case "presence":
      return { op, ...f.presenceItem(f.o) };
    case "signal":
      return { op, from: f.str("from"), device: f.optStr("device"), data: f.o["data"] };
    case "resync":
      return { op };
    case "error":
      return { op, code: f.str("code"), message: f.optStr("message") ?? "", id: f.optStr("id") };
    case "pong":
      return { op, id: f.optStr("id") };
    default:
      return undefined;
  }
}

class RelayFields extends Fields {
  /** A whole number ≥ 0 (sequences, marks); absent is 0 where `optional`. */
  seq(field: string, o: JsonObject = this.o, optional = false): number {
    const v = o[field];
    if (v === undefined && optional) return 0;
    return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : this.fail(field, "a whole number");
  }

  objects(field: string): JsonObject[] {
    const v = this.o[field];
    if (v === undefined) return [];
    if (!Array.isArray(v) || !v.every(isObject)) return this.fail(field, "an array of objects");
    return v;
  }

  strings(field: string): string[] {
    const v = this.o[field];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) return this.fail(field, "an array of strings");
    return [...(v as string[])];
  }

  message(o: JsonObject): WireMessage {
    const str = (field: string): string => {
      const v = o[field];
      return typeof v === "string" ? v : this.fail(field, "a string");
    };
    const cid = o["cid"];
    return {
      seq: this.seq("seq", o),
      from: str("from"),
      to: str("to"),
      cid: typeof cid === "string" ? cid : "",
      ts: this.number("ts", o),
      body: o["body"],
    };
  }

  messages(o: JsonObject): WireMessage[] {
    const v = o["messages"];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || !v.every(isObject)) return this.fail("messages", "an array of objects");
    return v.map((m) => this.message(m));
  }

  conversation(c: JsonObject): WireConversation {
    const peer = c["peer"];
    if (typeof peer !== "string") return this.fail("convs.peer", "a string");
    return {
      peer,
      last: this.seq("last", c, true),
      delivered: this.seq("delivered", c, true),
      read: this.seq("read", c, true),
      peerDelivered: this.seq("peer_delivered", c, true),
      peerRead: this.seq("peer_read", c, true),
      messages: this.messages(c),
      more: c["more"] === true,
    };
  }

  presenceItem(p: JsonObject): PresenceItem {
    const user = p["user"];
    const status = p["status"];
    if (typeof user !== "string") return this.fail("user", "a string");
    if (status !== "online" && status !== "away" && status !== "offline") return this.fail("status", `"online", "away" or "offline"`);
    return { user, status, rev: this.seq("rev", p, true) };
  }

  limits(): RelayLimits {
    const l = this.o["limits"];
    if (!isObject(l)) return this.fail("limits", "an object");
    const n = (field: string, def: number): number => {
      const v = l[field];
      if (v === undefined) return def;
      return typeof v === "number" && Number.isFinite(v) ? v : this.fail(`limits.${field}`, "a number");
    };
    const d = defaultRelayLimits;
    return {
      duplicateWindowMs: n("duplicate_window_ms", d.duplicateWindowMs),
      framesPerSecond: n("frames_per_second", d.framesPerSecond),
      friendsOnly: l["friends_only"] === true,
      historyLimit: n("history_limit", d.historyLimit),
      maxFrameBytes: n("max_frame_bytes", d.maxFrameBytes),
      maxHistoryLimit: n("max_history_limit", d.maxHistoryLimit),
      maxMessageBytes: n("max_message_bytes", d.maxMessageBytes),
      messagesPerSecond: n("messages_per_second", d.messagesPerSecond),
      presenceGraceMs: n("presence_grace_ms", d.presenceGraceMs),
      syncMaxMessages: n("sync_max_messages", d.syncMaxMessages),
    };
  }
}

// Client frames (§3.2). JSON.stringify never writes a raw newline, so a frame is never split in two.

const q = JSON.stringify;

/** A `send`; `body` is the JSON text of the body. */
export function chatSendFrame(id: string, to: string, body: string): string {
  return `{"op":"send","id":${q(id)},"to":${q(to)},"body":${body}}`;
}

export function receiptFrame(id: string, peer: string, kind: ReceiptKind, seq: number): string {
  return `{"op":"receipt","id":${q(id)},"peer":${q(peer)},"kind":"${kind}","seq":${seq}}`;
}

/** A `sync`; `after` gives, per peer, the last sequence the client already has. */
export function chatSyncFrame(id: string, after?: Readonly<Record<string, number>>, limit?: number): string {
  let s = `{"op":"sync","id":${q(id)}`;
  if (after !== undefined && Object.keys(after).length > 0) s += `,"after":${q(after)}`;
  if (limit !== undefined) s += `,"limit":${limit}`;
  return s + "}";
}

export function historyFrame(id: string, peer: string, before?: number, limit?: number): string {
  let s = `{"op":"history","id":${q(id)},"peer":${q(peer)}`;
  if (before !== undefined) s += `,"before":${before}`;
  if (limit !== undefined) s += `,"limit":${limit}`;
  return s + "}";
}

export function friendsFrame(id: string, hash?: string): string {
  return hash === undefined ? `{"op":"friends","id":${q(id)}}` : `{"op":"friends","id":${q(id)},"hash":${q(hash)}}`;
}

export function friendFrame(id: string, action: FriendAction, user: string): string {
  return `{"op":"friend","id":${q(id)},"action":"${action}","user":${q(user)}}`;
}

export function presenceFrame(id: string, status: "online" | "away"): string {
  return `{"op":"presence","id":${q(id)},"status":"${status}"}`;
}

/** A `signal`; `data` is the JSON text of the data. */
export function signalFrame(id: string, to: string, data: string, device?: string): string {
  const d = device === undefined ? "" : `,"device":${q(device)}`;
  return `{"op":"signal","id":${q(id)},"to":${q(to)}${d},"data":${data}}`;
}
