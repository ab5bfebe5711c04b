import type { EvictionPolicy } from '../../../src/cache/eviction/policy.js';

interface Entry {
  size: number;
  freq: number;
  main: boolean;
}

/**
 * S3-FIFO (Yang et al., SOSP 2023) by bytes: new blobs enter a small FIFO (`smallShare` of the
 * capacity); one served again while there moves to the main FIFO, one not goes and leaves its key
 * in a ghost FIFO; a blob whose key is a ghost enters main directly. Main reinserts a blob served
 * since it was last looked at (frequency capped at 3, decremented per pass).
 */
export class S3FifoPolicy implements EvictionPolicy {
  readonly #small = new Map<string, Entry>();
  readonly #main = new Map<string, Entry>();
  readonly #ghost = new Map<string, number>();
  #smallBytes = 0;
  #ghostBytes = 0;
  readonly #smallCap: number;
  readonly #ghostCap: number;
  readonly #promoteAt: number;

  constructor(capacity: number, smallShare = 0.1, promoteAt = 1) {
    this.#smallCap = capacity * smallShare;
    this.#ghostCap = capacity;
    this.#promoteAt = promoteAt;
  }

  insert(key: string, size: number): void {
    if (this.#small.has(key) || this.#main.has(key)) {
      this.hit(key);
      return;
    }
    if (this.#ghost.has(key)) {
      this.#ghostBytes -= this.#ghost.get(key) ?? 0;
      this.#ghost.delete(key);
      this.#main.set(key, { size, freq: 0, main: true });
      return;
    }
    this.#small.set(key, { size, freq: 0, main: false });
    this.#smallBytes += size;
  }

  hit(key: string): void {
    const e = this.#small.get(key) ?? this.#main.get(key);
    if (e) e.freq = Math.min(e.freq + 1, 3);
  }

  remove(key: string): void {
    const e = this.#small.get(key);
    if (e) {
      this.#small.delete(key);
      this.#smallBytes -= e.size;
    }
    this.#main.delete(key);
  }

  victim(may: (key: string) => boolean): string | undefined {
    // Each entry is looked at a bounded number of times: freq ≤ 3 passes, plus one skip per pass.
    let budget = 5 * (this.#small.size + this.#main.size) + 1;
    while (budget-- > 0) {
      const fromSmall = this.#small.size > 0 && (this.#smallBytes > this.#smallCap || this.#main.size === 0);
      const queue = fromSmall ? this.#small : this.#main;
      const first = queue.keys().next();
      if (first.done) return undefined;
      const key = first.value;
      const e = queue.get(key) as Entry;
      queue.delete(key);
      if (fromSmall) this.#smallBytes -= e.size;
      if (fromSmall && e.freq >= this.#promoteAt) {
        e.freq = 0;
        e.main = true;
        this.#main.set(key, e);
        continue;
      }
      if (!fromSmall && e.freq > 0) {
        e.freq--;
        this.#main.set(key, e);
        continue;
      }
      if (!may(key)) {
        queue.set(key, e);
        if (fromSmall) this.#smallBytes += e.size;
        continue;
      }
      if (fromSmall) this.#addGhost(key, e.size);
      return key;
    }
    return undefined;
  }

  #addGhost(key: string, size: number): void {
    this.#ghost.set(key, size);
    this.#ghostBytes += size;
    for (const [k, s] of this.#ghost) {
      if (this.#ghostBytes <= this.#ghostCap) break;
      this.#ghost.delete(k);
      this.#ghostBytes -= s;
    }
  }
}
