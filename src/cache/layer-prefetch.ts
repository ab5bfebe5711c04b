import type { Logger } from '../observe/logger.js';
import type { Digest } from '../oci/digest.js';
import { type Descriptor, imageBlobs, manifestObject, parseDescriptor } from '../oci/manifest.js';
import { DOCKER_MANIFEST, OCI_MANIFEST } from '../oci/media-types.js';
import type { RegistryApi } from '../upstream/registry-api.js';
import type { BlobCache } from './blob-cache.js';

/** Why a blob a manifest lists was not prefetched (hubcache_prefetch_skipped_total's `reason`). */
export const PREFETCH_SKIPS = [
  /** Already in the store. */
  'stored',
  /** A fill of it is running (a client's, or a prefetch of another manifest's). */
  'inflight',
  /** Already waiting in the prefetch queue. */
  'queued',
  /** The queue was full (PREFETCH_QUEUE): dropped, the client's own GET fetches it. */
  'queue_full',
  /** Declared larger than --max-size: it could not stay. */
  'too_big',
  /** The disk has no room for it above --min-free-space. */
  'no_room',
  /** The upstream is backing off after a 429 (Retry-After). */
  'rate_limited',
  /** The upstream is cooling down after it did not answer (or the mirror is --offline). */
  'upstream_down',
  /** A foreign (non-distributable) layer, or a descriptor that is not one. */
  'not_fetchable',
  /** The mirror is shutting down. */
  'closing',
] as const;
export type PrefetchSkip = (typeof PREFETCH_SKIPS)[number];

/**
 * Blobs waiting for a prefetch slot, at most; the rest are dropped (counted). Two or three big
 * images' worth: an image rarely lists more than 30 blobs.
 */
export const PREFETCH_QUEUE = 64;

/** One blob to prefetch: where from (the route and name its manifest came from), and what. */
interface Job {
  name: string;
  api: RegistryApi;
  digest: Digest;
  size: number;
}

/** What the prefetch needs to know of the store's bounds (cache/blob-store.ts, cache/evictor.ts). */
export interface PrefetchBounds {
  /** --prefetch-layers: prefetch fills running at once; 0 turns prefetch off. */
  concurrency: number;
  /** --max-size: a blob declared larger could not stay (undefined: unbounded). */
  maxBlobBytes: number | undefined;
}

/**
 * Layer prefetch: when an image manifest arrives from an upstream, its config and layers are
 * fetched at once, before the client asks for them (clients ask for the manifest, then for its
 * blobs: one or more round trips later, and dockerd three layers at a time). A prefetch is an
 * ordinary fill (cache/blob-cache.ts): single flight per digest, verified before anything is
 * served as complete, detached from any client. A client asking for a blob being prefetched joins
 * the fill and is streamed what has arrived; one asking for a blob still queued here starts its own
 * fill at once, and the queued one is then skipped.
 *
 * Bounded (docs/SECURITY.md): at most `concurrency` prefetch fills at once, outside the clients'
 * download budget so that a client's miss never queues behind one, and none starts while client
 * misses wait for a turn in that budget; at most PREFETCH_QUEUE waiting; never a blob stored or in
 * flight, declared larger than --max-size, without disk room, or while the upstream backs off.
 */
export class LayerPrefetch {
  readonly #blobs: BlobCache;
  readonly #bounds: PrefetchBounds;
  readonly #log: Logger;
  readonly #queue: Job[] = [];
  readonly #queued = new Set<string>();
  #running = 0;
  #closed = false;
  #idle: (() => void)[] = [];

  /** Since start: fills prefetch started, of which committed and failed, and the bytes committed. */
  started = 0;
  completed = 0;
  failed = 0;
  bytes = 0;
  readonly skipped = new Map<PrefetchSkip, number>(PREFETCH_SKIPS.map((r) => [r, 0]));

  constructor(blobs: BlobCache, bounds: PrefetchBounds, log: Logger) {
    this.#blobs = blobs;
    this.#bounds = bounds;
    this.#log = log;
  }

  /** Prefetch fills running now. */
  get running(): number {
    return this.#running;
  }

  /**
   * A manifest arrived from `api` for `name` (its name upstream, which scopes the token): an image
   * manifest's blobs are queued. Indexes are not followed: the client names its platform by asking
   * for the child manifest, whose arrival prefetches its blobs.
   */
  manifestArrived(api: RegistryApi, name: string, mediaType: string, body: Buffer): void {
    if (this.#bounds.concurrency === 0) return;
    if (mediaType !== DOCKER_MANIFEST && mediaType !== OCI_MANIFEST) return;
    for (const [i, raw] of imageBlobs(manifestObject(body)).entries()) {
      let d: Descriptor;
      try {
        d = parseDescriptor(raw, `blobs[${i}]`);
      } catch {
        this.#skip('not_fetchable');
        continue;
      }
      const reason = this.#refusal(api, d);
      if (reason) {
        this.#skip(reason, d.digest);
        continue;
      }
      this.#queue.push({ name, api, digest: d.digest, size: d.size });
      this.#queued.add(d.digest.hex);
    }
    this.pump();
  }

  /** Why a blob is not queued, from what is known without I/O. */
  #refusal(api: RegistryApi, d: Descriptor): PrefetchSkip | undefined {
    if (this.#closed) return 'closing';
    if (d.foreign) return 'not_fetchable';
    const max = this.#bounds.maxBlobBytes;
    if (max !== undefined && d.size > max) return 'too_big';
    if (this.#blobs.inflight(d.digest)) return 'inflight';
    if (this.#queued.has(d.digest.hex)) return 'queued';
    const paused = pauseReason(api);
    if (paused) return paused;
    if (this.#queue.length >= PREFETCH_QUEUE) return 'queue_full';
    return undefined;
  }

  /**
   * Starts queued prefetches while there are free slots and no client miss waits for the download
   * budget. Called when a manifest arrives and whenever any fill ends (BlobCache.onFillEnded).
   */
  pump(): void {
    while (
      this.#running < this.#bounds.concurrency &&
      this.#queue.length > 0 &&
      this.#blobs.clientsQueued === 0
    ) {
      const job = this.#queue.shift() as Job;
      this.#queued.delete(job.digest.hex);
      this.#running++;
      void this.#run(job).finally(() => {
        this.#running--;
        this.pump();
        this.#checkIdle();
      });
    }
    this.#checkIdle();
  }

  async #run(job: Job): Promise<void> {
    const { digest } = job;
    // Time has passed in the queue: look again, now with the store and the disk.
    const paused = this.#closed ? 'closing' : pauseReason(job.api);
    if (paused) return this.#skip(paused, digest);
    if (this.#blobs.inflight(digest)) return this.#skip('inflight', digest);
    if ((await this.#blobs.store.size(digest)) !== undefined) return this.#skip('stored', digest);
    if (!(await this.#blobs.store.hasRoomFor(job.size))) return this.#skip('no_room', digest);
    // This module bounds its own fills (the slot taken above): they run now, not in the clients' budget.
    const { fill, joined } = this.#blobs.fill(job.name, digest, job.api, (run) => run());
    if (joined) return this.#skip('inflight', digest);
    this.started++;
    this.#log.debug({ digest: digest.value, repository: job.name, size: job.size }, 'prefetching blob');
    try {
      await fill.finished;
      this.completed++;
      this.bytes += fill.written;
    } catch (err) {
      // Nothing was stored (the fill removed its temp file); a client's GET fetches it again.
      this.failed++;
      this.#log.debug(
        { digest: digest.value, repository: job.name, err: (err as Error).message },
        'prefetch failed',
      );
    }
  }

  #skip(reason: PrefetchSkip, digest?: Digest): void {
    this.skipped.set(reason, (this.skipped.get(reason) ?? 0) + 1);
    if (reason !== 'stored' && reason !== 'inflight' && reason !== 'queued')
      this.#log.debug({ digest: digest?.value, reason }, 'blob not prefetched');
  }

  /** Resolves once nothing is queued or running (tests and benchmarks wait on it, with Mirror.settled). */
  idle(): Promise<void> {
    if (this.#running === 0 && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #checkIdle(): void {
    if (this.#running !== 0 || this.#queue.length !== 0) return;
    const waiting = this.#idle;
    this.#idle = [];
    for (const resolve of waiting) resolve();
  }

  /** Shutdown: nothing queued starts; running prefetches end with the other fills (BlobCache.drain). */
  close(): void {
    this.#closed = true;
    for (const job of this.#queue.splice(0)) this.#skip('closing', job.digest);
    this.#queued.clear();
    this.#checkIdle();
  }
}

/** Why the upstream is not to be asked for work nobody requested yet, if it is not. */
function pauseReason(api: RegistryApi): PrefetchSkip | undefined {
  const paused = api.client.paused;
  if (paused === 'rate_limited') return 'rate_limited';
  return paused === 'unreachable' ? 'upstream_down' : undefined;
}
