// Private chat over the /relay WebSocket (docs/PROTOCOL.md §3): messages with offline delivery and gap
// filling, receipts, conversations, presence and the friend list. The socket is the reconnecting
// Connection of connection.ts, opened on first use; after every hello the login sequence of §3.1 runs.
import { ClientErrorCode, retryableChatErrorCodes } from "./codes.js";
import { Connection, type BackoffOptions, type Credentials, type Status, type Timing } from "./connection.js";
import { EventSource, type Listener, type Unsubscribe } from "./emitter.js";
import { ConnectionError, ProtocolError, RsoError, ServerError } from "./errors.js";
import { clearTimer, microtask, randomString, setTimer, type WebSocketConstructor } from "./host.js";
import {
  chatSendFrame,
  chatSyncFrame,
  friendFrame,
  friendsFrame,
  historyFrame,
  parseRelayMessage,
  presenceFrame,
  receiptFrame,
  signalFrame,
  type ChatSyncFrame,
  type FriendAction,
  type FriendsFrame,
  type PresenceStatus,
  type ReceiptFrame,
  type ReceiptKind,
  type RelayFrame,
  type RelayHelloFrame,
  type RelayLimits,
  type WireMessage,
} from "./relayframes.js";

export type { FriendAction, PresenceStatus, ReceiptKind, RelayLimits };

/** The answer to `chat.send`: the message is stored as `seq` of the conversation with `to`. */
export interface SentMessage {
  /** The message id (the `cid` others see). */
  id: string;
  to: string;
  seq: number;
  /** Server time of storage, ms since the epoch. */
  ts: number;
}

/** A stored message (§3.3). */
export interface ChatMessage {
  /** The conversation partner: `from` or `to`, whichever is not you. */
  peer: string;
  /** Its number in the conversation: 1, 2, 3, … without gaps. */
  seq: number;
  from: string;
  to: string;
  /** The sender's message id (`cid` on the wire). */
  id: string;
  /** Server time of storage, ms since the epoch. */
  ts: number;
  body: unknown;
  /** You wrote it (on this device or another one). */
  mine: boolean;
}

/** A receipt (§3.4): `by` has got (`delivered`) or seen (`read`) every message up to `seq` with `peer`. */
export interface Receipt {
  /** The conversation partner. */
  peer: string;
  /** Who moved the mark: the partner, or you (on another device). */
  by: string;
  kind: ReceiptKind;
  seq: number;
}

/** What is known of a conversation, from sync, messages and receipts. */
export interface Conversation {
  peer: string;
  /** The last `seq` known. */
  last: number;
  /** Your marks. */
  delivered: number;
  read: number;
  /** The partner's marks (✓✓ on your messages). */
  peerDelivered: number;
  peerRead: number;
}

export interface HistoryPage {
  /** Oldest first. */
  messages: ChatMessage[];
  /** Older messages exist (next page: `before` = the first `seq` returned). */
  more: boolean;
  /** The conversation's last `seq`. */
  last: number;
}

export interface FriendList {
  friends: string[];
  /** They asked you. */
  incoming: string[];
  /** You asked them. */
  outgoing: string[];
  blocked: string[];
  /** Opaque; presented to the server so that an unchanged list is not sent again. */
  hash: string;
}

/** A WebRTC signal from another user's device (§3.7). */
export interface Signal {
  from: string;
  /** The sender's device: answer to it. */
  device: string | undefined;
  data: unknown;
}

export interface ChatEvents {
  /** Every stored message once per conversation, in `seq` order (yours from this client too, once stored). */
  message: [message: ChatMessage];
  /** A mark moved: the partner's, or yours on another device. */
  receipt: [receipt: Receipt];
  /** A conversation's `last` or marks changed. */
  conversation: [conversation: Conversation];
  /** Status of the /relay socket. */
  status: [status: Status, reason: ConnectionError | undefined];
  /** Why the relay socket stopped, protocol errors, and refusals of frames that no request waits for. */
  error: [error: RsoError];
  signal: [signal: Signal];
}

export interface PresenceEvents {
  /** A friend's status changed. */
  change: [user: string, status: PresenceStatus];
}

export interface FriendsEvents {
  /** A new friend list: pushed by the server, or the answer to an action. */
  change: [list: FriendList];
}

export interface Chat {
  /** Status of the /relay socket. */
  readonly status: Status;
  /** The server (one of the client's `urls`) the /relay socket is connected to, or trying; the first one before it was opened. */
  readonly url: string;
  /** Your user id and device, from the relay's hello. */
  readonly user: string | undefined;
  readonly device: string | undefined;
  readonly limits: RelayLimits | undefined;
  /**
   * Sends a message; resolves once it is stored. Queued while disconnected, re-sent with the same id
   * after a reconnect unless the login sync shows it stored, and retried after `rate_limited`, `busy`,
   * `unavailable`. Rejects with a `ServerError` (`unknown_user`, `blocked`, `not_friends`,
   * `message_too_large`, `bad_frame`, `id_reused`) or the error that stopped the client.
   */
  send(to: string, body: unknown): Promise<SentMessage>;
  /** A page of the conversation below `before` (default: the newest), oldest first. */
  history(peer: string, options?: { before?: number; limit?: number }): Promise<HistoryPage>;
  markDelivered(peer: string, seq: number): Promise<void>;
  markRead(peer: string, seq: number): Promise<void>;
  conversations(): Conversation[];
  conversation(peer: string): Conversation | undefined;
  /** A WebRTC signal to `to` (only to `device`, when given); refused with `offline` when they are not connected. */
  signal(to: string, data: unknown, options?: { device?: string }): Promise<void>;
  /** Opens the relay socket (any other use does too), or starts it again after it stopped. */
  connect(): void;
  on<K extends keyof ChatEvents>(event: K, listener: Listener<ChatEvents[K]>): Unsubscribe;
}

export interface Presence {
  /** A user's last known status (your own for your id); "offline" when nothing is known. */
  status(user: string): PresenceStatus;
  /** Every friend's status (every user seen, before the friend list arrived). */
  all(): Record<string, PresenceStatus>;
  /** Shows you "away" (or back "online") to your friends; re-applied after every reconnect. */
  setAway(away: boolean): Promise<void>;
  on<K extends keyof PresenceEvents>(event: K, listener: Listener<PresenceEvents[K]>): Unsubscribe;
}

export interface Friends {
  /** The last list received, if any. */
  readonly current: FriendList | undefined;
  /** Asks for the list, presenting the cached hash (an unchanged list is not sent again). */
  list(): Promise<FriendList>;
  request(user: string): Promise<FriendList>;
  accept(user: string): Promise<FriendList>;
  remove(user: string): Promise<FriendList>;
  block(user: string): Promise<FriendList>;
  unblock(user: string): Promise<FriendList>;
  on<K extends keyof FriendsEvents>(event: K, listener: Listener<FriendsEvents[K]>): Unsubscribe;
}

export interface RelayOptions {
  /**
   * Send `delivered` receipts by itself for the messages handed to `chat.on("message")` listeners
   * (default true). `read` receipts only go out through `markRead`.
   */
  autoDelivered?: boolean;
  /** How long a gap in a conversation may wait for its messages to arrive live before `history` fills it (default 250 ms). */
  gapWaitMs?: number;
}

export interface RelayConfig {
  /** The servers, tried in turn (ConnectionConfig.urls). */
  urls: readonly string[];
  WebSocket: WebSocketConstructor | undefined;
  credentials: Credentials;
  backoff: Readonly<BackoffOptions>;
  timing: Readonly<Timing>;
  random: () => number;
  socketURL(url: string): string;
  nextId(): string;
  options: RelayOptions;
}

/** A request waiting for its answer. */
interface Req {
  id: string;
  frame: string;
  /** Kept across reconnects and sent again after the login sequence; else it fails when the connection ends. */
  durable: boolean;
  /** The connection generation it was written on (-1: not in flight). */
  gen: number;
  attempt: number;
  timer: unknown;
  /** For a chat send: the recipient (its stored copy, seen in sync or history, also answers it). */
  to: string | undefined;
  answer(frame: RelayFrame): void;
  fail(error: RsoError): void;
}

/** One conversation's state. */
interface Conv {
  peer: string;
  last: number;
  delivered: number;
  read: number;
  peerDelivered: number;
  peerRead: number;
  /** Every message up to `have` was handed over (or predates this client: at or below the first sync's delivered mark). */
  have: number;
  /** Messages above have + 1, waiting for the gap below them to be filled. */
  buffer: Map<number, ChatMessage>;
  /** The highest `seq` handed to a message listener: what an automatic delivered receipt covers. */
  handed: number;
  /** The delivered mark already asked for. */
  deliveredAsked: number;
  /** The last sync said "more": another sync follows. */
  more: boolean;
  gapTimer: unknown;
  filling: boolean;
}

const answerError = (want: string, got: RelayFrame): ProtocolError =>
  new ProtocolError(`server answered a request with "${got.op}", expected "${want}"`);

export class Relay {
  readonly chat: Chat;
  readonly presence: Presence;
  readonly friends: Friends;

  readonly #cfg: RelayConfig;
  readonly #conn: Connection<RelayFrame, RelayHelloFrame>;
  readonly #chatEvents = new EventSource<ChatEvents>();
  readonly #presenceEvents = new EventSource<PresenceEvents>();
  readonly #friendsEvents = new EventSource<FriendsEvents>();
  readonly #autoDelivered: boolean;
  readonly #gapWaitMs: number;
  readonly #reqs = new Map<string, Req>();
  readonly #convs = new Map<string, Conv>();
  readonly #presence = new Map<string, { status: PresenceStatus; rev: number }>();

  /** Connection generation: one per hello. */
  #gen = 0;
  /** The login sync of the current connection was answered: durable requests go out. */
  #loggedIn = false;
  /** A sync was answered once: conversations have their baselines. */
  #synced = false;
  /** Live messages that arrived before the login sync's answer. */
  #held: WireMessage[] = [];
  #friends: FriendList | undefined;
  #away: boolean | undefined;
  #closed: RsoError | undefined;
  #receiptsQueued = false;
  #dirty = new Set<Conv>();

  constructor(cfg: RelayConfig) {
    this.#cfg = cfg;
    this.#autoDelivered = cfg.options.autoDelivered !== false;
    this.#gapWaitMs = cfg.options.gapWaitMs ?? 250;
    this.#conn = new Connection<RelayFrame, RelayHelloFrame>({
      name: "/relay",
      urls: cfg.urls,
      WebSocket: cfg.WebSocket,
      credentials: cfg.credentials,
      backoff: cfg.backoff,
      timing: cfg.timing,
      random: cfg.random,
      socketURL: cfg.socketURL,
      parse: parseRelayMessage,
      asHello: (f) => (f.op === "hello" ? f : undefined),
      beforeHello: (f) => {
        if (f.op !== "error") return false;
        // The relay refuses before hello (`unavailable`) and then closes the socket, which decides what follows.
        this.#chatEvents.emit("error", new ServerError(f.code, f.message, { id: f.id }));
        return true;
      },
      maxFrameBytes: (h) => h.limits.maxFrameBytes,
      nextId: cfg.nextId,
      onHello: () => this.#onHello(),
      onFrame: (f) => this.#onFrame(f),
      onDisconnected: () => this.#onDisconnected(),
      onStopped: (error) => this.#failAll(error),
      onStatus: (status, reason) => this.#chatEvents.emit("status", status, reason),
      onError: (error) => this.#chatEvents.emit("error", error),
    });
    this.chat = this.#makeChat();
    this.presence = this.#makePresence();
    this.friends = this.#makeFriends();
  }

  get user(): string | undefined {
    return this.#conn.hello?.user;
  }

  /** client.connect(): starts the relay again if it was in use and stopped. */
  restartIfStopped(): void {
    if (this.#conn.kind === "stopped") this.#conn.connect();
  }

  close(error: RsoError): void {
    if (this.#closed !== undefined) return;
    this.#closed = error;
    this.#conn.close();
    this.#failAll(error);
    for (const c of this.#convs.values()) clearTimer(c.gapTimer);
  }

  // ---- the public faces ----

  #makeChat(): Chat {
    const r = this;
    return {
      get status() {
        return r.#conn.status;
      },
      get url() {
        return r.#conn.url ?? r.#cfg.urls[0]!;
      },
      get user() {
        return r.#conn.hello?.user;
      },
      get device() {
        return r.#conn.hello?.device;
      },
      get limits() {
        return r.#conn.hello?.limits;
      },
      send: (to, body) => this.#send(to, body),
      history: (peer, options = {}) => this.#history(peer, options),
      markDelivered: (peer, seq) => this.#mark(peer, "delivered", seq),
      markRead: (peer, seq) => this.#mark(peer, "read", seq),
      conversations: () => {
        this.#use();
        return [...this.#convs.values()].map(snapshot);
      },
      conversation: (peer) => {
        this.#use();
        const c = this.#convs.get(peer);
        return c === undefined ? undefined : snapshot(c);
      },
      signal: (to, data, options = {}) => {
        const json = serialize(data, "signal data");
        if (typeof json !== "string") return Promise.reject(json);
        return this.#request((id) => signalFrame(id, to, json, options.device), { durable: true, to: undefined }, (f) => {
          if (f.op !== "ok") throw answerError("ok", f);
        });
      },
      connect: () => {
        if (this.#closed !== undefined) throw new RsoError(ClientErrorCode.Closed, "the client was closed; create a new one");
        this.#conn.connect();
      },
      on: (event, listener) => {
        const off = this.#chatEvents.on(event, listener);
        this.#use(); // after subscribing, so that a status listener sees "connecting"
        return off;
      },
    };
  }

  #makePresence(): Presence {
    return {
      status: (user) => {
        this.#use();
        if (user === this.#conn.hello?.user) return this.#conn.ready ? (this.#away === true ? "away" : "online") : "offline";
        return this.#presence.get(user)?.status ?? "offline";
      },
      all: () => {
        this.#use();
        const out: Record<string, PresenceStatus> = {};
        const users = this.#friends?.friends ?? [...this.#presence.keys()];
        for (const u of users) out[u] = this.#presence.get(u)?.status ?? "offline";
        return out;
      },
      setAway: (away) => {
        this.#away = away;
        return this.#request((id) => presenceFrame(id, away ? "away" : "online"), { durable: true, to: undefined }, (f) => {
          if (f.op !== "ok") throw answerError("ok", f);
        });
      },
      on: (event, listener) => {
        const off = this.#presenceEvents.on(event, listener);
        this.#use(); // after subscribing, so that a status listener sees "connecting"
        return off;
      },
    };
  }

  #makeFriends(): Friends {
    const r = this;
    const act = (action: FriendAction) => (user: string) =>
      this.#request((id) => friendFrame(id, action, user), { durable: true, to: undefined }, (f) => {
        if (f.op !== "friends") throw answerError("friends", f);
        return this.#onFriends(f, true);
      });
    return {
      get current() {
        r.#use();
        return r.#friends === undefined ? undefined : copyList(r.#friends);
      },
      list: () =>
        this.#request((id) => friendsFrame(id, this.#friends?.hash), { durable: true, to: undefined }, (f) => {
          if (f.op !== "friends") throw answerError("friends", f);
          return this.#onFriends(f, false);
        }),
      request: act("request"),
      accept: act("accept"),
      remove: act("remove"),
      block: act("block"),
      unblock: act("unblock"),
      on: (event, listener) => {
        const off = this.#friendsEvents.on(event, listener);
        this.#use(); // after subscribing, so that a status listener sees "connecting"
        return off;
      },
    };
  }

  // ---- requests ----

  /** Opens the socket on first use; the error that keeps it closed, if any. */
  #use(): RsoError | undefined {
    if (this.#closed !== undefined) return this.#closed;
    const kind = this.#conn.kind;
    if (kind === "idle") this.#conn.connect();
    return kind === "stopped" ? this.#conn.stoppedError : undefined;
  }

  /**
   * Sends `frame(id)` and resolves with `answer(frame)` of the server's answer (which throws for a wrong
   * one). Durable requests wait for the login sequence and survive reconnects; the others are written at
   * once, on a connection that is up, and fail when it ends.
   */
  #request<T>(frame: (id: string) => string, opts: { durable: boolean; to: string | undefined; id?: string }, answer: (f: RelayFrame) => T): Promise<T> {
    const blocked = this.#use();
    if (blocked !== undefined) return Promise.reject(blocked);
    return new Promise<T>((resolve, reject) => {
      const id = opts.id ?? this.#cfg.nextId();
      const req: Req = {
        id,
        frame: frame(id),
        durable: opts.durable,
        gen: -1,
        attempt: 0,
        timer: undefined,
        to: opts.to,
        answer: (f) => resolve(answer(f)),
        fail: reject,
      };
      this.#reqs.set(id, req);
      this.#transmit(req);
    });
  }

  #transmit(req: Req): void {
    if (!this.#conn.ready || (req.durable && !this.#loggedIn)) {
      if (!req.durable) this.#settle(req, new ConnectionError("connection_lost", "the relay connection is not up"));
      return; // a durable request goes out after the next login
    }
    req.gen = this.#gen;
    this.#conn.write(req.frame);
  }

  /** Ends a request: answered by `frame`, or failed with an error. */
  #settle(req: Req, outcome: RelayFrame | RsoError): void {
    if (this.#reqs.get(req.id) !== req) return;
    this.#reqs.delete(req.id);
    clearTimer(req.timer);
    if (outcome instanceof RsoError) return req.fail(outcome);
    try {
      req.answer(outcome);
    } catch (err) {
      req.fail(err instanceof RsoError ? err : new ProtocolError("unreadable answer", { cause: err }));
    }
  }

  #send(to: string, body: unknown): Promise<SentMessage> {
    if (typeof to !== "string" || to === "") return Promise.reject(new RsoError(ClientErrorCode.InvalidValue, "chat.send needs a recipient"));
    const json = serialize(body, "message body");
    if (typeof json !== "string") return Promise.reject(json);
    // Unique for the user across devices and sessions (§3.3).
    const id = "m-" + randomString(14);
    return this.#request((id) => chatSendFrame(id, to, json), { durable: true, to, id }, (f) => {
      if (f.op !== "sent") throw answerError("sent", f);
      const me = this.#conn.hello?.user ?? "";
      this.#ingest({ seq: f.seq, from: me, to: f.to, cid: f.id, ts: f.ts, body: JSON.parse(json) as unknown });
      return { id: f.id, to: f.to, seq: f.seq, ts: f.ts };
    });
  }

  #history(peer: string, options: { before?: number; limit?: number }): Promise<HistoryPage> {
    return this.#request((id) => historyFrame(id, peer, options.before, options.limit), { durable: true, to: undefined }, (f) => {
      if (f.op !== "history") throw answerError("history", f);
      const me = this.#conn.hello?.user ?? "";
      const conv = this.#convs.get(peer);
      if (conv !== undefined && f.last > conv.last) {
        conv.last = f.last;
        this.#touch(conv);
      }
      // Messages this client has not handed over yet go to the listeners too (once).
      if (this.#synced && conv !== undefined) for (const m of f.messages) this.#ingest(m);
      return { messages: f.messages.map((m) => toChat(m, me)), more: f.more, last: f.last };
    });
  }

  #mark(peer: string, kind: ReceiptKind, seq: number): Promise<void> {
    return this.#request((id) => receiptFrame(id, peer, kind, seq), { durable: true, to: undefined }, (f) => {
      if (f.op !== "ok") throw answerError("ok", f);
      this.#ownMark(peer, kind, seq);
    });
  }

  // ---- the connection ----

  #onHello(): void {
    this.#gen++;
    this.#loggedIn = false;
    // Revs are comparable within one server's presence store (memory, reset by a full restart): each new
    // connection's login answer is the new baseline. Statuses stay, so only real changes are emitted.
    for (const p of this.#presence.values()) p.rev = -1;
    this.#login(true);
  }

  /** The login sequence of §3.1: friends (with the cached hash), sync, then receipts and re-sends. */
  #login(afterHello: boolean): void {
    const gen = this.#gen;
    void this.#request((id) => friendsFrame(id, this.#friends?.hash), { durable: false, to: undefined }, (f) => {
      if (f.op !== "friends") throw answerError("friends", f);
      this.#onFriends(f, false);
    }).catch((e: unknown) => this.#internalError(e));
    if (afterHello && this.#away !== undefined && ![...this.#reqs.values()].some((r) => r.frame.startsWith(`{"op":"presence"`))) {
      const status = this.#away ? "away" : "online";
      void this.#request((id) => presenceFrame(id, status), { durable: false, to: undefined }, () => undefined).catch((e: unknown) => this.#internalError(e));
    }
    const done = (): void => {
      if (gen !== this.#gen || this.#loggedIn || !this.#conn.ready) return;
      this.#loggedIn = true;
      const held = this.#held;
      this.#held = [];
      for (const m of held) this.#ingest(m);
      for (const req of [...this.#reqs.values()]) {
        if (req.durable && req.gen !== gen && req.timer === undefined) this.#transmit(req);
      }
      this.#queueReceipts();
    };
    this.#sync(afterHello ? done : undefined, afterHello ? done : undefined);
  }

  /** Sends a sync (with `after` for every conversation with a baseline); `then` runs after its answer. */
  #sync(then: (() => void) | undefined, onFailure: (() => void) | undefined = undefined): void {
    const gen = this.#gen;
    const after = this.#after();
    void this.#request((id) => chatSyncFrame(id, after), { durable: false, to: undefined }, (f) => {
      if (f.op !== "sync") throw answerError("sync", f);
      this.#onSync(f);
      then?.();
    }).catch((e: unknown) => {
      // The login must not hang on a refused sync: the re-sends are safe without it (§3.3 duplicates).
      if (gen === this.#gen) onFailure?.();
      this.#internalError(e);
    });
  }

  #after(): Record<string, number> | undefined {
    if (!this.#synced) return undefined;
    const after: Record<string, number> = {};
    let bytes = 0;
    for (const c of this.#convs.values()) {
      after[c.peer] = c.have;
      bytes += c.peer.length + 16;
    }
    // Keep the frame well within max_frame_bytes; without `after` the server starts at the delivered marks.
    const limit = (this.#conn.hello?.limits.maxFrameBytes ?? 65536) / 2;
    return bytes > limit ? undefined : after;
  }

  #onDisconnected(): void {
    this.#loggedIn = false;
    this.#held = [];
    const lost = new ConnectionError("connection_lost", "the relay connection was lost");
    for (const req of [...this.#reqs.values()]) {
      if (req.durable) req.gen = -1;
      else this.#settle(req, lost);
    }
    for (const c of this.#convs.values()) {
      clearTimer(c.gapTimer);
      c.gapTimer = undefined;
      c.filling = false;
    }
  }

  #failAll(error: RsoError): void {
    this.#loggedIn = false;
    this.#held = [];
    for (const req of [...this.#reqs.values()]) this.#settle(req, error);
  }

  #internalError(e: unknown): void {
    if (this.#closed !== undefined) return;
    if (e instanceof ConnectionError) return; // the connection ended; the next login starts over
    if (e instanceof RsoError && this.#conn.ready) this.#chatEvents.emit("error", e);
  }

  #onFrame(f: RelayFrame): void {
    switch (f.op) {
      case "sent":
      case "ok":
      case "sync":
      case "history":
      case "friends": {
        const req = f.id === undefined ? undefined : this.#reqs.get(f.id);
        if (req !== undefined) return this.#settle(req, f);
        if (f.op === "friends") this.#onFriends(f, false); // the list changed (§3.5)
        return;
      }
      case "error": {
        const error = new ServerError(f.code, f.message, { id: f.id });
        const req = f.id === undefined ? undefined : this.#reqs.get(f.id);
        if (req === undefined) return this.#chatEvents.emit("error", error);
        if (retryableChatErrorCodes.has(f.code)) return this.#retry(req);
        return this.#settle(req, error);
      }
      case "message": {
        const { op: _op, ...m } = f;
        if (!this.#loggedIn) this.#held.push(m);
        else this.#ingest(m);
        return;
      }
      case "receipt":
        return this.#onReceipt(f);
      case "presence":
        return this.#setPresence(f.user, f.status, f.rev);
      case "signal":
        return this.#chatEvents.emit("signal", { from: f.from, device: f.device, data: f.data });
      case "resync":
        // Pushed frames may be missing (§3.8): the login sequence again, on the same connection.
        return this.#login(false);
      case "hello":
      case "pong":
        return;
    }
  }

  /** Sends a refused request again after a jittered delay, with the same id. */
  #retry(req: Req): void {
    req.gen = -1;
    const delay = this.#conn.retryDelay(req.attempt++);
    req.timer = setTimer(() => {
      req.timer = undefined;
      if (this.#reqs.get(req.id) !== req) return;
      if (!req.durable && !this.#conn.ready) return this.#settle(req, new ConnectionError("connection_lost", "the relay connection was lost"));
      this.#transmit(req);
    }, delay);
  }

  // ---- messages ----

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
        filling: false,
      };
      this.#convs.set(peer, c);
      this.#touch(c);
    }
    return c;
  }

  #onSync(f: ChatSyncFrame): void {
    let progress = false;
    for (const w of f.convs) {
      // A conversation seen for the first time starts after its delivered mark: what came before is history.
      const first = w.messages[0]?.seq;
      const c = this.#conv(w.peer, first === undefined ? w.delivered : Math.min(w.delivered, first - 1));
      const have = c.have;
      c.more = w.more;
      for (const m of w.messages) this.#ingest(m);
      this.#marks(c, { last: w.last, delivered: w.delivered, read: w.read, peerDelivered: w.peerDelivered, peerRead: w.peerRead });
      if (w.more && c.have > have) progress = true;
    }
    this.#synced = true;
    // More than one answer holds: ask again from where each conversation now is (§3.4). Without progress,
    // history fills what is left.
    if (progress) return this.#sync(undefined);
    for (const c of this.#convs.values()) {
      c.more = false;
      this.#checkGap(c, 0);
    }
  }

  /** Takes one stored message from anywhere (live, sync, history, a `sent` answer): hands it over once, in order. */
  #ingest(m: WireMessage): void {
    const me = this.#conn.hello?.user;
    const mine = m.from === me;
    if (mine && m.cid !== "") {
      const req = this.#reqs.get(m.cid);
      if (req !== undefined && req.to === m.to) {
        // Stored already (its answer was lost with a connection): answered by its stored copy (§3.3).
        this.#settle(req, { op: "sent", id: m.cid, to: m.to, seq: m.seq, ts: m.ts, duplicate: true });
        return; // the answer ingested it
      }
    }
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

  #drain(c: Conv): void {
    for (;;) {
      const m = c.buffer.get(c.have + 1);
      if (m === undefined) break;
      c.buffer.delete(m.seq);
      c.have = m.seq;
      if (this.#chatEvents.has("message")) c.handed = m.seq;
      this.#chatEvents.emit("message", m);
    }
    if (this.#autoDelivered && c.handed > Math.max(c.delivered, c.deliveredAsked)) this.#queueReceipts();
    this.#checkGap(c, this.#gapWaitMs);
  }

  /** A gap (a message above one missing, or `last` beyond what was handed over) is filled from history. */
  #checkGap(c: Conv, delayMs: number): void {
    if (!this.#synced || c.more || c.filling || c.gapTimer !== undefined) return;
    if (c.buffer.size === 0 && c.have >= c.last) return;
    c.gapTimer = setTimer(() => {
      c.gapTimer = undefined;
      this.#fillGap(c);
    }, delayMs);
  }

  #fillGap(c: Conv): void {
    if (!this.#loggedIn || c.filling || c.more) return; // the next login's sync starts from `have`
    const low = c.have + 1;
    const upper = c.buffer.size > 0 ? Math.min(...c.buffer.keys()) : c.last + 1;
    if (upper <= low) return;
    const max = this.#conn.hello?.limits.maxHistoryLimit ?? 200;
    const before = Math.min(upper, low + max);
    const have = c.have;
    c.filling = true;
    void this.#request((id) => historyFrame(id, c.peer, before, before - low), { durable: false, to: undefined }, (f) => {
      if (f.op !== "history") throw answerError("history", f);
      c.filling = false;
      if (f.last > c.last) ((c.last = f.last), this.#touch(c));
      for (const m of f.messages) this.#ingest(m);
      if (c.have > have) this.#checkGap(c, 0); // more to fill; without progress, the next sync tries again
    }).catch((e: unknown) => {
      c.filling = false;
      this.#internalError(e);
    });
  }

  #queueReceipts(): void {
    if (this.#receiptsQueued || !this.#autoDelivered) return;
    this.#receiptsQueued = true;
    microtask(() => {
      this.#receiptsQueued = false;
      if (!this.#loggedIn) return; // the login sends them
      for (const c of this.#convs.values()) {
        const seq = c.handed;
        if (seq <= Math.max(c.delivered, c.deliveredAsked)) continue;
        c.deliveredAsked = seq;
        const gen = this.#gen;
        void this.#request((id) => receiptFrame(id, c.peer, "delivered", seq), { durable: false, to: undefined }, (f) => {
          if (f.op !== "ok") throw answerError("ok", f);
          this.#ownMark(c.peer, "delivered", seq);
        }).catch((e: unknown) => {
          if (gen === this.#gen && c.deliveredAsked === seq) c.deliveredAsked = c.delivered; // asked again later
          this.#internalError(e);
        });
      }
    });
  }

  // ---- receipts and conversations ----

  #ownMark(peer: string, kind: ReceiptKind, seq: number): void {
    const c = this.#convs.get(peer);
    if (c === undefined) return;
    this.#marks(c, kind === "read" ? { read: seq, delivered: seq } : { delivered: seq });
  }

  #onReceipt(f: ReceiptFrame): void {
    const me = this.#conn.hello?.user;
    const c = this.#synced ? this.#conv(f.peer, 0) : this.#convs.get(f.peer);
    if (c !== undefined) {
      const read = f.kind === "read";
      if (f.by === me) this.#marks(c, read ? { read: f.seq, delivered: f.seq } : { delivered: f.seq });
      else this.#marks(c, read ? { peerRead: f.seq, peerDelivered: f.seq } : { peerDelivered: f.seq });
      this.#checkGap(c, this.#gapWaitMs); // a mark beyond what arrived: the messages are on their way, or lost
    }
    this.#chatEvents.emit("receipt", { peer: f.peer, by: f.by, kind: f.kind, seq: f.seq });
  }

  /** Raises marks (they only move forward). */
  #marks(c: Conv, m: Partial<Pick<Conv, "last" | "delivered" | "read" | "peerDelivered" | "peerRead">>): void {
    let changed = false;
    for (const key of ["last", "delivered", "read", "peerDelivered", "peerRead"] as const) {
      const v = m[key];
      if (v !== undefined && v > c[key]) {
        c[key] = v;
        changed = true;
      }
    }
    if (changed) this.#touch(c);
  }

  /** Emits `conversation` for `c` once, after the current frame. */
  #touch(c: Conv): void {
    if (this.#dirty.size === 0) {
      microtask(() => {
        const dirty = [...this.#dirty];
        this.#dirty.clear();
        for (const d of dirty) this.#chatEvents.emit("conversation", snapshot(d));
      });
    }
    this.#dirty.add(c);
  }

  // ---- friends and presence ----

  #onFriends(f: FriendsFrame, action: boolean): FriendList {
    if (f.lists !== undefined) {
      const changed = this.#friends?.hash !== f.hash;
      this.#friends = { ...f.lists, hash: f.hash };
      if (changed || action) this.#friendsEvents.emit("change", copyList(this.#friends));
    }
    for (const p of f.presence) this.#setPresence(p.user, p.status, p.rev);
    return copyList(this.#friends ?? { friends: [], incoming: [], outgoing: [], blocked: [], hash: f.hash });
  }

  /** Keeps the status with the highest `rev` per user (§3.6). */
  #setPresence(user: string, status: PresenceStatus, rev: number): void {
    const known = this.#presence.get(user);
    if (known !== undefined && rev < known.rev) return;
    this.#presence.set(user, { status, rev });
    if ((known?.status ?? "offline") !== status) this.#presenceEvents.emit("change", user, status);
  }
}

function toChat(m: WireMessage, me: string): ChatMessage {
  const mine = m.from === me;
  return { peer: mine ? m.to : m.from, seq: m.seq, from: m.from, to: m.to, id: m.cid, ts: m.ts, body: m.body, mine };
}

function snapshot(c: Conv): Conversation {
  return { peer: c.peer, last: c.last, delivered: c.delivered, read: c.read, peerDelivered: c.peerDelivered, peerRead: c.peerRead };
}

function copyList(l: FriendList): FriendList {
  return { friends: [...l.friends], incoming: [...l.incoming], outgoing: [...l.outgoing], blocked: [...l.blocked], hash: l.hash };
}

/** The JSON text of `value`, or the error to reject with. */
function serialize(value: unknown, what: string): string | RsoError {
  try {
    const json = JSON.stringify(value);
    if (typeof json === "string") return json;
  } catch (err) {
    return new RsoError(ClientErrorCode.InvalidValue, `the ${what} cannot be sent as JSON`, { cause: err });
  }
  return new RsoError(ClientErrorCode.InvalidValue, `the ${what} cannot be sent as JSON`);
}
