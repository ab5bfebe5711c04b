import type { IncomingMessage } from 'node:http';
import pLimit from 'p-limit';
import type { HandlerContext } from './api/context.js';
import { HitLane } from './api/hit-lane.js';
import type { OperatorContext } from './api/operator.js';
import { type AccessPolicy, readsAreOpen } from './auth/authorize.js';
import { ClientAddresses } from './auth/client-address.js';
import { ClientAuth } from './auth/client-auth.js';
import { TokenService } from './auth/token-service.js';
import { BufferPool } from './buffer-pool.js';
import { BlobCache, type SharedTier } from './cache/blob-cache.js';
import { BlobReads } from './cache/blob-reads.js';
import { BlobStore } from './cache/blob-store.js';
import { GarbageCollection } from './cache/garbage-collection.js';
import { removeStaleTemps } from './cache/gc.js';
import { KnownContent } from './cache/known-content.js';
import { KnownSizes } from './cache/known-sizes.js';
import { LayerPrefetch } from './cache/layer-prefetch.js';
import { ManifestCache } from './cache/manifest-cache.js';
import { ReferrersCache } from './cache/referrers-cache.js';
import { TagIndex } from './cache/tag-index.js';
import { TagLists } from './cache/tag-lists.js';
import { tagTtl } from './cache/tag-ttl.js';
import type { Config, UpstreamConfig } from './config.js';
import { FleetBlobs } from './fleet-blobs.js';
import { FleetGc } from './fleet-gc.js';
import { FleetUploads } from './fleet-uploads.js';
import { HeadPromises } from './hosted/head-promises.js';
import { HostedRepositories } from './hosted/repositories.js';
import { TakeoverGuard } from './hosted/takeover.js';
import { UploadSessions } from './hosted/uploads.js';
import { AccessLog } from './observe/access-log.js';
import type { Logger } from './observe/logger.js';
import { Metrics } from './observe/metrics.js';
import { readiness } from './observe/readiness.js';
import { RepositoryCounts } from './observe/repositories.js';
import { summary } from './observe/summary.js';
import { parseDigest } from './oci/digest.js';
import { PeerClient } from './peer/client.js';
import { type Route, Routes } from './routing.js';
import type { ServerContext } from './server.js';
import { BlobRepair } from './shared/blob-repair.js';
import type { FleetKeys } from './shared/fleet-keys.js';
import { FleetLocks } from './shared/fleet-locks.js';
import { HostedRecords } from './shared/hosted-records.js';
import { RedisTagIndex } from './shared/redis-tags.js';
import { ReplicaRegistry } from './shared/replica-registry.js';
import { S3BlobStore } from './shared/s3-store.js';
import { checkShared } from './shared/start-check.js';
import { StartupError } from './startup-errors.js';
import { UpstreamClient } from './upstream/client.js';
import { RegistryApi } from './upstream/registry-api.js';

/** A replica's download lock lapses this long after its last refresh (a killed replica's, say). */
const LOCK_TTL_MS = 10_000;

/**
 * The composition root: builds the stores, the routes (one per registry, the default upstream's
 * included) and the request listener's context (the handlers', the operator routes', who may do
 * what) from the Config; starts them (init) and stops them (close). The state lives in the objects
 * it builds; what the mirror reports lives in observe/.
 */
export class Mirror {
  /** Every registry mirrored here: the default upstream first, then the configured ones. */
  readonly routes: Routes;
  readonly blobs: BlobCache;
  /** Blobs of image manifests fetched upstream, fetched before clients ask (--prefetch-layers). */
  readonly prefetch: LayerPrefetch;
  /** Replicas: the S3 store they share (optional). */
  readonly sharedStore: S3BlobStore | undefined;
  /** Repositories clients pushed to, and the uploads under way. */
  readonly hosted: HostedRepositories;
  readonly uploads: UploadSessions;
  /** What the request listener works with (server.ts): the handlers' and operator routes' contexts among it. */
  readonly serverContext: ServerContext;
  readonly #config: Config;
  readonly #log: Logger;
  readonly #tags: TagIndex;
  /** Hits answered again before routing (api/hit-lane.ts). */
  #lane: HitLane | undefined;
  /** Which mirrored names are known to have which stored content (cache/known-content.ts). */
  readonly #known: KnownContent;
  /** Redis, to coordinate replicas (optional). */
  readonly #coordinator: FleetLocks | undefined;
  /** Replicas with a peer listener: where the others are, and the way to them (fleet-uploads.ts). */
  #peers: { registry: ReplicaRegistry; client: PeerClient; blobClient: PeerClient } | undefined;
  #uploadOwners: FleetUploads | undefined;
  /** Hosted blobs the bucket lacks, published again by a replica holding them (shared/blob-repair.ts). */
  #repair: BlobRepair | undefined;
  /** The bucket's collection (replicas with Redis): fleet-gc.ts. */
  #fleetGc: FleetGc | undefined;

  /** This replica's id in the fleet (its locks and records), when it has Redis. */
  get replicaId(): string | undefined {
    return this.#coordinator?.replica;
  }

  /** The fleet's hosted records (replicas with a fleet secret and Redis). */
  #hostedRecords: HostedRecords | undefined;
  /** The token flow for --anonymous-pull (Bearer tokens are accepted whenever auth is on). */
  readonly #tokens: TokenService | undefined;
  /** One line per request, fast hits summed up (observe/access-log.ts). */
  readonly #accessLog: AccessLog;

  /** `fleet`: the keys replicas share (--fleet-secret-file, read at start by listen.ts). */
  constructor(config: Config, log: Logger, fleet?: FleetKeys) {
    this.#config = config;
    this.#log = log;
    this.#accessLog = new AccessLog(log);
    // Separate budgets: a manifest check must never queue behind long blob downloads.
    const concurrency = config.upstream.concurrency;
    const store = new BlobStore(
      config.dataDir,
      config.memoryCacheBytes,
      config.maxSizeBytes,
      config.minFreeBytes,
      log,
      config.eviction,
    );
    if (config.shared) {
      this.sharedStore = new S3BlobStore(config.shared.s3, log);
      if (config.shared.redisUrl) this.#coordinator = new FleetLocks(config.shared.redisUrl, log);
    }
    const sizes = this.sharedStore ? new KnownSizes() : undefined;
    const shared: SharedTier | undefined = this.sharedStore
      ? { store: this.sharedStore, coordinator: this.#coordinator, lockTtlMs: LOCK_TTL_MS, sizes }
      : undefined;
    this.#tags = new TagIndex(
      config.dataDir,
      'repositories',
      this.#coordinator && new RedisTagIndex(this.#coordinator.redis),
    );
    this.#known = new KnownContent(store, this.#tags);
    const metrics = this.#wireMetrics(store);

    // One route per registry. Tag-index keys of a registry other than the default live under its
    // host (`ghcr.io/owner/app`); its errors name it by URL, after its configured name when that differs.
    const route = (host: string, upstream: UpstreamConfig, label: string, prefix: string): Route => {
      const api = new RegistryApi(new UpstreamClient(upstream, log, config.offline), label);
      const ttl = tagTtl(config.tagTtlRules, config.tagTtlMs);
      const manifests = new ManifestCache(
        store,
        this.#tags,
        api,
        pLimit(concurrency),
        ttl,
        log,
        prefix,
        this.sharedStore,
        this.#coordinator,
        sizes,
        this.#known,
      );
      const referrers = new ReferrersCache(api, manifests, pLimit(concurrency), ttl, log, prefix);
      const r: Route = { host, api, manifests, referrers, seen: undefined };
      // Its manifests' blobs come from it, under the same name (and so the same token scope).
      manifests.onFetched = (name, mediaType, body) =>
        this.prefetch.manifestArrived(api, name, mediaType, body);
      // Every exchange with a registry is counted, and remembered with its route for /readyz.
      api.client.onExchange = (method, status, seconds) => {
        metrics.upstream(method, status, seconds);
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
    const hosted = this.hosted;
    this.uploads = new UploadSessions(config.dataDir, store, config.hosted.uploadExpiryMs, log);
    // Replicas with a fleet secret share hosted repositories: records in Redis (MAC'd with the
    // fleet's record key), bytes in the bucket. Without the secret each replica keeps its own.
    // Behind --trusted-proxy, the client its X-Forwarded-For names (checked at start by listen.ts).
    const clients = new ClientAddresses(config.trustedProxies);
    const clientOf = (req: IncomingMessage) =>
      clients.of(req.socket?.remoteAddress, req.headers['x-forwarded-for']);
    const coordinator = this.#coordinator;
    if (fleet && coordinator && this.sharedStore) {
      this.#hostedRecords = new HostedRecords(coordinator.redis, fleet.records, log);
      const bucket = this.sharedStore;
      this.#repair = new BlobRepair(
        { listen: (c, on) => coordinator.listen(c, on), publish: (c, m) => coordinator.redis.publish(c, m) },
        async (hex) => (await store.size(parseDigest(`sha256:${hex}`))) !== undefined,
        async (hex) => {
          const digest = parseDigest(`sha256:${hex}`);
          const size = await store.size(digest);
          if (size !== undefined) await bucket.publishFile(digest, store.pathOf(digest), size);
        },
        log,
      );
      if (shared) shared.repair = this.#repair;
      hosted.shareWith({
        records: this.#hostedRecords,
        bucket: this.sharedStore,
        listen: (channel, onMessage) => coordinator.listen(channel, onMessage),
      });
      if (config.shared?.peer) {
        const registry = new ReplicaRegistry(
          coordinator.redis,
          fleet.records,
          coordinator.replica,
          config.shared.peer.advertise,
          log,
        );
        // A forwarded PATCH's answer comes once its body is stored: bounded by idleness, not length.
        const client = new PeerClient(fleet.peer, coordinator.replica, {
          headersTimeoutMs: 300_000,
          idleTimeoutMs: config.clientIdleTimeoutMs,
        });
        // A holder's blob answers once its upstream answered: bounded like an upstream's headers.
        const blobClient = new PeerClient(fleet.peer, coordinator.replica, {
          headersTimeoutMs: config.upstream.headersTimeoutMs + 5_000,
          idleTimeoutMs: config.upstream.idleTimeoutMs,
        });
        this.#peers = { registry, client, blobClient };
        this.#uploadOwners = new FleetUploads(
          { registry, client, bucket: this.sharedStore, sessions: this.uploads, clientOf },
          config.hosted.uploadExpiryMs,
          log,
        );
        const owners = this.#uploadOwners;
        this.uploads.onExpired = (session) => owners.release(session.id);
        if (shared) shared.peers = new FleetBlobs(registry, blobClient);
      } else if (config.hosted.push) {
        log.warn(
          'upload sessions stay on the replica that opened them without --peer-listen: a chunked push through a load balancer that spreads requests fails (BLOB_UPLOAD_UNKNOWN)',
        );
      }
    } else if (this.sharedStore && config.hosted.push) {
      log.warn(
        'hosted repositories are per replica without --redis and --fleet-secret-file: push to one replica',
      );
    }
    const headPromises = new HeadPromises(config.hosted.gcGraceMs, config.hosted.uploadExpiryMs);
    store.keep = (hex) => hosted.holds(hex) || headPromises.holds(hex);
    if (this.sharedStore && coordinator && config.shared) {
      this.#fleetGc = new FleetGc({
        bucket: this.sharedStore,
        coordinator,
        store,
        hosted,
        hostedRecords: this.#hostedRecords,
        heldNow: store.keep,
        dataDir: config.dataDir,
        graceMs: config.hosted.gcGraceMs,
        maxBytes: config.shared.maxSizeBytes,
        uploadExpiryMs: config.hosted.uploadExpiryMs,
        intervalMs: config.shared.gcIntervalMs,
        log,
      });
    }
    const takeover = new TakeoverGuard({
      cached: (name) => this.#tags.knows(name),
      // Offline, nothing is served upstream: a push may take any name.
      servedUpstream: async (name) => (config.offline ? false : hub.servesRepository(name)),
      neverUpstream: (name) => config.upstream.expandLibrary && !name.includes('/'),
    });
    const auth = config.htpasswd ? new ClientAuth(config.htpasswd) : undefined;
    const tokens = auth
      ? new TokenService(auth, config.dataDir, config.anonymousPull, fleet?.token)
      : undefined;
    this.#tokens = tokens;
    this.blobs = new BlobCache(store, hub, pLimit(concurrency), log, shared, {
      parallel: config.upstreamParallel,
    });
    const prefetch = new LayerPrefetch(
      this.blobs,
      { concurrency: config.prefetchLayers, maxBlobBytes: config.maxSizeBytes },
      log,
    );
    this.prefetch = prefetch;
    this.blobs.onFillEnded = () => prefetch.pump();
    const uploads = this.uploads;
    const blobReads = new BlobReads(
      this.blobs,
      this.#known,
      {
        get createsOnPush() {
          return hosted.createsOnPush;
        },
        storedConfirmed: (hex) => headPromises.storedConfirmed(hex),
        upstreamConfirmed: (name, hex) => headPromises.upstreamConfirmed(name, hex),
      },
      log,
    );
    const access: AccessPolicy = {
      auth,
      tokens,
      anonymousPull: config.anonymousPull,
      anonymousPush: config.hosted.anonymousPush,
      publicUrl: config.publicUrl,
      tls: config.tls !== undefined,
      port: config.listen.port,
    };
    // Only when reads are open to anyone: the lane answers before the path would ask for credentials.
    const lane = new HitLane({ enabled: readsAreOpen(access), hostedGeneration: () => hosted.generation });
    this.#lane = lane;
    const handlers: HandlerContext = {
      log,
      routes: this.routes,
      blobs: blobReads,
      store,
      known: this.#known,
      tags: this.#tags,
      tagLists: new TagLists(this.#tags),
      hosted,
      uploads,
      clientOf,
      uploadOwners: this.#uploadOwners,
      headPromises,
      lane,
      buffers: new BufferPool(),
      allowDelete: config.hosted.allowDelete,
      offline: config.offline,
      pushedBytes: (bytes) => metrics.pushedBytes(bytes),
    };
    const routes = this.routes;
    const defaultUpstream = routes.default.api.label;
    const repositories = new RepositoryCounts();
    const operator: OperatorContext = {
      log,
      clientOf,
      routes,
      defaultUpstream,
      auth,
      tokens,
      pins: store,
      gc: this.#collection(
        new GarbageCollection(
          store,
          hosted,
          config.dataDir,
          config.hosted.gcGraceMs,
          { uploading: () => uploads.repositories, promised: (hex) => headPromises.holds(hex) },
          log,
        ),
      ),
      summary: async () =>
        summary({
          metrics,
          usage: store.usage,
          maxSizeBytes: config.maxSizeBytes,
          routes: routes.all,
          offline: config.offline,
          repositories,
          hostedRepositories: (await hosted.repositories()).length,
        }),
      readiness: () =>
        readiness(
          store.tmpDir,
          routes.all,
          config.offline,
          this.sharedStore && { bucket: this.sharedStore, redis: this.#coordinator },
        ),
      metricsPath: config.metricsPath,
      metrics: metrics.registry,
    };
    this.serverContext = {
      handlers,
      operator,
      access,
      routes,
      defaultUpstream,
      hosted,
      takeover,
      lane,
      log,
      accessLog: this.#accessLog,
      metrics,
      repositories,
    };
  }

  /** POST /_hubcache/gc: this replica's files, then (with Redis) the bucket's, as `shared`. */
  #collection(local: GarbageCollection): OperatorContext['gc'] {
    return {
      run: async () => {
        const result = await local.run();
        const fleetGc = this.#fleetGc;
        return fleetGc ? { ...result, shared: await fleetGc.run() } : result;
      },
    };
  }

  #wireMetrics(store: BlobStore): Metrics {
    return new Metrics({
      cacheBytes: () => store.usage.totalBytes,
      cacheObjects: () => store.usage.count,
      maxSizeBytes: () => this.#config.maxSizeBytes,
      inflightFills: () => this.blobs.inflightCount,
      waiters: () => this.blobs.waiters,
      prefetch: () => this.prefetch,
      evictions: () => store.evictions,
      blobsTooBig: () => store.tooBig,
      digestMismatches: () => this.blobs.digestMismatches,
      ranged: () => this.blobs.ranged,
      rateLimit: () => this.routes.default.api.client.rateLimit,
      uploadSessions: () => this.uploads.count,
      lane: () => this.#lane ?? { answers: 0, size: 0 },
      sharedTier: () => ({
        bucketUp: this.sharedStore && !this.sharedStore.down,
        redisUp: this.#coordinator?.up,
      }),
      shared: () => ({
        fills: this.blobs.sharedFills,
        published: this.blobs.published,
        waits: this.blobs.sharedWaits,
        discarded: this.blobs.sharedDiscarded,
        recordsRejected: this.#hostedRecords?.rejected ?? 0,
        peerFills: this.blobs.peerFills,
        takeovers: this.#uploadOwners?.takeovers ?? 0,
        repaired: this.#repair?.repaired ?? 0,
      }),
      bucketGc: () => {
        const gc = this.#fleetGc;
        if (!gc) return undefined;
        const { runs, failures, removedBytes, evictedBytes } = gc.totals;
        return {
          runs,
          failures,
          removedBytes,
          evictedBytes,
          bucketBytes: gc.bucketBytes,
          maxBytes: gc.parts.maxBytes,
          overBound: gc.overBound,
        };
      },
    });
  }

  async init(): Promise<void> {
    if (this.sharedStore && this.#config.shared) {
      const failed = await checkShared(
        {
          bucket: this.sharedStore,
          redis: this.#coordinator,
          redisUrl: this.#config.shared.redisUrl,
          degraded: this.#config.shared.degradedStart,
        },
        this.#log,
      );
      if (failed) throw new StartupError(failed.option, failed.value, failed.cause);
    }
    await this.blobs.store.init();
    await this.hosted.loadNames();
    await this.#tokens?.init();
    await this.#coordinator?.init();
    await this.#repair?.init();
    await this.uploads.init();
    this.#peers?.registry.start();
    this.#fleetGc?.start(() => this.serverContext.operator.gc.run());
    // No full scan before serving (100,000 blobs must not delay /v2/): it runs in the background.
    this.started = this.#background();
  }

  /** Resolves when the start-up background work is done (tests and benchmarks wait for it). */
  started: Promise<void> = Promise.resolve();

  async #background(): Promise<void> {
    try {
      await removeStaleTemps(this.blobs.store.tmpDir, 2 * this.#config.upstream.idleTimeoutMs + 60_000);
      // What hosted content holds must be known before the size bound removes anything.
      await this.hosted.loadHeld();
      await this.blobs.store.scan();
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'start-up scan failed');
    }
  }

  #closed = false;

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#accessLog.close();
    // Queued prefetches never start; downloads under way (prefetches among them) finish and are
    // stored (up to the idle timeout), or are aborted cleanly.
    this.prefetch.close();
    await this.blobs.drain(this.#config.upstream.idleTimeoutMs);
    await this.uploads.close();
    await this.#peers?.registry.stop();
    await this.#peers?.client.close();
    await this.#peers?.blobClient.close();
    await this.#fleetGc?.close();
    await this.#coordinator?.close();
    this.sharedStore?.close();
    for (const r of this.routes.all) await r.api.client.close();
  }

  /** Resolves once the start-up scan is done and no blob fill is running (tests wait on it, not on time). */
  async settled(): Promise<void> {
    await this.started;
    // A prefetch still queued starts a fill when one ends: settled once neither has work left.
    do {
      await this.prefetch.idle();
      await this.blobs.settled();
    } while (this.prefetch.running > 0);
  }
}
