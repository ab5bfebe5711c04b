import { createHash } from 'node:crypto';
import { pipeline, type Readable, Transform } from 'node:stream';
import type { Logger } from '../observe/logger.js';
import type { Digest } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';
import { UpstreamUnreachableError } from '../upstream/errors.js';
import { type RegistryApi, UpstreamStatusError } from '../upstream/registry-api.js';
import { type BlobCache, MAX_UNSIZED_BLOB_BYTES, NoRoomError } from './blob-cache.js';
import type { BlobStore } from './blob-store.js';
import type { BlobFill } from './fill.js';
import type { KnownContent } from './known-content.js';
import type { CacheOutcome } from './manifest-cache.js';

/** A mirrored blob request's repository: its name upstream, the name the cache lists, its registry. */
export interface BlobTarget {
  name: string;
  key: string;
  route: { api: RegistryApi };
}

/**
 * The client a blob is read for, as the cache sees it: how it was served (the request log and
 * metrics), and when it leaves (a coalesced client counts as a waiter until then).
 */
export interface BlobClient {
  outcome?: CacheOutcome | undefined;
  readonly res: { once(event: 'close', listener: () => void): unknown };
}

/**
 * What a push may rely on after a blob HEAD answered yes (hosted/head-promises.ts): recorded only
 * while a push may create a repository.
 */
export interface HeadPromiseHooks {
  readonly createsOnPush: boolean;
  storedConfirmed(hex: string): void;
  upstreamConfirmed(upstreamName: string, hex: string): void;
}

/** What a blob the store does not hold is served from; the handler writes it. */
export type BlobMiss =
  /** A HEAD: the size the upstream (or a running fill) gave, if any. */
  | { kind: 'head'; size: number | undefined }
  /** A fill (started: the upstream answered): clients read it as it lands (FillReader). */
  | { kind: 'fill'; fill: BlobFill }
  /** Uncached (low disk): the upstream's body, verified on the way, its last byte held back. */
  | { kind: 'stream'; body: Readable; size: number | undefined };

/**
 * The miss policy of mirrored blobs: whether a stored blob may be served under a name (content is
 * scoped to a repository), and what a blob not stored is served from: a HEAD upstream, the running
 * or a new fill (single flight), or, when the disk is (nearly) full, the upstream's body passed
 * through uncached. The hit itself (a stored file or small buffer) the handler serves straight
 * from the store: no layer, no allocation, no await beyond the store's.
 */
export class BlobReads {
  readonly #blobs: BlobCache;
  readonly #store: BlobStore;
  readonly #known: KnownContent;
  readonly #promises: HeadPromiseHooks;
  readonly #log: Logger;

  constructor(blobs: BlobCache, known: KnownContent, promises: HeadPromiseHooks, log: Logger) {
    this.#blobs = blobs;
    this.#store = blobs.store;
    this.#known = known;
    this.#promises = promises;
    this.#log = log;
  }

  /**
   * Stored (or arriving) for another name: this name must be known to have it (cache/known-content.ts).
   * Undefined when it is known (the hit path: nothing to wait for); else a check to await, which
   * throws BLOB_UNKNOWN (or the upstream's failure) when the name may not have it.
   */
  scope(client: BlobClient, target: BlobTarget, digest: Digest, head: boolean): Promise<void> | undefined {
    if (this.#known.has(target.key, digest.hex)) return undefined;
    return this.#scopeUnknown(client, target, digest, head);
  }

  async #scopeUnknown(client: BlobClient, target: BlobTarget, digest: Digest, head: boolean): Promise<void> {
    if (this.#blobs.inflight(digest) || (await this.#store.size(digest)) !== undefined) {
      await this.#confirmScope(client, target, digest, head);
    }
  }

  /** A stored blob was served: a HEAD's yes is a promise a first push to the name may rely on. */
  servedStored(digest: Digest, head: boolean): void {
    // A first push to a name HEADs its blobs here, before the name is hosted (hosted/head-promises.ts).
    if (head && this.#promises.createsOnPush) this.#promises.storedConfirmed(digest.hex);
  }

  /**
   * A blob the store does not hold. A HEAD asks the upstream (or a running fill); a GET joins the
   * running fill or starts one, resolving once the upstream answered; with the disk (nearly) full,
   * or a fill finding no room, the upstream's body is passed through uncached.
   */
  async miss(client: BlobClient, target: BlobTarget, digest: Digest, head: boolean): Promise<BlobMiss> {
    if (head) return this.#headMiss(client, target, digest);
    // Disk (nearly) full: serve from upstream without caching rather than fail the pull.
    if (!this.#blobs.inflight(digest) && !(await this.#store.hasRoomFor(0)))
      return this.#passThrough(client, target, digest);
    // Miss: join the running fill or start one; headers go out as soon as the upstream answered.
    const { fill, joined } = this.#blobs.fill(target.name, digest, target.route.api);
    // A fill already verified (only its rename is pending) is local, verified bytes: a hit.
    client.outcome = !joined ? 'MISS' : fill.complete ? 'HIT' : 'COALESCED';
    if (client.outcome === 'COALESCED') {
      this.#blobs.waiters++;
      client.res.once('close', () => this.#blobs.waiters--);
    }
    try {
      await fill.started;
    } catch (err) {
      if (err instanceof NoRoomError) return this.#passThrough(client, target, digest);
      throw err;
    }
    if (!joined) this.#known.note(target.key, digest.hex);
    return { kind: 'fill', fill };
  }

  /** The size of the shared bucket's copy of a blob, if any (not checked: reads check). */
  sharedSize(digest: Digest): Promise<number | undefined> {
    return this.#blobs.sharedSize(digest);
  }

  /**
   * A hosted blob another replica took (linked in the fleet's records, not stored here): its
   * bytes are in the shared bucket, read like any shared copy (verified, last byte held back), or
   * BLOB_UNKNOWN. A HEAD asks the bucket for the size only.
   */
  async sharedMiss(client: BlobClient, digest: Digest, head: boolean): Promise<BlobMiss> {
    if (head) {
      const size = await this.#blobs.sharedSize(digest);
      if (size === undefined)
        throw new RegistryError('BLOB_UNKNOWN', 'blob unknown to registry', { digest: digest.value });
      return { kind: 'head', size };
    }
    const { fill, joined } = this.#blobs.fill('', digest, null);
    client.outcome = joined && fill.complete ? 'HOSTED' : 'MISS';
    await fill.started;
    return { kind: 'fill', fill };
  }

  /**
   * Fetches a blob into the store (single flight, verified) without a client: a push relying on an
   * upstream HEAD's yes (api/hosted.ts).
   */
  fetch(name: string, digest: Digest, api: RegistryApi): Promise<void> {
    return this.#blobs.fill(name, digest, api).fill.finished;
  }

  /**
   * A blob the store holds for other names, asked for under one not known to have it: the name's
   * records on disk, else (for a GET) one HEAD upstream under this name, remembered either way. The
   * spec scopes blobs to a repository; the one store underneath stays deduplicated. When the upstream
   * cannot say (down, 429, 5xx) a GET fails with its error. A HEAD never asks: it answers 404 (as for
   * a miss: a push asking "do you have it?" then mounts or uploads it).
   */
  async #confirmScope(client: BlobClient, target: BlobTarget, digest: Digest, head: boolean): Promise<void> {
    const { key, name } = target;
    const unknown = () =>
      new RegistryError('BLOB_UNKNOWN', 'blob unknown to repository', { digest: digest.value });
    if (this.#known.denied(key, digest.hex)) throw unknown();
    if (await this.#known.fromRecords(key, digest.hex)) return;
    // A HEAD here is a push's "do you have it?" (docker and skopeo ask it of a name before its first
    // push): a no costs the client a mount or an upload, while asking would tell the upstream about
    // names being pushed here. A GET (a pull) asks.
    if (head) throw unknown();
    try {
      await target.route.api.headBlob(name, digest);
    } catch (err) {
      client.outcome = 'MISS';
      if (!(err instanceof UpstreamStatusError && err.missing)) throw err;
      this.#known.deny(key, digest.hex);
      throw unknown();
    }
    this.#known.note(key, digest.hex);
  }

  /**
   * HEAD of a blob we don't hold: ask the upstream (a HEAD costs nothing against Docker Hub's limit)
   * rather than start a download nobody asked for. A running fill already knows the size.
   * When the upstream cannot say (down, rate-limited, refusing), the answer is 404: a HEAD asks "do
   * you have it?", and the client asking is often a push to a name not hosted yet (docker and skopeo
   * HEAD every blob before uploading it), which must not fail because Docker Hub is unreachable.
   */
  async #headMiss(client: BlobClient, target: BlobTarget, digest: Digest): Promise<BlobMiss> {
    const running = this.#blobs.inflight(digest);
    if (running) {
      await running.started;
      if (running.size !== undefined) {
        this.#promised(target.name, digest);
        client.outcome = 'COALESCED';
        return { kind: 'head', size: running.size };
      }
    }
    client.outcome = 'MISS';
    let size: number | undefined;
    try {
      ({ size } = await target.route.api.headBlob(target.name, digest));
    } catch (err) {
      if (err instanceof RegistryError && err.code === 'BLOB_UNKNOWN') throw err;
      throw new RegistryError('BLOB_UNKNOWN', 'blob unknown here, and the upstream could not say', {
        digest: digest.value,
        upstream: err instanceof RegistryError ? err.code : (err as Error).name,
      });
    }
    this.#promised(target.name, digest);
    return { kind: 'head', size };
  }

  /** A push that hears yes skips the upload; its manifest PUT may then fetch the blob (api/hosted.ts). */
  #promised(name: string, digest: Digest): void {
    if (this.#promises.createsOnPush) this.#promises.upstreamConfirmed(name, digest.hex);
  }

  /**
   * Uncached: the upstream's body straight to the client, hashed on the way with the last byte held
   * back until the digest matched, so even this path never completes a wrong body. Range is not
   * honoured here (a 200 is allowed, RFC 9110 §14.2): a partial response could not be verified.
   */
  async #passThrough(client: BlobClient, target: BlobTarget, digest: Digest): Promise<BlobMiss> {
    client.outcome = 'MISS';
    this.#log.warn({ digest: digest.value }, 'low disk space: serving from upstream without caching');
    const { body, size } = await target.route.api.getBlob(target.name, digest);
    const verified = verifyingHoldback(digest, size ?? MAX_UNSIZED_BLOB_BYTES);
    // Either end failing ends both: a client that leaves closes the upstream connection too.
    pipeline(body, verified, () => {});
    return { kind: 'stream', body: verified, size };
  }
}

/** Hashes what passes, holding back the last byte until the digest matched; at most `limit` bytes. */
function verifyingHoldback(digest: Digest, limit: number): Transform {
  const hash = createHash('sha256');
  let last: Buffer | undefined;
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen > limit) {
        callback(new UpstreamUnreachableError(`upstream blob body larger than ${limit} bytes`, 'ETOOBIG'));
        return;
      }
      hash.update(chunk);
      if (last) this.push(last);
      // Keep the final byte of what we have so far; everything before it can go.
      if (chunk.length > 1) this.push(chunk.subarray(0, chunk.length - 1));
      last = chunk.subarray(chunk.length - 1);
      callback();
    },
    flush(callback) {
      if (`sha256:${hash.digest('hex')}` !== digest.value) {
        callback(new Error(`upstream bytes do not match ${digest.value}`));
        return;
      }
      callback(null, last);
    },
  });
}
