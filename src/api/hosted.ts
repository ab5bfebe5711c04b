import { checkManifest, type Descriptor, MAX_PUSHED_MANIFEST_BYTES } from '../hosted/manifest-check.js';
import { type Digest, lookupDigest } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';
import { lookupReference, parseReference } from '../oci/names.js';
import { sendMiss, serveStoredBlob } from './blobs.js';
import type { HandlerContext } from './context.js';
import type { Exchange } from './exchange.js';
import { sendManifest } from './manifest-response.js';
import { paginate } from './paginate.js';
import { referrersSubject, sendReferrers } from './referrers.js';
import { BodyTooLargeError, readRequestBody } from './request-body.js';
import { sendBody, sendJson } from './respond.js';

/**
 * Hosted repositories' endpoints: content pushed here, served from here, never from upstream.
 * GET/HEAD/PUT/DELETE manifests, GET/HEAD/DELETE blobs, tags/list and referrers.
 */
export async function hostedManifestHandler(
  ex: Exchange,
  ctx: HandlerContext,
  name: string,
  rawReference: string,
): Promise<void> {
  // A push by a sha512 digest is DIGEST_INVALID (400); a lookup of one is MANIFEST_UNKNOWN (oci/digest.ts).
  const ref = ex.method === 'PUT' ? parseReference(rawReference) : lookupReference(rawReference);
  const hosted = ctx.hosted;
  if (ex.method === 'PUT') {
    const body = await readRequestBody(ex.req, MAX_PUSHED_MANIFEST_BYTES).catch((err: unknown) => {
      if (err instanceof BodyTooLargeError) {
        throw new RegistryError('MANIFEST_INVALID', 'manifest larger than 4 MiB', {
          limit: MAX_PUSHED_MANIFEST_BYTES,
        });
      }
      throw err;
    });
    const manifest = checkManifest(body, ex.req.headers['content-type']);
    if (ref.kind === 'digest' && ref.digest.value !== manifest.digest.value) {
      throw new RegistryError('DIGEST_INVALID', 'the manifest does not match the digest in the URL', {
        expected: ref.digest.value,
        actual: manifest.digest.value,
      });
    }
    // end-7b: PUT by digest may tag it at once (?tag=a&tag=b).
    const tags = ref.kind === 'tag' ? [ref.tag] : ex.query.getAll('tag');
    for (const tag of tags) {
      const parsed = parseReference(tag);
      if (parsed.kind !== 'tag') throw new RegistryError('TAG_INVALID', 'invalid tag', { tag });
    }
    // Held from before a fetch: the eviction a fetched blob's arrival starts must not take it.
    const release = hosted.reserve(manifest.blobs.map((d) => d.digest.hex));
    try {
      await fetchMissingFromUpstream(ctx, name, manifest.blobs);
      await hosted.putManifest(name, manifest, tags);
    } finally {
      release();
    }
    ex.outcome = 'HOSTED';
    const headers: Record<string, string> = {
      Location: `/v2/${name}/manifests/${manifest.digest.value}`,
      'Docker-Content-Digest': manifest.digest.value,
    };
    if (manifest.subject) headers['OCI-Subject'] = manifest.subject.digest.value;
    return sendBody(ex, 201, headers, undefined);
  }
  if (ex.method === 'DELETE') {
    requireDelete(ctx);
    const deleted =
      ref.kind === 'digest'
        ? await hosted.deleteManifest(name, ref.digest)
        : await hosted.deleteTag(name, ref.tag);
    if (!deleted)
      throw new RegistryError('MANIFEST_UNKNOWN', 'manifest unknown', { reference: rawReference });
    return sendBody(ex, 202, {}, undefined);
  }
  // Hosted repositories answer the manifest read interface as they are (api/manifest-response.ts).
  await sendManifest(ex, ctx.hosted, name, ref, rawReference);
}

/**
 * A push can only skip a blob the registry said it has. For a name that was mirrored until this
 * push, a HEAD before the first upload may have been answered from the upstream; such a blob is
 * fetched (verified, single-flight, like any miss) so that the promise holds. Only those: a
 * manifest naming digests nobody HEADed costs no upstream request, and one PUT fetches a bounded
 * number (hosted/head-promises.ts).
 */
async function fetchMissingFromUpstream(
  ctx: HandlerContext,
  name: string,
  blobs: Descriptor[],
): Promise<void> {
  const target = ctx.routes.onDefault(name);
  if (!target || ctx.offline) return;
  const missing: Digest[] = [];
  for (const d of blobs) {
    if (!d.foreign && (await ctx.store.size(d.digest)) === undefined) missing.push(d.digest);
  }
  for (const digest of ctx.headPromises.fetchable(target.name, missing)) {
    try {
      await ctx.blobs.fetch(target.name, digest, target.route.api);
    } catch {
      // Not upstream after all: putManifest answers MANIFEST_BLOB_UNKNOWN.
    }
  }
}

export async function hostedBlobHandler(
  ex: Exchange,
  ctx: HandlerContext,
  name: string,
  rawDigest: string,
): Promise<void> {
  const digest = lookupDigest(rawDigest, 'BLOB_UNKNOWN');
  if (ex.method === 'DELETE') {
    requireDelete(ctx);
    if (!(await ctx.hosted.isLinked(name, digest))) {
      throw new RegistryError('BLOB_UNKNOWN', 'blob unknown to repository', { digest: digest.value });
    }
    // The link goes now; the bytes when the collector finds nothing else uses them.
    await ctx.hosted.unlink(name, digest);
    return sendBody(ex, 202, {}, undefined);
  }
  // Only what was pushed, mounted or referenced into this repository (spec "Pulling Blobs"), not
  // whatever the shared store holds for others. A push's HEAD that hears 404 uploads or mounts.
  if (!(await ctx.hosted.hasBlob(name, digest))) {
    throw new RegistryError('BLOB_UNKNOWN', 'blob unknown to repository', { digest: digest.value });
  }
  if (!(await serveStoredBlob(ex, ctx, digest, 'HOSTED'))) {
    // Linked, not stored here: another replica took the push, and its bytes are in the bucket.
    if (!ctx.hosted.shared)
      throw new RegistryError('BLOB_UNKNOWN', 'blob unknown to repository', { digest: digest.value });
    ex.outcome = 'HOSTED';
    await sendMiss(ex, digest, await ctx.blobs.sharedMiss(ex, digest, ex.method === 'HEAD'));
    return;
  }
  // A HEAD is how a push asks "do you have it?": the yes holds (in memory) until the manifest arrives.
  if (ex.method === 'HEAD' && ctx.hosted.pushEnabled) ctx.headPromises.storedConfirmed(digest.hex);
}

export async function hostedTagsHandler(ex: Exchange, ctx: HandlerContext, name: string): Promise<void> {
  const tags = await ctx.hosted.tagList(name);
  // end-8a: a repository holding only untagged manifests exists, with no tags; only a repository
  // holding nothing (never pushed, or emptied by deletes) is unknown.
  if (tags.length === 0 && !(await ctx.hosted.exists(name))) {
    throw new RegistryError('NAME_UNKNOWN', 'repository name not known to registry', { name });
  }
  ex.outcome = 'HOSTED';
  const page = paginate(tags, ex.query, `/v2/${name}/tags/list`);
  return sendJson(ex, 200, { name, tags: page.items }, page.headers);
}

/** GET /v2/<name>/referrers/<digest>[?artifactType=]: an OCI index of the manifests whose subject it is. */
export async function hostedReferrersHandler(
  ex: Exchange,
  ctx: HandlerContext,
  name: string,
  rawDigest: string,
): Promise<void> {
  const subject = referrersSubject(ex, rawDigest);
  // A hosted name before its first push has no referrers yet: an empty index (spec end-12a).
  const manifests = subject ? await ctx.hosted.referrers(name, subject) : [];
  ex.outcome = 'HOSTED';
  return sendReferrers(ex, manifests);
}

function requireDelete(ctx: HandlerContext): void {
  if (!ctx.allowDelete) {
    throw new RegistryError('UNSUPPORTED', 'deletion is disabled (start with --allow-delete)', {});
  }
}
