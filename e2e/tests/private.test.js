// Private chat (/relay, docs/PROTOCOL.md §3) with two people in two browser contexts: a friend request and
// its acceptance, presence dots (online, away, offline), a message with its sent → delivered → read marks,
// messages written while the other is signed out that arrive, once and in order, when they sign in again,
// and both pages recovering by themselves when the server goes away and comes back (with what was written
// meanwhile); then a second device, a reload, and requests from strangers.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ready, screenshot, setup, until } from "../harness.js";

// While the server is down, Chromium logs each failed WebSocket attempt as a console error.
const ignore = [/WebSocket connection to .* failed/];

describe("private chat", () => {
  let h;
  before(async () => {
    // A short presence grace, so a signed-out user shows offline within the test's patience.
    h = await setup({ env: { RSO_PRESENCE_GRACE: "500ms" } });
  });
  after(async () => {
    await h?.close();
  });

  const signIn = async (page, name) => {
    await until(page, "the sign-in form", () => !document.getElementById("join").hidden);
    await page.fill("#j-nick", name);
    await page.click("#join button[type=submit]");
    await ready(page);
  };
  const say = async (page, text) => {
    await page.fill("#text", text);
    await page.press("#text", "Enter");
  };
  const open = (page, peer) => page.click(`#friends li[data-user="${peer}"] .pm-person`);
  const texts = (page) => page.$$eval("#messages .msg .text", (ns) => ns.map((n) => n.textContent));
  const marks = (page) => page.$$eval("#messages .msg.mine .mark", (ns) => ns.map((n) => n.dataset.mark));
  const sees = (page, who, text) =>
    until(page, `${who} sees "${text}"`, (t) => [...document.querySelectorAll("#messages .msg .text")].some((n) => n.textContent === t), text);
  const dot = (page, who, user, status) =>
    until(
      page,
      `${who} sees ${user} ${status}`,
      ([u, s]) => document.querySelector(`#friends li[data-user="${u}"] .dot`)?.dataset.status === s,
      [user, status],
    );
  const allMarks = (page, who, mark, n) =>
    until(
      page,
      `${who}'s ${n} messages marked ${mark}`,
      ([m, k]) => {
        const ms = [...document.querySelectorAll("#messages .msg.mine .mark")].map((x) => x.dataset.mark);
        return ms.length === k && ms.every((x) => x === m);
      },
      [mark, n],
    );
  const unread = (page, who, peer, n) =>
    until(page, `${who} has ${n} unread from ${peer}`, ([p, k]) => (document.querySelector(`#friends li[data-user="${p}"] .unread`)?.textContent ?? "0") === String(k), [peer, n]);

  test("two people: friends, presence, receipts, offline messages, reconnect", async () => {
    // Alice comes from the demos page; Bob opens the page directly.
    const alice = await h.open("", { ignore });
    await alice.click("#private-card");
    assert.equal(new URL(alice.url()).pathname, "/demos/private.html");
    await signIn(alice, "alice");
    const bob = await h.open("private.html", { ignore });
    await signIn(bob, "bob");

    // Alice asks Bob; Bob accepts; each sees the other online.
    await alice.fill("#friend-name", "bob");
    await alice.click("#add");
    await until(alice, "alice's request waiting", () => !!document.querySelector('#outgoing li[data-user="bob"]'));
    await until(bob, "bob sees alice's request", () => !!document.querySelector('#incoming li[data-user="alice"]'));
    await bob.click('#incoming li[data-user="alice"] .accept');
    await dot(alice, "alice", "bob", "online");
    await dot(bob, "bob", "alice", "online");
    await until(alice, "no request left", () => document.getElementById("outgoing-box").hidden && document.getElementById("incoming-box").hidden);

    // A message: stored (✓), delivered to Bob's page (✓✓), read once Bob opens the conversation (blue ✓✓).
    await open(alice, "bob");
    await say(alice, "Hi Bob, it's Alice 👋");
    await unread(bob, "bob", "alice", 1);
    await allMarks(alice, "alice", "delivered", 1);
    assert.deepEqual(await texts(bob), [], "bob has no conversation open yet");
    await open(bob, "alice");
    await sees(bob, "bob", "Hi Bob, it's Alice 👋");
    await allMarks(alice, "alice", "read", 1);
    await unread(bob, "bob", "alice", 0);
    // Bob answers into a conversation Alice has on screen: read at once.
    await say(bob, "Hey! <b>not bold</b>");
    await sees(alice, "alice", "Hey! <b>not bold</b>");
    assert.equal(await alice.$$eval("#messages b", (bs) => bs.filter((b) => b.textContent === "not bold").length), 0, "user text is text, not HTML");
    await allMarks(bob, "bob", "read", 1);

    // Away and back.
    await bob.check("#away");
    await dot(alice, "alice", "bob", "away");
    await bob.uncheck("#away");
    await dot(alice, "alice", "bob", "online");

    // Bob signs out: offline for Alice, who writes twice; Bob signs in again and gets both, once, in order.
    await bob.click("#sign-out");
    await dot(alice, "alice", "bob", "offline");
    await say(alice, "Are you still there?");
    await say(alice, "Call me when you are back 📞");
    await until(alice, "both stored", () => {
      const ms = [...document.querySelectorAll("#messages .msg.mine .mark")].map((x) => x.dataset.mark);
      return ms.length === 3 && ms[1] === "sent" && ms[2] === "sent";
    });
    await signIn(bob, "bob");
    await unread(bob, "bob", "alice", 2);
    await dot(alice, "alice", "bob", "online");
    const received = (page) => page.evaluate(() => window.demo.received);
    assert.deepEqual(await received(bob), ["alice/3", "alice/4"], "the SDK hands over what came while offline, once");
    // Delivered is not read: after a reload (the sync has nothing new) they still count as unread.
    await until(alice, "alice's new messages delivered", () =>
      [...document.querySelectorAll("#messages .msg.mine .mark")].map((x) => x.dataset.mark).join() === "read,delivered,delivered");
    await bob.reload();
    await ready(bob);
    await unread(bob, "bob", "alice", 2);
    await open(bob, "alice");
    const all = ["Hi Bob, it's Alice 👋", "Hey! <b>not bold</b>", "Are you still there?", "Call me when you are back 📞"];
    await until(bob, "bob sees the 4 messages", () => document.querySelectorAll("#messages .msg").length >= 4);
    assert.deepEqual(await texts(bob), all);
    assert.deepEqual(await received(bob), [], "nothing new after the reload");
    await allMarks(alice, "alice", "read", 3);

    // The server goes away under both pages. Alice writes meanwhile: the message waits in her page (🕓).
    // When the server is back both pages reconnect by themselves, the message goes out once, and both carry on.
    const mark = (page) => page.evaluate(() => window.demo.statusLog.length);
    const from = await Promise.all([alice, bob].map(mark));
    await h.server.stop();
    for (const [i, page] of [alice, bob].entries()) {
      await until(page, "reconnecting", (n) => window.demo.statusLog.slice(n).includes("reconnecting"), from[i]);
    }
    await say(alice, "Written while the server was down");
    await until(alice, "the message waits", () => document.querySelector("#messages .msg.mine:last-child .mark")?.dataset.mark === "pending");
    await h.server.start();
    for (const [i, page] of [alice, bob].entries()) {
      await until(
        page,
        "reconnecting, then connected",
        (n) => {
          const log = window.demo.statusLog.slice(n);
          const r = log.indexOf("reconnecting");
          return r >= 0 && log.indexOf("connected", r) > r && document.getElementById("status").dataset.status === "connected";
        },
        from[i],
      );
    }
    await sees(bob, "bob", "Written while the server was down");
    await dot(alice, "alice", "bob", "online");
    await say(bob, "Back, the server blinked");
    await sees(alice, "alice", "Back, the server blinked");
    await allMarks(alice, "alice", "read", 4);
    await allMarks(bob, "bob", "read", 2);
    assert.deepEqual(await texts(bob), [...all, "Written while the server was down", "Back, the server blinked"]);
    assert.deepEqual(await texts(alice), await texts(bob));
    assert.deepEqual(await marks(alice), ["read", "read", "read", "read"]);

    // A second device of Bob's, a phone: the whole conversation is there, and what it writes shows on the
    // laptop as Bob's own.
    const phone = await h.open("private.html", { ignore, viewport: { width: 390, height: 780 } });
    await signIn(phone, "bob");
    await dot(phone, "bob's phone", "alice", "online");
    await open(phone, "alice");
    await until(phone, "the phone sees 6 messages", () => document.querySelectorAll("#messages .msg").length >= 6);
    assert.deepEqual(await texts(phone), await texts(bob));
    await say(phone, "On my phone now");
    await sees(alice, "alice", "On my phone now");
    await until(bob, "bob's laptop shows the phone's message as his", () =>
      [...document.querySelectorAll("#messages .msg.mine .text")].some((n) => n.textContent === "On my phone now"));
    await allMarks(phone, "bob's phone", "read", 3);
    assert.deepEqual(await received(bob), ["alice/5", "alice/6", "alice/7"], "each message once on bob's laptop");
    await screenshot(phone, "private-mobile");

    // A reload keeps Alice signed in, on the same conversation, with every mark (from the login sync).
    await alice.reload();
    await ready(alice);
    await until(alice, "alice sees the 7 messages again", () => document.querySelectorAll("#messages .msg").length === 7);
    assert.deepEqual(await texts(alice), await texts(bob));
    await allMarks(alice, "alice", "read", 4);

    // Asking someone who never signed in says so; Carol asks Alice, who sees the request.
    await alice.fill("#friend-name", "nobody");
    await alice.click("#add");
    await until(alice, "the unknown-user note", () => [...document.querySelectorAll(".toast")].some((t) => t.textContent === "nobody has never signed in here"));
    const carol = await h.open("private.html?nick=carol", { ignore });
    await ready(carol);
    await carol.fill("#friend-name", "alice");
    await carol.click("#add");
    await until(alice, "alice sees carol's request", () => !!document.querySelector('#incoming li[data-user="carol"]'));

    // The pictures, without the toasts.
    await alice.fill("#friend-name", "");
    await until(alice, "the toasts gone", () => !document.querySelector(".toast"));
    await screenshot(alice, "private", { docs: true });
    await screenshot(bob, "private-bob");
    h.assertNoPageErrors();
  });
});
