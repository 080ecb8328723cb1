// The landing page: / leads to it, it links the three demos, and the nickname typed there carries over.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ready, screenshot, setup, until } from "../harness.js";

describe("demos page", () => {
  let h;
  before(async () => {
    h = await setup();
  });
  after(async () => {
    await h?.close();
  });

  test("links every demo and remembers the nickname", async () => {
    const page = await h.open("");
    await page.goto(`${h.server.base}/`);
    assert.equal(new URL(page.url()).pathname, "/demos/");
    const links = await page.$$eval("[data-demo]", (as) => as.map((a) => new URL(a.href).pathname + new URL(a.href).search));
    assert.deepEqual(links, ["/demos/chat.html?room=lobby", "/demos/slides.html?deck=rso", "/demos/auction.html?lot=1"]);
    await page.fill("#nick", "Ada Lovelace");
    await screenshot(page, "index");
    await page.click('[data-demo="chat"]');
    await ready(page);
    await until(page, "joined the lobby as Ada-Lovelace", () => window.demo.nick === "Ada-Lovelace" && document.getElementById("room-name").textContent === "lobby");
    h.assertNoPageErrors();
  });
});
