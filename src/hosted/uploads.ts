import { createHash, type Hash, randomUUID } from 'node:crypto';
import { type FileHandle, mkdir, open, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { type BlobStore, writevAt } from '../cache/blob-store.js';
import type { Logger } from '../observe/logger.js';
import type { Digest } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';

/** One blob upload in progress (spec: an upload session, addressed by its Location). */
export interface UploadSession {
  readonly id: string;
  readonly name: string;
  readonly file: string;
  /** Bytes received so far: the next chunk must start here. */
  offset: number;
  touchedAt: number;
  handle: FileHandle;
  hash: Hash;
  /** A PATCH or PUT is writing: a second one at the same time is refused, not interleaved. */
  busy: boolean;
}

/**
 * Upload sessions: bytes stream to `<data>/uploads/<id>` as they arrive, hashed on the way, and
 * only a finished upload whose sha256 matches the digest the client names is moved into the blob
 * store. Sessions live in this process's memory (a restart forgets them: clients start over), and
 * one idle longer than the expiry is removed with its file.
 */
export class UploadSessions {
  readonly dir: string;
  readonly #store: BlobStore;
  readonly #expiryMs: number;
  readonly #log: Logger;
  readonly #sessions = new Map<string, UploadSession>();
  #sweeper: NodeJS.Timeout | undefined;

  constructor(dataDir: string, store: BlobStore, expiryMs: number, log: Logger) {
    this.dir = path.join(dataDir, 'uploads');
    this.#store = store;
    this.#expiryMs = expiryMs;
    this.#log = log;
  }

  /** Removes files of sessions a previous process left (none of them can be resumed), starts expiry. */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      await rm(path.join(this.dir, name), { force: true });
    }
    this.#sweeper = setInterval(() => void this.sweep(), Math.min(60_000, this.#expiryMs)).unref();
  }

  get count(): number {
    return this.#sessions.size;
  }

  async start(name: string): Promise<UploadSession> {
    const id = randomUUID();
    const file = path.join(this.dir, id);
    const handle = await open(file, 'w+');
    const session: UploadSession = {
      id,
      name,
      file,
      offset: 0,
      touchedAt: Date.now(),
      handle,
      hash: createHash('sha256'),
      busy: false,
    };
    this.#sessions.set(id, session);
    return session;
  }

  /** The session `id` of repository `name`, or BLOB_UPLOAD_UNKNOWN. */
  get(name: string, id: string | undefined): UploadSession {
    const session = id ? this.#sessions.get(id) : undefined;
    if (!session || session.name !== name) {
      throw new RegistryError('BLOB_UPLOAD_UNKNOWN', 'blob upload unknown to registry', {
        session: id ?? null,
      });
    }
    return session;
  }

  /**
   * Appends a request body at the session's offset. When the client says where its chunk starts
   * (Content-Range), it must be the current offset: RANGE_INVALID otherwise, nothing written.
   * A client that goes away mid-chunk keeps what arrived (it can ask for the offset and go on).
   */
  async append(session: UploadSession, body: AsyncIterable<Uint8Array>, chunkStart?: number): Promise<void> {
    if (session.busy) {
      throw new RegistryError('BLOB_UPLOAD_INVALID', 'another request is writing to this upload', {});
    }
    if (chunkStart !== undefined && chunkStart !== session.offset) {
      throw new RegistryError(
        'RANGE_INVALID',
        'chunk does not start where the upload stands',
        {},
        {
          Range: rangeHeader(session.offset),
          Location: uploadLocation(session),
          'Docker-Upload-UUID': session.id,
        },
      );
    }
    session.busy = true;
    try {
      let pending: Uint8Array[] = [];
      let pendingBytes = 0;
      const flush = async () => {
        if (pendingBytes === 0) return;
        const chunks = pending;
        const total = pendingBytes;
        pending = [];
        pendingBytes = 0;
        await writevAt(session.handle, chunks, total, session.offset);
        for (const c of chunks) session.hash.update(c);
        session.offset += total;
      };
      try {
        for await (const chunk of body) {
          pending.push(chunk);
          pendingBytes += chunk.length;
          // Coalesce the request's small chunks (16-64 KiB) into fewer writes.
          if (pendingBytes >= 1024 * 1024) await flush();
        }
      } finally {
        // Whatever arrived before a disconnect is kept, hashed, and counted in the offset.
        await flush();
      }
    } catch (err) {
      this.#store.noteWriteFailure(err);
      throw err;
    } finally {
      session.busy = false;
      session.touchedAt = Date.now();
    }
  }

  /**
   * Ends the session: the bytes must hash to `digest` (DIGEST_INVALID otherwise, and the upload is
   * dropped), then they are made durable and moved into the blob store under that digest.
   */
  async finish(session: UploadSession, digest: Digest): Promise<number> {
    if (session.busy) {
      throw new RegistryError('BLOB_UPLOAD_INVALID', 'another request is writing to this upload', {});
    }
    session.busy = true;
    this.#sessions.delete(session.id);
    try {
      const actual = `sha256:${session.hash.digest('hex')}`;
      if (actual !== digest.value) {
        throw new RegistryError('DIGEST_INVALID', 'provided digest did not match uploaded content', {
          expected: digest.value,
          actual,
          size: session.offset,
        });
      }
      await session.handle.datasync();
      await session.handle.close();
      await this.#store.adopt(session.file, digest, session.offset);
      return session.offset;
    } finally {
      await session.handle.close().catch(() => {});
      await rm(session.file, { force: true });
    }
  }

  async cancel(session: UploadSession): Promise<void> {
    this.#sessions.delete(session.id);
    await session.handle.close().catch(() => {});
    await rm(session.file, { force: true });
  }

  /** Drops sessions idle for longer than the expiry (an abandoned push must not hold disk forever). */
  async sweep(now = Date.now()): Promise<number> {
    let removed = 0;
    for (const session of [...this.#sessions.values()]) {
      if (session.busy || now - session.touchedAt < this.#expiryMs) continue;
      await this.cancel(session);
      removed++;
      this.#log.info(
        { repository: session.name, session: session.id, bytes: session.offset },
        'upload expired',
      );
    }
    return removed;
  }

  /** Repositories with an upload under way. */
  get repositories(): Set<string> {
    return new Set([...this.#sessions.values()].map((s) => s.name));
  }

  async close(): Promise<void> {
    if (this.#sweeper) clearInterval(this.#sweeper);
    for (const session of [...this.#sessions.values()]) {
      this.#sessions.delete(session.id);
      await session.handle.close().catch(() => {});
    }
  }
}

/** Where the client sends the next chunk (relative: every client resolves it against the request URL). */
export function uploadLocation(session: UploadSession): string {
  return `/v2/${session.name}/blobs/uploads/${session.id}`;
}

/** The spec's progress header: the inclusive range received, `0-0` for nothing yet (as distribution does). */
export function rangeHeader(offset: number): string {
  return `0-${Math.max(0, offset - 1)}`;
}
