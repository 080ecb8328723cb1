// The browser's `online` and `visibilitychange` events cut a reconnect backoff short (wake), but never the
// extra wait after a 4009 abuse close; the listeners go with client.close(). Fake window and document globals.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import { closeClients, harness, tick } from "../helpers/fake.js";

type Listener = () => void;
class FakeTarget {
  readonly listeners = new Map<string, Set<Listener>>();
  addEventListener(type: string, l: Listener): void {
    let s = this.listeners.get(type);
    if (s === undefined) this.listeners.set(type, (s = new Set()));
    s.add(l);
  }
  removeEventListener(type: string, l: Listener): void {
    this.listeners.get(type)?.delete(l);
  }
  count(type: string): number {
    return this.listeners.get(type)?.size ?? 0;
  }
  fire(type: string): void {
    for (const l of [...(this.listeners.get(type) ?? [])]) l();
  }
}

const g = globalThis as unknown as Record<string, unknown>;
let win: FakeTarget;
let doc: FakeTarget & { visibilityState: string };

beforeEach(() => {
  mock.timers.enable({ apis: ["setTimeout"] });
  win = new FakeTarget();
  doc = Object.assign(new FakeTarget(), { visibilityState: "hidden" });
  g["addEventListener"] = win.addEventListener.bind(win);
  g["removeEventListener"] = win.removeEventListener.bind(win);
  g["document"] = doc;
});
afterEach(() => {
  closeClients();
  mock.timers.reset();
  delete g["addEventListener"];
  delete g["removeEventListener"];
  delete g["document"];
});

describe("wake on online and visibilitychange", () => {
  test("online, or the page becoming visible, tries at once during a backoff", async () => {
    const h = harness({ random: () => 0.99 });
    h.client.connect();
    assert.equal(win.count("online"), 1);
    assert.equal(doc.count("visibilitychange"), 1);
    h.socket().fail("connect ECONNREFUSED 127.0.0.1:1");
    await tick();
    assert.equal(h.sockets.length, 1, "waiting in backoff");
    win.fire("online");
    assert.equal(h.sockets.length, 2, "tried at once");
    win.fire("online"); // not waiting: nothing
    assert.equal(h.sockets.length, 2);

    h.socket().fail("connect ECONNREFUSED 127.0.0.1:1");
    await tick();
    doc.fire("visibilitychange"); // still hidden
    assert.equal(h.sockets.length, 2);
    doc.visibilityState = "visible";
    doc.fire("visibilitychange");
    assert.equal(h.sockets.length, 3);

    h.client.close();
    assert.equal(win.count("online"), 0, "listeners removed on close");
    assert.equal(doc.count("visibilitychange"), 0);
  });

  test("never bypasses the extra wait after a 4009 abuse close", async () => {
    const h = harness({ random: () => 0.5 });
    h.client.connect();
    h.socket().accept();
    await tick();
    h.socket().serverClose(4009, "slow down");
    await tick();
    win.fire("online");
    doc.visibilityState = "visible";
    doc.fire("visibilitychange");
    assert.equal(h.sockets.length, 1, "the abuse wait holds");
    mock.timers.tick(5_000 + 125);
    await tick();
    assert.equal(h.sockets.length, 2);
  });
});
