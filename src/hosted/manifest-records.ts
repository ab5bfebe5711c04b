import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BlobStore } from '../cache/blob-store.js';
import { type Digest, parseDigest } from '../oci/digest.js';
import { manifestReferences } from '../oci/manifest.js';
import { exists, listDir } from '../storage/files.js';
import { manifestMarker, manifestsDir, referrerLink, referrersDir } from '../storage/layout.js';
import { checkManifest, type PushedManifest } from './manifest-check.js';

export interface StoredManifest {
  digest: Digest;
  mediaType: string;
  body: Buffer;
}

/**
 * The manifests each hosted repository holds: `hosted/<name>/_manifests/<hex>` (the file holds
 * the media type) and, for a manifest with a subject, `_referrers/<subject hex>/<hex>` (the
 * referrers API reads these). The bodies are in the blob store.
 */
export class ManifestRecords {
  readonly #data: string;
  readonly #store: BlobStore;

  constructor(data: string, store: BlobStore) {
    this.#data = data;
    this.#store = store;
  }

  /** Marks a stored manifest as `name`'s, and as a referrer of its subject. */
  async record(name: string, m: PushedManifest): Promise<void> {
    await this.mark(name, m.digest.hex, m.mediaType, m.subject?.digest.hex);
  }

  /** Marks a stored manifest (by hex) as `name`'s with its media type, and its subject's referrer. */
  async mark(name: string, hex: string, mediaType: string, subjectHex: string | undefined): Promise<void> {
    const marker = manifestMarker(this.#data, 'hosted', name, hex);
    await mkdir(path.dirname(marker), { recursive: true });
    await writeFile(marker, mediaType);
    if (subjectHex) {
      const ref = referrerLink(this.#data, name, subjectHex, hex);
      await mkdir(path.dirname(ref), { recursive: true });
      await writeFile(ref, '');
    }
  }

  async byDigest(name: string, digest: Digest): Promise<StoredManifest | undefined> {
    let mediaType: string;
    try {
      mediaType = await readFile(manifestMarker(this.#data, 'hosted', name, digest.hex), 'utf8');
    } catch {
      return undefined;
    }
    const body = await this.#store.read(digest);
    return body ? { digest, mediaType, body } : undefined;
  }

  /** Whether `name` holds the manifest, and its body is stored. */
  async has(name: string, digest: Digest): Promise<boolean> {
    return (
      (await exists(manifestMarker(this.#data, 'hosted', name, digest.hex))) &&
      (await this.#store.size(digest)) !== undefined
    );
  }

  /** The manifests `name` holds (hex digests). */
  async list(name: string): Promise<string[]> {
    return listDir(manifestsDir(this.#data, 'hosted', name));
  }

  /** What `name`'s manifests refer to, read from disk (not through the store: not a use for the LRU). */
  async referencedBy(name: string): Promise<string[]> {
    const refs: string[] = [];
    for (const hex of await this.list(name)) {
      const body = await readFile(this.#store.pathOf(parseDigest(`sha256:${hex}`))).catch(() => undefined);
      if (body) refs.push(...manifestReferences(body));
    }
    return refs;
  }

  /** Removes the manifest from `name` (and from its subject's referrers); false when not held. */
  async remove(name: string, digest: Digest): Promise<boolean> {
    const marker = manifestMarker(this.#data, 'hosted', name, digest.hex);
    if (!(await exists(marker))) return false;
    const stored = await this.byDigest(name, digest);
    await rm(marker, { force: true });
    if (stored) {
      try {
        const subject = checkManifest(stored.body, stored.mediaType).subject;
        if (subject) {
          await rm(referrerLink(this.#data, name, subject.digest.hex, digest.hex), { force: true });
        }
      } catch {
        // not parseable: it has no referrer entry either
      }
    }
    return true;
  }

  /** Manifests in `name` whose subject is `subject` (the referrers API), as descriptors. */
  async referrers(name: string, subject: Digest): Promise<Record<string, unknown>[]> {
    let hexes: string[] = [];
    try {
      hexes = await readdir(referrersDir(this.#data, name, subject.hex));
    } catch {
      return [];
    }
    const out: Record<string, unknown>[] = [];
    for (const hex of hexes.sort()) {
      const stored = await this.byDigest(name, parseDigest(`sha256:${hex}`));
      if (!stored) continue;
      const m = checkManifest(stored.body, stored.mediaType);
      out.push({
        mediaType: m.mediaType,
        digest: m.digest.value,
        size: stored.body.length,
        ...(m.artifactType ? { artifactType: m.artifactType } : {}),
        ...(m.annotations && Object.keys(m.annotations).length ? { annotations: m.annotations } : {}),
      });
    }
    return out;
  }
}
