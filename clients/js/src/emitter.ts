/**
 * A small typed event emitter that works the same in browsers and Node.js.
 * A listener may return a promise; emitAsync() waits for all of them, which
 * is how the client acknowledges a message only after it has been handled.
 */
export type Listener<T> = (value: T) => unknown;

export class Emitter<Events extends object> {
  private listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(fn as Listener<never>);
    return () => this.off(event, fn);
  }

  /** Adds a listener that is removed after its first call. */
  once<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    const off = this.on(event, (v: Events[K]) => {
      off();
      return fn(v);
    });
    return off;
  }

  off<K extends keyof Events>(event: K, fn: Listener<Events[K]>): void {
    this.listeners.get(event)?.delete(fn as Listener<never>);
  }

  /** A promise of the next event of this kind. */
  next<K extends keyof Events>(event: K): Promise<Events[K]> {
    return new Promise((resolve) => this.once(event, resolve));
  }

  /** Calls every listener; a throwing listener is reported through onError. */
  protected emit<K extends keyof Events>(event: K, value: Events[K]): void {
    for (const fn of this.snapshot(event)) {
      try {
        const r = fn(value);
        if (r && typeof (r as Promise<unknown>).then === "function")
          (r as Promise<unknown>).then(undefined, (e) => this.onListenerError(e));
      } catch (e) {
        this.onListenerError(e);
      }
    }
  }

  /** Calls every listener and waits for the promises they return. Rejects if
   * any listener throws or rejects. */
  protected async emitAsync<K extends keyof Events>(event: K, value: Events[K]): Promise<void> {
    const results: unknown[] = [];
    for (const fn of this.snapshot(event)) results.push(fn(value));
    await Promise.all(results);
  }

  protected onListenerError(_e: unknown): void {}

  private snapshot<K extends keyof Events>(event: K): Listener<Events[K]>[] {
    const set = this.listeners.get(event);
    return set ? ([...set] as Listener<Events[K]>[]) : [];
  }
}
