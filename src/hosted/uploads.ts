import { createHash, type Hash, randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rm } from 'node:fs/promises';
import { type BlobStore, writevAt } from '../cache/blob-store.js';
import type { Logger } from '../observe/logger.js';
import type { Digest } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';
import { uploadPath, uploadsDir } from '../storage/layout.js';

/**
 * Upload sessions open at once, in all. Each costs memory (its hash state) and, until it ends or
 * expires (an hour idle by default), the disk its bytes take: without a cap, a client that opens
 * sessions and never finishes them takes all of either. 1,000 is 200 docker clients each pushing
 * the 5 layers docker uploads at once (its max-concurrent-uploads default).
 */
export const MAX_UPLOAD_SESSIONS = 1000;

/**
 * Upload sessions open at once per client address, so one client cannot take every session: 100 is
 * 20 docker pushes at once from one host (a CI runner). Clients behind one proxy or NAT share it.
 */
export const MAX_UPLOAD_SESSIONS_PER_CLIENT = 100;

/**
 * Retry-After on a session refused by the caps: sessions end as pushes finish (seconds to minutes)
 * or expire, so a minute is long enough to find room and short enough for a push to carry on.
 */
export const UPLOAD_RETRY_AFTER_SECONDS = 60;

/**
 * The largest blob one upload may make. The biggest layers seen in practice (CUDA and model
 * images) are a few GiB; 10 GiB leaves room for those while one session cannot fill a disk on its
 * own (--min-free-space protects the disk as a whole).
 */
export const MAX_UPLOAD_BYTES = 10 * 1024 * 1024 * 1024;

/** Chunks are coalesced up to this before a write (the request's own are 16-64 KiB); free space is re-checked as often. */
const FLUSH_BYTES = 1024 * 1024;

/** One blob upload in progress (spec: an upload session, addressed by its Location). */
export interface UploadSession {
  readonly id: string;
  readonly name: string;
  readonly file: string;
  /** The client address that started it: sessions count toward it. */
  readonly client: string;
  /** Bytes received so far: the next chunk must start here. */
  offset: number;
  touchedAt: number;
  /**
   * The sha256 of the bytes so far. It stays in memory while the file is opened by each PATCH or
   * PUT and closed after it: an idle session holds no file descriptor (a flood of sessions once
   * exhausted them, and with them every connection, cached pulls included).
   */
  hash: Hash;
  /** A PATCH or PUT is writing: a second one at the same time is refused, not interleaved. */
  busy: boolean;
}

/**
 * Upload sessions: bytes stream to `<data>/uploads/<id>` as they arrive, hashed on the way, and
 * only a finished upload whose sha256 matches the digest the client names is moved into the blob
 * store. Sessions live in this process's memory (a restart forgets them: clients start over), and
 * one idle longer than the expiry is removed with its file. Sessions are capped in all and per
 * client address.
 */
export class UploadSessions {
  readonly dir: string;
  readonly #data: string;
  readonly #store: BlobStore;
  readonly #expiryMs: number;
  readonly #log: Logger;
  readonly #sessions = new Map<string, UploadSession>();
  /** Open sessions per client address. */
  readonly #perClient = new Map<string, number>();
  #sweeper: NodeJS.Timeout | undefined;

  constructor(dataDir: string, store: BlobStore, expiryMs: number, log: Logger) {
    this.#data = dataDir;
    this.dir = uploadsDir(dataDir);
    this.#store = store;
    this.#expiryMs = expiryMs;
    this.#log = log;
  }

  /** Removes files of sessions a previous process left (none of them can be resumed), starts expiry. */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      await rm(uploadPath(this.#data, name), { force: true });
    }
    this.#sweeper = setInterval(() => void this.sweep(), Math.min(60_000, this.#expiryMs)).unref();
  }

  get count(): number {
    return this.#sessions.size;
  }

  /** A new session for `client`, or TOOMANYREQUESTS when the caps are reached. */
  start(name: string, client: string, id: string = randomUUID()): UploadSession {
    const mine = this.#perClient.get(client) ?? 0;
    if (this.#sessions.size >= MAX_UPLOAD_SESSIONS || mine >= MAX_UPLOAD_SESSIONS_PER_CLIENT) {
      const all = this.#sessions.size >= MAX_UPLOAD_SESSIONS;
      throw new RegistryError(
        'TOOMANYREQUESTS',
        all
          ? `too many uploads in progress here (${MAX_UPLOAD_SESSIONS}): retry later`
          : `too many uploads in progress from ${client} (${MAX_UPLOAD_SESSIONS_PER_CLIENT}): finish or cancel some`,
        { limit: all ? MAX_UPLOAD_SESSIONS : MAX_UPLOAD_SESSIONS_PER_CLIENT },
        { 'Retry-After': String(UPLOAD_RETRY_AFTER_SECONDS) },
      );
    }
    const session: UploadSession = {
      id,
      name,
      client,
      file: uploadPath(this.#data, id),
      offset: 0,
      touchedAt: Date.now(),
      hash: createHash('sha256'),
      busy: false,
    };
    this.#sessions.set(id, session);
    this.#perClient.set(client, mine + 1);
    return session;
  }

  /** Whether this replica holds the session (another replica may: fleet-uploads.ts). */
  has(id: string): boolean {
    return this.#sessions.has(id);
  }

  /**
   * Takes over a session another replica owned (it died: fleet-uploads.ts), its bytes so far
   * written and hashed again here, under the same id. Nothing is kept if they cannot all be read.
   */
  async restore(
    id: string,
    name: string,
    client: string,
    bytes: AsyncIterable<Uint8Array>,
  ): Promise<UploadSession> {
    const session = this.start(name, client, id);
    try {
      await this.append(session, bytes);
    } catch (err) {
      await this.cancel(session);
      throw err;
    }
    return session;
  }

  /** The session `id` of repository `name`, or BLOB_UPLOAD_UNKNOWN. */
  get(name: string, id: string | undefined): UploadSession {
    const session = id ? this.#sessions.get(id) : undefined;
    if (!session || session.name !== name) throw unknownUpload(id);
    return session;
  }

  /**
   * Appends a request body at the session's offset. When the client says where its chunk starts
   * (Content-Range), it must be the current offset: RANGE_INVALID otherwise, nothing written.
   * A client that goes away mid-chunk keeps what arrived (it can ask for the offset and go on).
   * The upload is cut, and dropped, when it would pass MAX_UPLOAD_BYTES (`length`, the announced
   * size, is checked before anything is read) or the disk reaches --min-free-space as it streams: a
   * chunked body announces no size to check up front.
   */
  async append(
    session: UploadSession,
    body: AsyncIterable<Uint8Array>,
    chunk: { start?: number | undefined; length?: number | undefined } = {},
  ): Promise<void> {
    if (session.busy) {
      throw new RegistryError('BLOB_UPLOAD_INVALID', 'another request is writing to this upload', {});
    }
    if (chunk.start !== undefined && chunk.start !== session.offset) {
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
    if (chunk.length !== undefined && session.offset + chunk.length > MAX_UPLOAD_BYTES) {
      await this.cancel(session);
      throw tooLarge();
    }
    session.busy = true;
    let handle: FileHandle | undefined;
    let cut: RegistryError | undefined;
    try {
      handle = await open(session.file, constants.O_WRONLY | constants.O_CREAT);
      // Cancelled (DELETE, expiry) while opening: the file just created must not stay behind.
      if (this.#sessions.get(session.id) !== session) {
        await rm(session.file, { force: true });
        throw unknownUpload(session.id);
      }
      const file = handle;
      let pending: Uint8Array[] = [];
      let pendingBytes = 0;
      const flush = async () => {
        if (pendingBytes === 0) return;
        const chunks = pending;
        const total = pendingBytes;
        pending = [];
        pendingBytes = 0;
        await writevAt(file, chunks, total, session.offset);
        for (const c of chunks) session.hash.update(c);
        session.offset += total;
        this.#store.noteWritten(total);
      };
      try {
        for await (const data of body) {
          if (session.offset + pendingBytes + data.length > MAX_UPLOAD_BYTES) {
            cut = tooLarge();
            throw cut;
          }
          pending.push(data);
          pendingBytes += data.length;
          if (pendingBytes >= FLUSH_BYTES) {
            await flush();
            if (!(await this.#store.hasRoomFor(0))) {
              cut = noRoom();
              throw cut;
            }
          }
        }
      } finally {
        // Whatever arrived before a disconnect is kept, hashed, and counted in the offset.
        await flush();
      }
    } catch (err) {
      this.#store.noteWriteFailure(err);
      // An upload that cannot finish gives its disk back now, not at its expiry.
      if (err === cut) await this.cancel(session);
      throw err;
    } finally {
      await handle?.close().catch(() => {});
      session.busy = false;
      session.touchedAt = Date.now();
    }
  }

  /**
   * Ends the session: the bytes must hash to `digest` (DIGEST_INVALID otherwise, and the upload is
   * dropped), then they are made durable and moved into the blob store under that digest.
   */
  async finish(session: UploadSession, digest: Digest, beforeAdopt?: () => Promise<void>): Promise<number> {
    if (session.busy) {
      throw new RegistryError('BLOB_UPLOAD_INVALID', 'another request is writing to this upload', {});
    }
    session.busy = true;
    this.#forget(session);
    try {
      const actual = `sha256:${session.hash.digest('hex')}`;
      if (actual !== digest.value) {
        throw new RegistryError('DIGEST_INVALID', 'provided digest did not match uploaded content', {
          expected: digest.value,
          actual,
          size: session.offset,
        });
      }
      // Before the blob is in the store: from that moment the size bound may look at it.
      await beforeAdopt?.();
      // O_CREAT: an empty blob never had a chunk written.
      const handle = await open(session.file, constants.O_WRONLY | constants.O_CREAT);
      try {
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await this.#store.adopt(session.file, digest, session.offset);
      return session.offset;
    } finally {
      await rm(session.file, { force: true });
    }
  }

  async cancel(session: UploadSession): Promise<void> {
    this.#forget(session);
    await rm(session.file, { force: true });
  }

  /** Drops sessions idle for longer than the expiry (an abandoned push must not hold disk forever). */
  async sweep(now = Date.now()): Promise<number> {
    let removed = 0;
    for (const session of [...this.#sessions.values()]) {
      if (session.busy || now - session.touchedAt < this.#expiryMs) continue;
      await this.cancel(session);
      this.onExpired?.(session);
      removed++;
      this.#log.info(
        { repository: session.name, session: session.id, bytes: session.offset },
        'upload expired',
      );
    }
    return removed;
  }

  /** Told of each session the sweep removed (fleet-uploads.ts drops its staged parts). */
  onExpired: ((session: UploadSession) => void) | undefined;

  /** Repositories with an upload under way. */
  get repositories(): Set<string> {
    return new Set([...this.#sessions.values()].map((s) => s.name));
  }

  async close(): Promise<void> {
    if (this.#sweeper) clearInterval(this.#sweeper);
    for (const session of [...this.#sessions.values()]) this.#forget(session);
  }

  #forget(session: UploadSession): void {
    if (this.#sessions.get(session.id) !== session) return;
    this.#sessions.delete(session.id);
    const left = (this.#perClient.get(session.client) ?? 1) - 1;
    if (left > 0) this.#perClient.set(session.client, left);
    else this.#perClient.delete(session.client);
  }
}

function unknownUpload(id: string | undefined): RegistryError {
  return new RegistryError('BLOB_UPLOAD_UNKNOWN', 'blob upload unknown to registry', { session: id ?? null });
}

function tooLarge(): RegistryError {
  return new RegistryError('BLOB_UPLOAD_INVALID', `an upload may not exceed ${MAX_UPLOAD_BYTES} bytes`, {
    limit: MAX_UPLOAD_BYTES,
  });
}

function noRoom(): RegistryError {
  return new RegistryError('UNAVAILABLE', 'not enough free disk space for uploads', {});
}

/** Where the client sends the next chunk (relative: every client resolves it against the request URL). */
export function uploadLocation(session: UploadSession): string {
  return `/v2/${session.name}/blobs/uploads/${session.id}`;
}

/** The spec's progress header: the inclusive range received, `0-0` for nothing yet (as distribution does). */
export function rangeHeader(offset: number): string {
  return `0-${Math.max(0, offset - 1)}`;
}
