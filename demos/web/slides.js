// @ts-check
// Collaborative slideshow on demo/slides/<deck> (persistent): slots presenter (user id), lease (ms the
// presenter's claim holds until; renewed while the page is open) and slide (index). The server's
// validation hook lets only the presenter move the deck, and lets anyone claim it only when nobody holds it.
import { avatar, connect, el, joinForm, setParams, toast } from "./common.js";

const LEASE = 30000; // how long a claim holds without renewal
const RENEW = 10000;

// The deck: short slides about RSO. `code` in backticks.
const SLIDES = [
  { kicker: "RSO", big: "⚡", title: "Real-time shared objects", text: "A server that keeps the same state in every browser, at once. This deck is one: whoever presents moves it for everybody." },
  { kicker: "The model", title: "Objects made of slots", points: ["Clients subscribe to named objects, like `demo/slides/rso`", "An object is a set of slots holding any JSON value", "A change goes through the server and reaches every subscriber"] },
  { kicker: "Versions", title: "Nobody silently loses work", points: ["Each slot remembers the version it last changed at", "A change based on an older version is rejected, with the current value", "Concurrent editors see the conflict instead of overwriting each other"] },
  { kicker: "Lifetimes", title: "Persistent or temporary", points: ["Persistent objects survive restarts: this deck, chat rooms, auctions", "Temporary objects vanish with their last subscriber: who is online", "Every object's log lives in NATS JetStream"] },
  { kicker: "Rules", title: "Validation hooks", points: ["A backend on NATS approves or rejects client changes", "Here a hook lets only the presenter change the slide", "In the auction, bids must beat the price before the close"] },
  { kicker: "Scale", title: "Many nodes, one server", points: ["Nodes share one NATS, so any node serves any object", "A client that drops reconnects anywhere and gets only what it missed", "No sticky sessions, no single point of state"] },
  { kicker: "Try it", big: "👋", title: "Open this deck twice", text: "Present in one window, follow in the other. Then try the chat and the auction from the demos page." },
];

joinForm(
  [
    { name: "nick", label: "Nickname" },
    { name: "deck", param: "deck", fallback: "rso", label: "Deck" },
  ],
  start,
);

async function start({ nick, deck }) {
  setParams({ deck });
  document.title = `${deck} · Slideshow · RSO demos`;
  document.getElementById("deck").hidden = false;
  document.getElementById("deck-name").textContent = `Deck “${deck}” · ${SLIDES.length} slides`;

  const client = await connect(nick);
  const so = client.getRemote(`demo/slides/${deck}`, { persistent: true });
  Object.assign(window.demo, { so, slides: SLIDES.length });

  const $ = (id) => document.getElementById(id);
  const stage = $("stage"), dots = $("dots"), who = $("who"), hint = $("nav-hint");
  const claim = $("claim"), release = $("release"), prev = /** @type {HTMLButtonElement} */ ($("prev")), next = /** @type {HTMLButtonElement} */ ($("next"));
  dots.append(...SLIDES.map((_, i) => el("span", { title: `Slide ${i + 1}` })));
  let shownSlide = -1;

  const presenter = () => (typeof so.data.presenter === "string" ? so.data.presenter : "");
  const lapsed = () => presenter() !== "" && typeof so.data.lease === "number" && so.data.lease < Date.now();
  const current = () => clamp(Number.isInteger(so.data.slide) ? so.data.slide : 0);

  function render() {
    const p = presenter(), mine = p === nick, i = current();
    if (i !== shownSlide) {
      shownSlide = i;
      stage.replaceChildren(slideNode(SLIDES[i], i));
      [...dots.children].forEach((d, j) => d.classList.toggle("on", j === i));
    }
    stage.dataset.slide = String(i);
    who.replaceChildren(
      p ? avatar(p) : el("span", { class: "avatar" }, "–"),
      el("div", {},
        el("span", { class: "label" }, p ? (lapsed() ? "Presenter (away)" : "Presenting now") : "Nobody is presenting"),
        el("b", { id: "presenter" }, p ? p : "The deck is free", mine ? " " : "", mine ? el("span", { class: "badge" }, "you") : null)),
    );
    claim.hidden = mine || (p !== "" && !lapsed());
    claim.textContent = p && lapsed() ? "Take over" : "Present";
    release.hidden = !mine;
    prev.disabled = !mine || i === 0;
    next.disabled = !mine || i === SLIDES.length - 1;
    hint.textContent = mine
      ? "You are presenting: use the buttons or the ← → keys. Everyone follows."
      : p
        ? `Following ${p}. Only the presenter can change the slide.`
        : "Press Present to lead the deck.";
  }

  function go(i) {
    if (presenter() !== nick) {
      toast(presenter() ? `Only ${presenter()} can change the slide` : "Press Present first", "bad");
      return;
    }
    so.setProperty("slide", clamp(i));
    so.flush();
    render();
  }

  so.on("sync", (entries) => {
    const refused = entries.find((e) => e.code === "reject"); // one note per refused batch
    if (refused) toast(rejectText(refused), "bad");
    render();
  });

  claim.addEventListener("click", () => {
    so.setProperty("presenter", nick);
    so.setProperty("lease", Date.now() + LEASE);
    so.flush();
  });
  release.addEventListener("click", () => {
    so.setProperty("presenter", null);
    so.setProperty("lease", null);
    so.flush();
  });
  prev.addEventListener("click", () => go(current() - 1));
  next.addEventListener("click", () => go(current() + 1));
  addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === "ArrowRight" || e.key === "PageDown" || e.key === " ") go(current() + 1);
    else if (e.key === "ArrowLeft" || e.key === "PageUp") go(current() - 1);
    else return;
    e.preventDefault();
  });
  // Keep the claim alive while presenting; render now and then so a lapsed claim shows "Take over".
  setInterval(() => {
    if (presenter() === nick && client.status !== "closed") {
      so.setProperty("lease", Date.now() + LEASE);
      so.flush();
    }
  }, RENEW);
  setInterval(render, 5000);

  render();
  await so.connect();
  render();
  document.body.dataset.ready = "true";
}

function clamp(i) {
  return Math.max(0, Math.min(SLIDES.length - 1, i));
}

function rejectText(e) {
  if (e.reason === "conflict") return "Someone else changed the deck first";
  return e.reason ? `Not allowed: ${e.reason}` : `Your change to ${e.name} was refused`;
}

/** Text with `code` spans. */
function rich(text) {
  return text.split("`").map((part, i) => (i % 2 ? el("code", {}, part) : part));
}

function slideNode(s, i) {
  return el("div", { class: "slide" },
    s.big ? el("div", { class: "big" }, s.big) : null,
    el("div", { class: "kicker" }, s.kicker),
    el("h2", {}, s.title),
    s.text ? el("p", {}, rich(s.text)) : null,
    s.points ? el("ul", {}, s.points.map((p) => el("li", {}, rich(p)))) : null,
    el("div", { class: "slide-no" }, `${i + 1} / ${SLIDES.length}`),
    el("div", { class: "progress", style: { width: `${((i + 1) / SLIDES.length) * 100}%` } }),
  );
}
