// @ts-check
// Group chat on demo/chat/<room> (persistent) and demo/chat/<room>/who (temporary).
//
// A message is sent twice: as a `msg` message for everyone online now, and as the slot m/<ts>-<id> so
// that newcomers (and this page after a reconnect) find the last KEEP messages. The sender deletes the
// slots beyond the newest KEEP. Both arrive here; messages are merged by id.
//
// Presence: every page sets the slot <nick> of the temporary "who" object to the time every BEAT ms.
// Entries not heard from for STALE ms are hidden, and anyone may delete them after GONE ms.
import { avatar, clockTime, connect, el, joinForm, randomId, setParams, toast } from "./common.js";

const KEEP = 50;
const MAX_TEXT = 500;
const BEAT = 5000;
const STALE = 15000;
const GONE = 30000;

joinForm(
  [
    { name: "nick", label: "Nickname" },
    { name: "room", param: "room", fallback: "lobby", label: "Room" },
  ],
  start,
);

async function start({ nick, room }) {
  setParams({ room });
  document.title = `#${room} · Group chat · RSO demos`;
  document.getElementById("room-name").textContent = room;
  document.getElementById("chat").hidden = false;

  const client = await connect(nick);
  const chat = client.getRemote(`demo/chat/${room}`, { persistent: true });
  const who = client.getRemote(`demo/chat/${room}/who`, { persistent: false });
  Object.assign(window.demo, { chat, who });

  const list = document.getElementById("messages");
  const empty = document.getElementById("empty");
  const shown = new Map(); // id → { msg, node }

  /** Adds msg to the list once, in time order; the newest scrolls into view. */
  function add(msg, from) {
    if (!valid(msg)) return;
    const known = shown.get(msg.id);
    if (known) {
      known.node.classList.remove("pending");
      return;
    }
    const author = from || msg.from;
    const mine = author === nick;
    const node = el(
      "div",
      { class: `msg${mine ? " mine" : ""}`, "data-id": msg.id },
      avatar(author),
      el("div", { class: "bubble" },
        el("div", { class: "meta" }, el("b", {}, author), el("time", { datetime: new Date(msg.ts).toISOString() }, clockTime(msg.ts))),
        el("div", { class: "text" }, msg.text)),
    );
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    let before = null; // the first shown message newer than msg
    for (const s of shown.values()) {
      if (order(s.msg, msg) > 0 && (before === null || order(s.msg, before.msg) < 0)) before = s;
    }
    list.insertBefore(node, before ? before.node : null);
    shown.set(msg.id, { msg, node });
    empty.hidden = true;
    if (mine || atBottom || !before) list.scrollTop = list.scrollHeight;
    return node;
  }

  function fromSlots() {
    for (const [name, value] of Object.entries(chat.data)) {
      if (name.startsWith("m/")) add(value);
    }
  }

  chat.on("sync", (entries) => {
    for (const e of entries) {
      if (e.code === "change" && e.name?.startsWith("m/")) add(e.value);
      if (e.code === "clear") fromSlots(); // a full resync: merge what the room kept
    }
  });
  chat.on("message", (handler, args, from) => {
    if (handler === "msg") add(args[0], from);
  });

  const form = document.getElementById("composer");
  const input = /** @type {HTMLInputElement} */ (document.getElementById("text"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    const msg = { id: randomId(), from: nick, text: text.slice(0, MAX_TEXT), ts: Date.now() };
    const slot = `m/${msg.ts}-${msg.id}`;
    chat.setProperty(slot, msg);
    // Keep the newest KEEP slots: this sender deletes the rest.
    const names = Object.keys(chat.data).filter((n) => n.startsWith("m/") && n !== slot);
    names.push(slot);
    names.sort(bySlotTime);
    for (const old of names.slice(0, Math.max(0, names.length - KEEP))) chat.setProperty(old, null);
    chat.send("msg", msg);
    chat.flush();
    add(msg)?.classList.add("pending");
    input.value = "";
    input.focus();
  });

  // Typing may start before the room is loaded: changes and messages wait in the client until then.
  await chat.connect();
  fromSlots();
  input.focus();

  startPresence(who, nick);
  await who.connect();
  document.body.dataset.ready = "true";
}

function startPresence(who, nick) {
  const people = document.getElementById("people");
  const count = document.getElementById("count");
  const heard = new Map(); // name → local time a heartbeat of it arrived

  const beat = () => who.setProperty(nick, Date.now());
  const lastSeen = (name, value) => heard.get(name) ?? Math.min(Number(value) || 0, Date.now());

  function render() {
    const now = Date.now();
    const here = [];
    for (const [name, value] of Object.entries(who.data)) {
      const age = now - lastSeen(name, value);
      if (name === nick || age < STALE) here.push(name);
      else if (age > GONE) who.setProperty(name, null); // someone who left without saying so
    }
    if (!here.includes(nick)) here.push(nick);
    here.sort((a, b) => (a === nick ? -1 : b === nick ? 1 : a.localeCompare(b)));
    people.replaceChildren(
      ...here.map((name) => el("li", { "data-nick": name }, avatar(name), name, name === nick ? el("span", { class: "you" }, "(you)") : null)),
    );
    count.textContent = here.length === 1 ? "just you" : `${here.length} here`;
  }

  who.on("sync", (entries) => {
    for (const e of entries) {
      if (e.code === "change") heard.set(e.name, Date.now());
      if (e.code === "delete") heard.delete(e.name);
    }
    render();
  });
  // After a reconnect (or a server restart, which empties temporary objects) say hello again at once.
  window.demo.client.on("status", (s) => {
    if (s === "connected") beat();
  });
  beat();
  setInterval(beat, BEAT);
  setInterval(render, 1000);
  addEventListener("pagehide", () => {
    who.setProperty(nick, null);
    who.flush();
  });
  render();
}

function valid(m) {
  return m && typeof m.id === "string" && typeof m.text === "string" && typeof m.from === "string" && Number.isFinite(m.ts);
}

function order(a, b) {
  return a.ts - b.ts || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function bySlotTime(a, b) {
  const ta = Number(a.slice(2, a.indexOf("-"))), tb = Number(b.slice(2, b.indexOf("-")));
  return ta - tb || (a < b ? -1 : a > b ? 1 : 0);
}

addEventListener("unhandledrejection", (e) => toast(`Something went wrong: ${e.reason?.message ?? e.reason}`, "bad"));
