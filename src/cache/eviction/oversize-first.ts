import type { EvictionPolicy } from './policy.js';

/**
 * A blob larger than the bound on its own cannot stay (cache/evictor.ts `stored`): it goes first,
 * before the policy is asked, so storing it on its way to the client does not flush what fits.
 */
export class OversizeFirst implements EvictionPolicy {
  readonly #inner: EvictionPolicy;
  readonly #capacity: number;
  readonly #oversize = new Set<string>();

  /** The inner policy's, when it has one (EvictionPolicy.asked). */
  readonly asked: ((key: string, client: string) => void) | undefined;

  constructor(inner: EvictionPolicy, capacity: number) {
    this.#inner = inner;
    this.#capacity = capacity;
    this.asked = inner.asked;
  }

  insert(key: string, size: number): void {
    if (size > this.#capacity) this.#oversize.add(key);
    else this.#inner.insert(key, size);
  }

  hit(key: string): void {
    if (!this.#oversize.has(key)) this.#inner.hit(key);
  }

  remove(key: string): void {
    if (!this.#oversize.delete(key)) this.#inner.remove(key);
  }

  victim(may: (key: string) => boolean): string | undefined {
    for (const key of this.#oversize) {
      if (!may(key)) continue;
      this.#oversize.delete(key);
      return key;
    }
    return this.#inner.victim(may);
  }
}
