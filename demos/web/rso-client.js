// Generated from sdk-ts by `npm run bundle` (do not edit; `npm run check-bundle` fails when it is stale).

// src/codes.ts
var commonErrorCodes = {
  BadJson: "bad_json",
  BadFrame: "bad_frame",
  UnknownOp: "unknown_op",
  FrameTooLarge: "frame_too_large",
  RateLimited: "rate_limited",
  Busy: "busy",
  /** The request id was used before for a different request: nothing was applied; use a new id. */
  IdReused: "id_reused",
  Unavailable: "unavailable",
  Internal: "internal"
};
var ErrorCode = {
  ...commonErrorCodes,
  BadName: "bad_name",
  ValueTooLarge: "value_too_large",
  TooManyChanges: "too_many_changes",
  TooManySlots: "too_many_slots",
  ObjectTooLarge: "object_too_large",
  TooManySubscriptions: "too_many_subscriptions",
  NotSubscribed: "not_subscribed",
  Forbidden: "forbidden",
  HookUnavailable: "hook_unavailable",
  /** Only in the JSON body of a refused upgrade (HTTP 401); browsers see close code 1006 instead. */
  Unauthorized: "unauthorized"
};
var retryableErrorCodes = /* @__PURE__ */ new Set([
  ErrorCode.Busy,
  ErrorCode.RateLimited,
  ErrorCode.Unavailable
]);
var ClientErrorCode = {
  /** The client or the object was closed by the application. */
  Closed: "closed",
  /** The server sent something that breaks the protocol; the SDK reconnects. */
  ProtocolError: "protocol_error",
  /** No pong (or no hello) in time; the SDK reconnects. */
  Timeout: "timeout",
  /** A value or argument cannot be sent as JSON. */
  InvalidValue: "invalid_value",
  /** Neither options.WebSocket nor a global WebSocket. */
  NoWebSocket: "no_websocket",
  /** The URL cannot be opened. */
  BadUrl: "bad_url",
  /** `getToken` threw or returned no token. */
  TokenRefreshFailed: "token_refresh_failed"
};
var CloseCode = {
  Normal: 1e3,
  UnsupportedData: 1003,
  Abnormal: 1006,
  TooBig: 1009,
  Internal: 1011,
  Restart: 1012,
  Unauthorized: 4001,
  TokenExpired: 4003,
  SlowConsumer: 4008,
  Abuse: 4009,
  PongTimeout: 4010,
  Operator: 4011
};
var closeCodeNames = {
  [CloseCode.Normal]: "normal",
  [CloseCode.UnsupportedData]: "unsupported_data",
  [CloseCode.Abnormal]: "connection_lost",
  [CloseCode.TooBig]: "message_too_big",
  [CloseCode.Internal]: "server_error",
  [CloseCode.Restart]: "server_restart",
  [CloseCode.Unauthorized]: "unauthorized",
  [CloseCode.TokenExpired]: "token_expired",
  [CloseCode.SlowConsumer]: "slow_consumer",
  [CloseCode.Abuse]: "abuse",
  [CloseCode.PongTimeout]: "pong_timeout",
  [CloseCode.Operator]: "operator_disconnect"
};
var clientDropCloseCode = 4e3;
function closeAction(code) {
  switch (code) {
    case CloseCode.Normal:
    case CloseCode.UnsupportedData:
    // the client sent a binary frame: a bug that reconnecting repeats
    case CloseCode.Unauthorized:
    case CloseCode.Operator:
      return "stop";
    case CloseCode.TokenExpired:
      return "new-token";
    case CloseCode.Restart:
      return "reconnect-soon";
    case CloseCode.Abuse:
      return "reconnect-late";
    default:
      return "reconnect";
  }
}
var SyncCode = {
  Clear: "clear",
  Change: "change",
  Delete: "delete",
  Success: "success",
  Reject: "reject"
};
var ChatErrorCode = {
  ...commonErrorCodes,
  MessageTooLarge: "message_too_large",
  UnknownUser: "unknown_user",
  Blocked: "blocked",
  NotFriends: "not_friends",
  Offline: "offline",
  BadSeq: "bad_seq",
  NotFound: "not_found",
  TooManyFriends: "too_many_friends",
  /** TCP only (the auth frame was refused); on the WebSocket a refused token is an HTTP 401. */
  Unauthorized: "unauthorized",
  /** TCP only, like `unauthorized`. */
  TokenExpired: "token_expired"
};
var retryableChatErrorCodes = retryableErrorCodes;

// src/errors.ts
var RsoError = class extends Error {
  name = "RsoError";
  code;
  constructor(code, message, options) {
    super(message, options);
    this.code = code;
  }
};
var ServerError = class extends RsoError {
  name = "ServerError";
  /** The refused frame's request id, when the server could read it. */
  id;
  /** The object the refused frame addressed, when the server could read it. */
  obj;
  persistent;
  constructor(code, message, info = {}) {
    super(code, message);
    this.id = info.id;
    this.obj = info.obj;
    this.persistent = info.persistent;
  }
};
var ConnectionError = class _ConnectionError extends RsoError {
  name = "ConnectionError";
  closeCode;
  reason;
  constructor(code, message, info = {}) {
    super(code, message, info.cause === void 0 ? void 0 : { cause: info.cause });
    this.closeCode = info.closeCode;
    this.reason = info.reason ?? "";
  }
  /** The error for a close event with this code and reason. */
  static fromClose(closeCode, reason) {
    const code = closeCodeNames[closeCode] ?? `close_${closeCode}`;
    const why = reason === "" ? "" : `: ${reason}`;
    return new _ConnectionError(code, `connection closed with code ${closeCode} (${code})${why}`, { closeCode, reason });
  }
};
var ProtocolError = class extends RsoError {
  name = "ProtocolError";
  constructor(message, options) {
    super("protocol_error", message, options);
  }
};

// src/host.ts
var OPEN = 1;
var host = globalThis;
function onWakeSignals(wake) {
  const win = globalThis;
  const doc = globalThis.document;
  const online = () => wake();
  const visible = () => {
    if (doc?.visibilityState === "visible") wake();
  };
  const onWin = typeof win.addEventListener === "function";
  const onDoc = doc !== void 0 && typeof doc.addEventListener === "function";
  if (onWin) win.addEventListener("online", online);
  if (onDoc) doc.addEventListener("visibilitychange", visible);
  return () => {
    if (onWin) win.removeEventListener?.("online", online);
    if (onDoc) doc.removeEventListener?.("visibilitychange", visible);
  };
}
var setTimer = (fn, ms) => host.setTimeout(fn, ms);
var clearTimer = (handle) => host.clearTimeout(handle);
var microtask = (fn) => host.queueMicrotask(fn);
var makeURL = (url) => new host.URL(url);
var globalWebSocket = () => host.WebSocket;
var encoder = new host.TextEncoder();
var utf8Length = (s) => encoder.encode(s).length;
var alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
function randomString(n) {
  const bytes = new Uint8Array(n);
  if (host.crypto !== void 0) host.crypto.getRandomValues(bytes);
  else for (let i = 0; i < n; i++) bytes[i] = Math.floor(Math.random() * 256);
  let s = "";
  for (const b of bytes) s += alphabet[b % alphabet.length];
  return s;
}

// src/connection.ts
var defaultBackoff = { baseMs: 250, factor: 2, maxMs: 15e3 };
var defaultTiming = {
  pingIntervalMs: 2e4,
  pongTimeoutMs: 1e4,
  connectTimeoutMs: 1e4,
  stableAfterMs: 1e4,
  abuseDelayMs: 5e3
};
function backoffDelay(attempt, random, o = defaultBackoff) {
  const ceiling = Math.min(o.maxMs, o.baseMs * o.factor ** attempt);
  return Math.floor(random() * ceiling);
}
var Credentials = class {
  constructor(token, getToken) {
    this.getToken = getToken;
    this.token = token;
  }
  getToken;
  token;
  worked = false;
  fresh = false;
  set(token) {
    this.token = token;
    this.worked = false;
    this.fresh = false;
  }
};
var Connection = class {
  #c;
  #state = { kind: "idle" };
  #status = "idle";
  #everConnected = false;
  #attempt = 0;
  /** The index in urls of the server for the next attempt. */
  #nextURL = 0;
  /** The server of the current or last attempt. */
  #url;
  /** Attempts in a row that failed before their socket opened, all with the token #unopenedToken. */
  #unopened = 0;
  #unopenedToken;
  #hello;
  /** Removes the online / visibilitychange listeners; set while they are installed. */
  #unwatch;
  constructor(config) {
    this.#c = config;
  }
  get status() {
    return this.#status;
  }
  /** The server (one of the config's urls) of the current or last attempt; undefined before the first. */
  get url() {
    return this.#url;
  }
  /** The hello of the current or last connection. */
  get hello() {
    return this.#hello;
  }
  /** The current connection got its hello: frames written now go out. */
  get ready() {
    return this.#state.kind === "connected";
  }
  get kind() {
    return this.#state.kind;
  }
  /** Why the connection stopped, while it is stopped; a `closed` error after close(). */
  get stoppedError() {
    const s = this.#state;
    if (s.kind === "stopped") return s.error;
    if (s.kind === "closed") return new RsoError(ClientErrorCode.Closed, "the client was closed");
    return void 0;
  }
  /** Starts connecting; after a stop starts again. */
  connect() {
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
  close(code = CloseCode.Normal) {
    if (this.#state.kind === "closed") return;
    this.#leave(code);
    this.#unwatch?.();
    this.#unwatch = void 0;
    this.#state = { kind: "closed" };
    this.#setStatus("closed", void 0);
  }
  /**
   * Tries now when waiting in a plain reconnect backoff (the browser came back online, the page became
   * visible); never cuts short the extra wait after a 4009 abuse close.
   */
  wake() {
    const s = this.#state;
    if (s.kind !== "waiting" || !s.wakeable) return;
    clearTimer(s.timer);
    s.wakeable = false;
    void this.#retry(false);
  }
  /** A jittered delay for the `attempt`-th retry of a request (at most 5 s). */
  retryDelay(attempt) {
    return backoffDelay(attempt, this.#c.random, { ...this.#c.backoff, maxMs: 5e3 });
  }
  /** Queues a frame for the current connection; the frames of one tick go out as one message (§1.1). */
  write(frame) {
    const conn = this.#state.kind === "connected" ? this.#state.conn : void 0;
    if (conn === void 0) return;
    conn.outbox.push(frame);
    if (conn.outbox.length === 1) microtask(() => this.#flushOutbox(conn));
  }
  // ---- the state machine ----
  #open() {
    this.#unwatch ??= onWakeSignals(() => this.wake());
    const Ctor = this.#c.WebSocket ?? globalWebSocket();
    if (Ctor === void 0) {
      return this.#stop(new RsoError(ClientErrorCode.NoWebSocket, 'no WebSocket: pass options.WebSocket (in Node: import { WebSocket } from "ws")'));
    }
    const urls = this.#c.urls;
    const url = urls[this.#nextURL];
    this.#nextURL = (this.#nextURL + 1) % urls.length;
    this.#url = url;
    let ws;
    try {
      ws = new Ctor(this.#c.socketURL(url));
    } catch (err) {
      return this.#stop(new ConnectionError(ClientErrorCode.BadUrl, `cannot open ${this.#c.name} on ${JSON.stringify(url)}`, { cause: err }));
    }
    const conn = { ws, opened: false, hello: void 0, lastError: void 0, timers: /* @__PURE__ */ new Set(), pongTimer: void 0, outbox: [] };
    this.#state = { kind: "connecting", conn };
    const live = () => this.#conn() === conn;
    ws.onopen = () => {
      if (!live()) return;
      conn.opened = true;
      this.#unopened = 0;
    };
    ws.onerror = (ev) => {
      if (live()) conn.lastError = ev;
    };
    ws.onclose = (ev) => {
      if (live()) this.#lost(conn, this.#afterClose(conn, ev), ConnectionError.fromClose(ev.code, ev.reason));
    };
    ws.onmessage = (ev) => {
      if (live()) this.#receive(conn, ev.data);
    };
    const timeout = this.#c.timing.connectTimeoutMs;
    this.#after(conn, timeout, () => {
      this.#drop(conn, new ConnectionError(ClientErrorCode.Timeout, `no hello from the server within ${timeout} ms`));
    });
    this.#setStatus(this.#everConnected || this.#attempt > 0 ? "reconnecting" : "connecting", void 0);
  }
  #onHello(conn, hello) {
    conn.hello = hello;
    this.#hello = hello;
    this.#state = { kind: "connected", conn };
    this.#everConnected = true;
    this.#c.credentials.worked = true;
    this.#c.credentials.fresh = false;
    for (const t of conn.timers) clearTimer(t);
    conn.timers.clear();
    this.#after(conn, this.#c.timing.stableAfterMs, () => {
      this.#attempt = 0;
    });
    this.#schedulePing(conn);
    this.#setStatus("connected", void 0);
    this.#c.onHello(hello);
  }
  /** The socket closed: decide from the close code (§1.9) whether to stop or when to retry. */
  #afterClose(conn, ev) {
    if (!conn.opened) return this.#afterRefusal(conn);
    const action = closeAction(ev.code);
    switch (action) {
      case "stop":
        return { kind: "stop", error: ConnectionError.fromClose(ev.code, ev.reason) };
      case "new-token":
        if (this.#c.credentials.getToken === void 0) return { kind: "stop", error: ConnectionError.fromClose(ev.code, ev.reason) };
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
  #afterRefusal(conn) {
    const cred = this.#c.credentials;
    if (cred.token !== this.#unopenedToken) {
      this.#unopenedToken = cred.token;
      this.#unopened = 0;
    }
    this.#unopened++;
    const message = conn.lastError?.message;
    const known = typeof message === "string" && message !== "";
    const everyServer = this.#unopened >= this.#c.urls.length;
    const refused = known ? /\b401\b/.test(message) : cred.token !== void 0 && !cred.worked && everyServer;
    if (!refused) return { kind: "retry", delayMs: this.#nextBackoff(), newToken: false };
    const error = new ConnectionError(
      ErrorCode.Unauthorized,
      known ? `the server refused the token: ${message}` : this.#c.urls.length > 1 ? "could not connect to any server, and the token was never accepted: it may be refused" : "could not connect, and the token was never accepted: it may be refused",
      { closeCode: CloseCode.Abnormal, cause: conn.lastError?.error }
    );
    if (cred.getToken === void 0 || known && cred.fresh) return { kind: "stop", error };
    return { kind: "retry", delayMs: known ? 0 : this.#nextBackoff(), newToken: true };
  }
  #nextBackoff() {
    return backoffDelay(this.#attempt++, this.#c.random, this.#c.backoff);
  }
  /** Ends `conn` (already closed, or dropped by us) and goes on as `next` says. */
  #lost(conn, next, reason) {
    const wasConnected = conn.hello !== void 0;
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
  async #retry(newToken) {
    const cred = this.#c.credentials;
    if (newToken && cred.getToken !== void 0) {
      const waiting = this.#state;
      let token;
      try {
        token = await cred.getToken();
        if (typeof token !== "string" || token === "") throw new TypeError("getToken returned no token");
      } catch (err) {
        if (this.#state === waiting) this.#stop(new RsoError(ClientErrorCode.TokenRefreshFailed, "getToken failed", { cause: err }));
        return;
      }
      if (this.#state !== waiting) return;
      cred.set(token);
      cred.fresh = true;
    }
    this.#open();
  }
  /** Drops a live connection ourselves (no pong, protocol error) and reconnects with backoff. */
  #drop(conn, reason) {
    if (this.#conn() !== conn) return;
    const error = reason instanceof ConnectionError ? reason : new ConnectionError(reason.code, reason.message, { cause: reason });
    if (!(reason instanceof ConnectionError)) this.#c.onError(reason);
    this.#lost(conn, { kind: "retry", delayMs: this.#nextBackoff(), newToken: false }, error);
  }
  #stop(error) {
    this.#leave();
    this.#state = { kind: "stopped", error };
    const reason = error instanceof ConnectionError ? error : void 0;
    this.#setStatus("closed", reason);
    this.#c.onError(error);
    this.#c.onStopped(error);
  }
  /** Leaves the current state: closes its socket (silencing it) and clears its timers. */
  #leave(code = clientDropCloseCode) {
    const state = this.#state;
    if (state.kind === "waiting") clearTimer(state.timer);
    if (state.kind !== "connecting" && state.kind !== "connected") return;
    const { conn } = state;
    for (const t of conn.timers) clearTimer(t);
    conn.timers.clear();
    clearTimer(conn.pongTimer);
    const ignore = () => {
    };
    conn.ws.onopen = conn.ws.onmessage = conn.ws.onclose = conn.ws.onerror = ignore;
    try {
      conn.ws.close(code);
    } catch {
    }
    this.#state = { kind: "idle" };
  }
  #conn() {
    const s = this.#state;
    return s.kind === "connecting" || s.kind === "connected" ? s.conn : void 0;
  }
  #setStatus(status, reason) {
    if (status === this.#status) return;
    this.#status = status;
    this.#c.onStatus(status, reason);
  }
  #after(conn, ms, fn) {
    const timer = setTimer(() => {
      conn.timers.delete(timer);
      if (this.#conn() === conn) fn();
    }, ms);
    conn.timers.add(timer);
  }
  #schedulePing(conn) {
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
  #receive(conn, data) {
    if (typeof data !== "string") {
      return this.#drop(conn, new ProtocolError(`server sent a binary message; ${this.#c.name} uses text messages only`));
    }
    let frames;
    try {
      frames = this.#c.parse(data);
    } catch (err) {
      return this.#drop(conn, err instanceof RsoError ? err : new ProtocolError("unreadable message", { cause: err }));
    }
    for (const frame of frames) {
      if (this.#conn() !== conn) return;
      this.#route(conn, frame);
    }
  }
  #route(conn, frame) {
    if (conn.hello === void 0) {
      const hello = this.#c.asHello(frame);
      if (hello !== void 0) return this.#onHello(conn, hello);
      if (this.#c.beforeHello?.(frame) === true) return;
      return this.#drop(conn, new ProtocolError(`server sent "${frame.op}" before hello`));
    }
    switch (frame.op) {
      case "hello":
        return;
      // only one is sent; a repeat carries nothing new
      case "pong":
        clearTimer(conn.pongTimer);
        conn.pongTimer = void 0;
        return this.#schedulePing(conn);
      default:
        return this.#c.onFrame(frame);
    }
  }
  #flushOutbox(conn) {
    if (this.#conn() !== conn || conn.ws.readyState !== OPEN) return;
    const budget = 4 * (conn.hello === void 0 ? 65536 : this.#c.maxFrameBytes(conn.hello));
    let batch = [];
    let bytes = 0;
    const out = [];
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
};

// src/emitter.ts
var EventSource = class {
  #listeners = {};
  /** Calls `listener` on every `event` until the returned function is called. */
  on(event, listener) {
    const set = this.#listeners[event] ??= /* @__PURE__ */ new Set();
    const entry = (...args) => listener(...args);
    set.add(entry);
    return () => {
      set.delete(entry);
    };
  }
  has(event) {
    return (this.#listeners[event]?.size ?? 0) > 0;
  }
  /**
   * Calls the listeners in the order they subscribed. A listener that throws stops neither the others nor
   * the SDK's bookkeeping: its error is rethrown on a microtask (uncaught in Node, logged by browsers).
   */
  emit(event, ...args) {
    const set = this.#listeners[event];
    if (set === void 0) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (err) {
        microtask(() => {
          throw err;
        });
      }
    }
  }
};

// src/frames.ts
var isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
function parseMessage(message) {
  return splitMessage(message, parseFrame);
}
function splitMessage(message, parse) {
  const frames = [];
  for (const piece of message.split("\n")) {
    if (piece === "") continue;
    const frame = parse(piece);
    if (frame !== void 0) frames.push(frame);
  }
  return frames;
}
function frameRoot(text) {
  let root;
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
function parseFrame(text) {
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
        changes: f.entries()
      };
    case "message":
      return {
        op,
        obj: f.str("obj"),
        persistent: f.bool("persistent"),
        handler: f.str("handler"),
        args: f.array("args"),
        from: f.str("from"),
        id: f.optStr("id")
      };
    case "error":
      return {
        op,
        code: f.str("code"),
        message: f.str("message"),
        id: f.optStr("id"),
        obj: f.optStr("obj"),
        persistent: f.bool("persistent")
      };
    case "pong":
      return { op, id: f.optStr("id") };
    default:
      return void 0;
  }
}
var Fields = class {
  constructor(op, o) {
    this.op = op;
    this.o = o;
  }
  op;
  o;
  fail(field, want) {
    throw new ProtocolError(`server sent a ${this.op} frame whose field "${field}" is not ${want}`);
  }
  str(field) {
    const v = this.o[field];
    return typeof v === "string" ? v : this.fail(field, "a string");
  }
  optStr(field) {
    const v = this.o[field];
    return v === void 0 || typeof v === "string" ? v : this.fail(field, "a string");
  }
  /** Absent means false (§1.2: `persistent` false or absent). */
  bool(field) {
    const v = this.o[field];
    return v === void 0 || typeof v === "boolean" ? v === true : this.fail(field, "true or false");
  }
  number(field, o = this.o) {
    const v = o[field];
    return typeof v === "number" && Number.isFinite(v) ? v : this.fail(field, "a number");
  }
  version() {
    const v = this.o["version"];
    return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : this.fail("version", "an integer in [0, 2^53)");
  }
  array(field) {
    const v = this.o[field];
    return Array.isArray(v) ? v : this.fail(field, "an array");
  }
  entries() {
    const out = [];
    for (const e of this.array("changes")) {
      if (!isObject(e)) this.fail("changes", "an array of objects");
      const entry = this.entry(e);
      if (entry !== void 0) out.push(entry);
    }
    return out;
  }
  entry(e) {
    const code = e["code"];
    if (typeof code !== "string") return this.fail("changes.code", "a string");
    if (code === SyncCode.Clear) return { code };
    const name = e["name"];
    const known = code === SyncCode.Change || code === SyncCode.Delete || code === SyncCode.Success || code === SyncCode.Reject;
    if (!known) return void 0;
    if (typeof name !== "string") return this.fail("changes.name", "a string");
    switch (code) {
      case SyncCode.Change: {
        if (!("value" in e)) return this.fail("changes.value", "present in a change");
        const c = { code, name, value: e["value"] };
        if ("oldValue" in e) c.oldValue = e["oldValue"];
        return c;
      }
      case SyncCode.Delete: {
        const c = { code, name };
        if ("oldValue" in e) c.oldValue = e["oldValue"];
        return c;
      }
      case SyncCode.Success:
        return { code, name };
      case SyncCode.Reject: {
        const c = { code, name };
        if ("value" in e) c.value = e["value"];
        const reason = e["reason"];
        if (reason !== void 0) c.reason = typeof reason === "string" ? reason : this.fail("changes.reason", "a string");
        return c;
      }
    }
  }
};
function parseLimits(f) {
  const l = f.o["limits"];
  if (!isObject(l)) return f.fail("limits", "an object");
  const n = (field) => f.number(field, l);
  return {
    maxFrameBytes: n("max_frame_bytes"),
    maxValueBytes: n("max_value_bytes"),
    maxSlots: n("max_slots"),
    maxObjectBytes: n("max_object_bytes"),
    maxChanges: n("max_changes"),
    maxSubscriptions: n("max_subscriptions"),
    maxNameBytes: n("max_name_bytes"),
    framesPerSecond: n("frames_per_second"),
    resyncWindow: n("resync_window")
  };
}
var head = (op, obj, persistent) => `{"op":"${op}","obj":${JSON.stringify(obj)},"persistent":${persistent}`;
function subFrame(id, obj, persistent, version, epoch) {
  let s = `${head("sub", obj, persistent)},"id":${JSON.stringify(id)}`;
  if (version > 0 || epoch !== "") s += `,"version":${version}`;
  if (epoch !== "") s += `,"epoch":${JSON.stringify(epoch)}`;
  return s + "}";
}
function unsubFrame(obj, persistent) {
  return head("unsub", obj, persistent) + "}";
}
function updateItem(name, base, value) {
  const item = `{"name":${JSON.stringify(name)},"base":${base}`;
  return value === void 0 ? `${item},"delete":true}` : `${item},"value":${value}}`;
}
function updateFrame(id, obj, persistent, items, epoch = "") {
  const ep = epoch === "" ? "" : `,"epoch":${JSON.stringify(epoch)}`;
  return `${head("update", obj, persistent)},"id":${JSON.stringify(id)}${ep},"changes":[${items.join(",")}]}`;
}
function sendFrame(id, obj, persistent, handler, args) {
  return `${head("send", obj, persistent)},"id":${JSON.stringify(id)},"handler":${JSON.stringify(handler)},"args":${args}}`;
}

// src/conversations.ts
var markKeys = ["last", "delivered", "read", "peerDelivered", "peerRead"];
var Conversations = class {
  #hooks;
  #options;
  #convs = /* @__PURE__ */ new Map();
  #synced = false;
  #dirty = /* @__PURE__ */ new Set();
  constructor(hooks, options) {
    this.#hooks = hooks;
    this.#options = options;
  }
  /** A sync was answered once: conversations have their baselines. */
  get synced() {
    return this.#synced;
  }
  list() {
    return [...this.#convs.values()].map(snapshot);
  }
  get(peer) {
    const c = this.#convs.get(peer);
    return c === void 0 ? void 0 : snapshot(c);
  }
  /**
   * What a sync asks for: per conversation, the last `seq` this client has; undefined before the first
   * sync, or when it would take more than `maxBytes` (without it the server starts at the delivered marks).
   */
  after(maxBytes) {
    if (!this.#synced) return void 0;
    const after = {};
    let bytes = 0;
    for (const c of this.#convs.values()) {
      after[c.peer] = c.have;
      bytes += c.peer.length + 16;
    }
    return bytes > maxBytes ? void 0 : after;
  }
  /** Takes a sync answer; true when another sync should follow (some said "more" and progress was made). */
  sync(convs) {
    let progress = false;
    for (const w of convs) {
      const first = w.messages[0]?.seq;
      const c = this.#conv(w.peer, first === void 0 ? w.delivered : Math.min(w.delivered, first - 1));
      const have = c.have;
      c.more = w.more;
      for (const m of w.messages) this.add(m);
      this.#marks(c, { last: w.last, delivered: w.delivered, read: w.read, peerDelivered: w.peerDelivered, peerRead: w.peerRead });
      if (w.more && c.have > have) progress = true;
    }
    this.#synced = true;
    if (progress) return true;
    for (const c of this.#convs.values()) {
      c.more = false;
      this.#checkGap(c, 0);
    }
    return false;
  }
  /** Takes one stored message from anywhere (live, sync, history, a `sent` answer): hands it over once, in order. */
  add(m) {
    const me = this.#hooks.user();
    if (m.from === me && m.cid !== "" && this.#hooks.claim(m)) return;
    const message = toChat(m, me ?? "");
    const c = this.#conv(message.peer, 0);
    if (m.seq > c.last) {
      c.last = m.seq;
      this.#touch(c);
    }
    if (m.seq <= c.have || c.buffer.has(m.seq)) return;
    c.buffer.set(m.seq, message);
    this.#drain(c);
  }
  /** A page of history the application asked for: its messages not handed over yet are handed over (once). */
  history(peer, last, messages) {
    const c = this.#convs.get(peer);
    if (c === void 0) return;
    this.#marks(c, { last });
    if (this.#synced) for (const m of messages) this.add(m);
  }
  /** The answer to a `fetchGap`. */
  gapFilled(peer, last, messages) {
    const c = this.#convs.get(peer);
    if (c === void 0) return;
    const have = c.filling ?? c.have;
    c.filling = void 0;
    this.#marks(c, { last });
    for (const m of messages) this.add(m);
    if (c.have > have) this.#checkGap(c, 0);
  }
  /** A `fetchGap` failed: the next sync or gap check tries again. */
  gapFailed(peer) {
    const c = this.#convs.get(peer);
    if (c !== void 0) c.filling = void 0;
  }
  /** A receipt from the server (§3.4): yours (`mine`, from another device) or the partner's. */
  receipt(peer, mine, kind, seq) {
    const c = this.#synced ? this.#conv(peer, 0) : this.#convs.get(peer);
    if (c === void 0) return;
    const read = kind === "read";
    if (mine) this.#marks(c, read ? { read: seq, delivered: seq } : { delivered: seq });
    else this.#marks(c, read ? { peerRead: seq, peerDelivered: seq } : { peerDelivered: seq });
    this.#checkGap(c, this.#options.gapWaitMs);
  }
  /** The server confirmed a receipt of yours. */
  ownMark(peer, kind, seq) {
    const c = this.#convs.get(peer);
    if (c !== void 0) this.#marks(c, kind === "read" ? { read: seq, delivered: seq } : { delivered: seq });
  }
  /** The automatic delivered receipts to send now, each asked for once (until `deliveredFailed`). */
  takeDelivered() {
    if (!this.#options.autoDelivered) return [];
    const out = [];
    for (const c of this.#convs.values()) {
      if (c.handed <= Math.max(c.delivered, c.deliveredAsked)) continue;
      c.deliveredAsked = c.handed;
      out.push({ peer: c.peer, seq: c.handed });
    }
    return out;
  }
  /** A delivered receipt from `takeDelivered` was not stored: it is due again later. */
  deliveredFailed(peer, seq) {
    const c = this.#convs.get(peer);
    if (c !== void 0 && c.deliveredAsked === seq) c.deliveredAsked = c.delivered;
  }
  /** The connection was lost: pending gap checks and fills are dropped (the next login's sync starts from `have`). */
  disconnected() {
    for (const c of this.#convs.values()) {
      clearTimer(c.gapTimer);
      c.gapTimer = void 0;
      c.filling = void 0;
    }
  }
  /** Stops every timer, for good. */
  close() {
    for (const c of this.#convs.values()) clearTimer(c.gapTimer);
  }
  #conv(peer, have) {
    let c = this.#convs.get(peer);
    if (c === void 0) {
      c = {
        peer,
        last: have,
        delivered: 0,
        read: 0,
        peerDelivered: 0,
        peerRead: 0,
        have,
        buffer: /* @__PURE__ */ new Map(),
        handed: have,
        deliveredAsked: 0,
        more: false,
        gapTimer: void 0,
        filling: void 0
      };
      this.#convs.set(peer, c);
      this.#touch(c);
    }
    return c;
  }
  #drain(c) {
    for (; ; ) {
      const m = c.buffer.get(c.have + 1);
      if (m === void 0) break;
      c.buffer.delete(m.seq);
      c.have = m.seq;
      if (this.#hooks.hand(m)) c.handed = m.seq;
    }
    if (this.#options.autoDelivered && c.handed > Math.max(c.delivered, c.deliveredAsked)) this.#hooks.deliveredDue();
    this.#checkGap(c, this.#options.gapWaitMs);
  }
  /** A gap (a message above one missing, or `last` beyond what was handed over) is filled from history. */
  #checkGap(c, delayMs) {
    if (!this.#synced || c.more || c.filling !== void 0 || c.gapTimer !== void 0) return;
    if (c.buffer.size === 0 && c.have >= c.last) return;
    c.gapTimer = setTimer(() => {
      c.gapTimer = void 0;
      this.#fillGap(c);
    }, delayMs);
  }
  #fillGap(c) {
    if (c.filling !== void 0 || c.more) return;
    const low = c.have + 1;
    const upper = c.buffer.size > 0 ? Math.min(...c.buffer.keys()) : c.last + 1;
    if (upper <= low) return;
    const before = Math.min(upper, low + this.#options.historyLimit());
    const have = c.have;
    if (this.#hooks.fetchGap(c.peer, before, before - low)) c.filling = have;
  }
  /** Raises marks (they only move forward). */
  #marks(c, m) {
    let changed = false;
    for (const key of markKeys) {
      const v = m[key];
      if (v !== void 0 && v > c[key]) {
        c[key] = v;
        changed = true;
      }
    }
    if (changed) this.#touch(c);
  }
  /** Tells `changed` of `c` once, after the current frame. */
  #touch(c) {
    if (this.#dirty.size === 0) {
      microtask(() => {
        const dirty = [...this.#dirty];
        this.#dirty.clear();
        for (const d of dirty) this.#hooks.changed(snapshot(d));
      });
    }
    this.#dirty.add(c);
  }
};
function toChat(m, me) {
  const mine = m.from === me;
  return { peer: mine ? m.to : m.from, seq: m.seq, from: m.from, to: m.to, id: m.cid, ts: m.ts, body: m.body, mine };
}
function snapshot(c) {
  return { peer: c.peer, last: c.last, delivered: c.delivered, read: c.read, peerDelivered: c.peerDelivered, peerRead: c.peerRead };
}

// src/requests.ts
function requestTracker(nextId) {
  const entries = /* @__PURE__ */ new Map();
  const take = (e) => {
    if (entries.get(e.id) !== e) return false;
    entries.delete(e.id);
    clearTimer(e.timer);
    e.timer = void 0;
    return true;
  };
  const reject = (request, error) => {
    const e = entries.get(request.id);
    if (e === request && take(e)) e.fail(error);
  };
  return {
    get size() {
      return entries.size;
    },
    open(spec, answer) {
      const id = spec.id ?? nextId();
      let request;
      const promise = new Promise((resolve, reject2) => {
        request = {
          id,
          frame: spec.frame(id),
          durable: spec.durable,
          to: spec.to,
          gen: -1,
          attempt: 0,
          timer: void 0,
          get retrying() {
            return this.timer !== void 0;
          },
          answer: (reply) => resolve(answer(reply)),
          fail: reject2
        };
      });
      entries.set(id, request);
      return { request, promise };
    },
    get: (id) => entries.get(id),
    list: () => [...entries.values()],
    resolve(id, reply) {
      const e = entries.get(id);
      if (e === void 0 || !take(e)) return false;
      try {
        e.answer(reply);
      } catch (err) {
        e.fail(err instanceof RsoError ? err : new ProtocolError("unreadable answer", { cause: err }));
      }
      return true;
    },
    reject,
    rejectAll(error) {
      for (const e of [...entries.values()]) if (take(e)) e.fail(error);
    },
    retry(request, delayFor, send) {
      const e = entries.get(request.id);
      if (e !== request) return;
      e.gen = -1;
      clearTimer(e.timer);
      const timer = setTimer(() => {
        if (e.timer !== timer) return;
        e.timer = void 0;
        if (entries.get(e.id) === e) send();
      }, delayFor(e.attempt++));
      e.timer = timer;
    }
  };
}

// src/relayframes.ts
var defaultRelayLimits = {
  duplicateWindowMs: 6e5,
  framesPerSecond: 50,
  friendsOnly: false,
  historyLimit: 50,
  maxFrameBytes: 65536,
  maxHistoryLimit: 200,
  maxMessageBytes: 16384,
  messagesPerSecond: 20,
  presenceGraceMs: 5e3,
  syncMaxMessages: 500
};
function parseRelayMessage(message) {
  return splitMessage(message, (piece) => piece === "\r" ? void 0 : parseRelayFrame(piece));
}
function parseRelayFrame(text) {
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
      const presence = f.o["presence"] === void 0 ? [] : f.objects("presence").map((p) => f.presenceItem(p));
      const lists = notModified ? void 0 : { friends: f.strings("friends"), incoming: f.strings("incoming"), outgoing: f.strings("outgoing"), blocked: f.strings("blocked") };
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
      return void 0;
  }
}
var RelayFields = class extends Fields {
  /** A whole number ≥ 0 (sequences, marks); absent is 0 where `optional`. */
  seq(field, o = this.o, optional = false) {
    const v = o[field];
    if (v === void 0 && optional) return 0;
    return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : this.fail(field, "a whole number");
  }
  objects(field) {
    const v = this.o[field];
    if (v === void 0) return [];
    if (!Array.isArray(v) || !v.every(isObject)) return this.fail(field, "an array of objects");
    return v;
  }
  strings(field) {
    const v = this.o[field];
    if (v === void 0 || v === null) return [];
    if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) return this.fail(field, "an array of strings");
    return [...v];
  }
  message(o) {
    const str = (field) => {
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
      body: o["body"]
    };
  }
  messages(o) {
    const v = o["messages"];
    if (v === void 0 || v === null) return [];
    if (!Array.isArray(v) || !v.every(isObject)) return this.fail("messages", "an array of objects");
    return v.map((m) => this.message(m));
  }
  conversation(c) {
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
      more: c["more"] === true
    };
  }
  presenceItem(p) {
    const user = p["user"];
    const status = p["status"];
    if (typeof user !== "string") return this.fail("user", "a string");
    if (status !== "online" && status !== "away" && status !== "offline") return this.fail("status", `"online", "away" or "offline"`);
    return { user, status, rev: this.seq("rev", p, true) };
  }
  limits() {
    const l = this.o["limits"];
    if (!isObject(l)) return this.fail("limits", "an object");
    const n = (field, def) => {
      const v = l[field];
      if (v === void 0) return def;
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
      syncMaxMessages: n("sync_max_messages", d.syncMaxMessages)
    };
  }
};
var q = JSON.stringify;
function chatSendFrame(id, to, body) {
  return `{"op":"send","id":${q(id)},"to":${q(to)},"body":${body}}`;
}
function receiptFrame(id, peer, kind, seq) {
  return `{"op":"receipt","id":${q(id)},"peer":${q(peer)},"kind":"${kind}","seq":${seq}}`;
}
function chatSyncFrame(id, after, limit) {
  let s = `{"op":"sync","id":${q(id)}`;
  if (after !== void 0 && Object.keys(after).length > 0) s += `,"after":${q(after)}`;
  if (limit !== void 0) s += `,"limit":${limit}`;
  return s + "}";
}
function historyFrame(id, peer, before, limit) {
  let s = `{"op":"history","id":${q(id)},"peer":${q(peer)}`;
  if (before !== void 0) s += `,"before":${before}`;
  if (limit !== void 0) s += `,"limit":${limit}`;
  return s + "}";
}
function friendsFrame(id, hash) {
  return hash === void 0 ? `{"op":"friends","id":${q(id)}}` : `{"op":"friends","id":${q(id)},"hash":${q(hash)}}`;
}
function friendFrame(id, action, user) {
  return `{"op":"friend","id":${q(id)},"action":"${action}","user":${q(user)}}`;
}
function presenceFrame(id, status) {
  return `{"op":"presence","id":${q(id)},"status":"${status}"}`;
}
function signalFrame(id, to, data, device) {
  const d = device === void 0 ? "" : `,"device":${q(device)}`;
  return `{"op":"signal","id":${q(id)},"to":${q(to)}${d},"data":${data}}`;
}

// src/relay.ts
var answerError = (want, got) => new ProtocolError(`server answered a request with "${got.op}", expected "${want}"`);
var Relay = class {
  chat;
  presence;
  friends;
  #cfg;
  #conn;
  #chatEvents = new EventSource();
  #presenceEvents = new EventSource();
  #friendsEvents = new EventSource();
  #reqs;
  #convs;
  #presence = /* @__PURE__ */ new Map();
  /** Connection generation: one per hello. */
  #gen = 0;
  /** The login sync of the current connection was answered: durable requests go out. */
  #loggedIn = false;
  /** Live messages that arrived before the login sync's answer. */
  #held = [];
  #friends;
  #away;
  #closed;
  #receiptsQueued = false;
  constructor(cfg) {
    this.#cfg = cfg;
    this.#reqs = requestTracker(cfg.nextId);
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
        fetchGap: (peer, before, limit) => this.#fetchGap(peer, before, limit)
      },
      {
        autoDelivered: cfg.options.autoDelivered !== false,
        gapWaitMs: cfg.options.gapWaitMs ?? 250,
        historyLimit: () => this.#conn.hello?.limits.maxHistoryLimit ?? 200
      }
    );
    this.#conn = new Connection({
      name: "/relay",
      urls: cfg.urls,
      WebSocket: cfg.WebSocket,
      credentials: cfg.credentials,
      backoff: cfg.backoff,
      timing: cfg.timing,
      random: cfg.random,
      socketURL: cfg.socketURL,
      parse: parseRelayMessage,
      asHello: (f) => f.op === "hello" ? f : void 0,
      beforeHello: (f) => {
        if (f.op !== "error") return false;
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
      onError: (error) => this.#chatEvents.emit("error", error)
    });
    this.chat = this.#makeChat();
    this.presence = this.#makePresence();
    this.friends = this.#makeFriends();
  }
  get user() {
    return this.#conn.hello?.user;
  }
  /** client.connect(): starts the relay again if it was in use and stopped. */
  restartIfStopped() {
    if (this.#conn.kind === "stopped") this.#conn.connect();
  }
  close(error) {
    if (this.#closed !== void 0) return;
    this.#closed = error;
    this.#conn.close();
    this.#failAll(error);
    this.#convs.close();
  }
  // ---- the public faces ----
  #makeChat() {
    const r = this;
    return {
      get status() {
        return r.#conn.status;
      },
      get url() {
        return r.#conn.url ?? r.#cfg.urls[0];
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
        return this.#request((id) => signalFrame(id, to, json, options.device), { durable: true, to: void 0 }, (f) => {
          if (f.op !== "ok") throw answerError("ok", f);
        });
      },
      connect: () => {
        if (this.#closed !== void 0) throw new RsoError(ClientErrorCode.Closed, "the client was closed; create a new one");
        this.#conn.connect();
      },
      on: (event, listener) => {
        const off = this.#chatEvents.on(event, listener);
        this.#use();
        return off;
      }
    };
  }
  #makePresence() {
    return {
      status: (user) => {
        this.#use();
        if (user === this.#conn.hello?.user) return this.#conn.ready ? this.#away === true ? "away" : "online" : "offline";
        return this.#presence.get(user)?.status ?? "offline";
      },
      all: () => {
        this.#use();
        const out = {};
        const users = this.#friends?.friends ?? [...this.#presence.keys()];
        for (const u of users) out[u] = this.#presence.get(u)?.status ?? "offline";
        return out;
      },
      setAway: (away) => {
        this.#away = away;
        return this.#request((id) => presenceFrame(id, away ? "away" : "online"), { durable: true, to: void 0 }, (f) => {
          if (f.op !== "ok") throw answerError("ok", f);
        });
      },
      on: (event, listener) => {
        const off = this.#presenceEvents.on(event, listener);
        this.#use();
        return off;
      }
    };
  }
  #makeFriends() {
    const r = this;
    const act = (action) => (user) => this.#request((id) => friendFrame(id, action, user), { durable: true, to: void 0 }, (f) => {
      if (f.op !== "friends") throw answerError("friends", f);
      return this.#onFriends(f, true);
    });
    return {
      get current() {
        r.#use();
        return r.#friends === void 0 ? void 0 : copyList(r.#friends);
      },
      list: () => this.#request((id) => friendsFrame(id, this.#friends?.hash), { durable: true, to: void 0 }, (f) => {
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
        this.#use();
        return off;
      }
    };
  }
  // ---- requests ----
  /** Opens the socket on first use; the error that keeps it closed, if any. */
  #use() {
    if (this.#closed !== void 0) return this.#closed;
    const kind = this.#conn.kind;
    if (kind === "idle") this.#conn.connect();
    return kind === "stopped" ? this.#conn.stoppedError : void 0;
  }
  /**
   * Sends `frame(id)` and resolves with `answer(frame)` of the server's answer (which throws for a wrong
   * one). Durable requests wait for the login sequence and survive reconnects; the others are written at
   * once, on a connection that is up, and fail when it ends.
   */
  #request(frame, opts, answer) {
    const blocked = this.#use();
    if (blocked !== void 0) return Promise.reject(blocked);
    const { request, promise } = this.#reqs.open({ id: opts.id, frame, durable: opts.durable, to: opts.to }, answer);
    this.#transmit(request);
    return promise;
  }
  #transmit(req) {
    if (!this.#conn.ready || req.durable && !this.#loggedIn) {
      if (!req.durable) this.#reqs.reject(req, new ConnectionError("connection_lost", "the relay connection is not up"));
      return;
    }
    req.gen = this.#gen;
    this.#conn.write(req.frame);
  }
  #send(to, body) {
    if (typeof to !== "string" || to === "") return Promise.reject(new RsoError(ClientErrorCode.InvalidValue, "chat.send needs a recipient"));
    const json = serialize(body, "message body");
    if (typeof json !== "string") return Promise.reject(json);
    const id = "m-" + randomString(14);
    return this.#request((id2) => chatSendFrame(id2, to, json), { durable: true, to, id }, (f) => {
      if (f.op !== "sent") throw answerError("sent", f);
      const me = this.#conn.hello?.user ?? "";
      this.#convs.add({ seq: f.seq, from: me, to: f.to, cid: f.id, ts: f.ts, body: JSON.parse(json) });
      return { id: f.id, to: f.to, seq: f.seq, ts: f.ts };
    });
  }
  #history(peer, options) {
    return this.#request((id) => historyFrame(id, peer, options.before, options.limit), { durable: true, to: void 0 }, (f) => {
      if (f.op !== "history") throw answerError("history", f);
      const me = this.#conn.hello?.user ?? "";
      this.#convs.history(peer, f.last, f.messages);
      return { messages: f.messages.map((m) => toChat(m, me)), more: f.more, last: f.last };
    });
  }
  #mark(peer, kind, seq) {
    return this.#request((id) => receiptFrame(id, peer, kind, seq), { durable: true, to: void 0 }, (f) => {
      if (f.op !== "ok") throw answerError("ok", f);
      this.#convs.ownMark(peer, kind, seq);
    });
  }
  // ---- the connection ----
  #onHello() {
    this.#gen++;
    this.#loggedIn = false;
    for (const p of this.#presence.values()) p.rev = -1;
    this.#login(true);
  }
  /** The login sequence of §3.1: friends (with the cached hash), sync, then receipts and re-sends. */
  #login(afterHello) {
    const gen = this.#gen;
    void this.#request((id) => friendsFrame(id, this.#friends?.hash), { durable: false, to: void 0 }, (f) => {
      if (f.op !== "friends") throw answerError("friends", f);
      this.#onFriends(f, false);
    }).catch((e) => this.#internalError(e));
    if (afterHello && this.#away !== void 0 && !this.#reqs.list().some((r) => r.frame.startsWith(`{"op":"presence"`))) {
      const status = this.#away ? "away" : "online";
      void this.#request((id) => presenceFrame(id, status), { durable: false, to: void 0 }, () => void 0).catch((e) => this.#internalError(e));
    }
    const done = () => {
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
    this.#sync(afterHello ? done : void 0, afterHello ? done : void 0);
  }
  /** Sends a sync (with `after` for every conversation with a baseline); `then` runs after its answer. */
  #sync(then, onFailure = void 0) {
    const gen = this.#gen;
    const after = this.#convs.after((this.#conn.hello?.limits.maxFrameBytes ?? 65536) / 2);
    void this.#request((id) => chatSyncFrame(id, after), { durable: false, to: void 0 }, (f) => {
      if (f.op !== "sync") throw answerError("sync", f);
      this.#onSync(f);
      then?.();
    }).catch((e) => {
      if (gen === this.#gen) onFailure?.();
      this.#internalError(e);
    });
  }
  #onDisconnected() {
    this.#loggedIn = false;
    this.#held = [];
    const lost = new ConnectionError("connection_lost", "the relay connection was lost");
    for (const req of this.#reqs.list()) {
      if (req.durable) req.gen = -1;
      else this.#reqs.reject(req, lost);
    }
    this.#convs.disconnected();
  }
  #failAll(error) {
    this.#loggedIn = false;
    this.#held = [];
    this.#reqs.rejectAll(error);
  }
  #internalError(e) {
    if (this.#closed !== void 0) return;
    if (e instanceof ConnectionError) return;
    if (e instanceof RsoError && this.#conn.ready) this.#chatEvents.emit("error", e);
  }
  #onFrame(f) {
    switch (f.op) {
      case "sent":
      case "ok":
      case "sync":
      case "history":
      case "friends": {
        if (f.id !== void 0 && this.#reqs.resolve(f.id, f)) return;
        if (f.op === "friends") this.#onFriends(f, false);
        return;
      }
      case "error": {
        const error = new ServerError(f.code, f.message, { id: f.id });
        const req = f.id === void 0 ? void 0 : this.#reqs.get(f.id);
        if (req === void 0) return this.#chatEvents.emit("error", error);
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
        return this.#login(false);
      case "hello":
      case "pong":
        return;
    }
  }
  /** Sends a refused request again after a jittered delay, with the same id. */
  #retry(req) {
    this.#reqs.retry(req, (attempt) => this.#conn.retryDelay(attempt), () => {
      if (!req.durable && !this.#conn.ready) return this.#reqs.reject(req, new ConnectionError("connection_lost", "the relay connection was lost"));
      this.#transmit(req);
    });
  }
  // ---- messages ----
  #onSync(f) {
    if (this.#convs.sync(f.convs)) this.#sync(void 0);
  }
  /** A stored message of yours that answers a send still waiting (its answer was lost with a connection, §3.3). */
  #claim(m) {
    const req = this.#reqs.get(m.cid);
    if (req === void 0 || req.to !== m.to) return false;
    return this.#reqs.resolve(m.cid, { op: "sent", id: m.cid, to: m.to, seq: m.seq, ts: m.ts, duplicate: true });
  }
  #fetchGap(peer, before, limit) {
    if (!this.#loggedIn) return false;
    void this.#request((id) => historyFrame(id, peer, before, limit), { durable: false, to: void 0 }, (f) => {
      if (f.op !== "history") throw answerError("history", f);
      this.#convs.gapFilled(peer, f.last, f.messages);
    }).catch((e) => {
      this.#convs.gapFailed(peer);
      this.#internalError(e);
    });
    return true;
  }
  #queueReceipts() {
    if (this.#receiptsQueued) return;
    this.#receiptsQueued = true;
    microtask(() => {
      this.#receiptsQueued = false;
      if (!this.#loggedIn) return;
      for (const { peer, seq } of this.#convs.takeDelivered()) {
        const gen = this.#gen;
        void this.#request((id) => receiptFrame(id, peer, "delivered", seq), { durable: false, to: void 0 }, (f) => {
          if (f.op !== "ok") throw answerError("ok", f);
          this.#convs.ownMark(peer, "delivered", seq);
        }).catch((e) => {
          if (gen === this.#gen) this.#convs.deliveredFailed(peer, seq);
          this.#internalError(e);
        });
      }
    });
  }
  #onReceipt(f) {
    this.#convs.receipt(f.peer, f.by === this.#conn.hello?.user, f.kind, f.seq);
    this.#chatEvents.emit("receipt", { peer: f.peer, by: f.by, kind: f.kind, seq: f.seq });
  }
  // ---- friends and presence ----
  #onFriends(f, action) {
    if (f.lists !== void 0) {
      const changed = this.#friends?.hash !== f.hash;
      this.#friends = { ...f.lists, hash: f.hash };
      if (changed || action) this.#friendsEvents.emit("change", copyList(this.#friends));
    }
    for (const p of f.presence) this.#setPresence(p.user, p.status, p.rev);
    return copyList(this.#friends ?? { friends: [], incoming: [], outgoing: [], blocked: [], hash: f.hash });
  }
  /** Keeps the status with the highest `rev` per user (§3.6). */
  #setPresence(user, status, rev) {
    const known = this.#presence.get(user);
    if (known !== void 0 && rev < known.rev) return;
    this.#presence.set(user, { status, rev });
    if ((known?.status ?? "offline") !== status) this.#presenceEvents.emit("change", user, status);
  }
};
function copyList(l) {
  return { friends: [...l.friends], incoming: [...l.incoming], outgoing: [...l.outgoing], blocked: [...l.blocked], hash: l.hash };
}
function serialize(value, what) {
  try {
    const json = JSON.stringify(value);
    if (typeof json === "string") return json;
  } catch (err) {
    return new RsoError(ClientErrorCode.InvalidValue, `the ${what} cannot be sent as JSON`, { cause: err });
  }
  return new RsoError(ClientErrorCode.InvalidValue, `the ${what} cannot be sent as JSON`);
}

// src/remote.ts
var deletion = { value: void 0, text: void 0 };
var defaultMaxChanges = 100;
var defaultMaxFrameBytes = 262144;
var RemoteObjectImpl = class {
  name;
  persistent;
  #link;
  #events = new EventSource();
  #state = "idle";
  #subId;
  #everSynced = false;
  #version = 0;
  #epoch = "";
  /** The server's slots at #version. */
  #server = /* @__PURE__ */ new Map();
  #inflight;
  /** Local changes not sent yet, in the order they were first made. */
  #queued = /* @__PURE__ */ new Map();
  /** Messages not echoed yet, by id; `written` on the current connection. */
  #sends = /* @__PURE__ */ new Map();
  #view;
  #fps = Infinity;
  #kickScheduled = false;
  #cooldown;
  #flushRequested = false;
  #retryTimers = /* @__PURE__ */ new Set();
  #retries = 0;
  #connecting;
  constructor(link, name, persistent) {
    this.#link = link;
    this.name = name;
    this.persistent = persistent;
  }
  on(event, listener) {
    return this.#events.on(event, listener);
  }
  get data() {
    if (this.#view === void 0) {
      const view = /* @__PURE__ */ Object.create(null);
      for (const [name, value] of this.#server) view[name] = value;
      for (const changes of [this.#inflight?.changes, this.#queued]) {
        for (const [name, p] of changes ?? []) {
          if (p.text === void 0) delete view[name];
          else view[name] = p.value;
        }
      }
      this.#view = Object.freeze(view);
    }
    return this.#view;
  }
  get version() {
    return this.#version;
  }
  get epoch() {
    return this.#epoch;
  }
  get pending() {
    return this.#inflight !== void 0 || this.#queued.size > 0 || this.#sends.size > 0;
  }
  get subscribed() {
    return this.#state === "subscribed";
  }
  get fps() {
    return this.#fps;
  }
  set fps(fps) {
    if (!(fps >= 0)) throw new RangeError(`fps must be a number ≥ 0 (Infinity: no limit), not ${fps}`);
    this.#fps = fps;
    if (this.#cooldown !== void 0) clearTimer(this.#cooldown);
    this.#cooldown = void 0;
    this.#kick();
  }
  connect() {
    if (this.#state === "closed") return Promise.reject(this.#closedError());
    if (this.#state === "subscribed") return Promise.resolve();
    if (this.#connecting === void 0) {
      let resolve;
      let reject;
      const promise2 = new Promise((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.#connecting = { promise: promise2, resolve, reject };
    }
    const promise = this.#connecting.promise;
    if (this.#state === "idle") {
      this.#state = "subscribing";
      const blocked = this.#link.start();
      if (blocked !== void 0) this._stopped(blocked);
      else if (this.#link.ready) this.#subscribe();
    }
    return promise;
  }
  setProperty(name, value) {
    if (value === null || value === void 0) return this.#change(name, deletion);
    let text;
    try {
      text = JSON.stringify(value);
    } catch (err) {
      throw new RsoError(ClientErrorCode.InvalidValue, `slot "${name}": value cannot be sent as JSON`, { cause: err });
    }
    if (text === void 0) throw new RsoError(ClientErrorCode.InvalidValue, `slot "${name}": ${typeof value} is not a JSON value`);
    this.#change(name, { value, text });
  }
  deleteProperty(name) {
    this.#change(name, deletion);
  }
  setNull(name) {
    this.#change(name, { value: null, text: "null" });
  }
  setDirty(name) {
    const data = this.data;
    if (!(name in data)) return;
    if (data[name] === null) this.setNull(name);
    else this.setProperty(name, data[name]);
  }
  send(handler, ...args) {
    this.#checkOpen();
    let text;
    try {
      text = JSON.stringify(args);
    } catch (err) {
      throw new RsoError(ClientErrorCode.InvalidValue, `send "${handler}": arguments cannot be sent as JSON`, { cause: err });
    }
    const id = this.#link.nextId();
    const frame = sendFrame(id, this.name, this.persistent, handler, text);
    const max = this.#link.limits?.maxFrameBytes ?? defaultMaxFrameBytes;
    if (utf8Length(frame) > max) {
      throw new RsoError(ErrorCode.FrameTooLarge, `send "${handler}": the frame exceeds ${max} bytes (max_frame_bytes)`);
    }
    this.#sends.set(id, { frame, written: false });
    this.#kick();
  }
  flush() {
    this.#checkOpen();
    if (this.#queued.size === 0) return;
    this.#flushRequested = true;
    this.#trySend();
  }
  close() {
    if (this.#state === "closed") return;
    const wasSubscribed = this.#state !== "idle";
    this.#shutdown(this.#closedError());
    if (wasSubscribed && this.#link.ready) this.#link.write(unsubFrame(this.name, this.persistent));
    this.#link.detach(this);
  }
  // ---- called by the client ----
  /** A connection is up (hello received): subscribe again if the application asked for it. */
  _ready() {
    if (this.#state === "subscribing") this.#subscribe();
  }
  /** The connection was lost: everything unanswered is kept, to be re-sent after the next sub. */
  _disconnected() {
    if (this.#state === "subscribed") this.#state = "subscribing";
    this.#subId = void 0;
    this.#clearRetries();
  }
  /** The client stopped (it will not reconnect by itself): connect() calls waiting fail with `error`. */
  _stopped(error) {
    const c = this.#connecting;
    this.#connecting = void 0;
    c?.reject(error);
  }
  /** The client was closed: so is the object. */
  _closed(error) {
    this.#shutdown(error);
  }
  /** True if `id` is a request of this object still waiting for its answer. */
  _owns(id) {
    return id === this.#subId || id === this.#inflight?.id || this.#sends.has(id);
  }
  _sync(frame) {
    if (this.#state === "closed" || this.#state === "idle") return;
    const isSubAnswer = frame.id !== void 0 && frame.id === this.#subId;
    if (this.#state === "subscribing" && !isSubAnswer) return;
    const batch = frame.id !== void 0 && frame.id === this.#inflight?.id ? this.#inflight : void 0;
    const committedNow = frame.epoch !== this.#epoch || frame.version > this.#version;
    for (const e of frame.changes) {
      switch (e.code) {
        case "clear":
          this.#server.clear();
          break;
        case "change":
          this.#server.set(e.name, e.value);
          break;
        case "delete":
          this.#server.delete(e.name);
          break;
        case "success": {
          const p = batch?.changes.get(e.name);
          if (p !== void 0 && committedNow) {
            if (p.text === void 0) this.#server.delete(e.name);
            else this.#server.set(e.name, p.value);
          }
          break;
        }
        case "reject":
          if ("value" in e) this.#server.set(e.name, e.value);
          else this.#server.delete(e.name);
          break;
      }
    }
    this.#version = frame.version;
    this.#epoch = frame.epoch;
    this.#everSynced = true;
    this.#view = void 0;
    if (batch !== void 0) {
      this.#inflight = void 0;
      this.#retries = 0;
    }
    if (isSubAnswer) {
      this.#state = "subscribed";
      this.#subId = void 0;
      this.#resume();
    }
    if (frame.changes.length > 0) {
      this.#events.emit("sync", frame.changes, { version: frame.version, epoch: frame.epoch, id: frame.id, local: false });
    }
    if (isSubAnswer) {
      const c = this.#connecting;
      this.#connecting = void 0;
      c?.resolve();
    }
    if (batch !== void 0) this.#kick();
  }
  _message(frame) {
    if (this.#state !== "subscribed") return;
    if (frame.id !== void 0 && this.#link.ownsId(frame.id)) {
      if (!this.#sends.delete(frame.id)) return;
    }
    this.#events.emit("message", frame.handler, frame.args, frame.from);
  }
  _error(error) {
    if (this.#state === "closed") return;
    const id = error.id;
    const retry = retryableErrorCodes.has(error.code);
    if (id !== void 0 && id === this.#subId) {
      if (retry) return this.#retryLater(() => this.#subscribe());
      this.#state = "idle";
      this.#subId = void 0;
      this.#clearRetries();
      this._stopped(error);
      return this.#emitError(error);
    }
    if (id !== void 0 && this.#state === "subscribed" && error.code === ErrorCode.NotSubscribed && this._owns(id)) {
      this.#state = "subscribing";
      return this.#subscribe();
    }
    const batch = this.#inflight;
    if (id !== void 0 && id === batch?.id) {
      if (retry) return this.#retryLater(() => this.#link.write(batch.frame));
      this.#inflight = void 0;
      this.#rollBack(batch.changes.keys(), error);
      return this.#kick();
    }
    const sent = id === void 0 ? void 0 : this.#sends.get(id);
    if (id !== void 0 && sent !== void 0) {
      if (retry) return this.#retryLater(() => this.#link.write(sent.frame));
      this.#sends.delete(id);
    }
    this.#emitError(error);
  }
  // ---- internals ----
  #checkOpen() {
    if (this.#state === "closed") throw this.#closedError();
  }
  #closedError() {
    return new RsoError(ClientErrorCode.Closed, `object "${this.name}" was closed`);
  }
  #shutdown(error) {
    this.#state = "closed";
    this.#subId = void 0;
    this.#clearRetries();
    if (this.#cooldown !== void 0) clearTimer(this.#cooldown);
    this.#cooldown = void 0;
    this.#inflight = void 0;
    this.#queued.clear();
    this.#sends.clear();
    this.#view = void 0;
    this._stopped(error);
  }
  #subscribe() {
    if (!this.#link.ready) return;
    this.#subId = this.#link.nextId();
    const version = this.#everSynced ? this.#version : 0;
    const epoch = this.#everSynced ? this.#epoch : "";
    this.#link.write(subFrame(this.#subId, this.name, this.persistent, version, epoch));
  }
  /** Subscribed (again): re-send the unanswered batch with its id, then the unconfirmed messages (§1.6). */
  #resume() {
    if (this.#inflight !== void 0) this.#link.write(this.#inflight.frame);
    for (const s of this.#sends.values()) s.written = false;
    this.#kick();
  }
  #change(name, p) {
    this.#checkOpen();
    if (typeof name !== "string" || name === "") throw new RsoError(ErrorCode.BadName, "a slot name must be a non-empty string");
    this.#queued.delete(name);
    this.#queued.set(name, p);
    this.#view = void 0;
    this.#kick();
  }
  /**
   * On a microtask, so that the calls of one tick are coalesced: sends the queued changes (as fps allows),
   * then the messages not written yet, so that a message follows the changes made before it.
   */
  #kick() {
    if (this.#kickScheduled) return;
    this.#kickScheduled = true;
    microtask(() => {
      this.#kickScheduled = false;
      this.#trySend();
      this.#writeSends();
    });
  }
  #writeSends() {
    if (this.#state !== "subscribed" || !this.#link.ready) return;
    for (const s of this.#sends.values()) {
      if (s.written) continue;
      s.written = true;
      this.#link.write(s.frame);
    }
  }
  #trySend() {
    if (this.#state !== "subscribed" || !this.#link.ready) return;
    if (this.#inflight !== void 0 || this.#queued.size === 0) return;
    if (!this.#flushRequested && (this.#fps === 0 || this.#cooldown !== void 0)) return;
    const batch = this.#takeBatch();
    if (this.#queued.size === 0) this.#flushRequested = false;
    if (batch === void 0) return;
    this.#inflight = batch;
    this.#link.write(batch.frame);
    if (this.#fps > 0 && this.#fps !== Infinity) {
      this.#cooldown = setTimer(() => {
        this.#cooldown = void 0;
        this.#trySend();
      }, 1e3 / this.#fps);
    }
  }
  /**
   * Moves queued changes into a batch: at most max_changes of them, in a frame of at most max_frame_bytes
   * (the rest waits for the next batch). A change too large to be sent alone is rolled back at once: the
   * server would refuse it, and a frame over 16 × max_frame_bytes would close the connection.
   */
  #takeBatch() {
    const maxChanges = this.#link.limits?.maxChanges ?? defaultMaxChanges;
    const maxBytes = this.#link.limits?.maxFrameBytes ?? defaultMaxFrameBytes;
    const id = this.#link.nextId();
    const changes = /* @__PURE__ */ new Map();
    const items = [];
    let bytes = utf8Length(updateFrame(id, this.name, this.persistent, [], this.#epoch)) - 1;
    const tooLarge = [];
    for (const [name, p] of this.#queued) {
      if (items.length === maxChanges) break;
      const item = updateItem(name, this.#version, p.text);
      const size = utf8Length(item) + 1;
      if (bytes + size > maxBytes) {
        if (items.length > 0) break;
        tooLarge.push(name);
        continue;
      }
      bytes += size;
      items.push(item);
      changes.set(name, p);
    }
    for (const name of [...changes.keys(), ...tooLarge]) this.#queued.delete(name);
    if (tooLarge.length > 0) {
      const list = tooLarge.map((n) => `"${n}"`).join(", ");
      const err = new RsoError(
        ErrorCode.FrameTooLarge,
        `object "${this.name}": the change to ${list} exceeds ${maxBytes} bytes (max_frame_bytes); rolled back`
      );
      this.#rollBack(tooLarge, err);
    }
    if (changes.size === 0) return void 0;
    return { id, frame: updateFrame(id, this.name, this.persistent, items, this.#epoch), changes };
  }
  /** The changes to `names` were refused as a whole: the view shows the server's values again. */
  #rollBack(names, error) {
    const changes = [];
    for (const name of names) {
      const entry = { code: "reject", name, reason: error.code };
      if (this.#server.has(name)) entry.value = this.#server.get(name);
      changes.push(entry);
    }
    this.#view = void 0;
    this.#events.emit("sync", changes, { version: this.#version, epoch: this.#epoch, id: void 0, local: true });
    this.#emitError(error);
  }
  #retryLater(fn) {
    const timer = setTimer(() => {
      this.#retryTimers.delete(timer);
      if (this.#link.ready && this.#state !== "closed") fn();
    }, this.#link.retryDelay(this.#retries++));
    this.#retryTimers.add(timer);
  }
  #clearRetries() {
    for (const t of this.#retryTimers) clearTimer(t);
    this.#retryTimers.clear();
  }
  #emitError(error) {
    if (this.#events.has("error")) this.#events.emit("error", error);
    else this.#link.reportError(error);
  }
};

// src/client.ts
var RsoClient = class {
  /** The servers, as given to the constructor (a single URL is a list of one). */
  urls;
  #events = new EventSource();
  #credentials;
  #idPrefix = randomString(8) + "-";
  #objects = /* @__PURE__ */ new Map();
  #link;
  #so;
  #relay;
  #counter = 0;
  /**
   * `url` is the server, like "ws://127.0.0.1:8080" (the SDK appends /so and /relay), or the full ".../so"
   * URL; or a list of them, the nodes of one cluster, for failover: each socket tries one per attempt, in
   * turn (the first one first), and moves on to the next after a failed attempt or a lost connection.
   * Nothing happens until `connect()`, the first `so.connect()`, or the first use of `chat`, `presence` or
   * `friends` (which open the /relay socket).
   */
  constructor(url, options = {}) {
    const urls = typeof url === "string" ? [url] : [...url];
    if (urls.length === 0 || urls.some((u) => typeof u !== "string")) {
      throw new RsoError(ClientErrorCode.BadUrl, "RsoClient needs a server URL, or a non-empty list of them");
    }
    this.urls = Object.freeze(urls);
    this.#credentials = new Credentials(options.token, options.getToken);
    const backoff = { ...defaultBackoff, ...options.backoff };
    const timing = { ...defaultTiming, ...options.timing };
    const random = options.random ?? Math.random;
    const user = options.user;
    this.#so = new Connection({
      name: "/so",
      urls: this.urls,
      WebSocket: options.WebSocket,
      credentials: this.#credentials,
      backoff,
      timing,
      random,
      socketURL: (server) => socketURL(server, "/so", { token: this.#credentials.token, user }),
      parse: parseMessage,
      asHello: (f) => f.op === "hello" ? f : void 0,
      maxFrameBytes: (h) => h.limits.maxFrameBytes,
      nextId: () => this.#nextId(),
      onHello: () => {
        for (const object of this.#objects.values()) object._ready();
      },
      onFrame: (f) => this.#route(f),
      onDisconnected: () => {
        for (const object of this.#objects.values()) object._disconnected();
      },
      onStopped: (error) => {
        for (const object of this.#objects.values()) object._stopped(error);
      },
      onStatus: (status, reason) => this.#events.emit("status", status, reason),
      onError: (error) => this.#events.emit("error", error)
    });
    this.#relay = new Relay({
      urls: this.urls,
      WebSocket: options.WebSocket,
      credentials: this.#credentials,
      backoff,
      timing,
      random,
      socketURL: (server) => socketURL(server, "/relay", { token: this.#credentials.token, user, device: options.device }),
      nextId: () => this.#nextId(),
      options
    });
    this.#link = this.#makeLink();
  }
  on(event, listener) {
    return this.#events.on(event, listener);
  }
  /**
   * The server (one of `urls`) the /so socket is connected to, or trying; the first one before it was
   * opened. The relay's is `chat.url`.
   */
  get url() {
    return this.#so.url ?? this.urls[0];
  }
  /** Status of the /so socket (the relay's is `chat.status`). */
  get status() {
    return this.#so.status;
  }
  /** The user id the server gave this client (hello of /so, else of /relay), once connected. */
  get user() {
    return this.#so.hello?.user ?? this.#relay.user;
  }
  /** The server's session id for the current or last /so connection. */
  get session() {
    return this.#so.hello?.session;
  }
  /** The limits of the current or last /so connection (§1.1). */
  get limits() {
    return this.#so.hello?.limits;
  }
  /** Private messages, receipts and conversations (§3.3, §3.4). Opens the /relay socket on first use. */
  get chat() {
    return this.#relay.chat;
  }
  /** Friends' presence and your own away status (§3.6). Opens the /relay socket on first use. */
  get presence() {
    return this.#relay.presence;
  }
  /** Your friend list and its actions (§3.5). Opens the /relay socket on first use. */
  get friends() {
    return this.#relay.friends;
  }
  /** Replaces the token for the next connection of both sockets (an open connection keeps its own). */
  setToken(token) {
    this.#credentials.set(token);
  }
  /**
   * Starts connecting /so; after a stop (status "closed" because of a close code) starts again, and so does
   * a stopped relay socket.
   */
  connect() {
    this.#so.connect();
    this.#relay.restartIfStopped();
  }
  /** The object `name` in the chosen namespace (default temporary); the same instance while it is open. */
  getRemote(name, options = {}) {
    const persistent = options.persistent === true;
    const key = objectKey(name, persistent);
    let object = this.#objects.get(key);
    if (object === void 0) {
      object = new RemoteObjectImpl(this.#link, name, persistent);
      this.#objects.set(key, object);
    }
    return object;
  }
  /** Closes both sockets (code 1000), every object and every pending chat request, for good. */
  close() {
    if (this.#so.kind === "closed") return;
    this.#so.close(CloseCode.Normal);
    const error = new RsoError(ClientErrorCode.Closed, "the client was closed");
    for (const object of this.#objects.values()) object._closed(error);
    this.#objects.clear();
    this.#relay.close(error);
  }
  #route(frame) {
    switch (frame.op) {
      case "sync":
        return this.#objects.get(objectKey(frame.obj, frame.persistent))?._sync(frame);
      case "message":
        return this.#objects.get(objectKey(frame.obj, frame.persistent))?._message(frame);
      case "error": {
        const { code, message, id, obj, persistent } = frame;
        const error = new ServerError(code, message, { id, obj, persistent: obj === void 0 ? void 0 : persistent });
        let object = obj === void 0 ? void 0 : this.#objects.get(objectKey(obj, persistent));
        if (object === void 0 && id !== void 0) object = [...this.#objects.values()].find((o) => o._owns(id));
        if (object !== void 0) return object._error(error);
        return this.#events.emit("error", error);
      }
    }
  }
  #nextId() {
    return this.#idPrefix + (++this.#counter).toString(36);
  }
  #makeLink() {
    const client = this;
    const so = this.#so;
    return {
      get ready() {
        return so.ready;
      },
      get limits() {
        return so.hello?.limits;
      },
      start() {
        const before = so.kind;
        if (before === "idle") so.connect();
        return before === "stopped" || before === "closed" ? so.stoppedError : void 0;
      },
      nextId: () => client.#nextId(),
      ownsId: (id) => id.startsWith(client.#idPrefix),
      write: (frame) => so.write(frame),
      retryDelay: (attempt) => so.retryDelay(attempt),
      detach: (object) => {
        const key = objectKey(object.name, object.persistent);
        if (client.#objects.get(key) === object) client.#objects.delete(key);
      },
      reportError: (error) => client.#events.emit("error", error)
    };
  }
};
var objectKey = (name, persistent) => (persistent ? "p:" : "t:") + name;
function socketURL(url, path, params) {
  const u = makeURL(url);
  if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol === "https:") u.protocol = "wss:";
  const base = u.pathname.replace(/\/(so|relay)\/?$/, "").replace(/\/$/, "");
  u.pathname = base + path;
  if (params.token !== void 0) u.searchParams.set("token", params.token);
  if (params.user !== void 0) u.searchParams.set("user", params.user);
  if (params.device !== void 0) u.searchParams.set("device", params.device);
  return u.toString();
}
export {
  ChatErrorCode,
  ClientErrorCode,
  CloseCode,
  ConnectionError,
  ErrorCode,
  ProtocolError,
  RsoClient,
  RsoError,
  ServerError,
  SyncCode,
  backoffDelay,
  closeAction,
  closeCodeNames,
  defaultBackoff,
  defaultTiming,
  retryableChatErrorCodes,
  retryableErrorCodes
};
