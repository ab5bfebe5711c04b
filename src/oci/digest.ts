import { createHash } from 'node:crypto';
import { RegistryError } from './errors.js';

/**
 * Only sha256 is stored and verified: it is what Docker Hub and every client use, and no peer
 * registry here stores sha512 (docs/pushing.md, "Pushing", end-4c: a documented choice, not half support). A sha512
 * digest is grammatically valid (spec "Digests"), so it is never NAME_INVALID or a 405:
 * - a lookup (GET/HEAD/DELETE of a blob or manifest, a referrers subject) of a well-formed digest
 *   of another algorithm is content this store cannot hold: 404 BLOB_UNKNOWN / MANIFEST_UNKNOWN
 *   (spec end-2/end-3), without asking the upstream, whose bytes could not be verified here;
 * - a push naming one (`?digest=sha512:` on an upload, `?digest-algorithm=sha512` on POST, a
 *   manifest PUT by sha512 digest) is 400 DIGEST_INVALID (end-4c: "SHOULD respond 400").
 * Malformed digests stay 400 DIGEST_INVALID.
 */
const SHA256 = /^sha256:([a-f0-9]{64})$/;
const ANY_DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export interface Digest {
  readonly algorithm: 'sha256';
  readonly hex: string;
  /** `sha256:<hex>` */
  readonly value: string;
}

export function isDigestLike(reference: string): boolean {
  return reference.includes(':');
}

/** The only algorithm stored and verified; what an upload's `?digest-algorithm=` may ask for. */
export const SUPPORTED_ALGORITHM = 'sha256';

/** A well-formed digest of an algorithm this store does not keep (sha512): 400 unless a lookup turns it into a 404. */
export class UnsupportedAlgorithmError extends RegistryError {
  constructor(digest: string) {
    super('DIGEST_INVALID', 'only sha256 digests are supported', {
      digest,
      supported: [SUPPORTED_ALGORITHM],
    });
  }
}

export function parseDigest(text: string): Digest {
  const m = SHA256.exec(text);
  if (m?.[1]) return { algorithm: 'sha256', hex: m[1], value: text };
  if (ANY_DIGEST.test(text) && !text.startsWith('sha256:')) throw new UnsupportedAlgorithmError(text);
  throw new RegistryError('DIGEST_INVALID', 'invalid digest', { digest: text });
}

/**
 * A digest a client looks up: one of an algorithm we do not store names content we cannot have,
 * so it is `unknown` (404), not a client error.
 */
export function lookupDigest(text: string, unknown: 'BLOB_UNKNOWN' | 'MANIFEST_UNKNOWN'): Digest {
  try {
    return parseDigest(text);
  } catch (err) {
    if (err instanceof UnsupportedAlgorithmError) {
      throw new RegistryError(
        unknown,
        `${unknown === 'BLOB_UNKNOWN' ? 'blob' : 'manifest'} unknown: only sha256 content is stored`,
        {
          digest: text,
        },
      );
    }
    throw err;
  }
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function digestOf(data: Uint8Array | string): string {
  return `sha256:${sha256Hex(data)}`;
}
