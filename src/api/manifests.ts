import { lookupReference } from '../oci/names.js';
import type { Target } from '../routing.js';
import type { Exchange } from './exchange.js';
import { sendManifest } from './manifest-response.js';

/** GET/HEAD /v2/<name>/manifests/<tag|digest> of a mirrored repository: its registry's manifests. */
export function manifestHandler(ex: Exchange, target: Target, rawReference: string): Promise<void> {
  return sendManifest(ex, target.route.manifests, target.name, lookupReference(rawReference), rawReference);
}
