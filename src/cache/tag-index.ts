import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import type { Coordinator } from '../shared/coordinator.js';

export interface TagEntry {
  digest: string;
  mediaType: string;
  /** When the upstream last confirmed this mapping (ms since epoch). */
  checkedAt: number;
}

/**
 * Which repositories the mirror holds, their tags (tag → digest, with when it was last checked
 * upstream) and the manifests pulled by digest. On disk, beside the blobs, in the reference
 * registry's spirit (`repositories/<name>/_tags/<tag>`, `repositories/<name>/_manifests/<hex>`), so an
 * operator can see what is cached with `ls`; in memory, an LRU of the entries in use.
 */
export class TagIndex {
  readonly root: string;
  readonly #entries = new LRUCache<string, TagEntry>({ max: 50_000 });
  readonly #knownManifests = new LRUCache<string, true>({ max: 100_000 });

  /** With Redis: the index replicas share (a tag revalidated by one is fresh on all). */
  readonly #shared: Coordinator | undefined;

  constructor(dataDir: string, folder = 'repositories', shared?: Coordinator) {
    this.root = path.join(dataDir, folder);
    this.#shared = shared;
  }

  async get(repository: string, tag: string): Promise<TagEntry | undefined> {
    const key = `${repository}:${tag}`;
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
    await this.#serially(`${repository}:${tag}`, async (key) => {
      await this.#shared?.setTag(repository, tag, entry).catch(() => {});
      await atomicWrite(this.#tagPath(repository, tag), JSON.stringify(entry));
      this.#entries.set(key, entry);
    });
  }

  async delete(repository: string, tag: string): Promise<void> {
    await this.#serially(`${repository}:${tag}`, async (key) => {
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
    const file = path.join(this.root, repository, '_manifests', digestHex);
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
      await readFile(path.join(this.root, repository, '_manifests', digestHex));
    } catch {
      return false;
    }
    this.#knownManifests.set(key, true);
    return true;
  }

  /** Repositories holding at least one manifest, sorted (the catalog's order). */
  async repositories(): Promise<string[]> {
    const found: string[] = [];
    const walk = async (dir: string, prefix: string): Promise<void> => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      // `_tags`, `_manifests` (and, for hosted repositories, `_layers`): a repository's own folders.
      if (entries.some((e) => e.name.startsWith('_'))) found.push(prefix);
      for (const e of entries) {
        if (e.isDirectory() && !e.name.startsWith('_')) {
          await walk(path.join(dir, e.name), prefix ? `${prefix}/${e.name}` : e.name);
        }
      }
    };
    await walk(this.root, '');
    const shared = this.#shared ? await this.#shared.repositories().catch(() => []) : [];
    return [...new Set([...found.filter(Boolean), ...shared])].sort();
  }

  /**
   * Whether the index knows this repository at all: a tag or a manifest cached for it (here, or by
   * another replica when shared). A push may not take over such a name (hosted/takeover.ts).
   */
  async knows(repository: string): Promise<boolean> {
    if ((await this.tags(repository)).length > 0) return true;
    try {
      return (await readdir(path.join(this.root, repository, '_manifests'))).length > 0;
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
        (await readdir(path.join(this.root, repository, '_tags')))
          // Temp files start with '.', which no tag can (tag grammar: [a-zA-Z0-9_] first).
          .filter((t) => !t.startsWith('.'))
          .sort()
      );
    } catch {
      return [];
    }
  }

  #tagPath(repository: string, tag: string): string {
    return path.join(this.root, repository, '_tags', tag);
  }
}

async function atomicWrite(file: string, content: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(4).toString('hex')}`);
  try {
    await writeFile(temp, content);
    await rename(temp, file);
  } catch (err) {
    // A full disk may leave a partial temp file: it must not stay behind.
    await rm(temp, { force: true }).catch(() => {});
    throw err;
  }
}
