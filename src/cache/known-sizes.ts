import { parseDigest } from '../oci/digest.js';
import { imageBlobs, manifestObject } from '../oci/manifest.js';
import { LruMap } from './lru-map.js';

/**
 * Blobs' sizes as the image manifests this replica served give them (config and layers). A manifest
 * is checked against its digest, and clients check each blob's size against it, so this is the size
 * to expect: a shared copy of another size is not the blob, and is refused before a byte of it is
 * read (docs/SECURITY.md), instead of being streamed in full before its digest shows it wrong. A manifest
 * served by another replica leaves nothing here; SHARED_MAX_BLOB_BYTES bounds those.
 */
export class KnownSizes {
  /** Blob digest hex → size. */
  readonly #sizes = new LruMap<string, number>({ max: 100_000 });
  /** Manifests already read (digest hex): a hit does not parse JSON again. */
  readonly #read = new LruMap<string, true>({ max: 20_000 });

  noteManifest(digestHex: string, body: Buffer): void {
    if (this.#read.has(digestHex)) return;
    this.#read.set(digestHex, true);
    for (const d of imageBlobs(manifestObject(body))) this.#note(d);
  }

  get(digestHex: string): number | undefined {
    return this.#sizes.get(digestHex);
  }

  #note(descriptor: unknown): void {
    const { digest, size } = (descriptor ?? {}) as { digest?: unknown; size?: unknown };
    if (typeof digest !== 'string' || typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
      return;
    try {
      this.#sizes.set(parseDigest(digest).hex, size);
    } catch {
      // Not a sha256 digest: not a blob this mirror serves.
    }
  }
}
