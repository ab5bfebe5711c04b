import { createHash, type Hash, randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { constants } from 'node:fs';
import {
  type FileHandle,
  mkdir,
  open,
  readFile,
  rename,
  rm,
  stat,
  statfs,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../observe/logger.js';
import type { Digest } from '../oci/digest.js';
import { blobPath, blobsDir, pinsFile, tempDir, tempPath } from '../storage/layout.js';
import { Evictor } from './evictor.js';
import { UsageIndex } from './usage-index.js';

/**
 * Blobs up to this size are served from memory after their first read (manifests, configs, small
 * and medium layers), within the memory budget: one write of a Buffer instead of open, fstat and
 * chunked file reads measured several times faster for 1 KiB to 4 MiB blobs under concurrency.
 */
export const SMALL_BLOB_BYTES = 8 * 1024 * 1024;

export class DigestMismatchError extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
    readonly size: number,
  ) {
    super(`content does not match its digest: expected ${expected}, got ${actual} (${size} bytes)`);
    this.name = 'DigestMismatchError';
  }
}

export class SizeMismatchError extends Error {
  constructor(
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`content length ${actual} does not match the announced ${expected}`);
    this.name = 'SizeMismatchError';
  }
}

/**
 * Content-addressed files: `<data>/blobs/sha256/<2 hex>/<hex>` (storage/layout.ts), the layout the
 * reference registry uses under docker/registry/v2/blobs. Everything lands in `<data>/tmp` first and is renamed into
 * place only after its sha256 and length were checked, so a file at a digest path is always right.
 * Files are immutable, which makes the size and small-body caches safe without invalidation.
 */
export class BlobStore {
  readonly root: string;
  readonly tmpDir: string;
  readonly usage: UsageIndex;
  readonly #sizes = new LRUCache<string, number>({ max: 100_000 });
  readonly #small: LRUCache<string, Buffer>;
  /** Open file handles per blob: the size bound never removes a blob being served. */
  readonly #inUse = new Map<string, number>();
  readonly #evictor: Evictor;
  readonly #minFreeBytes: number;
  #free: { bytes: number; at: number } | undefined;

  constructor(
    root: string,
    memoryBytes: number,
    maxBytes: number | undefined,
    minFreeBytes: number,
    log: Logger,
  ) {
    this.#minFreeBytes = minFreeBytes;
    this.root = root;
    this.tmpDir = tempDir(root);
    this.#small = new LRUCache<string, Buffer>({
      maxSize: Math.max(1, memoryBytes),
      sizeCalculation: (b) => Math.max(1, b.length),
    });
    this.usage = new UsageIndex(root);
    this.#evictor = new Evictor(this, maxBytes, log);
  }

  async init(): Promise<void> {
    await mkdir(blobsDir(this.root), { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
    await this.loadPins();
  }

  /** Background start-up work: learn what is stored (for the size bound), then apply the bound. */
  async scan(): Promise<void> {
    await this.usage.scan();
    this.#evictor.check();
  }

  /**
   * Whether `size` more bytes fit while leaving the configured free space: a full disk must turn
   * misses into uncached pass-through, not into failed pulls. statfs at most once a second on the
   * request path; a running fill asks with `maxAgeMs` 0, since its own writes move the answer.
   */
  async hasRoomFor(size: number, maxAgeMs = 1000): Promise<boolean> {
    const now = Date.now();
    if (!this.#free || now - this.#free.at > maxAgeMs) {
      try {
        const s = await statfs(this.root);
        this.#free = { bytes: s.bavail * s.bsize, at: now };
      } catch {
        return true; // cannot tell: try, the write path fails cleanly if it must
      }
    }
    return this.#free.bytes - size >= this.#minFreeBytes;
  }

  /**
   * Bytes written outside the store's own writers (uploads, as they stream): counted off the last
   * statfs until the next one, so a fast upload cannot outrun the once-a-second check.
   */
  noteWritten(bytes: number): void {
    if (this.#free) this.#free.bytes -= bytes;
  }

  /** A write failed: after ENOSPC, treat the disk as full until the next statfs says otherwise. */
  noteWriteFailure(err: unknown): void {
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') this.#free = { bytes: 0, at: Date.now() };
  }

  /** Blobs and bytes removed by the size bound since start. */
  get evictions(): { count: number; bytes: number } {
    return { count: this.#evictor.evicted, bytes: this.#evictor.evictedBytes };
  }

  /** Pinned blobs (prefetch --pin): the size bound never removes them. Persisted in pins.json. */
  readonly #pinned = new Set<string>();

  get pinsFile(): string {
    return pinsFile(this.root);
  }

  async loadPins(): Promise<void> {
    try {
      for (const hex of JSON.parse(await readFile(this.pinsFile, 'utf8')) as string[]) this.#pinned.add(hex);
    } catch {
      // no pins yet
    }
  }

  async pin(hexes: string[]): Promise<number> {
    for (const hex of hexes) if (/^[a-f0-9]{64}$/.test(hex)) this.#pinned.add(hex);
    await this.#savePins();
    return this.#pinned.size;
  }

  async unpinAll(): Promise<void> {
    this.#pinned.clear();
    await this.#savePins();
  }

  isPinned(hex: string): boolean {
    return this.#pinned.has(hex);
  }

  /**
   * Content the size bound must never remove besides pins: hosted repositories' blobs, and blobs a
   * push was told are here. Set by the owner of that knowledge (the Mirror), asked by the evictor
   * through `evictable` (garbage collection asks hosted content itself: cache/collect.ts).
   */
  keep: (hex: string) => boolean = () => false;

  /** Whether eviction may remove this blob now. */
  evictable(hex: string): boolean {
    return !this.inUse(hex) && !this.isPinned(hex) && !this.keep(hex);
  }

  async #savePins(): Promise<void> {
    const temp = tempPath(this.root, `pins.${randomBytes(4).toString('hex')}`);
    await writeFile(temp, JSON.stringify([...this.#pinned]));
    await rename(temp, this.pinsFile);
  }

  inUse(hex: string): boolean {
    return (this.#inUse.get(hex) ?? 0) > 0;
  }

  /** A blob was stored or used: recency for the size bound, and maybe time to evict. */
  #used(hex: string, size: number, stored = false): void {
    this.usage.touch(hex, size);
    if (stored) this.#evictor.check();
  }

  pathOf(digest: Digest): string {
    return blobPath(this.root, digest.hex);
  }

  /** Size of a stored blob, or undefined when it is not stored. */
  async size(digest: Digest): Promise<number | undefined> {
    const known = this.#sizes.get(digest.hex);
    if (known !== undefined) {
      this.#used(digest.hex, known);
      return known;
    }
    try {
      const s = await stat(this.pathOf(digest));
      this.#sizes.set(digest.hex, s.size);
      this.#used(digest.hex, s.size);
      return s.size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Reads a stored blob whole (manifests, small blobs); undefined when absent. */
  async read(digest: Digest): Promise<Buffer | undefined> {
    const cached = this.#small.get(digest.hex);
    if (cached) {
      this.#used(digest.hex, cached.length);
      return cached;
    }
    try {
      const data = await readFile(this.pathOf(digest));
      this.#sizes.set(digest.hex, data.length);
      this.#used(digest.hex, data.length);
      if (data.length <= SMALL_BLOB_BYTES) this.#small.set(digest.hex, data);
      return data;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Opens a stored blob for streaming; undefined when absent. */
  async open(digest: Digest): Promise<{ handle: FileHandle; size: number } | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(this.pathOf(digest), constants.O_RDONLY);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.#sizes.delete(digest.hex);
        return undefined;
      }
      throw err;
    }
    this.#inUse.set(digest.hex, (this.#inUse.get(digest.hex) ?? 0) + 1);
    // FileHandle is an EventEmitter at run time ('close' since Node 15.4); its typings don't say so.
    (handle as unknown as EventEmitter).once('close', () => {
      const n = (this.#inUse.get(digest.hex) ?? 1) - 1;
      if (n > 0) this.#inUse.set(digest.hex, n);
      else this.#inUse.delete(digest.hex);
    });
    const known = this.#sizes.get(digest.hex);
    if (known !== undefined) return { handle, size: known };
    const s = await handle.stat();
    this.#sizes.set(digest.hex, s.size);
    return { handle, size: s.size };
  }

  /** Verifies and stores a whole body (manifests): temp file, then rename. */
  async put(digest: Digest, data: Buffer): Promise<void> {
    const writer = await this.createWriter(digest);
    try {
      await writer.write(data);
      await writer.commit(data.length);
    } catch (err) {
      await writer.abort();
      throw err;
    }
    if (data.length <= SMALL_BLOB_BYTES) this.#small.set(digest.hex, data);
  }

  async createWriter(digest: Digest): Promise<BlobWriter> {
    const temp = tempPath(this.root, `${digest.hex}.${randomBytes(6).toString('hex')}`);
    const handle = await open(temp, 'w+');
    return new BlobWriter(this, digest, temp, handle, (size) => {
      this.#sizes.set(digest.hex, size);
      this.#used(digest.hex, size, true);
    });
  }

  /**
   * Moves an already verified file (a finished upload) into place under its digest. When the blob
   * is already stored (deduplication), the file is dropped instead.
   */
  async adopt(tempPath: string, digest: Digest, size: number): Promise<void> {
    if ((await this.size(digest)) !== undefined) {
      await rm(tempPath, { force: true });
      return;
    }
    const final = this.pathOf(digest);
    await mkdir(path.dirname(final), { recursive: true });
    await rename(tempPath, final);
    this.#sizes.set(digest.hex, size);
    this.#used(digest.hex, size, true);
  }

  /** Drops a blob from the store (a stored file found corrupt, or eviction). */
  async remove(digest: Digest): Promise<void> {
    this.#sizes.delete(digest.hex);
    this.#small.delete(digest.hex);
    this.usage.forget(digest.hex);
    await rm(this.pathOf(digest), { force: true });
  }
}

/**
 * One blob being written: hashed as it is written; `commit` checks digest and length, then makes
 * it durable and renames it into place. Readers may open `tempPath` while it grows.
 */
export class BlobWriter {
  readonly tempPath: string;
  readonly #store: BlobStore;
  readonly #digest: Digest;
  readonly #handle: FileHandle;
  readonly #hash: Hash = createHash('sha256');
  readonly #onCommitted: (size: number) => void;
  #written = 0;
  #closed = false;

  constructor(
    store: BlobStore,
    digest: Digest,
    tempPath: string,
    handle: FileHandle,
    onCommitted: (n: number) => void,
  ) {
    this.#store = store;
    this.#digest = digest;
    this.tempPath = tempPath;
    this.#handle = handle;
    this.#onCommitted = onCommitted;
  }

  get written(): number {
    return this.#written;
  }

  async write(chunk: Uint8Array): Promise<void> {
    await this.writev([chunk]);
  }

  /** Appends chunks with one writev(2) where possible: upstream chunks are small (16-64 KiB). */
  async writev(chunks: Uint8Array[]): Promise<void> {
    let total = 0;
    for (const chunk of chunks) {
      this.#hash.update(chunk);
      total += chunk.length;
    }
    await writevAt(this.#handle, chunks, total, this.#written);
    this.#written += total;
  }

  /** Checks the content; throws DigestMismatchError / SizeMismatchError (and removes the temp file). */
  verify(expectedSize: number | undefined): void {
    if (expectedSize !== undefined && expectedSize !== this.#written) {
      throw new SizeMismatchError(expectedSize, this.#written);
    }
    const actual = `sha256:${this.#hash.digest('hex')}`;
    if (actual !== this.#digest.value)
      throw new DigestMismatchError(this.#digest.value, actual, this.#written);
  }

  /** Verify (unless already done), fsync, rename into place. */
  async commit(expectedSize?: number, verified = false): Promise<void> {
    if (!verified) this.verify(expectedSize);
    // Durable before visible: a crash must never leave a short file at a digest path.
    await this.#handle.datasync();
    await this.#close();
    const final = this.#store.pathOf(this.#digest);
    await mkdir(path.dirname(final), { recursive: true });
    await rename(this.tempPath, final);
    this.#onCommitted(this.#written);
  }

  async abort(): Promise<void> {
    await this.#close();
    await rm(this.tempPath, { force: true });
  }

  async #close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#handle.close();
  }
}

/** Writes `chunks` (`total` bytes) at `position` with one writev(2), finishing a short write. */
export async function writevAt(
  handle: FileHandle,
  chunks: Uint8Array[],
  total: number,
  position: number,
): Promise<void> {
  let { bytesWritten } = await handle.writev(chunks, position);
  if (bytesWritten >= total) return;
  // Short write (rare on regular files): finish with plain writes.
  const rest = Buffer.concat(chunks).subarray(bytesWritten);
  let offset = 0;
  while (offset < rest.length) {
    const r = await handle.write(rest, offset, rest.length - offset, position + bytesWritten);
    offset += r.bytesWritten;
    bytesWritten += r.bytesWritten;
  }
}
