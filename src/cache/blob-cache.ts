import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { LimitFunction } from 'p-limit';
import { errors as undiciErrors } from 'undici';
import type { Logger } from '../observe/logger.js';
import type { Digest } from '../oci/digest.js';
import type { Coordinator } from '../shared/coordinator.js';
import type { S3BlobStore } from '../shared/s3-store.js';
import { headerValue, type UpstreamClient } from '../upstream/client.js';
import { UpstreamUnreachableError } from '../upstream/errors.js';
import { upstreamFailure } from '../upstream/status.js';
import { type BlobStore, type BlobWriter, DigestMismatchError, SizeMismatchError } from './blob-store.js';
import { BlobFill } from './fill.js';

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
 * Blobs: served from the store, or filled from the upstream once per digest however many clients
 * ask at the same time (the in-flight map is the single flight). Fills are detached from the
 * requests that started them: they run to the end and are committed even if every client left.
 */
export class BlobCache {
  readonly store: BlobStore;
  readonly #upstream: UpstreamClient;
  readonly #limit: LimitFunction;
  readonly #log: Logger;
  readonly #inflight = new Map<string, BlobFill>();
  /** The upstream body each running fill reads, so shutdown can abort what it cannot wait for. */
  readonly #bodies = new Map<string, Readable>();

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

  /** Clients currently served from a download another request started (single-flight waiters). */
  waiters = 0;

  /** Upstream bodies that did not match their digest, since start (nothing of them was stored). */
  digestMismatches = 0;

  /** Fills served from the shared store, blobs this replica published, waits for another replica's download. */
  sharedFills = 0;
  published = 0;
  sharedWaits = 0;
  readonly #shared: SharedTier | undefined;

  constructor(
    store: BlobStore,
    upstream: UpstreamClient,
    limit: LimitFunction,
    log: Logger,
    shared?: SharedTier,
  ) {
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

  /** The fill for this digest: the running one (joined: false → coalesced) or a new one. */
  fill(
    repository: string,
    digest: Digest,
    upstream: UpstreamClient = this.#upstream,
  ): { fill: BlobFill; joined: boolean } {
    const running = this.#inflight.get(digest.hex);
    if (running) return { fill: running, joined: true };
    const fill = new BlobFill(digest, this.store.pathOf(digest));
    this.#inflight.set(digest.hex, fill);
    this.#limit(() => this.#run(fill, repository, upstream))
      .catch((err: Error) => {
        fill.fail(err);
      })
      .finally(() => {
        if (this.#inflight.get(digest.hex) === fill) this.#inflight.delete(digest.hex);
      });
    return { fill, joined: false };
  }

  /** A ranged GET from `offset`; undefined unless the upstream answers 206 from exactly there. */
  async #resume(
    upstream: UpstreamClient,
    repository: string,
    digest: Digest,
    offset: number,
    size: number,
  ): Promise<Readable | undefined> {
    const res = await upstream.request({
      method: 'GET',
      path: `/v2/${repository}/blobs/${digest.value}`,
      repository,
      headers: { range: `bytes=${offset}-` },
    });
    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(headerValue(res.headers['content-range']) ?? '');
    if (res.status === 206 && Number(range?.[1]) === offset && Number(range?.[3]) === size) return res.body;
    res.body.destroy();
    return undefined;
  }

  async #run(fill: BlobFill, repository: string, upstream: UpstreamClient): Promise<void> {
    const digest = fill.digest;
    const started = Date.now();
    // Committed by another fill between the caller's look at the store and this one starting.
    const stored = await this.store.size(digest);
    if (stored !== undefined) {
      fill.streaming(stored, fill.finalPath);
      fill.progress(stored);
      fill.verified();
      fill.committed();
      return;
    }
    // With a shared store: another replica's verified copy, or the fleet-wide lock to fetch it.
    const shared = this.#shared ? await this.#fromShared(digest) : undefined;
    const release = shared && 'release' in shared ? shared.release : undefined;
    try {
      const source =
        shared && 'body' in shared ? shared : await this.#fromUpstream(upstream, repository, digest);
      await this.#store(fill, source, repository, started);
      if (source.origin === 'upstream' && this.#shared) await this.#publish(digest, fill.written);
    } finally {
      await release?.();
    }
  }

  async #fromUpstream(upstream: UpstreamClient, repository: string, digest: Digest): Promise<Source> {
    const res = await upstream.request({
      method: 'GET',
      path: `/v2/${repository}/blobs/${digest.value}`,
      repository,
    });
    if (res.status !== 200) {
      res.body.destroy();
      throw upstreamFailure(res.status, res.headers, 'BLOB_UNKNOWN', { digest: digest.value });
    }
    const length = res.headers['content-length'];
    return {
      origin: 'upstream',
      body: res.body,
      size: length === undefined ? undefined : Number(length),
      resume: (offset, size) => this.#resume(upstream, repository, digest, offset, size),
    };
  }

  /**
   * The shared store's copy when there is one. Else, with a coordinator, the fleet's turn to fetch
   * it: taken, the caller fetches upstream and publishes; another replica's, wait for it and read
   * its copy. Shared storage or Redis being down is not fatal: the replica fetches upstream itself.
   */
  async #fromShared(digest: Digest): Promise<Source | { release: (() => Promise<void>) | undefined }> {
    const { coordinator, lockTtlMs } = this.#shared as SharedTier;
    const look = () => this.#openShared(digest);
    if (!coordinator) return (await look()) ?? { release: undefined };
    const turn = await coordinator.turn(digest.hex, lockTtlMs, {
      look,
      onWait: () => {
        this.sharedWaits++;
      },
    });
    if (!turn) return { release: undefined }; // Redis failed (after a look): fetch alone
    return 'found' in turn ? turn.found : turn;
  }

  async #openShared(digest: Digest): Promise<Source | undefined> {
    const remote = (this.#shared as SharedTier).store;
    try {
      const found = await remote.open(digest);
      if (!found) return undefined;
      this.sharedFills++;
      return {
        origin: 'shared',
        body: found.body,
        size: found.size,
        resume: async (offset) => (await remote.open(digest, offset))?.body,
      };
    } catch (err) {
      this.#log.warn({ digest: digest.value, err: (err as Error).message }, 'shared store unavailable');
      return undefined;
    }
  }

  /** A blob this replica fetched and verified goes to the shared store, then the fleet is told. */
  async #publish(digest: Digest, size: number): Promise<void> {
    try {
      // Releasing the fleet's turn (the caller's) announces it to the waiting replicas.
      await (this.#shared as SharedTier).store.publishFile(digest, this.store.pathOf(digest), size);
      this.published++;
    } catch (err) {
      this.#log.warn(
        { digest: digest.value, err: (err as Error).message },
        'publishing to the shared store failed',
      );
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
      let body = source.body;
      let resumes = 0;
      for (;;) {
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
}

/** Where a fill's bytes come from: the upstream registry, or another replica's copy in the shared store. */
interface Source {
  origin: 'upstream' | 'shared';
  body: Readable;
  size: number | undefined;
  /** The rest of the body from `offset`, after a broken connection; undefined if it cannot. */
  resume(offset: number, size: number): Promise<Readable | undefined>;
}

/** Storage and coordination shared by replicas (issue: scaling out). */
export interface SharedTier {
  store: S3BlobStore;
  coordinator: Coordinator | undefined;
  /** A download lock not refreshed for this long is free again (its holder died). */
  lockTtlMs: number;
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
