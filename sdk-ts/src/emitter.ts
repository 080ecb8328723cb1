import { microtask } from "./host.js";

export type Listener<Args extends unknown[]> = (...args: Args) => void;

/** Returned by every `on`: call it to stop listening. */
export type Unsubscribe = () => void;

/**
 * A typed event source. Its owner keeps it private and exposes only `on`, so nobody else can emit.
 * `Events` maps each event name to the tuple of arguments its listeners receive.
 */
export class EventSource<Events extends { [K in keyof Events]: unknown[] }> {
  readonly #listeners: { [K in keyof Events]?: Set<Listener<Events[K]>> } = {};

  /** Calls `listener` on every `event` until the returned function is called. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): Unsubscribe {
    const set = (this.#listeners[event] ??= new Set());
    // A wrapper per call makes each subscription distinct, even for the same function.
    const entry: Listener<Events[K]> = (...args) => listener(...args);
    set.add(entry);
    return () => {
      set.delete(entry);
    };
  }

  has(event: keyof Events): boolean {
    return (this.#listeners[event]?.size ?? 0) > 0;
  }

  /**
   * Calls the listeners in the order they subscribed. A listener that throws stops neither the others nor
   * the SDK's bookkeeping: its error is rethrown on a microtask (uncaught in Node, logged by browsers).
   */
  emit<K extends keyof Events>(event: K, ...args: Events[K]): void {
    const set = this.#listeners[event];
    if (set === undefined) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (err) {
        microtask(() => {
          throw err;
        });
      }
    }
  }
}
