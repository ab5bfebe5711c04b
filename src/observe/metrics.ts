import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { getOrAdd } from '../maps.js';

type RequestLabels = Record<'endpoint' | 'method' | 'outcome' | 'code', string>;
/** Requests of one label set, and whether they count toward the hit ratio. */
interface RequestTally {
  readonly labels: RequestLabels;
  n: number;
  readonly counts: 'hit' | 'miss' | undefined;
}

type ServedSource = 'cache' | 'upstream' | 'hosted';

/** What the metrics read at scrape time: the mirror's own state, no copies kept in sync. */
export interface MetricsSource {
  cacheBytes(): number;
  cacheObjects(): number;
  maxSizeBytes(): number | undefined;
  inflightFills(): number;
  waiters(): number;
  evictions(): { count: number; bytes: number };
  /** Fetched blobs larger than --max-size on their own, each time one was stored (cache/evictor.ts). */
  blobsTooBig(): number;
  digestMismatches(): number;
  rateLimit(): { limit: number; remaining: number } | undefined;
  uploadSessions(): number;
  /** Replicas: whether the shared bucket and Redis are usable now (undefined: not configured). */
  sharedTier(): { bucketUp: boolean | undefined; redisUp: boolean | undefined };
  /** The hit lane (api/hit-lane.ts): requests it answered, answers it keeps. */
  lane(): { answers: number; size: number };
  /** Layer prefetch (cache/layer-prefetch.ts): fills started, failed, bytes committed, blobs skipped by reason. */
  prefetch(): {
    started: number;
    failed: number;
    bytes: number;
    running: number;
    skipped: ReadonlyMap<string, number>;
  };
  /** Ranged fills (cache/ranged-fill.ts): fills in segments, segments fetched, segments retried, fallbacks to one stream. */
  ranged(): { fills: number; segments: number; retries: number; fallbacks: number; keptUp: number };
  /** Replicas: fills served from the shared store, blobs published to it, waits for another replica, bad copies removed. */
  shared(): {
    fills: number;
    published: number;
    waits: number;
    discarded: number;
    recordsRejected: number;
    peerFills: number;
    takeovers: number;
    /** Blobs this replica published again because another replica needed them (shared/blob-repair.ts). */
    repaired: number;
  };
  /** The bucket's collections run by this replica (fleet-gc.ts); undefined without Redis. */
  bucketGc(): BucketGcFigures | undefined;
}

/** What this replica's collections of the bucket did (shared/bucket-gc.ts). */
export interface BucketGcFigures {
  runs: number;
  failures: number;
  removedBytes: number;
  evictedBytes: number;
  /** The bucket's blob bytes after this replica's last collection (undefined before one). */
  bucketBytes: number | undefined;
  maxBytes: number | undefined;
  overBound: boolean;
}

/**
 * The hit ratio, the one definition the dashboard (/_hubcache/summary), `hubcache stats` and the
 * docs/observing.md's PromQL share: of the blob and manifest requests (GET and HEAD) the cache answered,
 * the share it answered from what it already held.
 * - Hits: `hit`, `revalidated` (a tag past its TTL confirmed by one upstream HEAD, which moves no
 *   body and is free under Docker Hub's pull limit: the bytes come from the cache) and `stale` (the
 *   cached copy served while the upstream failed).
 * - Misses: `miss` and `coalesced` (a client served from a download another request started: the
 *   bytes were not in the cache when it asked, and it waits on the upstream like the first one).
 * - Neither: `hosted` (pushed content is not a cache), and requests without a cache outcome
 *   (`error`, `none`: refused or invalid before the cache was asked). Tags, referrers and
 *   uploads are not content by digest and are left out.
 * HEADs count: containerd resolves with a HEAD and dockerd revalidates with one, and a HEAD is
 * answered from the cache or by asking the upstream just as a GET is.
 */
export const HIT_RATIO = {
  endpoints: ['blob', 'manifest'],
  hits: ['hit', 'revalidated', 'stale'],
  misses: ['miss', 'coalesced'],
} as const;

/** How one request counts for the hit ratio (outcome as in the metric's label: lower case). */
export function hitRatioCount(endpoint: string, outcome: string | undefined): 'hit' | 'miss' | undefined {
  if (!(HIT_RATIO.endpoints as readonly string[]).includes(endpoint) || outcome === undefined)
    return undefined;
  const o = outcome.toLowerCase();
  if ((HIT_RATIO.hits as readonly string[]).includes(o)) return 'hit';
  if ((HIT_RATIO.misses as readonly string[]).includes(o)) return 'miss';
  return undefined;
}

/** The hit ratio from the counts: hits over hits and misses; null before the first request that counts. */
export function hitRatio(counts: { hits: number; requests: number }): number | null {
  return counts.requests > 0 ? counts.hits / counts.requests : null;
}

/** The hit ratio's counts read back from /metrics text (hubcache_requests_total), as `hubcache stats` and tests read them. */
export function hitCountsOf(metricsText: string): { hits: number; requests: number } {
  const counts = { hits: 0, requests: 0 };
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith('hubcache_requests_total{')) continue;
    const label = (name: string) => new RegExp(`[{,]${name}="([^"]*)"`).exec(line)?.[1];
    const counted = hitRatioCount(label('endpoint') ?? '', label('outcome'));
    if (!counted) continue;
    const n = Number(line.slice(line.lastIndexOf(' ') + 1));
    counts.requests += n;
    if (counted === 'hit') counts.hits += n;
  }
  return counts;
}

/**
 * Prometheus metrics (prom-client) in a registry of the mirror's own, not the library's global
 * one. Request and upstream figures are counted as they happen; cache state is read at scrape
 * time from the objects that own it. Names follow Prometheus conventions (_total, _bytes, _seconds).
 */
export class Metrics {
  readonly registry = new Registry();
  /**
   * hubcache_requests_total and hubcache_served_bytes_total, tallied here and handed to prom-client
   * when scraped: a labelled inc() per request hashed its labels on the hit path. The label sets
   * are few (endpoints × methods × outcomes × the statuses this server answers).
   */
  readonly #requestTally: RequestTally[] = [];
  /**
   * Each label set's tally, by endpoint, method, outcome ('' for none) and status: nested lookups
   * of strings that are interned constants, where one key joined per request was a new string to
   * hash on every hit.
   */
  readonly #tallyOf = new Map<string, Map<string, Map<string, Map<number, RequestTally>>>>();
  readonly #servedTally: Record<ServedSource, number> = { cache: 0, upstream: 0, hosted: 0 };
  readonly #upstreamRequests: Counter<'method' | 'code'>;
  readonly #upstreamSeconds: Histogram<'method'>;
  readonly #pushedBytes: Counter;
  /** What the gauges read; the summary reads the same (observe/summary.ts). */
  readonly source: MetricsSource;

  constructor(source: MetricsSource) {
    this.source = source;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'hubcache_' });
    const requestTally = this.#requestTally;
    new Counter({
      name: 'hubcache_requests_total',
      help: 'Registry API requests by endpoint, method, cache outcome (hit, miss, coalesced, revalidated, stale, hosted, error, none) and status code',
      labelNames: ['endpoint', 'method', 'outcome', 'code'],
      registers,
      collect() {
        this.reset();
        for (const { labels, n } of requestTally) this.inc(labels, n);
      },
    });
    const servedTally = this.#servedTally;
    new Counter({
      name: 'hubcache_served_bytes_total',
      help: 'Body bytes sent to clients, by where they came from (cache, an upstream download, or a hosted repository)',
      labelNames: ['source'],
      registers,
      collect() {
        this.reset();
        for (const [source, bytes] of Object.entries(servedTally)) if (bytes > 0) this.inc({ source }, bytes);
      },
    });
    this.#upstreamRequests = new Counter({
      name: 'hubcache_upstream_requests_total',
      help: 'HTTP exchanges with the upstream (token endpoint and redirects included) by method and status code',
      labelNames: ['method', 'code'],
      registers,
    });
    this.#upstreamSeconds = new Histogram({
      name: 'hubcache_upstream_request_duration_seconds',
      help: 'Time to the upstream response headers',
      labelNames: ['method'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.#pushedBytes = new Counter({
      name: 'hubcache_pushed_bytes_total',
      help: 'Blob bytes clients pushed to hosted repositories (verified and stored)',
      registers,
    });
    // A value not known (no rate-limit header seen yet, no size bound) is no sample at all: a
    // gauge without labels would show 0, which an alert reads as "rate-limited" or "bound 0".
    const gauge = (name: string, help: string, read: () => number | undefined) =>
      new KnownGauge(read, { name, help, registers });
    gauge('hubcache_cache_size_bytes', 'Bytes stored (blobs and manifests)', () => source.cacheBytes());
    gauge('hubcache_cache_objects', 'Blobs and manifests stored', () => source.cacheObjects());
    gauge('hubcache_cache_max_size_bytes', 'The configured size bound (absent when unbounded)', () =>
      source.maxSizeBytes(),
    );
    gauge(
      'hubcache_inflight_downloads',
      'Upstream blob downloads under way (each shared by all its waiters)',
      () => source.inflightFills(),
    );
    gauge(
      'hubcache_singleflight_waiters',
      'Clients being served from a download another request started',
      () => source.waiters(),
    );
    // Totals kept by the objects that count them, exposed as counters (advanced by the difference).
    const counter = (name: string, help: string, read: () => number) => {
      let last = 0;
      return new Counter({
        name,
        help,
        registers,
        collect() {
          const v = read();
          if (v > last) this.inc(v - last);
          last = v;
        },
      });
    };
    counter('hubcache_evictions_total', 'Blobs removed by the size bound', () => source.evictions().count);
    counter(
      'hubcache_evicted_bytes_total',
      'Bytes removed by the size bound',
      () => source.evictions().bytes,
    );
    counter(
      'hubcache_blobs_too_big_total',
      'Blobs fetched from the upstream that are larger than --max-size on their own, counted each time one is stored: it is evicted, and its next pull fetches it again (raise --max-size; the log warns once per digest)',
      () => source.blobsTooBig(),
    );
    counter(
      'hubcache_digest_mismatches_total',
      'Upstream or shared-store bodies that did not match their digest (not stored)',
      () => source.digestMismatches(),
    );
    counter(
      'hubcache_shared_fills_total',
      "Misses filled from the replicas' shared store instead of the upstream",
      () => source.shared().fills,
    );
    counter(
      'hubcache_shared_published_total',
      'Blobs this replica fetched upstream and published to the shared store',
      () => source.shared().published,
    );
    counter(
      'hubcache_shared_lock_waits_total',
      'Times a miss waited for another replica downloading the same blob',
      () => source.shared().waits,
    );
    counter(
      'hubcache_shared_discarded_total',
      'Shared-store copies that did not match their digest (not served, removed from the bucket)',
      () => source.shared().discarded,
    );
    counter(
      'hubcache_shared_peer_fills_total',
      'Misses streamed from the replica holding the download, as it arrived there (peer streaming)',
      () => source.shared().peerFills,
    );
    const gc = () => source.bucketGc();
    counter(
      'hubcache_shared_gc_runs_total',
      'Collections of the bucket this replica ran (one replica at a time)',
      () => gc()?.runs ?? 0,
    );
    counter(
      'hubcache_shared_gc_failures_total',
      'Collections of the bucket that failed (Redis or the bucket failed, a bound was exceeded): nothing more was removed',
      () => gc()?.failures ?? 0,
    );
    counter(
      'hubcache_shared_gc_removed_bytes_total',
      'Bytes of blobs removed from the bucket by collections here: named by nothing and unused within --gc-grace',
      () => gc()?.removedBytes ?? 0,
    );
    counter(
      'hubcache_shared_evicted_bytes_total',
      'Bytes of mirrored blobs the size bound (--shared-max-size) evicted from the bucket, least recently used first',
      () => gc()?.evictedBytes ?? 0,
    );
    gauge(
      'hubcache_shared_bucket_bytes',
      "The bucket's blob bytes after this replica's last collection (absent before one)",
      () => gc()?.bucketBytes,
    );
    gauge(
      'hubcache_shared_max_size_bytes',
      '--shared-max-size (absent when unbounded)',
      () => gc()?.maxBytes,
    );
    gauge(
      'hubcache_shared_over_bound',
      "1 when hosted and young content alone exceed --shared-max-size at this replica's last collection",
      () => (gc() ? Number(gc()?.overBound) : undefined),
    );
    counter(
      'hubcache_shared_repaired_total',
      'Hosted blobs the bucket lacked (removed as bad, lost) that this replica published again from its own disk for another replica',
      () => source.shared().repaired,
    );
    counter(
      'hubcache_upload_takeovers_total',
      'Upload sessions this replica took over from a dead owner (read back from the bucket)',
      () => source.shared().takeovers,
    );
    counter(
      'hubcache_shared_records_rejected_total',
      "Hosted records read from Redis and ignored: without the fleet's MAC, a wrong one, or malformed",
      () => source.shared().recordsRejected,
    );
    counter(
      'hubcache_ranged_fills_total',
      'Big blobs fetched from the upstream in ranged segments over several connections (--upstream-parallel)',
      () => source.ranged().fills,
    );
    counter(
      'hubcache_ranged_segments_total',
      'Segments of ranged fills fetched from the upstream (each a Range GET, or the first GET for the first segment)',
      () => source.ranged().segments,
    );
    counter(
      'hubcache_ranged_segment_retries_total',
      'Segments of ranged fills fetched a second time after a failed, short, long or mis-ranged answer',
      () => source.ranged().retries,
    );
    counter(
      'hubcache_ranged_fallbacks_total',
      'Big blobs fetched in one stream because the upstream did not answer the first Range request with its 206',
      () => source.ranged().fallbacks,
    );
    counter(
      'hubcache_ranged_kept_up_total',
      'Big blobs fetched in one stream because the first connection brought their first 4 MiB within 40 ms (a fast upstream: segments would only cost)',
      () => source.ranged().keptUp,
    );
    counter(
      'hubcache_prefetch_started_total',
      'Blob downloads started by layer prefetch (an image manifest arrived from upstream; --prefetch-layers)',
      () => source.prefetch().started,
    );
    counter(
      'hubcache_prefetch_failed_total',
      'Layer prefetch downloads that failed (upstream error, digest mismatch, no room): nothing was stored',
      () => source.prefetch().failed,
    );
    counter(
      'hubcache_prefetch_bytes_total',
      'Bytes layer prefetch downloaded, verified and stored',
      () => source.prefetch().bytes,
    );
    gauge('hubcache_prefetch_running', 'Layer prefetch downloads under way', () => source.prefetch().running);
    // One counter per reason, advanced by the difference like the totals above.
    const skippedSeen = new Map<string, number>();
    new Counter({
      name: 'hubcache_prefetch_skipped_total',
      help: 'Blobs of an arriving image manifest not prefetched, by reason (stored, inflight, queued, queue_full, too_big, no_room, rate_limited, upstream_down, not_fetchable, closing)',
      labelNames: ['reason'],
      registers,
      collect() {
        for (const [reason, v] of source.prefetch().skipped) {
          const last = skippedSeen.get(reason) ?? 0;
          if (v > last) this.inc({ reason }, v - last);
          else if (v === 0 && last === 0) this.inc({ reason }, 0);
          skippedSeen.set(reason, v);
        }
      },
    });
    gauge('hubcache_upload_sessions', 'Blob uploads in progress', () => source.uploadSessions());
    const flag = (up: boolean | undefined) => (up === undefined ? undefined : up ? 1 : 0);
    gauge(
      'hubcache_shared_bucket_up',
      'Replicas: 1 when the shared bucket is used, 0 while it is skipped after a failure (absent without --s3-bucket)',
      () => flag(source.sharedTier().bucketUp),
    );
    gauge(
      'hubcache_shared_redis_up',
      'Replicas: 1 when Redis takes commands (fleet locks, shared tags), 0 when not (absent without --redis)',
      () => flag(source.sharedTier().redisUp),
    );
    counter(
      'hubcache_hit_lane_answers_total',
      'Hits answered by the hit lane: an answer sent before, sent again without routing (also counted in hubcache_requests_total)',
      () => source.lane().answers,
    );
    gauge(
      'hubcache_hit_lane_entries',
      'Answers the hit lane keeps (manifests and small blobs held in memory)',
      () => source.lane().size,
    );
    gauge(
      'hubcache_upstream_ratelimit_limit',
      "Docker Hub's ratelimit-limit, last seen (absent until the upstream sent one)",
      () => source.rateLimit()?.limit,
    );
    gauge(
      'hubcache_upstream_ratelimit_remaining',
      "Docker Hub's ratelimit-remaining, last seen (absent until the upstream sent one)",
      () => source.rateLimit()?.remaining,
    );
  }

  /**
   * Plain running totals for the dashboard's summary (the same events as the counters). `requests`
   * and `hits` are those that count for the hit ratio (HIT_RATIO): `hitRatio(totals)`.
   */
  readonly totals = { requests: 0, hits: 0, bytesFromCache: 0, bytesFromUpstream: 0 };

  /**
   * Pushes for the summary: manifests stored by a PUT (201; an image push ends with one, an index
   * push with one per image and one for the index) and the blob bytes pushed.
   */
  readonly pushes = { manifests: 0, bytes: 0 };

  /** Registry API requests answered 4xx or 5xx, by status (hubcache_requests_total's `code`). */
  readonly errors = new Map<number, number>();

  request(
    endpoint: string,
    method: string,
    outcome: string | undefined,
    status: number,
    bytes: number,
  ): void {
    // Hosted content is not a cache: it counts neither as a hit nor as a miss.
    const hosted = outcome === 'HOSTED';
    const tally = this.#tally(endpoint, method, outcome, status);
    tally.n++;
    if (tally.counts) {
      this.totals.requests++;
      if (tally.counts === 'hit') this.totals.hits++;
    }
    if (bytes > 0 && !hosted) {
      if (outcome === 'MISS' || outcome === 'COALESCED') this.totals.bytesFromUpstream += bytes;
      else this.totals.bytesFromCache += bytes;
    }
    if (status >= 400) this.errors.set(status, (this.errors.get(status) ?? 0) + 1);
    else if (endpoint === 'manifest' && method === 'PUT' && status === 201) this.pushes.manifests++;
    if (bytes > 0) {
      const source = hosted ? 'hosted' : outcome === 'MISS' || outcome === 'COALESCED' ? 'upstream' : 'cache';
      this.#servedTally[source] += bytes;
    }
  }

  #tally(endpoint: string, method: string, outcome: string | undefined, status: number): RequestTally {
    const known = this.#tallyOf
      .get(endpoint)
      ?.get(method)
      ?.get(outcome ?? '')
      ?.get(status);
    return known ?? this.#newTally(endpoint, method, outcome, status);
  }

  #newTally(endpoint: string, method: string, outcome: string | undefined, status: number): RequestTally {
    const byMethod = getOrAdd(this.#tallyOf, endpoint, () => new Map());
    const byOutcome = getOrAdd(byMethod, method, () => new Map());
    const byStatus = getOrAdd(byOutcome, outcome ?? '', () => new Map());
    return getOrAdd(byStatus, status, () => {
      const labels = {
        endpoint,
        method,
        outcome: outcome ? outcome.toLowerCase() : status >= 400 ? 'error' : 'none',
        code: String(status),
      };
      const tally = { labels, n: 0, counts: hitRatioCount(endpoint, outcome) };
      this.#requestTally.push(tally);
      return tally;
    });
  }

  /** The hit ratio since start (HIT_RATIO), what /_hubcache/summary reports. */
  hitRatio(): number | null {
    return hitRatio(this.totals);
  }

  pushedBytes(bytes: number): void {
    this.pushes.bytes += bytes;
    this.#pushedBytes.inc(bytes);
  }

  upstream(method: string, status: number | 'error', seconds: number): void {
    this.#upstreamRequests.inc({ method, code: String(status) });
    this.#upstreamSeconds.observe({ method }, seconds);
  }
}

/** A gauge read at scrape time that has no sample while its value is unknown (undefined). */
class KnownGauge extends Gauge {
  readonly #read: () => number | undefined;

  constructor(read: () => number | undefined, config: { name: string; help: string; registers: Registry[] }) {
    super(config);
    this.#read = read;
  }

  override async get(): ReturnType<Gauge['get']> {
    const v = this.#read();
    if (v === undefined) return { ...(await super.get()), values: [] };
    this.set(v);
    return super.get();
  }
}
