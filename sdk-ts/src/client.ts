// The client of an RSO server: the shared-object socket (/so, docs/PROTOCOL.md §1) with its objects, and,
// opened on first use, the private-chat socket (/relay, §3) behind `chat`, `presence` and `friends`. Both
// sockets run the reconnecting state machine of connection.ts.
import { ClientErrorCode, CloseCode } from "./codes.js";
import {
  Connection,
  Credentials,
  backoffDelay,
  defaultBackoff,
  defaultTiming,
  type BackoffOptions,
  type Status,
  type Timing,
} from "./connection.js";
import { EventSource, type Listener, type Unsubscribe } from "./emitter.js";
import { ConnectionError, RsoError, ServerError } from "./errors.js";
import { parseMessage, type HelloFrame, type Limits, type ServerFrame } from "./frames.js";
import { makeURL, randomString, type WebSocketConstructor } from "./host.js";
import type { Chat, Friends, Presence, RelayOptions } from "./chattypes.js";
import { Relay } from "./relay.js";
import { RemoteObjectImpl, type Link, type RemoteObject } from "./remote.js";

export { backoffDelay, defaultBackoff, defaultTiming, type BackoffOptions, type Status, type Timing };

export interface RsoClientEvents {
  /** Every status change of the /so socket; `reason` says why the connection ended (reconnecting, closed). */
  status: [status: Status, reason: ConnectionError | undefined];
  /** Errors of the /so connection (why it stopped, protocol errors), and object errors nobody listens to. */
  error: [error: RsoError];
}

export interface RsoClientOptions extends RelayOptions {
  /** A JWT (§1.8), sent as `?token=` on both sockets. */
  token?: string;
  /** A name for an anonymous client (servers without a token secret), sent as `?user=` on both sockets. */
  user?: string;
  /**
   * A stable id of this installation for private chat (§3.1), sent as `?device=` on /relay: 1–64 letters,
   * digits, `-`, `_`. Without it every relay connection is its own device.
   */
  device?: string;
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

export class RsoClient {
  /** The servers, as given to the constructor (a single URL is a list of one). */
  readonly urls: readonly string[];
  readonly #events = new EventSource<RsoClientEvents>();
  readonly #credentials: Credentials;
  readonly #idPrefix = randomString(8) + "-";
  readonly #objects = new Map<string, RemoteObjectImpl>();
  readonly #link: Link;
  readonly #so: Connection<ServerFrame, HelloFrame>;
  readonly #relay: Relay;
  #counter = 0;

  /**
   * `url` is the server, like "ws://127.0.0.1:8080" (the SDK appends /so and /relay), or the full ".../so"
   * URL; or a list of them, the nodes of one cluster, for failover: each socket tries one per attempt, in
   * turn (the first one first), and moves on to the next after a failed attempt or a lost connection.
   * Nothing happens until `connect()`, the first `so.connect()`, or the first use of `chat`, `presence` or
   * `friends` (which open the /relay socket).
   */
  constructor(url: string | readonly string[], options: RsoClientOptions = {}) {
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
    this.#so = new Connection<ServerFrame, HelloFrame>({
      name: "/so",
      urls: this.urls,
      WebSocket: options.WebSocket,
      credentials: this.#credentials,
      backoff,
      timing,
      random,
      socketURL: (server) => socketURL(server, "/so", { token: this.#credentials.token, user }),
      parse: parseMessage,
      asHello: (f) => (f.op === "hello" ? f : undefined),
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
      onError: (error) => this.#events.emit("error", error),
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
      options,
    });
    this.#link = this.#makeLink();
  }

  on<K extends keyof RsoClientEvents>(event: K, listener: Listener<RsoClientEvents[K]>): Unsubscribe {
    return this.#events.on(event, listener);
  }

  /**
   * The server (one of `urls`) the /so socket is connected to, or trying; the first one before it was
   * opened. The relay's is `chat.url`.
   */
  get url(): string {
    return this.#so.url ?? this.urls[0]!;
  }

  /** Status of the /so socket (the relay's is `chat.status`). */
  get status(): Status {
    return this.#so.status;
  }

  /** The user id the server gave this client (hello of /so, else of /relay), once connected. */
  get user(): string | undefined {
    return this.#so.hello?.user ?? this.#relay.user;
  }

  /** The server's session id for the current or last /so connection. */
  get session(): string | undefined {
    return this.#so.hello?.session;
  }

  /** The limits of the current or last /so connection (§1.1). */
  get limits(): Limits | undefined {
    return this.#so.hello?.limits;
  }

  /** Private messages, receipts and conversations (§3.3, §3.4). Opens the /relay socket on first use. */
  get chat(): Chat {
    return this.#relay.chat;
  }

  /** Friends' presence and your own away status (§3.6). Opens the /relay socket on first use. */
  get presence(): Presence {
    return this.#relay.presence;
  }

  /** Your friend list and its actions (§3.5). Opens the /relay socket on first use. */
  get friends(): Friends {
    return this.#relay.friends;
  }

  /** Replaces the token for the next connection of both sockets (an open connection keeps its own). */
  setToken(token: string | undefined): void {
    this.#credentials.set(token);
  }

  /**
   * Starts connecting /so; after a stop (status "closed" because of a close code) starts again, and so does
   * a stopped relay socket.
   */
  connect(): void {
    this.#so.connect();
    this.#relay.restartIfStopped();
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

  /** Closes both sockets (code 1000), every object and every pending chat request, for good. */
  close(): void {
    if (this.#so.kind === "closed") return;
    this.#so.close(CloseCode.Normal);
    const error = new RsoError(ClientErrorCode.Closed, "the client was closed");
    for (const object of this.#objects.values()) object._closed(error);
    this.#objects.clear();
    this.#relay.close(error);
  }

  #route(frame: ServerFrame): void {
    switch (frame.op) {
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

  #nextId(): string {
    return this.#idPrefix + (++this.#counter).toString(36);
  }

  #makeLink(): Link {
    const client = this; // the link is this client's private face for its objects
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
        return before === "stopped" || before === "closed" ? so.stoppedError : undefined;
      },
      nextId: () => client.#nextId(),
      ownsId: (id) => id.startsWith(client.#idPrefix),
      write: (frame) => so.write(frame),
      retryDelay: (attempt) => so.retryDelay(attempt),
      detach: (object) => {
        const key = objectKey(object.name, object.persistent);
        if (client.#objects.get(key) === object) client.#objects.delete(key);
      },
      reportError: (error) => client.#events.emit("error", error),
    };
  }
}

const objectKey = (name: string, persistent: boolean): string => (persistent ? "p:" : "t:") + name;

/**
 * The URL of one socket: `path` is "/so" or "/relay". The server URL may already end in /so or /relay (of
 * either socket), which is replaced; http(s) becomes ws(s).
 */
export function socketURL(url: string, path: "/so" | "/relay", params: { token?: string | undefined; user?: string | undefined; device?: string | undefined }): string {
  const u = makeURL(url);
  if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol === "https:") u.protocol = "wss:";
  const base = u.pathname.replace(/\/(so|relay)\/?$/, "").replace(/\/$/, "");
  u.pathname = base + path;
  if (params.token !== undefined) u.searchParams.set("token", params.token);
  if (params.user !== undefined) u.searchParams.set("user", params.user);
  if (params.device !== undefined) u.searchParams.set("device", params.device);
  return u.toString();
}
