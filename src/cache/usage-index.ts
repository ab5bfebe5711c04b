import { readdir, stat, utimes } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import { blobPath, blobPrefixDir, blobsDir } from '../storage/layout.js';

/** A blob served this long after its last recorded use gets its mtime bumped (one utimes, not per hit). */
const TOUCH_EVERY_MS = 60 * 60 * 1000;

/**
 * What the store holds, by recency of use, with the total bytes: what the size bound evicts from.
 * In memory (lru-cache, least recent at the end); across restarts the order is rebuilt from the
 * files' mtimes, which hits refresh at most once an hour, so start-up needs no state file and no
 * scan before serving: the scan runs in the background.
 */
export class UsageIndex {
  readonly #data: string;
  // No automatic eviction: the bound is applied by the Evictor, which must skip blobs in use.
  readonly #lru = new LRUCache<string, { size: number; touchedAt: number }>({
    maxSize: Number.MAX_SAFE_INTEGER,
    sizeCalculation: (v) => Math.max(1, v.size),
  });

  /** `data`: the data directory (storage/layout.ts). */
  constructor(data: string) {
    this.#data = data;
  }

  get totalBytes(): number {
    return this.#lru.calculatedSize;
  }

  get count(): number {
    return this.#lru.size;
  }

  /** A blob was stored or served. */
  touch(hex: string, size: number): void {
    const now = Date.now();
    const entry = this.#lru.get(hex);
    if (entry && now - entry.touchedAt < TOUCH_EVERY_MS) return;
    this.#lru.set(hex, { size, touchedAt: now });
    if (entry) {
      utimes(blobPath(this.#data, hex), now / 1000, now / 1000).catch(() => {});
    }
  }

  forget(hex: string): void {
    this.#lru.delete(hex);
  }

  /** Least recently used first. */
  *coldest(): Generator<[string, number]> {
    for (const hex of this.#lru.rkeys()) {
      const v = this.#lru.peek(hex);
      if (v) yield [hex, v.size];
    }
  }

  /** Reads what is on disk (oldest mtime first), without overriding what was touched meanwhile. */
  async scan(): Promise<void> {
    const found: { hex: string; size: number; mtime: number }[] = [];
    let prefixes: string[] = [];
    try {
      prefixes = await readdir(blobsDir(this.#data));
    } catch {
      // nothing stored yet
    }
    for (const prefix of prefixes) {
      let names: string[];
      try {
        names = await readdir(blobPrefixDir(this.#data, prefix));
      } catch {
        continue;
      }
      for (const hex of names) {
        try {
          const s = await stat(blobPath(this.#data, hex));
          found.push({ hex, size: s.size, mtime: s.mtimeMs });
        } catch {
          // removed meanwhile
        }
      }
    }
    found.sort((a, b) => a.mtime - b.mtime);
    // Entries touched during the scan are more recent than anything found: re-set them after.
    const touched = [...this.#lru.entries()].reverse();
    for (const f of found) {
      if (!this.#lru.has(f.hex)) this.#lru.set(f.hex, { size: f.size, touchedAt: f.mtime });
    }
    for (const [hex, v] of touched) if (this.#lru.has(hex)) this.#lru.set(hex, v);
  }
}
