import {
  choice,
  count,
  globs,
  type Kind,
  listen,
  MASK,
  maskPassword,
  mirrorUrl,
  nonEmpty,
  type RegistriesValue,
  registries,
  secret,
  size,
  sizeOrZero,
  tagTtlRules,
  text,
  toggle,
  upstreamUrl,
} from './kinds.js';
import { ANONYMOUS_PUSH, type Config, EVICTION_POLICIES, type UpstreamConfig } from './types.js';

/**
 * One option, written once: the commander flags, the environment, the YAML file's schema,
 * --print-config and docs/configuration.md's reference (docs:options) are all made from these entries.
 */
export interface OptionSpec<F> {
  /** The key in the YAML file; its environment variable is derived from it (see `envName`). */
  path: string;
  /** The flag as commander reads it, with its argument. */
  flag: string;
  help: string;
  kind: Kind<F>;
  /** Absent: unset unless given (an optional key, shown commented out in docs/configuration.md). */
  default?: NoInfer<F>;
  /** docs/configuration.md's default when the plain default does not tell it. */
  defaultText?: string;
  /** A value that is not the default: docs/configuration.md's commented-out keys, and the round-trip test's config. */
  example: NoInfer<F>;
  /** Environment names from before they were derived from the path: still read, documented. */
  envAliases?: string[];
  /** The section (tls, storage.s3) exists only with this key, so its other keys need it. */
  required?: true;
  /** A flag and environment variable only: neither a key of the file nor printed. */
  cliOnly?: true;
  /** Also read from this variable before the default (the AWS SDK's own region variable). */
  fallbackEnv?: string;
  /** The value --print-config writes for it, in the file's form, secrets masked. */
  show(config: Config): NoInfer<F> | undefined;
}

/** `HUBCACHE_` and the YAML path in upper snake case: `upstream.connectTimeout` → HUBCACHE_UPSTREAM_CONNECT_TIMEOUT. */
export function envName(path: string): string {
  return `HUBCACHE_${path
    .replace(/\./g, '_')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toUpperCase()}`;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Where Docker Hub sends blob GETs: its Cloudflare, CloudFront, R2 and S3 hosts. */
export const DOCKER_HUB_REDIRECT_HOSTS = [
  '*.docker.com',
  '*.docker.io',
  '*.cloudflarestorage.com',
  '*.cloudfront.net',
  'docker-images-prod.*.amazonaws.com',
  '*.s3.amazonaws.com',
  '*.s3.*.amazonaws.com',
];

const seconds = (ms: number) => ms / 1000;
const masked = (secret: string | undefined) => (secret ? MASK : undefined);
const bracketed = (host: string) => (host.includes(':') ? `[${host}]` : host);

function showRegistries(config: Config): RegistriesValue {
  const shown = (u: UpstreamConfig) => ({
    url: u.url.href,
    ...(u.username ? { username: u.username } : {}),
    ...(u.password ? { password: MASK } : {}),
    redirectHosts: u.redirectHosts,
    realmHosts: u.realmHosts,
  });
  return Object.fromEntries(config.registries.map((r) => [r.host, shown(r.upstream)]));
}

/** Typed by its value, so the code that reads an option gets the right type. */
const option = <F>(spec: OptionSpec<F>): OptionSpec<F> => spec;

/** Every option, in the order of --help, docs/configuration.md and the file. */
export const OPTIONS = {
  config: option({
    path: 'config',
    flag: '--config <file>',
    help: 'the YAML configuration file (the environment and flags override it)',
    kind: text,
    example: '/etc/hubcache/hubcache.yml',
    cliOnly: true,
    show: () => undefined,
  }),
  printConfig: option({
    path: 'printConfig',
    flag: '--print-config',
    help: 'print the effective configuration as a configuration file (secrets masked) and exit',
    kind: toggle,
    default: false,
    example: true,
    cliOnly: true,
    show: () => undefined,
  }),
  listen: option({
    path: 'listen',
    flag: '--listen <host:port>',
    help: 'where to listen',
    kind: listen,
    default: '0.0.0.0:5000',
    example: '127.0.0.1:5055',
    show: (c) => `${bracketed(c.listen.host)}:${c.listen.port}`,
  }),
  data: option({
    path: 'data',
    flag: '--data <dir>',
    help: 'the cache directory',
    kind: nonEmpty,
    default: './data',
    example: '/var/cache/hubcache',
    show: (c) => c.dataDir,
  }),
  upstreamUrl: option({
    path: 'upstream.url',
    flag: '--upstream <url>',
    help: 'the registry to mirror',
    kind: upstreamUrl,
    default: 'https://registry-1.docker.io',
    example: 'https://mirror.example.com',
    envAliases: ['HUBCACHE_UPSTREAM'],
    show: (c) => c.upstream.url.href,
  }),
  upstreamUsername: option({
    path: 'upstream.username',
    flag: '--upstream-username <name>',
    help: 'upstream account (on Docker Hub it raises the pull limit from 100 per 6 h per IP)',
    kind: text,
    example: 'alice',
    show: (c) => c.upstream.username,
  }),
  upstreamPassword: option({
    path: 'upstream.password',
    flag: '--upstream-password <secret>',
    help: 'its password or access token (or passwordFile, not both)',
    kind: secret,
    example: 'dckr_pat_example',
    show: (c) => masked(c.upstream.password),
  }),
  upstreamPasswordFile: option({
    path: 'upstream.passwordFile',
    flag: '--upstream-password-file <file>',
    help: 'read the upstream password from this file (keeps it out of `ps` and the environment)',
    kind: text,
    example: '/run/secrets/hub-token',
    // Read into upstream.password, which is what gets printed (masked).
    show: () => undefined,
  }),
  expandLibrary: option({
    path: 'upstream.expandLibrary',
    flag: '--no-expand-library',
    help: 'turn NAME into library/NAME, as Docker Hub names official images (off for other upstreams)',
    kind: toggle,
    default: true,
    example: false,
    envAliases: ['HUBCACHE_EXPAND_LIBRARY'],
    show: (c) => c.upstream.expandLibrary,
  }),
  upstreamConcurrency: option({
    path: 'upstream.concurrency',
    flag: '--upstream-concurrency <n>',
    help: 'concurrent upstream blob downloads at most (manifest requests have their own budget of n); 0 is 1',
    kind: count,
    default: 32,
    example: 4,
    show: (c) => c.upstream.concurrency,
  }),
  upstreamParallel: option({
    path: 'upstream.parallel',
    flag: '--upstream-parallel <n>',
    help: 'upstream connections one big blob (8 MiB or more) is fetched over, in ranged segments, when the upstream honours Range and one connection is slow (under 100 MiB/s); 1 is off, 0 is 1',
    kind: count,
    default: 4,
    example: 1,
    show: (c) => c.upstreamParallel,
  }),
  connectTimeout: option({
    path: 'upstream.connectTimeout',
    flag: '--connect-timeout <seconds>',
    help: 'upstream connect timeout',
    kind: count,
    default: 10,
    example: 3,
    envAliases: ['HUBCACHE_CONNECT_TIMEOUT'],
    show: (c) => seconds(c.upstream.connectTimeoutMs),
  }),
  headersTimeout: option({
    path: 'upstream.headersTimeout',
    flag: '--headers-timeout <seconds>',
    help: 'upstream response headers timeout (then stale content is served if there is some)',
    kind: count,
    default: 30,
    example: 5,
    envAliases: ['HUBCACHE_HEADERS_TIMEOUT'],
    show: (c) => seconds(c.upstream.headersTimeoutMs),
  }),
  idleTimeout: option({
    path: 'upstream.idleTimeout',
    flag: '--idle-timeout <seconds>',
    help: 'an upstream body idle this long fails the download; nothing is stored',
    kind: count,
    default: 30,
    example: 6,
    envAliases: ['HUBCACHE_IDLE_TIMEOUT'],
    show: (c) => seconds(c.upstream.idleTimeoutMs),
  }),
  redirectHosts: option({
    path: 'upstream.redirectHosts',
    flag: '--upstream-redirect-host <glob...>',
    help: 'hosts the upstream may redirect blob downloads to, besides itself (Docker Hub: its CDNs)',
    kind: globs,
    default: DOCKER_HUB_REDIRECT_HOSTS,
    defaultText: "Docker Hub's CDN hosts",
    example: ['cdn.example.com'],
    show: (c) => c.upstream.redirectHosts,
  }),
  realmHosts: option({
    path: 'upstream.realmHosts',
    flag: '--upstream-realm-host <glob...>',
    help: "token servers the upstream may send the mirror to, besides its own domain (a Keycloak's host)",
    kind: globs,
    default: [],
    example: ['sso.example.com'],
    show: (c) => c.upstream.realmHosts,
  }),
  registries: option({
    path: 'registries',
    flag: '--registry <host=url...>',
    help: 'more registries mirrored by host; the file gives each credentials, redirectHosts and realmHosts',
    kind: registries,
    default: {},
    example: {
      'ghcr.io': { url: 'https://ghcr.io' },
      'private.example': {
        url: 'https://registry.private.example',
        username: 'team',
        passwordFile: '/run/secrets/private-registry',
        redirectHosts: ['blobs.private.example'],
        realmHosts: ['sso.private.example'],
      },
    },
    envAliases: ['HUBCACHE_REGISTRY'],
    show: showRegistries,
  }),
  tagTtl: option({
    path: 'tags.ttl',
    flag: '--tag-ttl <seconds>',
    help: 'trust a cached tag this long, then revalidate it with one HEAD',
    kind: count,
    default: 300,
    example: 60,
    envAliases: ['HUBCACHE_TAG_TTL'],
    show: (c) => seconds(c.tagTtlMs),
  }),
  tagTtlRules: option({
    path: 'tags.rules',
    flag: '--tag-ttl-rule <pattern=seconds>',
    help: 'the TTL of tags matching a glob (over repository:tag when it has : or /), repeatable, first match wins',
    kind: tagTtlRules,
    default: [],
    example: [
      { pattern: 'latest', ttl: 60 },
      { pattern: 'v*', ttl: 86400 },
    ],
    envAliases: ['HUBCACHE_TAG_TTL_RULES'],
    show: (c) => c.tagTtlRules.map((r) => ({ pattern: r.pattern, ttl: seconds(r.ttlMs) })),
  }),
  maxSize: option({
    path: 'cache.maxSize',
    flag: '--max-size <size>',
    help: 'bound the stored bytes (50GiB, 500GB): once past it, blobs are evicted until it holds again, chosen by --eviction',
    kind: size,
    defaultText: 'unbounded',
    example: '50GiB',
    envAliases: ['HUBCACHE_MAX_SIZE'],
    show: (c) => c.maxSizeBytes,
  }),
  eviction: option({
    path: 'cache.eviction',
    flag: '--eviction <policy>',
    help: 'which blobs --max-size evicts first: gdsf (rarely used, frequency-aware; what every client fetched goes first) or lru (least recently used)',
    kind: choice(EVICTION_POLICIES),
    default: 'gdsf',
    example: 'lru',
    show: (c) => c.eviction,
  }),
  minFreeSpace: option({
    path: 'cache.minFreeSpace',
    flag: '--min-free-space <size>',
    help: 'below this much free disk, misses are passed through uncached',
    kind: sizeOrZero,
    default: '512MiB',
    example: '2GiB',
    envAliases: ['HUBCACHE_MIN_FREE_SPACE'],
    show: (c) => c.minFreeBytes,
  }),
  memoryCacheMb: option({
    path: 'cache.memoryMb',
    flag: '--memory-cache-mb <mib>',
    help: 'memory for manifests and small blobs (the fast lane of the hit path)',
    kind: count,
    default: 128,
    example: 16,
    envAliases: ['HUBCACHE_MEMORY_CACHE_MB'],
    show: (c) => c.memoryCacheBytes / 1024 / 1024,
  }),
  prefetchLayers: option({
    path: 'cache.prefetchLayers',
    flag: '--prefetch-layers <n>',
    help: 'when an image manifest arrives from upstream, fetch its blobs at once, n at a time at most (0: off)',
    kind: count,
    default: 4,
    example: 0,
    show: (c) => c.prefetchLayers,
  }),
  offline: option({
    path: 'offline',
    flag: '--offline',
    help: 'serve only what is cached; never contact the upstream',
    kind: toggle,
    default: false,
    example: true,
    show: (c) => c.offline,
  }),
  tlsCert: option({
    path: 'tls.cert',
    flag: '--tls-cert <file>',
    help: 'serve HTTPS with this certificate (PEM)',
    kind: nonEmpty,
    example: '/etc/hubcache/cert.pem',
    required: true,
    show: (c) => c.tls?.cert,
  }),
  tlsKey: option({
    path: 'tls.key',
    flag: '--tls-key <file>',
    help: 'the private key for the certificate (PEM)',
    kind: nonEmpty,
    example: '/etc/hubcache/key.pem',
    required: true,
    show: (c) => c.tls?.key,
  }),
  htpasswd: option({
    path: 'htpasswd',
    flag: '--htpasswd <file>',
    help: 'require client credentials from this htpasswd file (bcrypt)',
    kind: nonEmpty,
    example: '/etc/hubcache/htpasswd',
    show: (c) => c.htpasswd,
  }),
  anonymousPull: option({
    path: 'anonymousPull',
    flag: '--anonymous-pull',
    help: 'with htpasswd: pulls need no credentials, pushes still do (token flow)',
    kind: toggle,
    default: false,
    example: true,
    show: (c) => c.anonymousPull,
  }),
  publicUrl: option({
    path: 'publicUrl',
    flag: '--public-url <url>',
    help: 'how clients reach the mirror (scheme, host, port): the token realm named in auth challenges',
    kind: mirrorUrl,
    defaultText: 'the address the client connected to',
    example: 'https://mirror.example:5000',
    show: (c) => c.publicUrl?.origin,
  }),
  push: option({
    path: 'hosted.push',
    flag: '--no-push',
    help: 'accept pushes (off: a pull-through mirror only)',
    kind: toggle,
    default: true,
    example: false,
    envAliases: ['HUBCACHE_PUSH'],
    show: (c) => c.hosted.push,
  }),
  anonymousPush: option({
    path: 'hosted.anonymousPush',
    flag: '--anonymous-push <who>',
    help: `who may push and delete without credentials: ${ANONYMOUS_PUSH.join(', ')} (docs/SECURITY.md)`,
    kind: choice(ANONYMOUS_PUSH),
    defaultText: 'loopback (never with htpasswd)',
    example: 'anywhere',
    envAliases: ['HUBCACHE_ANONYMOUS_PUSH'],
    show: (c) => c.hosted.anonymousPush,
  }),
  hosted: option({
    path: 'hosted.repositories',
    flag: '--hosted <glob...>',
    help: 'exactly these names are hosted and take pushes (default: a push creates a hosted repository)',
    kind: globs,
    default: [],
    example: ['team/*', 'tools'],
    envAliases: ['HUBCACHE_HOSTED'],
    show: (c) => c.hosted.patterns,
  }),
  allowDelete: option({
    path: 'hosted.allowDelete',
    flag: '--allow-delete',
    help: 'allow DELETE of hosted manifests, tags and blobs',
    kind: toggle,
    default: false,
    example: true,
    envAliases: ['HUBCACHE_ALLOW_DELETE'],
    show: (c) => c.hosted.allowDelete,
  }),
  uploadExpiry: option({
    path: 'hosted.uploadExpiry',
    flag: '--upload-expiry <seconds>',
    help: 'an upload session idle this long is dropped with its bytes (0 is 1)',
    kind: count,
    default: 3600,
    example: 600,
    envAliases: ['HUBCACHE_UPLOAD_EXPIRY'],
    show: (c) => seconds(c.hosted.uploadExpiryMs),
  }),
  gcGrace: option({
    path: 'hosted.gcGrace',
    flag: '--gc-grace <seconds>',
    help: 'garbage collection keeps blobs newer than this (uploads whose manifest is still to come)',
    kind: count,
    default: 3600,
    example: 120,
    envAliases: ['HUBCACHE_GC_GRACE'],
    show: (c) => seconds(c.hosted.gcGraceMs),
  }),
  s3Bucket: option({
    path: 'storage.s3.bucket',
    flag: '--s3-bucket <name>',
    help: 'share blobs and manifests with other replicas in this S3 bucket',
    kind: nonEmpty,
    example: 'hubcache',
    required: true,
    envAliases: ['HUBCACHE_S3_BUCKET'],
    show: (c) => c.shared?.s3.bucket,
  }),
  s3Endpoint: option({
    path: 'storage.s3.endpoint',
    flag: '--s3-endpoint <url>',
    help: 'an S3 other than AWS (Ceph RGW, MinIO)',
    kind: text,
    example: 'http://rgw.storage.svc:7480',
    envAliases: ['HUBCACHE_S3_ENDPOINT'],
    show: (c) => c.shared?.s3.endpoint,
  }),
  s3Region: option({
    path: 'storage.s3.region',
    flag: '--s3-region <region>',
    help: 'S3 region',
    kind: text,
    default: 'us-east-1',
    defaultText: '$AWS_REGION, else us-east-1',
    fallbackEnv: 'AWS_REGION',
    example: 'eu-west-1',
    envAliases: ['HUBCACHE_S3_REGION'],
    show: (c) => c.shared?.s3.region,
  }),
  s3PathStyle: option({
    path: 'storage.s3.pathStyle',
    flag: '--s3-path-style',
    help: 'path-style S3 URLs (RGW, MinIO)',
    kind: toggle,
    default: false,
    example: true,
    envAliases: ['HUBCACHE_S3_PATH_STYLE'],
    show: (c) => c.shared?.s3.pathStyle,
  }),
  s3Prefix: option({
    path: 'storage.s3.prefix',
    flag: '--s3-prefix <prefix>',
    help: 'key prefix in the bucket, so several mirrors can share it',
    kind: text,
    default: '',
    example: 'mirror/',
    envAliases: ['HUBCACHE_S3_PREFIX'],
    show: (c) => c.shared?.s3.prefix,
  }),
  redis: option({
    path: 'redis',
    flag: '--redis <url>',
    help: 'Redis for replicas (needs the S3 bucket): one download per blob fleet-wide, one tag index',
    kind: secret,
    example: 'redis://redis.storage.svc:6379',
    show: (c) => c.shared?.redisUrl && maskPassword(c.shared.redisUrl),
  }),
  fleetSecretFile: option({
    path: 'fleetSecretFile',
    flag: '--fleet-secret-file <file>',
    help: "replicas' shared secret (at least 32 bytes; a second line: the previous one, while rotating): tokens one replica issues are good on all",
    kind: nonEmpty,
    example: '/run/secrets/hubcache-fleet',
    show: (c) => c.shared?.fleetSecretFile,
  }),
  peerListen: option({
    path: 'peerListen',
    flag: '--peer-listen <host:port>',
    help: 'where other replicas reach this one (signed requests only; never behind the public load balancer): a push whose requests land on several replicas is forwarded to the one holding its upload',
    kind: listen,
    example: '0.0.0.0:5001',
    show: (c) => c.shared?.peer && `${c.shared.peer.listen.host}:${c.shared.peer.listen.port}`,
  }),
  peerAdvertise: option({
    path: 'peerAdvertise',
    flag: '--peer-advertise <url>',
    help: 'the URL other replicas use to reach --peer-listen (needed when it listens on every interface)',
    kind: mirrorUrl,
    defaultText: 'http://<--peer-listen host>:<port>',
    example: 'http://10.0.0.5:5001',
    show: (c) => c.shared?.peer?.advertise,
  }),
  sharedMaxSize: option({
    path: 'storage.s3.maxSize',
    flag: '--shared-max-size <size>',
    help: "bound the bucket's blobs (1TiB): each collection evicts mirrored blobs the fleet used least recently down to 90 % (hosted content is never evicted)",
    kind: size,
    defaultText: 'unbounded',
    example: '1TiB',
    show: (c) => c.shared?.maxSizeBytes,
  }),
  sharedGcInterval: option({
    path: 'storage.s3.gcInterval',
    flag: '--shared-gc-interval <seconds>',
    help: 'collect the bucket this often (one replica at a time): blobs nothing names and nobody used within --gc-grace go, then --shared-max-size applies; 0: only on POST /_hubcache/gc',
    kind: count,
    default: 21_600,
    example: 3600,
    show: (c) => c.shared && seconds(c.shared.gcIntervalMs),
  }),
  sharedDegraded: option({
    path: 'sharedDegraded',
    flag: '--shared-degraded',
    help: 'start even when the S3 bucket or Redis fails its start-up check (each replica then works alone until they answer); without it, the start stops with one line saying why',
    kind: toggle,
    default: false,
    example: true,
    show: (c) => c.shared?.degradedStart,
  }),
  trustedProxy: option({
    path: 'trustedProxies',
    flag: '--trusted-proxy <cidrs>',
    help: 'reverse proxies or load balancers in front (comma-separated addresses or CIDR blocks): a request from one is taken to come from the X-Forwarded-For client it names (anonymous pushes from the mirror host, operator endpoints, upload caps)',
    kind: globs,
    default: [],
    example: ['10.0.0.0/8', '127.0.0.1'],
    show: (c) => c.trustedProxies,
  }),
  clientHeaderTimeout: option({
    path: 'clientHeaderTimeout',
    flag: '--client-header-timeout <seconds>',
    help: 'a client must send its request headers within this (slowloris protection; 0 is 1)',
    kind: count,
    default: 30,
    example: 10,
    show: (c) => seconds(c.clientHeaderTimeoutMs),
  }),
  clientIdleTimeout: option({
    path: 'clientIdleTimeout',
    flag: '--client-idle-timeout <seconds>',
    help: 'close a connection that moves no bytes for this long (a client that stops reading a blob holds a file and buffers; 0 is 1)',
    kind: count,
    default: 120,
    example: 60,
    show: (c) => seconds(c.clientIdleTimeoutMs),
  }),
  metricsPath: option({
    path: 'metricsPath',
    flag: '--metrics-path <path>',
    help: 'where Prometheus scrapes (on the main listener)',
    kind: nonEmpty,
    default: '/metrics',
    example: '/_metrics',
    show: (c) => c.metricsPath,
  }),
  logLevel: option({
    path: 'logLevel',
    flag: '--log-level <level>',
    help: `pino log level, one JSON line per request: ${LOG_LEVELS.join(', ')}`,
    kind: choice(LOG_LEVELS),
    default: 'info',
    example: 'debug',
    show: (c) => c.logLevel as (typeof LOG_LEVELS)[number],
  }),
};

export type OptionId = keyof typeof OPTIONS;
export type OptionValue<K extends OptionId> = (typeof OPTIONS)[K] extends OptionSpec<infer F> ? F : never;

/** The options in table order, with their ids. */
export const OPTION_LIST = Object.entries(OPTIONS) as [OptionId, OptionSpec<unknown>][];

/** Every name an option is read from in the environment, the derived one first. */
export function envNames(spec: OptionSpec<unknown>): string[] {
  return [envName(spec.path), ...(spec.envAliases ?? [])];
}

/** The flag alone, for messages: `--tag-ttl`. */
export function flagName(spec: OptionSpec<unknown>): string {
  return spec.flag.split(' ')[0] ?? spec.flag;
}

/** The default as --help and docs/configuration.md tell it; undefined when the option is unset by default. */
export function defaultShown(spec: OptionSpec<unknown>): string | undefined {
  if (spec.defaultText) return spec.defaultText;
  if (spec.default === undefined) return undefined;
  if (spec.kind.isSwitch) return spec.default ? 'on' : 'off';
  if (isEmpty(spec.default)) return 'none';
  return spec.default === '' ? '""' : String(spec.default);
}

/** An empty list or map: no default worth showing. */
export function isEmpty(value: unknown): boolean {
  return typeof value === 'object' && value !== null && Object.keys(value).length === 0;
}
