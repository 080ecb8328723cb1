// The connection to an RSO server: a state machine that connects, reconnects with jittered backoff, keeps
// the connection alive with application pings, and routes frames to the objects (docs/PROTOCOL.md §1).
import { ClientErrorCode, CloseCode, ErrorCode, clientDropCloseCode, closeAction, type CloseAction } from "./codes.js";
import { EventSource, type Listener, type Unsubscribe } from "./emitter.js";
import { ConnectionError, ProtocolError, RsoError, ServerError } from "./errors.js";
import { parseMessage, pingFrame, type HelloFrame, type Limits, type ServerFrame } from "./frames.js";
import {
  OPEN,
  clearTimer,
  globalWebSocket,
  makeURL,
  microtask,
  randomString,
  setTimer,
  utf8Length,
  type CloseEventLike,
  type ErrorEventLike,
  type MessageEventLike,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./host.js";
import { RemoteObjectImpl, type Link, type RemoteObject } from "./remote.js";

/**
 * - `idle`: created, `connect()` not called yet (`so.connect()` calls it).
 * - `connecting`: the first attempt.
 * - `connected`: the server's hello arrived.
 * - `reconnecting`: the connection was lost or an attempt failed; waiting for the next one, or trying.
 * - `closed`: stopped: `client.close()`, or a close code that says "stop" (the error says which).
 */
export type Status = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

export interface RsoClientEvents {
  /** Every status change; `reason` says why the connection ended (reconnecting, closed). */
  status: [status: Status, reason: ConnectionError | undefined];
  /** Errors of the connection (why it stopped, protocol errors), and object errors nobody listens to. */
  error: [error: RsoError];
}

export interface BackoffOptions {
  /** Ceiling of the first delay, in ms. */
  baseMs: number;
  /** Growth of the ceiling per failed attempt. */
  factor: number;
  /** Largest ceiling, in ms. */
  maxMs: number;
}

export interface Timing {
  /** An application ping goes out this long after the last one was answered: well within the server's 60 s idle limit. */
  pingIntervalMs: number;
  /** No pong this long after a ping: the connection is dead (browsers cannot see a dead TCP connection). */
  pongTimeoutMs: number;
  /** From creating the socket to the server's hello. */
  connectTimeoutMs: number;
  /** A connection that stays up this long resets the backoff. */
  stableAfterMs: number;
  /** Least delay after close code 4009 (abuse), per §1.9. */
  abuseDelayMs: number;
}

export const defaultBackoff: Readonly<BackoffOptions> = { baseMs: 250, factor: 2, maxMs: 15_000 };

export const defaultTiming: Readonly<Timing> = {
  pingIntervalMs: 20_000,
  pongTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  stableAfterMs: 10_000,
  abuseDelayMs: 5_000,
};

/** Full jitter: a delay drawn uniformly from [0, min(maxMs, baseMs × factor^attempt)). */
export function backoffDelay(attempt: number, random: () => number, o: Readonly<BackoffOptions> = defaultBackoff): number {
  const ceiling = Math.min(o.maxMs, o.baseMs * o.factor ** attempt);
  return Math.floor(random() * ceiling);
}

export interface RsoClientOptions {
  /** A JWT (§1.8), sent as `?token=`. */
  token?: string;
  /** A name for an anonymous client (servers without a token secret), sent as `?user=`. */
  user?: string;
  /** The WebSocket class; defaults to the global one. In Node 20: `import { WebSocket } from "ws"`. */
  WebSocket?: WebSocketConstructor;
  /**
   * Called for a fresh token when the server says the token expired (4003) or refuses it; the client then
   * reconnects with it. Without it those cases stop the client. A throw stops the client too.
   */
  getToken?: () => string | Promise<string>;
  backoff?: Partial<BackoffOptions>;
  timing?: Partial<Timing>;
  /** Random numbers in [0, 1) for the jitter (tests pass their own). */
  random?: () => number;
}

/** One socket and what belongs to it; a new one for every attempt. */
interface Conn {
  ws: WebSocketLike;
  opened: boolean;
  hello: HelloFrame | undefined;
  lastError: ErrorEventLike | undefined;
  timers: Set<unknown>;
  pongTimer: unknown;
  outbox: string[];
}

/** Where the connection state machine is. Each state holds what only it needs. */
type State =
  | { kind: "idle" }
  | { kind: "connecting"; conn: Conn }
  | { kind: "connected"; conn: Conn }
  | { kind: "waiting"; timer: unknown } // backoff before the next attempt, or awaiting getToken
  | { kind: "stopped"; error: RsoError } // status "closed"; connect() starts again
  | { kind: "closed" }; // client.close(): final

/** What to do after a connection ended, decided from how it ended. */
type Next = { kind: "stop"; error: RsoError } | { kind: "retry"; delayMs: number; newToken: boolean };

export class RsoClient {
  readonly url: string;
  readonly #events = new EventSource<RsoClientEvents>();
  readonly #WebSocket: WebSocketConstructor | undefined;
  readonly #getToken: (() => string | Promise<string>) | undefined;
  readonly #user: string | undefined;
  readonly #backoff: Readonly<BackoffOptions>;
  readonly #timing: Readonly<Timing>;
  readonly #random: () => number;
  readonly #idPrefix = randomString(8) + "-";
  readonly #objects = new Map<string, RemoteObjectImpl>();
  readonly #link: Link;

  #token: string | undefined;
  /** A connection with the current token got its hello: a later refusal is not the token's fault. */
  #tokenWorked = false;
  /** The current token came from getToken and has not been tried yet. */
  #tokenFresh = false;
  #state: State = { kind: "idle" };
  #status: Status = "idle";
  #everConnected = false;
  #attempt = 0;
  #counter = 0;
  #hello: HelloFrame | undefined;

  /**
   * `url` is the server, like "ws://127.0.0.1:8080" (the SDK appends /so), or the full ".../so" URL.
   * Nothing happens until `connect()` or the first `so.connect()`.
   */
  constructor(url: string, options: RsoClientOptions = {}) {
    this.url = url;
    this.#token = options.token;
    this.#user = options.user;
    this.#WebSocket = options.WebSocket;
    this.#getToken = options.getToken;
    this.#backoff = { ...defaultBackoff, ...options.backoff };
    this.#timing = { ...defaultTiming, ...options.timing };
    this.#random = options.random ?? Math.random;
    this.#link = this.#makeLink();
  }

  on<K extends keyof RsoClientEvents>(event: K, listener: Listener<RsoClientEvents[K]>): Unsubscribe {
    return this.#events.on(event, listener);
  }

  get status(): Status {
    return this.#status;
  }

  /** The user id the server gave this client (hello), once connected. */
  get user(): string | undefined {
    return this.#hello?.user;
  }

  /** The server's session id for the current or last connection. */
  get session(): string | undefined {
    return this.#hello?.session;
  }

  /** The limits of the current or last connection (§1.1). */
  get limits(): Limits | undefined {
    return this.#hello?.limits;
  }

  /** Replaces the token for the next connection (an open connection keeps its own). */
  setToken(token: string | undefined): void {
    this.#token = token;
    this.#tokenWorked = false;
    this.#tokenFresh = false;
  }

  /** Starts connecting; after a stop (status "closed" because of a close code) starts again. */
  connect(): void {
    switch (this.#state.kind) {
      case "closed":
        throw new RsoError(ClientErrorCode.Closed, "the client was closed; create a new one");
      case "idle":
      case "stopped":
        this.#attempt = 0;
        this.#everConnected = false;
        this.#open();
    }
  }

  /** The object `name` in the chosen namespace (default temporary); the same instance while it is open. */
  getRemote(name: string, options: { persistent?: boolean } = {}): RemoteObject {
    const persistent = options.persistent === true;
    const key = objectKey(name, persistent);
    let object = this.#objects.get(key);
    if (object === undefined) {
      object = new RemoteObjectImpl(this.#link, name, persistent);
      this.#objects.set(key, object);
    }
    return object;
  }

  /** Closes the connection (code 1000) and every object, for good. */
  close(): void {
    if (this.#state.kind === "closed") return;
    this.#leave(CloseCode.Normal);
    this.#state = { kind: "closed" };
    const error = new RsoError(ClientErrorCode.Closed, "the client was closed");
    for (const object of this.#objects.values()) object._closed(error);
    this.#objects.clear();
    this.#setStatus("closed", undefined);
  }

  // ---- the state machine ----

  #open(): void {
    const Ctor = this.#WebSocket ?? globalWebSocket();
    if (Ctor === undefined) {
      return this.#stop(new RsoError(ClientErrorCode.NoWebSocket, "no WebSocket: pass options.WebSocket (in Node: import { WebSocket } from \"ws\")"));
    }
    let ws: WebSocketLike;
    try {
      ws = new Ctor(this.#socketURL());
    } catch (err) {
      return this.#stop(new ConnectionError(ClientErrorCode.BadUrl, `cannot open ${this.url}`, { cause: err }));
    }
    const conn: Conn = { ws, opened: false, hello: undefined, lastError: undefined, timers: new Set(), pongTimer: undefined, outbox: [] };
    this.#state = { kind: "connecting", conn };
    const live = (): boolean => this.#conn() === conn;
    ws.onopen = () => {
      if (live()) conn.opened = true;
    };
    ws.onerror = (ev: ErrorEventLike) => {
      if (live()) conn.lastError = ev;
    };
    ws.onclose = (ev: CloseEventLike) => {
      if (live()) this.#lost(conn, this.#afterClose(conn, ev), ConnectionError.fromClose(ev.code, ev.reason));
    };
    ws.onmessage = (ev: MessageEventLike) => {
      if (live()) this.#receive(conn, ev.data);
    };
    this.#after(conn, this.#timing.connectTimeoutMs, () => {
      const error = new ConnectionError(ClientErrorCode.Timeout, `no hello from the server within ${this.#timing.connectTimeoutMs} ms`);
      this.#drop(conn, error);
    });
    this.#setStatus(this.#everConnected || this.#attempt > 0 ? "reconnecting" : "connecting", undefined);
  }

  #onHello(conn: Conn, hello: HelloFrame): void {
    conn.hello = hello;
    this.#hello = hello;
    this.#state = { kind: "connected", conn };
    this.#everConnected = true;
    this.#tokenWorked = true;
    this.#tokenFresh = false;
    for (const t of conn.timers) clearTimer(t); // the connect timeout
    conn.timers.clear();
    this.#after(conn, this.#timing.stableAfterMs, () => {
      this.#attempt = 0;
    });
    this.#schedulePing(conn);
    this.#setStatus("connected", undefined);
    for (const object of this.#objects.values()) object._ready();
  }

  /** The socket closed: decide from the close code (§1.9) whether to stop or when to retry. */
  #afterClose(conn: Conn, ev: CloseEventLike): Next {
    if (!conn.opened) return this.#afterRefusal(conn);
    const action: CloseAction = closeAction(ev.code);
    switch (action) {
      case "stop":
        return { kind: "stop", error: ConnectionError.fromClose(ev.code, ev.reason) };
      case "new-token":
        if (this.#getToken === undefined) return { kind: "stop", error: ConnectionError.fromClose(ev.code, ev.reason) };
        return { kind: "retry", delayMs: 0, newToken: true };
      case "reconnect-soon":
        return { kind: "retry", delayMs: backoffDelay(0, this.#random, this.#backoff), newToken: false };
      case "reconnect-late":
        return { kind: "retry", delayMs: this.#timing.abuseDelayMs + this.#nextBackoff(), newToken: false };
      case "reconnect":
        return { kind: "retry", delayMs: this.#nextBackoff(), newToken: false };
    }
  }

  /**
   * The socket never opened. Node's `ws` says why ("Unexpected server response: 401", "connect
   * ECONNREFUSED"); browsers do not, and §1.1 says to treat a failed first connect after a token change as
   * a refused token.
   */
  #afterRefusal(conn: Conn): Next {
    const message = conn.lastError?.message;
    const known = typeof message === "string" && message !== "";
    const refused = known ? /\b401\b/.test(message) : this.#token !== undefined && !this.#tokenWorked;
    if (!refused) return { kind: "retry", delayMs: this.#nextBackoff(), newToken: false };
    const error = new ConnectionError(
      ErrorCode.Unauthorized,
      known ? `the server refused the token: ${message}` : "could not connect, and the token was never accepted: it may be refused",
      { closeCode: CloseCode.Abnormal, cause: conn.lastError?.error },
    );
    // A token fresh from getToken that is refused too: stop rather than loop.
    if (this.#getToken === undefined || (known && this.#tokenFresh)) return { kind: "stop", error };
    return { kind: "retry", delayMs: known ? 0 : this.#nextBackoff(), newToken: true };
  }

  #nextBackoff(): number {
    return backoffDelay(this.#attempt++, this.#random, this.#backoff);
  }

  /** Ends `conn` (already closed, or dropped by us) and goes on as `next` says. */
  #lost(conn: Conn, next: Next, reason: ConnectionError): void {
    const wasConnected = conn.hello !== undefined;
    this.#leave();
    if (wasConnected) for (const object of this.#objects.values()) object._disconnected();
    if (next.kind === "stop") return this.#stop(next.error);
    const timer = setTimer(() => {
      if (this.#state.kind === "waiting" && this.#state.timer === timer) void this.#retry(next.newToken);
    }, next.delayMs);
    this.#state = { kind: "waiting", timer };
    this.#setStatus("reconnecting", reason);
  }

  async #retry(newToken: boolean): Promise<void> {
    if (newToken && this.#getToken !== undefined) {
      const waiting = this.#state;
      let token: string;
      try {
        token = await this.#getToken();
        if (typeof token !== "string" || token === "") throw new TypeError("getToken returned no token");
      } catch (err) {
        if (this.#state === waiting) this.#stop(new RsoError(ClientErrorCode.TokenRefreshFailed, "getToken failed", { cause: err }));
        return;
      }
      if (this.#state !== waiting) return; // closed or restarted meanwhile
      this.setToken(token);
      this.#tokenFresh = true;
    }
    this.#open();
  }

  /** Drops a live connection ourselves (no pong, protocol error) and reconnects with backoff. */
  #drop(conn: Conn, reason: RsoError): void {
    if (this.#conn() !== conn) return;
    const error = reason instanceof ConnectionError ? reason : new ConnectionError(reason.code, reason.message, { cause: reason });
    if (!(reason instanceof ConnectionError)) this.#events.emit("error", reason);
    this.#lost(conn, { kind: "retry", delayMs: this.#nextBackoff(), newToken: false }, error);
  }

  #stop(error: RsoError): void {
    this.#leave();
    this.#state = { kind: "stopped", error };
    const reason = error instanceof ConnectionError ? error : undefined;
    this.#setStatus("closed", reason);
    this.#events.emit("error", error);
    for (const object of this.#objects.values()) object._stopped(error);
  }

  /** Leaves the current state: closes its socket (silencing it) and clears its timers. */
  #leave(code: number = clientDropCloseCode): void {
    const state = this.#state;
    if (state.kind === "waiting") clearTimer(state.timer);
    if (state.kind !== "connecting" && state.kind !== "connected") return;
    const { conn } = state;
    for (const t of conn.timers) clearTimer(t);
    conn.timers.clear();
    clearTimer(conn.pongTimer);
    // Handlers become no-ops rather than null: `ws` throws on an error event nobody handles.
    const ignore = (): void => {};
    conn.ws.onopen = conn.ws.onmessage = conn.ws.onclose = conn.ws.onerror = ignore;
    try {
      conn.ws.close(code);
    } catch {
      // closing a socket that is still connecting may throw in some implementations; it is gone either way
    }
    this.#state = { kind: "idle" };
  }

  #conn(): Conn | undefined {
    const s = this.#state;
    return s.kind === "connecting" || s.kind === "connected" ? s.conn : undefined;
  }

  #setStatus(status: Status, reason: ConnectionError | undefined): void {
    if (status === this.#status) return;
    this.#status = status;
    this.#events.emit("status", status, reason);
  }

  #after(conn: Conn, ms: number, fn: () => void): void {
    const timer = setTimer(() => {
      conn.timers.delete(timer);
      if (this.#conn() === conn) fn();
    }, ms);
    conn.timers.add(timer);
  }

  #schedulePing(conn: Conn): void {
    this.#after(conn, this.#timing.pingIntervalMs, () => {
      this.#write(pingFrame(this.#nextId()));
      conn.pongTimer = setTimer(() => {
        if (this.#conn() !== conn) return;
        const error = new ConnectionError(ClientErrorCode.Timeout, `no pong within ${this.#timing.pongTimeoutMs} ms`);
        this.#drop(conn, error);
      }, this.#timing.pongTimeoutMs);
    });
  }

  // ---- frames ----

  #receive(conn: Conn, data: unknown): void {
    if (typeof data !== "string") {
      return this.#drop(conn, new ProtocolError("server sent a binary message; /so uses text messages only"));
    }
    let frames: ServerFrame[];
    try {
      frames = parseMessage(data);
    } catch (err) {
      return this.#drop(conn, err instanceof RsoError ? err : new ProtocolError("unreadable message", { cause: err }));
    }
    for (const frame of frames) {
      if (this.#conn() !== conn) return; // a listener closed the client, or the connection was dropped
      this.#route(conn, frame);
    }
  }

  #route(conn: Conn, frame: ServerFrame): void {
    if (conn.hello === undefined) {
      if (frame.op === "hello") return this.#onHello(conn, frame);
      return this.#drop(conn, new ProtocolError(`server sent "${frame.op}" before hello`));
    }
    switch (frame.op) {
      case "hello":
        return; // only one is sent; a repeat carries nothing new
      case "pong":
        clearTimer(conn.pongTimer);
        conn.pongTimer = undefined;
        return this.#schedulePing(conn);
      case "sync":
        return this.#objects.get(objectKey(frame.obj, frame.persistent))?._sync(frame);
      case "message":
        return this.#objects.get(objectKey(frame.obj, frame.persistent))?._message(frame);
      case "error": {
        const { code, message, id, obj, persistent } = frame;
        const error = new ServerError(code, message, { id, obj, persistent: obj === undefined ? undefined : persistent });
        let object = obj === undefined ? undefined : this.#objects.get(objectKey(obj, persistent));
        if (object === undefined && id !== undefined) object = [...this.#objects.values()].find((o) => o._owns(id));
        if (object !== undefined) return object._error(error);
        return this.#events.emit("error", error);
      }
    }
  }

  /** Queues a frame for the current connection; the frames of one tick go out as one message (§1.1). */
  #write(frame: string): void {
    const conn = this.#state.kind === "connected" ? this.#state.conn : undefined;
    if (conn === undefined) return; // everything unanswered is sent again after the next hello
    conn.outbox.push(frame);
    if (conn.outbox.length === 1) microtask(() => this.#flushOutbox(conn));
  }

  #flushOutbox(conn: Conn): void {
    if (this.#conn() !== conn || conn.ws.readyState !== OPEN) return;
    // A message may hold 16 × max_frame_bytes before the server closes the socket; stay well below.
    const budget = 4 * (conn.hello?.limits.maxFrameBytes ?? 262144);
    let batch: string[] = [];
    let bytes = 0;
    const out: string[] = [];
    for (const frame of conn.outbox) {
      const size = utf8Length(frame) + 1;
      if (batch.length > 0 && bytes + size > budget) {
        out.push(batch.join("\n"));
        batch = [];
        bytes = 0;
      }
      batch.push(frame);
      bytes += size;
    }
    if (batch.length > 0) out.push(batch.join("\n"));
    conn.outbox = [];
    try {
      for (const message of out) conn.ws.send(message);
    } catch (err) {
      this.#drop(conn, new ConnectionError("connection_lost", "could not write to the socket", { cause: err }));
    }
  }

  #nextId(): string {
    return this.#idPrefix + (++this.#counter).toString(36);
  }

  #socketURL(): string {
    const u = makeURL(this.url);
    if (u.protocol === "http:") u.protocol = "ws:";
    if (u.protocol === "https:") u.protocol = "wss:";
    if (!u.pathname.endsWith("/so")) u.pathname = u.pathname.replace(/\/?$/, "/so");
    if (this.#token !== undefined) u.searchParams.set("token", this.#token);
    if (this.#user !== undefined) u.searchParams.set("user", this.#user);
    return u.toString();
  }

  #makeLink(): Link {
    const client = this; // the link is this client's private face for its objects
    return {
      get ready() {
        return client.#state.kind === "connected";
      },
      get limits() {
        return client.#hello?.limits;
      },
      start() {
        const s = client.#state;
        if (s.kind === "idle") client.connect();
        if (s.kind === "stopped") return s.error;
        if (s.kind === "closed") return new RsoError(ClientErrorCode.Closed, "the client was closed");
        return undefined;
      },
      nextId: () => client.#nextId(),
      ownsId: (id) => id.startsWith(client.#idPrefix),
      write: (frame) => client.#write(frame),
      retryDelay: (attempt) => backoffDelay(attempt, client.#random, { ...client.#backoff, maxMs: 5_000 }),
      detach: (object) => {
        const key = objectKey(object.name, object.persistent);
        if (client.#objects.get(key) === object) client.#objects.delete(key);
      },
      reportError: (error) => client.#events.emit("error", error),
    };
  }
}

const objectKey = (name: string, persistent: boolean): string => (persistent ? "p:" : "t:") + name;
