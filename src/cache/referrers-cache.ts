import { LRUCache } from 'lru-cache';
import type { LimitFunction } from 'p-limit';
import type { Logger } from '../observe/logger.js';
import type { Digest } from '../oci/digest.js';
import { RegistryError } from '../oci/errors.js';
import type { RegistryApi } from '../upstream/registry-api.js';
import { type CacheOutcome, isUpstreamOutage, type ManifestCache } from './manifest-cache.js';

/** One descriptor of a referrers index (spec "Listing Referrers"), as the upstream gave it. */
export type Descriptor = Record<string, unknown>;

export interface Referrers {
  manifests: Descriptor[];
  outcome: CacheOutcome;
}

/** Pages of an upstream referrers answer followed (`Link: <…>; rel="next"`); beyond, the list is cut. */
export const MAX_REFERRERS_PAGES = 8;

/**
 * Referrers lists kept in memory, bounded by their JSON size (a list is ≤ 4 MiB per page, so a
 * count bound alone would not bound memory). A restart asks the upstream again.
 */
export const REFERRERS_CACHE_BYTES = 64 * 1024 * 1024;

interface Entry {
  manifests: Descriptor[];
  checkedAt: number;
  bytes: number;
}

/**
 * Referrers of a mirrored repository's manifest (docs/PROTOCOL.md §1.1, §3 item 12). Asked of the upstream's
 * referrers API once per TTL (the TTL of the referrers tag `sha256-<hex>`, so tag TTL rules apply)
 * and kept, unfiltered; `artifactType` is applied here. An upstream without the API answers 404
 * (the spec forbids a 404 for a valid digest from a registry that has it): then the referrers tag
 * schema, the tag `sha256-<hex>` naming an index of referrers, read through the manifest cache like
 * any tag. Neither → an empty index, which is what the spec answers for a digest without referrers.
 * Upstream down → the last answer, stale.
 */
export class ReferrersCache {
  readonly #upstream: RegistryApi;
  readonly #manifests: ManifestCache;
  readonly #limit: LimitFunction;
  readonly #ttlMs: (repository: string, tag: string) => number;
  readonly #log: Logger;
  readonly #prefix: string;
  readonly #flights = new Map<string, Promise<Referrers>>();
  readonly #entries = new LRUCache<string, Entry>({
    maxSize: REFERRERS_CACHE_BYTES,
    sizeCalculation: (e) => Math.max(1, e.bytes),
  });

  constructor(
    upstream: RegistryApi,
    manifests: ManifestCache,
    limit: LimitFunction,
    ttlMs: (repository: string, tag: string) => number,
    log: Logger,
    prefix = '',
  ) {
    this.#upstream = upstream;
    this.#manifests = manifests;
    this.#limit = limit;
    this.#ttlMs = ttlMs;
    this.#log = log;
    this.#prefix = prefix;
  }

  async get(repository: string, subject: Digest): Promise<Referrers> {
    const key = `${this.#prefix}${repository}@${subject.value}`;
    const entry = this.#entries.get(key);
    if (entry && Date.now() - entry.checkedAt < this.#ttlMs(repository, tagOf(subject))) {
      return { manifests: entry.manifests, outcome: 'HIT' };
    }
    const running = this.#flights.get(key);
    if (running) return { ...(await running), outcome: 'COALESCED' };
    const flight = this.#refresh(key, repository, subject, entry).finally(() => this.#flights.delete(key));
    this.#flights.set(key, flight);
    return flight;
  }

  async #refresh(
    key: string,
    repository: string,
    subject: Digest,
    entry: Entry | undefined,
  ): Promise<Referrers> {
    let manifests: Descriptor[];
    try {
      manifests = (await this.#fromApi(repository, subject)) ?? (await this.#fromTag(repository, subject));
    } catch (err) {
      if (entry && isUpstreamOutage(err)) {
        this.#log.warn(
          { repository, subject: subject.value, reason: (err as Error).message },
          'upstream failed: serving stale referrers',
        );
        return { manifests: entry.manifests, outcome: 'STALE' };
      }
      throw err;
    }
    const bytes = JSON.stringify(manifests).length;
    this.#entries.set(key, { manifests, checkedAt: Date.now(), bytes });
    return { manifests, outcome: entry ? 'REVALIDATED' : 'MISS' };
  }

  /** The upstream's referrers API, every page (bounded); undefined when the upstream lacks the API. */
  async #fromApi(repository: string, subject: Digest): Promise<Descriptor[] | undefined> {
    const out: Descriptor[] = [];
    let path: string | undefined = `/v2/${repository}/referrers/${subject.value}`;
    for (let page = 0; path && page < MAX_REFERRERS_PAGES; page++) {
      const res = await this.#upstream.referrers(repository, subject, path, page === 0, this.#limit);
      if (!res) return undefined;
      out.push(...descriptorsOf(res.body));
      path = nextPage(res.link, repository);
    }
    if (path)
      this.#log.warn({ repository, subject: subject.value }, 'upstream referrers list cut: too many pages');
    return out;
  }

  /** The referrers tag schema: the tag `sha256-<hex>` is an index of the referrers, or there are none. */
  async #fromTag(repository: string, subject: Digest): Promise<Descriptor[]> {
    try {
      const index = await this.#manifests.tagged(repository, tagOf(subject));
      return descriptorsOf(index.body);
    } catch (err) {
      // No such tag (404; Docker Hub's 401 for "not there"): no referrers.
      if (err instanceof RegistryError && (err.code === 'MANIFEST_UNKNOWN' || err.code === 'NAME_UNKNOWN')) {
        return [];
      }
      throw err;
    }
  }
}

/** The referrers tag schema's tag for a subject (spec "Referrers Tag Schema"): `<alg>-<hex>`. */
function tagOf(subject: Digest): string {
  return `${subject.algorithm}-${subject.hex}`;
}

/** The `manifests` of an index body; only descriptors with a string digest and media type survive. */
function descriptorsOf(body: Buffer): Descriptor[] {
  let doc: { manifests?: unknown };
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    throw new RegistryError('UNAVAILABLE', 'upstream referrers answer is not JSON');
  }
  if (!Array.isArray(doc?.manifests)) {
    throw new RegistryError('UNAVAILABLE', 'upstream referrers answer is not an image index');
  }
  return doc.manifests.filter(
    (d): d is Descriptor =>
      typeof d === 'object' &&
      d !== null &&
      typeof (d as Descriptor).digest === 'string' &&
      typeof (d as Descriptor).mediaType === 'string',
  );
}

/**
 * The next page from `Link: <path>; rel="next"`: only a path on the upstream's own repository
 * referrers endpoint is followed, never another host.
 */
function nextPage(link: string | string[] | undefined, repository: string): string | undefined {
  const value = Array.isArray(link) ? link.join(',') : link;
  if (!value) return undefined;
  const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(value);
  if (!m?.[1]?.startsWith('/') || m[1].startsWith('//')) return undefined;
  let url: URL;
  try {
    url = new URL(m[1], 'http://upstream.invalid');
  } catch {
    return undefined;
  }
  if (!url.pathname.startsWith(`/v2/${repository}/referrers/`)) return undefined;
  return `${url.pathname}${url.search}`;
}
