// One shared object: the server's state, the local changes not yet confirmed on top of it, and the rules of
// docs/PROTOCOL.md §1.3–1.6 for sending, confirming, rolling back and resuming after a reconnect.
import { ClientErrorCode, ErrorCode, retryableErrorCodes } from "./codes.js";
import { EventSource, type Listener, type Unsubscribe } from "./emitter.js";
import { RsoError, type ServerError } from "./errors.js";
import {
  sendFrame,
  subFrame,
  unsubFrame,
  updateFrame,
  updateItem,
  type Limits,
  type MessageFrame,
  type SyncChange,
  type SyncFrame,
} from "./frames.js";
import { clearTimer, microtask, setTimer, utf8Length } from "./host.js";

/** What accompanies each `sync` event. */
export interface SyncInfo {
  /** The object version after the entries were applied. */
  version: number;
  epoch: string;
  /** The request id the frame answers (a `sub` or an `update` of this client), if any. */
  id: string | undefined;
  /** True when the SDK made the entries itself: rejects for a batch the server refused with an error frame. */
  local: boolean;
}

export interface RemoteObjectEvents {
  /** The entries of one sync frame, after they were applied. */
  sync: [changes: SyncChange[], info: SyncInfo];
  /** A `send` by anyone subscribed to the object, this client included (once per message). */
  message: [handler: string, args: unknown[], from: string];
  /** A refused request of this object. Without listeners here, it goes to the client's "error". */
  error: [error: RsoError];
}

/** A shared object, from `client.getRemote(name, { persistent })`. */
export interface RemoteObject {
  readonly name: string;
  readonly persistent: boolean;
  /**
   * The slots as this client sees them: the server's state with the local changes not yet confirmed on top.
   * A frozen snapshot object that is replaced on every change. Values are shared, not copied: after
   * mutating one in place, call `setDirty(name)`.
   */
  readonly data: Readonly<Record<string, unknown>>;
  /** The object version of the last sync applied (0 before the first). Versions compare within one epoch. */
  readonly version: number;
  /** The epoch of the last sync applied ("" for an object that was never written). */
  readonly epoch: string;
  /** True while local changes or messages wait for the server's answer. */
  readonly pending: boolean;
  /** True once the first sync arrived, until the connection drops or the object is closed. */
  readonly subscribed: boolean;
  /**
   * Local changes are sent at most `fps` times per second, coalesced (last value wins). 0: only on `flush()`.
   * Infinity (the default): on the next microtask.
   */
  fps: number;
  on<K extends keyof RemoteObjectEvents>(event: K, listener: Listener<RemoteObjectEvents[K]>): Unsubscribe;
  /** Subscribes; resolves after the first sync, rejects with an RsoError (e.g. ServerError "forbidden"). */
  connect(): Promise<void>;
  /**
   * Sets a slot (applied locally at once, then confirmed or rolled back by the server). `null` or
   * `undefined` deletes the slot, so JSON null cannot be stored this way: use `setNull`. The value is
   * serialized now; throws an RsoError "invalid_value" when it is not JSON (BigInt, cycles, functions).
   */
  setProperty(name: string, value: unknown): void;
  /** Deletes a slot. */
  deleteProperty(name: string): void;
  /** Stores JSON null in a slot. */
  setNull(name: string): void;
  /** Sends the slot's current value again, after a nested value was mutated in place. */
  setDirty(name: string): void;
  /** Sends a message to every subscriber, this client included (it arrives as a "message" event). */
  send(handler: string, ...args: unknown[]): void;
  /** Sends the pending local changes now (or as soon as the batch in flight is answered). */
  flush(): void;
  /** Unsubscribes and forgets the object; unsent changes and messages are dropped. */
  close(): void;
}

/** What an object needs from its client (implemented privately by RsoClient). */
export interface Link {
  /** True while a connection is up and its hello arrived. */
  readonly ready: boolean;
  /** The limits of the current (or last) connection. */
  readonly limits: Limits | undefined;
  /** Starts the connection if the client never connected; returns why it cannot, if it cannot. */
  start(): RsoError | undefined;
  nextId(): string;
  /** True for request ids of this client (they share a random prefix). */
  ownsId(id: string): boolean;
  write(frame: string): void;
  /** A jittered delay before retrying a request that was refused for now (busy, rate_limited, ...). */
  retryDelay(attempt: number): number;
  detach(object: RemoteObjectImpl): void;
  reportError(error: RsoError): void;
}

/** A local change: the value (kept by reference for the view) and its JSON text, or a delete. */
type Pending = { value: unknown; text: string } | { value: undefined; text: undefined };

const deletion: Pending = { value: undefined, text: undefined };

/** The update in flight: at most one per object (§1.6 re-sends it with the same id after a reconnect). */
interface Batch {
  id: string;
  frame: string;
  changes: Map<string, Pending>;
}

type State =
  | "idle" // connect() not called
  | "subscribing" // waiting for a connection or for the answer to our sub
  | "subscribed"
  | "closed";

// Used when no hello was seen yet; the server's defaults (§1.1).
const defaultMaxChanges = 100;
const defaultMaxFrameBytes = 262144;

export class RemoteObjectImpl implements RemoteObject {
  readonly name: string;
  readonly persistent: boolean;
  readonly #link: Link;
  readonly #events = new EventSource<RemoteObjectEvents>();

  #state: State = "idle";
  #subId: string | undefined;
  #everSynced = false;
  #version = 0;
  #epoch = "";
  /** The server's slots at #version. */
  readonly #server = new Map<string, unknown>();
  #inflight: Batch | undefined;
  /** Local changes not sent yet, in the order they were first made. */
  readonly #queued = new Map<string, Pending>();
  /** Messages not echoed yet, by id; `written` on the current connection. */
  readonly #sends = new Map<string, { frame: string; written: boolean }>();
  #view: Readonly<Record<string, unknown>> | undefined;

  #fps = Infinity;
  #kickScheduled = false;
  #cooldown: unknown;
  #flushRequested = false;
  readonly #retryTimers = new Set<unknown>();
  #retries = 0;

  #connecting: { promise: Promise<void>; resolve: () => void; reject: (e: RsoError) => void } | undefined;

  constructor(link: Link, name: string, persistent: boolean) {
    this.#link = link;
    this.name = name;
    this.persistent = persistent;
  }

  on<K extends keyof RemoteObjectEvents>(event: K, listener: Listener<RemoteObjectEvents[K]>): Unsubscribe {
    return this.#events.on(event, listener);
  }

  get data(): Readonly<Record<string, unknown>> {
    if (this.#view === undefined) {
      const view: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
      for (const [name, value] of this.#server) view[name] = value;
      for (const changes of [this.#inflight?.changes, this.#queued]) {
        for (const [name, p] of changes ?? []) {
          if (p.text === undefined) delete view[name];
          else view[name] = p.value;
        }
      }
      this.#view = Object.freeze(view);
    }
    return this.#view;
  }

  get version(): number {
    return this.#version;
  }

  get epoch(): string {
    return this.#epoch;
  }

  get pending(): boolean {
    return this.#inflight !== undefined || this.#queued.size > 0 || this.#sends.size > 0;
  }

  get subscribed(): boolean {
    return this.#state === "subscribed";
  }

  get fps(): number {
    return this.#fps;
  }

  set fps(fps: number) {
    if (!(fps >= 0)) throw new RangeError(`fps must be a number ≥ 0 (Infinity: no limit), not ${fps}`);
    this.#fps = fps;
    if (this.#cooldown !== undefined) clearTimer(this.#cooldown);
    this.#cooldown = undefined;
    this.#kick();
  }

  connect(): Promise<void> {
    if (this.#state === "closed") return Promise.reject(this.#closedError());
    if (this.#state === "subscribed") return Promise.resolve();
    if (this.#connecting === undefined) {
      let resolve!: () => void;
      let reject!: (e: RsoError) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.#connecting = { promise, resolve, reject };
    }
    const promise = this.#connecting.promise;
    if (this.#state === "idle") {
      this.#state = "subscribing";
      const blocked = this.#link.start();
      if (blocked !== undefined) this._stopped(blocked);
      else if (this.#link.ready) this.#subscribe();
    }
    return promise;
  }

  setProperty(name: string, value: unknown): void {
    if (value === null || value === undefined) return this.#change(name, deletion);
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (err) {
      throw new RsoError(ClientErrorCode.InvalidValue, `slot "${name}": value cannot be sent as JSON`, { cause: err });
    }
    if (text === undefined) throw new RsoError(ClientErrorCode.InvalidValue, `slot "${name}": ${typeof value} is not a JSON value`);
    this.#change(name, { value, text });
  }

  deleteProperty(name: string): void {
    this.#change(name, deletion);
  }

  setNull(name: string): void {
    this.#change(name, { value: null, text: "null" });
  }

  setDirty(name: string): void {
    const data = this.data;
    if (!(name in data)) return;
    if (data[name] === null) this.setNull(name);
    else this.setProperty(name, data[name]);
  }

  send(handler: string, ...args: unknown[]): void {
    this.#checkOpen();
    let text: string;
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

  flush(): void {
    this.#checkOpen();
    if (this.#queued.size === 0) return;
    this.#flushRequested = true;
    this.#trySend();
  }

  close(): void {
    if (this.#state === "closed") return;
    const wasSubscribed = this.#state !== "idle";
    this.#shutdown(this.#closedError());
    if (wasSubscribed && this.#link.ready) this.#link.write(unsubFrame(this.name, this.persistent));
    this.#link.detach(this);
  }

  // ---- called by the client ----

  /** A connection is up (hello received): subscribe again if the application asked for it. */
  _ready(): void {
    if (this.#state === "subscribing") this.#subscribe();
  }

  /** The connection was lost: everything unanswered is kept, to be re-sent after the next sub. */
  _disconnected(): void {
    if (this.#state === "subscribed") this.#state = "subscribing";
    this.#subId = undefined;
    this.#clearRetries();
  }

  /** The client stopped (it will not reconnect by itself): connect() calls waiting fail with `error`. */
  _stopped(error: RsoError): void {
    const c = this.#connecting;
    this.#connecting = undefined;
    c?.reject(error);
  }

  /** The client was closed: so is the object. */
  _closed(error: RsoError): void {
    this.#shutdown(error);
  }

  /** True if `id` is a request of this object still waiting for its answer. */
  _owns(id: string): boolean {
    return id === this.#subId || id === this.#inflight?.id || this.#sends.has(id);
  }

  _sync(frame: SyncFrame): void {
    if (this.#state === "closed" || this.#state === "idle") return;
    const isSubAnswer = frame.id !== undefined && frame.id === this.#subId;
    // Frames before the answer to our sub belong to an earlier subscription (§1.3 unsub: frames already
    // queued may still arrive); the answer brings the state they would have given.
    if (this.#state === "subscribing" && !isSubAnswer) return;
    const batch = frame.id !== undefined && frame.id === this.#inflight?.id ? this.#inflight : undefined;
    // A success makes our value the server's, unless the frame is the answer to a retry of an update that
    // was committed before (§1.6): that answer carries the current version, which this client has already
    // seen, and the committed value (or a newer one) came in a change entry.
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
          if (p !== undefined && committedNow) {
            if (p.text === undefined) this.#server.delete(e.name);
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
    this.#view = undefined;
    if (batch !== undefined) {
      // Slots the answer does not list were no-ops: the server already holds that value.
      this.#inflight = undefined;
      this.#retries = 0;
    }
    if (isSubAnswer) {
      this.#state = "subscribed";
      this.#subId = undefined;
      this.#resume();
    }
    if (frame.changes.length > 0) {
      this.#events.emit("sync", frame.changes, { version: frame.version, epoch: frame.epoch, id: frame.id, local: false });
    }
    if (isSubAnswer) {
      const c = this.#connecting;
      this.#connecting = undefined;
      c?.resolve();
    }
    if (batch !== undefined) this.#kick();
  }

  _message(frame: MessageFrame): void {
    if (this.#state !== "subscribed") return;
    if (frame.id !== undefined && this.#link.ownsId(frame.id)) {
      // Our own message. A re-sent one may be echoed twice (§1.6): emit it only the first time.
      if (!this.#sends.delete(frame.id)) return;
    }
    this.#events.emit("message", frame.handler, frame.args, frame.from);
  }

  _error(error: ServerError): void {
    if (this.#state === "closed") return;
    const id = error.id;
    const retry = retryableErrorCodes.has(error.code);
    if (id !== undefined && id === this.#subId) {
      if (retry) return this.#retryLater(() => this.#subscribe());
      this.#state = "idle";
      this.#subId = undefined;
      this.#clearRetries();
      this._stopped(error);
      return this.#emitError(error);
    }
    if (id !== undefined && this.#state === "subscribed" && error.code === ErrorCode.NotSubscribed && this._owns(id)) {
      // The server lost our subscription: subscribe again; the answer re-sends what is unanswered.
      this.#state = "subscribing";
      return this.#subscribe();
    }
    const batch = this.#inflight;
    if (id !== undefined && id === batch?.id) {
      if (retry) return this.#retryLater(() => this.#link.write(batch.frame));
      this.#inflight = undefined;
      this.#rollBack(batch.changes.keys(), error);
      return this.#kick();
    }
    const sent = id === undefined ? undefined : this.#sends.get(id);
    if (id !== undefined && sent !== undefined) {
      if (retry) return this.#retryLater(() => this.#link.write(sent.frame));
      this.#sends.delete(id);
    }
    this.#emitError(error);
  }

  // ---- internals ----

  #checkOpen(): void {
    if (this.#state === "closed") throw this.#closedError();
  }

  #closedError(): RsoError {
    return new RsoError(ClientErrorCode.Closed, `object "${this.name}" was closed`);
  }

  #shutdown(error: RsoError): void {
    this.#state = "closed";
    this.#subId = undefined;
    this.#clearRetries();
    if (this.#cooldown !== undefined) clearTimer(this.#cooldown);
    this.#cooldown = undefined;
    this.#inflight = undefined;
    this.#queued.clear();
    this.#sends.clear();
    this.#view = undefined;
    this._stopped(error);
  }

  #subscribe(): void {
    if (!this.#link.ready) return;
    this.#subId = this.#link.nextId();
    // A first sub asks for the full state; later ones for what was missed since the last sync (§1.5).
    const version = this.#everSynced ? this.#version : 0;
    const epoch = this.#everSynced ? this.#epoch : "";
    this.#link.write(subFrame(this.#subId, this.name, this.persistent, version, epoch));
  }

  /** Subscribed (again): re-send the unanswered batch with its id, then the unconfirmed messages (§1.6). */
  #resume(): void {
    if (this.#inflight !== undefined) this.#link.write(this.#inflight.frame);
    for (const s of this.#sends.values()) s.written = false;
    this.#kick();
  }

  #change(name: string, p: Pending): void {
    this.#checkOpen();
    if (typeof name !== "string" || name === "") throw new RsoError(ErrorCode.BadName, "a slot name must be a non-empty string");
    this.#queued.delete(name); // re-insert: a batch sends slots in the order of their last change
    this.#queued.set(name, p);
    this.#view = undefined;
    this.#kick();
  }

  /**
   * On a microtask, so that the calls of one tick are coalesced: sends the queued changes (as fps allows),
   * then the messages not written yet, so that a message follows the changes made before it.
   */
  #kick(): void {
    if (this.#kickScheduled) return;
    this.#kickScheduled = true;
    microtask(() => {
      this.#kickScheduled = false;
      this.#trySend();
      this.#writeSends();
    });
  }

  #writeSends(): void {
    if (this.#state !== "subscribed" || !this.#link.ready) return;
    for (const s of this.#sends.values()) {
      if (s.written) continue;
      s.written = true;
      this.#link.write(s.frame);
    }
  }

  #trySend(): void {
    if (this.#state !== "subscribed" || !this.#link.ready) return;
    if (this.#inflight !== undefined || this.#queued.size === 0) return;
    if (!this.#flushRequested && (this.#fps === 0 || this.#cooldown !== undefined)) return;
    const batch = this.#takeBatch();
    if (this.#queued.size === 0) this.#flushRequested = false;
    if (batch === undefined) return;
    this.#inflight = batch;
    this.#link.write(batch.frame);
    if (this.#fps > 0 && this.#fps !== Infinity) {
      this.#cooldown = setTimer(() => {
        this.#cooldown = undefined;
        this.#trySend();
      }, 1000 / this.#fps);
    }
  }

  /**
   * Moves queued changes into a batch: at most max_changes of them, in a frame of at most max_frame_bytes
   * (the rest waits for the next batch). A change too large to be sent alone is rolled back at once: the
   * server would refuse it, and a frame over 16 × max_frame_bytes would close the connection.
   */
  #takeBatch(): Batch | undefined {
    const maxChanges = this.#link.limits?.maxChanges ?? defaultMaxChanges;
    const maxBytes = this.#link.limits?.maxFrameBytes ?? defaultMaxFrameBytes;
    const id = this.#link.nextId();
    const changes = new Map<string, Pending>();
    const items: string[] = [];
    let bytes = utf8Length(updateFrame(id, this.name, this.persistent, [], this.#epoch)) - 1; // without items or commas
    const tooLarge: string[] = [];
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
        `object "${this.name}": the change to ${list} exceeds ${maxBytes} bytes (max_frame_bytes); rolled back`,
      );
      this.#rollBack(tooLarge, err);
    }
    if (changes.size === 0) return undefined;
    // The epoch goes with the bases: a batch re-sent after the object was recreated is rejected, not applied.
    return { id, frame: updateFrame(id, this.name, this.persistent, items, this.#epoch), changes };
  }

  /** The changes to `names` were refused as a whole: the view shows the server's values again. */
  #rollBack(names: Iterable<string>, error: RsoError): void {
    const changes: SyncChange[] = [];
    for (const name of names) {
      const entry: SyncChange = { code: "reject", name, reason: error.code };
      if (this.#server.has(name)) entry.value = this.#server.get(name);
      changes.push(entry);
    }
    this.#view = undefined;
    this.#events.emit("sync", changes, { version: this.#version, epoch: this.#epoch, id: undefined, local: true });
    this.#emitError(error);
  }

  #retryLater(fn: () => void): void {
    const timer = setTimer(() => {
      this.#retryTimers.delete(timer);
      if (this.#link.ready && this.#state !== "closed") fn();
    }, this.#link.retryDelay(this.#retries++));
    this.#retryTimers.add(timer);
  }

  #clearRetries(): void {
    for (const t of this.#retryTimers) clearTimer(t);
    this.#retryTimers.clear();
  }

  #emitError(error: RsoError): void {
    if (this.#events.has("error")) this.#events.emit("error", error);
    else this.#link.reportError(error);
  }
}
