/**
 * The order in which the size bound (cache/evictor.ts) removes stored blobs and manifests. A policy
 * only orders: the store counts bytes, decides when to evict and how far, and says which blobs may
 * go now (not open, pinned or held by hosted content). The same objects run in the eviction bench
 * (bench/eviction.ts) on request traces, so the figures there are the live code's.
 *
 * The mirror stores every blob it serves on a miss (it streams through its cache), so a policy
 * cannot refuse admission: a blob it would not have admitted is inserted, then chosen first.
 */
export interface EvictionPolicy {
  /** A blob entered the store: stored after a miss, adopted from an upload, or found at start-up. */
  insert(key: string, size: number): void;
  /** A stored blob was served again. Unknown keys are ignored. */
  hit(key: string): void;
  /**
   * `client` (its address) is fetching `key` whole, before the request's insert or hit. Any key,
   * stored or not. Only on a policy that weighs who has a blob already (gdsf.ts given who-fetched.ts):
   * without it the store does not look up clients at all (BlobStore.hearsClients).
   */
  readonly asked?: ((key: string, client: string) => void) | undefined;
  /** A blob left the store for another reason (collected, found corrupt). Unknown keys are ignored. */
  remove(key: string): void;
  /**
   * The next blob to evict among those `may` allows; the policy forgets it, the caller removes it.
   * Undefined when nothing may go.
   */
  victim(may: (key: string) => boolean): string | undefined;
}

/** Builds a policy for a store bounded to `capacity` bytes. */
export type PolicyFactory = (capacity: number) => EvictionPolicy;
