/**
 * Offline optimum for a byte cache on a request trace: Belady's rule (on a miss that needs room,
 * evict what is requested again farthest in the future, or never). With objects of different sizes
 * this is the standard heuristic, not a proven optimum; it is the usual yardstick for eviction.
 * Also an LRU simulation on the same trace, to compare the live mirror with its model.
 */
export interface TraceEntry {
  key: string;
  size: number;
}

export interface CacheSim {
  hitBytes: number;
  totalBytes: number;
  byteHitRatio: number;
}

export function belady(trace: TraceEntry[], capacity: number): CacheSim {
  // next[i]: index of the next request for trace[i].key after i.
  const next = new Array<number>(trace.length);
  const seen = new Map<string, number>();
  for (let i = trace.length - 1; i >= 0; i--) {
    const e = trace[i] as TraceEntry;
    next[i] = seen.get(e.key) ?? Number.POSITIVE_INFINITY;
    seen.set(e.key, i);
  }
  const cached = new Map<string, { size: number; nextUse: number }>();
  let used = 0;
  let hitBytes = 0;
  let totalBytes = 0;
  trace.forEach((e, i) => {
    totalBytes += e.size;
    const entry = cached.get(e.key);
    if (entry) {
      hitBytes += e.size;
      entry.nextUse = next[i] as number;
      return;
    }
    if (e.size > capacity) return;
    while (used + e.size > capacity) {
      let victim: string | undefined;
      let farthest = -1;
      for (const [k, v] of cached) {
        if (v.nextUse > farthest) {
          farthest = v.nextUse;
          victim = k;
        }
      }
      // Caching this one is worse than keeping everything cached now: don't.
      if (victim === undefined || farthest < (next[i] as number)) return;
      used -= cached.get(victim)?.size ?? 0;
      cached.delete(victim);
    }
    cached.set(e.key, { size: e.size, nextUse: next[i] as number });
    used += e.size;
  });
  return { hitBytes, totalBytes, byteHitRatio: totalBytes ? hitBytes / totalBytes : 0 };
}

export function lru(trace: TraceEntry[], capacity: number): CacheSim {
  const cached = new Map<string, number>(); // insertion order = recency
  let used = 0;
  let hitBytes = 0;
  let totalBytes = 0;
  for (const e of trace) {
    totalBytes += e.size;
    if (cached.has(e.key)) {
      hitBytes += e.size;
      cached.delete(e.key);
      cached.set(e.key, e.size);
      continue;
    }
    if (e.size > capacity) continue;
    cached.set(e.key, e.size);
    used += e.size;
    for (const [k, size] of cached) {
      if (used <= capacity) break;
      cached.delete(k);
      used -= size;
    }
  }
  return { hitBytes, totalBytes, byteHitRatio: totalBytes ? hitBytes / totalBytes : 0 };
}
