import { type Digest, lookupDigest, parseDigest } from './digest.js';
import { RegistryError } from './errors.js';

// OCI distribution-spec "Pulling manifests": the name and tag grammars.
const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** Clients cap host + '/' + name at 255 characters; a name alone can't be longer. */
const MAX_NAME = 255;

export function validateName(name: string): string {
  if (name.length === 0 || name.length > MAX_NAME) {
    throw new RegistryError('NAME_INVALID', 'invalid repository name', { name });
  }
  for (const part of name.split('/')) {
    if (!COMPONENT.test(part)) throw new RegistryError('NAME_INVALID', 'invalid repository name', { name });
  }
  return name;
}

/** Whether `text` is a tag by the spec's grammar. */
export function isTag(text: string): boolean {
  return TAG.test(text);
}

export type Reference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest };

export function parseReference(reference: string): Reference {
  if (reference.includes(':')) return { kind: 'digest', digest: parseDigest(reference) };
  if (!TAG.test(reference)) throw new RegistryError('TAG_INVALID', 'invalid tag', { tag: reference });
  return { kind: 'tag', tag: reference };
}

/** A reference a client looks up (GET/HEAD/DELETE): a digest of an algorithm not stored is MANIFEST_UNKNOWN. */
export function lookupReference(reference: string): Reference {
  if (reference.includes(':')) return { kind: 'digest', digest: lookupDigest(reference, 'MANIFEST_UNKNOWN') };
  return parseReference(reference);
}

export function referenceString(ref: Reference): string {
  return ref.kind === 'tag' ? ref.tag : ref.digest.value;
}

export type V2Route =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'tags'; name: string }
  | { kind: 'upload'; name: string; session: string | undefined }
  | { kind: 'referrers'; name: string; digest: string };

/**
 * Splits a /v2/ path into its endpoint. Names contain slashes, so the endpoint is found from the
 * right: the last `/manifests/`, `/blobs/`, `/tags/list` segment decides (as the reference registry's
 * router does). The name is NOT validated here. Returns undefined for a path that is no endpoint.
 */
export function parseV2Path(path: string): V2Route | undefined {
  if (path === '/v2/' || path === '/v2') return { kind: 'base' };
  if (!path.startsWith('/v2/')) return undefined;
  const rest = path.slice(4);
  if (rest === '_catalog') return { kind: 'catalog' };
  let m = /^(.+)\/tags\/list$/.exec(rest);
  if (m?.[1]) return { kind: 'tags', name: m[1] };
  m = /^(.+)\/blobs\/uploads(?:\/([^/]*))?$/.exec(rest);
  if (m?.[1]) return { kind: 'upload', name: m[1], session: m[2] || undefined };
  m = /^(.+)\/(manifests|blobs|referrers)\/([^/]+)$/.exec(rest);
  if (!m?.[1] || !m[3]) return undefined;
  if (m[2] === 'manifests') return { kind: 'manifest', name: m[1], reference: m[3] };
  if (m[2] === 'blobs') return { kind: 'blob', name: m[1], digest: m[3] };
  return { kind: 'referrers', name: m[1], digest: m[3] };
}
