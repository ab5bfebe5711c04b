import type { Redis } from 'ioredis';
import { parseDigest } from '../oci/digest.js';
import { isTag } from '../oci/names.js';
import { BOUNDED_HGET, readBounded } from './redis-reads.js';

/**
 * How far in the future a tag's `checkedAt` in Redis may be (replicas' clocks differ a little).
 * Beyond it the entry is not trusted: it would keep the tag "fresh" for ever.
 */
export const TAG_CLOCK_SKEW_MS = 60_000;

/**
 * What is read back from Redis at most (it is not trusted, docs/SECURITY.md): a tag entry (a digest,
 * a media type and a time: ~200 bytes), and a list of tags or of repositories, in count and in bytes
 * (an upstream's tag list is bounded at 16 MiB too). Beyond it, nothing is taken from Redis: the
 * replica answers from its own files.
 */
export const MAX_TAG_ENTRY_BYTES = 4096;
export const MAX_LISTED = 100_000;
export const MAX_LIST_BYTES = 16 * 1024 * 1024;

/** A tag as replicas share it: the shape of the tag index's entries (cache/tag-index.ts). */
export interface SharedTagEntry {
  digest: string;
  mediaType: string;
  checkedAt: number;
}

/**
 * The tag index replicas share, in Redis: tag → digest with when it was last checked upstream
 * (a hash per repository), and the repositories any replica cached. A tag revalidated by one
 * replica is fresh on all. The tag index (cache/tag-index.ts) asks it before its own files.
 */
export class RedisTagIndex {
  readonly #redis: Redis;

  /** `redis`: a command connection (shared/fleet-locks.ts's: one per replica). */
  constructor(redis: Redis) {
    this.#redis = redis;
  }

  /**
   * The fleet's entry for a tag, if it can be right: Redis is checked like any other input (issue
   * 13). Not a sha256 digest, or checked "in the future" (which would keep it fresh for ever): none.
   */
  async getTag(repository: string, tag: string): Promise<SharedTagEntry | undefined> {
    const raw = (await this.#redis.eval(
      BOUNDED_HGET,
      1,
      `hubcache:tags:${repository}`,
      tag,
      String(MAX_TAG_ENTRY_BYTES),
    )) as string | null;
    if (!raw) return undefined;
    let entry: Partial<SharedTagEntry>;
    try {
      entry = JSON.parse(raw) as Partial<SharedTagEntry>;
      if (typeof entry.digest !== 'string' || typeof entry.mediaType !== 'string') return undefined;
      parseDigest(entry.digest);
    } catch {
      return undefined;
    }
    const { checkedAt } = entry;
    if (typeof checkedAt !== 'number' || !(checkedAt <= Date.now() + TAG_CLOCK_SKEW_MS)) return undefined;
    return { digest: entry.digest, mediaType: entry.mediaType, checkedAt };
  }

  async setTag(repository: string, tag: string, entry: SharedTagEntry): Promise<void> {
    await this.#redis
      .multi()
      .hset(`hubcache:tags:${repository}`, tag, JSON.stringify(entry))
      .sadd('hubcache:repositories', repository)
      .exec();
  }

  /** The fleet's tags of a repository (only well-formed ones); throws beyond the bounds. */
  async tags(repository: string): Promise<string[]> {
    return (await this.#list(`hubcache:tags:${repository}`, 'hash')).filter(isTag).sort();
  }

  /**
   * The manifests a repository's tags name in the fleet (hex), within the list bounds; entries that
   * are not a sha256 digest are skipped. For the bucket's collection (shared/bucket-marks.ts).
   */
  async taggedManifests(repository: string): Promise<string[]> {
    const flat = await readBounded(
      this.#redis,
      `hubcache:tags:${repository}`,
      'all',
      MAX_LISTED,
      MAX_LIST_BYTES,
    );
    const out: string[] = [];
    for (let i = 1; i < flat.length; i += 2) {
      const digest = /"digest":"sha256:([a-f0-9]{64})"/.exec(flat[i] as string)?.[1];
      if (digest) out.push(digest);
    }
    return out;
  }

  async noteRepository(repository: string): Promise<void> {
    await this.#redis.sadd('hubcache:repositories', repository);
  }

  /** The repositories any replica cached; throws beyond the bounds. */
  async repositories(): Promise<string[]> {
    return (await this.#list('hubcache:repositories', 'set')).sort();
  }

  async #list(key: string, kind: 'hash' | 'set'): Promise<string[]> {
    return readBounded(this.#redis, key, kind, MAX_LISTED, MAX_LIST_BYTES);
  }
}
