// The conversation model and the request tracker without a socket: ordering, buffering, gaps, sync,
// marks and delivered receipts; ids, answers, wrong answers, retries and close.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import { Conversations, type ConversationHooks } from "../../src/conversations.js";
import type { ChatMessage, Conversation } from "../../src/chattypes.js";
import { ProtocolError, RsoError } from "../../src/errors.js";
import type { WireConversation, WireMessage } from "../../src/relayframes.js";
import { requestTracker } from "../../src/requests.js";

beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
afterEach(() => mock.timers.reset());

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
const m = (seq: number, from = "bob", to = "alice", cid = ""): WireMessage => ({ seq, from, to, cid, ts: 1, body: { n: seq } });
const wconv = (peer: string, o: Partial<WireConversation> = {}): WireConversation => ({
  peer, last: 0, delivered: 0, read: 0, peerDelivered: 0, peerRead: 0, messages: [], more: false, ...o,
});

function model(hooks: Partial<ConversationHooks> = {}, autoDelivered = true) {
  const handed: ChatMessage[] = [];
  const changed: Conversation[] = [];
  const gaps: [string, number, number][] = [];
  let due = 0;
  const c = new Conversations(
    {
      user: () => "alice",
      claim: () => false,
      hand: (x) => (handed.push(x), true),
      changed: (x) => changed.push(x),
      deliveredDue: () => due++,
      fetchGap: (peer, before, limit) => (gaps.push([peer, before, limit]), true),
      ...hooks,
    },
    { autoDelivered, gapWaitMs: 250, historyLimit: () => 200 },
  );
  return { c, handed, changed, gaps, due: () => due };
}

describe("conversations", () => {
  test("messages are handed over once, in seq order, buffered above a gap", () => {
    const { c, handed } = model();
    c.sync([wconv("bob", { last: 1, messages: [m(1)] })]);
    c.add(m(3));
    c.add(m(3));
    assert.deepEqual(handed.map((x) => x.seq), [1]);
    c.add(m(2));
    c.add(m(1));
    assert.deepEqual(handed.map((x) => x.seq), [1, 2, 3]);
    assert.equal(handed[0]!.peer, "bob");
    assert.equal(handed[0]!.mine, false);
  });

  test("a gap that does not fill asks for the missing range after gapWaitMs; its answer fills it", () => {
    const { c, handed, gaps } = model();
    c.sync([wconv("bob", { last: 2, delivered: 2 })]);
    c.add(m(6));
    assert.deepEqual(gaps, []);
    mock.timers.tick(250);
    assert.deepEqual(gaps, [["bob", 6, 3]]);
    c.add(m(7)); // no second request while one is under way
    mock.timers.tick(1000);
    assert.equal(gaps.length, 1);
    c.gapFilled("bob", 7, [m(3), m(4), m(5)]);
    assert.deepEqual(handed.map((x) => x.seq), [3, 4, 5, 6, 7]);
  });

  test("the first sync starts after the delivered mark; a sync with more and progress asks again", () => {
    const { c, handed } = model();
    assert.equal(c.after(1000), undefined, "no baseline before the first sync");
    assert.equal(c.sync([wconv("bob", { last: 9, delivered: 4, messages: [m(5), m(6)], more: true })]), true);
    assert.deepEqual(handed.map((x) => x.seq), [5, 6]);
    assert.deepEqual(c.after(1000), { bob: 6 });
    assert.equal(c.after(5), undefined, "too large for the frame");
    assert.equal(c.sync([wconv("bob", { last: 9, delivered: 4, messages: [m(7), m(8), m(9)] })]), false);
    assert.deepEqual(handed.map((x) => x.seq), [5, 6, 7, 8, 9]);
  });

  test("marks only move forward and tell the change once per tick", async () => {
    const { c, changed } = model();
    c.sync([wconv("bob", { last: 3, delivered: 3, read: 2, peerRead: 1 })]);
    c.receipt("bob", false, "read", 3);
    c.receipt("bob", false, "delivered", 1);
    c.receipt("bob", true, "read", 1);
    await tick();
    assert.deepEqual(changed, [{ peer: "bob", last: 3, delivered: 3, read: 2, peerDelivered: 3, peerRead: 3 }]);
    c.ownMark("bob", "read", 3);
    assert.deepEqual(c.get("bob"), { peer: "bob", last: 3, delivered: 3, read: 3, peerDelivered: 3, peerRead: 3 });
  });

  test("delivered receipts: asked once for what was handed over, again after a failure; never when off", () => {
    const { c, due } = model();
    c.sync([wconv("bob", { last: 2, messages: [m(1), m(2)] })]);
    assert.ok(due() > 0);
    assert.deepEqual(c.takeDelivered(), [{ peer: "bob", seq: 2 }]);
    assert.deepEqual(c.takeDelivered(), []);
    c.deliveredFailed("bob", 2);
    assert.deepEqual(c.takeDelivered(), [{ peer: "bob", seq: 2 }]);
    c.ownMark("bob", "delivered", 2);
    c.deliveredFailed("bob", 2);
    assert.deepEqual(c.takeDelivered(), []);

    const off = model({}, false);
    off.c.sync([wconv("bob", { last: 1, messages: [m(1)] })]);
    assert.deepEqual(off.c.takeDelivered(), []);
    const unheard = model({ hand: () => false });
    unheard.c.sync([wconv("bob", { last: 1, messages: [m(1)] })]);
    assert.deepEqual(unheard.c.takeDelivered(), [], "nobody took it: not delivered");
  });

  test("an own stored message that answers a waiting send is claimed, not handed over", () => {
    const claimed: WireMessage[] = [];
    const { c, handed } = model({ claim: (x) => (claimed.push(x), true) });
    c.sync([]);
    c.add(m(1, "alice", "bob", "m-1"));
    c.add(m(1, "bob", "alice", "m-2")); // not ours: never claimed
    assert.deepEqual(claimed.map((x) => x.cid), ["m-1"]);
    assert.deepEqual(handed.map((x) => x.seq), [1]);
  });
});

describe("requestTracker", () => {
  test("resolves by reply id, rejects a wrong answer, and rejects everything on close", async () => {
    let n = 0;
    const t = requestTracker<string>(() => `r-${++n}`);
    const a = t.open({ frame: (id) => `frame ${id}`, durable: true }, (reply) => reply.toUpperCase());
    const b = t.open({ id: "x", frame: (id) => id, durable: false }, (): number => {
      throw new Error("wrong");
    });
    const c = t.open({ frame: (id) => id, durable: false }, () => 1);
    assert.equal(a.request.id, "r-1");
    assert.equal(a.request.frame, "frame r-1");
    assert.equal(t.size, 3);
    assert.equal(t.resolve("r-1", "ok"), true);
    assert.equal(t.resolve("r-1", "again"), false);
    assert.equal(await a.promise, "OK");
    t.resolve("x", "?");
    await assert.rejects(b.promise, ProtocolError);
    t.rejectAll(new RsoError("closed", "closed"));
    await assert.rejects(c.promise, { code: "closed" });
    assert.equal(t.size, 0);
  });

  test("retry waits the delay for its attempt, then sends unless settled meanwhile", async () => {
    const t = requestTracker<string>(() => "r");
    const { request, promise } = t.open({ frame: (id) => id, durable: true }, (r) => r);
    request.gen = 3;
    const delays: number[] = [];
    let sent = 0;
    t.retry(request, (a) => (delays.push(a), 100), () => sent++);
    assert.equal(request.retrying, true);
    assert.equal(request.gen, -1);
    mock.timers.tick(100);
    assert.equal(sent, 1);
    assert.equal(request.retrying, false);
    t.retry(request, (a) => (delays.push(a), 100), () => sent++);
    t.reject(request, new RsoError("x", "x"));
    mock.timers.tick(100);
    assert.equal(sent, 1);
    assert.deepEqual(delays, [0, 1]);
    await assert.rejects(promise, { code: "x" });
  });
});
