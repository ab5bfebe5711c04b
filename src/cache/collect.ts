import { readFile, stat } from 'node:fs/promises';
import { parseDigest } from '../oci/digest.js';
import { manifestReferences } from '../oci/manifest.js';
import { listDir } from '../storage/files.js';
import { blobPath, blobPrefixDir, blobsDir } from '../storage/layout.js';
import type { BlobStore } from './blob-store.js';
import { removeOrphanMarkers } from './gc.js';
import { TagIndex } from './tag-index.js';

export interface CollectResult {
  /** Blobs (and manifests) removed, and their bytes. */
  removed: number;
  removedBytes: number;
  /** Blobs no manifest references but kept: newer than the grace period, open, or pinned. */
  keptYoung: number;
  /** Blobs in use: referenced by a manifest, hosted or cached. */
  referenced: number;
  /** Upload links of abandoned pushes removed, and markers of manifests no longer stored. */
  staleMarkers: number;
  ms: number;
}

/**
 * What content outside the mirror's own index holds (hosted repositories: hosted/repositories.ts),
 * as a collection asks it. Declared here so garbage collection needs nothing above cache/.
 */
export interface HeldContent {
  /** A collection starts: from now on, note what gets held, which the snapshot may miss. */
  beginCollection(): void;
  /** Every blob held now; with `expireLinksMs`, links older than that which nothing uses go first. */
  heldBlobs(expireLinksMs?: number): Promise<Set<string>>;
  /** Drops repositories left with nothing, except `busy` ones. */
  dropEmptyRepositories(busy: ReadonlySet<string>, graceMs?: number): Promise<void>;
  heldSinceCollectionBegan(hex: string): boolean;
  /** A collection ends: what is held now (undefined: the mark phase failed, keep what was held). */
  endCollection(snapshot: Set<string> | undefined): void;
}

/**
 * Mark and sweep over the one blob store: a blob stays when a manifest refers to it (a hosted
 * repository's, or a tag or digest the mirror cached), when it is a manifest still named somewhere,
 * when it is pinned, open, or newer than `graceMs`. Everything else goes.
 *
 * Safe while the server runs: an upload in progress is not in the store yet; a finished one is
 * linked to its repository and young; a blob a push mounts is linked, one it HEADs is `promised`
 * (in memory, for the grace period); and in the running process the sweep asks the store, at the
 * moment of removal, whether anything now holds the blob (a manifest pushed after the mark phase
 * holds its references before checking them).
 */
export async function collectGarbage(
  store: BlobStore,
  hosted: HeldContent,
  dataDir: string,
  graceMs: number,
  running: {
    /** Repositories with an upload under way (they stay hosted even while still empty). */
    uploading?: ReadonlySet<string>;
    /** Blobs a push was told are here (a HEAD's yes): kept like young ones. */
    promised?: (hex: string) => boolean;
  } = {},
): Promise<CollectResult> {
  const { uploading = new Set<string>(), promised = () => false } = running;
  const started = performance.now();
  hosted.beginCollection();
  let held: Set<string> | undefined;
  try {
    held = await hosted.heldBlobs(graceMs);
    await hosted.dropEmptyRepositories(uploading, graceMs);
    for (const hex of await mirroredReferences(store, dataDir)) held.add(hex);
    const cutoff = Date.now() - graceMs;
    const result: CollectResult = {
      removed: 0,
      removedBytes: 0,
      keptYoung: 0,
      referenced: 0,
      staleMarkers: 0,
      ms: 0,
    };
    for (const prefix of await listDir(blobsDir(dataDir))) {
      for (const hex of await listDir(blobPrefixDir(dataDir, prefix))) {
        if (!/^[a-f0-9]{64}$/.test(hex)) continue;
        if (held?.has(hex)) {
          result.referenced++;
          continue;
        }
        const file = blobPath(dataDir, hex);
        const s = await stat(file).catch(() => undefined);
        if (!s) continue;
        // Held since the mark phase began (a manifest pushed meanwhile), promised to a push, open, or pinned.
        if (
          s.mtimeMs > cutoff ||
          hosted.heldSinceCollectionBegan(hex) ||
          promised(hex) ||
          store.inUse(hex) ||
          store.isPinned(hex)
        ) {
          result.keptYoung++;
          continue;
        }
        await store.remove(parseDigest(`sha256:${hex}`));
        result.removed++;
        result.removedBytes += s.size;
      }
    }
    result.staleMarkers = await removeOrphanMarkers(dataDir);
    result.ms = Math.round(performance.now() - started);
    return result;
  } finally {
    // A failed mark phase must not shrink what hosted content holds.
    hosted.endCollection(held);
  }
}

/**
 * What the mirror's own index still names: every manifest under `repositories/` (tags and
 * manifests pulled by digest, found by the tag index's walk), and the blobs and child manifests
 * those refer to.
 */
export async function mirroredReferences(store: BlobStore, dataDir: string): Promise<Set<string>> {
  const refs = new Set<string>();
  for (const hex of await new TagIndex(dataDir, 'repositories').namedManifests()) {
    refs.add(hex);
    // Read from disk, not through the store: a collection must not count as a use for the LRU.
    const body = await readFile(store.pathOf(parseDigest(`sha256:${hex}`))).catch(() => undefined);
    if (body) for (const ref of manifestReferences(body)) refs.add(ref);
  }
  return refs;
}
