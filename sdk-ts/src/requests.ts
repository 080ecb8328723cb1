// Requests waiting for their answers, by request id: the relay's bookkeeping of what it asked the server,
// apart from any socket. A request is answered by the reply carrying its id (or by anything else the owner
// takes as its answer), fails with an error, or waits for a retry; close rejects everything at once.
import { ProtocolError, RsoError } from "./errors.js";
import { clearTimer, setTimer } from "./host.js";

/** What a request is, as its owner gives it. */
export interface RequestSpec {
  /** The request id; a new one (from the tracker's nextId) when absent. */
  id?: string | undefined;
  /** The frame to write, built with the id. */
  frame(id: string): string;
  /** Kept across reconnects and sent again after the login sequence; else it fails when the connection ends. */
  durable: boolean;
  /** For a chat send: the recipient (its stored copy, seen in sync or history, also answers it). */
  to?: string | undefined;
}

/** A request under way. */
export interface Pending {
  readonly id: string;
  readonly frame: string;
  readonly durable: boolean;
  readonly to: string | undefined;
  /** The connection generation it was written on (-1: not in flight). The owner sets it when it writes. */
  gen: number;
  /** Refusals retried so far. */
  readonly attempt: number;
  /** A retry is scheduled: it goes out again by itself. */
  readonly retrying: boolean;
}

export interface RequestTracker<A> {
  /** Requests under way. */
  readonly size: number;
  /**
   * Registers a request. The promise resolves with `answer(reply)` of its reply, or rejects with the
   * error it failed with (an `answer` that throws rejects it too: a wrong reply).
   */
  open<T>(spec: RequestSpec, answer: (reply: A) => T): { request: Pending; promise: Promise<T> };
  get(id: string): Pending | undefined;
  /** Every request under way, oldest first (a copy: settling some while iterating is fine). */
  list(): Pending[];
  /** Answers the request with this id; false when none waits for it. */
  resolve(id: string, reply: A): boolean;
  /** Fails a request (nothing when it was settled already). */
  reject(request: Pending, error: RsoError): void;
  /** Rejects every request: the connection stopped, or the client was closed. */
  rejectAll(error: RsoError): void;
  /**
   * Runs `send` after `delayFor(attempt)` ms (attempt counts from 0 per request), unless the request was
   * settled meanwhile; it is not in flight (gen -1) until then.
   */
  retry(request: Pending, delayFor: (attempt: number) => number, send: () => void): void;
}

interface Entry<A> extends Pending {
  gen: number;
  attempt: number;
  timer: unknown;
  readonly retrying: boolean;
  answer(reply: A): void;
  fail(error: RsoError): void;
}

export function requestTracker<A>(nextId: () => string): RequestTracker<A> {
  const entries = new Map<string, Entry<A>>();
  /** Removes `e` if it is still under way; false when it was settled already. */
  const take = (e: Entry<A>): boolean => {
    if (entries.get(e.id) !== e) return false;
    entries.delete(e.id);
    clearTimer(e.timer);
    e.timer = undefined;
    return true;
  };
  const reject = (request: Pending, error: RsoError): void => {
    const e = entries.get(request.id);
    if (e === request && take(e)) e.fail(error);
  };
  return {
    get size() {
      return entries.size;
    },
    open<T>(spec: RequestSpec, answer: (reply: A) => T) {
      const id = spec.id ?? nextId();
      let request!: Entry<A>;
      const promise = new Promise<T>((resolve, reject) => {
        request = {
          id,
          frame: spec.frame(id),
          durable: spec.durable,
          to: spec.to,
          gen: -1,
          attempt: 0,
          timer: undefined,
          get retrying() {
            return this.timer !== undefined;
          },
          answer: (reply) => resolve(answer(reply)),
          fail: reject,
        };
      });
      entries.set(id, request);
      return { request, promise };
    },
    get: (id) => entries.get(id),
    list: () => [...entries.values()],
    resolve(id, reply) {
      const e = entries.get(id);
      if (e === undefined || !take(e)) return false;
      try {
        e.answer(reply);
      } catch (err) {
        e.fail(err instanceof RsoError ? err : new ProtocolError("unreadable answer", { cause: err }));
      }
      return true;
    },
    reject,
    rejectAll(error) {
      for (const e of [...entries.values()]) if (take(e)) e.fail(error);
    },
    retry(request, delayFor, send) {
      const e = entries.get(request.id);
      if (e !== request) return;
      e.gen = -1;
      clearTimer(e.timer);
      const timer = setTimer(() => {
        if (e.timer !== timer) return;
        e.timer = undefined;
        if (entries.get(e.id) === e) send();
      }, delayFor(e.attempt++));
      e.timer = timer;
    },
  };
}
