import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { pinsFile, tempPath } from '../storage/layout.js';

/**
 * Pinned blobs (prefetch --pin): the size bound never removes them. Persisted in `<data>/pins.json`
 * (storage/layout.ts), written whole through a temp file, so a crash leaves the old list or the new.
 */
export class Pins {
  readonly #data: string;
  readonly #pinned = new Set<string>();

  constructor(data: string) {
    this.#data = data;
  }

  get file(): string {
    return pinsFile(this.#data);
  }

  async load(): Promise<void> {
    try {
      for (const hex of JSON.parse(await readFile(this.file, 'utf8')) as string[]) this.#pinned.add(hex);
    } catch {
      // no pins yet
    }
  }

  /** Pins these (hex digests; anything else is ignored); the number pinned in all. */
  async pin(hexes: string[]): Promise<number> {
    for (const hex of hexes) if (/^[a-f0-9]{64}$/.test(hex)) this.#pinned.add(hex);
    await this.#save();
    return this.#pinned.size;
  }

  async unpinAll(): Promise<void> {
    this.#pinned.clear();
    await this.#save();
  }

  has(hex: string): boolean {
    return this.#pinned.has(hex);
  }

  async #save(): Promise<void> {
    const temp = tempPath(this.#data, `pins.${randomBytes(4).toString('hex')}`);
    await writeFile(temp, JSON.stringify([...this.#pinned]));
    await rename(temp, this.file);
  }
}
