import type { Manifest } from '../cache/manifest-cache.js';
import type { Mirror, Target } from '../mirror.js';
import { ifNoneMatch } from '../oci/conditional.js';
import { parseDigest } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';
import { parseReference } from '../oci/names.js';
import { negotiate } from '../oci/negotiation.js';
import type { Exchange } from './exchange.js';
import { sendBody, sendNotModified } from './respond.js';

/** GET/HEAD /v2/<name>/manifests/<tag|digest> */
export async function manifestHandler(
  ex: Exchange,
  mirror: Mirror,
  target: Target,
  rawReference: string,
): Promise<void> {
  const { name } = target;
  const manifests = target.route.manifests;
  const ref = parseReference(rawReference);
  let manifest: Manifest;
  if (ref.kind === 'digest') {
    manifest = await manifests.byDigest(name, ref.digest);
  } else {
    manifest = await manifests.byTag(name, ref.tag);
    const choice = negotiate(manifest.mediaType, manifest.body, mirror.accepted(ex.req.headers.accept));
    if (choice.kind === 'none')
      throw new RegistryError('MANIFEST_UNKNOWN', 'manifest unknown', { reason: choice.reason });
    if (choice.kind === 'child') {
      const child = await manifests.byDigest(name, parseDigest(choice.digest));
      manifest = { ...child, outcome: manifest.outcome };
    }
  }
  ex.outcome = manifest.outcome;
  const etag = `"${manifest.digest.value}"`;
  const headers = {
    'Content-Type': manifest.mediaType,
    'Docker-Content-Digest': manifest.digest.value,
    ETag: etag,
  };
  if (ifNoneMatch(ex.req.headers['if-none-match'], etag)) {
    sendNotModified(ex, headers);
    return;
  }
  sendBody(ex, 200, headers, manifest.body);
}
