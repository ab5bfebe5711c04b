import { LRUCache } from 'lru-cache';
import type { Digest } from '../oci/digest.js';

/**
 * Digests remembered per kind. Each entry is one "yes" a push may still rely on; past this the
 * oldest are forgotten (that push then uploads the blob, or its manifest PUT is refused). 10,000 is
 * 250 pushes at once of 40-layer images; an entry costs about 200 bytes.
 */
export const MAX_HEAD_PROMISES = 10_000;

/**
 * Blobs one manifest PUT may fetch from the upstream. Most images have fewer than 16 layers, and
 * one with more completes over retries (the blobs fetched by one PUT are stored for the next);
 * 16 GETs at most keep one PUT from becoming a burst of upstream requests (Docker Hub answers
 * bursts with 429, for every client of this mirror).
 */
export const MAX_UPSTREAM_FETCHES_PER_MANIFEST = 16;

/**
 * A blob HEAD is how a push asks "do you have it?", and a client that hears yes skips the upload:
 * the yes must still hold when the manifest arrives. Kept in memory only, for a while: a read must
 * not change what is retained on disk or across a restart (a link file written by an anonymous
 * HEAD once pinned any blob for good).
 *
 * Two kinds of yes. A stored blob: the garbage collector and the size bound keep it for `holdMs`
 * (the GC grace, which is what an upload's own link gets). A blob the upstream has, for a name not
 * hosted yet (a first push HEADs through the mirror path): a manifest PUT to that name may fetch
 * it, for `upstreamMs` (an upload's idle expiry: a push slower than that is over anyway), and no
 * digest that was not confirmed so is ever fetched.
 */
export class HeadPromises {
  readonly #stored: LRUCache<string, true> | undefined;
  readonly #upstream: LRUCache<string, true> | undefined;

  constructor(holdMs: number, upstreamMs: number) {
    // A zero TTL means "no expiry" to lru-cache: zero here means "no promise".
    this.#stored = holdMs > 0 ? new LRUCache({ max: MAX_HEAD_PROMISES, ttl: holdMs }) : undefined;
    this.#upstream = upstreamMs > 0 ? new LRUCache({ max: MAX_HEAD_PROMISES, ttl: upstreamMs }) : undefined;
  }

  /** A HEAD answered yes from the store. */
  storedConfirmed(hex: string): void {
    this.#stored?.set(hex, true);
  }

  /** Whether a HEAD's yes still holds this stored blob. */
  holds(hex: string): boolean {
    return this.#stored?.has(hex) ?? false;
  }

  /** The upstream answered yes to a HEAD of `hex` under `upstreamName`. */
  upstreamConfirmed(upstreamName: string, hex: string): void {
    this.#upstream?.set(`${upstreamName}@${hex}`, true);
  }

  /**
   * Which of a manifest's missing blobs to fetch from the upstream (`upstreamName`): none when one
   * of them was never confirmed there (the PUT fails whatever is fetched), else at most
   * MAX_UPSTREAM_FETCHES_PER_MANIFEST of them.
   */
  fetchable(upstreamName: string, missing: Digest[]): Digest[] {
    if (!missing.every((d) => this.#upstream?.has(`${upstreamName}@${d.hex}`))) return [];
    return missing.slice(0, MAX_UPSTREAM_FETCHES_PER_MANIFEST);
  }
}
