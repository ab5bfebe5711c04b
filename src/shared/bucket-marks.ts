import { manifestReferences } from '../oci/manifest.js';
import type { BucketMarks } from './bucket-gc.js';
import type { HostedRecords } from './hosted-records.js';
import type { RedisTagIndex } from './redis-tags.js';

/**
 * Manifests read to mark at most: beyond it the marks are incomplete and the collection stops
 * before removing anything (1 per tag and per child of an index: ~100 bytes of memory each).
 */
export const MAX_MARKED_MANIFESTS = 200_000;

export interface MarkSources {
  /** The fleet's hosted records (MAC'd; absent without a fleet secret). */
  hostedRecords: Pick<HostedRecords, 'names' | 'read'> | undefined;
  /** The fleet's tag index of mirrored repositories. */
  tags: Pick<RedisTagIndex, 'repositories' | 'taggedManifests'>;
  /** What this replica's own files hold for hosted repositories (its read model of the records). */
  localHosted: () => Promise<Set<string>>;
  /** What this replica's own files name for mirrored repositories (manifests and their references). */
  localMirrored: () => Promise<Set<string>>;
  /** A manifest's body, verified against its digest (this replica's store, else the bucket); undefined when neither has it. */
  manifest: (hex: string) => Promise<Buffer | undefined>;
  /**
   * A hosted link no manifest of its repository names and older than this (--gc-grace) is an
   * abandoned upload: its record is removed (`expireLinks`), and its blob, still kept by this
   * collection, is collected by the next one unless a manifest names it by then.
   */
  linkExpiryMs: number;
  expireLinks?: ((name: string, hexes: string[]) => Promise<void>) | undefined;
}

/**
 * What the fleet still names, for the bucket's collection (shared/bucket-gc.ts):
 * - hosted: every hosted repository's manifests and linked blobs in Redis (records without the
 *   fleet's MAC are ignored, so Redis cannot make a blob look hosted), with this replica's own. A
 *   link no manifest names, older than the grace period (an abandoned upload), loses its record
 *   now and its blob at the next collection: a push naming it in between keeps it;
 * - mirrored: every manifest a mirrored tag names in the fleet's tag index, the manifests an index
 *   among them names, and every blob those name; with what this replica's own files name (pulls
 *   by digest included).
 * Any failure (Redis down, a bound exceeded) throws: a collection on incomplete marks would remove
 * what is still named.
 */
export async function fleetMarks(sources: MarkSources): Promise<BucketMarks> {
  const hosted = await sources.localHosted();
  if (sources.hostedRecords) {
    const cutoff = Date.now() - sources.linkExpiryMs;
    for (const name of await sources.hostedRecords.names()) {
      const records = await sources.hostedRecords.read(name);
      if (!records) continue;
      // What the repository's manifests name; unknown when a body cannot be read (no link expires then).
      let named: Set<string> | undefined = new Set();
      for (const hex of records.manifests.keys()) {
        hosted.add(hex);
        const body = named && (await sources.manifest(hex));
        if (body) for (const ref of manifestReferences(body)) named?.add(ref);
        else named = undefined;
      }
      const abandoned: string[] = [];
      for (const [hex, link] of records.links) {
        hosted.add(hex);
        if (named && !named.has(hex) && link.at < cutoff) abandoned.push(hex);
      }
      if (abandoned.length > 0) await sources.expireLinks?.(name, abandoned);
    }
  }
  const mirrored = await sources.localMirrored();
  const queue: string[] = [];
  for (const repository of await sources.tags.repositories()) {
    for (const hex of await sources.tags.taggedManifests(repository)) queue.push(hex);
    if (queue.length > MAX_MARKED_MANIFESTS) throw tooMany();
  }
  const read = new Set<string>();
  while (queue.length > 0) {
    const hex = queue.pop() as string;
    mirrored.add(hex);
    if (read.has(hex)) continue;
    if (read.size >= MAX_MARKED_MANIFESTS) throw tooMany();
    read.add(hex);
    const body = await sources.manifest(hex);
    if (!body) continue;
    for (const ref of manifestReferences(body)) mirrored.add(ref);
    // An index's children are manifests: their blobs are named only in their own bodies.
    for (const child of indexChildren(body)) queue.push(child);
  }
  return { hosted, mirrored };
}

const tooMany = () =>
  new Error(`more than ${MAX_MARKED_MANIFESTS} manifests to mark: the bucket is not collected`);

/** The manifests an image index (or a manifest list) names, as hex. */
function indexChildren(body: Buffer): string[] {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    return [];
  }
  const list = (doc as { manifests?: unknown } | null)?.manifests;
  if (!Array.isArray(list)) return [];
  const out: string[] = [];
  for (const d of list) {
    const digest = (d as { digest?: unknown } | null)?.digest;
    if (typeof digest === 'string' && /^sha256:[a-f0-9]{64}$/.test(digest)) out.push(digest.slice(7));
  }
  return out;
}
