import pLimit from 'p-limit';
import type { HandlerContext } from './api/context.js';
import { ClientAuth } from './auth/client-auth.js';
import { TokenService } from './auth/token-service.js';
import { BufferPool } from './buffer-pool.js';
import { BlobCache, type SharedTier } from './cache/blob-cache.js';
import { BlobReads } from './cache/blob-reads.js';
import { BlobStore } from './cache/blob-store.js';
import { type CollectResult, collectGarbage } from './cache/collect.js';
import { removeStaleTemps } from './cache/gc.js';
import { KnownContent } from './cache/known-content.js';
import { KnownSizes } from './cache/known-sizes.js';
import { ManifestCache } from './cache/manifest-cache.js';
import { ReferrersCache } from './cache/referrers-cache.js';
import { TagIndex } from './cache/tag-index.js';
import { TagLists } from './cache/tag-lists.js';
import { tagTtl } from './cache/tag-ttl.js';
import type { Config, UpstreamConfig } from './config.js';
import { HeadPromises } from './hosted/head-promises.js';
import { HostedRepositories } from './hosted/repositories.js';
import { TakeoverGuard } from './hosted/takeover.js';
import { UploadSessions } from './hosted/uploads.js';
import type { Logger } from './observe/logger.js';
import { Metrics } from './observe/metrics.js';
import { type Readiness, readiness } from './observe/readiness.js';
import { RepositoryCounts } from './observe/repositories.js';
import { type Summary, summary } from './observe/summary.js';
import { type Route, Routes } from './routing.js';
import { FleetLocks } from './shared/fleet-locks.js';
import { RedisTagIndex } from './shared/redis-tags.js';
import { S3BlobStore } from './shared/s3-store.js';
import { UpstreamClient } from './upstream/client.js';
import { RegistryApi } from './upstream/registry-api.js';

/** A replica's download lock lapses this long after its last refresh (a killed replica's, say). */
const LOCK_TTL_MS = 10_000;

/**
 * The composition root: builds the stores, the routes (one per registry, the default upstream's
 * included) and the handlers' context from the Config; starts them (init) and stops them (close).
 * The state lives in the objects it builds; what the mirror reports lives in observe/.
 */
export class Mirror {
  readonly config: Config;
  readonly log: Logger;
  /** Every registry mirrored here: the default upstream first, then the configured ones. */
  readonly routes: Routes;
  readonly blobs: BlobCache;
  readonly tags: TagIndex;
  /** Which mirrored names are known to have which stored content (cache/known-content.ts). */
  readonly known: KnownContent;
  /** Replicas: the S3 store they share, and Redis to coordinate (both optional). */
  readonly sharedStore: S3BlobStore | undefined;
  readonly coordinator: FleetLocks | undefined;
  /** Repositories clients pushed to, and the uploads under way. */
  readonly hosted: HostedRepositories;
  readonly uploads: UploadSessions;
  /** Blob HEADs answered yes, which a push may still rely on (in memory only). */
  readonly headPromises: HeadPromises;
  /** Whether a push may create `name` (the takeover rule, hosted/takeover.ts). */
  readonly takeover: TakeoverGuard;
  readonly metrics: Metrics;
  /** Client authentication, when an htpasswd file is configured. */
  readonly auth: ClientAuth | undefined;
  /** The token flow for --anonymous-pull (Bearer tokens are accepted whenever auth is on). */
  readonly tokens: TokenService | undefined;
  /** Requests and bytes per repository since start (the dashboard's top repositories). */
  readonly repositories = new RepositoryCounts();
  /** What the /v2 handlers get (api/context.ts). */
  readonly context: HandlerContext;

  constructor(config: Config, log: Logger) {
    this.config = config;
    this.log = log;
    // Separate budgets: a manifest check must never queue behind long blob downloads.
    const concurrency = config.upstream.concurrency;
    const store = new BlobStore(
      config.dataDir,
      config.memoryCacheBytes,
      config.maxSizeBytes,
      config.minFreeBytes,
      log,
    );
    if (config.shared) {
      this.sharedStore = new S3BlobStore(config.shared.s3, log);
      if (config.shared.redisUrl) this.coordinator = new FleetLocks(config.shared.redisUrl, log);
    }
    const sizes = this.sharedStore ? new KnownSizes() : undefined;
    const shared: SharedTier | undefined = this.sharedStore
      ? { store: this.sharedStore, coordinator: this.coordinator, lockTtlMs: LOCK_TTL_MS, sizes }
      : undefined;
    this.tags = new TagIndex(
      config.dataDir,
      'repositories',
      this.coordinator && new RedisTagIndex(this.coordinator.redis),
    );
    this.known = new KnownContent(store, this.tags);
    this.metrics = this.#wireMetrics(store);

    // One route per registry. Tag-index keys of a registry other than the default live under its
    // host (`ghcr.io/owner/app`); its errors name it by URL, after its configured name when that differs.
    const route = (host: string, upstream: UpstreamConfig, label: string, prefix: string): Route => {
      const api = new RegistryApi(new UpstreamClient(upstream, log, config.offline), label);
      const ttl = tagTtl(config.tagTtlRules, config.tagTtlMs);
      const manifests = new ManifestCache(
        store,
        this.tags,
        api,
        pLimit(concurrency),
        ttl,
        log,
        prefix,
        this.sharedStore,
        this.coordinator,
        sizes,
        this.known,
      );
      const referrers = new ReferrersCache(api, manifests, pLimit(concurrency), ttl, log, prefix);
      const r: Route = { host, api, manifests, referrers, seen: undefined };
      // Every exchange with a registry is counted, and remembered with its route for /readyz.
      api.client.onExchange = (method, status, seconds) => {
        this.metrics.upstream(method, status, seconds);
        r.seen = { reachable: status !== 'error' && status < 500, at: Date.now() };
      };
      return r;
    };
    const url = config.upstream.url;
    this.routes = new Routes(
      route(url.host, config.upstream, url.origin, ''),
      config.registries.map((r) => {
        const origin = r.upstream.url.origin;
        const label = r.upstream.url.host === r.host ? origin : `${r.host} (${origin})`;
        return route(r.host, r.upstream, label, `${r.host}/`);
      }),
      config.upstream,
    );
    const hub = this.routes.default.api;

    this.hosted = new HostedRepositories(
      config.dataDir,
      store,
      {
        push: config.hosted.push,
        patterns: config.hosted.patterns,
        reserved: (name) => this.routes.reserved(name),
      },
      log,
    );
    this.headPromises = new HeadPromises(config.hosted.gcGraceMs, config.hosted.uploadExpiryMs);
    store.keep = (hex) => this.hosted.holds(hex) || this.headPromises.holds(hex);
    this.takeover = new TakeoverGuard({
      cached: (name) => this.tags.knows(name),
      // Offline, nothing is served upstream: a push may take any name.
      servedUpstream: async (name) => (config.offline ? false : hub.servesRepository(name)),
      neverUpstream: (name) => config.upstream.expandLibrary && !name.includes('/'),
    });
    this.uploads = new UploadSessions(config.dataDir, store, config.hosted.uploadExpiryMs, log);
    this.blobs = new BlobCache(store, hub, pLimit(concurrency), log, shared);
    this.auth = config.htpasswd ? new ClientAuth(config.htpasswd) : undefined;
    this.tokens = this.auth ? new TokenService(this.auth, config.dataDir, config.anonymousPull) : undefined;
    const metrics = this.metrics;
    const hosted = this.hosted;
    const headPromises = this.headPromises;
    const blobReads = new BlobReads(
      this.blobs,
      this.known,
      {
        get createsOnPush() {
          return hosted.createsOnPush;
        },
        storedConfirmed: (hex) => headPromises.storedConfirmed(hex),
        upstreamConfirmed: (name, hex) => headPromises.upstreamConfirmed(name, hex),
      },
      log,
    );
    this.context = {
      log,
      routes: this.routes,
      blobs: blobReads,
      store,
      known: this.known,
      tags: this.tags,
      tagLists: new TagLists(this.tags),
      hosted: this.hosted,
      uploads: this.uploads,
      headPromises: this.headPromises,
      buffers: new BufferPool(),
      allowDelete: config.hosted.allowDelete,
      offline: config.offline,
      pushedBytes: (bytes) => metrics.pushedBytes(bytes),
    };
  }

  /** One garbage collection (POST /_hubcache/gc); one at a time. */
  async collectGarbage(): Promise<CollectResult> {
    this.#collecting ??= collectGarbage(
      this.blobs.store,
      this.hosted,
      this.config.dataDir,
      this.config.hosted.gcGraceMs,
      { uploading: this.uploads.repositories, promised: (hex) => this.headPromises.holds(hex) },
    ).finally(() => {
      this.#collecting = undefined;
    });
    const result = await this.#collecting;
    this.log.info(result, 'garbage collected');
    return result;
  }

  #collecting: Promise<CollectResult> | undefined;

  /** What the dashboard shows (observe/summary.ts): every registry, the default one as `upstream` too. */
  async summary(): Promise<Summary> {
    return summary({
      metrics: this.metrics,
      usage: this.blobs.store.usage,
      maxSizeBytes: this.config.maxSizeBytes,
      routes: this.routes.all,
      offline: this.config.offline,
      repositories: this.repositories,
      hostedRepositories: (await this.hosted.repositories()).length,
    });
  }

  /** /readyz (observe/readiness.ts). */
  readiness(): Promise<Readiness> {
    return readiness(this.blobs.store.tmpDir, this.routes.all, this.config.offline);
  }

  #wireMetrics(store: BlobStore): Metrics {
    return new Metrics({
      cacheBytes: () => store.usage.totalBytes,
      cacheObjects: () => store.usage.count,
      maxSizeBytes: () => this.config.maxSizeBytes,
      inflightFills: () => this.blobs.inflightCount,
      waiters: () => this.blobs.waiters,
      evictions: () => store.evictions,
      blobsTooBig: () => store.tooBig,
      digestMismatches: () => this.blobs.digestMismatches,
      rateLimit: () => this.routes.default.api.client.rateLimit,
      uploadSessions: () => this.uploads.count,
      shared: () => ({
        fills: this.blobs.sharedFills,
        published: this.blobs.published,
        waits: this.blobs.sharedWaits,
        discarded: this.blobs.sharedDiscarded,
      }),
    });
  }

  async init(): Promise<void> {
    await this.blobs.store.init();
    await this.hosted.loadNames();
    await this.tokens?.init();
    await this.coordinator?.init();
    await this.uploads.init();
    // No full scan before serving (100,000 blobs must not delay /v2/): it runs in the background.
    this.started = this.#background();
  }

  /** Resolves when the start-up background work is done (tests and benchmarks wait for it). */
  started: Promise<void> = Promise.resolve();

  async #background(): Promise<void> {
    try {
      await removeStaleTemps(this.blobs.store.tmpDir, 2 * this.config.upstream.idleTimeoutMs + 60_000);
      // What hosted content holds must be known before the size bound removes anything.
      await this.hosted.loadHeld();
      await this.blobs.store.scan();
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'start-up scan failed');
    }
  }

  #closed = false;

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Downloads under way finish and are stored (up to the idle timeout), or are aborted cleanly.
    await this.blobs.drain(this.config.upstream.idleTimeoutMs);
    await this.uploads.close();
    await this.coordinator?.close();
    this.sharedStore?.close();
    for (const r of this.routes.all) await r.api.client.close();
  }

  /** Resolves once the start-up scan is done and no blob fill is running (tests wait on it, not on time). */
  async settled(): Promise<void> {
    await this.started;
    await this.blobs.settled();
  }
}
