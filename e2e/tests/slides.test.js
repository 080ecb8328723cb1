// Slideshow: the presenter's slide reaches every viewer at once, a late joiner lands on it, and the
// server's hook refuses a viewer's slide change or claim (nobody's slide moves).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ready, screenshot, setup, until } from "../harness.js";

describe("slideshow", () => {
  let h;
  before(async () => {
    h = await setup();
  });
  after(async () => {
    await h?.close();
  });

  const onSlide = (page, who, i) =>
    until(page, `${who} on slide ${i}`, (n) => document.getElementById("stage")?.dataset.slide === String(n) && window.demo.so.data.slide === n, i);
  const shownSlide = (page) => page.evaluate(() => Number(document.getElementById("stage").dataset.slide));

  test("viewers follow the presenter, and only the presenter moves the deck", async () => {
    const alice = await h.open("slides.html");
    await alice.fill("#j-nick", "alice");
    await alice.fill("#j-deck", "e2e");
    await alice.click("#join button[type=submit]");
    await ready(alice);
    const bob = await h.open("slides.html?deck=e2e&nick=bob");
    await ready(bob);

    // Alice presents; both see it, and Bob's Present button is off.
    await alice.click("#claim");
    for (const [page, who] of [[alice, "alice"], [bob, "bob"]]) {
      await until(page, `${who} sees alice presenting`, () => document.getElementById("presenter")?.textContent.startsWith("alice"));
    }
    assert.equal(await bob.isHidden("#claim"), true, "Bob cannot claim a held deck from the page");
    assert.equal(await bob.isDisabled("#next"), true, "Bob's navigation is off");

    // Buttons and keys move everyone.
    await alice.click("#next");
    await onSlide(bob, "bob", 1);
    await alice.keyboard.press("ArrowRight");
    await alice.keyboard.press("ArrowRight");
    await onSlide(alice, "alice", 3);
    await onSlide(bob, "bob", 3);

    // A late joiner lands on the current slide.
    const carol = await h.open("slides.html?deck=e2e&nick=carol");
    await onSlide(carol, "carol", 3);

    // Bob bypasses the page and writes the slot himself: the hook refuses it, his view rolls back, and
    // nobody else moves.
    const reason = await bob.evaluate(
      () =>
        new Promise((resolve) => {
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
    await until(bob, "bob's toast", () => document.querySelector(".toast")?.textContent === "Not allowed: only the presenter (alice) can change the slide");
    await onSlide(bob, "bob", 3);
    assert.equal(await shownSlide(alice), 3);
    assert.equal(await shownSlide(carol), 3);
    assert.equal(await alice.evaluate(() => window.demo.so.data.slide), 3);

    // Nor can he take the role while Alice holds it.
    const claim = await bob.evaluate(
      () =>
        new Promise((resolve) => {
          const off = window.demo.so.on("sync", (entries) => {
            const r = entries.find((e) => e.code === "reject" && e.name === "presenter");
            if (r) {
              off();
              resolve(r.reason);
            }
          });
          window.demo.so.setProperty("presenter", "bob");
          window.demo.so.setProperty("lease", Date.now() + 30000);
        }),
    );
    assert.equal(claim, "alice is presenting");
    await until(carol, "carol still sees alice presenting", () => document.getElementById("presenter")?.textContent.startsWith("alice"));

    await screenshot(carol, "slides", { docs: true });

    // Alice hands the deck back; Bob presents and Alice follows.
    await alice.click("#release");
    await until(bob, "bob can present", () => !document.getElementById("claim").hidden);
    await bob.click("#claim");
    await until(alice, "alice sees bob presenting", () => document.getElementById("presenter")?.textContent.startsWith("bob"));
    await bob.click("#prev");
    await onSlide(alice, "alice", 2);
    await onSlide(carol, "carol", 2);

    const phone = await h.open("slides.html?deck=e2e&nick=dave", { viewport: { width: 390, height: 780 } });
    await onSlide(phone, "dave", 2);
    await screenshot(phone, "slides-mobile");
    await screenshot(bob, "slides-presenter");
    h.assertNoPageErrors();
  });
});
