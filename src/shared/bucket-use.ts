import type { Redis } from 'ioredis';

/** Redis's sorted set of when each blob was last used by any replica (ms), for the bucket's size bound. */
export const BUCKET_USED = 'hubcache:bucket:used';
/** A replica reports a blob's use at most this often: a hot blob costs Redis one write per 10 min per replica. */
export const USE_REPORT_EVERY_MS = 10 * 60_000;
/** Reports are sent in batches this often (and sooner when this many are waiting). */
const FLUSH_EVERY_MS = 10_000;
const FLUSH_AT = 1_000;
/** Blobs remembered as reported; beyond it the memory starts over (a few more reports, never more memory). */
const REMEMBERED = 100_000;
/** Reports waiting at most; beyond it a use is not reported (the blob then looks older than it is). */
const WAITING = 10_000;

/**
 * When blobs were last used anywhere in the fleet, in Redis: each replica reports the blobs its
 * clients were served (hits included) and the ones it stored, so the bucket's size bound
 * (shared/bucket-gc.ts) evicts what the whole fleet used least recently, not what the bucket
 * received first. Reports are batched and sent at most once per USE_REPORT_EVERY_MS per blob:
 * the hit path only looks up a map.
 *
 * Redis is not trusted (docs/SECURITY.md): a time it returns is capped at the reader's now, so a
 * forged one can only make a blob look recently used (kept longer), and a dropped one old (evicted
 * sooner and fetched again): never served wrong, since every read from the bucket is verified.
 */
export class BucketUse {
  readonly #redis: Redis;
  readonly #reported = new Map<string, number>();
  readonly #waiting = new Set<string>();
  #timer: NodeJS.Timeout | undefined;

  constructor(redis: Redis) {
    this.#redis = redis;
  }

  /** A blob (its hex) was served or stored by this replica. */
  touch(hex: string): void {
    const now = Date.now();
    const last = this.#reported.get(hex);
    if (last !== undefined && now - last < USE_REPORT_EVERY_MS) return;
    if (this.#waiting.size >= WAITING) return;
    if (this.#reported.size >= REMEMBERED) this.#reported.clear();
    this.#reported.set(hex, now);
    this.#waiting.add(hex);
    if (this.#waiting.size >= FLUSH_AT) void this.flush();
    else if (!this.#timer) {
      this.#timer = setTimeout(() => void this.flush(), FLUSH_EVERY_MS);
      this.#timer.unref();
    }
  }

  /** Sends the waiting reports (ZADD GT: a report never moves a blob's time back). */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#waiting.size === 0) return;
    const now = String(Date.now());
    const members: string[] = [];
    for (const hex of this.#waiting) members.push(now, hex);
    this.#waiting.clear();
    // Lost when Redis is down: the blobs look older than they are, which costs at most a refetch.
    await this.#redis.zadd(BUCKET_USED, 'GT', ...members).catch(() => {});
  }

  /**
   * When each of `hexes` (at most 1,000) was last used, as far as Redis says, capped at now;
   * absent when never reported (or not a number).
   */
  async lastUsed(hexes: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    if (hexes.length === 0) return out;
    const scores = (await this.#redis.zmscore(BUCKET_USED, ...hexes.slice(0, 1000))) as (string | null)[];
    const now = Date.now();
    hexes.slice(0, 1000).forEach((hex, i) => {
      const score = Number(scores[i] ?? Number.NaN);
      if (Number.isFinite(score) && score > 0) out.set(hex, Math.min(score, now));
    });
    return out;
  }

  /** Forgets blobs the bucket no longer holds (after the collector removed them). */
  async forget(hexes: string[]): Promise<void> {
    for (let i = 0; i < hexes.length; i += 1000) {
      await this.#redis.zrem(BUCKET_USED, ...hexes.slice(i, i + 1000));
    }
  }

  close(): void {
    clearTimeout(this.#timer);
  }
}
