import { GdsfPolicy } from '../../../src/cache/eviction/gdsf.js';
import type { EvictionPolicy } from '../../../src/cache/eviction/policy.js';

/** A policy that is told which client asked for each blob (bench/lib/eviction/simulate.ts). */
export interface ClientAware {
  /** `client` asked for `key`; called just before the request's insert or hit. */
  asked(key: string, client: number): void;
}

/** Fewer clients than this and the rule is off: one address may be a whole fleet behind NAT. */
const MIN_CLIENTS = 3;

/**
 * The default GDSF (src/cache/eviction/gdsf.ts: cost size^1.1, uses counted up to 5) told which
 * client asked: a blob that every client seen so far has fetched goes first, its priority falling to
 * L as a newcomer's would. Nodes keep what they pull, so such a blob is asked for again only by a new
 * node or by one that removed it. Off while fewer than 3 clients were seen. Not live: it measures
 * what knowing the client is worth (docs/benchmarks.md, "Eviction"). Who fetched what is kept in
 * full here, evicted blobs included; a live one would need it bounded.
 */
export class FleetGdsfPolicy implements EvictionPolicy, ClientAware {
  readonly #fetchedBy = new Map<string, Set<number>>();
  readonly #clients = new Set<number>();
  readonly #gdsf = new GdsfPolicy({ first: (key) => this.#everyoneFetched(key) });

  asked(key: string, client: number): void {
    this.#clients.add(client);
    const by = this.#fetchedBy.get(key) ?? new Set<number>();
    by.add(client);
    this.#fetchedBy.set(key, by);
  }

  insert(key: string, size: number): void {
    this.#gdsf.insert(key, size);
  }

  hit(key: string): void {
    this.#gdsf.hit(key);
  }

  remove(key: string): void {
    this.#gdsf.remove(key);
  }

  victim(may: (key: string) => boolean): string | undefined {
    return this.#gdsf.victim(may);
  }

  #everyoneFetched(key: string): boolean {
    return this.#clients.size >= MIN_CLIENTS && (this.#fetchedBy.get(key)?.size ?? 0) >= this.#clients.size;
  }
}
