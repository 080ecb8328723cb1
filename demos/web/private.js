// @ts-check
// Private chat over /relay (docs/PROTOCOL.md §3): one-to-one messages with sent / delivered / read marks,
// friends with live presence, and messages that wait for whoever is offline.
//
// The SDK does the protocol: it runs the login sequence after every (re)connect, delivers each stored
// message once (live, or from the sync after sign-in), sends "delivered" receipts by itself and re-sends
// what was not acknowledged; it keeps each conversation's last seq and both sides' receipt marks
// (chat.conversation). This page keeps, per conversation partner, the messages it has seen (by seq), and
// draws them with the SDK's marks. It sends "read" while a conversation is on screen.
import { avatar, cleanName, clockTime, el, fetchToken, NAME_RULE, param, randomId, saveNick, savedNick, showMe, STATUS_TEXT, toast } from "./common.js";
import { RsoClient } from "./rso-client.js";

const USER_KEY = "rso-private-user"; // sessionStorage: who this tab is signed in as
const DEVICE_KEY = "rso-private-device"; // sessionStorage: a device id per tab (PROTOCOL §3.1)
const OPEN_KEY = "rso-private-open"; // sessionStorage: the conversation on screen, so a reload lands there
const PAGE = 50; // messages per history page

const $ = (id) => document.getElementById(id);

signIn();

/** Shows the sign-in form unless this tab (or a ?nick= link) names the user already. */
function signIn() {
  const form = /** @type {HTMLFormElement} */ ($("join"));
  const input = /** @type {HTMLInputElement} */ (form.elements.namedItem("nick"));
  const err = form.querySelector(".error");
  const remembered = sessionStorage.getItem(USER_KEY) || "";
  const linked = cleanName(param("nick"));
  input.value = linked || remembered || savedNick();
  const go = () => {
    const nick = cleanName(input.value);
    if (!NAME_RULE.test(nick)) {
      err.textContent = "Your name: use 1 to 32 letters, digits, - or _.";
      input.focus();
      return;
    }
    err.textContent = "";
    sessionStorage.setItem(USER_KEY, nick);
    saveNick(nick);
    form.hidden = true;
    start(nick).catch((e) => {
      sessionStorage.removeItem(USER_KEY);
      form.hidden = false;
      err.textContent = `Could not sign in: ${e.message}`;
    });
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    go();
  });
  if (NAME_RULE.test(linked || remembered)) go();
  else {
    form.hidden = false;
    input.focus();
  }
}

function deviceId() {
  let d = sessionStorage.getItem(DEVICE_KEY);
  if (!d || !/^[A-Za-z0-9_-]{1,64}$/.test(d)) {
    d = `web-${randomId(10)}`;
    sessionStorage.setItem(DEVICE_KEY, d);
  }
  return d;
}

async function start(nick) {
  const first = await fetchToken(nick);
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
  const device = deviceId();
  // A token lasts 12 hours; when the server says it expired, the client asks for a new one.
  const client = new RsoClient(
    url,
    first.anonymous
      ? { user: nick, device }
      : { token: first.token, getToken: async () => (await fetchToken(nick)).token, device },
  );
  const { chat, presence, friends } = client;

  document.title = `${nick} · Private chat · RSO demos`;
  showMe(nick);
  $("pm").hidden = false;
  $("my-avatar").replaceWith(avatar(nick));
  $("my-name").textContent = nick;

  /** peer → what this page knows of the conversation with peer. */
  const convs = new Map();
  let list = { friends: [], incoming: [], outgoing: [], blocked: [] };
  let openPeer = "";
  let status = "connecting";
  const statusLog = [];
  const received = []; // "peer/seq" of every message event, for the browser tests
  window.demo = { client, nick, device, convs, statusLog, received, get open() { return openPeer; } };

  function conv(peer) {
    let c = convs.get(peer);
    if (!c) {
      c = {
        messages: new Map(), // seq → message
        pending: new Map(), // local key → { body, ts, failed? } until the server stored it
        loaded: false, // the newest page of history has been fetched (this connection)
        more: false, // older messages exist beyond the first one we have
        reading: 0, // a read receipt up to this seq is on its way
      };
      convs.set(peer, c);
    }
    return c;
  }

  /** The SDK's last seq and marks of the conversation with peer (all 0 before anything is known). */
  function marks(peer) {
    return chat.conversation(peer) ?? { peer, last: 0, delivered: 0, read: 0, peerDelivered: 0, peerRead: 0 };
  }

  // ---------- connection status ----------

  const pill = $("status");
  const showStatus = (s) => {
    status = s;
    statusLog.push(s);
    pill.dataset.status = s;
    pill.textContent = STATUS_TEXT[s] ?? s;
    if (s === "closed") pill.title = "The connection was closed. Reload the page to connect again.";
    else pill.removeAttribute("title");
    renderMe();
  };
  showStatus(chat.status);
  chat.on("status", (s) => {
    showStatus(s);
    if (s === "connected") onConnected();
  });

  async function onConnected() {
    // (The SDK re-applies "away" by itself.) Whatever may have been missed while away is fetched again for the conversation on screen.
    for (const c of convs.values()) c.loaded = false;
    if (openPeer) await loadHistory(openPeer);
    fetchUnread();
    renderFriends();
    markRead();
  }

  /**
   * Messages delivered earlier but not read yet do not come again with the login sync: fetch the newest
   * page of each such conversation, so that its unread count is right.
   */
  function fetchUnread() {
    for (const x of chat.conversations()) if (x.last > x.read && x.peer !== openPeer && !conv(x.peer).loaded) loadHistory(x.peer);
  }

  // A conversation's last seq or marks moved (receipts of both sides included).
  chat.on("conversation", (x) => changed(x.peer));

  // ---------- messages and receipts ----------

  /** Adds a stored message (live, from sync or from history) once; returns whether it was new. */
  function addMessage(peer, m) {
    const c = conv(peer);
    if (c.messages.has(m.seq)) return false;
    c.messages.set(m.seq, m);
    return true;
  }

  chat.on("message", (m) => {
    received.push(`${m.peer}/${m.seq}`);
    if (!addMessage(m.peer, m)) return;
    changed(m.peer);
  });

  /** Redraws what shows peer's conversation, and marks it read if it is on screen. */
  function changed(peer) {
    renderFriends();
    if (peer === openPeer) {
      renderConversation();
      markRead();
    }
  }

  /** Sends "read" up to the newest message of the conversation on screen, when the page is visible. */
  function markRead() {
    if (!openPeer || document.visibilityState !== "visible" || status !== "connected") return;
    const peer = openPeer;
    const c = conv(peer);
    let top = 0;
    for (const m of c.messages.values()) if (!m.mine && m.seq > top) top = m.seq;
    if (top <= marks(peer).read || top <= c.reading) return;
    c.reading = top;
    chat
      .markRead(peer, top) // the SDK raises the read mark and tells "conversation"
      .catch((e) => console.warn("markRead:", e))
      .finally(() => {
        if (c.reading === top) c.reading = 0;
      });
  }
  document.addEventListener("visibilitychange", markRead);

  async function loadHistory(peer, before) {
    const c = conv(peer);
    try {
      const h = await chat.history(peer, before ? { before, limit: PAGE } : { limit: PAGE });
      for (const m of h.messages) addMessage(peer, m);
      if (!before) c.loaded = true;
      const first = Math.min(...c.messages.keys());
      c.more = h.more && !(first <= 1);
    } catch (e) {
      toast(`Could not load the messages with ${peer}: ${e.message}`, "bad");
    }
    renderFriends();
    if (peer === openPeer) renderConversation(!before);
  }

  // ---------- the conversation on screen ----------

  const box = $("messages");
  const empty = $("empty");
  const earlier = $("earlier");
  const input = /** @type {HTMLInputElement} */ ($("text"));
  const sendButton = /** @type {HTMLButtonElement} */ ($("send"));

  async function openConversation(peer) {
    openPeer = peer;
    sessionStorage.setItem(OPEN_KEY, peer);
    input.disabled = sendButton.disabled = false;
    renderFriends();
    renderConversation(true);
    input.focus();
    if (!conv(peer).loaded) await loadHistory(peer);
    markRead();
  }

  earlier.addEventListener("click", () => {
    const c = conv(openPeer);
    if (c.messages.size > 0) loadHistory(openPeer, Math.min(...c.messages.keys()));
  });

  /** The ✓ / ✓✓ of an own message, from the partner's marks `k`. */
  function mark(k, m) {
    if (m.seq <= k.peerRead) return el("span", { class: "mark read", "data-mark": "read", title: "Read" }, "✓✓");
    if (m.seq <= k.peerDelivered) return el("span", { class: "mark", "data-mark": "delivered", title: "Delivered" }, "✓✓");
    return el("span", { class: "mark", "data-mark": "sent", title: "Sent" }, "✓");
  }

  function bubble(author, ts, body, mine, extra) {
    return el(
      "div",
      { class: `msg${mine ? " mine" : ""}` },
      avatar(author),
      el("div", { class: "bubble" },
        el("div", { class: "meta" }, el("b", {}, author), el("time", { datetime: new Date(ts).toISOString() }, clockTime(ts)), extra),
        el("div", { class: "text" }, textOf(body))),
    );
  }

  function renderConversation(toBottom = false) {
    const peer = openPeer;
    renderPeerHead();
    if (!peer) return;
    const c = conv(peer);
    const k = marks(peer);
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    const nodes = [];
    for (const m of [...c.messages.values()].sort((a, b) => a.seq - b.seq)) {
      const author = m.mine ? nick : peer;
      const node = bubble(author, m.ts, m.body, m.mine, m.mine ? mark(k, m) : null);
      node.dataset.seq = String(m.seq);
      nodes.push(node);
    }
    for (const [key, p] of c.pending) {
      const node = bubble(nick, p.ts, p.body, true,
        p.failed
          ? el("span", { class: "mark failed", "data-mark": "failed", title: p.failed }, "!")
          : el("span", { class: "mark", "data-mark": "pending", title: "Sending…" }, "🕓"));
      node.classList.add(p.failed ? "failed" : "pending");
      node.dataset.key = key;
      nodes.push(node);
    }
    empty.textContent = `No messages with ${peer} yet. Say hello 👋`;
    empty.hidden = nodes.length > 0;
    earlier.hidden = !c.more;
    box.replaceChildren(earlier, empty, ...nodes);
    if (toBottom || atBottom) box.scrollTop = box.scrollHeight;
  }

  function renderPeerHead() {
    const title = $("peer-title");
    const sub = $("peer-status");
    if (!openPeer) {
      title.replaceChildren("Pick a chat");
      sub.replaceChildren();
      return;
    }
    const s = presenceOf(openPeer);
    title.replaceChildren(avatar(openPeer), el("span", {}, openPeer));
    sub.replaceChildren(el("span", { class: "dot", "data-status": s }), s);
    sub.dataset.status = s;
  }

  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || !openPeer) return;
    const peer = openPeer;
    const c = conv(peer);
    const body = { text };
    const key = randomId();
    c.pending.set(key, { body, ts: Date.now() });
    input.value = "";
    input.focus();
    renderConversation(true);
    chat.send(peer, body).then(
      (r) => {
        c.pending.delete(key);
        addMessage(peer, { seq: r.seq, from: nick, to: peer, id: r.id, ts: r.ts, body, mine: true });
        changed(peer);
      },
      (err) => {
        const p = c.pending.get(key);
        if (p) p.failed = err.message;
        toast(`Not sent to ${peer}: ${err.message}`, "bad");
        if (peer === openPeer) renderConversation();
      },
    );
  });

  // ---------- friends and presence ----------

  function presenceOf(user) {
    return presence.status(user);
  }

  /** Messages from peer this page has and that are beyond our read mark. */
  function unread(peer) {
    const c = convs.get(peer);
    if (!c) return 0;
    const read = marks(peer).read;
    let n = 0;
    for (const m of c.messages.values()) if (!m.mine && m.seq > read) n++;
    return n;
  }

  /** "50+" when only the newest page was fetched and all of it is unread. */
  function unreadLabel(c, n) {
    return c.more && n >= c.messages.size ? `${n}+` : String(n);
  }

  function renderFriends() {
    const blocked = new Set(list.blocked);
    const friendSet = new Set(list.friends);
    const others = chat.conversations().map((x) => x.peer).filter((p) => !friendSet.has(p) && !blocked.has(p) && marks(p).last > 0);
    const people = [...list.friends].sort((a, b) => a.localeCompare(b)).concat(others.sort((a, b) => a.localeCompare(b)));
    let total = 0;
    $("friends").replaceChildren(
      ...people.map((user) => {
        const s = presenceOf(user);
        const n = unread(user);
        total += n;
        return el("li", { "data-user": user, "data-status": s, class: user === openPeer ? "active" : null },
          el("button", { type: "button", class: "pm-person", onclick: () => openConversation(user) },
            avatar(user),
            el("span", { class: "grow" },
              el("b", {}, user),
              el("span", { class: "small muted pm-presence" }, el("span", { class: "dot", "data-status": s }), friendSet.has(user) ? s : "not a friend")),
            n > 0 ? el("span", { class: "unread", title: `${n} unread` }, unreadLabel(convs.get(user), n)) : null));
      }),
    );
    $("no-friends").hidden = people.length > 0;

    $("incoming-box").hidden = list.incoming.length === 0;
    $("incoming").replaceChildren(
      ...list.incoming.map((user) =>
        el("li", { "data-user": user }, avatar(user), el("b", { class: "grow" }, user),
          el("button", { type: "button", class: "accept", onclick: () => act("accept", user) }, "Accept"),
          el("button", { type: "button", class: "ghost decline", title: "Decline", onclick: () => act("remove", user) }, "✕"))),
    );
    $("outgoing-box").hidden = list.outgoing.length === 0;
    $("outgoing").replaceChildren(
      ...list.outgoing.map((user) =>
        el("li", { "data-user": user }, avatar(user), el("span", { class: "grow" }, user),
          el("button", { type: "button", class: "ghost", title: "Withdraw the request", onclick: () => act("remove", user) }, "Withdraw"))),
    );
    document.title = `${total > 0 ? `(${total}) ` : ""}${nick} · Private chat · RSO demos`;
    if (openPeer) renderPeerHead();
  }

  function renderMe() {
    const s = status !== "connected" ? "offline" : /** @type {HTMLInputElement} */ ($("away")).checked ? "away" : "online";
    $("my-dot").dataset.status = s;
    $("my-status").textContent = s;
  }

  function setList(l) {
    list = l;
    renderFriends();
  }

  async function act(action, user) {
    try {
      setList(await friends[action](user));
      if (action === "accept") toast(`You and ${user} are friends now`, "ok");
    } catch (e) {
      toast(friendError(e, user), "bad");
    }
  }

  friends.on("change", setList);
  presence.on("change", (user) => {
    renderFriends();
    if (user === openPeer) renderPeerHead();
  });

  $("add-friend").addEventListener("submit", async (e) => {
    e.preventDefault();
    const field = /** @type {HTMLInputElement} */ ($("friend-name"));
    const user = cleanName(field.value);
    if (!NAME_RULE.test(user)) return toast("A name is 1 to 32 letters, digits, - or _.", "bad");
    if (user === nick) return toast("That is you.", "bad");
    try {
      const l = await friends.request(user);
      setList(l);
      field.value = "";
      toast(list.friends.includes(user) ? `You and ${user} are friends now` : `Asked ${user} to be your friend`, "ok");
    } catch (err) {
      toast(friendError(err, user), "bad");
    }
  });

  $("away").addEventListener("change", (e) => {
    presence.setAway(/** @type {HTMLInputElement} */ (e.target).checked).catch((err) => toast(`Could not change your status: ${err.message}`, "bad"));
    renderMe();
  });

  const signOut = $("sign-out");
  signOut.hidden = false;
  signOut.addEventListener("click", () => {
    sessionStorage.removeItem(USER_KEY);
    sessionStorage.removeItem(OPEN_KEY);
    client.close();
    location.replace(location.pathname);
  });

  // ---------- go ----------

  chat.connect();
  setList(await friends.list());
  renderFriends();
  fetchUnread();
  const reopen = sessionStorage.getItem(OPEN_KEY);
  if (reopen && reopen !== nick) await openConversation(reopen);
  else renderConversation();
  document.body.dataset.ready = "true";
}

function textOf(body) {
  if (body && typeof body.text === "string") return body.text;
  return JSON.stringify(body);
}

function friendError(e, user) {
  switch (e.code) {
    case "unknown_user":
      return `${user} has never signed in here`;
    case "blocked":
      return `${user} cannot be asked`;
    case "not_found":
      return `${user} did not ask you`;
    default:
      return e.message;
  }
}

addEventListener("unhandledrejection", (e) => toast(`Something went wrong: ${e.reason?.message ?? e.reason}`, "bad"));
