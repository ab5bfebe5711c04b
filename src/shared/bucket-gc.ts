import { randomUUID } from 'node:crypto';
import type { Logger } from '../observe/logger.js';
import type { ListedObject } from './s3-store.js';

/** The bucket as the collector uses it (shared/s3-store.ts). */
export interface CollectedBucket {
  clock(probeId: string): Promise<number>;
  listPage(
    under: 'blobs/sha256/' | 'uploads/',
    token?: string,
  ): Promise<{ objects: ListedObject[]; next: string | undefined }>;
  removeKey(key: string): Promise<void>;
  /** Up to 1,000 at once; the keys not removed. */
  removeKeys?(keys: string[]): Promise<string[]>;
  abortStaleMultipart(before: number): Promise<number>;
}

/** What the collector asks Redis (shared/fleet-locks.ts, shared/bucket-use.ts). */
export interface CollectorFleet {
  /** One collection at a time in the fleet: the lock's release, or undefined when another replica holds it. */
  lease(id: string, ttlMs: number): Promise<(() => Promise<void>) | undefined>;
  /** Whether an upload session's record is still in Redis (its owner, or a taker, may need its parts). */
  uploadLive(id: string): Promise<boolean>;
  /** When each blob was last used in the fleet (ms, replicas' clocks). */
  lastUsed(hexes: string[]): Promise<Map<string, number>>;
  forget(hexes: string[]): Promise<void>;
}

/** What the fleet still names (shared/bucket-marks.ts), as sets of digest hex. */
export interface BucketMarks {
  /** Hosted repositories' manifests and blobs: never removed, never evicted (they have no upstream). */
  hosted: Set<string>;
  /** Mirrored tags' manifests and what they name: kept, but evicted first-unused-first by the size bound. */
  mirrored: Set<string>;
}

export interface BucketCollectOptions {
  bucket: CollectedBucket;
  fleet: CollectorFleet;
  /** Gathers the marks; a failure stops the collection before anything is removed. */
  mark: () => Promise<BucketMarks>;
  /** Asked again just before a blob is removed: held by hosted content since the marks were taken. */
  heldNow: (hex: string) => boolean;
  /** Objects younger than this (on the bucket's clock), and blobs used within it, are kept. */
  graceMs: number;
  /** --shared-max-size: the bucket's blobs are brought down to 90 % of it when they exceed it. */
  maxBytes: number | undefined;
  /** --upload-expiry: staged upload parts with no session record, older than twice this, go. */
  uploadExpiryMs: number;
  log: Logger;
  /** Blobs listed in one run at most (MAX_LISTED_BLOBS; smaller in tests). */
  maxListed?: number;
}

export interface BucketCollectResult {
  /** Another replica was collecting: nothing was done here. */
  skipped?: string;
  /** Blobs listed under blobs/ and their bytes. */
  listed: number;
  listedBytes: number;
  /** Named by nothing, older than the grace period and unused within it: removed. */
  removed: number;
  removedBytes: number;
  /** Removed by the size bound: mirrored blobs the fleet used least recently. */
  evicted: number;
  evictedBytes: number;
  /** Kept: hosted content, mirrored content, younger than the grace period, used within it. */
  hosted: number;
  hostedBytes: number;
  mirrored: number;
  keptYoung: number;
  keptRecent: number;
  /** Keys under blobs/ that are not a blob's key (left alone: the mirror did not write them). */
  foreign: number;
  /** The blobs' bytes after the collection. */
  bytesAfter: number;
  /** Hosted and young content alone exceed --shared-max-size: nothing more may be evicted. */
  overBound: boolean;
  /** The listing was stopped at its bound (MAX_LISTED_BLOBS): no eviction this run. */
  partial: boolean;
  /** Staged parts of upload sessions no record names any more, and abandoned multipart uploads. */
  uploadParts: number;
  multipartAborted: number;
  ms: number;
}

/** How long the collection lock lives without a refresh (a leader that died frees it after this). */
const LEASE_MS = 120_000;
/** Removals in flight at once. */
const REMOVE_AT_ONCE = 8;
/**
 * Blobs listed in one run at most: the listing is the bucket's word (it is not trusted), and one
 * that never ends must not hold the lease and grow the size bound's list for ever. Beyond it the
 * run stops listing, removes nothing more and evicts nothing (its view of the bucket is partial).
 */
export const MAX_LISTED_BLOBS = 10_000_000;
/** Upload parts looked at per collection at most (sessions × parts: a hostile bucket lists many). */
const MAX_UPLOAD_KEYS = 100_000;
const BLOB_KEY = /^blobs\/sha256\/([0-9a-f]{2})\/([0-9a-f]{64})$/;
const UPLOAD_KEY = /^uploads\/([A-Za-z0-9-]{1,64})\/(\d{1,15})-(\d{1,15})$/;

/**
 * Garbage collection and the size bound of the bucket replicas share, run by one replica at a time
 * (a Redis lease): mark what the fleet names, list the bucket, and remove what nothing names and
 * nobody used within the grace period; then, over --shared-max-size, evict mirrored blobs the
 * fleet used least recently down to 90 % of it. Hosted content is never evicted: it has no upstream
 * to fetch it again from.
 *
 * Safe while replicas serve and push:
 * - an object younger than the grace period (on the bucket's own clock) stays, so a blob published
 *   a moment ago whose manifest is not cached or pushed yet is not taken;
 * - before each page's removals the fleet's use times are read again, and the leader's hosted
 *   content is asked again, so a blob used or pushed since the mark stays;
 * - staged upload parts live under uploads/, which the blob sweep never lists; they go only when no
 *   session record names them and they are older than twice the upload expiry;
 * - a failure while marking removes nothing.
 * A removed mirrored blob costs one upstream fetch at its next pull; nothing is ever served from
 * the bucket without being verified against its digest.
 */
export class BucketCollector {
  readonly #o: BucketCollectOptions;
  #running: Promise<BucketCollectResult> | undefined;

  constructor(options: BucketCollectOptions) {
    this.#o = options;
  }

  /** One collection (a call while one runs gets its result). */
  async run(): Promise<BucketCollectResult> {
    this.#running ??= this.#leased().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #leased(): Promise<BucketCollectResult> {
    const started = performance.now();
    const release = await this.#o.fleet.lease('bucket-gc', LEASE_MS);
    if (!release) return { ...empty(), skipped: 'another replica is collecting the bucket' };
    try {
      const result = await this.#collect();
      result.ms = Math.round(performance.now() - started);
      return result;
    } finally {
      await release();
    }
  }

  async #collect(): Promise<BucketCollectResult> {
    const { bucket, fleet, graceMs } = this.#o;
    const result = empty();
    const marks = await this.#o.mark();
    const now = await bucket.clock(randomUUID());
    const cutoff = now - graceMs;
    /**
     * Mirrored (or recently used) blobs the size bound may evict, with when they were last used:
     * kept only with a bound (~100 bytes each: a million blobs hold ~100 MiB while the run lasts).
     */
    const evictable: { hex: string; size: number; lastUse: number }[] = [];
    const bounded = this.#o.maxBytes !== undefined;
    let token: string | undefined;
    do {
      const page = await bucket.listPage('blobs/sha256/', token);
      token = page.next;
      const old: { hex: string; size: number; modifiedMs: number }[] = [];
      for (const o of page.objects) {
        const m = BLOB_KEY.exec(o.key);
        if (!m || m[1] !== m[2]?.slice(0, 2)) {
          result.foreign++;
          continue;
        }
        const hex = m[2] as string;
        result.listed++;
        result.listedBytes += o.size;
        if (marks.hosted.has(hex)) {
          result.hosted++;
          result.hostedBytes += o.size;
        } else if (o.modifiedMs > cutoff) result.keptYoung++;
        else old.push({ hex, size: o.size, modifiedMs: o.modifiedMs });
      }
      // Asked now, not at the mark: a blob pulled since then is in use.
      const used = await fleet.lastUsed(old.map((o) => o.hex));
      const recently = Date.now() - graceMs;
      const doomed: { hex: string; size: number }[] = [];
      for (const o of old) {
        const usedAt = used.get(o.hex) ?? 0;
        const lastUse = Math.max(usedAt, o.modifiedMs);
        if (marks.mirrored.has(o.hex)) result.mirrored++;
        else if (usedAt > recently || this.#o.heldNow(o.hex)) result.keptRecent++;
        else {
          doomed.push(o);
          continue;
        }
        if (bounded) evictable.push({ hex: o.hex, size: o.size, lastUse });
      }
      const gone = await this.#remove(doomed);
      result.removed += gone.count;
      result.removedBytes += gone.bytes;
      if (token && result.listed + result.foreign >= (this.#o.maxListed ?? MAX_LISTED_BLOBS)) {
        this.#o.log.warn(
          { listed: result.listed },
          'shared store: the listing goes on past its bound; stopped there',
        );
        result.partial = true;
        break;
      }
    } while (token);
    let bytes = result.listedBytes - result.removedBytes;
    const max = this.#o.maxBytes;
    if (max !== undefined && bytes > max && !result.partial) {
      const target = Math.floor(max * 0.9);
      evictable.sort((a, b) => a.lastUse - b.lastUse);
      const chosen: { hex: string; size: number }[] = [];
      for (const e of evictable) {
        if (bytes <= target) break;
        if (this.#o.heldNow(e.hex)) continue;
        chosen.push(e);
        bytes -= e.size;
      }
      const gone = await this.#remove(chosen);
      result.evicted = gone.count;
      result.evictedBytes = gone.bytes;
      bytes += chosen.reduce((n, c) => n + c.size, 0) - gone.bytes;
      result.overBound = bytes > max;
      if (result.overBound) {
        this.#o.log.error(
          { bytes, maxBytes: max, hostedBytes: result.hostedBytes },
          'shared store: hosted and young content alone exceed --shared-max-size; nothing more can be evicted',
        );
      }
    }
    result.bytesAfter = bytes;
    result.uploadParts = await this.#sweepUploads(now);
    result.multipartAborted = await bucket.abortStaleMultipart(now - 2 * this.#o.uploadExpiryMs);
    return result;
  }

  /**
   * Removes blobs: in batches of 1,000 where the bucket takes DeleteObjects, else a few at a time
   * (a bucket that refuses the batch call once is asked one by one from then on). One that fails
   * to go is counted as kept (and logged once).
   */
  async #remove(blobs: { hex: string; size: number }[]): Promise<{ count: number; bytes: number }> {
    const keyOf = (hex: string) => `blobs/sha256/${hex.slice(0, 2)}/${hex}`;
    let failed: string | undefined;
    const kept = new Set<string>();
    const batch = this.#o.bucket.removeKeys?.bind(this.#o.bucket);
    for (let i = 0; i < blobs.length; i += 1000) {
      const some = blobs.slice(i, i + 1000);
      if (batch && this.#batches) {
        try {
          for (const key of await batch(some.map((b) => keyOf(b.hex)))) kept.add(key);
          continue;
        } catch (err) {
          this.#batches = false;
          this.#o.log.info(
            { err: (err as Error).message },
            'shared store: DeleteObjects refused; removing one by one',
          );
        }
      }
      for (let j = 0; j < some.length; j += REMOVE_AT_ONCE) {
        await Promise.all(
          some.slice(j, j + REMOVE_AT_ONCE).map(async (b) => {
            try {
              await this.#o.bucket.removeKey(keyOf(b.hex));
            } catch (err) {
              failed ??= (err as Error).message;
              kept.add(keyOf(b.hex));
            }
          }),
        );
      }
    }
    if (failed || kept.size > 0)
      this.#o.log.warn({ err: failed, kept: kept.size }, 'shared store: blobs could not be removed; kept');
    const removed = blobs.filter((b) => !kept.has(keyOf(b.hex)));
    await this.#o.fleet.forget(removed.map((b) => b.hex)).catch(() => {});
    return { count: removed.length, bytes: removed.reduce((n, b) => n + b.size, 0) };
  }

  /** The bucket takes DeleteObjects (until it refuses it once). */
  #batches = true;

  /**
   * Staged parts (uploads/<session>/<start>-<end>) of sessions no record names any more and older
   * than twice the upload expiry: their owner died and nobody took them over, or an expiry sweep
   * missed them. The owner's own sweep drops a finished or expired session's parts; this is the
   * backstop.
   */
  async #sweepUploads(now: number): Promise<number> {
    const sessions = new Map<string, { keys: string[]; newest: number }>();
    let seen = 0;
    let token: string | undefined;
    do {
      const page = await this.#o.bucket.listPage('uploads/', token);
      token = page.next;
      for (const o of page.objects) {
        const m = UPLOAD_KEY.exec(o.key);
        if (!m) continue;
        const id = m[1] as string;
        const s = sessions.get(id) ?? { keys: [], newest: 0 };
        s.keys.push(o.key);
        s.newest = Math.max(s.newest, o.modifiedMs);
        sessions.set(id, s);
      }
      seen += page.objects.length;
    } while (token && seen < MAX_UPLOAD_KEYS);
    let removed = 0;
    const cutoff = now - 2 * this.#o.uploadExpiryMs;
    for (const [id, s] of sessions) {
      if (s.newest > cutoff || (await this.#o.fleet.uploadLive(id))) continue;
      for (const key of s.keys) {
        await this.#o.bucket.removeKey(key).then(
          () => removed++,
          () => {},
        );
      }
    }
    return removed;
  }
}

function empty(): BucketCollectResult {
  return {
    listed: 0,
    listedBytes: 0,
    removed: 0,
    removedBytes: 0,
    evicted: 0,
    evictedBytes: 0,
    hosted: 0,
    hostedBytes: 0,
    mirrored: 0,
    keptYoung: 0,
    keptRecent: 0,
    foreign: 0,
    bytesAfter: 0,
    overBound: false,
    partial: false,
    uploadParts: 0,
    multipartAborted: 0,
    ms: 0,
  };
}
