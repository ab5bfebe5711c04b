import type { Logger } from '../observe/logger.js';
import { type Digest, parseDigest } from '../oci/digest.js';
import type { UsageIndex } from './usage-index.js';

/** What the size bound needs of the store it bounds (cache/blob-store.ts), and no more. */
export interface Evictable {
  /** What is stored, by recency, with the total bytes. */
  readonly usage: Pick<UsageIndex, 'totalBytes' | 'coldest'>;
  /** Whether a blob may go now: not open, pinned or held by hosted content. */
  evictable(hex: string): boolean;
  remove(digest: Digest): Promise<void>;
}

/** Evict down to this share of the bound, so one eviction run makes room for a while. */
const LOW_WATER = 0.9;

/**
 * The size bound: when the stored bytes exceed it, remove least recently used blobs and manifests
 * down to the low-water mark, never one that is being served (open), written (not in the store
 * yet), pinned or held by a hosted repository. A manifest evicted this way is fetched again on
 * its next request, by tag or by digest.
 */
export class Evictor {
  readonly #store: Evictable;
  readonly #maxBytes: number | undefined;
  readonly #log: Logger;
  #running = false;
  evicted = 0;
  evictedBytes = 0;

  constructor(store: Evictable, maxBytes: number | undefined, log: Logger) {
    this.#store = store;
    this.#maxBytes = maxBytes;
    this.#log = log;
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
    const target = Math.floor(maxBytes * LOW_WATER);
    const usage = this.#store.usage;
    const before = usage.totalBytes;
    let removed = 0;
    for (const [hex, size] of [...usage.coldest()]) {
      if (usage.totalBytes <= target) break;
      if (!this.#store.evictable(hex)) continue;
      await this.#store.remove(parseDigest(`sha256:${hex}`));
      removed++;
      this.evicted++;
      this.evictedBytes += size;
    }
    this.#log.info(
      { removed, before, after: usage.totalBytes, maxBytes },
      'evicted least recently used blobs',
    );
  }
}
