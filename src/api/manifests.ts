import type { BlobStore } from '../cache/blob-store.js';
import type { ManifestCache } from '../cache/manifest-cache.js';
import { lookupReference, type Reference } from '../oci/names.js';
import type { Target } from '../routing.js';
import type { HandlerContext } from './context.js';
import type { Exchange } from './exchange.js';
import type { LaneOffer } from './hit-lane.js';
import { type SentManifest, sendManifest } from './manifest-response.js';

/** GET/HEAD /v2/<name>/manifests/<tag|digest> of a mirrored repository: its registry's manifests. */
export async function manifestHandler(
  ex: Exchange,
  ctx: HandlerContext,
  target: Target,
  rawReference: string,
): Promise<void> {
  const ref = lookupReference(rawReference);
  const manifests = target.route.manifests;
  const sent = await sendManifest(ex, manifests, target.name, ref, rawReference);
  if (!sent || (ref.kind === 'tag' && !manifests.tagsHeldHere)) return;
  ctx.lane.offer(ex, sent.headers, sent.sent.body, stillServed(ctx.store, manifests, target.name, ref, sent));
}

/**
 * When the path would send these bytes again: by digest, while they are held in memory (a
 * manifest by digest never changes); by tag, while the tag is fresh (its TTL), still names the
 * same manifest, and what was sent for it is still held. The same looks as the path's, so the
 * eviction policy counts the same uses.
 */
function stillServed(
  store: BlobStore,
  manifests: ManifestCache,
  name: string,
  ref: Reference,
  { named, sent }: SentManifest,
): LaneOffer {
  if (ref.kind === 'digest') {
    return { byAccept: false, stillServed: () => store.inMemory(ref.digest) === sent.body };
  }
  const viaEntry = sent !== named;
  const heldIfFresh = manifests.heldIfFresh(name, ref.tag, named.digest);
  return {
    // Negotiated on Accept: a client that cannot read an index gets its platform's manifest.
    byAccept: true,
    stillServed: () => {
      if (heldIfFresh() !== named.body) return false;
      return !viaEntry || store.inMemory(sent.digest) === sent.body;
    },
  };
}
