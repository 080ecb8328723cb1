// Private chat over the /relay WebSocket (docs/PROTOCOL.md §3): messages with offline delivery and gap
// filling, receipts, conversations, presence and the friend list. The socket is the reconnecting
// Connection of connection.ts, opened on first use; after every hello the login sequence of §3.1 runs.
import { ClientErrorCode, retryableChatErrorCodes } from "./codes.js";
import { Connection, type BackoffOptions, type Credentials, type Timing } from "./connection.js";
import { EventSource } from "./emitter.js";
import { ConnectionError, ProtocolError, RsoError, ServerError } from "./errors.js";
import type {
  Chat,
  ChatEvents,
  FriendList,
  Friends,
  FriendsEvents,
  HistoryPage,
  Presence,
  PresenceEvents,
  RelayOptions,
  SentMessage,
} from "./chattypes.js";
import { Conversations, toChat } from "./conversations.js";
import { microtask, randomString, type WebSocketConstructor } from "./host.js";
import { requestTracker, type Pending, type RequestTracker } from "./requests.js";
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
  type WireMessage,
} from "./relayframes.js";

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
  readonly #reqs: RequestTracker<RelayFrame>;
  readonly #convs: Conversations;
  readonly #presence = new Map<string, { status: PresenceStatus; rev: number }>();

  /** Connection generation: one per hello. */
  #gen = 0;
  /** The login sync of the current connection was answered: durable requests go out. */
  #loggedIn = false;
  /** Live messages that arrived before the login sync's answer. */
  #held: WireMessage[] = [];
  #friends: FriendList | undefined;
  #away: boolean | undefined;
  #closed: RsoError | undefined;
  #receiptsQueued = false;

  constructor(cfg: RelayConfig) {
    this.#cfg = cfg;
    this.#reqs = requestTracker<RelayFrame>(cfg.nextId);
    this.#convs = new Conversations(
      {
        user: () => this.#conn.hello?.user,
        claim: (m) => this.#claim(m),
        hand: (m) => {
          const taken = this.#chatEvents.has("message");
          this.#chatEvents.emit("message", m);
          return taken;
        },
        changed: (c) => this.#chatEvents.emit("conversation", c),
        deliveredDue: () => this.#queueReceipts(),
        fetchGap: (peer, before, limit) => this.#fetchGap(peer, before, limit),
      },
      {
        autoDelivered: cfg.options.autoDelivered !== false,
        gapWaitMs: cfg.options.gapWaitMs ?? 250,
        historyLimit: () => this.#conn.hello?.limits.maxHistoryLimit ?? 200,
      },
    );
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
    this.#convs.close();
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
        return this.#convs.list();
      },
      conversation: (peer) => {
        this.#use();
        return this.#convs.get(peer);
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
    const { request, promise } = this.#reqs.open({ id: opts.id, frame, durable: opts.durable, to: opts.to }, answer);
    this.#transmit(request);
    return promise;
  }

  #transmit(req: Pending): void {
    if (!this.#conn.ready || (req.durable && !this.#loggedIn)) {
      if (!req.durable) this.#reqs.reject(req, new ConnectionError("connection_lost", "the relay connection is not up"));
      return; // a durable request goes out after the next login
    }
    req.gen = this.#gen;
    this.#conn.write(req.frame);
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
      this.#convs.add({ seq: f.seq, from: me, to: f.to, cid: f.id, ts: f.ts, body: JSON.parse(json) as unknown });
      return { id: f.id, to: f.to, seq: f.seq, ts: f.ts };
    });
  }

  #history(peer: string, options: { before?: number; limit?: number }): Promise<HistoryPage> {
    return this.#request((id) => historyFrame(id, peer, options.before, options.limit), { durable: true, to: undefined }, (f) => {
      if (f.op !== "history") throw answerError("history", f);
      const me = this.#conn.hello?.user ?? "";
      // Messages this client has not handed over yet go to the listeners too (once).
      this.#convs.history(peer, f.last, f.messages);
      return { messages: f.messages.map((m) => toChat(m, me)), more: f.more, last: f.last };
    });
  }

  #mark(peer: string, kind: ReceiptKind, seq: number): Promise<void> {
    return this.#request((id) => receiptFrame(id, peer, kind, seq), { durable: true, to: undefined }, (f) => {
      if (f.op !== "ok") throw answerError("ok", f);
      this.#convs.ownMark(peer, kind, seq);
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
    if (afterHello && this.#away !== undefined && !this.#reqs.list().some((r) => r.frame.startsWith(`{"op":"presence"`))) {
      const status = this.#away ? "away" : "online";
      void this.#request((id) => presenceFrame(id, status), { durable: false, to: undefined }, () => undefined).catch((e: unknown) => this.#internalError(e));
    }
    const done = (): void => {
      if (gen !== this.#gen || this.#loggedIn || !this.#conn.ready) return;
      this.#loggedIn = true;
      const held = this.#held;
      this.#held = [];
      for (const m of held) this.#convs.add(m);
      for (const req of this.#reqs.list()) {
        if (req.durable && req.gen !== gen && !req.retrying) this.#transmit(req);
      }
      this.#queueReceipts();
    };
    this.#sync(afterHello ? done : undefined, afterHello ? done : undefined);
  }

  /** Sends a sync (with `after` for every conversation with a baseline); `then` runs after its answer. */
  #sync(then: (() => void) | undefined, onFailure: (() => void) | undefined = undefined): void {
    const gen = this.#gen;
    // Keep the frame well within max_frame_bytes; without `after` the server starts at the delivered marks.
    const after = this.#convs.after((this.#conn.hello?.limits.maxFrameBytes ?? 65536) / 2);
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

  #onDisconnected(): void {
    this.#loggedIn = false;
    this.#held = [];
    const lost = new ConnectionError("connection_lost", "the relay connection was lost");
    for (const req of this.#reqs.list()) {
      if (req.durable) req.gen = -1;
      else this.#reqs.reject(req, lost);
    }
    this.#convs.disconnected();
  }

  #failAll(error: RsoError): void {
    this.#loggedIn = false;
    this.#held = [];
    this.#reqs.rejectAll(error);
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
        if (f.id !== undefined && this.#reqs.resolve(f.id, f)) return;
        if (f.op === "friends") this.#onFriends(f, false); // the list changed (§3.5)
        return;
      }
      case "error": {
        const error = new ServerError(f.code, f.message, { id: f.id });
        const req = f.id === undefined ? undefined : this.#reqs.get(f.id);
        if (req === undefined) return this.#chatEvents.emit("error", error);
        if (retryableChatErrorCodes.has(f.code)) return this.#retry(req);
        return this.#reqs.reject(req, error);
      }
      case "message": {
        const { op: _op, ...m } = f;
        if (!this.#loggedIn) this.#held.push(m);
        else this.#convs.add(m);
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
  #retry(req: Pending): void {
    this.#reqs.retry(req, (attempt) => this.#conn.retryDelay(attempt), () => {
      if (!req.durable && !this.#conn.ready) return this.#reqs.reject(req, new ConnectionError("connection_lost", "the relay connection was lost"));
      this.#transmit(req);
    });
  }

  // ---- messages ----

  #onSync(f: ChatSyncFrame): void {
    if (this.#convs.sync(f.convs)) this.#sync(undefined);
  }

  /** A stored message of yours that answers a send still waiting (its answer was lost with a connection, §3.3). */
  #claim(m: WireMessage): boolean {
    const req = this.#reqs.get(m.cid);
    if (req === undefined || req.to !== m.to) return false;
    return this.#reqs.resolve(m.cid, { op: "sent", id: m.cid, to: m.to, seq: m.seq, ts: m.ts, duplicate: true });
  }

  #fetchGap(peer: string, before: number, limit: number): boolean {
    if (!this.#loggedIn) return false; // the next login's sync starts from what this client has
    void this.#request((id) => historyFrame(id, peer, before, limit), { durable: false, to: undefined }, (f) => {
      if (f.op !== "history") throw answerError("history", f);
      this.#convs.gapFilled(peer, f.last, f.messages);
    }).catch((e: unknown) => {
      this.#convs.gapFailed(peer);
      this.#internalError(e);
    });
    return true;
  }

  #queueReceipts(): void {
    if (this.#receiptsQueued) return;
    this.#receiptsQueued = true;
    microtask(() => {
      this.#receiptsQueued = false;
      if (!this.#loggedIn) return; // the login sends them
      for (const { peer, seq } of this.#convs.takeDelivered()) {
        const gen = this.#gen;
        void this.#request((id) => receiptFrame(id, peer, "delivered", seq), { durable: false, to: undefined }, (f) => {
          if (f.op !== "ok") throw answerError("ok", f);
          this.#convs.ownMark(peer, "delivered", seq);
        }).catch((e: unknown) => {
          if (gen === this.#gen) this.#convs.deliveredFailed(peer, seq); // asked again later
          this.#internalError(e);
        });
      }
    });
  }

  #onReceipt(f: ReceiptFrame): void {
    this.#convs.receipt(f.peer, f.by === this.#conn.hello?.user, f.kind, f.seq);
    this.#chatEvents.emit("receipt", { peer: f.peer, by: f.by, kind: f.kind, seq: f.seq });
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
