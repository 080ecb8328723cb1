// What the SDK needs from its JavaScript host. Browsers and Node 20+ have all of it; the compiler is not
// given the DOM or Node typings, so that nothing else slips in.

/** The part of a WebSocket the SDK uses: the browser's, or `ws`'s in Node (`import { WebSocket } from "ws"`). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // Handlers take `never` so that sockets whose handlers declare richer event types still fit; the SDK
  // reads the events through the narrow shapes below.
  onopen: ((event: never) => void) | null;
  onmessage: ((event: never) => void) | null;
  onclose: ((event: never) => void) | null;
  onerror: ((event: never) => void) | null;
}

export interface MessageEventLike {
  readonly data: unknown;
}

export interface CloseEventLike {
  readonly code: number;
  readonly reason: string;
}

/** In Node's `ws` the error event has a message ("Unexpected server response: 401"); browsers give none. */
export interface ErrorEventLike {
  readonly message?: unknown;
  readonly error?: unknown;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** `readyState` of an open socket (the same in every WebSocket implementation). */
export const OPEN = 1;

type TimerHandle = unknown;

interface Host {
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  queueMicrotask(fn: () => void): void;
  crypto?: { getRandomValues(array: Uint8Array): Uint8Array };
  WebSocket?: WebSocketConstructor;
  TextEncoder: new () => { encode(s: string): Uint8Array };
  URL: new (url: string) => URLLike;
}

export interface URLLike {
  protocol: string;
  pathname: string;
  readonly searchParams: { set(name: string, value: string): void };
  toString(): string;
}

interface EventTargetLike {
  addEventListener?(type: string, listener: () => void): void;
  removeEventListener?(type: string, listener: () => void): void;
}

const host = globalThis as unknown as Host;

/**
 * Calls `wake` when the browser is back online (window `online`) or the page becomes visible again
 * (document `visibilitychange`); returns what removes the listeners. Nothing where there is no window
 * or document (Node).
 */
export function onWakeSignals(wake: () => void): () => void {
  const win = globalThis as unknown as EventTargetLike;
  const doc = (globalThis as unknown as { document?: EventTargetLike & { visibilityState?: string } }).document;
  const online = (): void => wake();
  const visible = (): void => {
    if (doc?.visibilityState === "visible") wake();
  };
  const onWin = typeof win.addEventListener === "function";
  const onDoc = doc !== undefined && typeof doc.addEventListener === "function";
  if (onWin) win.addEventListener!("online", online);
  if (onDoc) doc.addEventListener!("visibilitychange", visible);
  return () => {
    if (onWin) win.removeEventListener?.("online", online);
    if (onDoc) doc.removeEventListener?.("visibilitychange", visible);
  };
}

// Looked up on every call, so that fake timers installed after this module loaded are used.
export const setTimer = (fn: () => void, ms: number): TimerHandle => host.setTimeout(fn, ms);
export const clearTimer = (handle: TimerHandle): void => host.clearTimeout(handle);
export const microtask = (fn: () => void): void => host.queueMicrotask(fn);
export const makeURL = (url: string): URLLike => new host.URL(url);
export const globalWebSocket = (): WebSocketConstructor | undefined => host.WebSocket;

const encoder = new host.TextEncoder();
export const utf8Length = (s: string): number => encoder.encode(s).length;

const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/** `n` random letters and digits, from crypto.getRandomValues when the host has it. */
export function randomString(n: number): string {
  const bytes = new Uint8Array(n);
  if (host.crypto !== undefined) host.crypto.getRandomValues(bytes);
  else for (let i = 0; i < n; i++) bytes[i] = Math.floor(Math.random() * 256);
  let s = "";
  for (const b of bytes) s += alphabet[b % alphabet.length];
  return s;
}
