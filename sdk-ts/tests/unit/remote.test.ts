// A remote object against a scripted server: optimistic changes, answers, convergence, batching, messages.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import { RsoError, ServerError, type SyncChange } from "../../src/index.js";
import { closeClients, harness, subscribed, sync, tick, type Frame } from "../helpers/fake.js";

afterEach(closeClients);

const changesOf = (f: Frame) => f["changes"] as Array<Record<string, unknown>>;

describe("connect", () => {
  test("subscribes with no version, resolves on the first sync and applies the full state", async () => {
    const h = harness();
    const so = h.client.getRemote("room", { persistent: true });
    assert.equal(h.client.getRemote("room", { persistent: true }), so, "same name and namespace: same instance");
    assert.notEqual(h.client.getRemote("room"), so, "the temporary namespace is another object");
    let resolved = false;
    void so.connect().then(() => (resolved = true));
    h.socket().accept();
    await tick();
    const sub = h.socket().takeOne("sub");
    assert.deepEqual(Object.keys(sub).sort(), ["id", "obj", "op", "persistent"]);
    assert.equal(sub["obj"], "room");
    assert.equal(sub["persistent"], true);
    assert.equal(resolved, false);
    const events: SyncChange[][] = [];
    so.on("sync", (list) => events.push(list));
    h.socket().receive(sync("room", 7, [{ code: "clear" }, { code: "change", name: "a", value: 1 }], { id: sub["id"], epoch: "k2" }));
    await tick();
    assert.equal(resolved, true);
    assert.deepEqual({ ...so.data }, { a: 1 });
    assert.equal(so.version, 7);
    assert.equal(so.epoch, "k2");
    assert.deepEqual(events, [[{ code: "clear" }, { code: "change", name: "a", value: 1 }]]);
  });

  test("rejects with the ServerError when the sub is refused", async () => {
    const h = harness();
    const so = h.client.getRemote("secret", { persistent: true });
    const connected = so.connect();
    h.socket().accept();
    await tick();
    const sub = h.socket().takeOne("sub");
    h.socket().receive({ op: "error", code: "forbidden", message: "no", id: sub["id"], obj: "secret", persistent: true });
    await assert.rejects(connected, (e: unknown) => e instanceof ServerError && e.code === "forbidden" && e.id === sub["id"] && e.name === "ServerError");
    assert.equal(so.subscribed, false);
  });

  test("changes and messages made before connect() go out after the first sync", async () => {
    const h = harness();
    const so = h.client.getRemote("room", { persistent: true });
    so.setProperty("a", 1);
    so.send("hello");
    assert.equal(h.sockets.length, 0, "nothing happens before connect()");
    const connected = so.connect();
    h.socket().accept();
    await tick();
    const sub = h.socket().takeOne("sub");
    assert.equal(h.socket().take().length, 0);
    h.socket().receive(sync("room", 3, [{ code: "clear" }, { code: "change", name: "b", value: 2 }], { id: sub["id"] }));
    await connected;
    await tick();
    assert.deepEqual(h.socket().take().map((f) => [f.op, f["changes"] ?? f["handler"]]), [
      ["update", [{ name: "a", base: 3, value: 1 }]],
      ["send", "hello"],
    ]);
    assert.equal(h.socket().messages.length, 2, "one message for the sub, one for the two frames of the same tick");
    assert.deepEqual({ ...so.data }, { b: 2, a: 1 });
  });

  test("ignores frames of an earlier subscription that arrive before the sub is answered", async () => {
    const h = harness();
    const so = h.client.getRemote("room", { persistent: true });
    const connected = so.connect();
    h.socket().accept();
    await tick();
    const sub = h.socket().takeOne("sub");
    h.socket().receive(sync("room", 9, [{ code: "change", name: "stale", value: 1 }]));
    h.socket().receive(sync("room", 9, [{ code: "clear" }, { code: "change", name: "a", value: 2 }], { id: sub["id"] }));
    await connected;
    assert.deepEqual({ ...so.data }, { a: 2 });
  });
});

describe("optimistic changes", () => {
  test("apply at once, go out as one batch on the next microtask, and are confirmed by success", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h, "room", { version: 4, slots: { a: 1, gone: true } });
    so.setProperty("a", 2);
    so.setProperty("b", { deep: [1] });
    so.deleteProperty("gone");
    assert.deepEqual({ ...so.data }, { a: 2, b: { deep: [1] } }, "local changes show at once");
    assert.equal(so.pending, true);
    assert.equal(sock.take().length, 0, "nothing sent before the microtask");
    await tick();
    const up = sock.takeOne("update");
    assert.deepEqual(changesOf(up), [
      { name: "a", base: 4, value: 2 },
      { name: "b", base: 4, value: { deep: [1] } },
      { name: "gone", base: 4, delete: true },
    ]);
    sock.receive(sync("room", 5, ["a", "b", "gone"].map((name) => ({ code: "success", name })), { id: up["id"] }));
    assert.deepEqual({ ...so.data }, { a: 2, b: { deep: [1] } });
    assert.equal(so.version, 5);
    assert.equal(so.pending, false);
  });

  test("a reject takes the server's value, or removes the slot when the reject has none", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h, "room", { version: 1, slots: { a: "server" } });
    so.setProperty("a", "mine");
    so.setProperty("fresh", 1);
    await tick();
    const up = sock.takeOne("update");
    const events: Array<[SyncChange[], boolean]> = [];
    so.on("sync", (list, info) => events.push([list, info.local]));
    sock.receive(
      sync("room", 1, [{ code: "reject", name: "a", value: "theirs", reason: "conflict" }, { code: "reject", name: "fresh", reason: "conflict" }], { id: up["id"] }),
    );
    assert.deepEqual({ ...so.data }, { a: "theirs" });
    assert.equal(events.length, 1);
    assert.equal(events[0]![1], false);
  });

  test("a reject keeps a newer local change for the slot, which goes out in the next batch", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h, "room", { version: 1, slots: { a: 0 } });
    so.setProperty("a", 1);
    await tick();
    const first = sock.takeOne("update");
    so.setProperty("a", 2);
    await tick();
    assert.equal(sock.take().length, 0, "one batch in flight at a time");
    sock.receive(sync("room", 2, [{ code: "change", name: "a", value: 9 }]));
    assert.equal(so.data["a"], 2, "the pending value stays on top of a change by someone else");
    sock.receive(sync("room", 2, [{ code: "reject", name: "a", value: 9, reason: "conflict" }], { id: first["id"] }));
    assert.equal(so.data["a"], 2);
    await tick();
    const second = sock.takeOne("update");
    assert.deepEqual(changesOf(second), [{ name: "a", base: 2, value: 2 }]);
    assert.notEqual(second["id"], first["id"]);
    sock.receive(sync("room", 3, [{ code: "success", name: "a" }], { id: second["id"] }));
    assert.equal(so.data["a"], 2);
  });

  test("converges under interleaved changes by others", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h, "room", { version: 10, slots: { x: 0, y: 0 } });
    so.setProperty("x", 1);
    await tick();
    const up = sock.takeOne("update");
    sock.receive(
      sync("room", 11, [{ code: "change", name: "y", value: 5, oldValue: 0 }]),
      sync("room", 12, [{ code: "delete", name: "x", oldValue: 0 }]),
    );
    assert.deepEqual({ ...so.data }, { x: 1, y: 5 }, "own pending x on top, y from the other client");
    // The server judged our base 10 against the delete at 12: conflict, slot absent.
    sock.receive(sync("room", 12, [{ code: "reject", name: "x", reason: "conflict" }], { id: up["id"] }));
    assert.deepEqual({ ...so.data }, { y: 5 });
    so.setProperty("y", 6);
    await tick();
    const up2 = sock.takeOne("update");
    sock.receive(sync("room", 13, [{ code: "change", name: "z", value: 1 }]), sync("room", 14, [{ code: "success", name: "y" }], { id: up2["id"] }));
    assert.deepEqual({ ...so.data }, { y: 6, z: 1 });
    assert.equal(so.version, 14);
    assert.equal(so.pending, false);
  });

  test("slots an answer does not list were no-ops and settle on the server value", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h, "room", { version: 3, slots: { a: 1 } });
    so.setProperty("a", 1);
    await tick();
    const up = sock.takeOne("update");
    sock.receive(sync("room", 3, [], { id: up["id"] }));
    assert.equal(so.pending, false);
    assert.deepEqual({ ...so.data }, { a: 1 });
  });

  test("a reset object (clear at epoch \"\" version 0) keeps the pending change, which its answer confirms", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h, "room", { version: 9, epoch: "old", slots: { a: 1, b: 2 } });
    so.setProperty("a", 5);
    await tick();
    const up = sock.takeOne("update");
    sock.receive(sync("room", 0, [{ code: "clear" }], { epoch: "" }));
    assert.deepEqual({ ...so.data }, { a: 5 });
    assert.equal(so.epoch, "");
    assert.equal(so.version, 0);
    sock.receive(sync("room", 1, [{ code: "success", name: "a" }], { id: up["id"], epoch: "new" }));
    assert.deepEqual({ ...so.data }, { a: 5 });
    assert.equal(so.pending, false);
    assert.equal(so.epoch, "new");
  });

  test("null and undefined delete; setNull stores JSON null; setDirty re-sends a value mutated in place", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h, "room", { version: 1, slots: { a: 1, b: 2, list: [1] } });
    so.setProperty("a", null);
    so.setProperty("b", undefined);
    so.setNull("n");
    (so.data["list"] as number[]).push(2);
    so.setDirty("list");
    so.setDirty("missing");
    await tick();
    const up = sock.takeOne("update");
    assert.deepEqual(changesOf(up), [
      { name: "a", base: 1, delete: true },
      { name: "b", base: 1, delete: true },
      { name: "n", base: 1, value: null },
      { name: "list", base: 1, value: [1, 2] },
    ]);
    assert.deepEqual({ ...so.data }, { list: [1, 2], n: null });
  });

  test("values that are not JSON are refused at once", async () => {
    const h = harness();
    const { so } = await subscribed(h);
    const cyclic: Record<string, unknown> = {};
    cyclic["self"] = cyclic;
    assert.throws(() => so.setProperty("a", 1n), (e: unknown) => e instanceof RsoError && e.code === "invalid_value" && e.cause instanceof TypeError);
    assert.throws(() => so.setProperty("a", cyclic), RsoError);
    assert.throws(() => so.setProperty("a", () => 1), RsoError);
    assert.equal(so.pending, false);
  });

  test("data is a frozen snapshot", async () => {
    const h = harness();
    const { so } = await subscribed(h, "room", { slots: { a: 1 } });
    const before = so.data;
    assert.throws(() => {
      (before as Record<string, unknown>)["a"] = 2;
    }, TypeError);
    so.setProperty("a", 3);
    assert.equal(before["a"], 1);
    assert.equal(so.data["a"], 3);
  });
});

describe("errors for a batch", () => {
  test("a refused batch is rolled back, reported as local rejects and as an error", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h, "room", { version: 2, slots: { a: 1 } });
    const errors: RsoError[] = [];
    const rejects: SyncChange[][] = [];
    so.on("error", (e) => errors.push(e));
    so.on("sync", (list, info) => info.local && rejects.push(list));
    so.setProperty("a", "x".repeat(10));
    so.setProperty("b", 1);
    await tick();
    const up = sock.takeOne("update");
    sock.receive({ op: "error", code: "value_too_large", message: "too big", id: up["id"], obj: "room", persistent: true });
    assert.deepEqual({ ...so.data }, { a: 1 });
    assert.equal(so.pending, false);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof ServerError);
    assert.equal(errors[0].code, "value_too_large");
    assert.deepEqual(rejects, [[{ code: "reject", name: "a", value: 1, reason: "value_too_large" }, { code: "reject", name: "b", reason: "value_too_large" }]]);
  });

  test("busy is retried later with the same id", async () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const h = harness();
      const { so, sock } = await subscribed(h);
      so.setProperty("a", 1);
      await tick();
      const up = sock.takeOne("update");
      sock.receive({ op: "error", code: "busy", message: "contention", id: up["id"], obj: "room", persistent: true });
      assert.equal(so.data["a"], 1);
      assert.equal(sock.take().length, 0);
      mock.timers.tick(5_000);
      await tick();
      const again = sock.takeOne("update");
      assert.equal(again["id"], up["id"]);
    } finally {
      mock.timers.reset();
    }
  });

  test("a change too large for one frame is rolled back without being sent", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h, "room", { limits: { max_frame_bytes: 300 } });
    const errors: RsoError[] = [];
    so.on("error", (e) => errors.push(e));
    so.setProperty("big", "x".repeat(400));
    so.setProperty("small", 1);
    await tick();
    const up = sock.takeOne("update");
    assert.deepEqual(changesOf(up), [{ name: "small", base: 0, value: 1 }]);
    assert.equal(errors[0]?.code, "frame_too_large");
    assert.equal("big" in so.data, false);
  });

  test("batches hold at most max_changes changes; the rest follows after the answer", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h, "room", { limits: { max_changes: 2 } });
    for (const n of ["a", "b", "c"]) so.setProperty(n, n);
    await tick();
    const first = sock.takeOne("update");
    assert.deepEqual(changesOf(first).map((c) => c["name"]), ["a", "b"]);
    sock.receive(sync("room", 1, [{ code: "success", name: "a" }, { code: "success", name: "b" }], { id: first["id"] }));
    await tick();
    assert.deepEqual(changesOf(sock.takeOne("update")), [{ name: "c", base: 1, value: "c" }]);
  });
});

describe("fps and flush", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  test("fps coalesces changes (last value wins) into at most fps batches per second", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h);
    so.fps = 10;
    let version = 0;
    const answer = (f: Frame) =>
      sock.receive(sync("room", ++version, changesOf(f).map((c) => ({ code: "success", name: c["name"] })), { id: f["id"] }));
    so.setProperty("x", 1);
    await tick();
    const first = sock.takeOne("update");
    answer(first);
    for (let i = 2; i <= 5; i++) so.setProperty("x", i);
    so.setProperty("y", 1);
    await tick();
    assert.equal(sock.take().length, 0, "held back until 100 ms after the last batch");
    mock.timers.tick(99);
    await tick();
    assert.equal(sock.take().length, 0);
    mock.timers.tick(1);
    await tick();
    const second = sock.takeOne("update");
    assert.deepEqual(changesOf(second), [
      { name: "x", base: 1, value: 5 },
      { name: "y", base: 1, value: 1 },
    ]);
  });

  test("fps 0 sends only on flush; a flush during a batch in flight goes out after its answer", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h);
    so.fps = 0;
    so.setProperty("a", 1);
    await tick();
    mock.timers.tick(10_000);
    await tick();
    assert.equal(sock.take().length, 0);
    so.flush();
    await tick();
    const first = sock.takeOne("update");
    so.setProperty("a", 2);
    so.flush();
    await tick();
    assert.equal(sock.take().length, 0, "one batch in flight");
    sock.receive(sync("room", 1, [{ code: "success", name: "a" }], { id: first["id"] }));
    await tick();
    assert.deepEqual(changesOf(sock.takeOne("update")), [{ name: "a", base: 1, value: 2 }]);
    so.setProperty("a", 3);
    await tick();
    assert.equal(sock.take().length, 0, "the flush is used up");
  });

  test("fps must be a number ≥ 0", async () => {
    const h = harness();
    const so = h.client.getRemote("room");
    assert.throws(() => (so.fps = -1), RangeError);
    assert.throws(() => (so.fps = Number.NaN), RangeError);
    so.fps = Infinity;
  });
});

describe("messages", () => {
  test("send goes out after the changes of the same tick; the own echo is emitted once", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h);
    const got: unknown[] = [];
    so.on("message", (handler, args, from) => got.push([handler, args, from]));
    so.send("chat", "hi", { n: 1 });
    so.setProperty("a", 1);
    await tick();
    const frames = sock.take();
    assert.deepEqual(frames.map((f) => f.op), ["update", "send"]);
    const send = frames[1]!;
    assert.equal(send["handler"], "chat");
    assert.deepEqual(send["args"], ["hi", { n: 1 }]);
    assert.equal(so.pending, true);
    const echo = { op: "message", obj: "room", persistent: true, handler: "chat", args: ["hi", { n: 1 }], from: "alice", id: send["id"] };
    sock.receive(echo, echo);
    sock.receive({ op: "message", obj: "room", persistent: true, handler: "chat", args: [], from: "bob", id: "other-1" });
    assert.deepEqual(got, [
      ["chat", ["hi", { n: 1 }], "alice"],
      ["chat", [], "bob"],
    ]);
  });

  test("a refused send is reported and forgotten", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h);
    const errors: RsoError[] = [];
    so.on("error", (e) => errors.push(e));
    so.send("chat");
    await tick();
    const send = sock.takeOne("send");
    sock.receive({ op: "error", code: "forbidden", message: "read only", id: send["id"], obj: "room", persistent: true });
    assert.equal(errors[0]?.code, "forbidden");
    assert.equal(so.pending, false);
  });

  test("errors of an object without error listeners go to the client", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h);
    const errors: RsoError[] = [];
    h.client.on("error", (e) => errors.push(e));
    so.send("chat");
    await tick();
    const send = sock.takeOne("send");
    sock.receive({ op: "error", code: "forbidden", message: "read only", id: send["id"] });
    assert.equal(errors[0]?.code, "forbidden");
  });
});

describe("close", () => {
  test("unsubscribes, drops what is pending and refuses further calls; getRemote then gives a new object", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h);
    so.setProperty("a", 1);
    so.close();
    await tick();
    assert.deepEqual(sock.take().map((f) => f.op), ["unsub"]);
    assert.throws(() => so.setProperty("a", 2), (e: unknown) => e instanceof RsoError && e.code === "closed");
    await assert.rejects(so.connect(), RsoError);
    assert.notEqual(h.client.getRemote("room", { persistent: true }), so);
  });

  test("client.close() closes the socket with 1000 and every object", async () => {
    const h = harness();
    const { so, sock } = await subscribed(h);
    const statuses: string[] = [];
    h.client.on("status", (s) => statuses.push(s));
    h.client.close();
    assert.equal(sock.closeCode(), 1000);
    assert.deepEqual(statuses, ["closed"]);
    assert.throws(() => so.send("x"), RsoError);
    assert.throws(() => h.client.connect(), RsoError);
  });
});
