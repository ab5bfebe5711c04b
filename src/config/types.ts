// The Config the option table (options.ts) makes, which the rest of the mirror reads. Types only
// (and the values of one choice), so the table's modules and config.ts can all import them.

/** The one configuration object: read once at start, validated, passed down. */
export interface Config {
  listen: { host: string; port: number };
  dataDir: string;
  upstream: UpstreamConfig;
  /** How long a tag → digest mapping is trusted before it is revalidated with a HEAD. */
  tagTtlMs: number;
  /** Per-pattern TTLs, first match wins (e.g. `latest` short, `v*` long); else tagTtlMs. */
  tagTtlRules: TagTtlRule[];
  /** Serve only what is cached; never contact the upstream. */
  offline: boolean;
  /** Stored bytes at most (blobs and manifests); undefined = unbounded. */
  maxSizeBytes: number | undefined;
  /** Which stored blobs the size bound removes first (cache/eviction/). */
  eviction: EvictionPolicyName;
  /** TLS for clients (Docker requires it for a mirror that is not on loopback). */
  tls?: { cert: string; key: string };
  /** htpasswd file (bcrypt) that clients must authenticate against. */
  htpasswd?: string;
  /** With htpasswd: pulls need no credentials, pushes and deletes still do. */
  anonymousPull: boolean;
  /**
   * The URL clients reach this mirror at (scheme, host, port): the token realm the Bearer challenge
   * names. Unset: the address the client's connection arrived on, never its Host header.
   */
  publicUrl: URL | undefined;
  /** Repositories clients push to (the push side of the spec). */
  hosted: HostedConfig;
  /** Replicas sharing one cache: blobs and manifests in S3, with Redis for locks and tags. */
  shared: SharedConfig | undefined;
  /** Where Prometheus scrapes (on the main listener). */
  metricsPath: string;
  /** More registries mirrored beside the default one, by host (`ghcr.io`): reached by ?ns= or path prefix. */
  registries: { host: string; upstream: UpstreamConfig }[];
  /** --print-config: print and exit instead of serving. */
  printConfig?: true;
  /** Below this much free disk, misses are passed through uncached instead of filling the disk. */
  minFreeBytes: number;
  /** Reverse proxies in front, as addresses or CIDR blocks: their X-Forwarded-For names the client (auth/client-address.ts). */
  trustedProxies: string[];
  /** A client must send its request headers within this (slowloris protection). */
  clientHeaderTimeoutMs: number;
  /** A connection that moves no bytes for this long is closed (a client that stopped reading). */
  clientIdleTimeoutMs: number;
  /** Bytes of manifests and small blobs kept in memory (the hit path's fast lane). */
  memoryCacheBytes: number;
  /** Prefetch fills of an arriving image manifest's blobs at once at most; 0: no prefetch (cache/layer-prefetch.ts). */
  prefetchLayers: number;
  /** Upstream connections a big blob's fill may use (cache/ranged-fill.ts); 1: one stream. */
  upstreamParallel: number;
  logLevel: string;
}

export interface SharedConfig {
  s3: S3Config;
  redisUrl: string | undefined;
  /**
   * Start even when the bucket or Redis fails the start-up check (shared/shared-check.ts), working
   * alone until they answer. Off: the start stops with one line saying what failed.
   */
  degradedStart: boolean;
  /** --shared-max-size: the bucket's blobs, in bytes, at most after a collection (shared/bucket-gc.ts). */
  maxSizeBytes: number | undefined;
  /** How often one replica collects the bucket (0: only when asked). */
  gcIntervalMs: number;
  /** The fleet secret (shared/fleet-keys.ts): the keys every replica shares, the token key among them. */
  fleetSecretFile?: string;
  /** Where other replicas reach this one (fleet-uploads.ts): the listener, and the URL it is reached at. */
  peer?: { listen: { host: string; port: number }; advertise: string };
}

export interface S3Config {
  bucket: string;
  /** Another S3 than AWS (Ceph RGW, MinIO): its URL. */
  endpoint?: string;
  region: string;
  /** `http://host/bucket/key` instead of `http://bucket.host/key` (RGW, MinIO). */
  pathStyle: boolean;
  /** Key prefix, so several mirrors can share a bucket. */
  prefix: string;
}

export interface HostedConfig {
  /** Accept pushes at all. */
  push: boolean;
  /** Globs over names: when given, exactly these are hosted (and pushable); else a push creates one. */
  patterns: string[];
  /** DELETE of manifests, tags and blobs in hosted repositories. */
  allowDelete: boolean;
  /** An upload session idle this long is dropped with its bytes. */
  uploadExpiryMs: number;
  /** The garbage collector keeps anything newer than this (uploads whose manifest is still to come). */
  gcGraceMs: number;
  /**
   * Who may push and delete without credentials (docs/SECURITY.md): clients on the mirror host
   * (`loopback`, the default without --htpasswd), any client (`anywhere`), or nobody (`never`, the
   * default with --htpasswd).
   */
  anonymousPush: AnonymousPush;
}

/** Who may push without credentials (--anonymous-push); the option table lists these values. */
/** --eviction: GDSF (frequency-aware, the default) or least recently used (docs/benchmarks.md). */
export const EVICTION_POLICIES = ['gdsf', 'lru'] as const;
export type EvictionPolicyName = (typeof EVICTION_POLICIES)[number];

export const ANONYMOUS_PUSH = ['loopback', 'anywhere', 'never'] as const;
export type AnonymousPush = (typeof ANONYMOUS_PUSH)[number];

export interface UpstreamConfig {
  url: URL;
  username?: string;
  password?: string;
  /** Docker Hub names official images `library/NAME`; a one-component name is expanded to it. */
  expandLibrary: boolean;
  /** Concurrent upstream fetches (blob fills and manifest requests) at most. */
  concurrency: number;
  connectTimeoutMs: number;
  /** Upstream sends no headers within this → failure (stale is served if there is one). */
  headersTimeoutMs: number;
  /** Upstream body idle for this long → the fill fails, nothing is stored. */
  idleTimeoutMs: number;
  /**
   * Hosts (globs) the upstream may redirect to besides itself: Docker Hub's blob CDNs. A redirect
   * anywhere else is refused, so the mirror cannot be steered to an arbitrary host.
   */
  redirectHosts: string[];
  /**
   * Hosts (globs) the upstream's token challenge may name as its realm besides its own origin and
   * registrable domain (a Keycloak elsewhere): any other realm is refused without a request, so an
   * upstream cannot make the mirror fetch an arbitrary URL (upstream/realm-trust.ts).
   */
  realmHosts: string[];
}

export interface TagTtlRule {
  /** A glob over the tag (`latest`, `v*`), or over `repository:tag` when it contains ':' or '/'. */
  pattern: string;
  ttlMs: number;
}
