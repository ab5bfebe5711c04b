import { rangeHeader, type UploadSession, uploadLocation } from '../hosted/uploads.js';
import { type Digest, parseDigest, SUPPORTED_ALGORITHM, UnsupportedAlgorithmError } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';
import { validateName } from '../oci/names.js';
import type { HandlerContext } from './context.js';
import type { Exchange } from './exchange.js';
import { sendBody } from './respond.js';

/**
 * /v2/<name>/blobs/uploads/[<session>]: the push side of blobs (spec "Pushing blobs").
 * POST starts a session, or uploads a whole blob with `?digest=`, or mounts a stored one with
 * `?mount=`; PATCH appends a chunk; PUT `?digest=` finishes; GET reports progress; DELETE cancels.
 */
export async function uploadHandler(
  ex: Exchange,
  ctx: HandlerContext,
  name: string,
  sessionId: string | undefined,
  forwarded = false,
): Promise<void> {
  const uploads = ctx.uploads;
  if (sessionId === undefined) {
    if (ex.method !== 'POST') throw unsupported(ex);
    return startUpload(ex, ctx, name);
  }
  // Behind a load balancer: a session another replica opened is answered by that replica.
  if (!forwarded && !uploads.has(sessionId) && (await ctx.uploadOwners?.forward(ex, name, sessionId))) return;
  const session = uploads.get(name, sessionId);
  switch (ex.method) {
    case 'GET':
      return progress(ex, session, 204);
    case 'PATCH':
      await needRoom(ctx, ex);
      await appendChunk(ex, ctx, session);
      return progress(ex, session, 202);
    case 'PUT': {
      const digest = digestParam(ex);
      if (hasBody(ex)) {
        await needRoom(ctx, ex);
        await uploads.append(session, requestBody(ex), chunkOf(ex));
      }
      return finished(ex, ctx, name, digest, session);
    }
    case 'DELETE':
      await uploads.cancel(session);
      ctx.uploadOwners?.release(session.id);
      return sendBody(ex, 204, {}, undefined);
    default:
      throw unsupported(ex);
  }
}

async function startUpload(ex: Exchange, ctx: HandlerContext, name: string): Promise<void> {
  // Spec end-4c: a registry that does not support the asked algorithm SHOULD answer 400. Only
  // sha256 is stored (oci/digest.ts says why).
  const algorithm = ex.query.get('digest-algorithm');
  if (algorithm !== null && algorithm !== SUPPORTED_ALGORITHM) {
    throw new RegistryError('DIGEST_INVALID', 'only sha256 digests are supported', {
      algorithm,
      supported: [SUPPORTED_ALGORITHM],
    });
  }
  const mount = ex.query.get('mount');
  // A mount of a sha512 blob cannot succeed: the spec's answer to "unable to mount" is a session.
  if (mount !== null && !unsupportedAlgorithm(mount)) {
    // One content-addressed store: a mount copies nothing. But content is scoped to repositories
    // (spec "Mounting a blob from another repository"): `from` must hold the blob, as a hosted
    // repository it was pushed or mounted into, or a mirrored name known to have it. Otherwise, or
    // without `from`, the spec's fallback: an upload session.
    const digest = parseDigest(mount);
    const from = ex.query.get('from');
    const source = from === null ? undefined : validateName(from);
    if (source && (await stored(ctx, digest)) && (await holds(ctx, source, digest))) {
      await ctx.hosted.create(name);
      await ctx.hosted.link(name, digest);
      ex.outcome = 'HIT';
      return sendBody(ex, 201, blobCreated(name, digest), undefined);
    }
  }
  await needRoom(ctx, ex);
  const digestText = ex.query.get('digest');
  const digest = digestText === null ? undefined : parseDigest(digestText);
  // Sessions count toward the address that opens them (hosted/uploads.ts caps them).
  const session = ctx.uploads.start(name, ctx.clientOf(ex.req) || 'unknown');
  try {
    await ctx.hosted.create(name);
    // Monolithic: the whole blob in this one request.
    if (digest) await ctx.uploads.append(session, requestBody(ex), chunkOf(ex));
  } catch (err) {
    await ctx.uploads.cancel(session);
    throw err;
  }
  if (digest) return finished(ex, ctx, name, digest, session);
  try {
    await ctx.uploadOwners?.claim(session.id, name);
  } catch (err) {
    await ctx.uploads.cancel(session);
    throw err;
  }
  if (hasBody(ex)) await appendChunk(ex, ctx, session);
  return progress(ex, session, 202);
}

/**
 * The closing step: the bytes must match `digest`. The blob is linked to the repository (held
 * against the size bound) before it enters the store: otherwise the eviction its arrival starts
 * could remove it before the 201 and the manifest that names it.
 */
/**
 * Appends a chunk to a session that goes on (PATCH, a POST with a body); replicas stage what
 * arrived in the bucket before the client hears of it (fleet-uploads.ts), even when the client
 * left mid-chunk, since what arrived is kept.
 */
async function appendChunk(ex: Exchange, ctx: HandlerContext, session: UploadSession): Promise<void> {
  const start = session.offset;
  try {
    await ctx.uploads.append(session, requestBody(ex), chunkOf(ex));
  } finally {
    if (ctx.uploadOwners && session.offset > start && ctx.uploads.has(session.id))
      await ctx.uploadOwners.staged(session, start, session.offset);
  }
}

/** Whether the blob is stored here, or (replicas) in the bucket another replica published it to. */
async function stored(ctx: HandlerContext, digest: Digest): Promise<boolean> {
  if ((await ctx.store.size(digest)) !== undefined) return true;
  return ctx.hosted.shared && (await ctx.blobs.sharedSize(digest)) !== undefined;
}

/** Whether repository `name` holds the blob: hosted content, or a mirrored name known to have it. */
async function holds(ctx: HandlerContext, name: string, digest: Digest): Promise<boolean> {
  if (ctx.hosted.isHosted(name)) return ctx.hosted.hasBlob(name, digest);
  const key = ctx.routes.resolve(name, null).key;
  return ctx.known.has(key, digest.hex) || (await ctx.known.fromRecords(key, digest.hex));
}

async function finished(
  ex: Exchange,
  ctx: HandlerContext,
  name: string,
  digest: Digest,
  session: UploadSession,
): Promise<void> {
  const size = await ctx.uploads.finish(session, digest, async () => {
    // Replicas: the bytes in the bucket before any record names them, both before the 201.
    await ctx.hosted.publish(digest, { file: session.file, size: session.offset });
    await ctx.hosted.link(name, digest);
  });
  ctx.pushedBytes(size);
  ctx.uploadOwners?.release(session.id);
  return sendBody(ex, 201, blobCreated(name, digest), undefined);
}

function blobCreated(name: string, digest: Digest): Record<string, string> {
  return { Location: `/v2/${name}/blobs/${digest.value}`, 'Docker-Content-Digest': digest.value };
}

function progress(ex: Exchange, session: UploadSession, status: 202 | 204): void {
  sendBody(
    ex,
    status,
    {
      Location: uploadLocation(session),
      Range: rangeHeader(session.offset),
      'Docker-Upload-UUID': session.id,
    },
    undefined,
  );
}

function unsupportedAlgorithm(text: string): boolean {
  try {
    parseDigest(text);
    return false;
  } catch (err) {
    return err instanceof UnsupportedAlgorithmError;
  }
}

function digestParam(ex: Exchange): Digest {
  const text = ex.query.get('digest');
  if (text === null) throw new RegistryError('DIGEST_INVALID', 'the digest parameter is required', {});
  return parseDigest(text);
}

/**
 * Where a chunk starts, from its Content-Range (`<start>-<end>`, the spec's form; `bytes` prefixes
 * tolerated). Undefined when the client sent none: the chunk goes at the current offset.
 */
export function chunkStart(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*(?:bytes[ =])?(\d{1,15})-(\d{1,15})(?:\/(?:\d{1,15}|\*))?\s*$/.exec(header);
  if (!m?.[1] || !m[2] || Number(m[2]) < Number(m[1])) {
    throw new RegistryError('RANGE_INVALID', 'Content-Range must be <start>-<end>', { contentRange: header });
  }
  return Number(m[1]);
}

/** Where the chunk starts (Content-Range) and its announced size (Content-Length), when given. */
function chunkOf(ex: Exchange): { start: number | undefined; length: number | undefined } {
  const length = ex.req.headers['content-length'];
  return {
    start: chunkStart(ex.req.headers['content-range']),
    length: length === undefined || !/^\d{1,20}$/.test(length) ? undefined : Number(length),
  };
}

/**
 * The request body, read so that stopping early (an upload cut for size or disk space) leaves the
 * connection to answer on: iterating the request itself would destroy its socket on the way out,
 * and the client would see a reset instead of the error.
 */
function requestBody(ex: Exchange): AsyncIterable<Uint8Array> {
  return ex.req.iterator({ destroyOnReturn: false });
}

function hasBody(ex: Exchange): boolean {
  const length = ex.req.headers['content-length'];
  return ex.req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** Refuses an upload that would take the disk below the configured free space. */
async function needRoom(ctx: HandlerContext, ex: Exchange): Promise<void> {
  const length = Number(ex.req.headers['content-length'] ?? 0);
  if (!(await ctx.store.hasRoomFor(Number.isFinite(length) ? length : 0))) {
    throw new RegistryError('UNAVAILABLE', 'not enough free disk space for uploads', {});
  }
}

function unsupported(ex: Exchange): RegistryError {
  return new RegistryError('UNSUPPORTED', `${ex.method} is not an upload operation`, { method: ex.method });
}
