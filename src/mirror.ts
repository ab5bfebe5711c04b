import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import pLimit from 'p-limit';
import { BufferPool } from './api/file-sender.js';
import { ClientAuth } from './auth/client-auth.js';
import { TokenService } from './auth/token-service.js';
import { BlobCache, type SharedTier } from './cache/blob-cache.js';
import { BlobStore } from './cache/blob-store.js';
import { type CollectResult, collectGarbage } from './cache/collect.js';
import { removeStaleTemps } from './cache/gc.js';
import { KnownContent } from './cache/known-content.js';
import { KnownSizes } from './cache/known-sizes.js';
import { ManifestCache } from './cache/manifest-cache.js';
import { ReferrersCache } from './cache/referrers-cache.js';
import { TagIndex } from './cache/tag-index.js';
import { tagTtl } from './cache/tag-ttl.js';
import type { Config } from './config.js';
import { HeadPromises } from './hosted/head-promises.js';
import { HostedRepositories } from './hosted/repositories.js';
import { TakeoverGuard } from './hosted/takeover.js';
import { UploadSessions } from './hosted/uploads.js';
import type { Logger } from './observe/logger.js';
import { Metrics } from './observe/metrics.js';
import { RegistryError } from './oci/errors.js';
import { acceptedTypes } from './oci/media-types.js';
import { validateName } from './oci/names.js';
import { Coordinator } from './shared/coordinator.js';
import { S3BlobStore } from './shared/s3-store.js';
import { UpstreamClient } from './upstream/client.js';
import { canonicalName, servesNamespace } from './upstream/hub-names.js';

/** A replica's download lock lapses this long after its last refresh (a killed replica's, say). */
const LOCK_TTL_MS = 10_000;

/**
 * The one object that owns the mirror's state: the upstream client, the stores and the in-flight
 * maps. Built from the Config, handed to every handler; nothing else holds mutable state.
 */
/** One mirrored registry: its client and its manifests (tags kept apart per registry). */
export interface Route {
  host: string;
  /** How errors name it: its URL, after its configured name when that differs (`ghcr.io (https://…)`). */
  label: string;
  client: UpstreamClient;
  manifests: ManifestCache;
  referrers: ReferrersCache;
}

/** A request's registry, its repository name there, and the name the cache lists it under. */
export interface Target {
  route: Route;
  name: string;
  key: string;
}

export class Mirror {
  readonly config: Config;
  readonly log: Logger;
  readonly upstream: UpstreamClient;
  readonly blobs: BlobCache;
  readonly manifests: ManifestCache;
  readonly tags: TagIndex;
  /** Which mirrored names are known to have which stored content (cache/known-content.ts). */
  readonly known: KnownContent;
  /** Replicas: the S3 store they share, and Redis to coordinate (both optional). */
  readonly sharedStore: S3BlobStore | undefined;
  readonly coordinator: Coordinator | undefined;
  /** Repositories clients pushed to, and the uploads under way. */
  readonly hosted: HostedRepositories;
  readonly uploads: UploadSessions;
  /** Blob HEADs answered yes, which a push may still rely on (in memory only). */
  readonly headPromises: HeadPromises;
  /** Read buffers for the blob hit path (reused: no allocation per chunk). */
  readonly buffers = new BufferPool();

  constructor(config: Config, log: Logger) {
    this.config = config;
    this.log = log;
    this.upstream = new UpstreamClient(config.upstream, log, config.offline);
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
      if (config.shared.redisUrl) this.coordinator = new Coordinator(config.shared.redisUrl, log);
    }
    const sizes = this.sharedStore ? new KnownSizes() : undefined;
    const shared: SharedTier | undefined = this.sharedStore
      ? { store: this.sharedStore, coordinator: this.coordinator, lockTtlMs: LOCK_TTL_MS, sizes }
      : undefined;
    this.tags = new TagIndex(config.dataDir, 'repositories', this.coordinator);
    this.known = new KnownContent(store, this.tags);
    this.hosted = new HostedRepositories(
      config.dataDir,
      store,
      {
        push: config.hosted.push,
        patterns: config.hosted.patterns,
        reserved: (name) => this.#reserved(name),
      },
      log,
    );
    this.headPromises = new HeadPromises(config.hosted.gcGraceMs, config.hosted.uploadExpiryMs);
    store.keep = (hex) => this.hosted.holds(hex) || this.headPromises.holds(hex);
    this.takeover = new TakeoverGuard({
      cached: (name) => this.tags.knows(name),
      servedUpstream: (name) => this.#servedUpstream(name),
      neverUpstream: (name) => config.upstream.expandLibrary && !name.includes('/'),
    });
    this.uploads = new UploadSessions(config.dataDir, store, config.hosted.uploadExpiryMs, log);
    this.blobs = new BlobCache(store, this.upstream, pLimit(concurrency), log, shared);
    this.manifests = new ManifestCache(
      store,
      this.tags,
      this.upstream,
      pLimit(concurrency),
      tagTtl(config.tagTtlRules, config.tagTtlMs),
      log,
      '',
      this.sharedStore,
      this.coordinator,
      sizes,
    );
    this.metrics = this.#wireMetrics();
    this.auth = config.htpasswd ? new ClientAuth(config.htpasswd) : undefined;
    this.tokens = this.auth ? new TokenService(this.auth, config.dataDir, config.anonymousPull) : undefined;
    const referrers = (client: UpstreamClient, manifests: ManifestCache, prefix: string) =>
      new ReferrersCache(
        client,
        manifests,
        pLimit(concurrency),
        tagTtl(config.tagTtlRules, config.tagTtlMs),
        log,
        prefix,
      );
    this.#default = {
      host: config.upstream.url.host,
      label: config.upstream.url.origin,
      client: this.upstream,
      manifests: this.manifests,
      referrers: referrers(this.upstream, this.manifests, ''),
    };
    this.#watch(this.#default);
    for (const r of config.registries) {
      const client = new UpstreamClient(r.upstream, log, config.offline);
      const manifests = new ManifestCache(
        store,
        this.tags,
        client,
        pLimit(concurrency),
        tagTtl(config.tagTtlRules, config.tagTtlMs),
        log,
        `${r.host}/`,
        this.sharedStore,
        this.coordinator,
        sizes,
      );
      const origin = r.upstream.url.origin;
      const label = r.upstream.url.host === r.host ? origin : `${r.host} (${origin})`;
      const route = {
        host: r.host,
        label,
        client,
        manifests,
        referrers: referrers(client, manifests, `${r.host}/`),
      };
      this.#routes.set(r.host, route);
      this.#watch(route);
    }
  }

  /** How errors name the default upstream: requests that reach no particular registry name it. */
  get upstreamLabel(): string {
    return this.#default.label;
  }

  /** Every exchange with a registry is counted, and remembered per registry for /readyz. */
  #watch(route: Route): void {
    route.client.onExchange = (method, status, seconds) => {
      this.metrics.upstream(method, status, seconds);
      this.#seen.set(route.host, { reachable: status !== 'error' && status < 500, at: Date.now() });
    };
  }

  readonly #default: Route;
  readonly #routes = new Map<string, Route>();

  /**
   * Which upstream a request means, and the repository's name there. containerd's `?ns=` decides
   * first, then a path prefix naming a configured registry (`ghcr.io/owner/app`), else the default
   * upstream. A registry that is not configured is refused: only configured upstreams are contacted.
   */
  resolve(rawName: string, ns: string | null): Target {
    const { url, expandLibrary } = this.config.upstream;
    if (ns && !servesNamespace(ns, url, expandLibrary)) {
      const route = this.#routes.get(ns);
      if (!route) throw new RegistryError('NAME_UNKNOWN', `registry ${ns} is not mirrored here`, { ns });
      return { route, name: validateName(rawName), key: `${ns}/${rawName}` };
    }
    const slash = rawName.indexOf('/');
    const route = slash > 0 ? this.#routes.get(rawName.slice(0, slash)) : undefined;
    if (route) {
      const name = validateName(rawName.slice(slash + 1));
      return { route, name, key: `${route.host}/${name}` };
    }
    const name = this.repositoryName(rawName);
    return { route: this.#default, name, key: name };
  }

  /**
   * The hosted repository a request names, if it names one. containerd's `?ns=` naming another
   * registry means that registry; otherwise the name exactly as written (no library/ expansion):
   * a pushed `busybox` is this registry's `busybox`, while Docker's mirror requests for the
   * official image arrive as `library/busybox`.
   */
  hostedName(rawName: string, ns: string | null): string | undefined {
    if (ns && !servesNamespace(ns, this.config.upstream.url, this.config.upstream.expandLibrary))
      return undefined;
    if (!this.hosted.isHosted(rawName)) return undefined;
    return validateName(rawName);
  }

  /** Where a name would be mirrored from, ignoring hosting (undefined for another registry's prefix). */
  mirroredTarget(rawName: string): Target | undefined {
    const target = this.resolve(rawName, null);
    return target.route === this.#default ? target : undefined;
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

  /** Whether a push may create `name` (the takeover rule, hosted/takeover.ts). */
  readonly takeover: TakeoverGuard;

  /**
   * Whether the default upstream serves exactly `name`: its tag list answers. 401, 403 and 404 all
   * mean "not to us" (Docker Hub answers 401 for a repository that does not exist, docs/PROTOCOL.md §1.2).
   */
  async #servedUpstream(name: string): Promise<boolean | undefined> {
    if (this.config.offline) return false;
    try {
      const res = await this.upstream.request({
        method: 'GET',
        path: `/v2/${name}/tags/list?n=1`,
        repository: name,
      });
      res.body.destroy();
      if (res.status === 200) return true;
      if (res.status === 401 || res.status === 403 || res.status === 404) return false;
      return undefined;
    } catch {
      return undefined;
    }
  }

  /** Names a push may not take without an explicit hosted pattern. */
  #reserved(name: string): string | undefined {
    const slash = name.indexOf('/');
    const host = slash > 0 ? name.slice(0, slash) : '';
    if (this.#routes.has(host)) return `names under ${host}/ are mirrored from ${host}`;
    if (this.config.upstream.expandLibrary && name.startsWith('library/')) {
      return "library/ is Docker Hub's namespace for official images: push under another name, or list it in hosted repositories";
    }
    return undefined;
  }

  readonly metrics: Metrics;
  /** Client authentication, when an htpasswd file is configured. */
  readonly auth: ClientAuth | undefined;
  /** The token flow for --anonymous-pull (Bearer tokens are accepted whenever auth is on). */
  readonly tokens: TokenService | undefined;
  /** Requests and bytes per repository since start (the dashboard's top repositories). */
  readonly #repositories = new LRUCache<string, { requests: number; bytes: number }>({ max: 1000 });

  countRepository(repository: string, bytes: number): void {
    const entry = this.#repositories.get(repository) ?? { requests: 0, bytes: 0 };
    entry.requests++;
    entry.bytes += bytes;
    this.#repositories.set(repository, entry);
  }

  /** What the dashboard shows, in one JSON document (the same figures as /metrics). */
  summary() {
    const t = this.metrics.totals;
    const store = this.blobs.store;
    return {
      requests: t.requests,
      hits: t.hits,
      hitRatio: this.metrics.hitRatio(),
      bytesFromCache: t.bytesFromCache,
      bytesFromUpstream: t.bytesFromUpstream,
      cacheBytes: store.usage.totalBytes,
      cacheObjects: store.usage.count,
      maxSizeBytes: this.config.maxSizeBytes ?? null,
      upstream: {
        url: this.config.upstream.url.origin,
        offline: this.config.offline,
        reachable: this.upstreamSeen?.reachable ?? null,
        rateLimit: this.upstream.rateLimit ?? null,
      },
      topRepositories: [...this.#repositories.entries()]
        .map(([repository, v]) => ({ repository, ...v }))
        .sort((a, b) => b.requests - a.requests)
        .slice(0, 10),
    };
  }

  /** The last exchange with each registry (by host): /readyz reports it (it does not decide readiness). */
  readonly #seen = new Map<string, { reachable: boolean; at: number }>();

  /** The last exchange with the default upstream. */
  get upstreamSeen(): { reachable: boolean; at: number } | undefined {
    return this.#seen.get(this.#default.host);
  }

  /**
   * Readiness: the data directory takes a write. The upstream is reported, not required. A full
   * disk (ENOSPC) is reported but ready: everything cached is still served and misses pass
   * through uncached, which beats being taken out of the load balancer.
   */
  async readiness(): Promise<{
    ready: boolean;
    dataDir: string;
    upstream: string;
    upstreams: Record<string, string>;
  }> {
    const probe = path.join(this.blobs.store.tmpDir, `.readyz-${process.pid}`);
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
    // `upstream` is the default registry's state (kept for existing probes); `upstreams` every one's.
    const routes = [this.#default, ...this.#routes.values()];
    const upstreams = Object.fromEntries(routes.map((r) => [r.host, this.#upstreamState(r)]));
    return { ready, dataDir, upstream: this.#upstreamState(this.#default), upstreams };
  }

  #upstreamState(route: Route): string {
    if (this.config.offline) return 'offline mode';
    const retryIn = route.client.retryInSeconds;
    if (retryIn !== undefined) return `unreachable, retrying in ${retryIn} s (serving from cache)`;
    const seen = this.#seen.get(route.host);
    if (seen === undefined) return 'not contacted yet';
    return seen.reachable ? 'reachable' : 'unreachable (serving from cache)';
  }

  #wireMetrics(): Metrics {
    const store = this.blobs.store;
    const metrics = new Metrics({
      cacheBytes: () => store.usage.totalBytes,
      cacheObjects: () => store.usage.count,
      maxSizeBytes: () => this.config.maxSizeBytes,
      inflightFills: () => this.blobs.inflightCount,
      waiters: () => this.blobs.waiters,
      evictions: () => store.evictions,
      digestMismatches: () => this.blobs.digestMismatches,
      rateLimit: () => this.upstream.rateLimit,
      uploadSessions: () => this.uploads.count,
      shared: () => ({
        fills: this.blobs.sharedFills,
        published: this.blobs.published,
        waits: this.blobs.sharedWaits,
        discarded: this.blobs.sharedDiscarded,
      }),
    });
    return metrics;
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

  /** Validates a repository name from a URL and gives the upstream's spelling of it. */
  repositoryName(raw: string): string {
    let name = this.#names.get(raw);
    if (name === undefined) {
      name = canonicalName(raw, this.config.upstream.expandLibrary);
      this.#names.set(raw, name);
    }
    return name;
  }

  /** Valid spellings seen → canonical name: the hit path validates a name once, not per request. */
  readonly #names = new LRUCache<string, string>({ max: 10_000 });

  /** The media types an Accept header allows, parsed once per distinct header (clients repeat theirs). */
  accepted(accept: string | string[] | undefined): ReadonlySet<string> {
    const key = Array.isArray(accept) ? accept.join(',') : (accept ?? '');
    let types = this.#accepts.get(key);
    if (!types) {
      types = acceptedTypes(accept);
      this.#accepts.set(key, types);
    }
    return types;
  }

  readonly #accepts = new LRUCache<string, Set<string>>({ max: 1000 });

  #closed = false;

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Downloads under way finish and are stored (up to the idle timeout), or are aborted cleanly.
    await this.blobs.drain(this.config.upstream.idleTimeoutMs);
    await this.uploads.close();
    await this.coordinator?.close();
    this.sharedStore?.close();
    await this.upstream.close();
    for (const r of this.#routes.values()) await r.client.close();
  }

  /** Resolves once the start-up scan is done and no blob fill is running (tests wait on it, not on time). */
  async settled(): Promise<void> {
    await this.started;
    await this.blobs.settled();
  }
}
