// Private chat (/relay, docs/PROTOCOL.md §3) against the real rso server: friends and presence, messages
// and receipts, offline delivery, sends across a lost connection, refusals.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";
import { WebSocket } from "ws";
import { RsoClient, ServerError, type ChatMessage, type Receipt, type RsoClientOptions } from "../../src/index.js";
import { RsoServer, waitFor } from "./server.js";

const clients: RsoClient[] = [];

function connect(server: RsoServer, options: RsoClientOptions = {}): RsoClient {
  const c = new RsoClient(server.url, { WebSocket, backoff: { baseMs: 50, maxMs: 200 }, ...options });
  clients.push(c);
  return c;
}

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

/** A user name of its own for each test (the server keeps users, conversations and friends). */
const name = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

/**
 * A WebSocket class whose /relay connections the test can cut: `cut()` kills the open ones (1006) and sends
 * new attempts to a closed port until `restore()`.
 */
function gate() {
  const state = { down: false, sockets: [] as WebSocket[] };
  class Gated extends WebSocket {
    constructor(url: string) {
      const relay = new URL(url).pathname.endsWith("/relay");
      super(relay && state.down ? "ws://127.0.0.1:1/relay" : url);
      if (relay) state.sockets.push(this);
    }
  }
  return {
    WebSocket: Gated,
    cut() {
      state.down = true;
      for (const s of state.sockets.splice(0)) s.terminate();
    },
    restore() {
      state.down = false;
    },
  };
}

/** Collects the messages a client's listener gets. */
function inbox(c: RsoClient): ChatMessage[] {
  const got: ChatMessage[] = [];
  c.chat.on("message", (m) => got.push(m));
  return got;
}

/** Connects the client's relay and waits for its login (the friend list answers once the relay is up). */
async function online(c: RsoClient): Promise<void> {
  await c.friends.list();
}

describe("private chat", { timeout: 60_000 }, () => {
  let server: RsoServer;
  before(async () => {
    server = await RsoServer.start({ args: ["-presence-grace", "200ms"] });
  });
  after(async () => {
    await server.dispose();
  });

  test("friend request and accept; each sees the other online, then offline", async () => {
    const [an, bn] = [name("alice"), name("bob")];
    const alice = connect(server, { user: an });
    const bob = connect(server, { user: bn });
    const aliceSees: Array<[string, string]> = [];
    alice.presence.on("change", (u, s) => aliceSees.push([u, s]));
    const bobLists: string[][] = [];
    bob.friends.on("change", (l) => bobLists.push(l.incoming));
    await Promise.all([online(alice), online(bob)]);

    const asked = await alice.friends.request(bn);
    assert.deepEqual(asked.outgoing, [bn]);
    assert.deepEqual(asked.friends, []);
    await waitFor("bob to see alice's request", () => bob.friends.current?.incoming.includes(an) === true);
    assert.ok(bobLists.some((l) => l.includes(an)), "a friends change event");

    const accepted = await bob.friends.accept(an);
    assert.deepEqual(accepted.friends, [an]);
    assert.deepEqual(accepted.incoming, []);
    await waitFor("alice's list to show bob as a friend", () => alice.friends.current?.friends.includes(bn) === true);
    await waitFor("alice to see bob online", () => alice.presence.status(bn) === "online");
    await waitFor("bob to see alice online", () => bob.presence.status(an) === "online");
    assert.deepEqual(alice.presence.all(), { [bn]: "online" });

    const listed = await alice.friends.list(); // the cached hash: not_modified → the cached list
    assert.deepEqual(listed.friends, [bn]);
    assert.equal(listed.hash, alice.friends.current?.hash);

    bob.close();
    await waitFor("alice to see bob offline", () => alice.presence.status(bn) === "offline");
    assert.deepEqual(aliceSees.filter(([u]) => u === bn), [
      [bn, "online"],
      [bn, "offline"],
    ]);
  });

  test("a message arrives once with its seq; delivered and read receipts reach the sender", async () => {
    const [an, bn] = [name("alice"), name("bob")];
    const alice = connect(server, { user: an });
    const bob = connect(server, { user: bn });
    const aliceGot = inbox(alice);
    const bobGot = inbox(bob);
    const receipts: Receipt[] = [];
    alice.chat.on("receipt", (r) => receipts.push(r));
    await Promise.all([online(alice), online(bob)]);

    const sent = await alice.chat.send(bn, { text: "hi bob" });
    assert.equal(sent.seq, 1);
    assert.equal(sent.to, bn);
    assert.match(sent.id, /^m-/);
    await waitFor("bob to get the message", () => bobGot.length > 0);
    assert.deepEqual(bobGot, [{ peer: an, seq: 1, from: an, to: bn, id: sent.id, ts: sent.ts, body: { text: "hi bob" }, mine: false }]);
    assert.deepEqual(aliceGot, [{ peer: bn, seq: 1, from: an, to: bn, id: sent.id, ts: sent.ts, body: { text: "hi bob" }, mine: true }]);

    await waitFor("alice to get bob's delivered receipt", () => receipts.some((r) => r.kind === "delivered" && r.seq === 1));
    assert.deepEqual(receipts[0], { peer: bn, by: bn, kind: "delivered", seq: 1 });
    await bob.chat.markRead(an, 1);
    await waitFor("alice to get bob's read receipt", () => receipts.some((r) => r.kind === "read"));
    assert.deepEqual(receipts.at(-1), { peer: bn, by: bn, kind: "read", seq: 1 });
    assert.deepEqual(alice.chat.conversations().find((c) => c.peer === bn), {
      peer: bn, last: 1, delivered: 1, read: 0, peerDelivered: 1, peerRead: 1,
    });
    assert.deepEqual(bob.chat.conversations().find((c) => c.peer === an), {
      peer: an, last: 1, delivered: 1, read: 1, peerDelivered: 1, peerRead: 0,
    });

    const reply = await bob.chat.send(an, { text: "hi alice" });
    assert.equal(reply.seq, 2);
    await waitFor("alice to get the reply", () => aliceGot.length === 2);
    const page = await alice.chat.history(bn);
    assert.deepEqual(page.messages.map((m) => [m.seq, m.from, m.mine]), [[1, an, true], [2, bn, false]]);
    assert.equal(page.last, 2);
    assert.equal(page.more, false);
    assert.equal(bobGot.length, 2, "bob got his own reply once, as stored");
  });

  test("offline delivery: messages sent while bob is away arrive exactly once, in order, when he is back", async () => {
    const [an, bn] = [name("alice"), name("bob")];
    const g = gate();
    const alice = connect(server, { user: an });
    const bob = connect(server, { user: bn, WebSocket: g.WebSocket });
    const bobGot = inbox(bob);
    await Promise.all([online(alice), online(bob)]);
    await alice.chat.send(bn, { n: 0 });
    await waitFor("bob to get the first message live", () => bobGot.length === 1);

    g.cut();
    await waitFor("bob's relay to be down", () => bob.chat.status === "reconnecting");
    const sent = [];
    for (let n = 1; n <= 3; n++) sent.push(await alice.chat.send(bn, { n }));
    assert.deepEqual(sent.map((s) => s.seq), [2, 3, 4]);
    g.restore();

    await waitFor("bob to get the three", () => bobGot.length >= 4);
    // His delivered mark reaching 4 means every answer of the login was handled: nothing more is coming.
    await waitFor("bob's delivered mark", () => bob.chat.conversation(an)?.delivered === 4);
    assert.deepEqual(bobGot.map((m) => [m.seq, m.body]), [[1, { n: 0 }], [2, { n: 1 }], [3, { n: 2 }], [4, { n: 3 }]]);
    assert.deepEqual(bobGot.slice(1).map((m) => m.id), sent.map((s) => s.id));

    // A new session of bob starts after his delivered mark: nothing is handed over again.
    bob.close();
    const carol = name("carol");
    const bob2 = connect(server, { user: bn });
    const again = inbox(bob2);
    await online(bob2);
    await bob2.chat.history(an); // answered after the login sync: its messages were handled by then
    assert.deepEqual(again, []);
    assert.equal(bob2.chat.conversation(an)?.last, 4);
    assert.equal(bob2.chat.conversation(an)?.delivered, 4);

    // A user who was never online since: the messages wait in the sync of the first login.
    const c = connect(server, { user: carol });
    await online(c);
    c.close();
    await alice.chat.send(carol, "one");
    await alice.chat.send(carol, "two");
    const carol2 = connect(server, { user: carol });
    const carolGot = inbox(carol2);
    await waitFor("carol's offline messages", () => carolGot.length === 2);
    assert.deepEqual(carolGot.map((m) => [m.seq, m.body, m.from]), [[1, "one", an], [2, "two", an]]);
  });

  test("a send while the relay is down, or whose answer is lost, is stored exactly once after the reconnect", async () => {
    const [an, bn] = [name("alice"), name("bob")];
    const g = gate();
    const alice = connect(server, { user: an, WebSocket: g.WebSocket });
    const bob = connect(server, { user: bn });
    const bobGot = inbox(bob);
    await Promise.all([online(alice), online(bob)]);

    g.cut();
    await waitFor("alice's relay to be down", () => alice.chat.status === "reconnecting");
    const whileDown = alice.chat.send(bn, { text: "queued" });
    g.restore();
    const first = await whileDown;
    assert.equal(first.seq, 1);

    // In flight: the frame leaves, the socket dies at once; stored or not, the re-send (same id) stores it once.
    const inFlight = alice.chat.send(bn, { text: "in flight" });
    await new Promise((r) => setImmediate(r));
    g.cut();
    g.restore();
    const second = await inFlight;
    assert.equal(second.seq, 2);

    await waitFor("bob to get both", () => bobGot.length >= 2);
    const page = await bob.chat.history(an);
    assert.deepEqual(page.messages.map((m) => [m.seq, m.id]), [[1, first.id], [2, second.id]]);
    assert.deepEqual(bobGot.map((m) => m.seq), [1, 2]);
  });

  test("refusals reject with the protocol's code", async () => {
    const an = name("alice");
    const alice = connect(server, { user: an });
    await assert.rejects(alice.chat.send(name("nobody"), { text: "hello?" }), (e: unknown) => {
      assert.ok(e instanceof ServerError);
      assert.equal(e.code, "unknown_user");
      return true;
    });
    await assert.rejects(alice.chat.send(an, "me"), (e: unknown) => e instanceof ServerError && e.code === "bad_frame");
    const bn = name("bob");
    await online(connect(server, { user: bn }));
    await assert.rejects(alice.chat.send(bn, "x".repeat(20_000)), (e: unknown) => e instanceof ServerError && e.code === "message_too_large");
    await assert.rejects(alice.friends.accept(bn), (e: unknown) => e instanceof ServerError && e.code === "not_found");
    await alice.friends.block(bn);
    await assert.rejects(alice.chat.send(bn, "hi"), (e: unknown) => e instanceof ServerError && e.code === "blocked");
    assert.deepEqual(alice.friends.current?.blocked, [bn]);
    assert.deepEqual(alice.chat.conversations(), []);
  });

  test("away is shown to friends and re-applied after a reconnect", async () => {
    const [an, bn] = [name("alice"), name("bob")];
    const g = gate();
    const alice = connect(server, { user: an, WebSocket: g.WebSocket });
    const bob = connect(server, { user: bn });
    await Promise.all([online(alice), online(bob)]);
    await alice.friends.request(bn);
    await bob.friends.accept(an);
    await waitFor("bob to see alice online", () => bob.presence.status(an) === "online");
    // The server tells alice's friends from its cached copy of her list, updated by the same announcement
    // that pushes her the new list: once she has it, bob is among the friends told.
    await waitFor("alice's list to show bob", () => alice.friends.current?.friends.includes(bn) === true);
    await alice.presence.setAway(true);
    await waitFor("bob to see alice away", () => bob.presence.status(an) === "away");
    assert.equal(alice.presence.status(an), "away");
    g.cut();
    await waitFor("alice's relay to be down", () => alice.chat.status === "reconnecting");
    await waitFor("bob to see alice offline (grace over)", () => bob.presence.status(an) === "offline");
    g.restore();
    await waitFor("alice back", () => alice.chat.status === "connected");
    await waitFor("bob to see alice away again", () => bob.presence.status(an) === "away");
  });
});
