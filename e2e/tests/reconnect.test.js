// A dropped connection recovers by itself: the server process is restarted on the same port and data while
// pages are open. Every page shows reconnecting, then connected, and keeps working: chat history is intact
// and new messages flow, the deck stays on its slide and its presenter can still move it (the new process
// serves the hook again).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ready, screenshot, setup, until } from "../harness.js";

// While the server is down, Chromium logs each failed WebSocket attempt as a console error.
const ignore = [/WebSocket connection to .* failed/];

describe("reconnect", () => {
  let h;
  before(async () => {
    h = await setup();
  });
  after(async () => {
    await h?.close();
  });

  const sees = (page, who, text) =>
    until(page, `${who} sees "${text}"`, (t) => [...document.querySelectorAll("#messages .msg .text")].some((n) => n.textContent === t), text);
  const say = async (page, text) => {
    await page.fill("#text", text);
    await page.press("#text", "Enter");
  };
  const texts = (page) => page.$$eval("#messages .msg .text", (ns) => ns.map((n) => n.textContent));

  test("pages reconnect after a server restart and keep working", async () => {
    const alice = await h.open("chat.html?room=ops&nick=alice", { ignore });
    const bob = await h.open("chat.html?room=ops&nick=bob", { ignore });
    const deck = await h.open("slides.html?deck=ops&nick=alice", { ignore });
    const viewer = await h.open("slides.html?deck=ops&nick=bob", { ignore });
    for (const page of [alice, bob, deck, viewer]) await ready(page);

    await say(alice, "before the restart");
    await sees(bob, "bob", "before the restart");
    await deck.click("#claim");
    await until(deck, "alice presents", () => window.demo.so.data.presenter === "alice" && !window.demo.so.pending);
    await deck.click("#next");
    await deck.click("#next");
    await until(viewer, "the viewer on slide 2", () => document.getElementById("stage").dataset.slide === "2");
    const mark = async (page) => page.evaluate(() => window.demo.statusLog.length);
    const marks = await Promise.all([alice, bob, deck, viewer].map(mark));

    await h.server.restart();

    for (const [i, page] of [alice, bob, deck, viewer].entries()) {
      await until(
        page,
        "reconnecting, then connected",
        (from) => {
          const log = window.demo.statusLog.slice(from);
          const r = log.indexOf("reconnecting");
          return r >= 0 && log.indexOf("connected", r) > r && document.getElementById("status").dataset.status === "connected";
        },
        marks[i],
      );
    }

    // Chat: the history is still there, new messages flow both ways, and a newcomer gets everything.
    assert.deepEqual(await texts(bob), ["before the restart"]);
    await say(bob, "after the restart");
    await sees(alice, "alice", "after the restart");
    await say(alice, "still here");
    await sees(bob, "bob", "still here");
    const carol = await h.open("chat.html?room=ops&nick=carol", { ignore });
    await until(carol, "carol sees 3 messages", () => document.querySelectorAll("#messages .msg").length === 3);
    assert.deepEqual(await texts(carol), ["before the restart", "after the restart", "still here"]);
    // Presence is temporary (gone with the old process) and is rebuilt by the heartbeats.
    await until(carol, "presence shows alice and bob again", () =>
      ["alice", "bob"].every((n) => document.querySelector(`#people li[data-nick="${n}"]`)));

    // Slides: same slide, same presenter, and the restarted server still enforces the rules.
    await until(viewer, "the viewer still on slide 2", () => document.getElementById("stage").dataset.slide === "2");
    await deck.click("#next");
    await until(viewer, "the viewer follows to slide 3", () => document.getElementById("stage").dataset.slide === "3");
    const reason = await viewer.evaluate(
      () =>
        new Promise((resolve, reject) => {
          setTimeout(() => reject(new Error("no reject of the viewer's slide change within 10 s")), 10000);
          const off = window.demo.so.on("sync", (entries) => {
            const r = entries.find((e) => e.code === "reject" && e.name === "slide");
            if (r) {
              off();
              resolve(r.reason);
            }
          });
          window.demo.so.setProperty("slide", 0);
        }),
    );
    assert.equal(reason, "only the presenter (alice) can change the slide");

    await screenshot(carol, "reconnect-chat");
    h.assertNoPageErrors();
  });
});
