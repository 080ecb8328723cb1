// Group chat: messages reach the other people in the room, presence shows who is here, and a newcomer
// sees the last 50 messages (kept in slots and trimmed by the senders).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ready, screenshot, setup, until } from "../harness.js";

describe("group chat", () => {
  let h;
  before(async () => {
    h = await setup();
  });
  after(async () => {
    await h?.close();
  });

  const messages = (page) => page.$$eval("#messages .msg", (nodes) => nodes.map((n) => n.querySelector(".text").textContent));
  const say = async (page, text) => {
    await page.fill("#text", text);
    await page.press("#text", "Enter");
  };
  const sees = (page, who, text) =>
    until(page, `${who} sees "${text}"`, (t) => [...document.querySelectorAll("#messages .msg .text")].some((n) => n.textContent === t), text);

  test("messages reach everyone in the room, and presence shows who is here", async () => {
    // Alice joins through the form; Bob through a link that names the room and him.
    const alice = await h.open("chat.html");
    await alice.fill("#j-nick", "alice");
    await alice.fill("#j-room", "team");
    await alice.click("#join button[type=submit]");
    await ready(alice);
    const bob = await h.open("chat.html?room=team&nick=bob");
    await ready(bob);

    for (const [page, other] of [[alice, "bob"], [bob, "alice"]]) {
      await until(page, `presence shows ${other}`, (n) => !!document.querySelector(`#people li[data-nick="${n}"]`), other);
    }

    await say(alice, "Morning! Did the deploy go out?");
    await sees(bob, "bob", "Morning! Did the deploy go out?");
    await say(bob, "Yes, 10 minutes ago — all green ✅");
    await sees(alice, "alice", "Yes, 10 minutes ago — all green ✅");
    await say(alice, "Great, thanks. I'll tell the others.");
    await sees(bob, "bob", "Great, thanks. I'll tell the others.");

    // Each sees their own messages as theirs, the other's as not.
    assert.deepEqual(await alice.$$eval("#messages .msg", (ns) => ns.map((n) => n.classList.contains("mine"))), [true, false, true]);
    assert.deepEqual(await bob.$$eval("#messages .msg", (ns) => ns.map((n) => n.classList.contains("mine"))), [false, true, false]);

    // A newcomer gets the conversation from the room's slots.
    const carol = await h.open("chat.html?room=team&nick=carol");
    await until(carol, "carol sees the 3 earlier messages", () => document.querySelectorAll("#messages .msg").length === 3);
    assert.deepEqual(await messages(carol), await messages(alice));
    await until(alice, "presence shows carol", () => !!document.querySelector('#people li[data-nick="carol"]'));
    await say(carol, "Hi both 👋 just joined");
    await sees(alice, "alice", "Hi both 👋 just joined");
    await sees(bob, "bob", "Hi both 👋 just joined");
    await until(carol, "carol's message confirmed", () => !document.querySelector("#messages .msg.pending"));

    await screenshot(bob, "chat", { docs: true });

    // Leaving the page deletes one's presence slot at once (without waiting for it to go stale).
    await carol.goto("about:blank");
    await until(alice, "carol gone from presence", () => !document.querySelector('#people li[data-nick="carol"]') && !("carol" in window.demo.who.data));
    const phone = await h.open("chat.html?room=team&nick=dave", { viewport: { width: 390, height: 780 } });
    await until(phone, "the phone sees 4 messages", () => document.querySelectorAll("#messages .msg").length === 4);
    await screenshot(phone, "chat-mobile");
    h.assertNoPageErrors();
  });

  test("a newcomer sees the newest 50 messages", async () => {
    const alice = await h.open("chat.html?room=history&nick=alice");
    await ready(alice);
    // 54 messages in a burst, as fast as the page takes them.
    await alice.evaluate(() => {
      const form = document.getElementById("composer");
      const input = document.getElementById("text");
      for (let i = 0; i < 54; i++) {
        input.value = `message ${i}`;
        form.requestSubmit();
      }
    });
    await until(alice, "alice's messages all confirmed, 50 slots kept", () => {
      const { chat } = window.demo;
      return !chat.pending && Object.keys(chat.data).filter((n) => n.startsWith("m/")).length === 50;
    });
    assert.equal((await messages(alice)).length, 54, "the sender still shows everything it sent");

    const erin = await h.open("chat.html?room=history&nick=erin");
    await until(erin, "erin sees 50 messages", () => document.querySelectorAll("#messages .msg").length === 50);
    const seen = await messages(erin);
    assert.equal(seen[0], "message 4");
    assert.equal(seen[49], "message 53");
    h.assertNoPageErrors();
  });
});
