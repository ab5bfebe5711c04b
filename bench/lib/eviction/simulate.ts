import { OversizeFirst } from '../../../src/cache/eviction/oversize-first.js';
import type { PolicyFactory } from '../../../src/cache/eviction/policy.js';
import type { CacheSim, TraceEntry } from '../belady.js';

export interface SimOptions {
  /**
   * Evict down to this share of the capacity once it is exceeded: 1 (the default) evicts just enough
   * after each store, as the live mirror does (cache/evictor.ts); 0.9 is how it evicted until
   * 2026-11-27, in batches.
   */
  lowWater?: number;
  /**
   * Restart before this request: the policy is rebuilt from what is stored, least recently used
   * first, as the live store rebuilds it from the files' mtimes (cache/usage-index.ts scan).
   */
  restartAt?: number;
}

/**
 * A byte-capacity cache driven by an eviction policy, as the live store drives it: every miss is
 * stored (the mirror streams through its cache), then, if the bytes exceed the capacity, victims
 * go until the low-water mark. Byte hit ratio = bytes served from the cache / bytes requested.
 */
export function simulate(
  trace: TraceEntry[],
  capacity: number,
  make: PolicyFactory,
  options: SimOptions = {},
): CacheSim {
  const target = capacity * (options.lowWater ?? 1);
  let policy = new OversizeFirst(make(capacity), capacity);
  const cached = new Map<string, number>(); // key → size, least recently used first
  const all = () => true;
  let used = 0;
  let hitBytes = 0;
  let totalBytes = 0;
  trace.forEach((e, i) => {
    if (i === options.restartAt) {
      policy = new OversizeFirst(make(capacity), capacity);
      for (const [k, size] of cached) policy.insert(k, size);
    }
    totalBytes += e.size;
    // As the blob handler tells the store (api/blobs.ts), before the use is counted.
    if (e.client !== undefined) policy.asked?.(e.key, String(e.client));
    if (cached.has(e.key)) {
      hitBytes += e.size;
      cached.delete(e.key);
      cached.set(e.key, e.size);
      policy.hit(e.key);
      return;
    }
    cached.set(e.key, e.size);
    used += e.size;
    policy.insert(e.key, e.size);
    if (used <= capacity) return;
    while (used > target) {
      const victim = policy.victim(all);
      const size = victim === undefined ? undefined : cached.get(victim);
      if (victim === undefined || size === undefined) throw new Error(`policy chose ${victim}: not stored`);
      used -= size;
      cached.delete(victim);
    }
  });
  return { hitBytes, totalBytes, byteHitRatio: totalBytes ? hitBytes / totalBytes : 0 };
}
