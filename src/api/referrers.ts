import type { Descriptor } from '../cache/referrers-cache.js';
import { type Digest, lookupDigest } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';
import { OCI_INDEX } from '../oci/media-types.js';
import type { Target } from '../routing.js';
import type { Exchange } from './exchange.js';
import { sendBody } from './respond.js';

/**
 * The subject of GET /v2/<name>/referrers/<digest>. A well-formed digest of an algorithm not
 * stored here (sha512) is valid, and nothing here can refer to it: an empty index, since a registry
 * with the referrers API MUST NOT 404 for a valid digest (spec end-12a).
 */
export function referrersSubject(ex: Exchange, rawDigest: string): Digest | undefined {
  if (ex.method !== 'GET' && ex.method !== 'HEAD') {
    throw new RegistryError('UNSUPPORTED', `${ex.method} is not supported here`, {});
  }
  try {
    return lookupDigest(rawDigest, 'MANIFEST_UNKNOWN');
  } catch (err) {
    if (err instanceof RegistryError && err.code === 'MANIFEST_UNKNOWN') return undefined;
    throw err;
  }
}

/** GET /v2/<name>/referrers/<digest> of a mirrored repository: the upstream's list, cached (cache/referrers-cache.ts). */
export async function referrersHandler(ex: Exchange, target: Target, rawDigest: string): Promise<void> {
  const subject = referrersSubject(ex, rawDigest);
  if (!subject) return sendReferrers(ex, []);
  const found = await target.route.referrers.get(target.name, subject);
  ex.outcome = found.outcome;
  return sendReferrers(ex, found.manifests);
}

/**
 * An OCI image index of `manifests`, filtered by `?artifactType=` when asked (and then saying so in
 * OCI-Filters-Applied, spec "Listing Referrers"). An empty list is an empty index, never a 404.
 */
export function sendReferrers(ex: Exchange, manifests: Descriptor[]): void {
  const artifactType = ex.query.get('artifactType');
  const headers: Record<string, string> = { 'Content-Type': OCI_INDEX };
  let list = manifests;
  if (artifactType !== null) {
    list = manifests.filter((m) => m.artifactType === artifactType);
    headers['OCI-Filters-Applied'] = 'artifactType';
  }
  sendBody(
    ex,
    200,
    headers,
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: list })),
  );
}
