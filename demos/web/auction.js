// @ts-check
// Live auction on demo/auction/<lot> (persistent): slots item, price, bidder and endsAt (ms). The server's
// validation hook accepts a bid (price + bidder together) only if it beats the price before endsAt and is
// based on the newest version, so two bids on the same price end with one winner; a round starts only
// when none is running.
import { avatar, clockTime, connect, el, joinForm, setParams, toast } from "./common.js";

const ITEMS = [
  ["Vintage typewriter", "⌨️"], ["Signed vinyl record", "💿"], ["Antique pocket watch", "⌚"],
  ["Espresso machine", "☕"], ["Brass telescope", "🔭"], ["Film camera", "📷"], ["Electric guitar", "🎸"],
  ["Mountain bike", "🚲"], ["First-edition novel", "📚"], ["Retro game console", "🎮"],
];
const ROUND_LENGTHS = [30, 60, 120, 300, 3600].map((s) => s * 1000);
const FEED_MAX = 40;

joinForm(
  [
    { name: "nick", label: "Nickname" },
    { name: "lot", param: "lot", fallback: "1", label: "Auction" },
  ],
  start,
);

async function start({ nick, lot }) {
  setParams({ lot });
  document.title = `Auction ${lot} · RSO demos`;
  document.getElementById("auction").hidden = false;
  const $ = (id) => document.getElementById(id);
  /** An input of the page's forms. */
  const field = (id) => /** @type {HTMLInputElement} */ ($(id));
  $("lot-id").textContent = `demo/auction/${lot}`;

  const client = await connect(nick);
  const so = client.getRemote(`demo/auction/${lot}`, { persistent: true });
  Object.assign(window.demo, { so });

  let pending = null; // the amount of my bid in flight
  let roundLen = 0; // for the time bar: a round length that covers what was left when it was first seen
  let roundOf = null; // the endsAt roundLen belongs to
  let lastPhase = "";
  // The leader as the server has it: so.data shows my bid in flight on top of it, the feed must not.
  let leader = "";

  const item = () => (typeof so.data.item === "string" ? so.data.item : "");
  /** A slot's value when it is a finite number. */
  const finite = (v) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
  const price = () => finite(so.data.price) ?? null;
  const bidder = () => (typeof so.data.bidder === "string" ? so.data.bidder : "");
  const endsAt = () => finite(so.data.endsAt) ?? 0;
  const phase = () => (!endsAt() ? "idle" : Date.now() < endsAt() ? "open" : "closed");

  function render() {
    const p = phase(), pr = price(), b = bidder(), left = endsAt() - Date.now();
    $("item").textContent = item() || "No item yet";
    $("art").textContent = artFor(item());
    $("price").textContent = pr === null ? "–" : money(pr);
    $("bidder").replaceChildren(...(b ? [avatar(b), " ", b === nick ? `${b} (you)` : b] : [p === "open" ? "No bids yet" : "–"]));
    $("price-k").textContent = p === "closed" ? "Final price" : p === "open" ? "Current price" : "Price";
    $("bidder-k").textContent = p === "closed" ? "Winner" : "Leading bidder";
    const state = $("state");
    state.className = `badge state-pill ${p}`;
    state.textContent = { idle: "Waiting", open: "Open", closed: "Closed" }[p];
    document.body.dataset.phase = p;

    if (p === "open") {
      if (roundOf !== endsAt()) {
        roundOf = endsAt();
        roundLen = ROUND_LENGTHS.find((l) => l >= left - 500) ?? left;
      }
      $("left").textContent = countdown(left);
      $("left").classList.toggle("hurry", left < 10000);
      $("timebar").style.width = `${Math.max(0, Math.min(1, left / roundLen)) * 100}%`;
    } else {
      $("left").textContent = p === "closed" ? "Closed" : "–";
      $("left").classList.remove("hurry");
      $("timebar").style.width = "0";
    }

    $("bid-box").hidden = p !== "open";
    $("new-round").hidden = p === "open";
    const result = $("result");
    result.hidden = p !== "closed";
    if (p === "closed") {
      result.replaceChildren(...(b
        ? [el("div", { class: "trophy" }, "🏆"), el("b", { id: "winner", "data-winner": b }, b === nick ? "You won!" : `Sold to ${b}`), el("div", { class: "muted" }, `${item() || "The item"} for ${money(pr)}`)]
        : [el("div", { class: "trophy" }, "🔕"), el("b", { id: "winner", "data-winner": "" }, "No bids this round"), el("div", { class: "muted" }, "Start a new round below.")]));
    }
    if (p !== lastPhase) {
      if (lastPhase === "open" && p === "closed") feed(b ? `${b} won ${item()} for ${money(pr)}` : "The round closed without bids", "sys");
      lastPhase = p;
      if (p === "open") {
        field("amount").value = String((pr ?? 0) + 5);
      }
    }
    if (p === "open") {
      const quick = $("quick");
      const steps = [1, 5, 10, 50];
      if (quick.childElementCount !== steps.length) {
        quick.replaceChildren(...steps.map((k) => el("button", { type: "button", class: "secondary", "data-step": k, onclick: () => bid((price() ?? 0) + k) }, "")));
      }
      for (const btn of /** @type {HTMLCollectionOf<HTMLElement>} */ (quick.children)) btn.textContent = `${money((pr ?? 0) + Number(btn.dataset.step))}`;
    }
  }

  function note(text, kind) {
    const n = $("note");
    n.textContent = text;
    n.className = `bid-note ${kind}`;
  }

  function feed(text, kind = "", who = "") {
    const list = $("feed");
    list.prepend(el("li", { class: kind }, who ? avatar(who) : null, el("span", {}, text), el("span", { class: "when" }, clockTime(Date.now()))));
    while (list.childElementCount > FEED_MAX) list.lastElementChild.remove();
  }

  function flash(id) {
    const node = $(id);
    node.classList.remove("flash");
    void node.offsetWidth; // restart the animation
    node.classList.add("flash");
  }

  function bid(amount) {
    if (phase() !== "open") return note("The round is not open.", "bad");
    if (!Number.isInteger(amount)) return note("A bid is a whole number.", "bad");
    if (amount <= (price() ?? 0)) return note(`Your bid of ${money(amount)} was not sent: it must be above ${money(price() ?? 0)}.`, "bad");
    if (pending !== null) return note(`Your bid of ${money(pending)} is on its way…`, "");
    pending = amount;
    so.setProperty("price", amount);
    so.setProperty("bidder", nick);
    so.flush();
    note(`Bidding ${money(amount)}…`, "");
  }

  so.on("sync", (entries) => {
    let mineDone = false;
    for (const e of entries) {
      if ((e.code === "change" || e.code === "delete" || e.code === "reject") && e.name === "bidder") leader = "value" in e && typeof e.value === "string" ? e.value : "";
      if (e.code === "clear") leader = "";
    }
    for (const e of entries) {
      if ((e.code === "success" || e.code === "reject") && (e.name === "price" || e.name === "bidder") && pending !== null && !mineDone) {
        mineDone = true;
        if (e.code === "success") {
          leader = nick;
          note(`Your bid of ${money(pending)} leads.`, "ok");
          feed(`You bid ${money(pending)}`, "", nick);
        } else {
          const why = e.reason === "conflict" || !e.reason ? "someone bid first" : e.reason;
          note(`Your bid of ${money(pending)} was rejected: ${why}.`, "bad");
          feed(`Your bid of ${money(pending)} was rejected: ${why}`, "rejected", nick);
        }
        pending = null;
      } else if (e.code === "reject" && e.name === "endsAt") {
        toast(`Could not start the round: ${e.reason === "conflict" ? "someone else changed the auction first" : e.reason}`, "bad");
      } else if (e.code === "success" && e.name === "endsAt") {
        feed(`You started a round: ${item()} from ${money(price())}`, "sys");
      } else if (e.code === "change" && e.name === "price" && !entries.some((x) => x.code !== "clear" && x.name === "endsAt")) {
        feed(`${leader || "someone"} bid ${money(e.value)}`, "", leader);
        flash("price");
      } else if (e.code === "change" && e.name === "endsAt") {
        feed(`New round: ${item()} from ${money(price())}`, "sys");
      }
    }
    render();
  });

  $("bid-form").addEventListener("submit", (e) => {
    e.preventDefault();
    bid(Number(field("amount").value));
  });

  const [suggested] = ITEMS[Math.floor(Math.random() * ITEMS.length)];
  field("r-item").value = suggested;
  $("new-round").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = field("r-item").value.trim();
    const startPrice = Number(field("r-price").value);
    if (!name || !Number.isInteger(startPrice) || startPrice < 0) return toast("Give the item a name and a whole starting price.", "bad");
    so.setProperty("item", name.slice(0, 60));
    so.setProperty("price", startPrice);
    so.setProperty("bidder", null);
    so.setProperty("endsAt", Date.now() + Number(field("r-time").value) * 1000);
    so.flush();
  });

  setInterval(render, 250);
  render();
  await so.connect();
  leader = bidder();
  lastPhase = phase(); // no "closed" announcement for a round that ended before we came
  render();
  document.body.dataset.ready = "true";
}

function money(n) {
  return n === null || n === undefined ? "–" : `$${Number(n).toLocaleString("en-US")}`;
}

function countdown(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function artFor(name) {
  const hit = ITEMS.find(([n]) => n === name);
  if (hit) return hit[1];
  const words = { watch: "⌚", book: "📚", novel: "📚", camera: "📷", guitar: "🎸", bike: "🚲", car: "🚗", tea: "🫖", coffee: "☕", art: "🖼️", painting: "🖼️", lamp: "💡", chair: "🪑", game: "🎮" };
  const lower = name.toLowerCase();
  for (const [w, icon] of Object.entries(words)) if (lower.includes(w)) return icon;
  return "🎁";
}
