// The conversations of private chat (docs/PROTOCOL.md §3.3, §3.4), apart from any socket: per conversation
// the stored messages are handed over once and in `seq` order (buffered above a gap), a gap that does not
// fill by itself asks for a history range, syncs merge in, marks only move forward, and the automatic
// "delivered" receipts are decided here. What it needs from outside, and what it tells, goes through
// callbacks; the relay (relay.ts) wires them to the socket.
import type { ChatMessage, Conversation } from "./chattypes.js";
import { clearTimer, microtask, setTimer } from "./host.js";
import type { ReceiptKind, WireConversation, WireMessage } from "./relayframes.js";

export interface ConversationHooks {
  /** Your user id, once known (from the relay's hello). */
  user(): string | undefined;
  /** A stored message of yours that answers a send still waiting: true when the owner took it as the answer. */
  claim(message: WireMessage): boolean;
  /** Hands a message over, once, in order; true when someone took it (what an automatic delivered receipt may cover). */
  hand(message: ChatMessage): boolean;
  /** A conversation's `last` or marks changed (once per conversation per tick). */
  changed(conversation: Conversation): void;
  /** Automatic delivered receipts are due: the owner calls `takeDelivered` when it can send them. */
  deliveredDue(): void;
  /**
   * Asks for the history page below `before` of `limit` messages, to fill a gap; false when it cannot now
   * (then the next sync or a later gap check tries again). The answer goes to `gapFilled` or `gapFailed`.
   */
  fetchGap(peer: string, before: number, limit: number): boolean;
}

export interface ConversationOptions {
  /** Decide delivered receipts for what was handed over (RelayOptions.autoDelivered). */
  autoDelivered: boolean;
  /** How long a gap may wait for live messages before history fills it. */
  gapWaitMs: number;
  /** The largest history page the server gives (limits.maxHistoryLimit). */
  historyLimit(): number;
}

/** The marks of a conversation: they only move forward. */
export type Marks = Partial<Pick<Conversation, "last" | "delivered" | "read" | "peerDelivered" | "peerRead">>;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const markKeys = ["last", "delivered", "read", "peerDelivered", "peerRead"] as const;

/** One conversation's state: what the application sees (`Conversation`, kept mutable here), and more. */
interface Conv extends Mutable<Conversation> {
  /** Every message up to `have` was handed over (or predates this client: at or below the first sync's delivered mark). */
  have: number;
  /** Messages above have + 1, waiting for the gap below them to be filled. */
  buffer: Map<number, ChatMessage>;
  /** The highest `seq` handed to someone: what an automatic delivered receipt covers. */
  handed: number;
  /** The delivered mark already asked for. */
  deliveredAsked: number;
  /** The last sync said "more": another sync follows. */
  more: boolean;
  gapTimer: unknown;
  /** A history request fills the gap: `have` when it was asked, else undefined. */
  filling: number | undefined;
}

export class Conversations {
  readonly #hooks: ConversationHooks;
  readonly #options: ConversationOptions;
  readonly #convs = new Map<string, Conv>();
  #synced = false;
  #dirty = new Set<Conv>();

  constructor(hooks: ConversationHooks, options: ConversationOptions) {
    this.#hooks = hooks;
    this.#options = options;
  }

  /** A sync was answered once: conversations have their baselines. */
  get synced(): boolean {
    return this.#synced;
  }

  list(): Conversation[] {
    return [...this.#convs.values()].map(snapshot);
  }

  get(peer: string): Conversation | undefined {
    const c = this.#convs.get(peer);
    return c === undefined ? undefined : snapshot(c);
  }

  /**
   * What a sync asks for: per conversation, the last `seq` this client has; undefined before the first
   * sync, or when it would take more than `maxBytes` (without it the server starts at the delivered marks).
   */
  after(maxBytes: number): Record<string, number> | undefined {
    if (!this.#synced) return undefined;
    const after: Record<string, number> = {};
    let bytes = 0;
    for (const c of this.#convs.values()) {
      after[c.peer] = c.have;
      bytes += c.peer.length + 16;
    }
    return bytes > maxBytes ? undefined : after;
  }

  /** Takes a sync answer; true when another sync should follow (some said "more" and progress was made). */
  sync(convs: readonly WireConversation[]): boolean {
    let progress = false;
    for (const w of convs) {
      // A conversation seen for the first time starts after its delivered mark: what came before is history.
      const first = w.messages[0]?.seq;
      const c = this.#conv(w.peer, first === undefined ? w.delivered : Math.min(w.delivered, first - 1));
      const have = c.have;
      c.more = w.more;
      for (const m of w.messages) this.add(m);
      this.#marks(c, { last: w.last, delivered: w.delivered, read: w.read, peerDelivered: w.peerDelivered, peerRead: w.peerRead });
      if (w.more && c.have > have) progress = true;
    }
    this.#synced = true;
    // More than one answer holds: ask again from where each conversation now is (§3.4). Without progress,
    // history fills what is left.
    if (progress) return true;
    for (const c of this.#convs.values()) {
      c.more = false;
      this.#checkGap(c, 0);
    }
    return false;
  }

  /** Takes one stored message from anywhere (live, sync, history, a `sent` answer): hands it over once, in order. */
  add(m: WireMessage): void {
    const me = this.#hooks.user();
    if (m.from === me && m.cid !== "" && this.#hooks.claim(m)) return; // the answer adds it
    const message = toChat(m, me ?? "");
    // A conversation unknown after a sync began after it: everything in it is new.
    const c = this.#conv(message.peer, 0);
    if (m.seq > c.last) {
      c.last = m.seq;
      this.#touch(c);
    }
    if (m.seq <= c.have || c.buffer.has(m.seq)) return; // already handed over, or waiting
    c.buffer.set(m.seq, message);
    this.#drain(c);
  }

  /** A page of history the application asked for: its messages not handed over yet are handed over (once). */
  history(peer: string, last: number, messages: readonly WireMessage[]): void {
    const c = this.#convs.get(peer);
    if (c === undefined) return;
    this.#marks(c, { last });
    if (this.#synced) for (const m of messages) this.add(m);
  }

  /** The answer to a `fetchGap`. */
  gapFilled(peer: string, last: number, messages: readonly WireMessage[]): void {
    const c = this.#convs.get(peer);
    if (c === undefined) return;
    const have = c.filling ?? c.have;
    c.filling = undefined;
    this.#marks(c, { last });
    for (const m of messages) this.add(m);
    if (c.have > have) this.#checkGap(c, 0); // more to fill; without progress, the next sync tries again
  }

  /** A `fetchGap` failed: the next sync or gap check tries again. */
  gapFailed(peer: string): void {
    const c = this.#convs.get(peer);
    if (c !== undefined) c.filling = undefined;
  }

  /** A receipt from the server (§3.4): yours (`mine`, from another device) or the partner's. */
  receipt(peer: string, mine: boolean, kind: ReceiptKind, seq: number): void {
    const c = this.#synced ? this.#conv(peer, 0) : this.#convs.get(peer);
    if (c === undefined) return;
    const read = kind === "read";
    if (mine) this.#marks(c, read ? { read: seq, delivered: seq } : { delivered: seq });
    else this.#marks(c, read ? { peerRead: seq, peerDelivered: seq } : { peerDelivered: seq });
    this.#checkGap(c, this.#options.gapWaitMs); // a mark beyond what arrived: the messages are on their way, or lost
  }

  /** The server confirmed a receipt of yours. */
  ownMark(peer: string, kind: ReceiptKind, seq: number): void {
    const c = this.#convs.get(peer);
    if (c !== undefined) this.#marks(c, kind === "read" ? { read: seq, delivered: seq } : { delivered: seq });
  }

  /** The automatic delivered receipts to send now, each asked for once (until `deliveredFailed`). */
  takeDelivered(): { peer: string; seq: number }[] {
    if (!this.#options.autoDelivered) return [];
    const out: { peer: string; seq: number }[] = [];
    for (const c of this.#convs.values()) {
      if (c.handed <= Math.max(c.delivered, c.deliveredAsked)) continue;
      c.deliveredAsked = c.handed;
      out.push({ peer: c.peer, seq: c.handed });
    }
    return out;
  }

  /** A delivered receipt from `takeDelivered` was not stored: it is due again later. */
  deliveredFailed(peer: string, seq: number): void {
    const c = this.#convs.get(peer);
    if (c !== undefined && c.deliveredAsked === seq) c.deliveredAsked = c.delivered;
  }

  /** The connection was lost: pending gap checks and fills are dropped (the next login's sync starts from `have`). */
  disconnected(): void {
    for (const c of this.#convs.values()) {
      clearTimer(c.gapTimer);
      c.gapTimer = undefined;
      c.filling = undefined;
    }
  }

  /** Stops every timer, for good. */
  close(): void {
    for (const c of this.#convs.values()) clearTimer(c.gapTimer);
  }

  #conv(peer: string, have: number): Conv {
    let c = this.#convs.get(peer);
    if (c === undefined) {
      c = {
        peer,
        last: have,
        delivered: 0,
        read: 0,
        peerDelivered: 0,
        peerRead: 0,
        have,
        buffer: new Map(),
        handed: have,
        deliveredAsked: 0,
        more: false,
        gapTimer: undefined,
        filling: undefined,
      };
      this.#convs.set(peer, c);
      this.#touch(c);
    }
    return c;
  }

  #drain(c: Conv): void {
    for (;;) {
      const m = c.buffer.get(c.have + 1);
      if (m === undefined) break;
      c.buffer.delete(m.seq);
      c.have = m.seq;
      if (this.#hooks.hand(m)) c.handed = m.seq;
    }
    if (this.#options.autoDelivered && c.handed > Math.max(c.delivered, c.deliveredAsked)) this.#hooks.deliveredDue();
    this.#checkGap(c, this.#options.gapWaitMs);
  }

  /** A gap (a message above one missing, or `last` beyond what was handed over) is filled from history. */
  #checkGap(c: Conv, delayMs: number): void {
    if (!this.#synced || c.more || c.filling !== undefined || c.gapTimer !== undefined) return;
    if (c.buffer.size === 0 && c.have >= c.last) return;
    c.gapTimer = setTimer(() => {
      c.gapTimer = undefined;
      this.#fillGap(c);
    }, delayMs);
  }

  #fillGap(c: Conv): void {
    if (c.filling !== undefined || c.more) return;
    const low = c.have + 1;
    const upper = c.buffer.size > 0 ? Math.min(...c.buffer.keys()) : c.last + 1;
    if (upper <= low) return;
    const before = Math.min(upper, low + this.#options.historyLimit());
    const have = c.have;
    if (this.#hooks.fetchGap(c.peer, before, before - low)) c.filling = have;
  }

  /** Raises marks (they only move forward). */
  #marks(c: Conv, m: Marks): void {
    let changed = false;
    for (const key of markKeys) {
      const v = m[key];
      if (v !== undefined && v > c[key]) {
        c[key] = v;
        changed = true;
      }
    }
    if (changed) this.#touch(c);
  }

  /** Tells `changed` of `c` once, after the current frame. */
  #touch(c: Conv): void {
    if (this.#dirty.size === 0) {
      microtask(() => {
        const dirty = [...this.#dirty];
        this.#dirty.clear();
        for (const d of dirty) this.#hooks.changed(snapshot(d));
      });
    }
    this.#dirty.add(c);
  }
}

/** A stored message as the application sees it; `me` is your user id. */
export function toChat(m: WireMessage, me: string): ChatMessage {
  const mine = m.from === me;
  return { peer: mine ? m.to : m.from, seq: m.seq, from: m.from, to: m.to, id: m.cid, ts: m.ts, body: m.body, mine };
}

function snapshot(c: Conv): Conversation {
  return { peer: c.peer, last: c.last, delivered: c.delivered, read: c.read, peerDelivered: c.peerDelivered, peerRead: c.peerRead };
}
