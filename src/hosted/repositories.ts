import { mkdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BlobStore } from '../cache/blob-store.js';
import { TagIndex } from '../cache/tag-index.js';
import type { Logger } from '../observe/logger.js';
import { type Digest, parseDigest } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';
import type { RecordChange } from '../shared/hosted-records.js';
import { listDir } from '../storage/files.js';
import { deletedMarker, layersDir, manifestsDir, repositoryDir, tagsDir } from '../storage/layout.js';
import { BlobLinks } from './blob-links.js';
import { FleetSync, type HostedFleet, type LocalHosted } from './fleet-sync.js';
import { HeldBlobs } from './held-blobs.js';
import type { PushedManifest } from './manifest-check.js';
import { ManifestRecords, type StoredManifest } from './manifest-records.js';
import { type HostedRules, PushPolicy } from './push-policy.js';

export type { HostedRules, StoredManifest };

/**
 * Repositories that live here rather than upstream: what clients pushed. On disk beside the
 * mirror's own index, under `<data>/hosted/<name>/` (storage/layout.ts): `_tags/<tag>` (tag → digest),
 * `_manifests/<hex>` (the manifests the repository holds; the file holds the media type),
 * `_layers/<hex>` (blobs uploaded or mounted into it, or named by a manifest pushed to it),
 * `_referrers/<subject hex>/<hex>` and `_deleted` (its mtime: the repository's last delete).
 * The bytes themselves are in the one content-addressed blob store the mirror uses, so a layer
 * pushed and the same layer pulled through are stored once.
 *
 * Which names are hosted: a name that matches a configured pattern, or (without patterns) any
 * name a push has created. A hosted name never goes upstream, under exactly the name pushed.
 *
 * Content is scoped to its repository (spec "Pulling Blobs": a blob not in the repository MUST
 * 404): a repository answers for the blobs linked into it (`_layers`: uploaded, mounted, or named
 * by a manifest pushed to it) and the manifests marked in `_manifests`, whatever else the shared
 * store holds. The links are read once per repository into memory, so a blob hit stays a lookup.
 *
 * Deleting never turns a hosted name back into a mirrored one at once: a repository emptied by
 * DELETEs stays hosted (and empty: every read is a 404) until a collection finds it empty and its
 * last delete (`_deleted`, a file whose mtime is that delete) older than the grace period. A name
 * that just deleted a manifest therefore never falls back to serving it, or anything else, from
 * the mirror (docs/SECURITY.md, "Pushes never take over a mirrored name").
 *
 * This class owns the names and their folders' lifecycle (create, drop when empty, never under a
 * write), and puts the pieces together for the handlers; the pieces live beside it: who may push
 * (push-policy.ts), the manifests each repository holds (manifest-records.ts), the blobs it answers
 * for (blob-links.ts), and what hosted content holds against eviction and collection (held-blobs.ts).
 */
export class HostedRepositories {
  readonly #data: string;
  readonly tags: TagIndex;
  readonly #store: BlobStore;
  readonly #policy: PushPolicy;
  readonly #log: Logger;
  /** Repositories on disk. */
  readonly #names = new Set<string>();
  /** Counts changes to `#names`: what was answered as mirrored may be hosted now (api/hit-lane.ts). */
  #generation = 0;
  /** Blobs hosted content needs (eviction never removes them). */
  readonly #held = new HeldBlobs();
  /** Per repository, the blobs it answers for. */
  readonly #links: BlobLinks;
  /** Per repository, the manifests it holds. */
  readonly #manifests: ManifestRecords;
  /** Replicas with a fleet secret and Redis: what every replica records, and the sync of it (fleet-sync.ts). */
  #fleet: HostedFleet | undefined;
  #sync: FleetSync | undefined;

  constructor(dataDir: string, store: BlobStore, rules: HostedRules, log: Logger) {
    this.#data = dataDir;
    this.tags = new TagIndex(dataDir, 'hosted');
    this.#store = store;
    this.#policy = new PushPolicy(rules);
    this.#log = log;
    this.#manifests = new ManifestRecords(dataDir, store);
    this.#links = new BlobLinks(
      dataDir,
      (name) => this.#manifests.referencedBy(name),
      (name) => this.#names.has(name),
    );
  }

  /** Learns which repositories are hosted: before serving, or their pulls would go upstream. */
  async loadNames(): Promise<void> {
    // Folders holding `_tags`, `_manifests` or `_layers` (the index's walk, over hosted/).
    for (const name of await this.tags.repositories()) this.#addName(name);
    await this.#sync?.start();
  }

  /**
   * Shares hosted repositories with the other replicas (before loadNames): pushes are recorded in
   * Redis and their bytes published to the bucket before they are acknowledged, and this
   * replica's files follow what the others record (fleet-sync.ts).
   */
  shareWith(fleet: HostedFleet): void {
    this.#fleet = fleet;
    this.#sync = new FleetSync(fleet, this.#localSide(), this.#log);
  }

  /** Whether hosted repositories are shared with other replicas (their bytes may be in the bucket only). */
  get shared(): boolean {
    return this.#fleet !== undefined;
  }

  /** Records a change in Redis before this replica's files take it; a failure fails the request (503). */
  async #record(name: string, change: RecordChange): Promise<void> {
    if (!this.#fleet) return;
    this.#sync?.wrote(name);
    try {
      await this.#fleet.records.write(name, change);
    } catch (err) {
      this.#log.warn({ repository: name, err: (err as Error).message }, 'redis: hosted change not recorded');
      throw new RegistryError(
        'UNAVAILABLE',
        "the fleet's shared records are unavailable: nothing was changed",
        {},
      );
    }
  }

  /** The bytes of a pushed blob or manifest in the bucket, before any record names them (503 otherwise). */
  async publish(digest: Digest, bytes: { file: string; size: number } | Buffer): Promise<void> {
    if (!this.#fleet) return;
    try {
      if (Buffer.isBuffer(bytes)) await this.#fleet.bucket.publishBuffer(digest, bytes);
      else await this.#fleet.bucket.publishFile(digest, bytes.file, bytes.size);
    } catch (err) {
      this.#log.warn(
        { digest: digest.value, err: (err as Error).message },
        'shared store: pushed content not published',
      );
      throw new RegistryError('UNAVAILABLE', 'the shared store is unavailable: the push was not taken', {});
    }
  }

  /** Learns the blobs hosted content holds (in the background, before the size bound is applied). */
  async loadHeld(): Promise<void> {
    this.#held.loaded(await this.heldBlobs());
  }

  get pushEnabled(): boolean {
    return this.#policy.pushEnabled;
  }

  /** Whether a push may make a hosted repository of a name not hosted yet (no patterns decide). */
  get createsOnPush(): boolean {
    return this.#policy.createsOnPush;
  }

  /** Changes whenever a name becomes hosted or stops being hosted. */
  get generation(): number {
    return this.#generation;
  }

  #addName(name: string): void {
    if (this.#names.has(name)) return;
    this.#names.add(name);
    this.#generation++;
  }

  isHosted(name: string): boolean {
    return this.#names.has(name) || this.#policy.matches(name);
  }

  /**
   * A name this replica routes as mirrored, about to answer 404: true when another replica's push
   * made it a hosted repository a moment ago (fleet-sync.ts), and it is hosted here now.
   */
  async learnName(name: string): Promise<boolean> {
    if (!this.#sync || this.#names.has(name)) return false;
    return this.#sync.learn(name);
  }

  /** Throws the spec's error when a push to `name` is not allowed here. */
  checkPushable(name: string): void {
    this.#policy.checkPushable(name);
  }

  holds(hex: string): boolean {
    return this.#held.holds(hex);
  }

  /** Holds blobs for a manifest PUT under way until the returned function is called (held-blobs.ts). */
  reserve(hexes: Iterable<string>): () => void {
    return this.#held.reserve(hexes);
  }

  /** Makes `name` a hosted repository (the first push to it). */
  async create(name: string): Promise<void> {
    if (this.#names.has(name)) return;
    await this.#record(name, {});
    await this.#writingTo(name, () => mkdir(repositoryDir(this.#data, 'hosted', name), { recursive: true }));
    this.#addName(name);
    this.#log.info({ repository: name }, 'hosted repository created by a push');
  }

  /** Records that a blob was uploaded to or mounted into a repository. */
  async link(name: string, digest: Digest): Promise<void> {
    await this.#record(name, { links: { [digest.hex]: { at: Date.now() } } });
    this.#held.hold(digest.hex);
    this.#addName(name);
    await this.#writingTo(name, () => this.#links.link(name, digest.hex));
  }

  /** Whether `name` answers for this blob: in memory once the repository's links were read. */
  async hasBlob(name: string, digest: Digest): Promise<boolean> {
    // Names never pushed to (say, under a --hosted pattern) hold nothing, and cost no memory.
    if (this.#names.has(name) && (await this.#links.has(name, digest.hex))) return true;
    // Linked on another replica a moment ago?
    return (await this.#sync?.look(name, { link: digest.hex })) === true && this.#links.has(name, digest.hex);
  }

  async isLinked(name: string, digest: Digest): Promise<boolean> {
    return this.hasBlob(name, digest);
  }

  /** Removes a blob from a repository: it answers 404 for it at once (the store may keep it for others). */
  async unlink(name: string, digest: Digest): Promise<void> {
    await this.#record(name, { links: { [digest.hex]: null }, deletedAt: Date.now() });
    await this.#links.unlink(name, digest.hex);
    await this.#noteDelete(name);
  }

  /** Marks when `name` last deleted something: it stays hosted at least a grace period after. */
  async #noteDelete(name: string, at = Date.now()): Promise<void> {
    const file = deletedMarker(this.#data, name);
    const now = new Date(at);
    await utimes(file, now, now).catch(async () => {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, '');
    });
  }

  /** Whether the repository exists: it holds at least one manifest (tags/list answers 200). */
  async exists(name: string): Promise<boolean> {
    return (await this.#manifests.list(name)).length > 0;
  }

  /**
   * Stores a checked manifest under `name`, tagged with `tags`. Everything it refers to must be
   * here already: blobs in the store, index entries in this repository. The references are held
   * (reserved) before they are checked, so a concurrent collection cannot remove one in between,
   * and held for good only once the checks passed.
   */
  async putManifest(name: string, m: PushedManifest, tags: string[]): Promise<void> {
    await this.#writingTo(name, () => this.#putManifest(name, m, tags));
  }

  async #putManifest(name: string, m: PushedManifest, tags: string[]): Promise<void> {
    const refs = [...m.blobs, ...m.manifests].map((d) => d.digest.hex);
    const release = this.reserve([...refs, m.digest.hex]);
    try {
      await this.#checkReferences(name, m);
      for (const hex of refs) this.#held.hold(hex);
      this.#held.hold(m.digest.hex);
      await this.#store.put(m.digest, m.body);
      // The fleet: the body in the bucket, then the records, before this replica's files.
      await this.publish(m.digest, m.body);
      const at = Date.now();
      await this.#record(name, {
        manifests: { [m.digest.hex]: { mt: m.mediaType, s: m.subject?.digest.hex ?? null, at } },
        links: Object.fromEntries(m.blobs.filter((d) => !d.foreign).map((d) => [d.digest.hex, { at }])),
        tags: Object.fromEntries(tags.map((tag) => [tag, { d: m.digest.hex, mt: m.mediaType, at }])),
      });
      await this.create(name);
      // The manifest's blobs are the repository's now (a blob fetched for it, or HEADed as stored).
      for (const d of m.blobs) if (!d.foreign) await this.#links.link(name, d.digest.hex);
      await this.#manifests.record(name, m);
      for (const tag of tags) {
        await this.tags.set(name, tag, {
          digest: m.digest.value,
          mediaType: m.mediaType,
          checkedAt: Date.now(),
        });
      }
    } finally {
      release();
    }
  }

  /** MANIFEST_BLOB_UNKNOWN unless every blob is stored and every index entry is in `name`. */
  async #checkReferences(name: string, m: PushedManifest): Promise<void> {
    for (const d of m.blobs) {
      if (d.foreign) continue;
      if ((await this.#store.size(d.digest)) === undefined && !(await this.#inBucket(d.digest))) {
        throw new RegistryError('MANIFEST_BLOB_UNKNOWN', `blob ${d.digest.value} is not in the registry`, {
          digest: d.digest.value,
        });
      }
    }
    for (const d of m.manifests) {
      if (
        !(await this.#manifests.has(name, d.digest)) &&
        !(await this.#lookedUp(name, { manifest: d.digest.hex }))
      ) {
        throw new RegistryError(
          'MANIFEST_BLOB_UNKNOWN',
          `manifest ${d.digest.value} is not in ${name}: push the index's entries first`,
          { digest: d.digest.value },
        );
      }
    }
  }

  async byTag(name: string, tag: string): Promise<StoredManifest | undefined> {
    let entry = await this.tags.get(name, tag);
    if (!entry && (await this.#lookedUp(name, { tag }))) entry = await this.tags.get(name, tag);
    return entry ? this.byDigest(name, parseDigest(entry.digest)) : undefined;
  }

  async byDigest(name: string, digest: Digest): Promise<StoredManifest | undefined> {
    const found = await this.#manifests.byDigest(name, digest);
    if (found || !(await this.#lookedUp(name, { manifest: digest.hex }))) return found;
    return this.#manifests.byDigest(name, digest);
  }

  /** Before a 404 in a fleet: whether another replica recorded it meanwhile (now in this replica's files). */
  async #lookedUp(name: string, what: { tag?: string; manifest?: string }): Promise<boolean> {
    return (await this.#sync?.look(name, what)) === true;
  }

  /** Whether the bucket holds a blob (uploaded to another replica): a manifest may name it. */
  async #inBucket(digest: Digest): Promise<boolean> {
    if (!this.#fleet) return false;
    try {
      return (await this.#fleet.bucket.size(digest)) !== undefined;
    } catch {
      return false;
    }
  }

  /** The tags of `name`, after reading the fleet's records of it (tags/list). */
  async tagList(name: string): Promise<string[]> {
    await this.#sync?.sync(name);
    return this.tags.tags(name);
  }

  /** Removes a manifest and every tag pointing at it. False when the repository does not hold it. */
  async deleteManifest(name: string, digest: Digest): Promise<boolean> {
    if (!(await this.#manifests.has(name, digest)) && !(await this.#lookedUp(name, { manifest: digest.hex })))
      return false;
    const pointing: string[] = [];
    for (const tag of await this.tags.tags(name)) {
      if ((await this.tags.get(name, tag))?.digest === digest.value) pointing.push(tag);
    }
    await this.#record(name, {
      manifests: { [digest.hex]: null },
      tags: Object.fromEntries(pointing.map((tag) => [tag, null])),
      deletedAt: Date.now(),
    });
    if (!(await this.#manifests.remove(name, digest))) return false;
    for (const tag of pointing) await this.tags.delete(name, tag);
    // Not dropped when empty: a collection does that, after the grace period (see the class comment).
    await this.#noteDelete(name);
    return true;
  }

  async deleteTag(name: string, tag: string): Promise<boolean> {
    if (!(await this.tags.get(name, tag)) && !(await this.#lookedUp(name, { tag }))) return false;
    await this.#record(name, { tags: { [tag]: null }, deletedAt: Date.now() });
    await this.tags.delete(name, tag);
    await this.#noteDelete(name);
    return true;
  }

  /** Manifests in `name` whose subject is `subject` (the referrers API), as descriptors. */
  async referrers(name: string, subject: Digest): Promise<Record<string, unknown>[]> {
    return this.#manifests.referrers(name, subject);
  }

  /** Hosted repositories that hold at least one manifest (what _catalog lists), sorted. */
  async repositories(): Promise<string[]> {
    const names: string[] = [];
    for (const name of this.#names) {
      if ((await this.#manifests.list(name)).length > 0) names.push(name);
    }
    return names.sort();
  }

  /**
   * Every blob hosted content needs: the manifests of every hosted repository, what they refer
   * to, and blobs linked by an upload. The garbage collector and the size bound keep these. With
   * `expireLinksMs`, an upload link that no manifest uses and that is older than that is removed
   * instead (an abandoned push): its blob is then collectable.
   */
  async heldBlobs(expireLinksMs?: number): Promise<Set<string>> {
    const held = new Set<string>();
    for (const name of this.#names) {
      for (const hex of await this.#manifests.list(name)) held.add(hex);
      for (const hex of await this.#manifests.referencedBy(name)) held.add(hex);
    }
    const cutoff = expireLinksMs === undefined ? undefined : Date.now() - expireLinksMs;
    for (const name of this.#names) await this.#links.holdOrExpire(name, held, cutoff);
    return held;
  }

  /** A collection starts: from now on, note what gets held, which its snapshot may miss. */
  beginCollection(): void {
    this.#held.beginCollection();
  }

  heldSinceCollectionBegan(hex: string): boolean {
    return this.#held.heldSinceCollectionBegan(hex);
  }

  /** A collection ends: what is held now (deleted manifests no longer hold their blobs). */
  endCollection(snapshot: Set<string> | undefined): void {
    this.#held.endCollection(snapshot);
  }

  /**
   * Repositories left with nothing (an abandoned first push) stop shadowing the upstream, unless
   * an upload to them is under way (`busy`).
   */
  async dropEmptyRepositories(busy: ReadonlySet<string>, graceMs = 0): Promise<void> {
    for (const name of [...this.#names]) if (!busy.has(name)) await this.#dropIfEmpty(name, graceMs);
  }

  /**
   * A repository with no manifest, tag or upload link left is no longer hosted (unless a pattern
   * says so). Never while a push writes into it (see #writingTo): removing the folder under a
   * write failed one or the other (ENOENT, ENOTEMPTY: a 500).
   */
  async #dropIfEmpty(name: string, graceMs: number): Promise<void> {
    if (this.#writing.has(name) || this.#dropping.has(name)) return;
    const drop = this.#drop(name, graceMs);
    this.#dropping.set(
      name,
      drop.catch(() => {}),
    );
    try {
      await drop;
    } finally {
      this.#dropping.delete(name);
    }
  }

  async #drop(name: string, graceMs: number): Promise<void> {
    const dir = repositoryDir(this.#data, 'hosted', name);
    for (const sub of [
      manifestsDir(this.#data, 'hosted', name),
      tagsDir(this.#data, 'hosted', name),
      layersDir(this.#data, name),
    ]) {
      if ((await listDir(sub)).length > 0) return;
    }
    const lastDelete = await stat(deletedMarker(this.#data, name)).then(
      (s) => s.mtimeMs,
      () => 0,
    );
    if (lastDelete > Date.now() - graceMs) return;
    try {
      await rm(dir, { recursive: true, force: true });
    } catch (err) {
      // Something was written meanwhile (not by this process's pushes, which wait): not empty, kept.
      if ((err as NodeJS.ErrnoException).code === 'ENOTEMPTY') return;
      throw err;
    }
    if (this.#names.delete(name)) this.#generation++;
    this.#links.forget(name);
    await this.#fleet?.records.dropName(name).catch(() => {});
  }

  /** This replica's files as the fleet sync writes them: what another replica recorded (fleet-sync.ts). */
  #localSide(): LocalHosted {
    return {
      addName: (name) => this.#addName(name),
      tags: async (name) => {
        const out = new Map<string, string>();
        for (const tag of await this.tags.tags(name)) {
          const entry = await this.tags.get(name, tag);
          if (entry) out.set(tag, parseDigest(entry.digest).hex);
        }
        return out;
      },
      setTag: (name, tag, r) =>
        this.#writingTo(name, () =>
          this.tags.set(name, tag, { digest: `sha256:${r.d}`, mediaType: r.mt, checkedAt: r.at }),
        ),
      deleteTag: (name, tag) => this.tags.delete(name, tag),
      manifests: (name) => this.#manifests.list(name),
      hasBody: async (hex) => (await this.#store.size(parseDigest(`sha256:${hex}`))) !== undefined,
      markManifest: (name, hex, r, body) =>
        this.#writingTo(name, async () => {
          const digest = parseDigest(`sha256:${hex}`);
          this.#held.hold(hex);
          if (body) await this.#store.put(digest, body);
          await this.#manifests.mark(name, hex, r.mt, r.s ?? undefined);
          // What it refers to is the repository's too (blob-links.ts reads references once).
          this.#links.forget(name);
        }),
      removeManifest: async (name, hex) => {
        await this.#manifests.remove(name, parseDigest(`sha256:${hex}`));
      },
      links: (name) => this.#links.linksOf(name),
      link: (name, hex) =>
        this.#writingTo(name, async () => {
          this.#held.hold(hex);
          await this.#links.link(name, hex);
        }),
      unlink: (name, hex) => this.#links.unlink(name, hex),
      noteDelete: (name, at) => this.#noteDelete(name, at),
    };
  }

  /** Writes under way per repository. */
  readonly #writing = new Map<string, number>();
  /** Repositories being dropped: a write waits for the drop to finish, then recreates what it needs. */
  readonly #dropping = new Map<string, Promise<void>>();

  /** Runs a write into `name`'s folder, which no collection removes meanwhile. */
  async #writingTo<T>(name: string, write: () => Promise<T>): Promise<T> {
    for (let drop = this.#dropping.get(name); drop; drop = this.#dropping.get(name)) await drop;
    this.#writing.set(name, (this.#writing.get(name) ?? 0) + 1);
    try {
      return await write();
    } finally {
      const left = (this.#writing.get(name) ?? 1) - 1;
      if (left > 0) this.#writing.set(name, left);
      else this.#writing.delete(name);
    }
  }
}
