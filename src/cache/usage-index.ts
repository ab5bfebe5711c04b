import { readdir, stat, utimes } from 'node:fs/promises';
import { blobPath, blobPrefixDir, blobsDir } from '../storage/layout.js';
import { LruPolicy } from './eviction/lru.js';
import type { EvictionPolicy } from './eviction/policy.js';

/** A blob served this long after its last recorded use gets its mtime bumped (one utimes, not per hit). */
const TOUCH_EVERY_MS = 60 * 60 * 1000;

/**
 * What the store holds, with the total bytes, and every use told to the eviction policy, which
 * orders what the size bound evicts (cache/eviction/). Across restarts the files' mtimes, which
 * hits refresh at most once an hour, give the order back, least recently used first, so start-up
 * needs no state file and no scan before serving: the scan runs in the background.
 */
export class UsageIndex {
  readonly #data: string;
  readonly #policy: EvictionPolicy;
  readonly #entries = new Map<string, { size: number; touchedAt: number }>();
  #totalBytes = 0;

  /** `data`: the data directory (storage/layout.ts). */
  constructor(data: string, policy: EvictionPolicy = new LruPolicy()) {
    this.#data = data;
    this.#policy = policy;
  }

  get totalBytes(): number {
    return this.#totalBytes;
  }

  get count(): number {
    return this.#entries.size;
  }

  /** A blob was stored or served (`counted`: false when this request was already told). */
  touch(hex: string, size: number, counted = true): void {
    const now = Date.now();
    const entry = this.#entries.get(hex);
    if (!entry) {
      this.#add(hex, size, now);
      this.#policy.insert(hex, size);
      return;
    }
    if (counted) this.#policy.hit(hex);
    if (now - entry.touchedAt < TOUCH_EVERY_MS) return;
    entry.touchedAt = now;
    utimes(blobPath(this.#data, hex), now / 1000, now / 1000).catch(() => {});
  }

  /** Whether the policy weighs which clients fetched a blob (`asked` does something). */
  get hearsClients(): boolean {
    return this.#policy.asked !== undefined;
  }

  /** `client` is fetching this blob whole (stored or not): told before its use (cache/eviction/policy.ts). */
  asked(hex: string, client: string): void {
    this.#policy.asked?.(hex, client);
  }

  forget(hex: string): void {
    const entry = this.#entries.get(hex);
    if (!entry) return;
    this.#entries.delete(hex);
    this.#totalBytes -= entry.size;
    this.#policy.remove(hex);
  }

  /** The next blob the size bound should remove among those `may` allows, with its size (the policy forgets it). */
  victim(may: (hex: string) => boolean): [string, number] | undefined {
    const hex = this.#policy.victim(may);
    return hex === undefined ? undefined : [hex, this.#entries.get(hex)?.size ?? 0];
  }

  #add(hex: string, size: number, touchedAt: number): void {
    this.#entries.set(hex, { size, touchedAt });
    this.#totalBytes += size;
  }

  /** Reads what is on disk (oldest mtime first), without overriding what was used meanwhile. */
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
    // Blobs used during the scan are more recent than anything found: used again after it.
    const used = [...this.#entries.keys()];
    for (const f of found) {
      if (this.#entries.has(f.hex)) continue;
      this.#add(f.hex, f.size, f.mtime);
      this.#policy.insert(f.hex, f.size);
    }
    for (const hex of used) if (this.#entries.has(hex)) this.#policy.hit(hex);
  }
}
