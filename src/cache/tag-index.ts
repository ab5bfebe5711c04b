import type { Dirent } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDigest } from '../oci/digest.js';
import { atomicWrite, listDir } from '../storage/files.js';
import {
  manifestMarker,
  manifestsDir,
  type RepositoryTree,
  repositoryDir,
  tagPath,
  tagsDir,
  treeRoot,
} from '../storage/layout.js';
import { LruMap } from './lru-map.js';

export interface TagEntry {
  digest: string;
  mediaType: string;
  /** When the upstream last confirmed this mapping (ms since epoch). */
  checkedAt: number;
}

/**
 * The index replicas share (shared/redis-tags.ts, over Redis): asked before this replica's own
 * files, written through. Declared here, where the tag index lives, so shared/ needs nothing of it.
 */
export interface SharedTagIndex {
  getTag(repository: string, tag: string): Promise<TagEntry | undefined>;
  setTag(repository: string, tag: string, entry: TagEntry): Promise<void>;
  tags(repository: string): Promise<string[]>;
  noteRepository(repository: string): Promise<void>;
  repositories(): Promise<string[]>;
}

/**
 * Which repositories the mirror holds, their tags (tag → digest, with when it was last checked
 * upstream) and the manifests pulled by digest. On disk, beside the blobs, in the reference
 * registry's spirit (`repositories/<name>/_tags/<tag>`, `repositories/<name>/_manifests/<hex>`, see
 * storage/layout.ts), so an operator can see what is cached with `ls`; in memory, an LRU of the
 * entries in use. Hosted repositories keep their tags with one of these over `hosted/`.
 *
 * The index owns its tree: the one walk over it (#walk) lists the repositories, finds what they
 * name for garbage collection, and removes markers of manifests no longer stored.
 */
export class TagIndex {
  readonly #data: string;
  readonly #tree: RepositoryTree;
  readonly #entries = new LruMap<string, TagEntry>({ max: 50_000 });
  readonly #knownManifests = new LruMap<string, true>({ max: 100_000 });

  /** With Redis: the index replicas share (a tag revalidated by one is fresh on all). */
  readonly #shared: SharedTagIndex | undefined;

  constructor(dataDir: string, tree: RepositoryTree = 'repositories', shared?: SharedTagIndex) {
    this.#data = dataDir;
    this.#tree = tree;
    this.#shared = shared;
  }

  /** Replicas share this index (Redis): `peek` never answers. */
  get shared(): boolean {
    return this.#shared !== undefined;
  }

  /**
   * A tag's entry when it is in memory and this index is the only one (no replicas, whose shared
   * index must always be asked): the hit path's synchronous look. Undefined: ask `get`.
   */
  peek(repository: string, tag: string): TagEntry | undefined {
    return this.#shared ? undefined : this.#entries.get(tagKey(repository, tag));
  }

  /** `peek` of one tag, its key joined once (the hit lane asks the same tag on every hit). */
  peekOf(repository: string, tag: string): () => TagEntry | undefined {
    const key = tagKey(repository, tag);
    return () => (this.#shared ? undefined : this.#entries.get(key));
  }

  async get(repository: string, tag: string): Promise<TagEntry | undefined> {
    const key = tagKey(repository, tag);
    if (this.#shared) {
      // Always asked: another replica may have revalidated or moved the tag since.
      const entry = await this.#shared.getTag(repository, tag).catch(() => undefined);
      if (entry) return entry;
    }
    const cached = this.#entries.get(key);
    if (cached) return cached;
    const changes = this.#changes;
    try {
      const entry = JSON.parse(await readFile(this.#tagPath(repository, tag), 'utf8')) as TagEntry;
      if (typeof entry.digest !== 'string' || typeof entry.mediaType !== 'string') return undefined;
      // A write that landed while this read was under way is newer: don't cache over it.
      if (changes === this.#changes && !this.#writes.has(key)) this.#entries.set(key, entry);
      return entry;
    } catch {
      return undefined;
    }
  }

  /**
   * Moves a tag. Writes to one tag are applied one at a time, in call order, and memory follows
   * the disk: the last writer wins both, so a restart serves what was served before it (concurrent
   * pushes of one tag once left memory and disk naming different manifests).
   */
  async set(repository: string, tag: string, entry: TagEntry): Promise<void> {
    await this.#serially(tagKey(repository, tag), async (key) => {
      await this.#shared?.setTag(repository, tag, entry).catch(() => {});
      await atomicWrite(this.#tagPath(repository, tag), JSON.stringify(entry));
      this.#entries.set(key, entry);
    });
  }

  async delete(repository: string, tag: string): Promise<void> {
    await this.#serially(tagKey(repository, tag), async (key) => {
      await rm(this.#tagPath(repository, tag), { force: true });
      this.#entries.delete(key);
    });
  }

  /** Writes per tag, chained: each starts when the one before it (failed or not) is done. */
  readonly #writes = new Map<string, Promise<void>>();
  /** Counts finished writes: a disk read that saw one finish may have read the older content. */
  #changes = 0;

  async #serially(key: string, write: (key: string) => Promise<void>): Promise<void> {
    const mine = (this.#writes.get(key) ?? Promise.resolve()).then(() => write(key));
    const done = mine.then(
      () => {},
      () => {},
    );
    this.#writes.set(key, done);
    try {
      await mine;
    } finally {
      this.#changes++;
      if (this.#writes.get(key) === done) this.#writes.delete(key);
    }
  }

  /** Records that a repository holds a manifest (what _catalog lists). */
  async noteManifest(repository: string, digestHex: string): Promise<void> {
    const key = `${repository}@${digestHex}`;
    if (this.#knownManifests.has(key)) return;
    const file = manifestMarker(this.#data, this.#tree, repository, digestHex);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, '');
    this.#knownManifests.set(key, true);
    await this.#shared?.noteRepository(repository).catch(() => {});
  }

  /** Whether a manifest was served to `repository` by the upstream (noted here). */
  async hasManifest(repository: string, digestHex: string): Promise<boolean> {
    const key = `${repository}@${digestHex}`;
    if (this.#knownManifests.has(key)) return true;
    try {
      await readFile(manifestMarker(this.#data, this.#tree, repository, digestHex));
    } catch {
      return false;
    }
    this.#knownManifests.set(key, true);
    return true;
  }

  /** The manifests noted for `repository` on disk (hex digests, unsorted). */
  async markedManifests(repository: string): Promise<string[]> {
    return listDir(manifestsDir(this.#data, this.#tree, repository));
  }

  /** Repositories holding at least one manifest, sorted (the catalog's order). */
  async repositories(): Promise<string[]> {
    const found: string[] = [];
    await this.#walk(async (name) => {
      found.push(name);
    });
    const shared = this.#shared ? await this.#shared.repositories().catch(() => []) : [];
    return [...new Set([...found, ...shared])].sort();
  }

  /**
   * Every manifest this tree names on disk, tagged or noted (hex digests): what a garbage
   * collection must keep, with what these refer to. Tag files are read from disk, not through the
   * memory or the shared index: a collection is about this data directory.
   */
  async namedManifests(): Promise<Set<string>> {
    const manifests = new Set<string>();
    await this.#walk(async (name) => {
      for (const hex of await this.markedManifests(name)) manifests.add(hex);
      for (const tag of await listDir(tagsDir(this.#data, this.#tree, name))) {
        try {
          const entry = JSON.parse(await readFile(this.#tagPath(name, tag), 'utf8')) as { digest?: string };
          if (typeof entry.digest === 'string') manifests.add(parseDigest(entry.digest).hex);
        } catch {
          // unreadable tag file: it names nothing
        }
      }
    });
    return manifests;
  }

  /**
   * Removes `_manifests/<hex>` markers whose manifest is no longer stored (evicted, or removed by
   * hand): the catalog would list a repository that holds nothing. Folders left empty go with them.
   */
  async removeOrphanMarkers(stored: (hex: string) => Promise<boolean>): Promise<number> {
    let removed = 0;
    await this.#walk(async (name) => {
      const dir = manifestsDir(this.#data, this.#tree, name);
      let hexes: string[];
      try {
        hexes = await readdir(dir);
      } catch {
        return;
      }
      let left = 0;
      for (const hex of hexes) {
        if (await stored(hex)) left++;
        else {
          await rm(manifestMarker(this.#data, this.#tree, name, hex), { force: true });
          removed++;
        }
      }
      if (left === 0) await rm(dir, { recursive: true, force: true });
    }, true);
    return removed;
  }

  /**
   * The one walk over this tree: `visit` for every repository (a folder holding `_`-named
   * entries: `_tags`, `_manifests`, and for hosted ones `_layers`, `_deleted`), depth first. Name
   * components never start with `_`, so every other folder is a namespace or a repository below.
   * With `prune`, a folder below the root that is empty once visited is removed.
   */
  async #walk(visit: (name: string) => Promise<void>, prune = false): Promise<void> {
    const walk = async (name: string): Promise<void> => {
      const dir = name ? repositoryDir(this.#data, this.#tree, name) : treeRoot(this.#data, this.#tree);
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      if (name && entries.some((e) => e.name.startsWith('_'))) await visit(name);
      for (const e of entries) {
        if (e.isDirectory() && !e.name.startsWith('_')) await walk(name ? `${name}/${e.name}` : e.name);
      }
      if (prune && name && (await readdir(dir).catch(() => [dir])).length === 0) {
        await rm(dir, { recursive: true, force: true });
      }
    };
    await walk('');
  }

  /**
   * Whether the index knows this repository at all: a tag or a manifest cached for it (here, or by
   * another replica when shared). A push may not take over such a name (hosted/takeover.ts).
   */
  async knows(repository: string): Promise<boolean> {
    if ((await this.tags(repository)).length > 0) return true;
    try {
      return (await readdir(manifestsDir(this.#data, this.#tree, repository))).length > 0;
    } catch {
      return false;
    }
  }

  /** Tags cached for a repository (here, and by the other replicas when shared), sorted. */
  async tags(repository: string): Promise<string[]> {
    if (this.#shared) {
      const shared = await this.#shared.tags(repository).catch(() => [] as string[]);
      if (shared.length) return shared;
    }
    try {
      return (
        (await readdir(tagsDir(this.#data, this.#tree, repository)))
          // Temp files start with '.', which no tag can (tag grammar: [a-zA-Z0-9_] first).
          .filter((t) => !t.startsWith('.'))
          .sort()
      );
    } catch {
      return [];
    }
  }

  #tagPath(repository: string, tag: string): string {
    return tagPath(this.#data, this.#tree, repository, tag);
  }
}

/** A tag's key in memory and in the write queue. */
function tagKey(repository: string, tag: string): string {
  return `${repository}:${tag}`;
}
