// A scripted stand-in for the server: a WebSocket the test drives by hand, and a client wired to it.
import { RsoClient, type RsoClientOptions } from "../../src/index.js";

export type Frame = Record<string, unknown> & { op: string };

/** Lets every pending microtask and promise callback run (setImmediate is not faked by the tests). */
export const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export const limits = {
  max_frame_bytes: 262144,
  max_value_bytes: 65536,
  max_slots: 1000,
  max_object_bytes: 524288,
  max_changes: 100,
  max_subscriptions: 100,
  max_name_bytes: 200,
  frames_per_second: 200,
  resync_window: 1000,
};

export class FakeSocket {
  readyState = 0;
  onopen: ((ev: object) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: { message?: string }) => void) | null = null;
  /** Messages the client sent, as written. */
  readonly messages: string[] = [];
  closedWith: { code: number | undefined; reason: string | undefined } | undefined;
  #read = 0;

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.messages.push(data);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  /** The code the client closed this socket with, if it did. */
  closeCode(): number | undefined {
    return this.closedWith?.code;
  }

  // ---- the server's side ----

  /** Opens the socket and sends hello. */
  accept(limitOverrides: Partial<typeof limits> = {}, user = "alice"): void {
    this.readyState = 1;
    this.onopen?.({});
    this.receive({ op: "hello", session: "s-" + user, user, limits: { ...limits, ...limitOverrides } });
  }

  /** Delivers frames to the client as one WebSocket message. */
  receive(...frames: object[]): void {
    this.onmessage?.({ data: frames.map((f) => JSON.stringify(f)).join("\n") });
  }

  /** The server closes the connection with `code`. */
  serverClose(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  /** The connection attempt fails before opening, as `ws` reports it (message) or a browser (none). */
  fail(message?: string): void {
    this.readyState = 3;
    this.onerror?.(message === undefined ? {} : { message });
    this.onclose?.({ code: 1006, reason: "" });
  }

  /** Every frame the client sent (messages split on "\n"). */
  frames(): Frame[] {
    return this.messages.flatMap((m) => m.split("\n")).map((f) => JSON.parse(f) as Frame);
  }

  /** The frames sent since the last call. */
  take(): Frame[] {
    const all = this.frames();
    const fresh = all.slice(this.#read);
    this.#read = all.length;
    return fresh;
  }

  /** The one frame with `op` sent since the last take (fails otherwise). */
  takeOne(op: string): Frame {
    const fresh = this.take().filter((f) => f.op === op);
    if (fresh.length !== 1) throw new Error(`expected one ${op} frame, got ${JSON.stringify(fresh)}`);
    return fresh[0]!;
  }
}

export interface Harness {
  client: RsoClient;
  sockets: FakeSocket[];
  /** The newest socket. */
  socket(): FakeSocket;
}

const open: RsoClient[] = [];

/** Closes every client made by harness(); call it after each test (real timers would keep Node running). */
export function closeClients(): void {
  for (const c of open.splice(0)) c.close();
}

export function harness(options: RsoClientOptions = {}, url: string | readonly string[] = "ws://rso.test"): Harness {
  const sockets: FakeSocket[] = [];
  class Socket extends FakeSocket {
    constructor(url: string) {
      super(url);
      sockets.push(this);
    }
  }
  const client = new RsoClient(url, { WebSocket: Socket, random: () => 0.5, ...options });
  open.push(client);
  return {
    client,
    sockets,
    socket: () => {
      const s = sockets.at(-1);
      if (s === undefined) throw new Error("no socket was created");
      return s;
    },
  };
}

/** A sync frame for `obj` (persistent). */
export function sync(obj: string, version: number, changes: object[], extra: { id?: unknown; epoch?: string } = {}): object {
  return { op: "sync", obj, persistent: true, epoch: extra.epoch ?? "e1", version, changes, ...(extra.id === undefined ? {} : { id: extra.id }) };
}

/** Connects `name` (persistent) through a fresh socket and answers its sub with `slots` at `version`. */
export async function subscribed(
  h: Harness,
  name = "room",
  state: { version?: number; epoch?: string; slots?: Record<string, unknown>; limits?: Partial<typeof limits> } = {},
) {
  const so = h.client.getRemote(name, { persistent: true });
  const connected = so.connect();
  const sock = h.socket();
  sock.accept(state.limits);
  await tick();
  const sub = sock.takeOne("sub");
  const changes = Object.entries(state.slots ?? {}).map(([n, value]) => ({ code: "change", name: n, value }));
  sock.receive(sync(name, state.version ?? 0, [{ code: "clear" }, ...changes], { id: sub.id, epoch: state.epoch ?? "e1" }));
  await connected;
  return { so, sock };
}

// ---- the private-chat relay (/relay, docs/PROTOCOL.md §3) ----

export const relayLimits = {
  duplicate_window_ms: 600000,
  frames_per_second: 50,
  friends_only: false,
  history_limit: 50,
  max_frame_bytes: 65536,
  max_history_limit: 200,
  max_message_bytes: 16384,
  messages_per_second: 20,
  presence_grace_ms: 5000,
  sync_max_messages: 500,
};

/** The newest socket to /relay. */
export function relaySocket(h: Harness): FakeSocket {
  const s = h.sockets.filter((x) => new URL(x.url).pathname.endsWith("/relay")).at(-1);
  if (s === undefined) throw new Error("no relay socket was created");
  return s;
}

/** Opens a relay socket and sends the relay's hello. */
export function acceptRelay(sock: FakeSocket, user = "alice", device = "d-1", limitOverrides: Partial<typeof relayLimits> = {}): void {
  sock.readyState = 1;
  sock.onopen?.({});
  sock.receive({ op: "hello", session: "r-" + user, user, device, limits: { ...relayLimits, ...limitOverrides } });
}

export const emptyFriends = { friends: [] as string[], incoming: [] as string[], outgoing: [] as string[], blocked: [] as string[] };

/**
 * Answers the login sequence on `sock` (which just got its hello): the friends request with `friends`
 * (not_modified when it is undefined and the request had a hash, else an empty list) and the sync with `convs`. Returns the two request frames.
 */
export async function answerLogin(
  sock: FakeSocket,
  options: { friends?: Partial<typeof emptyFriends> & { hash?: string }; presence?: object[]; convs?: object[] } = {},
): Promise<{ friends: Frame; sync: Frame }> {
  await tick();
  const sent = sock.take();
  const friends = sent.find((f) => f.op === "friends");
  const sync = sent.find((f) => f.op === "sync");
  if (friends === undefined || sync === undefined) throw new Error(`expected friends and sync, got ${JSON.stringify(sent)}`);
  const f = options.friends;
  sock.receive(
    f === undefined && friends.hash !== undefined
      ? { op: "friends", id: friends.id, hash: friends.hash, not_modified: true, presence: options.presence ?? [] }
      : { op: "friends", id: friends.id, hash: f?.hash ?? "h0", ...emptyFriends, ...f, presence: options.presence ?? [] },
  );
  sock.receive({ op: "sync", id: sync.id, convs: options.convs ?? [] });
  await tick();
  return { friends, sync };
}

/** A stored message as the server writes it. */
export function msg(seq: number, from: string, to: string, body: unknown = { n: seq }, cid = `c-${from}-${seq}`): object {
  return { seq, from, to, cid, ts: 1000 + seq, body };
}
