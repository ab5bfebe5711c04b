import { mkdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LruMap } from '../cache/lru-map.js';
import { listDir } from '../storage/files.js';
import { layerLink, layersDir } from '../storage/layout.js';

/**
 * Which blobs each hosted repository answers for (spec "Pulling Blobs": a blob not in the
 * repository MUST 404): its links, `hosted/<name>/_layers/<hex>` (uploaded, mounted, or named by a
 * manifest pushed to it), and what its manifests refer to. Read from disk once per repository
 * into memory, so a blob hit stays a lookup.
 */
export class BlobLinks {
  readonly #data: string;
  /** What a repository's manifests refer to (repositories pushed before manifests linked their blobs). */
  readonly #referenced: (name: string) => Promise<Iterable<string>>;
  /** Whether `name` is a hosted repository: only those keep their content in memory. */
  readonly #isRepository: (name: string) => boolean;
  /** Links written recently: a link is refreshed (mount, upload) at most this often. */
  readonly #linked = new LruMap<string, true>({ max: 100_000, ttl: 10 * 60_000 });
  /** Per repository, the blobs it answers for (hex), read from disk on first use. */
  readonly #content = new Map<string, Set<string>>();
  readonly #loading = new Map<string, Promise<Set<string>>>();

  constructor(
    data: string,
    referenced: (name: string) => Promise<Iterable<string>>,
    isRepository: (name: string) => boolean,
  ) {
    this.#data = data;
    this.#referenced = referenced;
    this.#isRepository = isRepository;
  }

  /** Links a blob into `name` (or refreshes its link's mtime: an upload's link expires unused). */
  async link(name: string, hex: string): Promise<void> {
    const content = await this.contentOf(name);
    const key = `${name}@${hex}`;
    if (this.#linked.has(key)) {
      content.add(hex);
      return;
    }
    const file = layerLink(this.#data, name, hex);
    const now = new Date();
    try {
      await utimes(file, now, now);
    } catch {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, '');
    }
    content.add(hex);
    this.#linked.set(key, true);
  }

  async has(name: string, hex: string): Promise<boolean> {
    const content = this.#content.get(name) ?? (await this.contentOf(name));
    return content.has(hex);
  }

  async unlink(name: string, hex: string): Promise<void> {
    this.#linked.delete(`${name}@${hex}`);
    (await this.contentOf(name)).delete(hex);
    await rm(layerLink(this.#data, name, hex), { force: true });
  }

  /** The blobs `name` answers for: its links, and what its manifests refer to. */
  async contentOf(name: string): Promise<Set<string>> {
    const known = this.#content.get(name);
    if (known) return known;
    let loading = this.#loading.get(name);
    if (!loading) {
      loading = (async () => {
        const content = new Set(await listDir(layersDir(this.#data, name)));
        for (const hex of await this.#referenced(name)) content.add(hex);
        if (this.#isRepository(name)) this.#content.set(name, content);
        this.#loading.delete(name);
        return content;
      })();
      this.#loading.set(name, loading);
    }
    return loading;
  }

  /**
   * `name`'s links: each one in `held` or younger than `cutoff` (ms since epoch) is added to
   * `held`; an older one nothing holds (an abandoned push) is removed. No cutoff: all are held.
   */
  async holdOrExpire(name: string, held: Set<string>, cutoff: number | undefined): Promise<void> {
    for (const hex of await listDir(layersDir(this.#data, name))) {
      if (held.has(hex) || cutoff === undefined) {
        held.add(hex);
        continue;
      }
      const mtime = await stat(layerLink(this.#data, name, hex)).then(
        (s) => s.mtimeMs,
        () => 0,
      );
      if (mtime > cutoff) held.add(hex);
      else {
        this.#linked.delete(`${name}@${hex}`);
        this.#content.get(name)?.delete(hex);
        await rm(layerLink(this.#data, name, hex), { force: true });
      }
    }
  }

  /** `name`'s links (hex), as on disk: uploaded, mounted, or named by a manifest pushed to it. */
  async linksOf(name: string): Promise<string[]> {
    return listDir(layersDir(this.#data, name));
  }

  /** A repository was dropped (or its manifests changed under it): its content is read again. */
  forget(name: string): void {
    this.#content.delete(name);
  }
}
