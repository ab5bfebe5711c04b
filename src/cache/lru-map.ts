/**
 * A map bounded to `max` entries that drops the least recently used one past it, optionally
 * forgetting entries `ttl` ms after they were set; it takes memory only for what it holds.
 * lru-cache, used elsewhere for small bounds, allocates its arrays for `max` entries when built:
 * the mirror's indexes of 20,000 to 200,000 entries took ~18 MiB before holding anything
 * (docs/benchmarks.md, "Memory").
 *
 * `get` makes an entry the most recently used; `has` does not. An entry past its ttl is absent.
 */
export class LruMap<K, V> {
  /** Insertion order is recency: the first key is the least recently used. */
  readonly #values = new Map<K, V>();
  readonly #expires: Map<K, number> | undefined;
  readonly #max: number;
  readonly #ttl: number;
  /** The last key of #values (undefined when unknown: after a delete, or empty). */
  #newest: K | undefined;

  constructor(options: { max: number; ttl?: number }) {
    this.#max = Math.max(1, options.max);
    this.#ttl = options.ttl ?? 0;
    this.#expires = this.#ttl > 0 ? new Map() : undefined;
  }

  get size(): number {
    return this.#values.size;
  }

  get(key: K): V | undefined {
    if (!this.#live(key)) return undefined;
    const value = this.#values.get(key) as V;
    // Already the most recently used (a hot key asked again): moving it would change nothing.
    if (key === this.#newest) return value;
    this.#values.delete(key);
    this.#values.set(key, value);
    this.#newest = key;
    return value;
  }

  has(key: K): boolean {
    return this.#live(key);
  }

  set(key: K, value: V): this {
    this.#values.delete(key);
    this.#values.set(key, value);
    this.#newest = key;
    this.#expires?.set(key, Date.now() + this.#ttl);
    if (this.#values.size > this.#max) {
      const oldest = this.#values.keys().next().value as K;
      this.delete(oldest);
    }
    return this;
  }

  delete(key: K): boolean {
    if (key === this.#newest) this.#newest = undefined;
    this.#expires?.delete(key);
    return this.#values.delete(key);
  }

  clear(): void {
    this.#newest = undefined;
    this.#values.clear();
    this.#expires?.clear();
  }

  #live(key: K): boolean {
    if (!this.#values.has(key)) return false;
    const expires = this.#expires?.get(key);
    if (expires === undefined || expires > Date.now()) return true;
    this.delete(key);
    return false;
  }
}
