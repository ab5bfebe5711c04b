import { LRUCache } from 'lru-cache';
import type { Logger } from '../observe/logger.js';
import { type Digest, parseDigest } from '../oci/digest.js';
import type { UsageIndex } from './usage-index.js';

/** What the size bound needs of the store it bounds (cache/blob-store.ts), and no more. */
export interface Evictable {
  /** What is stored, with the total bytes, and the policy's next victim. */
  readonly usage: Pick<UsageIndex, 'totalBytes' | 'victim'>;
  /** Whether a blob may go now: not open, pinned or held by hosted content. */
  evictable(hex: string): boolean;
  remove(digest: Digest): Promise<void>;
}

/**
 * The size bound: when the stored bytes exceed it, remove blobs and manifests in the order of the
 * eviction policy (--eviction, cache/eviction/) until they fit again, and no further: a blob removed
 * early is a hit lost. Evicting in batches down to 90 % (until 2026-11-27) gave a lower or equal
 * byte hit ratio in 45 of bench/eviction.ts's 48 cells, up to 16 points lower (docs/benchmarks.md,
 * "Eviction"); one run per store costs a few removals. Never removes one that is being
 * served (open), written (not in the store yet), pinned or held by a hosted repository. A manifest
 * evicted this way is fetched again on its next request, by tag or by digest.
 */
export class Evictor {
  readonly #store: Evictable;
  readonly #maxBytes: number | undefined;
  readonly #log: Logger;
  #running = false;
  evicted = 0;
  evictedBytes = 0;
  /** Blobs stored that were larger than the bound on their own, each time one was (a refetch counts again). */
  tooBig = 0;
  /** The digests already warned about: one warning per digest, not per pull (bounded). */
  readonly #warned = new LRUCache<string, true>({ max: 10_000 });

  constructor(store: Evictable, maxBytes: number | undefined, log: Logger) {
    this.#store = store;
    this.#maxBytes = maxBytes;
    this.#log = log;
  }

  /**
   * A blob was just stored from a fill. One larger than the bound cannot stay: the next eviction
   * run removes it (it is the only way back under the bound), and every later pull fetches it from
   * the upstream again. Nothing breaks, so say it: once per digest in the log, every time in
   * hubcache_blobs_too_big_total. `kept`: pinned or held by hosted content, so it does stay.
   */
  stored(hex: string, size: number, kept: boolean): void {
    if (this.#maxBytes === undefined || size <= this.#maxBytes || kept) return;
    this.tooBig++;
    if (this.#warned.has(hex)) return;
    this.#warned.set(hex, true);
    this.#log.warn(
      { digest: `sha256:${hex}`, size, maxBytes: this.#maxBytes },
      'blob larger than --max-size: it cannot be kept, so every pull fetches it from the upstream again; raise --max-size above its size',
    );
  }

  check(): void {
    if (this.#maxBytes === undefined || this.#running) return;
    if (this.#store.usage.totalBytes <= this.#maxBytes) return;
    this.#running = true;
    this.#run(this.#maxBytes)
      .catch((err: Error) => this.#log.error({ err: err.message }, 'eviction failed'))
      .finally(() => {
        this.#running = false;
      });
  }

  async #run(maxBytes: number): Promise<void> {
    const usage = this.#store.usage;
    const before = usage.totalBytes;
    let removed = 0;
    // Re-read each time: blobs stored while a removal is awaited are part of this run's work.
    while (usage.totalBytes > maxBytes) {
      const victim = usage.victim((h) => this.#store.evictable(h));
      if (victim === undefined) break;
      const [hex, size] = victim;
      await this.#store.remove(parseDigest(`sha256:${hex}`));
      removed++;
      this.evicted++;
      this.evictedBytes += size;
    }
    this.#log.info({ removed, before, after: usage.totalBytes, maxBytes }, 'evicted blobs down to the bound');
  }
}
