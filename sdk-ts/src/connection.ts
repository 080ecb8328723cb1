// One reconnecting WebSocket: the state machine shared by the shared-object socket (/so, docs/PROTOCOL.md §1)
// and the private-chat socket (/relay, §3). It connects, reconnects with jittered backoff, rotating through
// the servers it was given (one per attempt), keeps the connection alive with application pings, and hands
// every frame after `hello` to its owner.
import { ClientErrorCode, CloseCode, ErrorCode, clientDropCloseCode, closeAction, type CloseAction } from "./codes.js";
import { ConnectionError, ProtocolError, RsoError } from "./errors.js";
import {
  OPEN,
  clearTimer,
  globalWebSocket,
  microtask,
  onWakeSignals,
  setTimer,
  utf8Length,
  type CloseEventLike,
  type ErrorEventLike,
  type MessageEventLike,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./host.js";

/**
 * - `idle`: created, not started yet.
 * - `connecting`: the first attempt.
 * - `connected`: the server's hello arrived.
 * - `reconnecting`: the connection was lost or an attempt failed; waiting for the next one, or trying.
 * - `closed`: stopped: `client.close()`, or a close code that says "stop" (the error says which).
 */
export type Status = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

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

/**
 * The token, shared by the client's sockets: a fresh token fetched by one of them is used by both. `worked`:
 * a connection with the current token got its hello, so a later refusal is not the token's fault. `fresh`:
 * the current token came from getToken and has not been tried yet.
 */
export class Credentials {
  token: string | undefined;
  worked = false;
  fresh = false;

  constructor(
    token: string | undefined,
    readonly getToken: (() => string | Promise<string>) | undefined,
  ) {
    this.token = token;
  }

  set(token: string | undefined): void {
    this.token = token;
    this.worked = false;
    this.fresh = false;
  }
}

/** What a server frame must have for the connection to route it. */
export interface FrameLike {
  op: string;
}

/** A hello frame as far as the connection cares. */
export interface HelloLike extends FrameLike {
  session: string;
  user: string;
}

/** What the owner of a connection provides: the servers, the parser, and where events go. */
export interface ConnectionConfig<F extends FrameLike, H extends F & HelloLike> {
  /** For messages: "/so" or "/relay". */
  readonly name: string;
  /**
   * The servers (at least one), as the application gave them. Each attempt takes the one after the
   * previous attempt's, wrapping around: the first attempt the first one, and after a failed attempt or a
   * lost connection the next. Nothing else of a connection depends on which server it reached.
   */
  readonly urls: readonly string[];
  readonly WebSocket: WebSocketConstructor | undefined;
  readonly credentials: Credentials;
  readonly backoff: Readonly<BackoffOptions>;
  readonly timing: Readonly<Timing>;
  readonly random: () => number;
  /** The socket URL for server `url`, one of `urls` (with the current token). Throws for a bad URL. */
  socketURL(url: string): string;
  /** Splits and parses one WebSocket message; throws an RsoError for a malformed one. */
  parse(data: string): F[];
  /** The frame as a hello, or undefined when it is not one. */
  asHello(frame: F): H | undefined;
  /**
   * A frame other than hello before hello: true when the owner handled it (e.g. the relay's `error`
   * `unavailable`, which precedes its close), else it is a protocol error.
   */
  beforeHello?(frame: F): boolean;
  /** The server's max_frame_bytes, to size the messages the client writes. */
  maxFrameBytes(hello: H): number;
  /** A request id for pings. */
  nextId(): string;
  /** The hello of a new connection arrived (status is already "connected"). */
  onHello(hello: H): void;
  /** Every frame after hello except pong and repeated hellos. */
  onFrame(frame: F): void;
  /** A connection that had its hello was lost (not for a stop: see onStopped). */
  onDisconnected(): void;
  /** The connection stopped (status "closed"); `error` says why. Not called by close(). */
  onStopped(error: RsoError): void;
  onStatus(status: Status, reason: ConnectionError | undefined): void;
  /** Why the connection stopped, and protocol errors. */
  onError(error: RsoError): void;
}

/** One socket and what belongs to it; a new one for every attempt. */
interface Conn<H> {
  ws: WebSocketLike;
  opened: boolean;
  hello: H | undefined;
  lastError: ErrorEventLike | undefined;
  timers: Set<unknown>;
  pongTimer: unknown;
  outbox: string[];
}

/** Where the connection state machine is. Each state holds what only it needs. */
type State<H> =
  | { kind: "idle" }
  | { kind: "connecting"; conn: Conn<H> }
  | { kind: "connected"; conn: Conn<H> }
  // Backoff before the next attempt, or awaiting getToken. `wakeable`: the wait is a plain backoff that
  // wake() may cut short (not the extra wait after 4009, not while the next attempt already began).
  | { kind: "waiting"; timer: unknown; wakeable: boolean }
  | { kind: "stopped"; error: RsoError } // status "closed"; connect() starts again
  | { kind: "closed" }; // close(): final

/** What to do after a connection ended, decided from how it ended. */
type Next = { kind: "stop"; error: RsoError } | { kind: "retry"; delayMs: number; newToken: boolean; abuse?: boolean };

export class Connection<F extends FrameLike, H extends F & HelloLike> {
  readonly #c: ConnectionConfig<F, H>;
  #state: State<H> = { kind: "idle" };
  #status: Status = "idle";
  #everConnected = false;
  #attempt = 0;
  /** The index in urls of the server for the next attempt. */
  #nextURL = 0;
  /** The server of the current or last attempt. */
  #url: string | undefined;
  /** Attempts in a row that failed before their socket opened, all with the token #unopenedToken. */
  #unopened = 0;
  #unopenedToken: string | undefined;
  #hello: H | undefined;
  /** Removes the online / visibilitychange listeners; set while they are installed. */
  #unwatch: (() => void) | undefined;

  constructor(config: ConnectionConfig<F, H>) {
    this.#c = config;
  }

  get status(): Status {
    return this.#status;
  }

  /** The server (one of the config's urls) of the current or last attempt; undefined before the first. */
  get url(): string | undefined {
    return this.#url;
  }

  /** The hello of the current or last connection. */
  get hello(): H | undefined {
    return this.#hello;
  }

  /** The current connection got its hello: frames written now go out. */
  get ready(): boolean {
    return this.#state.kind === "connected";
  }

  get kind(): State<H>["kind"] {
    return this.#state.kind;
  }

  /** Why the connection stopped, while it is stopped; a `closed` error after close(). */
  get stoppedError(): RsoError | undefined {
    const s = this.#state;
    if (s.kind === "stopped") return s.error;
    if (s.kind === "closed") return new RsoError(ClientErrorCode.Closed, "the client was closed");
    return undefined;
  }

  /** Starts connecting; after a stop starts again. */
  connect(): void {
    switch (this.#state.kind) {
      case "closed":
        throw new RsoError(ClientErrorCode.Closed, "the client was closed; create a new one");
      case "idle":
      case "stopped":
        this.#attempt = 0;
        this.#unopened = 0;
        this.#everConnected = false;
        this.#open();
    }
  }

  /** Closes the socket with `code`, for good. */
  close(code: number = CloseCode.Normal): void {
    if (this.#state.kind === "closed") return;
    this.#leave(code);
    this.#unwatch?.();
    this.#unwatch = undefined;
    this.#state = { kind: "closed" };
    this.#setStatus("closed", undefined);
  }

  /**
   * Tries now when waiting in a plain reconnect backoff (the browser came back online, the page became
   * visible); never cuts short the extra wait after a 4009 abuse close.
   */
  wake(): void {
    const s = this.#state;
    if (s.kind !== "waiting" || !s.wakeable) return;
    clearTimer(s.timer);
    s.wakeable = false;
    void this.#retry(false);
  }

  /** A jittered delay for the `attempt`-th retry of a request (at most 5 s). */
  retryDelay(attempt: number): number {
    return backoffDelay(attempt, this.#c.random, { ...this.#c.backoff, maxMs: 5_000 });
  }

  /** Queues a frame for the current connection; the frames of one tick go out as one message (§1.1). */
  write(frame: string): void {
    const conn = this.#state.kind === "connected" ? this.#state.conn : undefined;
    if (conn === undefined) return; // the owner sends everything unanswered again after the next hello
    conn.outbox.push(frame);
    if (conn.outbox.length === 1) microtask(() => this.#flushOutbox(conn));
  }

  // ---- the state machine ----

  #open(): void {
    this.#unwatch ??= onWakeSignals(() => this.wake());
    const Ctor = this.#c.WebSocket ?? globalWebSocket();
    if (Ctor === undefined) {
      return this.#stop(new RsoError(ClientErrorCode.NoWebSocket, "no WebSocket: pass options.WebSocket (in Node: import { WebSocket } from \"ws\")"));
    }
    // One server per attempt, in turn: a failed attempt or a lost connection moves on to the next.
    const urls = this.#c.urls;
    const url = urls[this.#nextURL]!;
    this.#nextURL = (this.#nextURL + 1) % urls.length;
    this.#url = url;
    let ws: WebSocketLike;
    try {
      ws = new Ctor(this.#c.socketURL(url));
    } catch (err) {
      return this.#stop(new ConnectionError(ClientErrorCode.BadUrl, `cannot open ${this.#c.name} on ${JSON.stringify(url)}`, { cause: err }));
    }
    const conn: Conn<H> = { ws, opened: false, hello: undefined, lastError: undefined, timers: new Set(), pongTimer: undefined, outbox: [] };
    this.#state = { kind: "connecting", conn };
    const live = (): boolean => this.#conn() === conn;
    ws.onopen = () => {
      if (!live()) return;
      conn.opened = true;
      this.#unopened = 0;
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
    const timeout = this.#c.timing.connectTimeoutMs;
    this.#after(conn, timeout, () => {
      this.#drop(conn, new ConnectionError(ClientErrorCode.Timeout, `no hello from the server within ${timeout} ms`));
    });
    this.#setStatus(this.#everConnected || this.#attempt > 0 ? "reconnecting" : "connecting", undefined);
  }

  #onHello(conn: Conn<H>, hello: H): void {
    conn.hello = hello;
    this.#hello = hello;
    this.#state = { kind: "connected", conn };
    this.#everConnected = true;
    this.#c.credentials.worked = true;
    this.#c.credentials.fresh = false;
    for (const t of conn.timers) clearTimer(t); // the connect timeout
    conn.timers.clear();
    this.#after(conn, this.#c.timing.stableAfterMs, () => {
      this.#attempt = 0;
    });
    this.#schedulePing(conn);
    this.#setStatus("connected", undefined);
    this.#c.onHello(hello);
  }

  /** The socket closed: decide from the close code (§1.9) whether to stop or when to retry. */
  #afterClose(conn: Conn<H>, ev: CloseEventLike): Next {
    if (!conn.opened) return this.#afterRefusal(conn);
    const action: CloseAction = closeAction(ev.code);
    switch (action) {
      case "stop":
        return { kind: "stop", error: ConnectionError.fromClose(ev.code, ev.reason) };
      case "new-token":
        if (this.#c.credentials.getToken === undefined) return { kind: "stop", error: ConnectionError.fromClose(ev.code, ev.reason) };
        return { kind: "retry", delayMs: 0, newToken: true };
      case "reconnect-soon":
        return { kind: "retry", delayMs: backoffDelay(0, this.#c.random, this.#c.backoff), newToken: false };
      case "reconnect-late":
        return { kind: "retry", delayMs: this.#c.timing.abuseDelayMs + this.#nextBackoff(), newToken: false, abuse: true };
      case "reconnect":
        return { kind: "retry", delayMs: this.#nextBackoff(), newToken: false };
    }
  }

  /**
   * The socket never opened. Node's `ws` says why ("Unexpected server response: 401", "connect
   * ECONNREFUSED"); browsers do not, and §1.1 says to treat a failed first connect after a token change as
   * a refused token. With several servers, one that is down looks the same to a browser: the token is
   * taken as refused only once every server failed in a row with it.
   */
  #afterRefusal(conn: Conn<H>): Next {
    const cred = this.#c.credentials;
    if (cred.token !== this.#unopenedToken) {
      this.#unopenedToken = cred.token;
      this.#unopened = 0;
    }
    this.#unopened++;
    const message = conn.lastError?.message;
    const known = typeof message === "string" && message !== "";
    const everyServer = this.#unopened >= this.#c.urls.length;
    const refused = known ? /\b401\b/.test(message) : cred.token !== undefined && !cred.worked && everyServer;
    if (!refused) return { kind: "retry", delayMs: this.#nextBackoff(), newToken: false };
    const error = new ConnectionError(
      ErrorCode.Unauthorized,
      known
        ? `the server refused the token: ${message}`
        : this.#c.urls.length > 1
          ? "could not connect to any server, and the token was never accepted: it may be refused"
          : "could not connect, and the token was never accepted: it may be refused",
      { closeCode: CloseCode.Abnormal, cause: conn.lastError?.error },
    );
    // A token fresh from getToken that is refused too: stop rather than loop.
    if (cred.getToken === undefined || (known && cred.fresh)) return { kind: "stop", error };
    return { kind: "retry", delayMs: known ? 0 : this.#nextBackoff(), newToken: true };
  }

  #nextBackoff(): number {
    return backoffDelay(this.#attempt++, this.#c.random, this.#c.backoff);
  }

  /** Ends `conn` (already closed, or dropped by us) and goes on as `next` says. */
  #lost(conn: Conn<H>, next: Next, reason: ConnectionError): void {
    const wasConnected = conn.hello !== undefined;
    this.#leave();
    if (wasConnected) this.#c.onDisconnected();
    if (next.kind === "stop") return this.#stop(next.error);
    const timer = setTimer(() => {
      const s = this.#state;
      if (s.kind !== "waiting" || s.timer !== timer) return;
      s.wakeable = false;
      void this.#retry(next.newToken);
    }, next.delayMs);
    this.#state = { kind: "waiting", timer, wakeable: !next.newToken && next.abuse !== true };
    this.#setStatus("reconnecting", reason);
  }

  async #retry(newToken: boolean): Promise<void> {
    const cred = this.#c.credentials;
    if (newToken && cred.getToken !== undefined) {
      const waiting = this.#state;
      let token: string;
      try {
        token = await cred.getToken();
        if (typeof token !== "string" || token === "") throw new TypeError("getToken returned no token");
      } catch (err) {
        if (this.#state === waiting) this.#stop(new RsoError(ClientErrorCode.TokenRefreshFailed, "getToken failed", { cause: err }));
        return;
      }
      if (this.#state !== waiting) return; // closed or restarted meanwhile
      cred.set(token);
      cred.fresh = true;
    }
    this.#open();
  }

  /** Drops a live connection ourselves (no pong, protocol error) and reconnects with backoff. */
  #drop(conn: Conn<H>, reason: RsoError): void {
    if (this.#conn() !== conn) return;
    const error = reason instanceof ConnectionError ? reason : new ConnectionError(reason.code, reason.message, { cause: reason });
    if (!(reason instanceof ConnectionError)) this.#c.onError(reason);
    this.#lost(conn, { kind: "retry", delayMs: this.#nextBackoff(), newToken: false }, error);
  }

  #stop(error: RsoError): void {
    this.#leave();
    this.#state = { kind: "stopped", error };
    const reason = error instanceof ConnectionError ? error : undefined;
    this.#setStatus("closed", reason);
    this.#c.onError(error);
    this.#c.onStopped(error);
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

  #conn(): Conn<H> | undefined {
    const s = this.#state;
    return s.kind === "connecting" || s.kind === "connected" ? s.conn : undefined;
  }

  #setStatus(status: Status, reason: ConnectionError | undefined): void {
    if (status === this.#status) return;
    this.#status = status;
    this.#c.onStatus(status, reason);
  }

  #after(conn: Conn<H>, ms: number, fn: () => void): void {
    const timer = setTimer(() => {
      conn.timers.delete(timer);
      if (this.#conn() === conn) fn();
    }, ms);
    conn.timers.add(timer);
  }

  #schedulePing(conn: Conn<H>): void {
    this.#after(conn, this.#c.timing.pingIntervalMs, () => {
      this.write(`{"op":"ping","id":${JSON.stringify(this.#c.nextId())}}`);
      conn.pongTimer = setTimer(() => {
        if (this.#conn() !== conn) return;
        const error = new ConnectionError(ClientErrorCode.Timeout, `no pong within ${this.#c.timing.pongTimeoutMs} ms`);
        this.#drop(conn, error);
      }, this.#c.timing.pongTimeoutMs);
    });
  }

  // ---- frames ----

  #receive(conn: Conn<H>, data: unknown): void {
    if (typeof data !== "string") {
      return this.#drop(conn, new ProtocolError(`server sent a binary message; ${this.#c.name} uses text messages only`));
    }
    let frames: F[];
    try {
      frames = this.#c.parse(data);
    } catch (err) {
      return this.#drop(conn, err instanceof RsoError ? err : new ProtocolError("unreadable message", { cause: err }));
    }
    for (const frame of frames) {
      if (this.#conn() !== conn) return; // a listener closed the client, or the connection was dropped
      this.#route(conn, frame);
    }
  }

  #route(conn: Conn<H>, frame: F): void {
    if (conn.hello === undefined) {
      const hello = this.#c.asHello(frame);
      if (hello !== undefined) return this.#onHello(conn, hello);
      if (this.#c.beforeHello?.(frame) === true) return;
      return this.#drop(conn, new ProtocolError(`server sent "${frame.op}" before hello`));
    }
    switch (frame.op) {
      case "hello":
        return; // only one is sent; a repeat carries nothing new
      case "pong":
        clearTimer(conn.pongTimer);
        conn.pongTimer = undefined;
        return this.#schedulePing(conn);
      default:
        return this.#c.onFrame(frame);
    }
  }

  #flushOutbox(conn: Conn<H>): void {
    if (this.#conn() !== conn || conn.ws.readyState !== OPEN) return;
    // A message may hold 16 × max_frame_bytes before the server closes the socket; stay well below.
    const budget = 4 * (conn.hello === undefined ? 65536 : this.#c.maxFrameBytes(conn.hello));
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
}
