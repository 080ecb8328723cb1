// Generated from sdk-ts by `npm run bundle` (do not edit; `npm run check-bundle` fails when it is stale).

// src/codes.ts
var ErrorCode = {
  BadJson: "bad_json",
  BadFrame: "bad_frame",
  UnknownOp: "unknown_op",
  BadName: "bad_name",
  FrameTooLarge: "frame_too_large",
  ValueTooLarge: "value_too_large",
  TooManyChanges: "too_many_changes",
  TooManySlots: "too_many_slots",
  ObjectTooLarge: "object_too_large",
  TooManySubscriptions: "too_many_subscriptions",
  NotSubscribed: "not_subscribed",
  Forbidden: "forbidden",
  RateLimited: "rate_limited",
  HookUnavailable: "hook_unavailable",
  Busy: "busy",
  Unavailable: "unavailable",
  Internal: "internal",
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
  Abnormal: 1006,
  TooBig: 1009,
  Internal: 1011,
  Restart: 1012,
  Unauthorized: 4001,
  TokenExpired: 4003,
  SlowConsumer: 4008,
  Abuse: 4009,
  PongTimeout: 4010
};
var closeCodeNames = {
  [CloseCode.Normal]: "normal",
  [CloseCode.Abnormal]: "connection_lost",
  [CloseCode.TooBig]: "message_too_big",
  [CloseCode.Internal]: "server_error",
  [CloseCode.Restart]: "server_restart",
  [CloseCode.Unauthorized]: "unauthorized",
  [CloseCode.TokenExpired]: "token_expired",
  [CloseCode.SlowConsumer]: "slow_consumer",
  [CloseCode.Abuse]: "abuse",
  [CloseCode.PongTimeout]: "pong_timeout"
};
var clientDropCloseCode = 4e3;
function closeAction(code) {
  switch (code) {
    case CloseCode.Normal:
    case CloseCode.Unauthorized:
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

// src/host.ts
var OPEN = 1;
var host = globalThis;
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

// src/frames.ts
var isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
function parseMessage(message) {
  const frames = [];
  for (const piece of message.split("\n")) {
    if (piece === "") continue;
    const frame = parseFrame(piece);
    if (frame !== void 0) frames.push(frame);
  }
  return frames;
}
function parseFrame(text) {
  let root;
  try {
    root = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError(`server sent a frame that is not JSON: ${text.slice(0, 200)}`, { cause: err });
  }
  if (!isObject(root)) throw new ProtocolError(`server sent a frame that is not a JSON object: ${text.slice(0, 200)}`);
  const op = root["op"];
  if (typeof op !== "string") throw new ProtocolError(`server sent a frame without "op": ${text.slice(0, 200)}`);
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
function pingFrame(id) {
  return `{"op":"ping","id":${JSON.stringify(id)}}`;
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
var RsoClient = class {
  url;
  #events = new EventSource();
  #WebSocket;
  #getToken;
  #user;
  #backoff;
  #timing;
  #random;
  #idPrefix = randomString(8) + "-";
  #objects = /* @__PURE__ */ new Map();
  #link;
  #token;
  /** A connection with the current token got its hello: a later refusal is not the token's fault. */
  #tokenWorked = false;
  /** The current token came from getToken and has not been tried yet. */
  #tokenFresh = false;
  #state = { kind: "idle" };
  #status = "idle";
  #everConnected = false;
  #attempt = 0;
  #counter = 0;
  #hello;
  /**
   * `url` is the server, like "ws://127.0.0.1:8080" (the SDK appends /so), or the full ".../so" URL.
   * Nothing happens until `connect()` or the first `so.connect()`.
   */
  constructor(url, options = {}) {
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
  on(event, listener) {
    return this.#events.on(event, listener);
  }
  get status() {
    return this.#status;
  }
  /** The user id the server gave this client (hello), once connected. */
  get user() {
    return this.#hello?.user;
  }
  /** The server's session id for the current or last connection. */
  get session() {
    return this.#hello?.session;
  }
  /** The limits of the current or last connection (§1.1). */
  get limits() {
    return this.#hello?.limits;
  }
  /** Replaces the token for the next connection (an open connection keeps its own). */
  setToken(token) {
    this.#token = token;
    this.#tokenWorked = false;
    this.#tokenFresh = false;
  }
  /** Starts connecting; after a stop (status "closed" because of a close code) starts again. */
  connect() {
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
  /** Closes the connection (code 1000) and every object, for good. */
  close() {
    if (this.#state.kind === "closed") return;
    this.#leave(CloseCode.Normal);
    this.#state = { kind: "closed" };
    const error = new RsoError(ClientErrorCode.Closed, "the client was closed");
    for (const object of this.#objects.values()) object._closed(error);
    this.#objects.clear();
    this.#setStatus("closed", void 0);
  }
  // ---- the state machine ----
  #open() {
    const Ctor = this.#WebSocket ?? globalWebSocket();
    if (Ctor === void 0) {
      return this.#stop(new RsoError(ClientErrorCode.NoWebSocket, 'no WebSocket: pass options.WebSocket (in Node: import { WebSocket } from "ws")'));
    }
    let ws;
    try {
      ws = new Ctor(this.#socketURL());
    } catch (err) {
      return this.#stop(new ConnectionError(ClientErrorCode.BadUrl, `cannot open ${this.url}`, { cause: err }));
    }
    const conn = { ws, opened: false, hello: void 0, lastError: void 0, timers: /* @__PURE__ */ new Set(), pongTimer: void 0, outbox: [] };
    this.#state = { kind: "connecting", conn };
    const live = () => this.#conn() === conn;
    ws.onopen = () => {
      if (live()) conn.opened = true;
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
    this.#after(conn, this.#timing.connectTimeoutMs, () => {
      const error = new ConnectionError(ClientErrorCode.Timeout, `no hello from the server within ${this.#timing.connectTimeoutMs} ms`);
      this.#drop(conn, error);
    });
    this.#setStatus(this.#everConnected || this.#attempt > 0 ? "reconnecting" : "connecting", void 0);
  }
  #onHello(conn, hello) {
    conn.hello = hello;
    this.#hello = hello;
    this.#state = { kind: "connected", conn };
    this.#everConnected = true;
    this.#tokenWorked = true;
    this.#tokenFresh = false;
    for (const t of conn.timers) clearTimer(t);
    conn.timers.clear();
    this.#after(conn, this.#timing.stableAfterMs, () => {
      this.#attempt = 0;
    });
    this.#schedulePing(conn);
    this.#setStatus("connected", void 0);
    for (const object of this.#objects.values()) object._ready();
  }
  /** The socket closed: decide from the close code (§1.9) whether to stop or when to retry. */
  #afterClose(conn, ev) {
    if (!conn.opened) return this.#afterRefusal(conn);
    const action = closeAction(ev.code);
    switch (action) {
      case "stop":
        return { kind: "stop", error: ConnectionError.fromClose(ev.code, ev.reason) };
      case "new-token":
        if (this.#getToken === void 0) return { kind: "stop", error: ConnectionError.fromClose(ev.code, ev.reason) };
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
  #afterRefusal(conn) {
    const message = conn.lastError?.message;
    const known = typeof message === "string" && message !== "";
    const refused = known ? /\b401\b/.test(message) : this.#token !== void 0 && !this.#tokenWorked;
    if (!refused) return { kind: "retry", delayMs: this.#nextBackoff(), newToken: false };
    const error = new ConnectionError(
      ErrorCode.Unauthorized,
      known ? `the server refused the token: ${message}` : "could not connect, and the token was never accepted: it may be refused",
      { closeCode: CloseCode.Abnormal, cause: conn.lastError?.error }
    );
    if (this.#getToken === void 0 || known && this.#tokenFresh) return { kind: "stop", error };
    return { kind: "retry", delayMs: known ? 0 : this.#nextBackoff(), newToken: true };
  }
  #nextBackoff() {
    return backoffDelay(this.#attempt++, this.#random, this.#backoff);
  }
  /** Ends `conn` (already closed, or dropped by us) and goes on as `next` says. */
  #lost(conn, next, reason) {
    const wasConnected = conn.hello !== void 0;
    this.#leave();
    if (wasConnected) for (const object of this.#objects.values()) object._disconnected();
    if (next.kind === "stop") return this.#stop(next.error);
    const timer = setTimer(() => {
      if (this.#state.kind === "waiting" && this.#state.timer === timer) void this.#retry(next.newToken);
    }, next.delayMs);
    this.#state = { kind: "waiting", timer };
    this.#setStatus("reconnecting", reason);
  }
  async #retry(newToken) {
    if (newToken && this.#getToken !== void 0) {
      const waiting = this.#state;
      let token;
      try {
        token = await this.#getToken();
        if (typeof token !== "string" || token === "") throw new TypeError("getToken returned no token");
      } catch (err) {
        if (this.#state === waiting) this.#stop(new RsoError(ClientErrorCode.TokenRefreshFailed, "getToken failed", { cause: err }));
        return;
      }
      if (this.#state !== waiting) return;
      this.setToken(token);
      this.#tokenFresh = true;
    }
    this.#open();
  }
  /** Drops a live connection ourselves (no pong, protocol error) and reconnects with backoff. */
  #drop(conn, reason) {
    if (this.#conn() !== conn) return;
    const error = reason instanceof ConnectionError ? reason : new ConnectionError(reason.code, reason.message, { cause: reason });
    if (!(reason instanceof ConnectionError)) this.#events.emit("error", reason);
    this.#lost(conn, { kind: "retry", delayMs: this.#nextBackoff(), newToken: false }, error);
  }
  #stop(error) {
    this.#leave();
    this.#state = { kind: "stopped", error };
    const reason = error instanceof ConnectionError ? error : void 0;
    this.#setStatus("closed", reason);
    this.#events.emit("error", error);
    for (const object of this.#objects.values()) object._stopped(error);
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
    this.#events.emit("status", status, reason);
  }
  #after(conn, ms, fn) {
    const timer = setTimer(() => {
      conn.timers.delete(timer);
      if (this.#conn() === conn) fn();
    }, ms);
    conn.timers.add(timer);
  }
  #schedulePing(conn) {
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
  #receive(conn, data) {
    if (typeof data !== "string") {
      return this.#drop(conn, new ProtocolError("server sent a binary message; /so uses text messages only"));
    }
    let frames;
    try {
      frames = parseMessage(data);
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
      if (frame.op === "hello") return this.#onHello(conn, frame);
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
  /** Queues a frame for the current connection; the frames of one tick go out as one message (§1.1). */
  #write(frame) {
    const conn = this.#state.kind === "connected" ? this.#state.conn : void 0;
    if (conn === void 0) return;
    conn.outbox.push(frame);
    if (conn.outbox.length === 1) microtask(() => this.#flushOutbox(conn));
  }
  #flushOutbox(conn) {
    if (this.#conn() !== conn || conn.ws.readyState !== OPEN) return;
    const budget = 4 * (conn.hello?.limits.maxFrameBytes ?? 262144);
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
  #nextId() {
    return this.#idPrefix + (++this.#counter).toString(36);
  }
  #socketURL() {
    const u = makeURL(this.url);
    if (u.protocol === "http:") u.protocol = "ws:";
    if (u.protocol === "https:") u.protocol = "wss:";
    if (!u.pathname.endsWith("/so")) u.pathname = u.pathname.replace(/\/?$/, "/so");
    if (this.#token !== void 0) u.searchParams.set("token", this.#token);
    if (this.#user !== void 0) u.searchParams.set("user", this.#user);
    return u.toString();
  }
  #makeLink() {
    const client = this;
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
        return void 0;
      },
      nextId: () => client.#nextId(),
      ownsId: (id) => id.startsWith(client.#idPrefix),
      write: (frame) => client.#write(frame),
      retryDelay: (attempt) => backoffDelay(attempt, client.#random, { ...client.#backoff, maxMs: 5e3 }),
      detach: (object) => {
        const key = objectKey(object.name, object.persistent);
        if (client.#objects.get(key) === object) client.#objects.delete(key);
      },
      reportError: (error) => client.#events.emit("error", error)
    };
  }
};
var objectKey = (name, persistent) => (persistent ? "p:" : "t:") + name;
export {
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
  retryableErrorCodes
};
