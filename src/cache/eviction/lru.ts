import type { EvictionPolicy } from './policy.js';

/** Least recently used first. Recency survives restarts through the files' mtimes (cache/usage-index.ts). */
export class LruPolicy implements EvictionPolicy {
  /** Insertion order is recency: least recent first. */
  readonly #order = new Map<string, number>();

  insert(key: string, size: number): void {
    this.#order.delete(key);
    this.#order.set(key, size);
  }

  hit(key: string): void {
    const size = this.#order.get(key);
    if (size === undefined) return;
    this.#order.delete(key);
    this.#order.set(key, size);
  }

  remove(key: string): void {
    this.#order.delete(key);
  }

  victim(may: (key: string) => boolean): string | undefined {
    for (const key of this.#order.keys()) {
      if (!may(key)) continue;
      this.#order.delete(key);
      return key;
    }
    return undefined;
  }
}
