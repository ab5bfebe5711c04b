/**
 * Offline optimum for a byte cache on a request trace: Belady's rule (on a miss that needs room,
 * evict what is requested again farthest in the future, or never). With objects of different sizes
 * this is the standard heuristic, not a proven optimum; it is the usual yardstick for eviction.
 * Also an LRU simulation on the same trace, to compare the live mirror with its model.
 */
import { MinHeap } from '../../src/cache/eviction/min-heap.js';

export interface TraceEntry {
  key: string;
  size: number;
  /** Which client asked, in traces that model a fleet of nodes (only client-aware policies read it). */
  client?: number;
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
  const cached = new Map<string, { size: number; nextUse: number; seq: number }>();
  // Farthest next use on top; among equals (never used again) the one cached first.
  const farthest = new MinHeap<{ key: string; nextUse: number; seq: number }>(
    (a, b) => a.nextUse > b.nextUse || (a.nextUse === b.nextUse && a.seq < b.seq),
  );
  let used = 0;
  let hitBytes = 0;
  let totalBytes = 0;
  let seq = 0;
  trace.forEach((e, i) => {
    totalBytes += e.size;
    const entry = cached.get(e.key);
    const nextUse = next[i] as number;
    if (entry) {
      hitBytes += e.size;
      entry.nextUse = nextUse;
      farthest.push({ key: e.key, nextUse, seq: entry.seq });
      return;
    }
    if (e.size > capacity) return;
    while (used + e.size > capacity) {
      let top = farthest.peek();
      // Drop heap items left behind by a later use of the same key.
      while (top && cached.get(top.key)?.nextUse !== top.nextUse) {
        farthest.pop();
        top = farthest.peek();
      }
      // Caching this one is worse than keeping everything cached now: don't.
      if (top === undefined || top.nextUse < nextUse) return;
      farthest.pop();
      used -= cached.get(top.key)?.size ?? 0;
      cached.delete(top.key);
    }
    seq++;
    cached.set(e.key, { size: e.size, nextUse, seq });
    farthest.push({ key: e.key, nextUse, seq });
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
