import { readFile } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import { parseDigest } from '../oci/digest.js';
import { manifestReferences } from '../oci/manifest.js';
import type { BlobStore } from './blob-store.js';
import { LruMap } from './lru-map.js';
import type { TagIndex } from './tag-index.js';

/**
 * Which mirrored names are known to have which content (spec: content belongs to a repository).
 * The store is one and deduplicated, so a blob pulled for `a/x` is on disk for every name; it is
 * served under `b/y` only when `b/y` is known to have it: a manifest served for `b/y` lists it, the
 * upstream served it under `b/y`, or the upstream answered a HEAD for it under `b/y` (asked once,
 * remembered). In memory, bounded; after a restart (or once forgotten) a name's records on disk
 * (`repositories/<name>/_manifests`, `_tags`) are read again before the upstream is asked.
 */
export class KnownContent {
  /** `<key>@<hex>` → whether that name has it (false: the upstream said no, remembered a while). */
  readonly #known = new LruMap<string, boolean>({ max: 200_000 });
  readonly #denied = new LRUCache<string, true>({ max: 10_000, ttl: 10 * 60_000 });
  /** Names whose records were read recently: not read again for every unknown digest asked under them. */
  readonly #read = new LRUCache<string, true>({ max: 1_000, ttl: 10 * 60_000 });
  readonly #store: BlobStore;
  readonly #tags: TagIndex;

  constructor(store: BlobStore, tags: TagIndex) {
    this.#store = store;
    this.#tags = tags;
  }

  /** The hit path's check: in memory only. */
  has(key: string, hex: string): boolean {
    return this.#known.get(`${key}@${hex}`) === true;
  }

  /** The upstream said `key` does not have it (recently): answer 404 without asking again. */
  denied(key: string, hex: string): boolean {
    return this.#denied.has(`${key}@${hex}`);
  }

  note(key: string, hex: string): void {
    this.#known.set(`${key}@${hex}`, true);
    this.#denied.delete(`${key}@${hex}`);
  }

  deny(key: string, hex: string): void {
    this.#denied.set(`${key}@${hex}`, true);
  }

  /** A manifest served for `key`: it and everything it refers to are that name's. */
  noteManifest(key: string, hex: string, body: Buffer): void {
    // `#m`: its references are noted (the manifest itself may be known as an index's entry only).
    if (this.#known.get(`${key}@${hex}#m`)) return;
    for (const ref of manifestReferences(body)) this.note(key, ref);
    this.note(key, hex);
    this.#known.set(`${key}@${hex}#m`, true);
  }

  /** Reads `key`'s records on disk into memory; true when they name `hex`. */
  async fromRecords(key: string, hex: string): Promise<boolean> {
    if (this.#read.has(key)) return false;
    this.#read.set(key, true);
    const manifests = new Set(await this.#tags.markedManifests(key));
    for (const tag of await this.#tags.tags(key)) {
      const entry = await this.#tags.get(key, tag);
      if (entry) manifests.add(entry.digest.replace(/^sha256:/, ''));
    }
    for (const m of manifests) {
      if (!/^[a-f0-9]{64}$/.test(m)) continue;
      // From disk, not through the store: reading records is not a use for the LRU.
      const body = await readFile(this.#store.pathOf(parseDigest(`sha256:${m}`))).catch(() => undefined);
      if (body) this.noteManifest(key, m, body);
      else this.note(key, m);
    }
    return this.has(key, hex);
  }
}
