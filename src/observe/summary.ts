import type { WatchedRegistry } from './readiness.js';
import type { RepositoryCounts } from './repositories.js';

export interface SummarySources {
  totals: { requests: number; hits: number; bytesFromCache: number; bytesFromUpstream: number };
  /** The one hit ratio (observe/metrics.ts HIT_RATIO), null before any request it counts. */
  hitRatio: number | null;
  usage: { totalBytes: number; count: number };
  maxSizeBytes: number | undefined;
  routes: readonly WatchedRegistry[];
  offline: boolean;
  repositories: RepositoryCounts;
}

/**
 * What the dashboard shows, in one JSON document (the same figures as /metrics). `upstream` is the
 * default registry (kept for existing readers); `upstreams` every registry, by host, as /readyz.
 */
export function summary(s: SummarySources) {
  const t = s.totals;
  const upstreams = Object.fromEntries(s.routes.map((r) => [r.host, upstreamSummary(r, s.offline)]));
  const first = s.routes[0];
  return {
    requests: t.requests,
    hits: t.hits,
    hitRatio: s.hitRatio,
    bytesFromCache: t.bytesFromCache,
    bytesFromUpstream: t.bytesFromUpstream,
    cacheBytes: s.usage.totalBytes,
    cacheObjects: s.usage.count,
    maxSizeBytes: s.maxSizeBytes ?? null,
    upstream: first ? upstreamSummary(first, s.offline) : null,
    upstreams,
    topRepositories: s.repositories.top(10),
  };
}

function upstreamSummary(route: WatchedRegistry, offline: boolean) {
  return {
    url: route.api.client.origin,
    offline,
    reachable: route.seen?.reachable ?? null,
    rateLimit: route.api.client.rateLimit ?? null,
  };
}
