import type { Manifest } from '../cache/manifest-cache.js';
import { ifNoneMatch } from '../oci/conditional.js';
import { parseDigest } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';
import { lookupReference } from '../oci/names.js';
import { negotiate } from '../oci/negotiation.js';
import type { Target } from '../routing.js';
import { accepted } from './accept.js';
import type { HandlerContext } from './context.js';
import type { Exchange } from './exchange.js';
import { sendBody, sendNotModified } from './respond.js';

/** GET/HEAD /v2/<name>/manifests/<tag|digest> */
export async function manifestHandler(
  ex: Exchange,
  ctx: HandlerContext,
  target: Target,
  rawReference: string,
): Promise<void> {
  const { name } = target;
  const manifests = target.route.manifests;
  const ref = lookupReference(rawReference);
  let manifest: Manifest;
  // What a manifest served for this name refers to is this name's (cache/known-content.ts).
  const known = ctx.known;
  if (ref.kind === 'digest') {
    manifest = await manifests.byDigest(name, ref.digest, known.has(target.key, ref.digest.hex));
  } else {
    manifest = await manifests.byTag(name, ref.tag);
    known.noteManifest(target.key, manifest.digest.hex, manifest.body);
    const choice = negotiate(manifest.mediaType, manifest.body, accepted(ex.req.headers.accept));
    if (choice.kind === 'none')
      throw new RegistryError('MANIFEST_UNKNOWN', 'manifest unknown', { reason: choice.reason });
    if (choice.kind === 'child') {
      const childDigest = parseDigest(choice.digest);
      const child = await manifests.byDigest(name, childDigest, known.has(target.key, childDigest.hex));
      manifest = { ...child, outcome: manifest.outcome };
    }
  }
  known.noteManifest(target.key, manifest.digest.hex, manifest.body);
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
