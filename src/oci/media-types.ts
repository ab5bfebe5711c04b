export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const DOCKER_SCHEMA1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
export const DOCKER_SCHEMA1 = 'application/vnd.docker.distribution.manifest.v1+json';

/**
 * Sent upstream on every manifest request. Without an Accept list the reference registry converts
 * schema2 to schema1 (another digest) and 404s OCI content; Docker Hub does the same (spec
 * content-negotiation table). Schema1 is deliberately absent: moby and containerd 2 refuse it.
 */
export const UPSTREAM_ACCEPT = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST].join(', ');

export const MANIFEST_TYPES: ReadonlySet<string> = new Set([
  DOCKER_MANIFEST,
  DOCKER_LIST,
  OCI_MANIFEST,
  OCI_INDEX,
]);

export function isIndexType(mediaType: string): boolean {
  return mediaType === OCI_INDEX || mediaType === DOCKER_LIST;
}

/** The media type of a Content-Type header value, without parameters, lower case. */
export function bareMediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/** The media types a client's Accept header(s) name; `*` for a wildcard or no header at all. */
export function acceptedTypes(accept: string | string[] | undefined): Set<string> {
  const values = Array.isArray(accept) ? accept : accept ? [accept] : [];
  const out = new Set<string>();
  for (const value of values) {
    for (const part of value.split(',')) {
      const type = bareMediaType(part);
      if (!type) continue;
      // q=0 means "not acceptable" (RFC 9110 §12.4.2).
      if (/;\s*q\s*=\s*0(?:\.0*)?\s*(?:;|$)/.test(part)) continue;
      out.add(type === '*/*' || type === 'application/*' ? '*' : type);
    }
  }
  if (out.size === 0) out.add('*');
  return out;
}

export interface PlatformEntry {
  digest: string;
  mediaType: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
}

/** The children of an index or manifest list, or undefined when the bytes are no valid index. */
export function indexEntries(body: Uint8Array): PlatformEntry[] | undefined {
  try {
    const doc = JSON.parse(Buffer.from(body).toString('utf8')) as { manifests?: unknown };
    return Array.isArray(doc.manifests) ? (doc.manifests as PlatformEntry[]) : undefined;
  } catch {
    return undefined;
  }
}

/** The `mediaType` field a manifest declares, if any (OCI manifests may omit it). */
export function declaredMediaType(body: Uint8Array): string | undefined {
  try {
    const doc = JSON.parse(Buffer.from(body).toString('utf8')) as {
      mediaType?: unknown;
      manifests?: unknown;
    };
    if (typeof doc.mediaType === 'string') return doc.mediaType;
    return undefined;
  } catch {
    return undefined;
  }
}
