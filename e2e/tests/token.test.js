// With -token-secret the pages get a demo token from /demos/token and connect as the user it names; the
// same token cannot reach objects outside demo/**.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ready, setup, until } from "../harness.js";

describe("demos with tokens", () => {
  let h;
  before(async () => {
    h = await setup({ env: { RSO_TOKEN_SECRET: "e2e-secret-0123456789abcdef" } });
  });
  after(async () => {
    await h?.close();
  });

  test("pages connect with a demo token", async () => {
    const alice = await h.open("chat.html?room=secure&nick=alice");
    const bob = await h.open("chat.html?room=secure&nick=bob");
    for (const page of [alice, bob]) await ready(page);
    assert.equal(await alice.evaluate(() => window.demo.client.user), "alice");
    await alice.fill("#text", "signed and sealed");
    await alice.press("#text", "Enter");
    await until(bob, "bob sees the message", () =>
      [...document.querySelectorAll("#messages .msg")].some((n) => n.textContent.includes("signed and sealed") && n.textContent.includes("alice")));

    // The token is for demo/** only.
    const code = await alice.evaluate(async () => {
      const so = window.demo.client.getRemote("private/notes", { persistent: true });
      so.on("error", () => {});
      try {
        await so.connect();
        return "subscribed";
      } catch (err) {
        return err.code;
      }
    });
    assert.equal(code, "forbidden");
    h.assertNoPageErrors();
  });
});
