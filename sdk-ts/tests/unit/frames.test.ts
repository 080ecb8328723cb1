// Frames and codes: splitting, parsing, building, and the codes mirrored from docs/PROTOCOL.md.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { EventSource } from "../../src/emitter.js";
import { parseMessage, pingFrame, sendFrame, subFrame, unsubFrame, updateFrame, updateItem } from "../../src/frames.js";
import { ClientErrorCode, closeAction, CloseCode, ErrorCode, ProtocolError, RsoError, SyncCode } from "../../src/index.js";

const hello = '{"op":"hello","session":"s","user":"u","limits":{"max_frame_bytes":1,"max_value_bytes":2,"max_slots":3,"max_object_bytes":4,"max_changes":5,"max_subscriptions":6,"max_name_bytes":7,"frames_per_second":0.5,"resync_window":9}}';

describe("parseMessage", () => {
  test("splits a message on newlines, ignores empty pieces and skips unknown ops", () => {
    const frames = parseMessage(`${hello}\n\n{"op":"pong","id":"p1"}\n{"op":"future","x":1}\n{"op":"pong"}\n`);
    assert.deepEqual(frames, [
      {
        op: "hello",
        session: "s",
        user: "u",
        limits: {
          maxFrameBytes: 1,
          maxValueBytes: 2,
          maxSlots: 3,
          maxObjectBytes: 4,
          maxChanges: 5,
          maxSubscriptions: 6,
          maxNameBytes: 7,
          framesPerSecond: 0.5,
          resyncWindow: 9,
        },
      },
      { op: "pong", id: "p1" },
      { op: "pong", id: undefined },
    ]);
  });

  test("sync entries keep absent and null apart, and unknown entry codes and fields are skipped", () => {
    const [frame] = parseMessage(
      JSON.stringify({
        op: "sync",
        obj: "room/42",
        persistent: true,
        epoch: "k2",
        version: 18,
        id: "c7-1",
        extra: { ignored: true },
        changes: [
          { code: "clear" },
          { code: "change", name: "a", value: null },
          { code: "change", name: "b", value: 1, oldValue: null },
          { code: "delete", name: "c", oldValue: "x" },
          { code: "delete", name: "d" },
          { code: "success", name: "e" },
          { code: "reject", name: "f", reason: "conflict" },
          { code: "reject", name: "g", value: null, reason: "hook says no" },
          { code: "merge", whatever: 1 },
        ],
      }),
    );
    assert.deepEqual(frame, {
      op: "sync",
      obj: "room/42",
      persistent: true,
      epoch: "k2",
      version: 18,
      id: "c7-1",
      changes: [
        { code: "clear" },
        { code: "change", name: "a", value: null },
        { code: "change", name: "b", value: 1, oldValue: null },
        { code: "delete", name: "c", oldValue: "x" },
        { code: "delete", name: "d" },
        { code: "success", name: "e" },
        { code: "reject", name: "f", reason: "conflict" },
        { code: "reject", name: "g", value: null, reason: "hook says no" },
      ],
    });
  });

  test("persistent absent means false; message and error frames", () => {
    const frames = parseMessage(
      [
        '{"op":"message","obj":"o","handler":"chat","args":["hi"],"from":"bob"}',
        '{"op":"error","code":"busy","message":"retry","id":"c-1","obj":"o","persistent":true}',
        '{"op":"error","code":"bad_json","message":"not JSON"}',
      ].join("\n"),
    );
    assert.deepEqual(frames, [
      { op: "message", obj: "o", persistent: false, handler: "chat", args: ["hi"], from: "bob", id: undefined },
      { op: "error", code: "busy", message: "retry", id: "c-1", obj: "o", persistent: true },
      { op: "error", code: "bad_json", message: "not JSON", id: undefined, obj: undefined, persistent: false },
    ]);
  });

  const bad: Array<[string, RegExp]> = [
    ["not json", /not JSON/],
    ["[1]", /not a JSON object/],
    ['{"x":1}', /without "op"/],
    ['{"op":"sync","obj":"o","version":1,"changes":[]}', /"epoch"/],
    ['{"op":"sync","obj":"o","epoch":"","version":1.5,"changes":[]}', /"version"/],
    ['{"op":"sync","obj":"o","epoch":"","version":-1,"changes":[]}', /"version"/],
    ['{"op":"sync","obj":"o","epoch":"","version":9007199254740992,"changes":[]}', /"version"/],
    ['{"op":"sync","obj":"o","epoch":"","version":"1","changes":[]}', /"version"/],
    ['{"op":"sync","obj":"o","epoch":"","version":1,"changes":{}}', /"changes"/],
    ['{"op":"sync","obj":"o","epoch":"","version":1,"changes":[{"code":"change","name":"a"}]}', /changes\.value/],
    ['{"op":"sync","obj":"o","epoch":"","version":1,"changes":[{"code":"success"}]}', /changes\.name/],
    ['{"op":"sync","obj":"o","persistent":"yes","epoch":"","version":1,"changes":[]}', /"persistent"/],
    ['{"op":"message","obj":"o","handler":"h","args":{},"from":"u"}', /"args"/],
    ['{"op":"hello","session":"s","user":"u","limits":{"max_frame_bytes":"big"}}', /"max_frame_bytes"/],
    ['{"op":"error","message":"m"}', /"code"/],
  ];
  for (const [text, why] of bad) {
    test(`refuses ${text.slice(0, 60)}`, () => {
      assert.throws(() => parseMessage(text), (e: unknown) => e instanceof ProtocolError && e.code === "protocol_error" && why.test(e.message));
    });
  }
});

describe("client frames", () => {
  test("sub sends version and epoch only once something was seen", () => {
    assert.equal(subFrame("c-1", "room/42", true, 0, ""), '{"op":"sub","obj":"room/42","persistent":true,"id":"c-1"}');
    assert.equal(subFrame("c-5", "room/42", true, 17, "k2Jq9"), '{"op":"sub","obj":"room/42","persistent":true,"id":"c-5","version":17,"epoch":"k2Jq9"}');
    assert.equal(subFrame("c-6", "o", false, 0, "k"), '{"op":"sub","obj":"o","persistent":false,"id":"c-6","version":0,"epoch":"k"}');
  });

  test("update, send, unsub and ping are compact JSON without raw newlines", () => {
    const items = [updateItem("topic", 17, JSON.stringify("Hel\nlo")), updateItem("draft", 17, undefined)];
    const update = updateFrame("c-1", "room\n42", true, items);
    assert.ok(!update.includes("\n"));
    assert.deepEqual(JSON.parse(update), {
      op: "update",
      obj: "room\n42",
      persistent: true,
      id: "c-1",
      changes: [
        { name: "topic", base: 17, value: "Hel\nlo" },
        { name: "draft", base: 17, delete: true },
      ],
    });
    assert.equal(sendFrame("c-2", "room/42", true, "chat", '["alice","hi all"]'), '{"op":"send","obj":"room/42","persistent":true,"id":"c-2","handler":"chat","args":["alice","hi all"]}');
    assert.equal(unsubFrame("room/42", true), '{"op":"unsub","obj":"room/42","persistent":true}');
    assert.equal(pingFrame("p1"), '{"op":"ping","id":"p1"}');
  });
});

/** The rows of the markdown table that follows `heading` in docs/PROTOCOL.md: first cell of each. */
function tableKeys(doc: string, heading: string): string[] {
  const start = doc.indexOf(heading);
  assert.ok(start >= 0, `PROTOCOL.md has ${heading}`);
  const lines = doc.slice(start).split("\n");
  const first = lines.findIndex((l) => l.startsWith("| --- "));
  const keys: string[] = [];
  for (const line of lines.slice(first + 1)) {
    if (!line.startsWith("|")) break;
    keys.push(line.split("|")[1]!.trim().replace(/`/g, ""));
  }
  return keys;
}

describe("codes mirror docs/PROTOCOL.md", () => {
  const doc = readFileSync(new URL("../../../../docs/PROTOCOL.md", import.meta.url), "utf8");

  test("error codes (§1.7)", () => {
    const documented = tableKeys(doc, "### 1.7 Errors");
    const ours = Object.values(ErrorCode).filter((c) => c !== ErrorCode.Unauthorized);
    assert.deepEqual([...ours].sort(), [...documented].sort());
    assert.match(doc, /"code":"unauthorized"/, "unauthorized is the 401 body's code (§1.1)");
  });

  test("close codes (§1.9) and what each one means for the client", () => {
    const documented = tableKeys(doc, "### 1.9 Close codes").map(Number);
    const ours = Object.values(CloseCode).filter((c) => c !== CloseCode.Abnormal);
    assert.deepEqual([...ours].sort(), [...documented].sort());
    assert.deepEqual(
      Object.fromEntries(documented.map((c) => [c, closeAction(c)])),
      { 1000: "stop", 1003: "stop", 1009: "reconnect", 1011: "reconnect", 1012: "reconnect-soon", 4001: "stop", 4003: "new-token", 4008: "reconnect", 4009: "reconnect-late", 4010: "reconnect", 4011: "stop" },
    );
  });

  test("sync entry codes (§1.4)", () => {
    const start = doc.indexOf("A `sync` frame's `changes`");
    assert.deepEqual(tableKeys(doc.slice(start), "| code |"), Object.values(SyncCode));
  });

  test("client codes do not collide with protocol codes", () => {
    for (const c of Object.values(ClientErrorCode)) assert.ok(!(Object.values(ErrorCode) as string[]).includes(c), c);
  });
});

describe("errors", () => {
  test("are Error subclasses with name, code and cause", () => {
    const cause = new TypeError("x");
    const e = new RsoError("invalid_value", "bad", { cause });
    assert.ok(e instanceof Error);
    assert.equal(e.name, "RsoError");
    assert.equal(e.code, "invalid_value");
    assert.equal(e.cause, cause);
    assert.match(String(e.stack), /RsoError: bad/);
  });
});

describe("EventSource", () => {
  test("on returns an unsubscribe; the same function may subscribe twice", () => {
    const events = new EventSource<{ n: [number] }>();
    const got: number[] = [];
    const record = (n: number) => got.push(n);
    const off = events.on("n", record);
    events.on("n", record);
    events.emit("n", 1);
    off();
    events.emit("n", 2);
    assert.deepEqual(got, [1, 1, 2]);
  });

  test("a throwing listener does not stop the others; its error is rethrown on a microtask", () => {
    const events = new EventSource<{ n: [number] }>();
    const got: number[] = [];
    const thrown: unknown[] = [];
    const original = globalThis.queueMicrotask;
    globalThis.queueMicrotask = (fn) => {
      try {
        fn();
      } catch (e) {
        thrown.push(e);
      }
    };
    try {
      events.on("n", () => {
        throw new Error("listener bug");
      });
      events.on("n", (n) => got.push(n));
      events.emit("n", 1);
    } finally {
      globalThis.queueMicrotask = original;
    }
    assert.deepEqual(got, [1]);
    assert.equal((thrown[0] as Error).message, "listener bug");
  });
});
