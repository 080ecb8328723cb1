// Live auction: a round started on one page opens on the others, bids reach everyone, two bids on the same
// price end with exactly one winner (the other is shown as rejected), the winner is shown at the close,
// and the server refuses a bid after it.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ready, screenshot, setup, until } from "../harness.js";

describe("live auction", () => {
  let h;
  before(async () => {
    h = await setup();
  });
  after(async () => {
    await h?.close();
  });

  const priceIs = (page, who, p) => until(page, `${who} sees price ${p}`, (n) => window.demo.so.data.price === n, p);
  const note = (page) => page.$eval("#note", (n) => ({ kind: n.className.replace("bid-note", "").trim(), text: n.textContent }));

  test("bids must beat the price; concurrent bids have one winner; the close shows it", async () => {
    const alice = await h.open("auction.html");
    await alice.fill("#j-nick", "alice");
    await alice.fill("#j-lot", "e2e");
    await alice.click("#join button[type=submit]");
    await ready(alice);
    const bob = await h.open("auction.html?lot=e2e&nick=bob");
    await ready(bob);

    // Alice starts a 15-second round (the page offers 30 s and more; the test adds a shorter choice).
    await alice.evaluate(() => document.getElementById("r-time").append(new Option("15 seconds", "15")));
    await alice.fill("#r-item", "Vintage typewriter");
    await alice.fill("#r-price", "10");
    await alice.selectOption("#r-time", "15");
    await alice.click("#start-round");
    for (const [page, who] of [[alice, "alice"], [bob, "bob"]]) {
      await until(page, `${who} sees the round open`, () => document.body.dataset.phase === "open" && !document.getElementById("bid-box").hidden);
    }
    await priceIs(bob, "bob", 10);

    // Bob bids +5 with a quick button.
    await bob.click('#quick button[data-step="5"]');
    await priceIs(alice, "alice", 15);
    await until(alice, "alice sees bob leading", () => window.demo.so.data.bidder === "bob");
    assert.equal((await note(bob)).kind, "ok");

    // Both bid the same amount at once, three times: exactly one wins each time, the other is told.
    let price = 15;
    for (let round = 0; round < 3; round++) {
      price += 5;
      for (const page of [alice, bob]) await page.fill("#amount", String(price));
      await Promise.all([alice.click("#bid"), bob.click("#bid")]);
      for (const [page, who] of [[alice, "alice"], [bob, "bob"]]) {
        await until(
          page,
          `${who}'s bid of ${price} answered`,
          (p) => !window.demo.so.pending && new RegExp(`\\$${p}( leads|.*rejected|.*not sent)`).test(document.getElementById("note").textContent),
          price,
        );
      }
      const notes = [await note(alice), await note(bob)];
      const winners = notes.filter((n) => n.kind === "ok");
      assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify(notes)}`);
      const loser = notes.find((n) => n.kind === "bad");
      // Refused by the server (the bids raced) or by the page (the other bid had arrived already).
      assert.match(loser.text, /rejected: (someone bid first|bid must beat \d+)\.$|was not sent: it must be above/);
      const winner = notes[0].kind === "ok" ? "alice" : "bob";
      for (const [page, who] of [[alice, "alice"], [bob, "bob"]]) {
        await priceIs(page, who, price);
        await until(page, `${who} sees ${winner} leading`, (w) => window.demo.so.data.bidder === w, winner);
      }
    }
    const leader = await alice.evaluate(() => window.demo.so.data.bidder);
    await screenshot(bob, "auction", { docs: true });

    // The hammer falls: both pages name the winner.
    for (const [page, who] of [[alice, "alice"], [bob, "bob"]]) {
      await until(page, `${who} sees the close`, () => document.body.dataset.phase === "closed");
      await until(page, `${who} sees the winner`, (w) => document.getElementById("winner")?.dataset.winner === w, leader);
    }
    const winnerPage = leader === "alice" ? alice : bob;
    assert.equal(await winnerPage.textContent("#winner"), "You won!");
    assert.equal(await (leader === "alice" ? bob : alice).textContent("#winner"), `Sold to ${leader}`);

    // A late bid straight to the object is refused by the server.
    const late = await bob.evaluate(
      () =>
        new Promise((resolve) => {
          const off = window.demo.so.on("sync", (entries) => {
            const r = entries.find((e) => e.code === "reject" && e.name === "price");
            if (r) {
              off();
              resolve(r.reason);
            }
          });
          window.demo.so.setProperty("price", 1000);
          window.demo.so.setProperty("bidder", "bob");
        }),
    );
    assert.equal(late, "the auction has closed");
    assert.equal(await alice.evaluate(() => window.demo.so.data.price), price);

    // A late joiner sees the result too.
    const carol = await h.open("auction.html?lot=e2e&nick=carol");
    await until(carol, "carol sees the winner", (w) => document.getElementById("winner")?.dataset.winner === w, leader);
    await screenshot(winnerPage, "auction-closed");
    const phone = await h.open("auction.html?lot=e2e&nick=dave", { viewport: { width: 390, height: 780 } });
    await until(phone, "dave sees the winner", (w) => document.getElementById("winner")?.dataset.winner === w, leader);
    await screenshot(phone, "auction-mobile");
    h.assertNoPageErrors();
  });
});
