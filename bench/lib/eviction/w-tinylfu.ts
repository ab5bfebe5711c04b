import type { EvictionPolicy } from '../../../src/cache/eviction/policy.js';

/** Count-min sketch of recent frequencies: 4 rows of 4-bit-capped counters, halved every `sample` adds. */
export class FrequencySketch {
  readonly #rows: Uint8Array[];
  readonly #mask: number;
  readonly #sample: number;
  #adds = 0;

  constructor(width = 1 << 14, sample = 10 * width) {
    this.#rows = Array.from({ length: 4 }, () => new Uint8Array(width));
    this.#mask = width - 1;
    this.#sample = sample;
  }

  #index(key: string, row: number): number {
    let h = (0x811c9dc5 ^ (row * 0x9e3779b1)) >>> 0;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    h ^= h >>> 15;
    return (Math.imul(h, 0x2c1b3c6d) >>> 0) & this.#mask;
  }

  add(key: string): void {
    for (let r = 0; r < 4; r++) {
      const row = this.#rows[r] as Uint8Array;
      const i = this.#index(key, r);
      if ((row[i] as number) < 15) row[i] = (row[i] as number) + 1;
    }
    if (++this.#adds >= this.#sample) {
      this.#adds /= 2;
      for (const row of this.#rows) for (let i = 0; i < row.length; i++) row[i] = (row[i] as number) >> 1;
    }
  }

  estimate(key: string): number {
    let min = 15;
    for (let r = 0; r < 4; r++)
      min = Math.min(min, (this.#rows[r] as Uint8Array)[this.#index(key, r)] as number);
    return min;
  }
}

type Segment = 'window' | 'probation' | 'protected';

/**
 * W-TinyLFU (Einziger et al., 2017, Caffeine's policy) by bytes: a small LRU window admits every
 * blob; its overflow becomes a candidate for the main SLRU (probation, then protected after a hit),
 * admitted only if the sketch says it is more frequent than probation's least recent blob, else
 * evicted. Since the mirror stores everything it serves, "not admitted" is "evicted first".
 */
export class WTinyLfuPolicy implements EvictionPolicy {
  readonly #seg = new Map<string, { size: number; seg: Segment }>();
  readonly #lists: Record<Segment, Map<string, number>> = {
    window: new Map(),
    probation: new Map(),
    protected: new Map(),
  };
  readonly #bytes: Record<Segment, number> = { window: 0, probation: 0, protected: 0 };
  readonly #windowCap: number;
  readonly #protectedCap: number;
  readonly #sketch: FrequencySketch;
  /** Window overflow moved to probation in the current eviction run, not yet judged. */
  readonly #candidates = new Set<string>();
  #dirty = true;

  constructor(capacity: number, windowShare = 0.01, sketch = new FrequencySketch()) {
    this.#windowCap = capacity * windowShare;
    this.#protectedCap = 0.8 * (capacity - this.#windowCap);
    this.#sketch = sketch;
  }

  #put(key: string, size: number, seg: Segment): void {
    this.#seg.set(key, { size, seg });
    this.#lists[seg].set(key, size);
    this.#bytes[seg] += size;
  }

  #drop(key: string): void {
    const e = this.#seg.get(key);
    if (!e) return;
    this.#seg.delete(key);
    this.#lists[e.seg].delete(key);
    this.#bytes[e.seg] -= e.size;
    this.#candidates.delete(key);
  }

  insert(key: string, size: number): void {
    if (this.#seg.has(key)) {
      this.hit(key);
      return;
    }
    this.#dirty = true;
    this.#sketch.add(key);
    this.#put(key, size, 'window');
  }

  hit(key: string): void {
    const e = this.#seg.get(key);
    if (!e) return;
    this.#dirty = true;
    this.#sketch.add(key);
    this.#drop(key);
    this.#put(key, e.size, e.seg === 'window' ? 'window' : 'protected');
    for (const [k, s] of this.#lists.protected) {
      if (this.#bytes.protected <= this.#protectedCap) break;
      this.#drop(k);
      this.#put(k, s, 'probation');
    }
  }

  remove(key: string): void {
    this.#drop(key);
  }

  #oldest(seg: Segment, may: (key: string) => boolean, skip?: Set<string>): string | undefined {
    for (const k of this.#lists[seg].keys()) if (may(k) && !skip?.has(k)) return k;
    return undefined;
  }

  victim(may: (key: string) => boolean): string | undefined {
    if (this.#dirty) {
      this.#candidates.clear();
      this.#dirty = false;
    }
    for (const [k, s] of this.#lists.window) {
      if (this.#bytes.window <= this.#windowCap) break;
      this.#drop(k);
      this.#put(k, s, 'probation');
      this.#candidates.add(k);
    }
    let chosen: string | undefined;
    const candidate = [...this.#candidates].find(may);
    const resident = this.#oldest('probation', may, this.#candidates);
    if (candidate !== undefined && resident !== undefined)
      chosen = this.#sketch.estimate(candidate) > this.#sketch.estimate(resident) ? resident : candidate;
    else chosen = candidate ?? resident ?? this.#oldest('protected', may) ?? this.#oldest('window', may);
    if (chosen !== undefined) this.#drop(chosen);
    return chosen;
  }
}
