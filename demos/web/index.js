// @ts-check
// The landing page: remembers the nickname and points each demo card at a default room, deck or lot.
import { cleanName, NAME_RULE, saveNick, savedNick } from "./common.js";

const input = /** @type {HTMLInputElement} */ (document.getElementById("nick"));
const cards = /** @type {NodeListOf<HTMLAnchorElement>} */ (document.querySelectorAll("a[data-demo]"));
const defaults = { chat: "room=lobby", slides: "deck=rso", auction: "lot=1" };

function update() {
  const nick = cleanName(input.value);
  if (NAME_RULE.test(nick)) saveNick(nick);
  for (const card of cards) card.href = `${card.dataset.demo}.html?${defaults[card.dataset.demo]}`;
}

input.value = savedNick();
input.addEventListener("input", update);
document.getElementById("nick-form").addEventListener("submit", (e) => e.preventDefault());
update();
