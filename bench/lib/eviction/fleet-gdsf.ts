import { MinHeap } from '../../../src/cache/eviction/min-heap.js';
import type { EvictionPolicy } from '../../../src/cache/eviction/policy.js';

/** A policy that is told which client asked for each blob (bench/lib/eviction/simulate.ts). */
export interface ClientAware {
  /** `client` asked for `key`; called just before the request's insert or hit. */
  asked(key: string, client: number): void;
}

/** Fewer clients than this and the rule is off: one address may be a whole fleet behind NAT. */
const MIN_CLIENTS = 3;

interface Entry {
  weight: number;
  frequency: number;
  seq: number;
}

/**
 * The default GDSF (src/cache/eviction/gdsf.ts: cost size^1.1, uses counted up to 5) told which
 * client asked: a blob that every client seen so far has fetched goes first, its priority falling to
 * L as a newcomer's would. Nodes keep what they pull, so such a blob is asked for again only by a new
 * node or by one that removed it. Off while fewer than 3 clients were seen. Not live: it measures
 * what knowing the client is worth (docs/benchmarks.md, "Eviction"). Who fetched what is kept in
 * full here; a live one would need it bounded.
 */
export class FleetGdsfPolicy implements EvictionPolicy, ClientAware {
  readonly #entries = new Map<string, Entry>();
  readonly #heap = new MinHeap<{ key: string; priority: number; seq: number }>(
    (a, b) => a.priority < b.priority || (a.priority === b.priority && a.seq < b.seq),
  );
  readonly #fetchedBy = new Map<string, Set<number>>();
  readonly #clients = new Set<number>();
  #inflation = 0;
  #seq = 0;

  asked(key: string, client: number): void {
    this.#clients.add(client);
    const by = this.#fetchedBy.get(key) ?? new Set<number>();
    by.add(client);
    this.#fetchedBy.set(key, by);
  }

  insert(key: string, size: number): void {
    if (this.#entries.has(key)) {
      this.hit(key);
      return;
    }
    const e = { weight: Math.max(1, size) ** 0.1, frequency: 1, seq: 0 };
    this.#entries.set(key, e);
    this.#use(key, e);
  }

  hit(key: string): void {
    const e = this.#entries.get(key);
    if (!e) return;
    e.frequency = Math.min(e.frequency + 1, 5);
    this.#use(key, e);
  }

  remove(key: string): void {
    this.#entries.delete(key);
  }

  victim(may: (key: string) => boolean): string | undefined {
    const passed: { key: string; priority: number; seq: number }[] = [];
    let found: string | undefined;
    for (let top = this.#heap.pop(); top; top = this.#heap.pop()) {
      if (this.#entries.get(top.key)?.seq !== top.seq) continue;
      if (!may(top.key)) {
        passed.push(top);
        continue;
      }
      this.#inflation = top.priority;
      this.#entries.delete(top.key);
      found = top.key;
      break;
    }
    for (const item of passed) this.#heap.push(item);
    return found;
  }

  #use(key: string, e: Entry): void {
    const everyone =
      this.#clients.size >= MIN_CLIENTS && (this.#fetchedBy.get(key)?.size ?? 0) >= this.#clients.size;
    const priority = this.#inflation + (everyone ? 0 : e.frequency * e.weight);
    e.seq = ++this.#seq;
    this.#heap.push({ key, priority, seq: e.seq });
  }
}
