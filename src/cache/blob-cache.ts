import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LRUCache } from 'lru-cache';
import type { LimitFunction } from 'p-limit';
import { errors as undiciErrors } from 'undici';
import type { Logger } from '../observe/logger.js';
import type { Digest } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';
import type { FleetLocks as Coordinator } from '../shared/fleet-locks.js';
import { isBucketTimeout, type S3BlobStore, SharedStoreDownError } from '../shared/s3-store.js';
import { UpstreamUnreachableError } from '../upstream/errors.js';
import type { RegistryApi } from '../upstream/registry-api.js';
import { type BlobStore, type BlobWriter, DigestMismatchError, SizeMismatchError } from './blob-store.js';
import { BlobFill, FillReader } from './fill.js';
import type { KnownSizes } from './known-sizes.js';
import { keepsUp, PARALLEL_MIN_BYTES, RangedFill, segmentBytesFor } from './ranged-fill.js';

/** The disk is (nearly) full: the blob is not cached; clients are served straight from upstream. */
export class NoRoomError extends Error {
  constructor(size: number | undefined) {
    super(`not enough free disk to cache ${size ?? 'a'} byte blob`);
    this.name = 'NoRoomError';
  }
}

/** Ranged retries of one interrupted download before it fails. */
const MAX_RESUMES = 3;

/**
 * A shared-store copy up to this size is copied into the store and checked before any client sees
 * a byte of it: a bad one (hostile or corrupt, docs/SECURITY.md) then costs its clients nothing, the
 * upstream is asked in the same request. A bigger one is served as it is read, like an upstream
 * body, and a bad one cuts its clients' connections once: holding back the first byte until a
 * layer of gigabytes is read whole would trip clients' and load balancers' idle timeouts. At S3's
 * usual ~100 MB/s per stream, 16 MiB delays the first byte by about 0.2 s.
 */
export const SHARED_CHECKED_FIRST_BYTES = 16 * 1024 * 1024;

/**
 * A fill re-checks the free disk space every this many bytes (statfs is a cheap syscall), so a body
 * bigger than announced, or concurrent fills that each passed the check at their start, stop at
 * --min-free-space instead of filling the disk.
 */
export const FILL_ROOM_CHECK_BYTES = 8 * 1024 * 1024;

/**
 * A blob body without Content-Length stops here. Registries and their CDNs send Content-Length for
 * blobs (the distribution spec says SHOULD): an unsized body is rare, and an endless one is an
 * attack. Larger than any layer we know to be served without a length.
 */
export const MAX_UNSIZED_BLOB_BYTES = 8 * 1024 * 1024 * 1024;

/**
 * A shared object claiming more than this is not read, and no bigger blob is published. Without a
 * size from a manifest (KnownSizes), a wrong copy is only found wrong once read in full: this
 * bounds what a hostile object can make a replica read, write to disk and stream to its clients
 * before then (docs/SECURITY.md). Blobs this big are rare; each replica fetches them itself from the
 * upstream, which costs traffic, never correctness.
 */
export const SHARED_MAX_BLOB_BYTES = 16 * 1024 * 1024 * 1024;

/**
 * Blobs: served from the store, or filled from the upstream once per digest however many clients
 * ask at the same time (the in-flight map is the single flight). Fills are detached from the
 * requests that started them: they run to the end and are committed even if every client left.
 */
export class BlobCache {
  readonly store: BlobStore;
  readonly #upstream: RegistryApi;
  readonly #limit: LimitFunction;
  readonly #log: Logger;
  readonly #inflight = new Map<string, BlobFill>();
  /** What each running fill reads (its upstream body, or its ranged download), so shutdown can abort what it cannot wait for. */
  readonly #bodies = new Map<string, { destroy(err?: Error): unknown }>();

  /**
   * Shutdown: let running downloads finish (they are stored), at most `ms`; then abort the rest,
   * which removes their temp files. Nothing half-written stays behind.
   */
  async drain(ms: number): Promise<void> {
    const running = [...this.#inflight.values()].map((f) => f.finished.catch(() => {}));
    if (running.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      Promise.all(running).then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), ms);
      }),
    ]);
    clearTimeout(timer);
    if (!timedOut) return;
    for (const body of this.#bodies.values()) body.destroy(new Error('shutting down'));
    await Promise.all(running);
  }

  /** Clients served from a download another request started (single-flight waiters, cache/blob-reads.ts). */
  waiters = 0;

  /** Upstream bodies that did not match their digest, since start (nothing of them was stored). */
  digestMismatches = 0;

  /** Fills served from the shared store, blobs this replica published, waits for another replica's download. */
  sharedFills = 0;
  published = 0;
  sharedWaits = 0;
  /** Shared-store copies that were not their blob (removed from the bucket). */
  sharedDiscarded = 0;
  /**
   * Ranged fills (--upstream-parallel, cache/ranged-fill.ts): fills fetched in segments, segments
   * fetched whole, segments whose rest was asked a second time, and big blobs fetched in one stream
   * because the upstream answered the first Range request with something else than its 206, or
   * because its first connection kept up (ranged-fill.ts `keepsUp`).
   */
  ranged = { fills: 0, segments: 0, retries: 0, fallbacks: 0, keptUp: 0 };
  /** Upstream connections one big blob's fill may use at most (--upstream-parallel); 1: one stream. */
  readonly #parallel: number;
  readonly #shared: SharedTier | undefined;
  /**
   * Shared copies found bad (digest hex → the object's ETag): not read again, even if removing them
   * failed. A copy published since has another ETag and is read.
   */
  readonly #badShared = new LRUCache<string, string>({ max: 10_000 });

  constructor(
    store: BlobStore,
    upstream: RegistryApi,
    limit: LimitFunction,
    log: Logger,
    shared?: SharedTier,
    options: { parallel?: number } = {},
  ) {
    this.#parallel = Math.max(1, options.parallel ?? 1);
    this.#shared = shared;
    this.store = store;
    this.#upstream = upstream;
    this.#limit = limit;
    this.#log = log;
  }

  inflight(digest: Digest): BlobFill | undefined {
    return this.#inflight.get(digest.hex);
  }

  get inflightCount(): number {
    return this.#inflight.size;
  }

  /**
   * Client fills waiting for a turn in the download budget (--upstream-concurrency): while there
   * are any, work nobody asked for (layer prefetch) does not start.
   */
  get clientsQueued(): number {
    return this.#limit.pendingCount;
  }

  /** Told when any fill ends, committed or failed (layer prefetch starts its next one then). */
  onFillEnded: (() => void) | undefined;

  /**
   * The fill for this digest: the running one (joined: true; its client is coalesced, or served a
   * hit once the fill was verified) or a new one (joined: false; its client is the miss). A new one
   * takes a turn in `budget`: the clients' download budget unless the caller bounds its own fills
   * (layer prefetch, which must never make a client's miss queue behind it). `upstream` null: the
   * shared bucket only (a hosted blob another replica took: it has no upstream), else BLOB_UNKNOWN.
   */
  fill(
    repository: string,
    digest: Digest,
    upstream: RegistryApi | null = this.#upstream,
    budget: Budget = this.#limit,
  ): { fill: BlobFill; joined: boolean } {
    const running = this.#inflight.get(digest.hex);
    if (running) return { fill: running, joined: true };
    const fill = new BlobFill(digest, this.store.pathOf(digest));
    this.#inflight.set(digest.hex, fill);
    budget(() => this.#run(fill, repository, upstream))
      .catch((err: Error) => {
        fill.fail(err);
      })
      .finally(() => {
        if (this.#inflight.get(digest.hex) === fill) this.#inflight.delete(digest.hex);
        this.onFillEnded?.();
      });
    return { fill, joined: false };
  }

  async #run(fill: BlobFill, repository: string, upstream: RegistryApi | null): Promise<void> {
    const digest = fill.digest;
    const started = Date.now();
    // Committed by another fill between the caller's look at the store and this one starting.
    const stored = await this.store.size(digest);
    if (stored !== undefined) return committedFill(fill, stored);
    // With a shared store: another replica's copy (a small one already checked and stored here),
    // or the fleet-wide lock to fetch it.
    const shared = upstream
      ? this.#shared && (await this.#fromShared(digest, repository, started, upstream))
      : await this.#sharedOnly(digest, repository, started);
    if (shared && 'stored' in shared) return committedFill(fill, shared.stored);
    const release = shared && 'release' in shared ? shared.release : undefined;
    // Told to the replicas waiting for this fill: false when the bucket did not take it, so they
    // fetch at once rather than queue for the lock one after another.
    let published = true;
    try {
      const source =
        shared && 'body' in shared
          ? shared
          : await this.#fromUpstream(upstream as RegistryApi, repository, digest);
      try {
        await this.#store(fill, source, repository, started);
      } catch (err) {
        // Already streamed to clients, who are cut (never a complete wrong body). This replica
        // skips the copy from now on; it leaves the bucket in the background, so that a client
        // retrying at once is not failed by this fill still being in flight.
        if (source.origin === 'shared' && isContentError(err))
          void this.#discard(digest, source.etag, err as Error);
        throw err;
      }
      if (source.origin === 'shared') this.sharedFills++;
      if (source.origin === 'upstream' && this.#shared) published = await this.#publish(digest, fill.written);
    } finally {
      await release?.(published);
    }
  }

  async #fromUpstream(upstream: RegistryApi, repository: string, digest: Digest): Promise<Source> {
    const { body, size } = await upstream.getBlob(repository, digest);
    return {
      origin: 'upstream',
      body,
      size,
      resume: (offset, size) => upstream.getBlobFrom(repository, digest, offset, size),
      range: (start, end, size) => upstream.getBlobRange(repository, digest, start, end, size),
    };
  }

  /** The size of the shared bucket's copy of a blob (not checked: a read checks it), if any. */
  async sharedSize(digest: Digest): Promise<number | undefined> {
    try {
      return await this.#shared?.store.size(digest);
    } catch {
      return undefined;
    }
  }

  /**
   * The blob as the replica holding its download lock receives it (peer streaming): this replica's
   * clients get the bytes as they arrive there, not after the holder verified, published and
   * announced. Checked here again like any source (sha256 and size as it lands, last byte held
   * back). If the holder dies mid-body, the rest comes from the bucket (the same size), else from
   * the upstream. Undefined when the holder cannot serve it: the caller waits as before.
   */
  async #fromPeer(
    peers: PeerBlobs,
    holder: string,
    digest: Digest,
    repository: string,
    upstream: RegistryApi,
  ): Promise<Source | undefined> {
    const found = await peers.open(holder, digest);
    if (!found) return undefined;
    const known = (this.#shared as SharedTier).sizes?.get(digest.hex);
    if ((known !== undefined && found.size !== known) || found.size > SHARED_MAX_BLOB_BYTES) {
      found.body.destroy();
      return undefined;
    }
    this.peerFills++;
    const remote = (this.#shared as SharedTier).store;
    return {
      origin: 'peer',
      body: found.body,
      size: found.size,
      resume: async (offset, size) => {
        const copy = await remote.open(digest, offset).catch(() => undefined);
        if (copy && copy.size === size) return copy.body;
        copy?.body.destroy();
        return upstream.getBlobFrom(repository, digest, offset, size);
      },
    };
  }

  /** Fills this replica's clients got from the replica holding the download (peer streaming). */
  peerFills = 0;

  /**
   * What this replica can give another that waits for its download (the peer listener's blob
   * route): the stored blob, or the running fill once its size is known, read as it lands with the
   * last byte held back until verified (FillReader). Undefined otherwise.
   */
  async openForPeer(digest: Digest): Promise<{ body: Readable; size: number } | undefined> {
    const fill = this.#inflight.get(digest.hex);
    if (fill) {
      try {
        await fill.started;
      } catch {
        return undefined;
      }
      const size = fill.size;
      if (size === undefined) return undefined;
      return { body: new FillReader(fill, 0, size - 1), size };
    }
    const size = await this.store.size(digest);
    if (size === undefined) return undefined;
    const file = await this.store.open(digest);
    if (!file) return undefined;
    return { body: file.handle.createReadStream({ start: 0, end: file.size - 1 }), size: file.size };
  }

  /**
   * A blob with no upstream (hosted, taken by another replica): the bucket's copy, checked like
   * any, or BLOB_UNKNOWN. No fleet lock: nobody else would fetch it either.
   */
  async #sharedOnly(
    digest: Digest,
    repository: string,
    started: number,
  ): Promise<Source | { stored: number }> {
    let found = this.#shared ? await this.#openShared(digest, repository, started) : undefined;
    // Not in the bucket (or its copy was bad and removed): a replica holding it publishes it again.
    if (found === undefined && (await this.#shared?.repair?.ask(digest.hex)))
      found = await this.#openShared(digest, repository, started);
    if (found === undefined || found === 'failing')
      throw new RegistryError('BLOB_UNKNOWN', 'blob unknown to registry', { digest: digest.value });
    return found;
  }

  /**
   * The shared store's copy when there is one. Else, with a coordinator, the fleet's turn to fetch
   * it: taken, the caller fetches upstream and publishes; another replica's, wait for it and read
   * its copy. Shared storage or Redis being down is not fatal: the replica fetches upstream itself,
   * at once, without waiting for another replica's download (its copy could not be read anyway).
   */
  async #fromShared(
    digest: Digest,
    repository: string,
    started: number,
    upstream: RegistryApi,
  ): Promise<Source | { stored: number } | { release: ((published: boolean) => Promise<void>) | undefined }> {
    const { coordinator, lockTtlMs, peers } = this.#shared as SharedTier;
    const look = () => this.#openShared(digest, repository, started);
    const alone = { release: undefined };
    if (!coordinator) {
      const found = await look();
      return found === undefined || found === 'failing' ? alone : found;
    }
    // 'failing' ends the turn like a find: no lock is taken or waited for.
    const turn = await coordinator.turn(digest.hex, lockTtlMs, {
      look,
      onWait: () => {
        this.sharedWaits++;
      },
      ...(peers
        ? { fromHolder: (holder: string) => this.#fromPeer(peers, holder, digest, repository, upstream) }
        : {}),
    });
    // Redis failed, or the holder could not publish: fetch alone.
    if (!turn) return alone;
    if (!('found' in turn)) return turn;
    return turn.found === 'failing' ? alone : turn.found;
  }

  /**
   * Another replica's copy, if there is a usable one: up to SHARED_CHECKED_FIRST_BYTES it is copied
   * into the store and checked right here ({ stored }), a bigger one is returned to be streamed
   * (and checked) like an upstream body. A copy that is not the blob is removed and ignored.
   * 'failing': the shared store cannot be read now.
   */
  async #openShared(
    digest: Digest,
    repository: string,
    started: number,
  ): Promise<Source | { stored: number } | 'failing' | undefined> {
    const remote = (this.#shared as SharedTier).store;
    let found: Awaited<ReturnType<S3BlobStore['open']>>;
    try {
      found = await remote.open(digest);
    } catch (err) {
      // Skipped while down: the store said so once, when it failed.
      if (!(err instanceof SharedStoreDownError))
        this.#log.warn({ digest: digest.value, err: (err as Error).message }, 'shared store unavailable');
      return 'failing';
    }
    if (!found) return undefined;
    if (found.etag !== undefined && this.#badShared.get(digest.hex) === found.etag) {
      found.body.destroy();
      return undefined;
    }
    // The size a manifest gives is the blob's: a copy of another size is refused unread.
    const known = (this.#shared as SharedTier).sizes?.get(digest.hex);
    if (known !== undefined && found.size !== known) {
      found.body.destroy();
      await this.#discard(digest, found.etag, new SizeMismatchError(known, found.size));
      return undefined;
    }
    if (found.size > SHARED_MAX_BLOB_BYTES) {
      found.body.destroy();
      this.#log.warn(
        { digest: digest.value, size: found.size, max: SHARED_MAX_BLOB_BYTES },
        'shared store copy claims more than a shared blob may hold: not read',
      );
      return undefined;
    }
    const source: Source = {
      origin: 'shared',
      body: found.body,
      size: found.size,
      etag: found.etag,
      // The rest of the same object only (another one published since may have another size).
      resume: async (offset) => {
        const rest = await remote.open(digest, offset);
        if (rest && (rest.etag !== found.etag || rest.size !== found.size)) {
          rest.body.destroy();
          return undefined;
        }
        return rest?.body;
      },
    };
    if (found.size > SHARED_CHECKED_FIRST_BYTES) return source;
    // Filled without clients: nobody sees a byte before the digest matched.
    try {
      await this.#store(new BlobFill(digest, this.store.pathOf(digest)), source, repository, started);
    } catch (err) {
      // The bucket's connection broke (beyond resuming) or went idle (S3_IDLE_TIMEOUT_MS): fetch
      // upstream, now. Anything else (a full disk, shutting down) fails this fill as it would an
      // upstream one.
      if (isUpstreamBodyError(err) || isBucketTimeout(err)) return 'failing';
      if (!isContentError(err)) throw err;
      await this.#discard(digest, found.etag, err as Error);
      return undefined;
    }
    this.sharedFills++;
    return { stored: found.size };
  }

  /**
   * A shared copy that is not its blob: counted, never read again by this replica, and removed from
   * the bucket so no other replica reads it either (if another published a good copy meanwhile, that
   * one stays: see S3BlobStore.discard).
   */
  #discard(digest: Digest, etag: string | undefined, err: Error): Promise<void> {
    if (etag !== undefined) this.#badShared.set(digest.hex, etag);
    this.sharedDiscarded++;
    this.#log.error({ digest: digest.value, err: err.message }, 'shared store copy is not its blob: removed');
    return (this.#shared as SharedTier).store.discard(digest, etag).catch((e: Error) => {
      this.#log.warn({ digest: digest.value, err: e.message }, 'removing a bad shared copy failed');
    });
  }

  /**
   * A blob this replica fetched and verified goes to the shared store, then the fleet is told
   * (releasing the fleet's turn, the caller's, announces it). False when the store did not take it.
   */
  async #publish(digest: Digest, size: number): Promise<boolean> {
    if (size > SHARED_MAX_BLOB_BYTES) return false;
    try {
      await (this.#shared as SharedTier).store.publishFile(digest, this.store.pathOf(digest), size);
      this.published++;
      return true;
    } catch (err) {
      if (!(err instanceof SharedStoreDownError))
        this.#log.warn(
          { digest: digest.value, err: (err as Error).message },
          'publishing to the shared store failed',
        );
      return false;
    }
  }

  /** Streams a source into the store: hashed, resumed on a broken body, verified, committed. */
  async #store(fill: BlobFill, source: Source, repository: string, started: number): Promise<void> {
    const digest = fill.digest;
    const size = source.size;
    if (!(await this.store.hasRoomFor(size ?? 0))) {
      source.body.destroy();
      throw new NoRoomError(size);
    }
    let writer: BlobWriter | undefined;
    try {
      writer = await this.store.createWriter(digest);
      fill.streaming(size, writer.tempPath);
      const segments = await this.#ranged(fill, writer, source);
      let body = source.body;
      let resumes = 0;
      for (; segments === undefined; ) {
        const sink = fillSink(writer, fill, size, this.store);
        this.#bodies.set(digest.hex, body);
        try {
          await pipeline(body, sink.stream);
          break;
        } catch (err) {
          await sink.settled();
          if (!isUpstreamBodyError(err) || size === undefined) throw err;
          // Resume where the verified-so-far bytes end instead of starting over (big layers on a
          // flaky link: rpardini/docker-registry-proxy#157). The retry itself may meet the dying
          // connection: that counts as one of the attempts.
          let next: Readable | undefined;
          while (!next && resumes < MAX_RESUMES) {
            resumes++;
            next = await source.resume(writer.written, size).catch(() => undefined);
          }
          if (!next) throw err;
          this.#log.info(
            { digest: digest.value, from: writer.written, size, err: (err as Error).message },
            'resuming blob download',
          );
          body = next;
        }
      }
      writer.verify(size);
      fill.progress(writer.written);
      fill.verified();
      await writer.commit(size, true);
      fill.committed();
      this.#bodies.delete(digest.hex);
      this.#log.info(
        {
          digest: digest.value,
          repository,
          bytes: writer.written,
          ms: Date.now() - started,
          from: source.origin,
          ...(segments === undefined ? {} : { segments, parallel: this.#parallel }),
        },
        'blob cached',
      );
    } catch (err) {
      this.#bodies.delete(digest.hex);
      source.body.destroy();
      await writer?.abort().catch(() => {});
      this.store.noteWriteFailure(err);
      if (err instanceof DigestMismatchError) this.digestMismatches++;
      this.#log.warn({ digest: digest.value, repository, err: (err as Error).message }, 'blob fill failed');
      throw err;
    }
  }

  /**
   * A big upstream blob of known size, fetched in segments over several connections when the
   * upstream honours Range (cache/ranged-fill.ts, docs/behaviour.md): the number of segments once
   * every byte is written and hashed. Undefined when it is not: the caller reads `source.body`, the
   * one stream, as for any other blob. The first segment comes from `source.body` itself; the second
   * is the probe, asked while the first body is sampled: a first body that keeps up (ranged-fill.ts
   * `keepsUp`) means one stream, the probe dropped; anything but the probe's exact 206 (a 200 from
   * an upstream that ignores Range, an error) means one stream too, no harm done.
   */
  async #ranged(fill: BlobFill, writer: BlobWriter, source: Source): Promise<number | undefined> {
    const { size, range } = source;
    if (!range || size === undefined || size < PARALLEL_MIN_BYTES || this.#parallel < 2) return undefined;
    const digest = fill.digest;
    // Shutdown during the sample or the probe drops the first body like any other.
    this.#bodies.set(digest.hex, source.body);
    const segmentBytes = segmentBytesFor(size, this.#parallel);
    // The probe goes out while the first body is sampled: a slow link pays no wait for the sample.
    const probing = range(segmentBytes, Math.min(size, 2 * segmentBytes) - 1, size).catch(
      (err: Error) => err,
    );
    const sample = await keepsUp(source.body);
    if (sample.replay) source.body = sample.replay;
    if (sample.fast || sample.replay) {
      if (sample.fast) this.ranged.keptUp++;
      void probing.then((p) => p instanceof Readable && p.destroy());
      return undefined;
    }
    const probe = await probing;
    if (!(probe instanceof Readable)) {
      this.ranged.fallbacks++;
      this.#log.info(
        { digest: digest.value, size, answer: probe === 'whole' ? 200 : probe.message },
        'upstream did not honour a Range request: blob fetched in one stream',
      );
      return undefined;
    }
    this.ranged.fills++;
    const segments = Math.ceil(size / segmentBytes);
    this.#log.debug({ digest: digest.value, size, segments, parallel: this.#parallel }, 'ranged fill');
    const download = new RangedFill(writer, fill, {
      size,
      segmentBytes,
      parallel: this.#parallel,
      // Extra connections only while no client's fill waits for a turn in the download budget: the
      // fill holds one turn, its other segments are taken from room nobody else is asking for.
      width: () => (this.#limit.pendingCount > 0 ? 1 : this.#parallel),
      fetch: async (start, end) => {
        const body = await range(start, end, size);
        if (body === 'whole')
          throw new UpstreamUnreachableError('upstream ignored a Range request', 'ERANGE');
        return body;
      },
      first: new Map([
        [0, source.body],
        [1, probe],
      ]),
      roomCheckBytes: FILL_ROOM_CHECK_BYTES,
      checkRoom: async (written) => {
        if (!(await this.store.hasRoomFor(size - written, 0))) throw new NoRoomError(size);
      },
      onSegment: () => {
        this.ranged.segments++;
      },
      onRetry: (index, err) => {
        this.ranged.retries++;
        this.#log.info({ digest: digest.value, segment: index, err: err.message }, 'retrying a blob segment');
      },
    });
    this.#bodies.set(digest.hex, download);
    await download.run();
    return segments;
  }

  /**
   * Resolves once no fill is running: every fill started before or while waiting has committed
   * (renamed into place, after the last byte went out) or failed. Tests and benchmarks wait on it
   * instead of sleeping.
   */
  async settled(): Promise<void> {
    for (;;) {
      const running = [...this.#inflight.values()].filter(
        (f) => f.state !== 'committed' && f.state !== 'failed',
      );
      if (running.length === 0) return;
      await Promise.all(running.map((f) => f.finished.catch(() => {})));
    }
  }
}

/** Runs a fill when its turn comes (a p-limit, or a caller that bounds its fills itself). */
export type Budget = (run: () => Promise<void>) => Promise<void>;

/** Where a fill's bytes come from: the upstream registry, or another replica's copy in the shared store. */
interface Source {
  origin: 'upstream' | 'shared' | 'peer';
  body: Readable;
  size: number | undefined;
  /** A shared copy's object, to discard that one (and no newer one) if it is not the blob. */
  etag?: string | undefined;
  /** The rest of the body from `offset`, after a broken connection; undefined if it cannot. */
  resume(offset: number, size: number): Promise<Readable | undefined>;
  /** Bytes [start, end] of a blob of `size` (a ranged fill's segment); 'whole' if Range was ignored. */
  range?: (start: number, end: number, size: number) => Promise<Readable | 'whole'>;
}

/** Storage and coordination shared by replicas (docs/scaling-out.md, "Scaling out"). */
export interface SharedTier {
  store: S3BlobStore;
  coordinator: Coordinator | undefined;
  /** A download lock not refreshed for this long is free again (its holder died). */
  lockTtlMs: number;
  /** Blob sizes from the manifests this replica served: a shared copy must have that size. */
  sizes?: KnownSizes | undefined;
  /** Replicas with a peer listener: blobs streamed from the replica downloading them. */
  peers?: PeerBlobs | undefined;
  /** Replicas sharing hosted repositories: a blob with no upstream the bucket lacks, asked of the fleet (shared/blob-repair.ts). */
  repair?: { ask(hex: string): Promise<boolean> } | undefined;
}

/** Another replica's blob as it downloads it (fleet-peers, over the signed peer listener). */
export interface PeerBlobs {
  open(holder: string, digest: Digest): Promise<{ body: Readable; size: number } | undefined>;
}

/** A fill whose source is complete and in the store already: its clients read the stored file. */
function committedFill(fill: BlobFill, size: number): void {
  fill.streaming(size, fill.finalPath);
  fill.progress(size);
  fill.verified();
  fill.committed();
}

/** The bytes were not the blob (as opposed to a broken connection or a full disk). */
function isContentError(err: unknown): boolean {
  return err instanceof DigestMismatchError || err instanceof SizeMismatchError;
}

/** Upstream body failures worth a ranged retry: the connection, not our disk or the content. */
function isUpstreamBodyError(err: unknown): boolean {
  if (err instanceof undiciErrors.UndiciError) return true;
  const code = (err as { code?: string }).code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE';
}

/**
 * Where upstream bytes go: the temp file, hashed on the way. Chunks that queue up while a write is
 * in flight are written together (writev), so a fast upstream costs few syscalls; readers are told
 * after each write.
 */
function fillSink(
  writer: BlobWriter,
  fill: BlobFill,
  size: number | undefined,
  store: BlobStore,
): { stream: Writable; settled: () => Promise<void> } {
  // The write in flight, so a resume reads `writer.written` only once it is final.
  let inFlight: Promise<void> = Promise.resolve();
  let nextRoomCheck = writer.written + FILL_ROOM_CHECK_BYTES;
  const write = (chunks: Buffer[], callback: (err?: Error | null) => void) => {
    inFlight = writer
      .writev(chunks)
      .then(async () => {
        const written = writer.written;
        if (size !== undefined && written > size) throw new SizeMismatchError(size, written);
        if (size === undefined && written > MAX_UNSIZED_BLOB_BYTES) {
          throw new UpstreamUnreachableError(
            `upstream blob body without Content-Length larger than ${MAX_UNSIZED_BLOB_BYTES} bytes`,
            'ETOOBIG',
          );
        }
        if (written >= nextRoomCheck) {
          nextRoomCheck = written + FILL_ROOM_CHECK_BYTES;
          // What is still to come must fit too; unsized, at least what is there must.
          if (!(await store.hasRoomFor(size === undefined ? 0 : size - written, 0)))
            throw new NoRoomError(size);
        }
        fill.progress(written);
      })
      .then(
        () => callback(),
        (err: Error) => callback(err),
      );
  };
  const stream = new Writable({
    highWaterMark: 1024 * 1024,
    write: (chunk: Buffer, _encoding, callback) => write([chunk], callback),
    writev: (chunks, callback) =>
      write(
        chunks.map((c) => c.chunk as Buffer),
        callback,
      ),
  });
  return { stream, settled: () => inFlight.catch(() => {}) };
}
