import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { constants } from 'node:fs';
import { type FileHandle, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import type { EvictionPolicyName } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import type { Digest } from '../oci/digest.js';
import { blobPath, blobsDir, tempDir, tempPath } from '../storage/layout.js';
import { BlobWriter } from './blob-writer.js';
import { DiskRoom } from './disk-room.js';
import { evictionPolicy } from './eviction/policies.js';
import { RESUME_AFTER_MS, WHY_OFF, WhoFetched } from './eviction/who-fetched.js';
import { Evictor } from './evictor.js';
import { LruMap } from './lru-map.js';
import { Pins } from './pins.js';
import { UsageIndex } from './usage-index.js';

// The writer and its errors live in blob-writer.ts; callers know them as the store's.
export { BlobWriter, DigestMismatchError, SizeMismatchError, writevAt } from './blob-writer.js';

/**
 * Blobs up to this size are served from memory after their first read (manifests, configs, small
 * and medium layers), within the memory budget: one write of a Buffer instead of open, fstat and
 * chunked file reads measured several times faster for 1 KiB to 4 MiB blobs under concurrency.
 */
export const SMALL_BLOB_BYTES = 8 * 1024 * 1024;

/**
 * Content-addressed files: `<data>/blobs/sha256/<2 hex>/<hex>` (storage/layout.ts), the layout the
 * reference registry uses under docker/registry/v2/blobs. Everything lands in `<data>/tmp` first
 * (cache/blob-writer.ts) and is renamed into place only after its sha256 and length were checked,
 * so a file at a digest path is always right. Files are immutable, which makes the size and
 * small-body caches here safe without invalidation.
 *
 * The rest is owned beside it, and reached through this class so its callers hold one object:
 * uses and bytes (usage-index.ts), the size bound (evictor.ts) and its policy (eviction/), pins (pins.ts), free space
 * (disk-room.ts).
 */
export class BlobStore {
  readonly root: string;
  readonly tmpDir: string;
  readonly usage: UsageIndex;
  readonly #sizes = new LruMap<string, number>({ max: 100_000 });
  readonly #small: LRUCache<string, Buffer>;
  /**
   * Blobs being removed, and removals begun or ended: a lookup whose stat or read ran across one may
   * have seen a file that is gone now, so it serves what it read but records nothing (a blob that
   * stays loses one use; one removed is not put back in the usage index as stored).
   */
  readonly #removing = new Set<string>();
  #removals = 0;
  /** Open file handles per blob: the size bound never removes a blob being served. */
  readonly #inUse = new Map<string, number>();
  readonly #evictor: Evictor;
  readonly #room: DiskRoom;
  readonly #pins: Pins;

  constructor(
    root: string,
    memoryBytes: number,
    maxBytes: number | undefined,
    minFreeBytes: number,
    log: Logger,
    eviction: EvictionPolicyName = 'gdsf',
  ) {
    this.root = root;
    this.#room = new DiskRoom(root, minFreeBytes);
    this.#pins = new Pins(root);
    this.tmpDir = tempDir(root);
    this.#small = new LRUCache<string, Buffer>({
      maxSize: Math.max(1, memoryBytes),
      sizeCalculation: (b) => Math.max(1, b.length),
    });
    const fetched = new WhoFetched();
    fetched.onChange = (why) => {
      if (why === undefined)
        log.info('eviction puts first again what every client fetched, remembered afresh');
      else
        log.info(
          { why, detail: WHY_OFF[why], resumesInHours: RESUME_AFTER_MS / 3_600_000 },
          'eviction stops putting first what every client fetched',
        );
    };
    this.usage = new UsageIndex(root, evictionPolicy(eviction, maxBytes, fetched));
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

  /** Whether `size` more bytes fit, leaving --min-free-space (cache/disk-room.ts). */
  hasRoomFor(size: number, maxAgeMs?: number): Promise<boolean> {
    return this.#room.hasRoomFor(size, maxAgeMs);
  }

  /** Bytes written outside the store's own writers (uploads): counted until the next statfs. */
  noteWritten(bytes: number): void {
    this.#room.noteWritten(bytes);
  }

  /** A write failed: after ENOSPC the disk counts as full until the next statfs. */
  noteWriteFailure(err: unknown): void {
    this.#room.noteWriteFailure(err);
  }

  /** Blobs and bytes removed by the size bound since start. */
  get evictions(): { count: number; bytes: number } {
    return { count: this.#evictor.evicted, bytes: this.#evictor.evictedBytes };
  }

  /** Fetched blobs larger than the size bound on their own, since start (cache/evictor.ts `stored`). */
  get tooBig(): number {
    return this.#evictor.tooBig;
  }

  /** Pinned blobs (prefetch --pin): the size bound never removes them (cache/pins.ts). */
  get pinsFile(): string {
    return this.#pins.file;
  }

  loadPins(): Promise<void> {
    return this.#pins.load();
  }

  pin(hexes: string[]): Promise<number> {
    return this.#pins.pin(hexes);
  }

  unpinAll(): Promise<void> {
    return this.#pins.unpinAll();
  }

  isPinned(hex: string): boolean {
    return this.#pins.has(hex);
  }

  /**
   * Content the size bound must never remove besides pins: hosted repositories' blobs, and blobs a
   * push was told are here. Set by the owner of that knowledge (the Mirror), asked by the evictor
   * through `evictable` (garbage collection asks hosted content itself: cache/collect.ts).
   */
  keep: (hex: string) => boolean = () => false;

  /** Told of every use (replicas report them for the bucket's size bound: shared/bucket-use.ts). */
  onUse: ((hex: string) => void) | undefined;

  /** Whether eviction may remove this blob now. */
  evictable(hex: string): boolean {
    return !this.inUse(hex) && !this.isPinned(hex) && !this.keep(hex);
  }

  inUse(hex: string): boolean {
    return (this.#inUse.get(hex) ?? 0) > 0;
  }

  /**
   * Whether `fetching` is heard: only a bounded store whose policy weighs clients (`--max-size` with
   * gdsf). Handlers ask first, so the default (unbounded) hit path does not look up its client.
   */
  get hearsClients(): boolean {
    return this.usage.hearsClients;
  }

  /**
   * `client` (an address: the one access logs record) is fetching this blob whole: told before the
   * store is asked for it, for the size bound's policy (cache/eviction/who-fetched.ts).
   */
  fetching(digest: Digest, client: string): void {
    this.usage.asked(digest.hex, client);
  }

  /** A blob was stored or used: for the size bound's policy, and maybe time to evict. */
  #used(hex: string, size: number, stored = false, counted = true): void {
    // A lookup that found the file just before its removal must not count it as stored again.
    if (this.#removing.has(hex)) return;
    this.usage.touch(hex, size, counted);
    this.onUse?.(hex);
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
    const removals = this.#removals;
    try {
      const s = await stat(this.pathOf(digest));
      if (removals === this.#removals) {
        this.#sizes.set(digest.hex, s.size);
        this.#used(digest.hex, s.size);
      }
      return s.size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * A small blob held in memory, synchronously (the hit path's fast lane: no stat, no promise);
   * counted as one use. Undefined when not in memory: ask `size`/`read`.
   */
  inMemory(digest: Digest): Buffer | undefined {
    const cached = this.#small.get(digest.hex);
    if (cached) this.#used(digest.hex, cached.length);
    return cached;
  }

  /**
   * Reads a stored blob whole (manifests, small blobs); undefined when absent. `counted`: false when
   * this request already asked `size`, so the eviction policy counts one use per request.
   */
  async read(digest: Digest, counted = true): Promise<Buffer | undefined> {
    const cached = this.#small.get(digest.hex);
    if (cached) {
      this.#used(digest.hex, cached.length, false, counted);
      return cached;
    }
    const removals = this.#removals;
    try {
      const data = await readFile(this.pathOf(digest));
      if (removals === this.#removals) {
        this.#sizes.set(digest.hex, data.length);
        this.#used(digest.hex, data.length, false, counted);
        if (data.length <= SMALL_BLOB_BYTES) this.#small.set(digest.hex, data);
      }
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
    return new BlobWriter(this.pathOf(digest), digest, temp, handle, (size) => {
      this.#sizes.set(digest.hex, size);
      this.#evictor.stored(digest.hex, size, this.isPinned(digest.hex) || this.keep(digest.hex));
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
    const hex = digest.hex;
    this.#removing.add(hex);
    this.#removals++;
    try {
      await rm(this.pathOf(digest), { force: true });
    } finally {
      // Once the file is gone, so the stored bytes never count less than the disk holds; a read
      // that ran meanwhile may have cached its size or bytes.
      this.usage.forget(hex);
      this.#sizes.delete(hex);
      this.#small.delete(hex);
      this.#removing.delete(hex);
      this.#removals++;
    }
  }
}
