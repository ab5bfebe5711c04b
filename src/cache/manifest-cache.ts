import type { LimitFunction } from 'p-limit';
import type { Logger } from '../observe/logger.js';
import { type Digest, digestOf, parseDigest } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';
import { parseManifestJson } from '../oci/manifest.js';
import {
  bareMediaType,
  DOCKER_SCHEMA1,
  DOCKER_SCHEMA1_SIGNED,
  declaredMediaType,
  MANIFEST_TYPES,
  OCI_INDEX,
  OCI_MANIFEST,
} from '../oci/media-types.js';
import type { FleetLocks as Coordinator } from '../shared/fleet-locks.js';
import { type S3BlobStore, SharedStoreDownError } from '../shared/s3-store.js';
import { UpstreamAuthError, UpstreamBackoffError, UpstreamUnreachableError } from '../upstream/errors.js';
import { MAX_MANIFEST_BYTES, type RegistryApi } from '../upstream/registry-api.js';
import type { BlobStore } from './blob-store.js';
import type { KnownContent } from './known-content.js';
import type { KnownSizes } from './known-sizes.js';
import { LruMap } from './lru-map.js';
import type { TagEntry, TagIndex } from './tag-index.js';

/** How a response was served, as the X-Cache header and the request log say (HOSTED: pushed here, not cached). */
export type CacheOutcome = 'HIT' | 'MISS' | 'COALESCED' | 'REVALIDATED' | 'STALE' | 'HOSTED';

export interface Manifest {
  digest: Digest;
  mediaType: string;
  body: Buffer;
  outcome: CacheOutcome;
}

/** A replica checking a tag upstream holds the fleet's turn at most this long. */
const MANIFEST_LOCK_MS = 10_000;

/**
 * Manifests by digest (immutable: stored once, never revalidated) and by tag (tag → digest with a
 * TTL; after it, one HEAD upstream, which Docker Hub does not count as a pull; a GET only when the
 * digest moved). When the upstream fails, a tag that was cached is served stale. Every upstream
 * fetch is single-flight per repository and reference.
 */
export class ManifestCache {
  readonly #store: BlobStore;
  readonly #tags: TagIndex;
  readonly #upstream: RegistryApi;
  /** Tag-index keys of a non-default upstream live under its host: `ghcr.io/owner/app`. */
  readonly #prefix: string;
  readonly #limit: LimitFunction;
  readonly #ttlMs: (repository: string, tag: string) => number;
  readonly #log: Logger;
  readonly #flights = new Map<string, Promise<Manifest>>();
  /** Replicas' shared store: manifests another replica fetched are read from there, not upstream. */
  readonly #shared: S3BlobStore | undefined;
  /** Replicas: one of them checks a tag upstream at a time; the others take its answer from Redis. */
  readonly #coordinator: Coordinator | undefined;
  /** Replicas: the blob sizes manifests give, to refuse a shared copy of another size unread. */
  readonly #sizes: KnownSizes | undefined;
  /** Which names are known to have which content: what is served for a name becomes its. */
  readonly #known: KnownContent | undefined;
  /** Media type by digest, so a hit does not parse JSON. */
  readonly #types = new LruMap<string, string>({ max: 100_000 });

  /**
   * Told of every manifest fetched from the upstream and verified, with the repository's name there
   * (layer prefetch: cache/layer-prefetch.ts). Not told of manifests read from the store or the
   * shared store.
   */
  onFetched: ((repository: string, mediaType: string, body: Buffer) => void) | undefined;

  constructor(
    store: BlobStore,
    tags: TagIndex,
    upstream: RegistryApi,
    limit: LimitFunction,
    ttlMs: (repository: string, tag: string) => number,
    log: Logger,
    prefix = '',
    shared?: S3BlobStore,
    coordinator?: Coordinator,
    sizes?: KnownSizes,
    known?: KnownContent,
  ) {
    this.#known = known;
    this.#sizes = sizes;
    this.#shared = shared;
    this.#coordinator = coordinator;
    this.#prefix = prefix;
    this.#store = store;
    this.#tags = tags;
    this.#upstream = upstream;
    this.#limit = limit;
    this.#ttlMs = ttlMs;
    this.#log = log;
  }

  /**
   * By digest, as served to a client. A stored manifest is served under `repository` only when it
   * is known to be that name's (in memory, cache/known-content.ts; else the name's records), or the
   * upstream confirms it with a HEAD, asked once and recorded: the store is shared by every name,
   * and content belongs to a repository (spec "Pulling Manifests"). Served from the store, nothing
   * is written under the name: only what the upstream served for it makes it a repository here
   * (the catalog, the takeover check). What a served manifest refers to becomes the name's.
   */
  async byDigest(repository: string, digest: Digest): Promise<Manifest> {
    const key = this.#key(repository);
    const local = await this.#local(digest);
    if (local) {
      if (this.#known?.has(key, digest.hex) || (await this.#tags.hasManifest(key, digest.hex))) {
        return this.#served(key, { ...local, outcome: 'HIT' });
      }
      const confirmed = await this.#singleFlight(`${key}@${digest.value}?`, async () => {
        await this.#upstream.headManifest(repository, digest.value, this.#limit);
        await this.#bookkeep(() => this.#tags.noteManifest(key, digest.hex));
        return { ...local, outcome: 'HIT' };
      });
      return this.#served(key, confirmed);
    }
    const fetched = await this.#singleFlight(`${key}@${digest.value}`, () =>
      this.#fetch(repository, digest.value, digest),
    );
    return this.#served(key, fetched);
  }

  /** By tag, as served to a client: the manifest and what it refers to become the name's. */
  async byTag(repository: string, tag: string): Promise<Manifest> {
    const held = this.#freshHeld(repository, tag);
    if (held) return held;
    const key = this.#key(repository);
    const entry = await this.#tags.get(key, tag);
    const cached = entry ? await this.#local(parseDigest(entry.digest)) : undefined;
    if (entry && cached && Date.now() - entry.checkedAt < this.#ttlMs(repository, tag)) {
      return this.#served(key, { ...cached, outcome: 'HIT' });
    }
    return this.#served(key, await this.#checkTag(repository, tag, entry, cached));
  }

  /**
   * A fresh tag whose manifest is in memory, answered without waiting on anything (the hit path);
   * undefined: ask `byTag`. Always undefined with replicas, whose shared tag index must be asked.
   */
  #freshHeld(repository: string, tag: string): Manifest | undefined {
    const known = this.#peekFresh(repository, tag);
    const held = known && this.#held(parseDigest(known.digest));
    return held && this.#served(this.#key(repository), { ...held, outcome: 'HIT' });
  }

  /** The tag's entry in memory while within its TTL (no replicas: `TagIndex.peek`). */
  #peekFresh(repository: string, tag: string): TagEntry | undefined {
    return fresh(this.#tags.peek(this.#key(repository), tag), this.#ttlMs(repository, tag));
  }

  /**
   * The hit lane's look (api/hit-lane.ts), built once when the lane keeps an answer and asked on
   * each of its hits: the body of `digest` when the tag is fresh, still names it, and it is held
   * in memory (counted as a use, as `byTag` would). The index key and the tag's TTL (its rules
   * are glob matches) are worked out here, not per hit.
   */
  heldIfFresh(repository: string, tag: string, digest: Digest): () => Buffer | undefined {
    const peek = this.#tags.peekOf(this.#key(repository), tag);
    const ttlMs = this.#ttlMs(repository, tag);
    return () => {
      return fresh(peek(), ttlMs)?.digest === digest.value ? this.#store.inMemory(digest) : undefined;
    };
  }

  /** Whether `heldIfFresh` can answer at all: tags are kept here, not in a shared index. */
  get tagsHeldHere(): boolean {
    return !this.#tags.shared;
  }

  /** By tag, for the mirror's own reading (the referrers tag schema): nothing is noted for the name. */
  async tagged(repository: string, tag: string): Promise<Manifest> {
    const entry = await this.#tags.get(this.#key(repository), tag);
    const cached = entry ? await this.#local(parseDigest(entry.digest)) : undefined;
    if (entry && cached && Date.now() - entry.checkedAt < this.#ttlMs(repository, tag)) {
      return { ...cached, outcome: 'HIT' };
    }
    return this.#checkTag(repository, tag, entry, cached);
  }

  #served(key: string, manifest: Manifest): Manifest {
    this.#known?.noteManifest(key, manifest.digest.hex, manifest.body);
    return manifest;
  }

  /** A tag not fresh here: asked upstream once however many ask (single flight, and across replicas). */
  #checkTag(
    repository: string,
    tag: string,
    entry: TagEntry | undefined,
    cached: Omit<Manifest, 'outcome'> | undefined,
  ): Promise<Manifest> {
    const flight = `${this.#key(repository)}:${tag}`;
    return this.#singleFlight(flight, async () => {
      // With replicas, one asks the upstream about a tag at a time; the others take its answer.
      // Not while the bucket is down: its answer's manifest could not be read from there, so the
      // others would only queue for the lock one after another before asking the upstream anyway.
      const turn = this.#shared?.down
        ? undefined
        : await this.#coordinator?.turn(`manifest:${flight}`, MANIFEST_LOCK_MS, {
            look: () => this.#fresh(repository, tag),
            lookFirst: false,
          });
      if (turn && 'found' in turn) return turn.found;
      try {
        return await this.#checkUpstream(repository, tag, entry, cached);
      } finally {
        await turn?.release();
      }
    });
  }

  /** The tag as the shared index has it now, if it is within its TTL and its manifest is at hand. */
  async #fresh(repository: string, tag: string): Promise<Manifest | undefined> {
    const entry = await this.#tags.get(this.#key(repository), tag);
    if (!entry || Date.now() - entry.checkedAt >= this.#ttlMs(repository, tag)) return undefined;
    const local = await this.#local(parseDigest(entry.digest));
    return local ? { ...local, outcome: 'HIT' } : undefined;
  }

  /** A tag not cached, or past its TTL: fetch it, or revalidate it (stale when the upstream fails). */
  async #checkUpstream(
    repository: string,
    tag: string,
    entry: TagEntry | undefined,
    cached: Omit<Manifest, 'outcome'> | undefined,
  ): Promise<Manifest> {
    if (!entry || !cached) return this.#fetch(repository, tag, undefined);
    try {
      return await this.#revalidate(repository, tag, cached);
    } catch (err) {
      if (isUpstreamOutage(err)) {
        this.#log.warn(
          { repository, tag, digest: cached.digest.value, reason: (err as Error).message },
          'upstream failed: serving stale tag',
        );
        return { ...cached, outcome: 'STALE' };
      }
      throw err;
    }
  }

  /** An operator's "recheck this tag now": the next request revalidates it upstream. */
  async invalidate(repository: string, tag: string): Promise<boolean> {
    const entry = await this.#tags.get(this.#key(repository), tag);
    if (!entry) return false;
    await this.#tags.set(this.#key(repository), tag, { ...entry, checkedAt: 0 });
    return true;
  }

  /** Tag past its TTL: HEAD upstream; same digest → keep, refresh the TTL; new digest → GET it. */
  async #revalidate(repository: string, tag: string, cached: Omit<Manifest, 'outcome'>): Promise<Manifest> {
    const { digest: upstreamDigest } = await this.#upstream.headManifest(repository, tag, this.#limit);
    if (upstreamDigest === cached.digest.value) {
      // Not persisted on a full disk: the in-memory entry still refreshes the TTL.
      await this.#bookkeep(() =>
        this.#tags.set(this.#key(repository), tag, {
          digest: cached.digest.value,
          mediaType: cached.mediaType,
          checkedAt: Date.now(),
        }),
      );
      return { ...cached, outcome: 'REVALIDATED' };
    }
    this.#log.info({ repository, tag, from: cached.digest.value, to: upstreamDigest }, 'tag moved upstream');
    return this.#fetch(repository, tag, undefined);
  }

  /** GET from upstream, verify, store; by tag also records tag → digest. */
  async #fetch(repository: string, reference: string, expected: Digest | undefined): Promise<Manifest> {
    // Within the manifest budget: a manifest check must never queue behind long blob downloads.
    const res = await this.#upstream.getManifest(repository, reference, this.#limit);
    const body = res.body;
    const digest = parseDigest(digestOf(body));
    const claimed = res.digest;
    if ((expected && expected.value !== digest.value) || (claimed && claimed !== digest.value)) {
      this.#log.error(
        { repository, reference, expected: expected?.value ?? claimed, actual: digest.value },
        'upstream manifest does not match its digest: not cached',
      );
      throw new RegistryError('UNAVAILABLE', 'upstream sent a manifest that does not match its digest', {
        reference,
      });
    }
    const mediaType = manifestMediaType(body, bareMediaType(res.contentType));
    // Verified: the blobs it lists may start coming now, before the client asks for them.
    this.onFetched?.(repository, mediaType, body);
    // Verified bytes in hand: a store that cannot take them (full disk) means served uncached.
    const stored = await this.#bookkeep(() => this.#store.put(digest, body));
    this.#sizes?.noteManifest(digest.hex, body);
    await this.#shared?.publishBuffer(digest, body).catch((err: Error) => {
      if (err instanceof SharedStoreDownError) return;
      this.#log.warn(
        { digest: digest.value, err: err.message },
        'publishing a manifest to the shared store failed',
      );
    });
    if (!stored) return { digest, mediaType, body, outcome: 'MISS' };
    this.#types.set(digest.hex, mediaType);
    await this.#bookkeep(() => this.#tags.noteManifest(this.#key(repository), digest.hex));
    if (!expected) {
      await this.#bookkeep(() =>
        this.#tags.set(this.#key(repository), reference, {
          digest: digest.value,
          mediaType,
          checkedAt: Date.now(),
        }),
      );
    }
    return { digest, mediaType, body, outcome: 'MISS' };
  }

  /**
   * A write to the store or the tag index. They are a cache: a disk that cannot take a write (full,
   * read-only) must not fail a request the verified bytes at hand can answer; a stale tag
   * revalidated on a full disk answered 500 before. False when the write failed.
   */
  async #bookkeep(write: () => Promise<void>): Promise<boolean> {
    try {
      await write();
      return true;
    } catch (err) {
      this.#store.noteWriteFailure(err);
      this.#log.warn({ err: (err as Error).message }, 'cache write failed: serving without caching');
      return false;
    }
  }

  #key(repository: string): string {
    return `${this.#prefix}${repository}`;
  }

  /**
   * Another replica's copy, checked against its digest before it is stored here. One that does not
   * match (hostile or corrupt, docs/SECURITY.md) is never served and is removed from the bucket; the
   * upstream's copy, fetched instead, takes its place.
   */
  async #fromShared(digest: Digest): Promise<Buffer | undefined> {
    const shared = this.#shared;
    if (!shared) return undefined;
    const found = await shared.read(digest, MAX_MANIFEST_BYTES).catch(() => undefined);
    if (!found) return undefined;
    if (digestOf(found.data) !== digest.value) {
      this.#log.error(
        { digest: digest.value, bytes: found.data.length },
        'shared store manifest does not match its digest: removed',
      );
      await shared.discard(digest, found.etag).catch((err: Error) => {
        this.#log.warn({ digest: digest.value, err: err.message }, 'removing a bad shared copy failed');
      });
      return undefined;
    }
    await this.#bookkeep(() => this.#store.put(digest, found.data));
    return found.data;
  }

  async #local(digest: Digest): Promise<Omit<Manifest, 'outcome'> | undefined> {
    const body = (await this.#store.read(digest)) ?? (await this.#fromShared(digest));
    return body && this.#withType(digest, body);
  }

  /** A stored manifest held in memory, synchronously; undefined: ask `#local`. */
  #held(digest: Digest): Omit<Manifest, 'outcome'> | undefined {
    const body = this.#store.inMemory(digest);
    return body && this.#withType(digest, body);
  }

  #withType(digest: Digest, body: Buffer): Omit<Manifest, 'outcome'> {
    this.#sizes?.noteManifest(digest.hex, body);
    let mediaType = this.#types.get(digest.hex);
    if (!mediaType) {
      mediaType = manifestMediaType(body, '');
      this.#types.set(digest.hex, mediaType);
    }
    return { digest, mediaType, body };
  }

  async #singleFlight(key: string, run: () => Promise<Manifest>): Promise<Manifest> {
    const running = this.#flights.get(key);
    if (running) return { ...(await running), outcome: 'COALESCED' };
    const flight = run().finally(() => this.#flights.delete(key));
    this.#flights.set(key, flight);
    return flight;
  }
}

/**
 * The media type of manifest bytes: the declared `mediaType` field, else the Content-Type the
 * upstream sent, else the OCI type the shape implies (OCI allows omitting mediaType). Schema1 and
 * anything that is not a manifest are refused: moby and containerd 2 refuse schema1 too.
 */
export function manifestMediaType(body: Buffer, contentType: string): string {
  const declared = declaredMediaType(body);
  if (
    declared === DOCKER_SCHEMA1 ||
    declared === DOCKER_SCHEMA1_SIGNED ||
    contentType === DOCKER_SCHEMA1_SIGNED
  ) {
    throw new RegistryError('MANIFEST_UNKNOWN', 'schema1 manifests are not supported', {
      mediaType: declared,
    });
  }
  if (declared) {
    if (!MANIFEST_TYPES.has(declared)) {
      throw new RegistryError('MANIFEST_UNKNOWN', 'unsupported manifest media type', { mediaType: declared });
    }
    return declared;
  }
  if (MANIFEST_TYPES.has(contentType)) return contentType;
  let doc: { manifests?: unknown; config?: unknown; layers?: unknown };
  try {
    doc = parseManifestJson(body) as typeof doc;
  } catch {
    throw new RegistryError('MANIFEST_UNKNOWN', 'upstream manifest is not JSON');
  }
  if (Array.isArray(doc.manifests)) return OCI_INDEX;
  if (doc.config && Array.isArray(doc.layers)) return OCI_MANIFEST;
  throw new RegistryError('MANIFEST_UNKNOWN', 'upstream sent something that is not a manifest');
}

/** Failures for which a cached copy should be served: unreachable, timeouts, 5xx, 429. */
export function isUpstreamOutage(err: unknown): boolean {
  if (err instanceof UpstreamUnreachableError || err instanceof UpstreamAuthError) return true;
  if (err instanceof UpstreamBackoffError) return true;
  if (err instanceof RegistryError) return err.code === 'UNAVAILABLE' || err.code === 'TOOMANYREQUESTS';
  return false;
}

/** `known` while within `ttlMs` of its last check, else undefined. */
function fresh(known: TagEntry | undefined, ttlMs: number): TagEntry | undefined {
  return known && Date.now() - known.checkedAt < ttlMs ? known : undefined;
}
