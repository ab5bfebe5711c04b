import type { Metrics } from './metrics.js';
import type { WatchedRegistry } from './readiness.js';
import type { RepositoryCounts } from './repositories.js';

export interface SummarySources {
  /** The running totals, the one hit ratio (HIT_RATIO) and what the gauges read, all from metrics. */
  metrics: Pick<Metrics, 'totals' | 'pushes' | 'errors' | 'hitRatio' | 'source'>;
  usage: { totalBytes: number; count: number };
  maxSizeBytes: number | undefined;
  routes: readonly WatchedRegistry[];
  offline: boolean;
  repositories: RepositoryCounts;
  /** Hosted repositories holding at least one manifest (what _catalog lists of them). */
  hostedRepositories: number;
}

/**
 * What the dashboard shows, in one JSON document (the same figures as /metrics). `upstream` is the
 * default registry (kept for existing readers); `upstreams` every registry, by host, as /readyz.
 */
export function summary(s: SummarySources) {
  const t = s.metrics.totals;
  const live = s.metrics.source;
  const upstreams = Object.fromEntries(s.routes.map((r) => [r.host, upstreamSummary(r, s.offline)]));
  const first = s.routes[0];
  const byStatus = Object.fromEntries(
    [...s.metrics.errors.entries()].sort(([a], [b]) => a - b).map(([code, n]) => [String(code), n]),
  );
  return {
    requests: t.requests,
    hits: t.hits,
    hitRatio: s.metrics.hitRatio(),
    bytesFromCache: t.bytesFromCache,
    bytesFromUpstream: t.bytesFromUpstream,
    cacheBytes: s.usage.totalBytes,
    cacheObjects: s.usage.count,
    maxSizeBytes: s.maxSizeBytes ?? null,
    /** Upstream blob downloads under way, and the clients served from one another request started. */
    downloads: { inFlight: live.inflightFills(), waiters: live.waiters() },
    /** Manifests pushed (PUT answered 201) and blob bytes pushed, since start. */
    pushes: { manifests: s.metrics.pushes.manifests, bytes: s.metrics.pushes.bytes },
    hostedRepositories: s.hostedRepositories,
    uploadsInProgress: live.uploadSessions(),
    /** Registry API requests answered 4xx/5xx since start, by status code. */
    errors: { total: Object.values(byStatus).reduce((a, n) => a + n, 0), byStatus },
    /** Removed by the size bound; `tooBig`: fetched blobs larger than the bound on their own. */
    evictions: { ...live.evictions(), tooBig: live.blobsTooBig() },
    upstream: first ? upstreamSummary(first, s.offline) : null,
    upstreams,
    topRepositories: s.repositories.top(10),
  };
}

export type Summary = ReturnType<typeof summary>;

function upstreamSummary(route: WatchedRegistry, offline: boolean) {
  return {
    url: route.api.client.origin,
    offline,
    reachable: route.seen?.reachable ?? null,
    rateLimit: route.api.client.rateLimit ?? null,
  };
}
