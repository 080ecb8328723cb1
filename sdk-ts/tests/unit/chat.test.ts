// Private chat over /relay with a scripted socket and fake timers: the lazy second socket, the login
// sequence, messages (order, duplicates, gaps, offline delivery), sends across reconnects and refusals,
// receipts, conversations, presence and friends.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import { parseRelayMessage } from "../../src/relayframes.js";
import { ChatErrorCode, ConnectionError, ProtocolError, retryableChatErrorCodes, RsoError, ServerError, type ChatMessage, type Receipt, type RsoClientOptions, type Status } from "../../src/index.js";
import {
  acceptRelay,
  answerLogin,
  closeClients,
  harness,
  msg,
  relaySocket,
  tick,
  type FakeSocket,
  type Frame,
  type Harness,
} from "../helpers/fake.js";

beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
afterEach(() => {
  closeClients();
  mock.timers.reset();
});

async function advance(ms: number): Promise<void> {
  mock.timers.tick(ms);
  await tick();
}

/** A client as "alice" whose relay is open and logged in; `messages` collects chat.on("message"). */
async function loggedIn(options: RsoClientOptions = {}, login: Parameters<typeof answerLogin>[1] = {}) {
  const h = harness({ user: "alice", ...options });
  const messages: ChatMessage[] = [];
  h.client.chat.on("message", (m) => messages.push(m));
  const sock = relaySocket(h);
  acceptRelay(sock);
  const frames = await answerLogin(sock, login);
  return { h, sock, messages, ...frames };
}

const pairs = (ms: ChatMessage[]) => ms.map((m) => [m.peer, m.seq]);

/** Drops the relay socket (1006) and opens the next one after the backoff (random 0.5: 125 ms). */
async function reconnect(h: Harness, sock: FakeSocket): Promise<FakeSocket> {
  sock.serverClose(1006);
  await advance(10_000);
  const next = relaySocket(h);
  assert.notEqual(next, sock, "a new relay socket");
  acceptRelay(next);
  return next;
}

describe("the relay socket", () => {
  test("opens lazily, as a second socket to /relay with ?user= and ?device=", async () => {
    const h = harness({ user: "alice", device: "laptop-1", token: "t.o.k" }, "http://rso.test:8080/so");
    assert.equal(h.sockets.length, 0, "nothing before first use");
    const statuses: Status[] = [];
    h.client.chat.on("status", (s) => statuses.push(s));
    assert.equal(h.sockets.length, 1);
    const url = new URL(relaySocket(h).url);
    assert.equal(url.protocol, "ws:");
    assert.equal(url.pathname, "/relay");
    assert.equal(url.searchParams.get("user"), "alice");
    assert.equal(url.searchParams.get("device"), "laptop-1");
    assert.equal(url.searchParams.get("token"), "t.o.k");
    assert.equal(h.client.status, "idle", "the /so socket is not opened by chat");
    acceptRelay(relaySocket(h));
    assert.deepEqual(statuses, ["connecting", "connected"]);
    assert.equal(h.client.chat.user, "alice");
    assert.equal(h.client.chat.device, "d-1");
    assert.equal(h.client.chat.limits?.maxHistoryLimit, 200);

    h.client.connect(); // /so: device is relay-only
    const so = new URL(h.sockets.find((s) => s.url.includes("/so"))!.url);
    assert.equal(so.pathname, "/so");
    assert.equal(so.searchParams.get("user"), "alice");
    assert.equal(so.searchParams.get("device"), null);
  });

  test("with several servers the relay rotates on its own; the login on the next server asks for what this client has", async () => {
    const h = harness({ user: "alice" }, ["ws://n1.test", "ws://n2.test:8080"]);
    h.client.chat.on("message", () => {});
    const first = relaySocket(h);
    assert.equal(first.url, "ws://n1.test/relay?user=alice");
    assert.equal(h.client.chat.url, "ws://n1.test");
    acceptRelay(first);
    await answerLogin(first, {
      friends: { friends: ["bob"], hash: "H1" },
      convs: [{ peer: "bob", last: 3, delivered: 1, read: 1, peer_delivered: 0, peer_read: 0, messages: [msg(2, "bob", "alice"), msg(3, "bob", "alice")], more: false }],
    });
    first.serverClose(1012, "server restarting; reconnect");
    await advance(250);
    const second = relaySocket(h);
    assert.equal(second.url, "ws://n2.test:8080/relay?user=alice");
    assert.equal(h.client.chat.url, "ws://n2.test:8080");
    assert.equal(h.client.status, "idle", "the relay's failover does not open /so");
    acceptRelay(second);
    const again = await answerLogin(second);
    assert.equal(again.friends.hash, "H1");
    assert.deepEqual(again.sync.after, { bob: 3 }, "nothing node-specific: the same after as on the first server");

    // A lost connection and a failed attempt both move on: n1, then n2 again.
    second.serverClose(1006);
    await advance(10_000);
    assert.equal(new URL(relaySocket(h).url).host, "n1.test");
    relaySocket(h).fail("connect ECONNREFUSED");
    await advance(10_000);
    assert.equal(new URL(relaySocket(h).url).host, "n2.test:8080");
  });

  test("the login sequence runs after every hello: friends with the cached hash, sync with what this client has", async () => {
    const { h, sock, friends, sync } = await loggedIn({}, {
      friends: { friends: ["bob"], hash: "H1" },
      convs: [{ peer: "bob", last: 3, delivered: 1, read: 1, peer_delivered: 0, peer_read: 0, messages: [msg(2, "bob", "alice"), msg(3, "bob", "alice")], more: false }],
    });
    assert.equal(friends.hash, undefined, "no list cached yet");
    assert.equal(sync.after, undefined, "first sync: from the delivered marks");
    const receipts = sock.take();
    assert.deepEqual(receipts.map((f) => [f.op, f.peer, f.kind, f.seq]), [["receipt", "bob", "delivered", 3]]);

    const next = await reconnect(h, sock);
    const again = await answerLogin(next);
    assert.equal(again.friends.hash, "H1");
    assert.deepEqual(again.sync.after, { bob: 3 });
    assert.deepEqual(h.client.friends.current?.friends, ["bob"], "not_modified keeps the cached list");
  });

  test("an error before hello (unavailable) and a 1012 close: reported, then reconnected soon", async () => {
    const h = harness({ user: "alice" });
    const errors: RsoError[] = [];
    h.client.chat.on("error", (e) => errors.push(e));
    const sock = relaySocket(h);
    sock.readyState = 1;
    sock.onopen?.({});
    sock.receive({ op: "error", code: "unavailable", message: "chat service unavailable" });
    sock.serverClose(1012);
    assert.equal(errors[0]?.code, "unavailable");
    assert.ok(errors[0] instanceof ServerError);
    await advance(250);
    assert.notEqual(relaySocket(h), sock);
  });

  test("a stop (4001) rejects what waits; client.connect() starts the relay again", async () => {
    const { h, sock } = await loggedIn();
    const pending = h.client.chat.send("bob", "hi");
    await tick();
    sock.serverClose(4001);
    await assert.rejects(pending, (e: unknown) => e instanceof ConnectionError && e.code === "unauthorized");
    assert.equal(h.client.chat.status, "closed");
    await assert.rejects(h.client.chat.send("bob", "again"), (e: unknown) => e instanceof ConnectionError);
    h.client.connect();
    assert.notEqual(relaySocket(h), sock);
  });

  test("client.close() closes the relay and rejects what waits", async () => {
    const { h, sock } = await loggedIn();
    const pending = h.client.chat.send("bob", "hi");
    h.client.close();
    await assert.rejects(pending, (e: unknown) => e instanceof RsoError && e.code === "closed");
    assert.equal(sock.closeCode(), 1000);
    await assert.rejects(h.client.friends.list(), (e: unknown) => e instanceof RsoError && e.code === "closed");
  });
});

describe("messages", () => {
  test("each stored message is handed over once, in seq order, from sync and live frames alike", async () => {
    const { sock, messages } = await loggedIn({}, {
      convs: [{ peer: "bob", last: 2, delivered: 0, read: 0, peer_delivered: 0, peer_read: 0, messages: [msg(1, "bob", "alice"), msg(2, "alice", "bob", "mine", "m-x")], more: false }],
    });
    assert.deepEqual(messages, [
      { peer: "bob", seq: 1, from: "bob", to: "alice", id: "c-bob-1", ts: 1001, body: { n: 1 }, mine: false },
      { peer: "bob", seq: 2, from: "alice", to: "bob", id: "m-x", ts: 1002, body: "mine", mine: true },
    ]);
    sock.receive({ op: "message", ...msg(2, "alice", "bob", "mine", "m-x") }, { op: "message", ...msg(1, "bob", "alice") });
    sock.receive({ op: "message", ...msg(4, "bob", "alice") }, { op: "message", ...msg(3, "bob", "alice") }, { op: "message", ...msg(4, "bob", "alice") });
    sock.receive({ op: "message", ...msg(1, "carol", "alice") });
    sock.receive({ op: "message", ...msg(5, "alice", "bob", "from my phone", "m-phone") }); // another device of ours
    assert.deepEqual(pairs(messages), [["bob", 1], ["bob", 2], ["bob", 3], ["bob", 4], ["carol", 1], ["bob", 5]]);
    assert.deepEqual(messages.at(-1), { peer: "bob", seq: 5, from: "alice", to: "bob", id: "m-phone", ts: 1005, body: "from my phone", mine: true });
    await advance(1_000);
    assert.equal(sock.take().filter((f) => f.op === "history").length, 0, "no gap, no history");
  });

  test("a gap that live frames do not fill is fetched with history after gapWaitMs", async () => {
    const { sock, messages } = await loggedIn();
    sock.receive({ op: "message", ...msg(1, "bob", "alice") }, { op: "message", ...msg(4, "bob", "alice") });
    assert.deepEqual(pairs(messages), [["bob", 1]]);
    await advance(249);
    assert.deepEqual(sock.take().filter((f) => f.op === "history"), []);
    await advance(1);
    const h = sock.take().filter((f) => f.op === "history");
    assert.deepEqual(h.map((f) => [f.peer, f.before, f.limit]), [["bob", 4, 2]]);
    sock.receive({ op: "history", id: h[0]!.id, peer: "bob", last: 4, messages: [msg(2, "bob", "alice"), msg(3, "alice", "bob")], more: true });
    await tick();
    assert.deepEqual(pairs(messages), [["bob", 1], ["bob", 2], ["bob", 3], ["bob", 4]]);
    assert.equal(messages[2]?.mine, true);
  });

  test("offline delivery after a reconnect: sync from what this client has, the rest once", async () => {
    const { h, sock, messages } = await loggedIn({}, {
      convs: [{ peer: "bob", last: 1, delivered: 0, read: 0, peer_delivered: 0, peer_read: 0, messages: [msg(1, "bob", "alice")], more: false }],
    });
    const next = await reconnect(h, sock);
    await tick();
    const sent = next.take();
    const sync = sent.find((f) => f.op === "sync")!;
    assert.deepEqual(sync.after, { bob: 1 });
    // A live message before the sync's answer is held until it is answered (which holds it too).
    next.receive({ op: "message", ...msg(3, "bob", "alice") });
    assert.equal(messages.length, 1);
    next.receive({ op: "friends", id: sent.find((f) => f.op === "friends")!.id, hash: "h", friends: [], incoming: [], outgoing: [], blocked: [], presence: [] });
    next.receive({
      op: "sync",
      id: sync.id,
      convs: [{ peer: "bob", last: 4, delivered: 1, read: 0, peer_delivered: 0, peer_read: 0, messages: [msg(2, "bob", "alice"), msg(3, "bob", "alice"), msg(4, "bob", "alice")], more: false }],
    });
    await tick();
    assert.deepEqual(pairs(messages), [["bob", 1], ["bob", 2], ["bob", 3], ["bob", 4]]);
    assert.deepEqual(next.take().filter((f) => f.op === "receipt").map((f) => [f.kind, f.seq]), [["delivered", 4]]);
  });

  test("at the first login a live message that beats the sync's answer waits for the baseline", async () => {
    const h = harness({ user: "alice" });
    const messages: ChatMessage[] = [];
    h.client.chat.on("message", (m) => messages.push(m));
    const sock = relaySocket(h);
    acceptRelay(sock);
    await tick();
    const login = sock.take();
    sock.receive({ op: "message", ...msg(7, "bob", "alice") });
    sock.receive({ op: "friends", id: login.find((f) => f.op === "friends")!.id, hash: "h", friends: [], incoming: [], outgoing: [], blocked: [], presence: [] });
    sock.receive({
      op: "sync",
      id: login.find((f) => f.op === "sync")!.id,
      convs: [{ peer: "bob", last: 6, delivered: 5, read: 5, peer_delivered: 0, peer_read: 0, messages: [msg(6, "bob", "alice")], more: false }],
    });
    await advance(1_000);
    assert.deepEqual(pairs(messages), [["bob", 6], ["bob", 7]], "1–5 were delivered before: history, not events");
    assert.deepEqual(sock.take().filter((f) => f.op === "history"), []);
  });

  test("a sync with more: another sync from where each conversation now is", async () => {
    const h = harness({ user: "alice" });
    const messages: ChatMessage[] = [];
    h.client.chat.on("message", (m) => messages.push(m));
    const sock = relaySocket(h);
    acceptRelay(sock);
    await answerLogin(sock, {
      convs: [{ peer: "bob", last: 5, delivered: 0, read: 0, peer_delivered: 0, peer_read: 0, messages: [msg(1, "bob", "alice"), msg(2, "bob", "alice")], more: true }],
    });
    const again = sock.take().find((f) => f.op === "sync");
    assert.deepEqual(again?.after, { bob: 2 });
    sock.receive({ op: "sync", id: again!.id, convs: [{ peer: "bob", last: 5, delivered: 2, read: 0, peer_delivered: 0, peer_read: 0, messages: [3, 4, 5].map((n) => msg(n, "bob", "alice")), more: false }] });
    await tick();
    assert.deepEqual(messages.map((m) => m.seq), [1, 2, 3, 4, 5]);
  });

  test("delivered receipts only for messages handed to a listener, and never with autoDelivered: false", async () => {
    const quiet = harness({ user: "alice" });
    quiet.client.friends.on("change", () => {});
    acceptRelay(relaySocket(quiet));
    await answerLogin(relaySocket(quiet), { convs: [{ peer: "bob", last: 1, delivered: 0, read: 0, peer_delivered: 0, peer_read: 0, messages: [msg(1, "bob", "alice")], more: false }] });
    assert.deepEqual(relaySocket(quiet).take().filter((f) => f.op === "receipt"), [], "nobody listens to messages");

    const { sock, messages } = await loggedIn({ autoDelivered: false }, { convs: [{ peer: "bob", last: 1, delivered: 0, read: 0, peer_delivered: 0, peer_read: 0, messages: [msg(1, "bob", "alice")], more: false }] });
    sock.receive({ op: "message", ...msg(2, "bob", "alice") });
    await tick();
    assert.equal(messages.length, 2);
    assert.deepEqual(sock.take().filter((f) => f.op === "receipt"), []);
  });
});

describe("sending", () => {
  test("resolves with the stored seq once sent; the own message is handed over once", async () => {
    const { h, sock, messages } = await loggedIn();
    const p = h.client.chat.send("bob", { text: "hi" });
    await tick();
    const f = sock.takeOne("send");
    assert.match(String(f.id), /^m-[0-9a-zA-Z]{14}$/);
    assert.deepEqual([f.to, f.body], ["bob", { text: "hi" }]);
    sock.receive({ op: "sent", id: f.id, to: "bob", seq: 1, ts: 5 });
    assert.deepEqual(await p, { id: f.id, to: "bob", seq: 1, ts: 5 });
    assert.deepEqual(messages, [{ peer: "bob", seq: 1, from: "alice", to: "bob", id: f.id, ts: 5, body: { text: "hi" }, mine: true }]);
    assert.deepEqual(h.client.chat.conversations(), [{ peer: "bob", last: 1, delivered: 0, read: 0, peerDelivered: 0, peerRead: 0 }]);
  });

  test("queued before the login and while disconnected; sent after the login's sync, in order", async () => {
    const h = harness({ user: "alice" });
    const a = h.client.chat.send("bob", 1);
    const sock = relaySocket(h);
    acceptRelay(sock);
    await tick();
    assert.deepEqual(sock.frames().map((f) => f.op).sort(), ["friends", "sync"], "the send waits for the sync");
    await answerLogin(sock);
    const b = h.client.chat.send("bob", 2);
    await tick();
    const sends = sock.take().filter((f) => f.op === "send");
    assert.deepEqual(sends.map((f) => f.body), [1, 2]);
    sock.receive({ op: "sent", id: sends[0]!.id, to: "bob", seq: 1, ts: 1 }, { op: "sent", id: sends[1]!.id, to: "bob", seq: 2, ts: 2 });
    assert.deepEqual([(await a).seq, (await b).seq], [1, 2]);
  });

  test("a send whose answer was lost: not re-sent when the sync shows it stored", async () => {
    const { h, sock, messages } = await loggedIn();
    const p = h.client.chat.send("bob", "hello");
    await tick();
    const f = sock.takeOne("send");
    const next = await reconnect(h, sock);
    await tick();
    const login = next.take();
    const sync = login.find((x) => x.op === "sync")!;
    next.receive({ op: "friends", id: login.find((x) => x.op === "friends")!.id, hash: "h", friends: [], incoming: [], outgoing: [], blocked: [], presence: [] });
    next.receive({ op: "sync", id: sync.id, convs: [{ peer: "bob", last: 1, delivered: 0, read: 0, peer_delivered: 0, peer_read: 0, messages: [msg(1, "alice", "bob", "hello", String(f.id))], more: false }] });
    assert.deepEqual(await p, { id: f.id, to: "bob", seq: 1, ts: 1001 });
    await tick();
    assert.deepEqual(next.take().filter((x) => x.op === "send"), [], "not sent again");
    assert.deepEqual(pairs(messages), [["bob", 1]]);
  });

  test("a send whose answer was lost and that the sync does not show: re-sent with the same id", async () => {
    const { h, sock } = await loggedIn();
    const p = h.client.chat.send("bob", "hello");
    await tick();
    const f = sock.takeOne("send");
    const next = await reconnect(h, sock);
    await answerLogin(next);
    const again = next.takeOne("send");
    assert.equal(again.id, f.id);
    next.receive({ op: "sent", id: f.id, to: "bob", seq: 3, ts: 9, duplicate: true });
    assert.equal((await p).seq, 3);
  });

  test("rate_limited, busy and unavailable are retried after a backoff with the same id; others reject", async () => {
    const { h, sock } = await loggedIn();
    const p = h.client.chat.send("bob", "x");
    await tick();
    const f = sock.takeOne("send");
    sock.receive({ op: "error", code: "rate_limited", message: "slow down", id: f.id });
    await advance(0);
    assert.deepEqual(sock.take(), []);
    await advance(125);
    assert.equal(sock.takeOne("send").id, f.id);
    sock.receive({ op: "error", code: "busy", message: "contention", id: f.id });
    await advance(250);
    assert.equal(sock.takeOne("send").id, f.id);
    sock.receive({ op: "sent", id: f.id, to: "bob", seq: 1, ts: 1 });
    assert.equal((await p).seq, 1);

    const refused = h.client.chat.send("nobody", "x");
    await tick();
    const r = sock.takeOne("send");
    sock.receive({ op: "error", code: "unknown_user", message: "no user \"nobody\" has ever connected", id: r.id });
    await assert.rejects(refused, (e: unknown) => e instanceof ServerError && e.code === "unknown_user" && e.id === r.id);
    await assert.rejects(h.client.chat.send("bob", () => 1), (e: unknown) => e instanceof RsoError && e.code === "invalid_value");
  });

  test("a resync frame runs the login again on the same socket, without re-sending what is in flight", async () => {
    const { h, sock } = await loggedIn({}, { friends: { hash: "H" } });
    const p = h.client.chat.send("bob", "x");
    await tick();
    const f = sock.takeOne("send");
    sock.receive({ op: "resync" });
    await tick();
    const again = sock.take();
    assert.deepEqual(again.map((x) => x.op).sort(), ["friends", "sync"]);
    assert.equal(again.find((x) => x.op === "friends")?.hash, "H");
    sock.receive({ op: "sent", id: f.id, to: "bob", seq: 1, ts: 1 });
    assert.equal((await p).seq, 1);
  });
});

describe("receipts and conversations", () => {
  test("receipts move the marks of both sides; markRead and markDelivered send receipts", async () => {
    const { h, sock } = await loggedIn({}, {
      convs: [{ peer: "bob", last: 2, delivered: 2, read: 1, peer_delivered: 1, peer_read: 0, messages: [], more: false }],
    });
    const got: Receipt[] = [];
    h.client.chat.on("receipt", (r) => got.push(r));
    sock.receive({ op: "receipt", peer: "bob", by: "bob", kind: "read", seq: 2 }, { op: "receipt", peer: "bob", by: "bob", kind: "delivered", seq: 1 });
    assert.deepEqual(got, [{ peer: "bob", by: "bob", kind: "read", seq: 2 }, { peer: "bob", by: "bob", kind: "delivered", seq: 1 }]);
    assert.deepEqual(h.client.chat.conversation("bob"), { peer: "bob", last: 2, delivered: 2, read: 1, peerDelivered: 2, peerRead: 2 }, "marks only move forward");

    const read = h.client.chat.markRead("bob", 2);
    await tick();
    const r = sock.takeOne("receipt");
    assert.deepEqual([r.peer, r.kind, r.seq], ["bob", "read", 2]);
    sock.receive({ op: "ok", id: r.id });
    await read;
    assert.equal(h.client.chat.conversation("bob")?.read, 2);

    const bad = h.client.chat.markDelivered("bob", 9);
    await tick();
    const d = sock.takeOne("receipt");
    sock.receive({ op: "error", code: "bad_seq", message: "beyond the last", id: d.id });
    await assert.rejects(bad, (e: unknown) => e instanceof ServerError && e.code === "bad_seq");

    // Own receipts from another device.
    sock.receive({ op: "receipt", peer: "bob", by: "alice", kind: "read", seq: 2 });
    assert.equal(got.at(-1)?.by, "alice");
  });

  test("history pages; messages it brings that were not handed over yet are handed over once", async () => {
    const { h, sock, messages } = await loggedIn({}, {
      convs: [{ peer: "bob", last: 2, delivered: 2, read: 2, peer_delivered: 2, peer_read: 2, messages: [], more: false }],
    });
    const p = h.client.chat.history("bob", { before: 3, limit: 2 });
    await tick();
    const f = sock.takeOne("history");
    assert.deepEqual([f.peer, f.before, f.limit], ["bob", 3, 2]);
    sock.receive({ op: "history", id: f.id, peer: "bob", last: 3, messages: [msg(1, "bob", "alice"), msg(2, "alice", "bob")], more: false });
    const page = await p;
    assert.deepEqual(page.messages.map((m) => [m.seq, m.mine]), [[1, false], [2, true]]);
    assert.equal(page.last, 3);
    assert.deepEqual(messages, [], "history below the baseline is not handed over");
    assert.equal(h.client.chat.conversation("bob")?.last, 3);
  });
});

describe("presence", () => {
  test("the status with the highest rev wins; all() lists friends", async () => {
    const { h, sock } = await loggedIn({}, {
      friends: { friends: ["bob", "carol"] },
      presence: [{ user: "bob", status: "online", rev: 5 }, { user: "carol", status: "offline", rev: 0 }],
    });
    const changes: Array<[string, string]> = [];
    h.client.presence.on("change", (u, s) => changes.push([u, s]));
    assert.deepEqual(h.client.presence.all(), { bob: "online", carol: "offline" });
    sock.receive({ op: "presence", user: "bob", status: "offline", rev: 4 });
    assert.equal(h.client.presence.status("bob"), "online", "a lower rev is stale");
    sock.receive({ op: "presence", user: "bob", status: "away", rev: 7 }, { op: "presence", user: "carol", status: "online", rev: 2 });
    assert.deepEqual(h.client.presence.all(), { bob: "away", carol: "online" });
    assert.deepEqual(changes, [["bob", "away"], ["carol", "online"]]);
    assert.equal(h.client.presence.status("dave"), "offline");
    assert.equal(h.client.presence.status("alice"), "online", "your own");

    // A new connection (perhaps to a restarted server, whose revs start over): its login answer is the baseline.
    const next = await reconnect(h, sock);
    await answerLogin(next, { presence: [{ user: "bob", status: "online", rev: 2 }] });
    assert.equal(h.client.presence.status("bob"), "online");
    next.receive({ op: "presence", user: "bob", status: "away", rev: 1 });
    assert.equal(h.client.presence.status("bob"), "online", "still ordered by rev within the connection");
    assert.deepEqual(changes.slice(2), [["bob", "online"]]);
  });

  test("setAway is sent, and re-applied after a reconnect", async () => {
    const { h, sock } = await loggedIn();
    const p = h.client.presence.setAway(true);
    await tick();
    const f = sock.takeOne("presence");
    assert.equal(f.status, "away");
    sock.receive({ op: "ok", id: f.id });
    await p;
    assert.equal(h.client.presence.status("alice"), "away");
    const next = await reconnect(h, sock);
    await tick();
    const login = next.take();
    assert.deepEqual(login.filter((x) => x.op === "presence").map((x) => x.status), ["away"]);
  });
});

describe("friends", () => {
  test("list() presents the cached hash; not_modified gives the cached list; pushes and actions emit change", async () => {
    const { h, sock } = await loggedIn({}, { friends: { friends: ["bob"], incoming: ["carol"], hash: "H1" } });
    const lists: string[][] = [];
    h.client.friends.on("change", (l) => lists.push(l.friends));
    assert.deepEqual(h.client.friends.current, { friends: ["bob"], incoming: ["carol"], outgoing: [], blocked: [], hash: "H1" });

    const listed = h.client.friends.list();
    await tick();
    const f = sock.takeOne("friends");
    assert.equal(f.hash, "H1");
    sock.receive({ op: "friends", id: f.id, hash: "H1", not_modified: true, presence: [] });
    assert.deepEqual((await listed).incoming, ["carol"]);
    assert.deepEqual(lists, []);

    const accepted = h.client.friends.accept("carol");
    await tick();
    const a = sock.takeOne("friend");
    assert.deepEqual([a.action, a.user], ["accept", "carol"]);
    sock.receive({ op: "friends", id: a.id, hash: "H2", friends: ["bob", "carol"], incoming: [], outgoing: [], blocked: [], presence: [{ user: "carol", status: "online", rev: 3 }] });
    assert.deepEqual((await accepted).friends, ["bob", "carol"]);
    assert.equal(h.client.presence.status("carol"), "online");

    sock.receive({ op: "friends", hash: "H3", friends: ["carol"], incoming: [], outgoing: [], blocked: [], presence: [] }); // bob removed us
    assert.deepEqual(lists, [["bob", "carol"], ["carol"]]);
    assert.deepEqual(h.client.presence.all(), { carol: "online" });

    for (const action of ["request", "remove", "block", "unblock"] as const) {
      const p = h.client.friends[action]("dave");
      await tick();
      const x = sock.takeOne("friend");
      assert.deepEqual([x.action, x.user], [action, "dave"]);
      sock.receive({ op: "error", code: "unknown_user", message: "no such user", id: x.id });
      await assert.rejects(p, (e: unknown) => e instanceof ServerError && e.code === "unknown_user");
    }
  });
});

/** Every frame type the server sends, as the parser sees it (a malformed one drops the connection). */
describe("relay frames", () => {
  test("a malformed frame is a protocol error: the relay reconnects", async () => {
    const { h, sock } = await loggedIn();
    const errors: RsoError[] = [];
    h.client.chat.on("error", (e) => errors.push(e));
    sock.receive({ op: "message", seq: "x", from: "bob", to: "alice", ts: 1, body: 1 });
    assert.equal(errors[0]?.code, "protocol_error");
    assert.equal(h.client.chat.status, "reconnecting");
  });

  test("unknown ops and fields are ignored", async () => {
    const { h, sock } = await loggedIn();
    sock.receive({ op: "future", x: 1 }, { op: "presence", user: "bob", status: "online", rev: 1, extra: true });
    assert.equal(h.client.presence.status("bob"), "online");
    assert.equal(h.client.chat.status, "connected");
  });

  test("frames other clients would see as answers are not mistaken for ours", async () => {
    const { sock } = await loggedIn();
    sock.receive({ op: "sent", id: "not-mine", to: "bob", seq: 1, ts: 1 }, { op: "ok", id: "nope" }, { op: "sync", id: "x", convs: [] });
    const sent: Frame[] = sock.take();
    assert.deepEqual(sent, []);
  });
});

describe("parseRelayMessage", () => {
  test("every server frame of §3.8", () => {
    const lines = [
      '{"op":"hello","session":"n-1","user":"alice","device":"phone","limits":{"duplicate_window_ms":600000,"frames_per_second":50,"friends_only":true,"history_limit":50,"max_frame_bytes":65536,"max_history_limit":200,"max_message_bytes":16384,"messages_per_second":20,"presence_grace_ms":5000,"sync_max_messages":500}}',
      '{"op":"sent","id":"m-1","to":"bob","seq":1,"ts":1767225600123}',
      '{"op":"sent","id":"m-1","to":"bob","seq":1,"ts":1767225600123,"duplicate":true}',
      '{"op":"ok","id":"r1"}',
      '{"op":"sync","id":"s1","convs":[{"peer":"alice","last":31,"delivered":0,"read":0,"peer_delivered":31,"peer_read":20,"messages":[{"seq":1,"from":"alice","to":"bob","cid":"m-a","ts":5,"body":{"t":1}}],"more":true}]}',
      '{"op":"history","id":"h1","peer":"bob","last":0,"more":false}',
      '{"op":"friends","id":"f1","hash":"9e","friends":["bob"],"incoming":["carol"],"outgoing":[],"blocked":[],"presence":[{"user":"bob","status":"online","rev":6}]}',
      '{"op":"friends","id":"f1","hash":"1b","not_modified":true,"presence":[]}',
      '{"op":"message","seq":1,"from":"alice","to":"bob","cid":"m-9","ts":7,"body":null}',
      '{"op":"receipt","peer":"bob","by":"bob","kind":"delivered","seq":14}',
      '{"op":"presence","user":"bob","status":"away","rev":17}',
      '{"op":"signal","from":"bob","device":"d-X","data":{"type":"offer"}}',
      '{"op":"resync"}',
      '{"op":"error","code":"blocked","message":"no","id":"m-2"}',
      '{"op":"pong","id":"p"}',
      '{"op":"close","code":1012,"message":"bye"}',
    ];
    const frames = parseRelayMessage(lines.join("\n") + "\n");
    assert.deepEqual(frames, [
      { op: "hello", session: "n-1", user: "alice", device: "phone", limits: { duplicateWindowMs: 600000, framesPerSecond: 50, friendsOnly: true, historyLimit: 50, maxFrameBytes: 65536, maxHistoryLimit: 200, maxMessageBytes: 16384, messagesPerSecond: 20, presenceGraceMs: 5000, syncMaxMessages: 500 } },
      { op: "sent", id: "m-1", to: "bob", seq: 1, ts: 1767225600123, duplicate: false },
      { op: "sent", id: "m-1", to: "bob", seq: 1, ts: 1767225600123, duplicate: true },
      { op: "ok", id: "r1" },
      { op: "sync", id: "s1", convs: [{ peer: "alice", last: 31, delivered: 0, read: 0, peerDelivered: 31, peerRead: 20, messages: [{ seq: 1, from: "alice", to: "bob", cid: "m-a", ts: 5, body: { t: 1 } }], more: true }] },
      { op: "history", id: "h1", peer: "bob", last: 0, messages: [], more: false },
      { op: "friends", id: "f1", hash: "9e", notModified: false, lists: { friends: ["bob"], incoming: ["carol"], outgoing: [], blocked: [] }, presence: [{ user: "bob", status: "online", rev: 6 }] },
      { op: "friends", id: "f1", hash: "1b", notModified: true, lists: undefined, presence: [] },
      { op: "message", seq: 1, from: "alice", to: "bob", cid: "m-9", ts: 7, body: null },
      { op: "receipt", peer: "bob", by: "bob", kind: "delivered", seq: 14 },
      { op: "presence", user: "bob", status: "away", rev: 17 },
      { op: "signal", from: "bob", device: "d-X", data: { type: "offer" } },
      { op: "resync" },
      { op: "error", code: "blocked", message: "no", id: "m-2" },
      { op: "pong", id: "p" },
    ]);
  });

  test("malformed frames throw a ProtocolError naming the field", () => {
    for (const [text, field] of [
      ['{"op":"sent","id":"m","to":"b","seq":-1,"ts":1}', "seq"],
      ['{"op":"receipt","peer":"b","by":"b","kind":"seen","seq":1}', "kind"],
      ['{"op":"presence","user":"b","status":"busy","rev":1}', "status"],
      ['{"op":"friends","hash":"h","friends":"bob","presence":[]}', "friends"],
      ['{"op":"sync","convs":[{"last":1}]}', "convs.peer"],
      ['{"op":"hello","session":"s","user":"u"}', "limits"],
    ] as const) {
      assert.throws(() => parseRelayMessage(text), (e: unknown) => e instanceof ProtocolError && e.message.includes(`"${field}"`), text);
    }
    assert.throws(() => parseRelayMessage("nope"), ProtocolError);
  });

  test("chat error codes mirror docs/PROTOCOL.md §3.8", () => {
    const doc = readFileSync(new URL("../../../../docs/PROTOCOL.md", import.meta.url), "utf8");
    const section = doc.slice(doc.indexOf("### 3.8"), doc.indexOf("### 3.9"));
    const lines = section.slice(section.indexOf("| code | meaning |")).split("\n").slice(2);
    const documented: string[] = [];
    for (const line of lines) {
      if (!line.startsWith("|")) break;
      for (const code of line.split("|")[1]!.split(",")) documented.push(code.trim().replace(/`/g, ""));
    }
    assert.deepEqual([...Object.values(ChatErrorCode)].sort(), documented.sort());
    assert.deepEqual([...retryableChatErrorCodes].sort(), ["busy", "rate_limited", "unavailable"]);
  });
});
