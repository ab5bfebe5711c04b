import { createHash } from 'node:crypto';
import type { Exchange } from './api/exchange.js';
import type { UploadSession, UploadSessions } from './hosted/uploads.js';
import type { Logger } from './observe/logger.js';
import { RegistryError } from './oci/errors.js';
import { type PeerClient, PeerUnavailableError } from './peer/client.js';
import { forwardUpload } from './peer/upload-proxy.js';
import type { ReplicaRegistry, StagedPart, UploadRecord } from './shared/replica-registry.js';
import type { S3BlobStore } from './shared/s3-store.js';

/** Where an owner takes a forwarded upload request: `<prefix><name>/<session>`. */
export const PEER_UPLOADS = '/_peer/v1/uploads/';

/**
 * Parts staged per session at most (one per PATCH; Docker and containerd send one or a few): the
 * session's record in Redis stays within 64 KiB. Beyond it the session is not staged any further,
 * and cannot be taken over if its owner dies.
 */
export const MAX_STAGED_PARTS = 1000;

/**
 * Upload sessions across replicas. A session is owned by the replica that opened it (its bytes,
 * its running sha256), recorded in Redis with the parts of it staged in the bucket
 * (shared/replica-registry.ts): each chunk a client sends is written to
 * `<prefix>uploads/<id>/<start>-<end>` before the chunk is acknowledged.
 *
 * A PATCH, PUT, GET or DELETE of it that a load balancer sends to another replica is forwarded to
 * the owner over the peer listener (peer/upload-proxy.ts) and answered as the owner answers. If
 * the owner is dead (no replica record, or its peer listener refuses the connection), the replica
 * the request reached takes the session over: it reads the staged parts back in order, checks
 * each against the MD5 the bucket gave it, hashes them again, records itself as the owner, and
 * answers the request itself. The client never notices; the finished blob is still only accepted
 * if its sha256 is the digest the client names, so a staged part someone altered can fail the
 * upload, never make a wrong blob.
 */
export class FleetUploads {
  readonly #registry: ReplicaRegistry;
  readonly #client: PeerClient;
  readonly #bucket: S3BlobStore;
  readonly #sessions: UploadSessions;
  readonly #ttlMs: number;
  readonly #log: Logger;
  /** Staged parts of the sessions this replica owns. */
  readonly #parts = new Map<string, StagedPart[]>();
  readonly #clientOf: (req: Exchange['req']) => string;
  /** Sessions taken over (hubcache_upload_takeovers_total). */
  takeovers = 0;

  constructor(
    parts: {
      registry: ReplicaRegistry;
      client: PeerClient;
      bucket: S3BlobStore;
      sessions: UploadSessions;
      /** The client a request comes from (behind --trusted-proxy, the one X-Forwarded-For names): its upload caps. */
      clientOf: (req: Exchange['req']) => string;
    },
    ttlMs: number,
    log: Logger,
  ) {
    this.#registry = parts.registry;
    this.#client = parts.client;
    this.#bucket = parts.bucket;
    this.#sessions = parts.sessions;
    this.#clientOf = parts.clientOf;
    this.#ttlMs = ttlMs;
    this.#log = log;
  }

  /** A session opened here: recorded before the client learns its id (503 when Redis does not take it). */
  async claim(id: string, name: string): Promise<void> {
    try {
      await this.#registry.claimUpload(id, name, this.#ttlMs);
      this.#parts.set(id, []);
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'redis: upload session not recorded');
      throw new RegistryError(
        'UNAVAILABLE',
        "the fleet's shared records are unavailable: no upload started",
        {},
      );
    }
  }

  /**
   * Bytes [start, end) of a session were written here: staged in the bucket and recorded, before the
   * client hears so. A failure only costs the takeover (the owner still holds the bytes): logged.
   */
  async staged(session: UploadSession, start: number, end: number): Promise<void> {
    const parts = this.#parts.get(session.id);
    if (!parts || end <= start || parts.length >= MAX_STAGED_PARTS) return;
    let owned: boolean;
    try {
      const etag = await this.#bucket.stageUpload(session.id, session.file, start, end);
      parts.push([start, end, etag]);
      owned = await this.#registry.updateUpload(session.id, session.name, this.#ttlMs, parts);
    } catch (err) {
      this.#parts.delete(session.id);
      this.#log.warn(
        { upload: session.id, err: (err as Error).message },
        'upload not staged in the shared store: it cannot be taken over if this replica dies',
      );
      return;
    }
    if (!owned) {
      // Another replica took the session over while this one looked dead (a partition): it is
      // that one's now, and this one must not acknowledge anything more of it.
      this.#parts.delete(session.id);
      await this.#sessions.cancel(session);
      throw new RegistryError(
        'BLOB_UPLOAD_INVALID',
        'the upload moved to another replica: start this blob again',
        {},
      );
    }
  }

  /** The session ended here (finished, cancelled): its record and staged parts go. */
  release(id: string): void {
    const parts = this.#parts.get(id) ?? [];
    this.#parts.delete(id);
    void this.#registry.releaseUpload(id);
    void this.#bucket.dropUpload(
      id,
      parts.map(([start, end]) => [start, end]),
    );
  }

  /**
   * A request for a session this replica does not hold: forwarded to its owner (true: answered),
   * or, the owner dead, the session taken over here (false: the caller answers it, now local).
   * False too when no replica owns it (the caller answers BLOB_UPLOAD_UNKNOWN).
   */
  async forward(ex: Exchange, name: string, id: string, again = true): Promise<boolean> {
    const owned = await this.#registry.uploadOwner(id).catch(() => undefined);
    if (!owned || owned.name !== name) return false;
    const peer = await this.#registry.peerOf(owned.owner);
    if (peer && (await this.#alive(peer))) {
      ex.outcome = 'HOSTED';
      const query = ex.query.toString();
      const path = `${PEER_UPLOADS}${name}/${id}${query ? `?${query}` : ''}`;
      try {
        await forwardUpload(this.#client, peer, path, ex.req, ex.res);
        return true;
      } catch (err) {
        // Died since the ping: the body may have gone with the connection. The client retries.
        if (err instanceof PeerUnavailableError && !ex.res.headersSent)
          throw new RegistryError(
            'UNAVAILABLE',
            'the replica holding this upload does not answer: retry',
            {},
          );
        throw err;
      }
    }
    // Another replica took it over at the same moment: that one is the owner now.
    if (!(await this.#takeOver(ex, id, owned)) && again) return this.forward(ex, name, id, false);
    return false;
  }

  /**
   * Whether the owner's peer listener takes connections. Asked before a body goes to it: a body
   * handed to a connection that is then refused is lost with it, and the request could no longer
   * be answered here. A refused connection is a dead owner (its record outlives it by up to 15 s);
   * anything else unanswered is not known to be dead: 503, the client retries.
   */
  async #alive(peer: URL): Promise<boolean> {
    try {
      const res = await this.#client.request(peer, 'GET', '/_peer/v1/ping');
      res.body.destroy();
      return true;
    } catch (err) {
      if (err instanceof PeerUnavailableError && err.code === 'ECONNREFUSED') return false;
      throw new RegistryError('UNAVAILABLE', 'the replica holding this upload does not answer: retry', {});
    }
  }

  /** False when another replica took the session first. */
  async #takeOver(ex: Exchange, id: string, owned: UploadRecord): Promise<boolean> {
    if (!(await this.#registry.takeUpload(id, owned, this.#ttlMs).catch(() => false))) return false;
    try {
      await this.#sessions.restore(id, owned.name, this.#clientOf(ex.req), this.#read(id, owned.parts));
      this.#parts.set(id, [...owned.parts]);
      this.takeovers++;
      this.#log.info(
        { upload: id, bytes: owned.parts.at(-1)?.[1] ?? 0, from: owned.owner },
        'upload session taken over',
      );
    } catch (err) {
      if (this.#sessions.has(id)) throw err;
      this.#log.warn({ upload: id, err: (err as Error).message }, 'upload session could not be taken over');
      // The caller answers BLOB_UPLOAD_UNKNOWN: the client pushes that blob again.
      void this.#registry.releaseUpload(id);
      void this.#bucket.dropUpload(
        id,
        owned.parts.map(([start, end]) => [start, end]),
      );
    }
    return true;
  }

  /** A session's staged parts in order, each checked against its MD5 as it streams. */
  async *#read(id: string, parts: StagedPart[]): AsyncIterable<Uint8Array> {
    for (const [start, end, etag] of parts) {
      const body = await this.#bucket.openUpload(id, start, end);
      if (!body) throw new Error(`staged part ${start}-${end} is gone`);
      const md5 = createHash('md5');
      let bytes = 0;
      for await (const chunk of body) {
        md5.update(chunk as Buffer);
        bytes += (chunk as Buffer).length;
        if (bytes > end - start) throw new Error(`staged part ${start}-${end} is longer than that`);
        yield chunk as Buffer;
      }
      if (bytes !== end - start || md5.digest('hex') !== etag)
        throw new Error(`staged part ${start}-${end} is not what was staged`);
    }
  }
}
