import { type Digest, digestOf, parseDigest } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';
import { type Descriptor, parseDescriptor, parseManifestJson, stringMap } from '../oci/manifest.js';
import {
  bareMediaType,
  DOCKER_LIST,
  DOCKER_MANIFEST,
  DOCKER_SCHEMA1,
  DOCKER_SCHEMA1_SIGNED,
  isIndexType,
  OCI_INDEX,
  OCI_MANIFEST,
} from '../oci/media-types.js';

/** distribution refuses manifests over 4 MiB (its default `validation.manifests.maxsize`). */
export const MAX_PUSHED_MANIFEST_BYTES = 4 * 1024 * 1024;

export type { Descriptor };

/** A manifest a client pushed, checked for shape, with what it refers to. */
export interface PushedManifest {
  digest: Digest;
  mediaType: string;
  body: Buffer;
  /** Config and layers (image manifests): blobs that must be stored. */
  blobs: Descriptor[];
  /** Entries of an index: manifests that must be stored in the same repository. */
  manifests: Descriptor[];
  subject: Descriptor | undefined;
  artifactType: string | undefined;
  annotations: Record<string, string> | undefined;
}

const PUSHABLE = new Set([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX]);

/**
 * Parses and checks a pushed manifest: JSON, a known media type agreeing between Content-Type and
 * the body, schema version 2, well-formed descriptors. Whether the referenced content exists is the
 * caller's check (it needs the store). Schema 1 is refused: Docker Hub stopped accepting it in 2024
 * and current clients refuse to pull it.
 */
export function checkManifest(body: Buffer, contentType: string | undefined): PushedManifest {
  if (body.length > MAX_PUSHED_MANIFEST_BYTES) {
    throw new RegistryError('MANIFEST_INVALID', 'manifest larger than 4 MiB', { size: body.length });
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseManifestJson(body) as Record<string, unknown>;
  } catch {
    throw new RegistryError('MANIFEST_INVALID', 'manifest is not JSON', {});
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new RegistryError('MANIFEST_INVALID', 'manifest is not a JSON object', {});
  }
  const header = bareMediaType(contentType);
  const declared = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  if (header === DOCKER_SCHEMA1 || header === DOCKER_SCHEMA1_SIGNED || doc.schemaVersion === 1) {
    throw new RegistryError(
      'MANIFEST_INVALID',
      'schema 1 manifests are not accepted: push schema 2 or OCI',
      {},
    );
  }
  if (doc.schemaVersion !== 2) {
    throw new RegistryError('MANIFEST_INVALID', 'schemaVersion must be 2', {});
  }
  // The spec lets an OCI manifest omit mediaType; then its shape says which one it is.
  const fromShape = Array.isArray(doc.manifests) ? OCI_INDEX : OCI_MANIFEST;
  const typed = header && header !== 'application/json' && header !== 'application/octet-stream';
  const mediaType = declared ?? (typed ? header : fromShape);
  if (typed && declared && header !== declared) {
    throw new RegistryError('MANIFEST_INVALID', 'Content-Type does not match the manifest mediaType', {
      contentType: header,
      mediaType: declared,
    });
  }
  if (!PUSHABLE.has(mediaType)) {
    throw new RegistryError('MANIFEST_INVALID', `unsupported manifest media type ${mediaType}`, {});
  }
  const blobs: Descriptor[] = [];
  const manifests: Descriptor[] = [];
  if (isIndexType(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw invalid('an index needs a manifests array');
    for (const [i, d] of doc.manifests.entries()) manifests.push(parseDescriptor(d, `manifests[${i}]`));
  } else {
    if (doc.config === undefined) throw invalid('an image manifest needs a config');
    blobs.push(parseDescriptor(doc.config, 'config'));
    if (!Array.isArray(doc.layers)) throw invalid('an image manifest needs a layers array');
    for (const [i, d] of doc.layers.entries()) blobs.push(parseDescriptor(d, `layers[${i}]`));
  }
  const subject = doc.subject === undefined ? undefined : parseDescriptor(doc.subject, 'subject');
  const artifactType =
    typeof doc.artifactType === 'string'
      ? doc.artifactType
      : isIndexType(mediaType)
        ? undefined
        : configType(doc.config);
  return {
    digest: parseDigest(digestOf(body)),
    mediaType,
    body,
    blobs,
    manifests,
    subject,
    artifactType,
    annotations: stringMap(doc.annotations),
  };
}

/** The referrers API reports an image manifest's config media type when it has no artifactType. */
function configType(config: unknown): string | undefined {
  const type = (config as { mediaType?: unknown } | undefined)?.mediaType;
  return typeof type === 'string' ? type : undefined;
}

function invalid(message: string): RegistryError {
  return new RegistryError('MANIFEST_INVALID', message, {});
}
