import { indexEntries, isIndexType } from './media-types.js';

export type Choice = { kind: 'serve' } | { kind: 'child'; digest: string } | { kind: 'none'; reason: string };

/** The platform the reference registry picks for a client that accepts no index. */
const DEFAULT_PLATFORM = { os: 'linux', architecture: 'amd64' };

/**
 * What to send a client for a manifest fetched BY TAG, given what its Accept header allows
 * (`*` = anything, also no Accept at all). Mirrors distribution's handlers/manifests.go: an index
 * for a client that accepts no index becomes its linux/amd64 child; an OCI type the client does
 * not accept is MANIFEST_UNKNOWN. Never bytes the client cannot parse. By digest, clients get
 * exactly the bytes they named, whatever their Accept (they asked for that content).
 */
export function negotiate(mediaType: string, body: Uint8Array, accepted: ReadonlySet<string>): Choice {
  if (accepted.has('*') || accepted.has(mediaType)) return { kind: 'serve' };
  if (isIndexType(mediaType)) {
    const child = indexEntries(body)?.find(
      (m) =>
        m.platform?.os === DEFAULT_PLATFORM.os && m.platform?.architecture === DEFAULT_PLATFORM.architecture,
    );
    if (!child)
      return {
        kind: 'none',
        reason: `the index has no ${DEFAULT_PLATFORM.os}/${DEFAULT_PLATFORM.architecture} manifest`,
      };
    if (!accepted.has(child.mediaType)) {
      return {
        kind: 'none',
        reason: `the ${DEFAULT_PLATFORM.architecture} manifest is ${child.mediaType}, not accepted`,
      };
    }
    return { kind: 'child', digest: child.digest };
  }
  return { kind: 'none', reason: `the manifest is ${mediaType}, which the Accept header does not allow` };
}
