import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * What observe/ reads of a registry's route (routing.ts): declared here, so this folder stays below
 * the routing it reports on.
 */
export interface WatchedRegistry {
  host: string;
  /** The last exchange with it. */
  seen: { reachable: boolean; at: number } | undefined;
  api: { client: { origin: string; retryInSeconds: number | undefined; rateLimit: unknown } };
}

export interface Readiness {
  ready: boolean;
  dataDir: string;
  /** The default registry's state (kept for existing probes). */
  upstream: string;
  /** Every registry's state, by host. */
  upstreams: Record<string, string>;
  /** Replicas: the shared bucket's and Redis's state (reported, not required: a replica works alone). */
  shared?: { bucket: string; redis?: string };
}

/** What observe/ reads of the shared tier (shared/s3-store.ts, shared/fleet-locks.ts). */
export interface WatchedShared {
  bucket: { state: string };
  redis: { state: string } | undefined;
}

/**
 * Readiness: the data directory takes a write. The upstreams (and a replica's bucket and Redis) are
 * reported, not required. A full
 * disk (ENOSPC) is reported but ready: everything cached is still served and misses pass through
 * uncached, which beats being taken out of the load balancer.
 */
export async function readiness(
  tmpDir: string,
  routes: readonly WatchedRegistry[],
  offline: boolean,
  shared?: WatchedShared,
): Promise<Readiness> {
  const probe = path.join(tmpDir, `.readyz-${process.pid}`);
  let dataDir = 'writable';
  let ready = true;
  try {
    await writeFile(probe, 'ok');
    await rm(probe, { force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    await rm(probe, { force: true }).catch(() => {});
    ready = code === 'ENOSPC';
    dataDir = ready
      ? 'full (ENOSPC): serving the cache, not caching'
      : `not writable: ${code ?? (err as Error).message}`;
  }
  const upstreams = Object.fromEntries(routes.map((r) => [r.host, upstreamState(r, offline)]));
  const first = routes[0];
  const report: Readiness = {
    ready,
    dataDir,
    upstream: first ? upstreamState(first, offline) : 'none',
    upstreams,
  };
  if (shared) {
    report.shared = { bucket: shared.bucket.state };
    if (shared.redis) report.shared.redis = shared.redis.state;
  }
  return report;
}

/** One registry's state in words: what an operator reading /readyz needs. */
export function upstreamState(route: WatchedRegistry, offline: boolean): string {
  if (offline) return 'offline mode';
  const retryIn = route.api.client.retryInSeconds;
  if (retryIn !== undefined) return `unreachable, retrying in ${retryIn} s (serving from cache)`;
  if (route.seen === undefined) return 'not contacted yet';
  return route.seen.reachable ? 'reachable' : 'unreachable (serving from cache)';
}
