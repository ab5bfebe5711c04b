import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as IoRedis from 'ioredis';
import type { Redis } from 'ioredis';
import { getOrAdd } from '../maps.js';
import type { Logger } from '../observe/logger.js';

/** ioredis, loaded when replicas are configured (a lone mirror never uses it; see s3-store.ts). */
const load = createRequire(import.meta.url);
const ioredis = (): typeof IoRedis => load('ioredis') as typeof IoRedis;

const PUBLISHED = 'hubcache:published';
/**
 * Announced (before the plain announcement) by a holder whose result could not be shared, e.g. the
 * bucket refused it: its waiters then work alone at once instead of queueing for the lock one after
 * another. Replicas that do not know it wake at the plain announcement that follows.
 */
const UNSHARED = 'unshared:';

/**
 * A replica waits for another's work (a blob's download, a tag's check) at most this long in all,
 * then does it itself. A hostile or broken Redis can hold a lock for ever (refreshed by something
 * else), and the waiting replica's clients see no byte meanwhile: 30 s keeps them under the 60 s
 * idle timeout of common load balancers and proxies (AWS ALB, nginx's proxy_read_timeout). A
 * download that takes longer is then fetched twice, at worst once more per waiting replica.
 */
export const LOCK_WAIT_MAX_MS = 30_000;

/**
 * Takes a lock (1), or says who holds it (the holder's replica id). A key is a lock only if this code could have written it: a
 * replica id (a UUID) that expires within the lock's TTL (set and refreshed with PX ttl). Anything
 * else (another value, no expiry, a longer one: a hostile or broken Redis, docs/SECURITY.md) is treated as
 * an expired lock, and taken.
 */
const ACQUIRE = `local v = redis.call('get', KEYS[1])
if v then
  local ttl = redis.call('pttl', KEYS[1])
  if ttl > 0 and ttl <= tonumber(ARGV[2]) and string.match(v, '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$') then return v end
end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

/** Redis's answers to a missing or wrong password (the URL's). */
const AUTH_FAILED = /NOAUTH|WRONGPASS|invalid password|invalid username/i;

/** Releases a lock only if this replica still holds it (another may have taken it after expiry). */
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const REFRESH = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/**
 * The fleet's locks, through Redis: one download per cold blob for the whole fleet (a lock per
 * digest, `SET NX PX`, refreshed while the download runs; the others wait for the holder's
 * announcement, or for the lock to expire if the holder died), and one upstream check per tag.
 * The tag index replicas share is shared/redis-tags.ts, over this object's connection.
 */
export class FleetLocks {
  readonly replica = randomUUID();
  /** Commands (locks, and the shared tag index's: one connection per replica); not subscribed. */
  readonly redis: Redis;
  readonly #subscriber: Redis;
  readonly #waiting = new Map<string, Set<(shared: boolean) => void>>();
  readonly #log: Logger;
  #subscribed: Promise<unknown> | undefined;
  readonly #maxWaitMs: number;

  /** `maxWaitMs`: LOCK_WAIT_MAX_MS, shorter in tests. */
  constructor(url: string, log: Logger, maxWaitMs = LOCK_WAIT_MAX_MS) {
    this.#log = log;
    this.#maxWaitMs = maxWaitMs;
    // Commands fail at once while Redis is unreachable (no offline queue): a replica then works
    // alone instead of waiting on every request. The subscriber keeps its queue: ioredis
    // subscribes again whenever it reconnects.
    const { Redis: Client } = ioredis();
    this.redis = new Client(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
    this.#subscriber = new Client(url, { maxRetriesPerRequest: null, enableOfflineQueue: true });
    for (const r of [this.redis, this.#subscriber]) {
      r.on('error', (err: Error) => {
        this.#lastError = err.message;
        // The start-up check says it in one line (shared/start-check.ts); each retry would repeat it.
        if (!this.#checking) this.#log.warn({ err: err.message }, 'redis');
      });
    }
    this.#subscriber.on('message', (channel: string, message: string) => {
      if (channel !== PUBLISHED) return void this.#channels.get(channel)?.(message);
      const shared = !message.startsWith(UNSHARED);
      const id = shared ? message : message.slice(UNSHARED.length);
      const waiters = this.#waiting.get(id);
      if (!waiters) return;
      this.#waiting.delete(id);
      for (const wake of waiters) wake(shared);
    });
  }

  /** Other channels this replica listens to (listen()), by name. */
  readonly #channels = new Map<string, (message: string) => void>();

  /**
   * Listens to another channel on the subscriber connection (the hosted repositories' changes).
   * Like init(), a Redis that does not answer does not hold the start: ioredis subscribes again
   * when it reconnects.
   */
  async listen(channel: string, onMessage: (message: string) => void): Promise<void> {
    this.#channels.set(channel, onMessage);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#subscriber.subscribe(channel).catch((err: Error) => {
        this.#log.warn({ err: err.message, channel }, 'redis: not subscribed');
      }),
      new Promise((r) => {
        timer = setTimeout(r, 2000);
      }),
    ]);
    clearTimeout(timer);
  }

  #lastError = '';
  #checking = false;

  /**
   * The start-up check (shared/start-check.ts): Redis answers within `ms`, takes a key with an
   * expiry, reads it back and deletes it, and runs a script (the locks are scripts: a managed Redis
   * may forbid them). Undefined when all is well, else what failed, in an operator's words.
   */
  async check(ms: number): Promise<string | undefined> {
    this.#checking = true;
    const key = `hubcache:probe:${this.replica}`;
    let step = 'connect';
    try {
      if (!(await this.#ready(ms))) {
        const last = this.#lastError.slice(0, 200);
        if (AUTH_FAILED.test(last))
          return `authentication failed (${last}): check the user and password in the URL`;
        return `unreachable (${last || `no answer within ${Math.round(ms / 1000)} s`})`;
      }
      step = 'SET';
      await this.redis.set(key, '1', 'PX', 10_000);
      step = 'GET';
      if ((await this.redis.get(key)) !== '1') return 'a key written was not read back (SET then GET)';
      step = 'DEL';
      await this.redis.del(key);
      step = 'EVAL';
      if ((await this.redis.eval('return 1', 0)) !== 1) return 'a script did not run (EVAL)';
      return undefined;
    } catch (err) {
      const message = (err as Error).message.slice(0, 200);
      if (AUTH_FAILED.test(message))
        return `authentication failed (${message}): check the user and password in the URL`;
      if (step === 'EVAL') return `scripts are refused (${message}): the fleet lock needs EVAL`;
      return `${step} failed (${message})`;
    } finally {
      this.#checking = false;
    }
  }

  /** Whether the command connection is ready, waiting up to `ms` for it. */
  async #ready(ms: number): Promise<boolean> {
    if (this.redis.status === 'ready') return true;
    let timer: NodeJS.Timeout | undefined;
    let onReady: (() => void) | undefined;
    const ready = await Promise.race([
      new Promise<boolean>((resolve) => {
        onReady = () => resolve(true);
        this.redis.once('ready', onReady);
      }),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      }),
    ]);
    clearTimeout(timer);
    if (onReady) this.redis.off('ready', onReady);
    return ready;
  }

  /** Redis in words, for /readyz: reachable, or not (the replica works without the fleet lock). */
  get state(): string {
    const status = this.redis.status;
    return status === 'ready' ? 'reachable' : `unreachable (${status}): working without the fleet lock`;
  }

  /** Whether commands can be sent now. */
  get up(): boolean {
    return this.redis.status === 'ready';
  }

  /**
   * Subscribes to announcements. Redis being down must not keep the mirror from starting: after
   * 2 s it starts anyway (ioredis keeps trying; waits fall back to the lock's expiry meanwhile).
   */
  async init(): Promise<void> {
    this.#subscribed ??= this.#subscriber.subscribe(PUBLISHED).catch((err: Error) => {
      this.#log.warn({ err: err.message }, 'redis: not subscribed to announcements');
    });
    const ready = new Promise<void>((resolve) => {
      if (this.redis.status === 'ready') resolve();
      else this.redis.once('ready', () => resolve());
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([this.#subscribed, ready]),
      new Promise((r) => {
        timer = setTimeout(r, 2000);
      }),
    ]);
    clearTimeout(timer);
  }

  /**
   * The fleet's turn at one piece of work (fetching a blob, asking the upstream about a tag).
   * `look` finds another replica's result; while there is none, this replica either takes the lock
   * (kept alive until `release`, which also wakes the others) or waits for the holder's
   * announcement, or for its lock to lapse if it died, and looks again. With `lookFirst` false the
   * caller has just looked. Undefined when Redis fails, when the holder announced that its result
   * could not be shared (`release(false)`), or after waiting LOCK_WAIT_MAX_MS in all: the replica
   * then works alone, at once.
   */
  async turn<T>(
    id: string,
    ttlMs: number,
    options: {
      look: () => Promise<T | undefined>;
      lookFirst?: boolean;
      onWait?: () => void;
      /** The lock is another replica's: its result may be had from it while it works (peer streaming). */
      fromHolder?: (holder: string) => Promise<T | undefined>;
    },
  ): Promise<{ found: T } | { release: (shared?: boolean) => Promise<void> } | undefined> {
    const deadline = Date.now() + this.#maxWaitMs;
    // Set once a wait ran out at the deadline. Timers count from libuv's cached loop time, so one can
    // fire a millisecond before Date.now() reaches the deadline; the loop would then wait once more,
    // for that last millisecond (test/interop/shared-locks.test.ts failed on it once in CI).
    let waitedOut = false;
    for (let looked = options.lookFirst === false; ; looked = false) {
      if (!looked) {
        const found = await options.look();
        if (found !== undefined) return { found };
      }
      // Listening before asking: the holder may release and announce between the refusal and the
      // wait, and an announcement nobody listened for would leave this replica waiting its TTL out.
      const announced = this.#listen(id);
      let taken: boolean;
      let holder: string | undefined;
      try {
        const answer = await this.redis.eval(ACQUIRE, 1, `hubcache:lock:${id}`, this.replica, String(ttlMs));
        taken = answer === 1;
        if (typeof answer === 'string' && answer !== this.replica) holder = answer;
      } catch (err) {
        announced.stop();
        this.#log.warn({ err: (err as Error).message }, 'redis unavailable: working without the fleet lock');
        return undefined;
      }
      if (taken) {
        announced.stop();
        const release = this.#hold(id, ttlMs);
        // Done by another replica between the look and the lock: use that.
        let found: T | undefined;
        try {
          found = await options.look();
        } catch (err) {
          await release();
          throw err;
        }
        if (found === undefined) return { release };
        await release();
        return { found };
      }
      const left: number = waitedOut ? 0 : deadline - Date.now();
      if (left <= 0) {
        announced.stop();
        this.#log.warn({ id, ms: this.#maxWaitMs }, 'waited too long for another replica: working alone');
        return undefined;
      }
      if (holder && options.fromHolder) {
        const fromHolder = await options.fromHolder(holder).catch(() => undefined);
        if (fromHolder !== undefined) {
          announced.stop();
          return { found: fromHolder };
        }
      }
      options.onWait?.();
      const outcome = await announced.wait(Math.min(ttlMs, left));
      if (outcome === 'unshared') return undefined;
      waitedOut = outcome === 'expired' && left <= ttlMs;
    }
  }

  /**
   * A lock for work one replica does for the fleet at a time (the bucket's garbage collection):
   * taken and kept alive until `release`, or undefined when another replica holds it.
   */
  async lease(id: string, ttlMs: number): Promise<(() => Promise<void>) | undefined> {
    const answer = await this.redis.eval(ACQUIRE, 1, `hubcache:lock:${id}`, this.replica, String(ttlMs));
    if (answer !== 1) return undefined;
    const release = this.#hold(id, ttlMs);
    return () => release();
  }

  /**
   * Keeps a lock alive (refreshed at a third of its TTL); the result releases it and announces,
   * saying so when the work's result could not be shared.
   */
  #hold(id: string, ttlMs: number): (shared?: boolean) => Promise<void> {
    const key = `hubcache:lock:${id}`;
    const timer = setInterval(
      () => void this.redis.eval(REFRESH, 1, key, this.replica, String(ttlMs)).catch(() => {}),
      ttlMs / 3,
    );
    timer.unref();
    return async (shared = true) => {
      clearInterval(timer);
      await this.redis.eval(RELEASE, 1, key, this.replica).catch(() => {});
      if (!shared) await this.redis.publish(PUBLISHED, `${UNSHARED}${id}`).catch(() => {});
      await this.redis.publish(PUBLISHED, id).catch(() => {});
    };
  }

  /**
   * Listens for a replica's announcement of `id` from now on: `wait` resolves with it (at once when
   * it came already), or after `ms`; `stop` stops listening without waiting.
   */
  #listen(id: string): {
    wait: (ms: number) => Promise<'shared' | 'unshared' | 'expired'>;
    stop: () => void;
  } {
    let heard: ((shared: boolean) => void) | undefined;
    const announcement = new Promise<'shared' | 'unshared'>((resolve) => {
      heard = (shared) => resolve(shared ? 'shared' : 'unshared');
    });
    const wake = (shared: boolean) => {
      stop();
      heard?.(shared);
    };
    const stop = () => {
      const waiters = this.#waiting.get(id);
      waiters?.delete(wake);
      if (waiters?.size === 0) this.#waiting.delete(id);
    };
    getOrAdd(this.#waiting, id, () => new Set()).add(wake);
    const wait = async (ms: number) => {
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<'expired'>((resolve) => {
        timer = setTimeout(() => resolve('expired'), ms);
      });
      try {
        return await Promise.race([announcement, expired]);
      } finally {
        clearTimeout(timer);
        stop();
      }
    };
    return { wait, stop };
  }

  async close(): Promise<void> {
    this.#subscriber.disconnect();
    if (this.redis.status === 'ready') await this.redis.quit().catch(() => this.redis.disconnect());
    else this.redis.disconnect();
  }
}
