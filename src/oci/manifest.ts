import { type Digest, parseDigest } from './digest.js';
import { RegistryError } from './errors.js';

/**
 * Reading manifests and indexes (image-spec manifest.md, image-index.md, descriptor.md; Docker's
 * schema 2 and schema 1), the one place their bytes become JSON and descriptors. No I/O: callers
 * decide what a failure means (a push refused, an upstream answer rejected, nothing to keep).
 */

/** The JSON of a manifest body, unchecked; throws SyntaxError when it is not JSON. */
export function parseManifestJson(body: Uint8Array): unknown {
  return JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
}

/** The manifest as a JSON object, or undefined when the body is not JSON or not an object. */
export function manifestObject(body: Uint8Array): Record<string, unknown> | undefined {
  let doc: unknown;
  try {
    doc = parseManifestJson(body);
  } catch {
    return undefined;
  }
  return doc !== null && typeof doc === 'object' && !Array.isArray(doc)
    ? (doc as Record<string, unknown>)
    : undefined;
}

/**
 * The hex digests a manifest of any kind refers to (schema 2, OCI, indexes, and schema 1's
 * fsLayers): what garbage collection must keep. Unparseable bodies refer to nothing.
 */
export function manifestReferences(body: Uint8Array): string[] {
  const doc = manifestObject(body);
  if (!doc) return [];
  const out: string[] = [];
  const add = (d: unknown) => {
    const digest =
      (d as { digest?: unknown; blobSum?: unknown } | null)?.digest ?? (d as { blobSum?: unknown })?.blobSum;
    if (typeof digest === 'string' && /^sha256:[a-f0-9]{64}$/.test(digest)) out.push(digest.slice(7));
  };
  add(doc.config);
  for (const key of ['layers', 'manifests', 'fsLayers', 'blobs']) {
    const list = doc[key];
    if (Array.isArray(list)) for (const d of list) add(d);
  }
  return out;
}

/**
 * An image manifest's blobs as written, unchecked: its config, then its layers (empty for an
 * index, or for anything that is not a JSON object).
 */
export function imageBlobs(doc: unknown): unknown[] {
  if (doc === null || typeof doc !== 'object') return [];
  const { config, layers } = doc as { config?: unknown; layers?: unknown };
  return [config, ...(Array.isArray(layers) ? layers : [])];
}

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  /** Foreign (non-distributable) layers live elsewhere: their blobs are not required here. */
  foreign: boolean;
}

/** A descriptor checked for shape (descriptor.md), or MANIFEST_INVALID naming `where` it was. */
export function parseDescriptor(value: unknown, where: string): Descriptor {
  const d = value as { mediaType?: unknown; digest?: unknown; size?: unknown; urls?: unknown };
  if (d === null || typeof d !== 'object') throw invalid(`${where} is not a descriptor`);
  if (typeof d.mediaType !== 'string' || d.mediaType.length === 0)
    throw invalid(`${where}.mediaType missing`);
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw invalid(`${where}.size must be a whole number ≥ 0`);
  }
  if (typeof d.digest !== 'string') throw invalid(`${where}.digest missing`);
  let digest: Digest;
  try {
    digest = parseDigest(d.digest);
  } catch {
    throw invalid(`${where}.digest is not a sha256 digest`);
  }
  const foreign = Array.isArray(d.urls) && d.urls.length > 0;
  return { mediaType: d.mediaType, digest, size: d.size, foreign };
}

/** The string values of an object (annotations); undefined when it is not an object. */
export function stringMap(value: unknown): Record<string, string> | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) if (typeof v === 'string') out[k] = v;
  return out;
}

function invalid(message: string): RegistryError {
  return new RegistryError('MANIFEST_INVALID', message, {});
}
