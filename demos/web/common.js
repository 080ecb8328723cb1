// @ts-check
// What every demo page shares: who you are, connecting (token or anonymous name), the status pill,
// toasts, and a tiny DOM helper that never parses HTML from strings.
import { RsoClient } from "./rso-client.js";

// Every form on these pages is handled in JavaScript; none may ever navigate (say, when Enter is pressed
// before a page has wired its handlers).
document.addEventListener("submit", (e) => e.preventDefault());

export const NAME_RULE = /^[A-Za-z0-9_-]{1,32}$/;
const NICK_KEY = "rso-demo-nick";

export function param(name) {
  return new URL(location.href).searchParams.get(name) ?? "";
}

/** Keeps the page's URL in step with what it shows, so a reload (or a shared link) lands in the same place. */
export function setParams(params) {
  const url = new URL(location.href);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  history.replaceState(null, "", url);
}

export function savedNick() {
  const n = param("nick") || localStorage.getItem(NICK_KEY) || "";
  return NAME_RULE.test(n) ? n : "";
}

export function saveNick(nick) {
  localStorage.setItem(NICK_KEY, nick);
}

/** Turns free text into a valid name: spaces become '-', everything else not allowed goes. */
export function cleanName(s) {
  return s.trim().replace(/\s+/g, "-").replace(/[^A-Za-z0-9_-]/g, "").slice(0, 32);
}

/** el("div", {class: "x", onclick}, child, "text", …): children are nodes or text, never HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "style") Object.assign(node.style, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

export function avatar(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
  const a = el("span", { class: "avatar", title: name }, (name[0] ?? "?").toUpperCase());
  a.style.setProperty("--hue", String(h));
  return a;
}

export function randomId(n = 8) {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(bytes, (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");
}

export function clockTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

let toastBox;
/** A short note at the bottom of the page; kind is "", "ok" or "bad". */
export function toast(text, kind = "") {
  toastBox ??= document.body.appendChild(el("div", { class: "toasts", role: "status", "aria-live": "polite" }));
  const t = toastBox.appendChild(el("div", { class: `toast ${kind}` }, text));
  setTimeout(() => t.remove(), 4000);
}

const STATUS_TEXT = {
  idle: "Not connected",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  closed: "Disconnected",
};

/**
 * Connects as nick: asks the server for a demo token (or learns it runs without tokens and connects
 * with ?user=), and wires the status pill #status. The client reconnects by itself; the pill follows.
 * window.demo exposes the client for the browser tests and for poking around in the console.
 */
export async function connect(nick) {
  const first = await fetchToken(nick);
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
  // A token lasts 12 hours; when the server says it expired, the client asks for a new one.
  const client = new RsoClient(
    url,
    first.anonymous ? { user: nick } : { token: first.token, getToken: async () => (await fetchToken(nick)).token },
  );
  const pill = document.getElementById("status");
  const log = [];
  const show = (s) => {
    log.push(s);
    pill.dataset.status = s;
    pill.textContent = STATUS_TEXT[s] ?? s;
    if (s === "closed") pill.title = "The connection was closed. Reload the page to connect again.";
    else pill.removeAttribute("title");
  };
  show(client.status ?? "connecting");
  client.on("status", show);
  window.demo = { client, nick, statusLog: log };
  return client;
}

async function fetchToken(nick) {
  const res = await fetch(`token?user=${encodeURIComponent(nick)}`, { cache: "no-store" });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `the server answered ${res.status}`);
  return body;
}

/** Fills the "you are" slot in the top bar. */
export function showMe(nick) {
  const me = document.getElementById("me");
  if (me) me.replaceChildren("Signed in as ", el("b", {}, nick));
}

/**
 * Shows the join form until the visitor has a valid nickname (and whatever else the page asks for),
 * then calls start(values). fields: [{ name, param, fallback, clean }]; the nickname is always first.
 */
export function joinForm(fields, start) {
  const form = /** @type {HTMLFormElement} */ (document.getElementById("join"));
  const inputs = {};
  for (const f of fields) {
    inputs[f.name] = /** @type {HTMLInputElement} */ (form.elements.namedItem(f.name));
    inputs[f.name].value = f.name === "nick" ? savedNick() : param(f.param) || f.fallback;
  }
  const err = form.querySelector(".error");
  const go = () => {
    const values = {};
    for (const f of fields) {
      const v = cleanName(inputs[f.name].value);
      if (!NAME_RULE.test(v)) {
        err.textContent = `${f.label}: use 1 to 32 letters, digits, - or _.`;
        inputs[f.name].focus();
        return;
      }
      values[f.name] = v;
    }
    saveNick(values.nick);
    form.hidden = true;
    showMe(values.nick);
    start(values).catch((e) => {
      form.hidden = false;
      err.textContent = `Could not connect: ${e.message}`;
    });
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    go();
  });
  // A link that names everything (or a known nickname plus the page's own parameter) joins at once.
  const ready = fields.every((f) => (f.name === "nick" ? savedNick() : param(f.param)));
  if (ready) go();
  else {
    form.hidden = false;
    (inputs.nick.value ? inputs[fields[1].name] : inputs.nick).focus();
  }
}

// For pages that build their own client (private chat on /relay): the token request and the pill's words.
export { fetchToken, STATUS_TEXT };
