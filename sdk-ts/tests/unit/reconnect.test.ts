// The connection state machine with fake timers: backoff, close codes, resubscribe and re-send, failover
// across several servers, pings.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import { backoffDelay, ConnectionError, defaultBackoff, RsoError, type RsoClientOptions, type Status } from "../../src/index.js";
import { closeClients, harness, subscribed, sync, tick, type Frame, type Harness } from "../helpers/fake.js";

beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
afterEach(() => {
  closeClients();
  mock.timers.reset();
});

/** Advances the fake clock by `ms` and lets the promise callbacks it caused run. */
async function advance(ms: number): Promise<void> {
  mock.timers.tick(ms);
  await tick();
}

function statuses(h: Harness): Array<[Status, string | undefined]> {
  const seen: Array<[Status, string | undefined]> = [];
  h.client.on("status", (s, reason) => seen.push([s, reason?.code]));
  return seen;
}

describe("backoff", () => {
  test("full jitter stays within [0, min(15 s, 250 ms × 2^attempt))", () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = Math.min(15_000, 250 * 2 ** attempt);
      assert.equal(backoffDelay(attempt, () => 0), 0);
      assert.equal(backoffDelay(attempt, () => 0.999999), ceiling - 1);
      for (let i = 0; i < 50; i++) {
        const d = backoffDelay(attempt, Math.random);
        assert.ok(d >= 0 && d < ceiling, `attempt ${attempt}: ${d} not in [0, ${ceiling})`);
      }
    }
    assert.deepEqual(defaultBackoff, { baseMs: 250, factor: 2, maxMs: 15_000 });
  });

  test("a server that stays down is retried on the jittered exponential schedule", async () => {
    const h = harness({ random: () => 0.5 });
    const seen = statuses(h);
    h.client.connect();
    const expected = [125, 250, 500, 1000, 2000, 4000, 7500, 7500];
    for (const delay of expected) {
      const before = h.sockets.length;
      h.socket().fail("connect ECONNREFUSED 127.0.0.1:1");
      await advance(delay - 1);
      assert.equal(h.sockets.length, before, `no attempt before ${delay} ms`);
      await advance(1);
      assert.equal(h.sockets.length, before + 1, `an attempt after ${delay} ms`);
    }
    assert.deepEqual(seen.slice(0, 2), [
      ["connecting", undefined],
      ["reconnecting", "connection_lost"],
    ]);
    assert.equal(h.client.status, "reconnecting");
  });

  test("the backoff starts over after a connection that stayed up", async () => {
    const h = harness({ random: () => 0.5 });
    h.client.connect();
    for (let i = 0; i < 4; i++) {
      h.socket().fail("connect ECONNREFUSED");
      await advance(15_000);
    }
    h.socket().accept();
    await advance(10_000); // stable
    h.socket().serverClose(1006);
    const before = h.sockets.length;
    await advance(124);
    assert.equal(h.sockets.length, before);
    await advance(1);
    assert.equal(h.sockets.length, before + 1, "first delay again: 125 ms");
  });
});

describe("close codes", () => {
  const cases: Array<{ code: number; retry: boolean; name: string; within?: number; notBefore?: number }> = [
    { code: 1000, retry: false, name: "normal" },
    { code: 4001, retry: false, name: "unauthorized" },
    { code: 4003, retry: false, name: "token_expired" },
    { code: 4011, retry: false, name: "operator_disconnect" },
    { code: 1006, retry: true, name: "connection_lost" },
    { code: 1009, retry: true, name: "message_too_big" },
    { code: 1011, retry: true, name: "server_error" },
    { code: 1012, retry: true, name: "server_restart", within: 250 },
    { code: 4008, retry: true, name: "slow_consumer" },
    { code: 4010, retry: true, name: "pong_timeout" },
    { code: 4009, retry: true, name: "abuse", notBefore: 5_000 },
    { code: 1001, retry: true, name: "close_1001" },
  ];
  for (const c of cases) {
    test(`${c.code} → ${c.retry ? "reconnect" : "stop"}`, async () => {
      const h = harness({ random: () => 0.999 });
      const seen = statuses(h);
      const errors: RsoError[] = [];
      h.client.on("error", (e) => errors.push(e));
      h.client.connect();
      h.socket().accept();
      h.socket().serverClose(c.code, "bye");
      if (c.notBefore !== undefined) {
        await advance(c.notBefore - 1);
        assert.equal(h.sockets.length, 1, `not before ${c.notBefore} ms`);
      }
      if (c.within !== undefined) {
        await advance(c.within);
        assert.equal(h.sockets.length, 2, `within ${c.within} ms`);
      }
      await advance(60_000);
      assert.equal(h.sockets.length, c.retry ? 2 : 1);
      const last = seen.at(-1);
      if (c.retry) {
        assert.equal(seen.find(([s]) => s === "reconnecting")?.[1], c.name);
        assert.equal(errors.length, 0);
      } else {
        assert.deepEqual(last, ["closed", c.name]);
        assert.equal(errors.length, 1);
        const e = errors[0];
        assert.ok(e instanceof ConnectionError);
        assert.equal(e.name, "ConnectionError");
        assert.equal(e.closeCode, c.code);
        assert.equal(e.code, c.name);
        assert.equal(e.reason, "bye");
      }
    });
  }

  test("4003 with getToken: awaits a fresh token and reconnects with it", async () => {
    let calls = 0;
    const h = harness({ token: "old", getToken: async () => `new${++calls}` });
    h.client.connect();
    h.socket().accept();
    h.socket().serverClose(4003, "token expired");
    await advance(0);
    await tick();
    assert.equal(calls, 1);
    assert.equal(h.sockets.length, 2);
    assert.match(h.socket().url, /[?&]token=new1(&|$)/);
  });

  test("a failing getToken stops the client with the cause", async () => {
    const h = harness({ token: "old", getToken: () => Promise.reject(new Error("auth server down")) });
    const errors: RsoError[] = [];
    h.client.on("error", (e) => errors.push(e));
    h.client.connect();
    h.socket().accept();
    h.socket().serverClose(4003);
    await advance(0);
    await tick();
    assert.equal(h.client.status, "closed");
    assert.equal(errors[0]?.code, "token_refresh_failed");
    assert.equal((errors[0]?.cause as Error).message, "auth server down");
  });

  test("an upgrade refused with 401 stops; with getToken one fresh token is tried first", async () => {
    const plain = harness({ token: "bad" });
    plain.client.connect();
    plain.socket().fail("Unexpected server response: 401");
    await advance(60_000);
    assert.equal(plain.client.status, "closed");
    assert.equal(plain.sockets.length, 1);

    const tokens: string[] = [];
    const refreshing = harness({ token: "bad", getToken: () => (tokens.push("t"), "fresh") });
    refreshing.client.connect();
    refreshing.socket().fail("Unexpected server response: 401");
    await advance(0);
    await tick();
    assert.equal(refreshing.sockets.length, 2);
    refreshing.socket().fail("Unexpected server response: 401");
    await advance(60_000);
    assert.equal(tokens.length, 1, "a refused fresh token is not refreshed again");
    assert.equal(refreshing.client.status, "closed");
  });

  test("a browser-style failure (no message) stops only while the token was never accepted", async () => {
    const fresh = harness({ token: "t" });
    fresh.client.connect();
    fresh.socket().fail();
    await advance(60_000);
    assert.equal(fresh.client.status, "closed");

    const anonymous = harness();
    anonymous.client.connect();
    anonymous.socket().fail();
    await advance(60_000);
    assert.equal(anonymous.sockets.length, 2, "no token: retried");

    const proven = harness({ token: "t" });
    proven.client.connect();
    proven.socket().accept();
    proven.socket().serverClose(1006);
    await advance(60_000);
    proven.socket().fail();
    await advance(60_000);
    assert.equal(proven.sockets.length, 3, "the token worked before: the server is just down");
  });

  test("a stopped client starts again with connect(), and its objects resubscribe", async () => {
    const h = harness({ token: "t1" });
    const { so, sock } = await subscribed(h, "room", { version: 3 });
    sock.serverClose(4001, "bad token");
    assert.equal(h.client.status, "closed");
    h.client.setToken("t2");
    h.client.connect();
    assert.match(h.socket().url, /token=t2/);
    h.socket().accept();
    await tick();
    assert.equal(h.socket().takeOne("sub")["version"], 3);
    assert.equal(so.subscribed, false);
  });
});

describe("resuming after a reconnect", () => {
  test("resubscribes with version and epoch, re-sends the batch in flight with its id, then the pending changes", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h, "room", { version: 7, epoch: "k2", slots: { a: 0 } });
    so.setProperty("a", 1);
    await tick();
    const inflight = sock.takeOne("update");
    so.setProperty("b", 2); // waits behind the batch in flight
    sock.serverClose(1012);
    assert.equal(so.subscribed, false);
    so.setProperty("c", 3); // while disconnected
    assert.deepEqual({ ...so.data }, { a: 1, b: 2, c: 3 });
    await advance(250);
    const next = h.socket();
    assert.notEqual(next, sock);
    next.accept();
    await tick();
    const sub = next.takeOne("sub");
    assert.equal(sub["version"], 7);
    assert.equal(sub["epoch"], "k2");
    assert.equal(next.take().length, 0, "nothing else before the sub is answered");
    next.receive(sync("room", 8, [{ code: "change", name: "z", value: 1 }], { id: sub["id"], epoch: "k2" }));
    await tick();
    const resent = next.takeOne("update");
    assert.equal(resent["id"], inflight["id"]);
    assert.deepEqual(resent["changes"], inflight["changes"]);
    next.receive(sync("room", 9, [{ code: "success", name: "a" }], { id: inflight["id"], epoch: "k2" }));
    await tick();
    const after = next.takeOne("update");
    assert.deepEqual(after["changes"], [
      { name: "b", base: 9, value: 2 },
      { name: "c", base: 9, value: 3 },
    ]);
    assert.notEqual(after["id"], inflight["id"]);
    assert.deepEqual({ ...so.data }, { a: 1, z: 1, b: 2, c: 3 });
  });

  test("a retried batch that was committed before keeps the newer value the resync brought", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h, "room", { version: 1, slots: { a: 0 } });
    so.setProperty("a", "mine");
    await tick();
    const inflight = sock.takeOne("update");
    sock.serverClose(1006);
    await advance(250);
    const next = h.socket();
    next.accept();
    await tick();
    const sub = next.takeOne("sub");
    // Our batch was committed at 2 before the drop, then someone else set a at 3: the delta has their value.
    next.receive(sync("room", 3, [{ code: "change", name: "a", value: "theirs" }], { id: sub["id"] }));
    await tick();
    assert.equal(next.takeOne("update")["id"], inflight["id"]);
    // The server answers the retry with the original outcome at the current version (§1.6).
    next.receive(sync("room", 3, [{ code: "success", name: "a" }], { id: inflight["id"] }));
    assert.equal(so.data["a"], "theirs");
    assert.equal(so.pending, false);
  });

  test("a resync with clear keeps the pending changes on top of the new full state", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h, "room", { version: 5, slots: { a: 0, old: 1 } });
    so.fps = 0;
    so.setProperty("a", 1);
    sock.serverClose(4008);
    await advance(250);
    h.socket().accept();
    await tick();
    const sub = h.socket().takeOne("sub");
    h.socket().receive(sync("room", 2, [{ code: "clear" }, { code: "change", name: "b", value: 2 }], { id: sub["id"], epoch: "e2" }));
    assert.deepEqual({ ...so.data }, { b: 2, a: 1 });
    assert.equal(so.epoch, "e2");
    assert.equal(so.version, 2);
  });

  test("unconfirmed sends are re-sent with the same id; the second echo is dropped", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h);
    const got: string[] = [];
    so.on("message", (handler) => got.push(handler));
    so.send("first");
    await tick();
    const first = sock.takeOne("send");
    sock.serverClose(1006);
    so.send("second"); // while disconnected
    await advance(250);
    const next = h.socket();
    next.accept();
    await tick();
    const sub = next.takeOne("sub");
    next.receive(sync("room", 0, [], { id: sub["id"] }));
    await tick();
    const sends = next.take().filter((f) => f.op === "send");
    assert.deepEqual(sends.map((f) => f["handler"]), ["first", "second"]);
    assert.equal(sends[0]!["id"], first["id"]);
    const echo = (f: Frame) => ({ op: "message", obj: "room", persistent: true, handler: f["handler"], args: [], from: "alice", id: f["id"] });
    next.receive(echo(sends[0]!), echo(sends[1]!), echo(sends[0]!));
    assert.deepEqual(got, ["first", "second"]);
    assert.equal(so.pending, false);
  });

  test("events of a replaced socket are ignored", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h, "room", { slots: { a: 1 } });
    sock.serverClose(1006);
    await advance(250);
    sock.receive(sync("room", 9, [{ code: "change", name: "a", value: "stale" }]));
    sock.serverClose(1000);
    assert.equal(so.data["a"], 1);
    assert.equal(h.client.status, "reconnecting");
  });
});

describe("several servers", () => {
  const nodes = ["ws://n1.test", "ws://n2.test:8080", "wss://n3.test/base/so"];
  /** The server a socket was opened to: its URL without path and query. */
  const server = (url: string) => new URL(url).host;

  test("each attempt takes the next server in turn, on the jittered backoff", async () => {
    const h = harness({ random: () => 0.5 }, nodes);
    const seen = statuses(h);
    h.client.connect();
    assert.equal(h.socket().url, "ws://n1.test/so");
    // The socket URL of each server, and the delay before each attempt (random 0.5: half the ceiling).
    const socketURLs = ["ws://n1.test/so", "ws://n2.test:8080/so", "wss://n3.test/base/so"];
    const expected: Array<[delay: number, node: number]> = [
      [125, 1],
      [250, 2],
      [500, 0],
      [1000, 1],
    ];
    for (const [delay, node] of expected) {
      const before = h.sockets.length;
      h.socket().fail("connect ECONNREFUSED");
      await advance(delay - 1);
      assert.equal(h.sockets.length, before, `no attempt before ${delay} ms`);
      await advance(1);
      assert.equal(h.sockets.length, before + 1, `an attempt after ${delay} ms`);
      assert.equal(h.socket().url, socketURLs[node]);
      assert.equal(h.client.url, nodes[node]);
    }
    assert.deepEqual(seen, [
      ["connecting", undefined],
      ["reconnecting", "connection_lost"],
    ]);
  });

  test("a good connection stays on its server; after it is lost the next server is tried, the backoff starting over", async () => {
    const h = harness({ random: () => 0.5 }, nodes);
    h.client.connect();
    h.socket().fail("connect ECONNREFUSED");
    await advance(125);
    const good = h.socket();
    assert.equal(server(good.url), "n2.test:8080");
    good.accept();
    await advance(10_000); // stable: the backoff is reset
    assert.equal(h.sockets.length, 2, "no other server is tried while connected");
    assert.equal(h.client.url, nodes[1]);
    good.serverClose(1006);
    await advance(124);
    assert.equal(h.sockets.length, 2);
    await advance(1);
    assert.equal(server(h.socket().url), "n3.test", "the next server, after the first delay");
    h.socket().accept();
    h.socket().serverClose(1012);
    await advance(250);
    assert.equal(server(h.socket().url), "n1.test", "wraps around");
  });

  test("an object resubscribes on the next server with its last version and epoch, and re-sends its batch with the same id", async () => {
    const h = harness({}, nodes);
    const { so, sock } = await subscribed(h, "room", { version: 7, epoch: "k2", slots: { a: 0 } });
    assert.equal(server(sock.url), "n1.test");
    so.setProperty("a", 1);
    await tick();
    const inflight = sock.takeOne("update");
    sock.serverClose(1012, "server restarting; reconnect");
    await advance(250);
    const next = h.socket();
    assert.equal(server(next.url), "n2.test:8080");
    next.accept();
    await tick();
    const sub = next.takeOne("sub");
    assert.deepEqual([sub["obj"], sub["persistent"], sub["version"], sub["epoch"]], ["room", true, 7, "k2"]);
    next.receive(sync("room", 8, [{ code: "change", name: "z", value: 1 }], { id: sub["id"], epoch: "k2" }));
    await tick();
    const resent = next.takeOne("update");
    assert.equal(resent["id"], inflight["id"]);
    assert.deepEqual(resent["changes"], inflight["changes"]);
    next.receive(sync("room", 9, [{ code: "success", name: "a" }], { id: inflight["id"], epoch: "k2" }));
    assert.deepEqual({ ...so.data }, { a: 1, z: 1 });
    assert.equal(so.version, 9);
    assert.equal(so.pending, false);
  });

  test("browser-style failures: a token that never worked counts as refused only after every server failed", async () => {
    const h = harness({ token: "t", random: () => 0.5 }, nodes);
    const errors: RsoError[] = [];
    h.client.on("error", (e) => errors.push(e));
    h.client.connect();
    h.socket().fail();
    await advance(125);
    h.socket().fail();
    await advance(250);
    assert.equal(h.sockets.length, 3);
    assert.equal(h.client.status, "reconnecting");
    h.socket().fail();
    assert.equal(h.client.status, "closed");
    assert.equal(errors[0]?.code, "unauthorized");
    assert.match(errors[0]!.message, /any server/);
    await advance(60_000);
    assert.equal(h.sockets.length, 3);

    // One server reachable in between: the count starts over.
    const m = harness({ token: "t", random: () => 0.5 }, nodes.slice(0, 2));
    m.client.connect();
    m.socket().fail();
    await advance(125);
    m.socket().readyState = 1;
    m.socket().onopen?.({});
    m.socket().serverClose(1006); // opened, then lost before hello
    await advance(250);
    m.socket().fail();
    await advance(500);
    assert.equal(m.client.status, "reconnecting", "one failure in a row since the last socket that opened");
    assert.equal(m.sockets.length, 4);
  });

  test("a 401 (as Node's ws reports it) stops at once, whatever the other servers", async () => {
    const h = harness({ token: "bad" }, nodes);
    h.client.connect();
    h.socket().fail("Unexpected server response: 401");
    await advance(60_000);
    assert.equal(h.client.status, "closed");
    assert.equal(h.sockets.length, 1);
  });

  test("urls: a single URL is a list of one; an empty list is refused", () => {
    const one = harness({}, "ws://solo.test");
    assert.deepEqual(one.client.urls, ["ws://solo.test"]);
    assert.equal(one.client.url, "ws://solo.test");
    const list = harness({}, nodes);
    assert.deepEqual(list.client.urls, nodes);
    assert.ok(Object.isFrozen(list.client.urls));
    assert.equal(list.client.url, nodes[0], "the first one before any attempt");
    assert.throws(() => harness({}, []), (e: unknown) => e instanceof RsoError && e.code === "bad_url");
  });

  test("a bad URL in the list stops the client when its turn comes, naming it", async () => {
    const h = harness({}, ["ws://n1.test", "not a url"]);
    const errors: RsoError[] = [];
    h.client.on("error", (e) => errors.push(e));
    h.client.connect();
    h.socket().fail("connect ECONNREFUSED");
    await advance(60_000);
    assert.equal(h.client.status, "closed");
    assert.equal(errors[0]?.code, "bad_url");
    assert.match(errors[0]!.message, /"not a url"/);
  });
});

describe("keep-alive", () => {
  test("pings every 20 s; no pong within 10 s drops the socket and reconnects", async () => {
    const h = harness();
    const seen = statuses(h);
    const { sock } = await subscribed(h);
    await advance(19_999);
    assert.equal(sock.take().length, 0);
    await advance(1);
    const ping = sock.takeOne("ping");
    sock.receive({ op: "pong", id: ping["id"] });
    await advance(20_000);
    sock.takeOne("ping");
    await advance(9_999);
    assert.equal(sock.closeCode(), undefined);
    await advance(1);
    assert.equal(sock.closeCode(), 4000);
    assert.deepEqual(seen.at(-1), ["reconnecting", "timeout"]);
    await advance(250);
    assert.equal(h.sockets.length, 2);
  });

  test("no hello within 10 s counts as a failed attempt", async () => {
    const h = harness();
    h.client.connect();
    await advance(10_000);
    assert.equal(h.sockets[0]!.closeCode(), 4000);
    await advance(250);
    assert.equal(h.sockets.length, 2);
  });

  test("a malformed frame is a protocol error: reported, then the client reconnects", async () => {
    const h = harness();
    const errors: RsoError[] = [];
    h.client.on("error", (e) => errors.push(e));
    const { sock } = await subscribed(h);
    sock.onmessage?.({ data: '{"op":"sync","obj":"room"}' });
    assert.equal(errors[0]?.name, "ProtocolError");
    assert.equal(sock.closeCode(), 4000);
    assert.equal(h.client.status, "reconnecting");
  });
});

describe("urls and ids", () => {
  const url = (base: string, options: RsoClientOptions = {}) => {
    const h = harness(options, base);
    h.client.connect();
    return h.socket().url;
  };

  test("appends /so unless present, and passes token and user in the query", () => {
    assert.equal(url("ws://127.0.0.1:8080"), "ws://127.0.0.1:8080/so");
    assert.equal(url("ws://h:1/so"), "ws://h:1/so");
    assert.equal(url("wss://h/base/"), "wss://h/base/so");
    assert.equal(url("http://h:1", { user: "al ice" }), "ws://h:1/so?user=al+ice");
    assert.equal(url("ws://h:1/so", { token: "a.b.c" }), "ws://h:1/so?token=a.b.c");
  });

  test("request ids share a random per-client prefix and never repeat across reconnects", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h);
    so.send("a");
    await tick();
    sock.serverClose(1006);
    await advance(250);
    h.socket().accept();
    await tick();
    const ids = h.sockets.flatMap((s) => s.frames()).map((f) => f["id"] as string);
    assert.equal(new Set(ids).size, ids.length);
    const prefix = ids[0]!.split("-")[0]!;
    assert.match(prefix, /^[0-9A-Za-z]{8}$/);
    assert.ok(ids.every((id) => id.startsWith(prefix + "-")));
    const other = harness();
    const o = await subscribed(other);
    assert.ok(!(o.sock.frames()[0]!["id"] as string).startsWith(prefix));
  });
});
