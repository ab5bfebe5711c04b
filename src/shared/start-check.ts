import { randomUUID } from 'node:crypto';
import { maskPassword } from '../config/kinds.js';
import type { Logger } from '../observe/logger.js';
import type { FleetLocks } from './fleet-locks.js';
import type { S3BlobStore } from './s3-store.js';

/**
 * The start-up check of the shared tier takes at most this long in all. A bucket's own bounds
 * (S3_CONNECT_TIMEOUT_MS, S3_RESPONSE_TIMEOUT_MS) end a black-holed call sooner; this bounds the
 * three calls together, so a replica never hangs at start.
 */
export const SHARED_CHECK_MS = 15_000;
/**
 * Redis gets this long to accept the connection (ioredis retries meanwhile): a Redis started with
 * the replicas has a moment to come up, a wrong address is said within seconds.
 */
export const REDIS_READY_MS = 5_000;

/** A part that failed, as the start-up error names it: `--s3-bucket <name>: <cause>`. */
export interface SharedFailure {
  option: '--s3-bucket' | '--redis';
  value: string;
  cause: string;
}

export interface SharedParts {
  bucket: S3BlobStore;
  redis: FleetLocks | undefined;
  redisUrl: string | undefined;
  /** --shared-degraded: a failed check is a warning, and the replica works alone until the part answers. */
  degraded: boolean;
}

/**
 * A misnamed bucket, missing rights or an unreachable Redis must stop the start with one line that
 * says what to fix (docs/scaling-out.md, "The start-up check"), not show up later as a warning on every
 * miss while each replica silently fetches on its own. Both parts are checked at once. With
 * --shared-degraded the replica starts anyway: /readyz and /metrics say which part is down.
 * Returns what must stop the start (the caller makes it a StartupError), undefined otherwise.
 */
export async function checkShared(
  parts: SharedParts,
  log: Logger,
  ms = SHARED_CHECK_MS,
): Promise<SharedFailure | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer within ${Math.round(ms / 1000)} s`), ms);
  });
  const [bucket, redis] = await Promise.all([
    Promise.race([
      parts.bucket.check(parts.redis?.replica ?? randomUUID()),
      late.then((problem) => ({ problem })),
    ]),
    parts.redis ? Promise.race([parts.redis.check(Math.min(REDIS_READY_MS, ms)), late]) : undefined,
  ]).finally(() => clearTimeout(timer));
  if ('warning' in bucket && bucket.warning)
    log.warn({ bucket: parts.bucket.bucket }, `shared store: ${bucket.warning}`);
  const failures: SharedFailure[] = [];
  if (bucket.problem)
    failures.push({ option: '--s3-bucket', value: parts.bucket.bucket, cause: bucket.problem });
  if (redis && parts.redisUrl)
    failures.push({ option: '--redis', value: maskPassword(parts.redisUrl), cause: redis });
  const [first, second] = failures;
  if (!first) return undefined;
  if (!parts.degraded) {
    // Both in the one line: fixing one and starting again should not be how the other is found.
    const also = second ? `; and ${second.option} ${second.value}: ${second.cause}` : '';
    return { ...first, cause: `${first.cause}${also}` };
  }
  for (const f of failures) {
    log.warn(
      { option: f.option },
      `${f.option} ${f.value}: ${f.cause}; started anyway (--shared-degraded): this replica works alone until it answers`,
    );
  }
  return undefined;
}
