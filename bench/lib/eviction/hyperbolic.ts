import type { EvictionPolicy } from '../../../src/cache/eviction/policy.js';
import { rng } from '../swarm-images.js';

interface Entry {
  key: string;
  index: number;
  hits: number;
  since: number;
  size: number;
}

/**
 * Hyperbolic caching (Blankstein et al., USENIX ATC 2017): an object's value is its request count
 * divided by its time in the cache (here counted in requests); evict the lowest of a random sample.
 * `sizePower` 0 aims at the byte hit ratio, 1 divides by size (object hit ratio).
 */
export class HyperbolicPolicy implements EvictionPolicy {
  readonly #entries = new Map<string, Entry>();
  readonly #list: Entry[] = [];
  readonly #random: () => number;
  readonly #sample: number;
  readonly #sizePower: number;
  #clock = 0;

  constructor(sample = 64, sizePower = 0, seed = 1) {
    this.#sample = sample;
    this.#sizePower = sizePower;
    this.#random = rng(seed);
  }

  insert(key: string, size: number): void {
    this.#clock++;
    if (this.#entries.has(key)) {
      this.hit(key);
      return;
    }
    const e = { key, index: this.#list.length, hits: 1, since: this.#clock, size };
    this.#entries.set(key, e);
    this.#list.push(e);
  }

  hit(key: string): void {
    this.#clock++;
    const e = this.#entries.get(key);
    if (e) e.hits++;
  }

  remove(key: string): void {
    const e = this.#entries.get(key);
    if (!e) return;
    this.#entries.delete(key);
    const last = this.#list.pop() as Entry;
    if (last !== e) {
      last.index = e.index;
      this.#list[e.index] = last;
    }
  }

  #value(e: Entry): number {
    return e.hits / (this.#clock + 1 - e.since) / e.size ** this.#sizePower;
  }

  victim(may: (key: string) => boolean): string | undefined {
    let best: Entry | undefined;
    const n = this.#list.length;
    for (let i = 0; i < Math.min(this.#sample, n); i++) {
      const e = this.#list[Math.floor(this.#random() * n)] as Entry;
      if (may(e.key) && (!best || this.#value(e) < this.#value(best))) best = e;
    }
    if (!best) best = this.#list.find((e) => may(e.key));
    if (!best) return undefined;
    this.remove(best.key);
    return best.key;
  }
}
