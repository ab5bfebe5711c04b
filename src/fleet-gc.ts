import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { BlobStore } from './cache/blob-store.js';
import { mirroredReferences } from './cache/collect.js';
import type { HostedRepositories } from './hosted/repositories.js';
import type { Logger } from './observe/logger.js';
import { parseDigest } from './oci/digest.js';
import { BucketCollector, type BucketCollectResult } from './shared/bucket-gc.js';
import { fleetMarks } from './shared/bucket-marks.js';
import { BucketUse } from './shared/bucket-use.js';
import type { FleetLocks } from './shared/fleet-locks.js';
import type { HostedRecords } from './shared/hosted-records.js';
import { RedisTagIndex } from './shared/redis-tags.js';
import type { S3BlobStore } from './shared/s3-store.js';

/** A manifest read back from the bucket to mark what it names, at most (a pushed manifest's bound). */
const MARKED_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface FleetGcParts {
  bucket: S3BlobStore;
  coordinator: FleetLocks;
  store: BlobStore;
  hosted: HostedRepositories;
  hostedRecords: HostedRecords | undefined;
  /** Held by this replica's hosted content, or promised to a push (a HEAD's yes), right now. */
  heldNow: (hex: string) => boolean;
  dataDir: string;
  graceMs: number;
  maxBytes: number | undefined;
  uploadExpiryMs: number;
  intervalMs: number;
  log: Logger;
}

/**
 * The bucket's collection in a replica (shared/bucket-gc.ts), wired to this replica's parts: the
 * uses it reports, the marks it gathers (the fleet's records in Redis and its own files), and the
 * periodic run (--shared-gc-interval, jittered so replicas started together do not all ask for
 * the lease at once; only one collects).
 */
export class FleetGc {
  readonly use: BucketUse;
  readonly #collector: BucketCollector;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  /** Collections finished here, blobs removed and evicted, and the bucket's bytes after the last. */
  readonly totals = { runs: 0, failures: 0, removed: 0, removedBytes: 0, evicted: 0, evictedBytes: 0 };
  bucketBytes: number | undefined;
  overBound = false;

  readonly parts: FleetGcParts;
  #closed = false;

  constructor(parts: FleetGcParts) {
    this.parts = parts;
    const { bucket, coordinator, store, hosted, hostedRecords, log } = parts;
    this.#log = log;
    this.use = new BucketUse(coordinator.redis);
    store.onUse = (hex) => this.use.touch(hex);
    const tags = new RedisTagIndex(coordinator.redis);
    this.#collector = new BucketCollector({
      bucket,
      fleet: {
        lease: (id, ttl) => coordinator.lease(id, ttl),
        uploadLive: async (id) => (await coordinator.redis.exists(`hubcache:upload:${id}`)) === 1,
        lastUsed: (hexes) => this.use.lastUsed(hexes),
        forget: (hexes) => this.use.forget(hexes),
      },
      mark: () =>
        fleetMarks({
          hostedRecords,
          tags,
          localHosted: () => hosted.heldBlobs(),
          localMirrored: () => mirroredReferences(store, parts.dataDir),
          manifest: (hex) => this.#manifest(hex),
          linkExpiryMs: parts.graceMs,
          expireLinks: hostedRecords
            ? async (name, hexes) => {
                await hostedRecords.write(name, { links: Object.fromEntries(hexes.map((h) => [h, null])) });
                this.#log.info(
                  { repository: name, links: hexes.length },
                  'shared store: abandoned uploads unlinked',
                );
              }
            : undefined,
        }),
      heldNow: parts.heldNow,
      graceMs: parts.graceMs,
      maxBytes: parts.maxBytes,
      uploadExpiryMs: parts.uploadExpiryMs,
      log,
    });
  }

  /** A manifest's verified body: this replica's file (stored verified), else the bucket's copy, checked. */
  async #manifest(hex: string): Promise<Buffer | undefined> {
    const digest = parseDigest(`sha256:${hex}`);
    const local = await readFile(this.parts.store.pathOf(digest)).catch(() => undefined);
    if (local) return local;
    const found = await this.parts.bucket.read(digest, MARKED_MANIFEST_BYTES);
    if (!found) return undefined;
    return createHash('sha256').update(found.data).digest('hex') === hex ? found.data : undefined;
  }

  /** One collection now (POST /_hubcache/gc, and the timer); a failure is reported, not thrown. */
  async run(): Promise<BucketCollectResult | { error: string }> {
    await this.use.flush();
    try {
      const result = await this.#collector.run();
      if (!result.skipped) {
        this.totals.runs++;
        this.totals.removed += result.removed;
        this.totals.removedBytes += result.removedBytes;
        this.totals.evicted += result.evicted;
        this.totals.evictedBytes += result.evictedBytes;
        this.bucketBytes = result.bytesAfter;
        this.overBound = result.overBound;
        this.#log.info(result, 'shared store collected');
      }
      return result;
    } catch (err) {
      this.totals.failures++;
      const error = (err as Error).message.slice(0, 300);
      this.#log.warn({ err: error }, 'shared store: collection failed; nothing more was removed');
      return { error };
    }
  }

  /**
   * Runs `collect` every --shared-gc-interval (± 10 %), from one interval after start: the
   * replica's own files, then the bucket (mirror.ts), as POST /_hubcache/gc does. The files first:
   * a hosted link the bucket's collection unlinked is then no longer held here at the next run.
   */
  start(collect: () => Promise<unknown>): void {
    const every = this.parts.intervalMs;
    if (every <= 0) return;
    const next = () => {
      if (this.#closed) return;
      const run = () =>
        void collect()
          .catch((err: Error) => this.#log.warn({ err: err.message }, 'periodic collection failed'))
          .finally(next);
      this.#timer = setTimeout(run, every * (0.9 + Math.random() * 0.2));
      this.#timer.unref();
    };
    next();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.use.flush();
    this.use.close();
  }
}
