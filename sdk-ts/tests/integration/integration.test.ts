// The SDK against the real rso server (built from this checkout): convergence, conflicts, messages,
// restarts, retries with the same id, failover across several URLs, and tokens.
import assert from "node:assert/strict";
import { createHmac, randomUUID } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";
import { WebSocket } from "ws";
import {
  ConnectionError,
  RsoClient,
  ServerError,
  type RemoteObject,
  type RsoClientOptions,
  type RsoError,
  type Status,
  type SyncChange,
  type WebSocketLike,
} from "../../src/index.js";
import { freePort, RsoServer, waitFor } from "./server.js";

const clients: RsoClient[] = [];

function connect(server: RsoServer, options: RsoClientOptions = {}): RsoClient {
  const c = new RsoClient(server.url, { WebSocket, ...options });
  clients.push(c);
  return c;
}

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

const unique = (prefix: string) => `${prefix}/${randomUUID().slice(0, 8)}`;

const settled = (...objects: RemoteObject[]) =>
  waitFor("every change to be answered", () => objects.every((o) => o.subscribed && !o.pending));

const plain = (o: RemoteObject) => ({ ...o.data });

/** A fresh client's view of the object: what the server holds. */
async function truth(server: RsoServer, name: string): Promise<{ data: Record<string, unknown>; version: number }> {
  const so = connect(server).getRemote(name, { persistent: true });
  await so.connect();
  return { data: plain(so), version: so.version };
}

describe("anonymous server", () => {
  let server: RsoServer;
  before(async () => {
    server = await RsoServer.start();
  });
  after(async () => {
    await server.dispose();
  });

  test("the user name given with ?user= comes back in hello", async () => {
    const c = connect(server, { user: "alice" });
    const so = c.getRemote(unique("hello"));
    await so.connect();
    assert.equal(c.user, "alice");
    assert.equal(c.status, "connected");
    assert.equal(c.limits?.maxChanges, 100);
  });

  test("two clients converge", async () => {
    const name = unique("converge");
    const a = connect(server, { user: "alice" }).getRemote(name, { persistent: true });
    const b = connect(server, { user: "bob" }).getRemote(name, { persistent: true });
    await Promise.all([a.connect(), b.connect()]);
    a.setProperty("title", "Hello");
    a.setProperty("list", [1, 2, 3]);
    b.setProperty("count", 1);
    b.setProperty("nested", { deep: { x: null } });
    b.setNull("nothing");
    await settled(a, b);
    a.setProperty("count", 2); // based on a version that includes b's first batch, or rejected: either way converges
    a.deleteProperty("list");
    await settled(a, b);
    await waitFor("both to reach the same version", () => a.version === b.version);
    assert.deepEqual(plain(a), plain(b));
    const t = await truth(server, name);
    assert.deepEqual(plain(a), t.data);
    assert.equal(a.version, t.version);
    assert.equal(t.data["nothing"], null, "JSON null is stored with setNull");
    assert.equal("list" in t.data, false);
  });

  test("conflicting concurrent writes: one success, the other rolled back, both equal", async () => {
    const name = unique("conflict");
    const a = connect(server, { user: "alice" }).getRemote(name, { persistent: true });
    const b = connect(server, { user: "bob" }).getRemote(name, { persistent: true });
    await Promise.all([a.connect(), b.connect()]);
    a.setProperty("slot", "start");
    await settled(a);
    await waitFor("bob to see the start", () => b.data["slot"] === "start");
    const answers: Array<[string, SyncChange["code"]]> = [];
    a.on("sync", (list) => list.forEach((e) => (e.code === "success" || e.code === "reject") && answers.push(["a", e.code])));
    b.on("sync", (list) => list.forEach((e) => (e.code === "success" || e.code === "reject") && answers.push(["b", e.code])));
    // Same tick: both batches leave with the same base.
    a.setProperty("slot", "from a");
    b.setProperty("slot", "from b");
    await settled(a, b);
    await waitFor("both to reach the same version", () => a.version === b.version);
    assert.equal(answers.length, 2);
    assert.deepEqual(answers.map(([, code]) => code).sort(), ["reject", "success"]);
    const winner = answers.find(([, code]) => code === "success")![0];
    assert.equal(a.data["slot"], `from ${winner}`);
    assert.deepEqual(plain(a), plain(b));
    assert.deepEqual(plain(a), (await truth(server, name)).data);
  });

  test("send reaches every subscriber, the sender included, once", async () => {
    const name = unique("send");
    const a = connect(server, { user: "alice" }).getRemote(name);
    const b = connect(server, { user: "bob" }).getRemote(name);
    await Promise.all([a.connect(), b.connect()]);
    const got: string[] = [];
    a.on("message", (handler, args, from) => got.push(`a:${handler}:${JSON.stringify(args)}:${from}`));
    b.on("message", (handler, args, from) => got.push(`b:${handler}:${JSON.stringify(args)}:${from}`));
    a.send("chat", "hi", { n: 1 });
    b.send("wave");
    await waitFor("four deliveries", () => got.length === 4 && !a.pending && !b.pending);
    assert.deepEqual(got.sort(), ['a:chat:["hi",{"n":1}]:alice', "a:wave:[]:bob", 'b:chat:["hi",{"n":1}]:alice', "b:wave:[]:bob"]);
  });

  test("a lost answer: after the reconnect the batch is re-sent with its id and applied once", async () => {
    const name = unique("retry");
    const { tap, TapSocket } = tapSockets();
    const a = connect(server, { user: "alice", WebSocket: TapSocket }).getRemote(name, { persistent: true });
    const b = connect(server, { user: "bob" }).getRemote(name, { persistent: true });
    await Promise.all([a.connect(), b.connect()]);
    const seenByB: unknown[] = [];
    b.on("sync", (list) => list.forEach((e) => e.code === "change" && e.name === "y" && seenByB.push(e.value)));
    const messagesToA: string[] = [];
    a.on("message", (handler) => messagesToA.push(handler));
    const messagesToB: string[] = [];
    b.on("message", (handler) => messagesToB.push(handler));

    // The server commits the update, but its answer is lost with the connection; while alice is offline,
    // bob overwrites the slot. Her retry must be recognised (success, not a conflict) and keep bob's value.
    tap.drop = (f) => {
      if (f["op"] !== "sync" || f["id"] !== tap.sentFrames("update").at(-1)?.["id"]) return false;
      tap.offline = true;
      return true;
    };
    const answers: string[] = [];
    a.on("sync", (list) => list.forEach((e) => (e.code === "success" || e.code === "reject") && answers.push(`${e.code}:${e.name}`)));
    a.setProperty("y", 1);
    await waitFor("the connection to drop", () => tap.dropped);
    await waitFor("bob to see y", () => b.data["y"] === 1);
    b.setProperty("y", 2);
    await settled(b);
    tap.offline = false;
    await settled(a);
    const updates = tap.sentFrames("update");
    assert.equal(updates.length, 2, "sent, then re-sent after the reconnect");
    assert.equal(updates[0]!["id"], updates[1]!["id"]);
    assert.deepEqual(answers.filter((x) => x.endsWith(":y")), ["success:y"], "the retry is answered with the original outcome");
    await waitFor("bob to catch up", () => b.version === a.version);
    assert.deepEqual(seenByB, [1], "committed once");
    assert.equal(a.version, 2);
    assert.equal(a.data["y"], 2, "the newer value stays");

    // The same for a message: its echo is lost, the re-sent copy is not delivered again.
    tap.dropped = false;
    tap.drop = (f) => f["op"] === "message" && f["id"] === tap.sentFrames("send").at(-1)?.["id"];
    a.send("once");
    await waitFor("the connection to drop", () => tap.dropped);
    await settled(a);
    await waitFor("bob's message", () => messagesToB.length > 0);
    assert.equal(tap.sentFrames("send").length, 2);
    assert.deepEqual(messagesToA, ["once"]);
    assert.deepEqual(messagesToB, ["once"]);
    assert.deepEqual(plain(a), plain(b));
  });

  test("the server refuses a value that is too large: rolled back, reported", async () => {
    const a = connect(server).getRemote(unique("big"), { persistent: true });
    await a.connect();
    const errors: RsoError[] = [];
    a.on("error", (e) => errors.push(e));
    a.setProperty("ok", 1);
    await settled(a);
    a.setProperty("img", "x".repeat(70_000));
    await waitFor("the refusal", () => errors.length > 0);
    assert.ok(errors[0] instanceof ServerError);
    assert.equal(errors[0].code, "value_too_large");
    assert.deepEqual(plain(a), { ok: 1 });
    assert.equal(a.pending, false);
  });
});

describe("server restart (SIGTERM, then the same port and data)", () => {
  let server: RsoServer;
  before(async () => {
    server = await RsoServer.start();
  });
  after(async () => {
    await server.dispose();
  });

  test("the client reconnects by itself and resumes; the change in flight is applied once", async () => {
    const name = unique("restart");
    const alice = connect(server, { user: "alice" });
    const a = alice.getRemote(name, { persistent: true });
    const b = connect(server, { user: "bob" }).getRemote(name, { persistent: true });
    await Promise.all([a.connect(), b.connect()]);
    a.setProperty("x", 1);
    await settled(a);
    await waitFor("bob to see x", () => b.version === a.version);
    const before = a.version;
    const seenByB: unknown[] = [];
    b.on("sync", (list) => list.forEach((e) => e.code === "change" && e.name === "x" && seenByB.push(e.value)));
    const statuses: Array<[Status, string | undefined]> = [];
    alice.on("status", (s, reason) => statuses.push([s, reason?.code]));
    const notes: string[] = [];
    a.on("message", (handler) => notes.push(handler));

    a.setProperty("x", 2);
    a.send("note");
    await new Promise((resolve) => setImmediate(resolve)); // the frames are written, not yet answered
    await server.stop("SIGTERM");
    await waitFor("alice to notice", () => statuses.some(([s]) => s === "reconnecting"));
    assert.deepEqual(statuses[0], ["reconnecting", "server_restart"], "the server said 1012");
    assert.equal(a.data["x"], 2, "the local change still shows");
    assert.equal(a.subscribed, false);

    await server.restart();
    await waitFor("alice to resume", () => alice.status === "connected" && a.subscribed && !a.pending, 30_000);
    await waitFor("bob to resume", () => b.subscribed && b.version === a.version, 30_000);
    const t = await truth(server, name);
    assert.deepEqual(t.data, { x: 2 });
    assert.equal(t.version, before + 1, "one commit");
    assert.equal(a.version, t.version);
    assert.deepEqual(plain(a), t.data);
    assert.deepEqual(plain(b), t.data);
    assert.deepEqual(seenByB, [2]);
    assert.deepEqual(notes, ["note"], "the message was echoed to its sender once");
  });

  test("a batch committed before the restart whose answer was lost is re-sent after it and not applied again", async () => {
    const name = unique("restart-retry");
    const { tap, TapSocket } = tapSockets();
    const alice = connect(server, { user: "alice", WebSocket: TapSocket });
    const a = alice.getRemote(name, { persistent: true });
    const b = connect(server, { user: "bob" }).getRemote(name, { persistent: true });
    await Promise.all([a.connect(), b.connect()]);

    // Committed, answer lost, and alice stays offline until bob changed the slot and the server restarted.
    tap.drop = (f) => {
      if (f["op"] !== "sync" || f["id"] !== tap.sentFrames("update").at(-1)?.["id"]) return false;
      tap.offline = true;
      return true;
    };
    const answers: string[] = [];
    a.on("sync", (list) => list.forEach((e) => (e.code === "success" || e.code === "reject") && answers.push(`${e.code}:${e.name}`)));
    a.setProperty("x", "alice");
    await waitFor("the connection to drop", () => tap.dropped);
    await waitFor("bob to see the commit", () => b.data["x"] === "alice");
    b.setProperty("x", "bob");
    await settled(b);
    await server.stop("SIGTERM");
    await server.restart();
    tap.offline = false;
    await waitFor("alice to resume", () => alice.status === "connected" && a.subscribed && !a.pending, 30_000);
    const updates = tap.sentFrames("update");
    assert.equal(updates.length, 2);
    assert.equal(updates[1]!["id"], updates[0]!["id"], "re-sent with the same id");
    assert.deepEqual(answers.filter((x) => x.endsWith(":x")), ["success:x"], "the restarted server still knows the id");
    await waitFor("bob to resume", () => b.subscribed && b.version === a.version, 30_000);
    const t = await truth(server, name);
    assert.deepEqual(t, { data: { x: "bob" }, version: 2 });
    assert.deepEqual(plain(a), t.data);
    assert.deepEqual(plain(b), t.data);
  });

  test("several URLs, the first a closed port: both sockets fail over to the server, and after a restart cycle back to it and resume", async () => {
    const closed = `ws://127.0.0.1:${await freePort()}`; // nothing listens there: ECONNREFUSED
    const alice = new RsoClient([closed, server.url], { WebSocket, user: "alice", backoff: { baseMs: 50, maxMs: 200 } });
    clients.push(alice);
    const statuses: Array<[Status, string | undefined]> = [];
    alice.on("status", (s, reason) => statuses.push([s, reason?.code]));
    const name = unique("failover");
    const a = alice.getRemote(name, { persistent: true });
    await a.connect();
    assert.deepEqual(statuses.slice(0, 3), [
      ["connecting", undefined],
      ["reconnecting", "connection_lost"],
      ["connected", undefined],
    ], "the closed port first, then the server");
    assert.equal(alice.url, server.url);
    await alice.friends.list(); // the relay socket fails over on its own
    assert.equal(alice.chat.url, server.url);
    a.setProperty("x", 1);
    await settled(a);
    const before = a.version;

    const b = connect(server, { user: "bob" }).getRemote(name, { persistent: true });
    await b.connect();
    await server.stop("SIGTERM");
    await waitFor("alice to notice", () => alice.status === "reconnecting" && alice.chat.status === "reconnecting");
    a.setProperty("x", 2); // while every URL is down
    await server.restart();
    await waitFor("alice to resume", () => alice.status === "connected" && a.subscribed && !a.pending, 30_000);
    await waitFor("alice's relay to resume", () => alice.chat.status === "connected", 30_000);
    assert.equal(alice.url, server.url);
    assert.ok(statuses.filter(([s]) => s === "connected").length >= 2);
    await waitFor("bob to see it", () => b.subscribed && b.version === a.version, 30_000);
    const t = await truth(server, name);
    assert.deepEqual(t, { data: { x: 2 }, version: before + 1 });
    assert.deepEqual(plain(a), t.data);
    assert.deepEqual(plain(b), t.data);
  });
});

// ---- tokens ----

const secret = "integration-test-secret-0123456789";

function token(claims: { sub: string; exp?: number; read?: string[]; write?: string[] }, key = secret): string {
  const b64 = (v: object | Buffer) => (Buffer.isBuffer(v) ? v : Buffer.from(JSON.stringify(v))).toString("base64url");
  const payload = { sub: claims.sub, exp: claims.exp ?? Math.floor(Date.now() / 1000) + 3600, rso: { read: claims.read ?? [], write: claims.write ?? [] } };
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(payload)}`;
  return `${head}.${b64(createHmac("sha256", key).update(head).digest())}`;
}

describe("server with tokens", () => {
  let server: RsoServer;
  before(async () => {
    server = await RsoServer.start({ tokenSecret: secret });
  });
  after(async () => {
    await server.dispose();
  });

  test("read-only access: sub works, a write is refused with forbidden and rolled back", async () => {
    const writer = connect(server, { token: token({ sub: "owner", write: ["pub/**"] }) }).getRemote("pub/doc", { persistent: true });
    await writer.connect();
    writer.setProperty("text", "by owner");
    await settled(writer);
    const reader = connect(server, { token: token({ sub: "reader", read: ["pub/*"] }) });
    const so = reader.getRemote("pub/doc", { persistent: true });
    await so.connect();
    assert.equal(reader.user, "reader");
    const errors: RsoError[] = [];
    so.on("error", (e) => errors.push(e));
    so.setProperty("text", "by reader");
    assert.equal(so.data["text"], "by reader");
    await waitFor("the refusal", () => errors.length > 0);
    assert.ok(errors[0] instanceof ServerError);
    assert.equal(errors[0].code, "forbidden");
    assert.equal(so.data["text"], "by owner");
  });

  test("a sub outside the token's patterns rejects connect() with forbidden", async () => {
    const c = connect(server, { token: token({ sub: "reader", read: ["pub/*"] }) });
    await assert.rejects(c.getRemote("private/x", { persistent: true }).connect(), (e: unknown) => e instanceof ServerError && e.code === "forbidden");
    assert.equal(c.status, "connected", "the connection stays open");
  });

  test("a token with a bad signature is unauthorized: the client stops", async () => {
    const c = connect(server, { token: token({ sub: "mallory", read: ["**"] }, "another-secret-0123456789") });
    const errors: RsoError[] = [];
    c.on("error", (e) => errors.push(e));
    await assert.rejects(c.getRemote("pub/doc", { persistent: true }).connect(), (e: unknown) => e instanceof ConnectionError && e.code === "unauthorized");
    assert.equal(c.status, "closed");
    assert.equal(errors[0]?.code, "unauthorized");
  });

  test("a token that expires while connected (4003) is replaced through getToken, and the client resumes", async () => {
    let refreshed = 0;
    const c = connect(server, {
      token: token({ sub: "alice", read: ["pub/**"], write: ["pub/**"], exp: Math.floor(Date.now() / 1000) + 2 }),
      getToken: () => {
        refreshed++;
        return token({ sub: "alice", read: ["pub/**"], write: ["pub/**"] });
      },
    });
    const reasons: Array<string | undefined> = [];
    c.on("status", (_, reason) => reasons.push(reason?.code));
    const so = c.getRemote(unique("pub/expiry"), { persistent: true });
    await so.connect();
    await waitFor("the token to expire and be replaced", () => refreshed === 1 && c.status === "connected" && so.subscribed, 15_000);
    assert.ok(reasons.includes("token_expired"));
    so.setProperty("after", true);
    await settled(so);
  });
});

/**
 * `ws` sockets that record what the client sends, can lose one incoming frame together with the
 * connection (as when a network fails between the server's answer and the client), and can be kept offline.
 */
function tapSockets() {
  const tap = {
    sent: [] as string[],
    /** The next incoming message holding a frame that matches is lost, and the connection with it. */
    drop: undefined as ((frame: Record<string, unknown>) => boolean) | undefined,
    dropped: false,
    /** New sockets fail at once, as with no network. */
    offline: false,
    sentFrames(op: string): Array<Record<string, unknown>> {
      return tap.sent
        .flatMap((m) => m.split("\n"))
        .map((f) => JSON.parse(f) as Record<string, unknown>)
        .filter((f) => f["op"] === op);
    },
  };

  class TapSocket implements WebSocketLike {
    onopen: ((ev: object) => void) | null = null;
    onmessage: ((ev: { data: unknown }) => void) | null = null;
    onclose: ((ev: { code: number; reason: string }) => void) | null = null;
    onerror: ((ev: { message?: string; error?: unknown }) => void) | null = null;
    readonly #ws: WebSocket | undefined;

    constructor(url: string) {
      if (tap.offline) {
        this.#ws = undefined;
        setImmediate(() => {
          this.onerror?.({ message: "connect ECONNREFUSED (offline)" });
          this.onclose?.({ code: 1006, reason: "" });
        });
        return;
      }
      const ws = new WebSocket(url);
      this.#ws = ws;
      ws.onopen = () => this.onopen?.({});
      ws.onclose = (e) => this.onclose?.({ code: e.code, reason: e.reason });
      ws.onerror = (e) => this.onerror?.({ message: e.message, error: e.error });
      ws.onmessage = (e) => {
        const data = String(e.data);
        const drop = tap.drop;
        if (drop !== undefined && data.split("\n").some((f) => f !== "" && drop(JSON.parse(f) as Record<string, unknown>))) {
          tap.drop = undefined;
          tap.dropped = true;
          ws.terminate(); // the client sees 1006, as after a network failure
          return;
        }
        this.onmessage?.({ data });
      };
    }

    get readyState(): number {
      return this.#ws?.readyState ?? 3;
    }

    send(data: string): void {
      tap.sent.push(data);
      this.#ws?.send(data);
    }

    close(code?: number, reason?: string): void {
      this.#ws?.close(code, reason);
    }
  }

  return { tap, TapSocket };
}
