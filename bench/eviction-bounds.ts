/**
 * How far an eviction policy could get on the layer trace if it knew the future (issue 18,
 * target 4: ≥ 95 % of Belady at 30/60/90 % of the working set). Each "oracle" below orders blobs by
 * a priority computed from the trace's future, which no live policy has: if even these stay under
 * 95 % of Belady in a cell, no policy working from the past reaches it there. Belady itself is the
 * furthest-next-use rule with bypass (bench/lib/belady.ts). Simulated as the live store runs (every
 * miss stored, then just enough evicted to fit). Prints a table; writes nothing.
 *
 *   npx tsx bench/eviction-bounds.ts
 */
import { GdsfPolicy } from '../src/cache/eviction/gdsf.js';
import { MinHeap } from '../src/cache/eviction/min-heap.js';
import type { EvictionPolicy } from '../src/cache/eviction/policy.js';
import { belady, type TraceEntry } from './lib/belady.js';
import { simulate } from './lib/eviction/simulate.js';
import { layerTrace } from './lib/layer-trace.js';

/** Evicts the lowest priority, each blob's priority computed at its latest request. */
class FuturePriority implements EvictionPolicy {
  readonly #seqs = new Map<string, number>();
  readonly #heap = new MinHeap<{ key: string; priority: number; seq: number }>(
    (a, b) => a.priority < b.priority || (a.priority === b.priority && a.seq < b.seq),
  );
  #seq = 0;
  constructor(readonly priority: (key: string) => number) {}
  insert(key: string): void {
    this.hit(key);
  }
  hit(key: string): void {
    this.#seqs.set(key, ++this.#seq);
    this.#heap.push({ key, priority: this.priority(key), seq: this.#seq });
  }
  remove(key: string): void {
    this.#seqs.delete(key);
  }
  victim(may: (key: string) => boolean): string | undefined {
    for (let top = this.#heap.pop(); top; top = this.#heap.pop()) {
      if (this.#seqs.get(top.key) !== top.seq || !may(top.key)) continue;
      this.#seqs.delete(top.key);
      return top.key;
    }
    return undefined;
  }
}

const trace: TraceEntry[] = layerTrace();
const sizes = new Map(trace.map((e) => [e.key, e.size]));
const workingSet = [...sizes.values()].reduce((a, b) => a + b, 0);
const at = new Map<string, number[]>();
trace.forEach((e, i) => {
  const list = at.get(e.key) ?? [];
  list.push(i);
  at.set(e.key, list);
});
const count = (key: string) => at.get(key)?.length ?? 0;
const lifetimeRate = (key: string) => {
  const list = at.get(key) ?? [0];
  return list.length / (1 + (list[list.length - 1] as number) - (list[0] as number));
};

/** Priorities that need to know which request of a key this is: built fresh for each run. */
function requestIndexed(f: (list: number[], j: number) => number): () => (key: string) => number {
  return () => {
    const seen = new Map<string, number>();
    return (key) => {
      const j = seen.get(key) ?? 0;
      seen.set(key, j + 1);
      return f(at.get(key) ?? [], j);
    };
  };
}

const ORACLES: { name: string; priority: () => (key: string) => number }[] = [
  { name: 'knows each blob’s total request count', priority: () => count },
  { name: 'knows each blob’s request rate over its lifetime', priority: () => lifetimeRate },
  {
    name: '… and when a blob is never asked again',
    priority: requestIndexed((list, j) =>
      j === list.length - 1
        ? -1
        : list.length / (1 + (list[list.length - 1] as number) - (list[0] as number)),
    ),
  },
  ...[1000, 3000, 10_000].map((window) => ({
    name: `knows each blob’s requests in the next ${window.toLocaleString('en')} requests`,
    priority: requestIndexed((list, j) => {
      const now = list[j] as number;
      let n = 0;
      for (let q = j + 1; q < list.length && (list[q] as number) <= now + window; q++) n++;
      return n;
    }),
  })),
];

const SHARES = [0.3, 0.6, 0.9];
const rows: string[][] = [];
const cell = (share: number, make: () => EvictionPolicy) => {
  const capacity = Math.floor(workingSet * share);
  const optimum = belady(trace, capacity).byteHitRatio;
  const ratio = simulate(trace, capacity, make).byteHitRatio;
  return `${((ratio / optimum) * 100).toFixed(1)} %`;
};
rows.push([
  'GDSF from the past only (the default not told the client)',
  ...SHARES.map((s) => cell(s, () => new GdsfPolicy())),
]);
for (const o of ORACLES)
  rows.push([`oracle: ${o.name}`, ...SHARES.map((s) => cell(s, () => new FuturePriority(o.priority())))]);

console.log(
  `\nLayer trace (${trace.length.toLocaleString('en')} requests): byte hit ratio as a share of Belady's\n`,
);
console.log(`| policy | ${SHARES.map((s) => `${s * 100} %`).join(' | ')} |`);
console.log(`|---|${SHARES.map(() => '---').join('|')}|`);
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
