import type { BlobMiss } from '../cache/blob-reads.js';
import { SMALL_BLOB_BYTES } from '../cache/blob-store.js';
import { type BlobFill, FillReader } from '../cache/fill.js';
import type { CacheOutcome } from '../cache/manifest-cache.js';
import { type Digest, lookupDigest } from '../oci/digest.js';
import { type ByteRange, parseRanges } from '../oci/range.js';
import type { Target } from '../routing.js';
import type { HandlerContext } from './context.js';
import type { Exchange } from './exchange.js';
import { fileBytes } from './file-sender.js';
import { LANE_MAX_BODY_BYTES } from './hit-lane.js';
import {
  blobByteranges,
  blobHeaders,
  byterangesHeaders,
  type Headers,
  joinByteranges,
  sendBody,
  sendByteranges,
  sendFile,
  sendStream,
} from './respond.js';

/**
 * GET/HEAD /v2/<name>/blobs/<digest>: parse, ask the cache, write what it gives. A stored blob is
 * served straight from the store (the hit path); a miss is the cache's to decide (cache/blob-reads.ts).
 */
export async function blobHandler(
  ex: Exchange,
  ctx: HandlerContext,
  target: Target,
  rawDigest: string,
): Promise<void> {
  const digest = lookupDigest(rawDigest, 'BLOB_UNKNOWN');
  const head = ex.method === 'HEAD';
  const scoping = ctx.blobs.scope(ex, target, digest, head);
  if (scoping) await scoping;
  if (!head && ctx.store.hearsClients && ex.req.headers.range === undefined)
    ctx.store.fetching(digest, ctx.clientOf(ex.req));
  if (await serveStoredBlob(ex, ctx, digest)) {
    ctx.blobs.servedStored(digest, head);
    return;
  }
  return sendMiss(ex, digest, await ctx.blobs.miss(ex, target, digest, head));
}

/** Writes what the miss policy gave: a HEAD's headers, an uncached stream, or a fill as it lands. */
export function sendMiss(ex: Exchange, digest: Digest, miss: BlobMiss): Promise<void> | void {
  switch (miss.kind) {
    case 'head':
      return sendBody(ex, 200, unsizedBlobHeaders(digest, miss.size), undefined);
    case 'stream':
      return sendStream(ex, 200, unsizedBlobHeaders(digest, miss.size), miss.body, miss.size ?? Number.NaN);
    case 'fill':
      return sendFill(ex, digest, miss.fill);
  }
}

/** A 200's headers, without Content-Length when the size is not known. */
function unsizedBlobHeaders(digest: Digest, size: number | undefined): Headers {
  const headers = blobHeaders(digest.value, size ?? 0, undefined)[1];
  if (size === undefined) delete headers['Content-Length'];
  return headers;
}

/** A blob arriving: each client tails the fill (FillReader), Range aware once the size is known. */
function sendFill(ex: Exchange, digest: Digest, fill: BlobFill): Promise<void> {
  if (fill.size === undefined) {
    // No Content-Length upstream: the whole body, chunked; Range is ignored (RFC 9110 allows it).
    return sendStream(ex, 200, unsizedBlobHeaders(digest, undefined), new FillReader(fill, 0, undefined), 0);
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
  // In memory (most small blobs): no stat, no read, no promise to wait on.
  const held = store.inMemory(digest);
  const size = held ? held.length : await store.size(digest);
  if (size === undefined) return false;
  ex.outcome = outcome;
  const range = parseRanges(ex.req.headers.range, size);
  if (Array.isArray(range)) return serveStoredByteranges(ex, ctx, digest, size, range);
  const [status, headers] = blobHeaders(digest.value, size, range);
  if (ex.method === 'HEAD') {
    sendBody(ex, status, headers, undefined);
    if (held && !range) keepInLane(ex, ctx, digest, headers, held);
    return true;
  }
  const small = held ?? (size <= SMALL_BLOB_BYTES ? await store.read(digest, false) : undefined);
  if (small) {
    sendBody(ex, status, headers, range ? small.subarray(range.start, range.end + 1) : small);
    // Read just now, it is held in memory now: the lane checks that it still is, every time.
    if (!range) keepInLane(ex, ctx, digest, headers, small);
    return true;
  }
  const file = await store.open(digest);
  if (!file) return false;
  await sendFile(ex, status, headers, file.handle, range?.start ?? 0, range?.end ?? size - 1, ctx.buffers);
  return true;
}

/**
 * Offers a whole blob hit held in memory to the hit lane (api/hit-lane.ts), which keeps only HITs:
 * a hosted blob (HOSTED) can be deleted, and is always served by the path. Still served while the
 * store holds these very bytes in memory: a name's content is never taken back from it
 * (cache/known-content.ts), so the scope checked for this request holds for the next.
 */
function keepInLane(ex: Exchange, ctx: HandlerContext, digest: Digest, headers: Headers, held: Buffer): void {
  if (held.length > LANE_MAX_BODY_BYTES) return;
  const { store, blobs, clientOf } = ctx;
  ctx.lane.offer(ex, headers, held, {
    byAccept: false,
    stillServed: (head, again) => {
      // Whole, as every lane answer is: told before the use inMemory counts, as blobHandler does.
      if (!head && store.hearsClients) store.fetching(digest, clientOf(again.req));
      if (store.inMemory(digest) !== held) return false;
      blobs.servedStored(digest, head);
      return true;
    },
  });
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
  const small = size <= SMALL_BLOB_BYTES ? await store.read(digest, false) : undefined;
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
