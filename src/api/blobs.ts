import { createHash } from 'node:crypto';
import { pipeline, Transform } from 'node:stream';
import { MAX_UNSIZED_BLOB_BYTES, NoRoomError } from '../cache/blob-cache.js';
import { SMALL_BLOB_BYTES } from '../cache/blob-store.js';
import { FillReader } from '../cache/fill.js';
import type { CacheOutcome } from '../cache/manifest-cache.js';
import { type Digest, lookupDigest } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';
import { type ByteRange, parseRanges } from '../oci/range.js';
import type { Target } from '../routing.js';
import { UpstreamUnreachableError } from '../upstream/errors.js';
import { type RegistryApi, UpstreamStatusError } from '../upstream/registry-api.js';
import type { HandlerContext } from './context.js';
import type { Exchange } from './exchange.js';
import { fileBytes } from './file-sender.js';
import {
  blobByteranges,
  blobHeaders,
  byterangesHeaders,
  joinByteranges,
  sendBody,
  sendByteranges,
  sendFile,
  sendStream,
} from './respond.js';

/** GET/HEAD /v2/<name>/blobs/<digest> */
export async function blobHandler(
  ex: Exchange,
  ctx: HandlerContext,
  target: Target,
  rawDigest: string,
): Promise<void> {
  const { name } = target;
  const upstream = target.route.api;
  const digest = lookupDigest(rawDigest, 'BLOB_UNKNOWN');
  const store = ctx.store;

  // Stored (or arriving) for another name: this name must be known to have it (cache/known-content.ts).
  if (
    !ctx.known.has(target.key, digest.hex) &&
    (ctx.blobs.inflight(digest) || (await store.size(digest)) !== undefined)
  ) {
    await confirmScope(ex, ctx, target, digest);
  }

  if (await serveStoredBlob(ex, ctx, digest)) {
    // A first push to a name HEADs its blobs here, before the name is hosted (hosted/head-promises.ts).
    if (ex.method === 'HEAD' && ctx.hosted.createsOnPush) ctx.headPromises.storedConfirmed(digest.hex);
    return;
  }

  if (ex.method === 'HEAD') return headMiss(ex, ctx, upstream, name, digest);

  // Disk (nearly) full: serve from upstream without caching rather than fail the pull.
  if (!ctx.blobs.inflight(digest) && !(await store.hasRoomFor(0)))
    return passThrough(ex, ctx, upstream, name, digest);

  // Miss: join the running fill or start one; headers go out as soon as the upstream answered.
  const { fill, joined } = ctx.blobs.fill(name, digest, upstream);
  // A fill already verified (only its rename is pending) is local, verified bytes: a hit.
  ex.outcome = !joined ? 'MISS' : fill.complete ? 'HIT' : 'COALESCED';
  if (ex.outcome === 'COALESCED') {
    ctx.blobs.waiters++;
    ex.res.once('close', () => ctx.blobs.waiters--);
  }
  try {
    await fill.started;
  } catch (err) {
    if (err instanceof NoRoomError) return passThrough(ex, ctx, upstream, name, digest);
    throw err;
  }
  if (!joined) ctx.known.note(target.key, digest.hex);
  if (fill.size === undefined) {
    // No Content-Length upstream: the whole body, chunked; Range is ignored (RFC 9110 allows it).
    const { 'Content-Length': _, ...headers } = blobHeaders(digest.value, 0, undefined)[1];
    return sendStream(ex, 200, headers, new FillReader(fill, 0, undefined), 0);
  }
  const range = parseRanges(ex.req.headers.range, fill.size);
  if (Array.isArray(range)) {
    // Several ranges of a download in progress: each part is a FillReader, which holds back the
    // part's last byte until the blob was verified, so no part (and not the body) can complete
    // with unverified bytes; a mismatch cuts the connection.
    const body = blobByteranges(range, fill.size);
    const headers = byterangesHeaders(digest.value, body)[1];
    return sendByteranges(ex, headers, body, (start, end) => new FillReader(fill, start, end));
  }
  const [status, headers] = blobHeaders(digest.value, fill.size, range);
  const start = range?.start ?? 0;
  const end = range?.end ?? fill.size - 1;
  return sendStream(ex, status, headers, new FillReader(fill, start, end), end - start + 1);
}

/**
 * A blob the store holds for other names, asked for under one not known to have it: the name's
 * records on disk, else (for a GET) one HEAD upstream under this name, remembered either way. The
 * spec scopes blobs to a repository; the one store underneath stays deduplicated. When the upstream
 * cannot say (down, 429, 5xx) a GET fails with its error. A HEAD never asks: it answers 404 (as for
 * a miss: a push asking "do you have it?" then mounts or uploads it).
 */
async function confirmScope(
  ex: Exchange,
  ctx: HandlerContext,
  target: Target,
  digest: Digest,
): Promise<void> {
  const { key, name } = target;
  const unknown = () =>
    new RegistryError('BLOB_UNKNOWN', 'blob unknown to repository', { digest: digest.value });
  if (ctx.known.denied(key, digest.hex)) throw unknown();
  if (await ctx.known.fromRecords(key, digest.hex)) return;
  // A HEAD here is a push's "do you have it?" (docker and skopeo ask it of a name before its first
  // push): a no costs the client a mount or an upload, while asking would tell the upstream about
  // names being pushed here. A GET (a pull) asks.
  if (ex.method === 'HEAD') throw unknown();
  try {
    try {
      await target.route.api.headBlob(name, digest);
    } catch (err) {
      if (!(err instanceof UpstreamStatusError && err.missing)) throw err;
      ctx.known.deny(key, digest.hex);
      throw unknown();
    }
  } catch (err) {
    ex.outcome = 'MISS';
    if (ex.method === 'HEAD' && !(err instanceof RegistryError && err.code === 'BLOB_UNKNOWN'))
      throw unknown();
    throw err;
  }
  ctx.known.note(key, digest.hex);
}

/**
 * A hit: memory for small blobs, else the file straight to the socket. No upstream, no hashing.
 * False when the blob is not stored (or was removed between stat and open by eviction).
 */
export async function serveStoredBlob(
  ex: Exchange,
  ctx: HandlerContext,
  digest: Digest,
  outcome: CacheOutcome = 'HIT',
): Promise<boolean> {
  const store = ctx.store;
  const size = await store.size(digest);
  if (size === undefined) return false;
  ex.outcome = outcome;
  const range = parseRanges(ex.req.headers.range, size);
  if (Array.isArray(range)) return serveStoredByteranges(ex, ctx, digest, size, range);
  const [status, headers] = blobHeaders(digest.value, size, range);
  if (ex.method === 'HEAD') {
    sendBody(ex, status, headers, undefined);
    return true;
  }
  const small = size <= SMALL_BLOB_BYTES ? await store.read(digest) : undefined;
  if (small) {
    sendBody(ex, status, headers, range ? small.subarray(range.start, range.end + 1) : small);
    return true;
  }
  const file = await store.open(digest);
  if (!file) return false;
  await sendFile(ex, status, headers, file.handle, range?.start ?? 0, range?.end ?? size - 1, ctx.buffers);
  return true;
}

/** Several ranges of a stored blob as multipart/byteranges (podman's zstd:chunked partial pulls). */
async function serveStoredByteranges(
  ex: Exchange,
  ctx: HandlerContext,
  digest: Digest,
  size: number,
  ranges: ByteRange[],
): Promise<boolean> {
  const store = ctx.store;
  const body = blobByteranges(ranges, size);
  const [status, headers] = byterangesHeaders(digest.value, body);
  if (ex.method === 'HEAD') {
    sendBody(ex, status, headers, undefined);
    return true;
  }
  const small = size <= SMALL_BLOB_BYTES ? await store.read(digest) : undefined;
  if (small) {
    sendBody(ex, status, headers, joinByteranges(body, small));
    return true;
  }
  const file = await store.open(digest);
  if (!file) return false;
  try {
    await sendByteranges(ex, headers, body, (start, end) => fileBytes(file.handle, start, end));
  } finally {
    // Waits for a read still running (FileHandle.close does), e.g. when the client left mid-part.
    await file.handle.close().catch(() => {});
  }
  return true;
}

/**
 * HEAD of a blob we don't hold: ask the upstream (a HEAD costs nothing against Docker Hub's limit)
 * rather than start a download nobody asked for. A running fill already knows the size.
 * When the upstream cannot say (down, rate-limited, refusing), the answer is 404: a HEAD asks "do
 * you have it?", and the client asking is often a push to a name not hosted yet (docker and skopeo
 * HEAD every blob before uploading it), which must not fail because Docker Hub is unreachable.
 */
async function headMiss(
  ex: Exchange,
  ctx: HandlerContext,
  upstream: RegistryApi,
  name: string,
  digest: Digest,
): Promise<void> {
  const running = ctx.blobs.inflight(digest);
  // A push that hears yes skips the upload; its manifest PUT may then fetch the blob (api/hosted.ts).
  const promise = () => {
    if (ctx.hosted.createsOnPush) ctx.headPromises.upstreamConfirmed(name, digest.hex);
  };
  if (running) {
    await running.started;
    if (running.size !== undefined) {
      promise();
      ex.outcome = 'COALESCED';
      return sendBody(ex, 200, blobHeaders(digest.value, running.size, undefined)[1], undefined);
    }
  }
  ex.outcome = 'MISS';
  let size: number | undefined;
  try {
    ({ size } = await upstream.headBlob(name, digest));
  } catch (err) {
    if (err instanceof RegistryError && err.code === 'BLOB_UNKNOWN') throw err;
    throw new RegistryError('BLOB_UNKNOWN', 'blob unknown here, and the upstream could not say', {
      digest: digest.value,
      upstream: err instanceof RegistryError ? err.code : (err as Error).name,
    });
  }
  promise();
  if (size === undefined) {
    const { 'Content-Length': _, ...headers } = blobHeaders(digest.value, 0, undefined)[1];
    return sendBody(ex, 200, headers, undefined);
  }
  return sendBody(ex, 200, blobHeaders(digest.value, size, undefined)[1], undefined);
}

/**
 * Uncached: the upstream's body straight to the client, hashed on the way with the last byte held
 * back until the digest matched, so even this path never completes a wrong body. Range is not
 * honoured here (a 200 is allowed, RFC 9110 §14.2): a partial response could not be verified.
 */
async function passThrough(
  ex: Exchange,
  ctx: HandlerContext,
  upstream: RegistryApi,
  name: string,
  digest: Digest,
): Promise<void> {
  ex.outcome = 'MISS';
  ctx.log.warn({ digest: digest.value }, 'low disk space: serving from upstream without caching');
  const { body, size } = await upstream.getBlob(name, digest);
  const headers = blobHeaders(digest.value, size ?? Number.NaN, undefined)[1];
  if (size === undefined) delete headers['Content-Length'];
  const verified = verifyingHoldback(digest, size ?? MAX_UNSIZED_BLOB_BYTES);
  // Either end failing ends both: a client that leaves closes the upstream connection too.
  pipeline(body, verified, () => {});
  return sendStream(ex, 200, headers, verified, size ?? Number.NaN);
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
