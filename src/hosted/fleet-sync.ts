import { createHash } from 'node:crypto';
import type { Logger } from '../observe/logger.js';
import { parseDigest } from '../oci/digest.js';
import type {
  HostedRecords,
  LinkRecord,
  ManifestRecord,
  RepositoryRecords,
  TagRecord,
} from '../shared/hosted-records.js';
import type { S3BlobStore } from '../shared/s3-store.js';
import { MAX_PUSHED_MANIFEST_BYTES } from './manifest-check.js';

/** What replicas share for hosted repositories: the records in Redis, the bytes in the bucket. */
export interface HostedFleet {
  records: HostedRecords;
  bucket: S3BlobStore;
  /** Subscribes to a Redis channel (shared/fleet-locks.ts's subscriber connection). */
  listen(channel: string, onMessage: (message: string) => void): Promise<void>;
}

/**
 * One replica's own files for hosted repositories (hosted/repositories.ts), as the sync writes
 * them: what another replica recorded, without recording it back.
 */
export interface LocalHosted {
  addName(name: string): void;
  tags(name: string): Promise<Map<string, string>>;
  setTag(name: string, tag: string, record: TagRecord): Promise<void>;
  deleteTag(name: string, tag: string): Promise<void>;
  manifests(name: string): Promise<string[]>;
  /** Whether the manifest's body is in this replica's store. */
  hasBody(hex: string): Promise<boolean>;
  /** Stores a verified manifest body and marks it as `name`'s. */
  markManifest(name: string, hex: string, record: ManifestRecord, body: Buffer | undefined): Promise<void>;
  removeManifest(name: string, hex: string): Promise<void>;
  links(name: string): Promise<string[]>;
  link(name: string, hex: string, record: LinkRecord): Promise<void>;
  unlink(name: string, hex: string): Promise<void>;
  noteDelete(name: string, at: number): Promise<void>;
}

/**
 * Keeps a replica's hosted files in step with the fleet's records (shared/hosted-records.ts):
 * every repository at start, a repository whenever a replica announces a change to it, and one
 * record before this replica would answer 404 for it (so a push answered on one replica is never
 * missing on the next request to another, announcement or not).
 *
 * Redis holds what the fleet agreed on; each replica's files are its read model of it, so reads
 * stay local file and memory lookups. Records written by this replica go to Redis first, then to
 * its files (repositories.ts): a full sync that read Redis before a local write must not undo it,
 * so removals wait for the next sync when this replica wrote to the repository since the read.
 */
export class FleetSync {
  readonly #fleet: HostedFleet;
  readonly #local: LocalHosted;
  readonly #log: Logger;
  /** Syncs under way per repository, and whether another was asked for meanwhile. */
  readonly #running = new Map<string, { again: boolean; done: Promise<void> }>();
  /** When this replica last wrote to a repository (ms). */
  readonly #wrote = new Map<string, number>();

  constructor(fleet: HostedFleet, local: LocalHosted, log: Logger) {
    this.#fleet = fleet;
    this.#local = local;
    this.#log = log;
  }

  /**
   * Subscribes to the fleet's announcements and learns every hosted name (routing needs them before
   * the first request); the repositories' records are read in the background (`synced`), since a
   * read that finds nothing asks Redis for its record anyway.
   */
  async start(): Promise<void> {
    await this.#fleet.listen('hubcache:hosted', (name) => void this.sync(name));
    let names: string[];
    try {
      names = await this.#fleet.records.names();
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'hosted repositories not read from Redis at start');
      return;
    }
    for (const name of names) this.#local.addName(name);
    this.synced = (async () => {
      for (const name of names) await this.sync(name);
    })();
  }

  /** Resolves once the records of every name known at start were read (tests wait on it). */
  synced: Promise<void> = Promise.resolve();

  /**
   * Whether `name` is a hosted repository of the fleet that this replica has not heard of yet (its
   * first push's announcement still on the way): then it is read, and hosted here from now on.
   */
  async learn(name: string): Promise<boolean> {
    if (!(await this.#fleet.records.isName(name).catch(() => false))) return false;
    await this.sync(name);
    return true;
  }

  /** This replica writes to `name` now (see the class comment). */
  wrote(name: string): void {
    this.#wrote.set(name, Date.now());
  }

  /** Reads a repository's records and applies them, additions and removals. One at a time per name. */
  sync(name: string): Promise<void> {
    const running = this.#running.get(name);
    if (running) {
      running.again = true;
      return running.done;
    }
    const entry = { again: false, done: Promise.resolve() };
    entry.done = (async () => {
      try {
        do {
          entry.again = false;
          await this.#syncOnce(name);
        } while (entry.again);
      } catch (err) {
        this.#log.warn(
          { repository: name, err: (err as Error).message },
          'hosted repository not synced from Redis',
        );
      } finally {
        this.#running.delete(name);
      }
    })();
    this.#running.set(name, entry);
    return entry.done;
  }

  async #syncOnce(name: string): Promise<void> {
    const readAt = Date.now();
    const records = await this.#fleet.records.read(name);
    // Beyond the bounds: this replica keeps what it has.
    if (!records) return;
    const empty = !records.tags.size && !records.manifests.size && !records.links.size;
    if (empty && !(await this.#fleet.records.isName(name))) return;
    this.#local.addName(name);
    await this.#apply(name, records);
    if ((this.#wrote.get(name) ?? 0) >= readAt) return;
    const tags = await this.#local.tags(name);
    for (const tag of tags.keys()) if (!records.tags.has(tag)) await this.#local.deleteTag(name, tag);
    for (const hex of await this.#local.manifests(name))
      if (!records.manifests.has(hex)) await this.#local.removeManifest(name, hex);
    for (const hex of await this.#local.links(name))
      if (!records.links.has(hex)) await this.#local.unlink(name, hex);
    if (records.deletedAt) await this.#local.noteDelete(name, records.deletedAt);
  }

  /** Additions and changes only: manifests first (a tag names one), then links, then tags. */
  async #apply(name: string, records: RepositoryRecords): Promise<void> {
    const known = new Set(await this.#local.manifests(name));
    for (const [hex, record] of records.manifests) {
      if (known.has(hex)) continue;
      const body = (await this.#local.hasBody(hex)) ? undefined : await this.#body(hex);
      if (body === null) continue;
      await this.#local.markManifest(name, hex, record, body);
    }
    const linked = new Set(await this.#local.links(name));
    for (const [hex, record] of records.links)
      if (!linked.has(hex)) await this.#local.link(name, hex, record);
    const tags = await this.#local.tags(name);
    for (const [tag, record] of records.tags) {
      if (tags.get(tag) !== record.d) await this.#local.setTag(name, tag, record);
    }
  }

  /**
   * Before a 404: whether another replica recorded a tag (and its manifest), a manifest or a blob
   * link of `name` meanwhile. What it finds is applied, so the caller reads its files again.
   */
  async look(name: string, what: { tag?: string; manifest?: string; link?: string }): Promise<boolean> {
    const fields = [
      ...(what.tag ? [`t:${what.tag}`] : []),
      ...(what.manifest ? [`m:${what.manifest}`] : []),
      ...(what.link ? [`l:${what.link}`] : []),
    ];
    let records: RepositoryRecords;
    try {
      records = await this.#fleet.records.fields(name, fields);
      const tagged = what.tag ? records.tags.get(what.tag) : undefined;
      if (tagged && !records.manifests.has(tagged.d)) {
        const more = await this.#fleet.records.fields(name, [`m:${tagged.d}`]);
        for (const [hex, m] of more.manifests) records.manifests.set(hex, m);
      }
    } catch (err) {
      this.#log.warn({ repository: name, err: (err as Error).message }, 'redis: hosted record not read');
      return false;
    }
    if (!records.tags.size && !records.manifests.size && !records.links.size) return false;
    this.#local.addName(name);
    await this.#apply(name, records);
    return true;
  }

  /**
   * A manifest's body from the bucket, checked against its digest (the bucket is not trusted);
   * null when it is not there or not right.
   */
  async #body(hex: string): Promise<Buffer | null> {
    const digest = parseDigest(`sha256:${hex}`);
    try {
      const found = await this.#fleet.bucket.read(digest, MAX_PUSHED_MANIFEST_BYTES);
      if (found && createHash('sha256').update(found.data).digest('hex') === hex) return found.data;
      if (found)
        this.#log.warn(
          { digest: digest.value },
          'shared store: a hosted manifest is not its digest: ignored',
        );
    } catch (err) {
      this.#log.warn(
        { digest: digest.value, err: (err as Error).message },
        'shared store: hosted manifest not read',
      );
    }
    return null;
  }
}
