import { createHash } from 'node:crypto';
import { RegistryError } from './errors.js';

/**
 * Only sha256 is stored and verified: it is what Docker Hub and every client use. A sha512 digest
 * is grammatically valid (spec "Digests") but answered UNSUPPORTED rather than half supported.
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

export function parseDigest(text: string): Digest {
  const m = SHA256.exec(text);
  if (m?.[1]) return { algorithm: 'sha256', hex: m[1], value: text };
  if (ANY_DIGEST.test(text) && !text.startsWith('sha256:')) {
    throw new RegistryError('UNSUPPORTED', 'only sha256 digests are supported', { digest: text });
  }
  throw new RegistryError('DIGEST_INVALID', 'invalid digest', { digest: text });
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function digestOf(data: Uint8Array | string): string {
  return `sha256:${sha256Hex(data)}`;
}
