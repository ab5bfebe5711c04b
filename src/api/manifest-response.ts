import type { CacheOutcome } from '../cache/manifest-cache.js';
import { ifNoneMatch } from '../oci/conditional.js';
import { type Digest, parseDigest } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';
import type { Reference } from '../oci/names.js';
import { negotiate } from '../oci/negotiation.js';
import { accepted } from './accept.js';
import type { Exchange } from './exchange.js';
import { type Headers, sendBody, sendNotModified } from './respond.js';

/** A manifest as a source gives it. */
export interface ManifestRead {
  digest: Digest;
  mediaType: string;
  body: Buffer;
  /** How the cache served it; absent for content pushed here, which is not a cache (HOSTED). */
  outcome?: CacheOutcome;
}

/**
 * Where manifests are read from: the mirrored ones (cache/manifest-cache.ts, per registry) and
 * the hosted ones (hosted/repositories.ts) both answer this. Undefined: not there.
 */
export interface ManifestSource {
  byTag(name: string, tag: string): Promise<ManifestRead | undefined>;
  byDigest(name: string, digest: Digest): Promise<ManifestRead | undefined>;
}

/** A manifest answer sent whole (200): the tag's own manifest, and the one sent for it. */
export interface SentManifest {
  /** What the tag points at (the digest's manifest when asked by digest). */
  named: ManifestRead;
  /** What was sent: `named`, or the entry negotiation chose from it for the client. */
  sent: ManifestRead;
  headers: Headers;
}

/**
 * GET/HEAD of a manifest, mirrored or hosted alike: by digest as stored; by tag negotiated against
 * the client's Accept (a client that cannot read an index gets its platform's manifest); an
 * If-None-Match naming its digest gets a 304. Gives what it sent, unless that was a 304.
 */
export async function sendManifest(
  ex: Exchange,
  source: ManifestSource,
  name: string,
  ref: Reference,
  rawReference: string,
): Promise<SentManifest | undefined> {
  const named =
    ref.kind === 'digest' ? await source.byDigest(name, ref.digest) : await source.byTag(name, ref.tag);
  if (!named) throw new RegistryError('MANIFEST_UNKNOWN', 'manifest unknown', { reference: rawReference });
  let manifest = named;
  const outcome = named.outcome ?? 'HOSTED';
  if (ref.kind === 'tag') {
    const choice = negotiate(manifest.mediaType, manifest.body, accepted(ex.req.headers.accept));
    if (choice.kind === 'none')
      throw new RegistryError('MANIFEST_UNKNOWN', 'manifest unknown', { reason: choice.reason });
    if (choice.kind === 'child') {
      // Served as the tag was: a child of a cached index is a HIT when the index was.
      const child = await source.byDigest(name, parseDigest(choice.digest));
      if (!child)
        throw new RegistryError('MANIFEST_UNKNOWN', 'manifest unknown', { reference: rawReference });
      manifest = child;
    }
  }
  ex.outcome = outcome;
  const etag = `"${manifest.digest.value}"`;
  const headers = {
    'Content-Type': manifest.mediaType,
    'Docker-Content-Digest': manifest.digest.value,
    ETag: etag,
  };
  if (ifNoneMatch(ex.req.headers['if-none-match'], etag)) {
    sendNotModified(ex, headers);
    return undefined;
  }
  sendBody(ex, 200, headers, manifest.body);
  return { named, sent: manifest, headers };
}
