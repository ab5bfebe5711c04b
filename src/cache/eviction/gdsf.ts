import { MinHeap } from './min-heap.js';
import type { EvictionPolicy } from './policy.js';
import type { WhoFetched } from './who-fetched.js';

export interface GdsfOptions {
  /**
   * A miss's cost is size^costExponent. 1 makes the priority L + frequency: the bytes a blob saves
   * per byte it holds, which is what the byte hit ratio counts. 0 favours small blobs (object hit
   * ratio). The default, 1.1, adds a slight preference for big blobs at equal counts, which measured
   * best (bench/eviction.ts, docs/benchmarks.md).
   */
  costExponent?: number;
  /**
   * Uses counted at most: a burst (every node pulling a new release once) must not keep a blob long
   * after the burst is over. Unbounded is LFU with dynamic aging; 5 measured best.
   */
  maxFrequency?: number;
  /**
   * Which clients fetched which blobs (cache/eviction/who-fetched.ts): a blob every client has
   * fetched goes first whatever its uses, its priority at its next use L, a newcomer's. Without it
   * (the eviction bench's plain GDSF) uses alone decide.
   */
  fetched?: WhoFetched;
}

interface Entry {
  /** cost / size, computed once: a power per hit showed in the hit path's profile. */
  weight: number;
  frequency: number;
  priority: number;
  /** Increases with every use: the heap item carrying it is the entry's current one. */
  seq: number;
}

interface Item {
  key: string;
  priority: number;
  seq: number;
}

/**
 * Greedy-Dual-Size-Frequency (Cherkasova, HP Labs HPL-98-69, 1998): a blob's priority is
 * L + frequency × cost / size; the lowest goes, and L (the "inflation") becomes its priority, so
 * blobs not used for a while sink below newcomers however often they were used before. Among
 * equal priorities the one used longest ago goes.
 *
 * In memory only. After a restart every stored blob starts again at frequency 1 (cache/usage-index.ts
 * scan inserts them least recently used first, which orders only equal priorities); the bench
 * measured what a restart costs: at most one point of byte hit ratio (docs/benchmarks.md).
 */
export class GdsfPolicy implements EvictionPolicy {
  readonly #entries = new Map<string, Entry>();
  /** Lazily updated: a use pushes a new item, items of an older seq are skipped when they surface. */
  readonly #heap = new MinHeap<Item>(
    (a, b) => a.priority < b.priority || (a.priority === b.priority && a.seq < b.seq),
  );
  readonly #weight: (size: number) => number;
  readonly #maxFrequency: number;
  readonly #fetched: WhoFetched | undefined;
  /** Only with `fetched` (EvictionPolicy.asked). */
  readonly asked: ((key: string, client: string) => void) | undefined;
  #inflation = 0;
  #seq = 0;

  constructor(options: GdsfOptions = {}) {
    const exponent = options.costExponent ?? 1.1;
    this.#weight = (size) => Math.max(1, size) ** (exponent - 1);
    this.#maxFrequency = options.maxFrequency ?? 5;
    const fetched = options.fetched;
    this.#fetched = fetched;
    this.asked = fetched && ((key, client) => fetched.asked(key, client));
  }

  insert(key: string, size: number): void {
    if (this.#entries.has(key)) {
      this.hit(key);
      return;
    }
    const e = { weight: this.#weight(size), frequency: 1, priority: 0, seq: 0 };
    this.#entries.set(key, e);
    this.#use(key, e);
  }

  hit(key: string): void {
    const e = this.#entries.get(key);
    if (!e) return;
    const frequency = Math.min(e.frequency + 1, this.#maxFrequency);
    // Used last already, and its priority unchanged: its heap item is still the newest among equal
    // priorities, which a new one would only repeat (a blob many nodes ask for at once).
    if (e.seq === this.#seq && frequency === e.frequency && e.priority === this.#priorityOf(key, e)) return;
    e.frequency = frequency;
    this.#use(key, e);
  }

  remove(key: string): void {
    this.#entries.delete(key);
  }

  victim(may: (key: string) => boolean): string | undefined {
    const passed: Item[] = [];
    let found: string | undefined;
    for (let top = this.#heap.pop(); top; top = this.#heap.pop()) {
      if (this.#entries.get(top.key)?.seq !== top.seq) continue;
      if (!may(top.key)) {
        passed.push(top);
        continue;
      }
      this.#inflation = top.priority;
      this.#entries.delete(top.key);
      found = top.key;
      break;
    }
    for (const item of passed) this.#heap.push(item);
    return found;
  }

  #use(key: string, e: Entry): void {
    e.priority = this.#priorityOf(key, e);
    e.seq = ++this.#seq;
    this.#heap.push({ key, priority: e.priority, seq: e.seq });
    // Hits without evictions leave old items behind: rebuild before they outnumber the live ones.
    if (this.#heap.size > 2 * this.#entries.size + 1024) this.#compact();
  }

  #priorityOf(key: string, e: Entry): number {
    return this.#fetched?.everyone(key) ? this.#inflation : this.#inflation + e.frequency * e.weight;
  }

  #compact(): void {
    this.#heap.clear();
    for (const [key, e] of this.#entries) this.#heap.push({ key, priority: e.priority, seq: e.seq });
  }
}
