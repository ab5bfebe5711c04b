import { readFileSync } from 'node:fs';
import path from 'node:path';
import bytes from 'bytes-iec';
import { Command, InvalidArgumentError, Option } from 'commander';
import { stringify } from 'yaml';
import { FILE_KEYS, readConfigFile } from './config-file.js';

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
  shared: { s3: S3Config; redisUrl: string | undefined } | undefined;
  /** Where Prometheus scrapes (on the main listener). */
  metricsPath: string;
  /** More registries mirrored beside the default one, by host (`ghcr.io`): reached by ?ns= or path prefix. */
  registries: { host: string; upstream: UpstreamConfig }[];
  /** --print-config: print and exit instead of serving. */
  printConfig?: true;
  /** Below this much free disk, misses are passed through uncached instead of filling the disk. */
  minFreeBytes: number;
  /** A client must send its request headers within this (slowloris protection). */
  clientHeaderTimeoutMs: number;
  /** Bytes of manifests and small blobs kept in memory (the hit path's fast lane). */
  memoryCacheBytes: number;
  logLevel: string;
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

/** Where Docker Hub sends blob GETs (docs/PROTOCOL.md §1.3): its Cloudflare, CloudFront, R2 and S3 hosts. */
export const DOCKER_HUB_REDIRECT_HOSTS = [
  '*.docker.com',
  '*.docker.io',
  '*.cloudflarestorage.com',
  '*.cloudfront.net',
  'docker-images-prod.*.amazonaws.com',
  '*.s3.amazonaws.com',
  '*.s3.*.amazonaws.com',
];

export interface TagTtlRule {
  /** A glob over the tag (`latest`, `v*`), or over `repository:tag` when it contains ':' or '/'. */
  pattern: string;
  ttlMs: number;
}

export const DEFAULTS = {
  listen: '0.0.0.0:5000',
  upstream: 'https://registry-1.docker.io',
  data: './data',
  tagTtl: 300,
  concurrency: 32,
  connectTimeout: 10,
  headersTimeout: 30,
  idleTimeout: 30,
  memoryCacheMb: 128,
  clientHeaderTimeout: 30,
  minFreeSpace: '512MiB',
  logLevel: 'info',
  uploadExpiry: 3600,
  gcGrace: 3600,
} as const;

export function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a whole number ≥ 0`);
    return n;
  };
}

function ttlRule(value: string, previous: TagTtlRule[] = []): TagTtlRule[] {
  const m = /^(.+)=(\d+)$/.exec(value.trim());
  if (!m?.[1] || !m[2]) throw new InvalidArgumentError('expected PATTERN=SECONDS, e.g. latest=60');
  return [...previous, { pattern: m[1], ttlMs: Number(m[2]) * 1000 }];
}

function byteSize(value: string): number {
  const n = bytes.parse(value);
  if (n === null || !Number.isFinite(n) || n <= 0) {
    throw new InvalidArgumentError('expected a size such as 50GiB, 500MB or 1073741824');
  }
  return Math.floor(n);
}

interface RegistryRaw {
  host: string;
  url: string;
  username?: string;
  password?: string;
  passwordFile?: string;
  redirectHosts?: string[];
  realmHosts?: string[];
}

function registryArg(value: string, previous: RegistryRaw[] = []): RegistryRaw[] {
  const m = /^([a-z0-9.-]+(?::\d+)?)=(.+)$/.exec(value.trim());
  if (!m?.[1] || !m[2]) throw new InvalidArgumentError('expected HOST=URL, e.g. ghcr.io=https://ghcr.io');
  return [...previous, { host: m[1], url: m[2] }];
}

function byteSizeOrZero(value: string): number {
  return value.trim() === '0' ? 0 : byteSize(value);
}

function listenAddress(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new InvalidArgumentError('expected HOST:PORT, e.g. 0.0.0.0:5000');
  return { host: m[1] || m[2] || '0.0.0.0', port };
}

function upstreamUrl(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError('expected an http(s) URL, e.g. https://registry-1.docker.io');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidArgumentError('the upstream must be http:// or https://');
  }
  if (url.username || url.password) {
    throw new InvalidArgumentError('put credentials in --upstream-username/--upstream-password, not the URL');
  }
  return url;
}

/** Every flag has an environment variable (HUBCACHE_ + the flag name in capitals). */
function opt(flags: string, description: string, env: string): Option {
  return new Option(flags, description).env(`HUBCACHE_${env}`);
}

export function buildCommand(): Command {
  return (
    new Command('hubcache')
      .description('A pull-through caching mirror for Docker Hub (OCI distribution API).')
      .addOption(opt('--config <file>', 'YAML configuration file (flags and env override it)', 'CONFIG'))
      .addOption(new Option('--print-config', 'print the effective configuration (secrets masked) and exit'))
      .addOption(opt('--listen <host:port>', 'address to listen on', 'LISTEN').default(DEFAULTS.listen))
      .addOption(
        new Option(
          '--registry <host=url...>',
          'also mirror this registry (ghcr.io=https://ghcr.io), repeatable',
        ).argParser(registryArg),
      )
      .addOption(
        opt('--metrics-path <path>', 'where Prometheus metrics are served', 'METRICS_PATH').default(
          '/metrics',
        ),
      )
      .addOption(opt('--tls-cert <file>', 'serve HTTPS with this certificate (PEM)', 'TLS_CERT'))
      .addOption(opt('--tls-key <file>', 'the private key for --tls-cert (PEM)', 'TLS_KEY'))
      .addOption(
        opt('--htpasswd <file>', 'require client credentials from this htpasswd file (bcrypt)', 'HTPASSWD'),
      )
      .addOption(
        new Option(
          '--anonymous-pull',
          'with --htpasswd: pulls need no credentials, pushes do (env: HUBCACHE_ANONYMOUS_PULL=true)',
        ),
      )
      .addOption(
        new Option('--no-push', 'refuse pushes: a pull-through mirror only (env: HUBCACHE_PUSH=false)'),
      )
      .addOption(
        opt(
          '--anonymous-push <who>',
          'who may push without credentials (default: loopback, or never with --htpasswd)',
          'ANONYMOUS_PUSH',
        ).choices(ANONYMOUS_PUSH),
      )
      .addOption(
        opt(
          '--public-url <url>',
          'the URL clients reach the mirror at (names the token endpoint in auth challenges)',
          'PUBLIC_URL',
        ),
      )
      .addOption(
        new Option(
          '--hosted <glob...>',
          'only these repository names are hosted and take pushes, repeatable (env: HUBCACHE_HOSTED, comma-separated)',
        ),
      )
      .addOption(
        new Option(
          '--allow-delete',
          'allow DELETE of hosted manifests, tags and blobs (env: HUBCACHE_ALLOW_DELETE=true)',
        ),
      )
      .addOption(
        opt('--upload-expiry <seconds>', 'drop an upload session idle this long', 'UPLOAD_EXPIRY')
          .default(DEFAULTS.uploadExpiry)
          .argParser(positiveInt('--upload-expiry')),
      )
      .addOption(
        opt('--gc-grace <seconds>', 'garbage collection keeps blobs newer than this', 'GC_GRACE')
          .default(DEFAULTS.gcGrace)
          .argParser(positiveInt('--gc-grace')),
      )
      .addOption(
        opt(
          '--s3-bucket <name>',
          'share blobs and manifests with other replicas in this S3 bucket',
          'S3_BUCKET',
        ),
      )
      .addOption(opt('--s3-endpoint <url>', 'S3 endpoint other than AWS (Ceph RGW, MinIO)', 'S3_ENDPOINT'))
      .addOption(
        opt('--s3-region <region>', 'S3 region', 'S3_REGION').default(process.env.AWS_REGION ?? 'us-east-1'),
      )
      .addOption(
        new Option('--s3-path-style', 'path-style S3 URLs (RGW, MinIO) (env: HUBCACHE_S3_PATH_STYLE=true)'),
      )
      .addOption(opt('--s3-prefix <prefix>', 'key prefix in the bucket', 'S3_PREFIX').default(''))
      .addOption(
        opt('--redis <url>', 'Redis for replicas: one download per blob fleet-wide, one tag index', 'REDIS'),
      )
      .addOption(opt('--upstream <url>', 'registry to mirror', 'UPSTREAM').default(DEFAULTS.upstream))
      .addOption(opt('--data <dir>', 'cache directory', 'DATA').default(DEFAULTS.data))
      .addOption(
        new Option(
          '--upstream-redirect-host <glob...>',
          "hosts the upstream may redirect blob downloads to (default: Docker Hub's CDNs)",
        ),
      )
      .addOption(
        new Option(
          '--upstream-realm-host <glob...>',
          "token servers the upstream may send the mirror to, besides its own domain (e.g. a Keycloak's host)",
        ),
      )
      .addOption(
        opt('--upstream-username <name>', 'upstream account (raises Docker Hub limits)', 'UPSTREAM_USERNAME'),
      )
      .addOption(
        opt('--upstream-password <secret>', 'upstream password or access token', 'UPSTREAM_PASSWORD'),
      )
      .addOption(
        opt(
          '--upstream-password-file <file>',
          'read the upstream password from a file',
          'UPSTREAM_PASSWORD_FILE',
        ),
      )
      .addOption(
        opt('--tag-ttl <seconds>', 'trust a cached tag this long, then revalidate it with HEAD', 'TAG_TTL')
          .default(DEFAULTS.tagTtl)
          .argParser(positiveInt('--tag-ttl')),
      )
      .addOption(
        new Option(
          '--tag-ttl-rule <pattern=seconds>',
          'TTL for tags matching a glob, repeatable, first match wins (env: HUBCACHE_TAG_TTL_RULES, comma-separated)',
        ).argParser(ttlRule),
      )
      .addOption(
        opt(
          '--max-size <size>',
          'bound the cache (e.g. 50GiB): evict least recently used',
          'MAX_SIZE',
        ).argParser(byteSize),
      )
      .addOption(
        opt(
          '--min-free-space <size>',
          'below this much free disk, pass misses through uncached',
          'MIN_FREE_SPACE',
        )
          .default(byteSize(DEFAULTS.minFreeSpace), DEFAULTS.minFreeSpace)
          .argParser(byteSizeOrZero),
      )
      .addOption(
        new Option(
          '--offline',
          'serve only what is cached, never call the upstream (env: HUBCACHE_OFFLINE=true)',
        ),
      )
      .addOption(
        opt(
          '--upstream-concurrency <n>',
          'concurrent upstream blob downloads (and, separately, manifest requests) at most',
          'UPSTREAM_CONCURRENCY',
        )
          .default(DEFAULTS.concurrency)
          .argParser(positiveInt('--upstream-concurrency')),
      )
      .addOption(
        opt('--connect-timeout <seconds>', 'upstream connect timeout', 'CONNECT_TIMEOUT')
          .default(DEFAULTS.connectTimeout)
          .argParser(positiveInt('--connect-timeout')),
      )
      .addOption(
        opt('--headers-timeout <seconds>', 'upstream response headers timeout', 'HEADERS_TIMEOUT')
          .default(DEFAULTS.headersTimeout)
          .argParser(positiveInt('--headers-timeout')),
      )
      .addOption(
        opt('--idle-timeout <seconds>', 'upstream body idle timeout', 'IDLE_TIMEOUT')
          .default(DEFAULTS.idleTimeout)
          .argParser(positiveInt('--idle-timeout')),
      )
      .addOption(
        opt(
          '--client-header-timeout <seconds>',
          'clients must send request headers within this',
          'CLIENT_HEADER_TIMEOUT',
        )
          .default(DEFAULTS.clientHeaderTimeout)
          .argParser(positiveInt('--client-header-timeout')),
      )
      .addOption(
        opt('--memory-cache-mb <mib>', 'memory for manifests and small blobs', 'MEMORY_CACHE_MB')
          .default(DEFAULTS.memoryCacheMb)
          .argParser(positiveInt('--memory-cache-mb')),
      )
      // Not .env(): commander would read any value, even "false", as "set". See envBoolean in parseConfig.
      .addOption(
        new Option(
          '--no-expand-library',
          'do not expand NAME to library/NAME (env: HUBCACHE_EXPAND_LIBRARY=false)',
        ),
      )
      .addOption(
        opt('--log-level <level>', 'pino log level', 'LOG_LEVEL')
          .default(DEFAULTS.logLevel)
          .choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
      )
  );
}

/**
 * Values from the YAML file fill in every option that neither a flag nor an environment variable
 * set. Each goes through the same parser as its flag, so the same checks apply.
 */
function applyConfigFile(command: Command, raw: RawOptions): void {
  let values: Map<string, unknown>;
  try {
    values = readConfigFile(raw.config as string);
  } catch (err) {
    command.error(`error: config file ${(err as Error).message}`);
  }
  const parsers: Record<string, (v: string) => unknown> = {
    maxSize: byteSize,
    minFreeSpace: byteSizeOrZero,
  };
  for (const [key, value] of values) {
    const option = FILE_KEYS[key] as keyof RawOptions;
    const source = command.getOptionValueSource(option);
    if (source === 'cli' || source === 'env') continue;
    try {
      const parse = parsers[option];
      let v: unknown = typeof value === 'string' && parse ? parse(value) : value;
      if (option === 'registry') {
        v = Object.entries(value as Record<string, Omit<RegistryRaw, 'host'>>).map(([host, r]) => ({
          host,
          ...r,
        }));
      }
      if (option === 'tagTtlRule') {
        v = (value as { pattern: string; ttl: number }[]).map((r) => ({
          pattern: r.pattern,
          ttlMs: r.ttl * 1000,
        }));
      }
      (raw as unknown as Record<string, unknown>)[option] = v;
      command.setOptionValueWithSource(option, v, 'config');
    } catch (err) {
      command.error(`error: config file ${raw.config}: ${key}: ${(err as Error).message}`);
    }
  }
}

/** The effective configuration as YAML, secrets masked (--print-config). */
export function printableConfig(config: Config): string {
  const shown = {
    listen: `${config.listen.host}:${config.listen.port}`,
    data: config.dataDir,
    upstream: {
      url: config.upstream.url.href,
      username: config.upstream.username,
      password: config.upstream.password ? '*****' : undefined,
      expandLibrary: config.upstream.expandLibrary,
      concurrency: config.upstream.concurrency,
      connectTimeout: config.upstream.connectTimeoutMs / 1000,
      headersTimeout: config.upstream.headersTimeoutMs / 1000,
      idleTimeout: config.upstream.idleTimeoutMs / 1000,
      redirectHosts: config.upstream.redirectHosts,
      realmHosts: config.upstream.realmHosts,
    },
    tags: {
      ttl: config.tagTtlMs / 1000,
      rules: config.tagTtlRules.map((r) => ({ pattern: r.pattern, ttl: r.ttlMs / 1000 })),
    },
    cache: {
      maxSize: config.maxSizeBytes,
      minFreeSpace: config.minFreeBytes,
      memoryMb: config.memoryCacheBytes / 1024 / 1024,
    },
    offline: config.offline,
    hosted: {
      push: config.hosted.push,
      repositories: config.hosted.patterns,
      allowDelete: config.hosted.allowDelete,
      uploadExpiry: config.hosted.uploadExpiryMs / 1000,
      gcGrace: config.hosted.gcGraceMs / 1000,
      anonymousPush: config.hosted.anonymousPush,
    },
    anonymousPull: config.anonymousPull,
    ...(config.publicUrl ? { publicUrl: config.publicUrl.origin } : {}),
    ...(config.shared
      ? {
          storage: { s3: config.shared.s3 },
          redis: config.shared.redisUrl?.replace(/\/\/[^@/]*@/, '//*****@'),
        }
      : {}),
    clientHeaderTimeout: config.clientHeaderTimeoutMs / 1000,
    logLevel: config.logLevel,
    metricsPath: config.metricsPath,
  };
  return stringify(shown);
}

interface RawOptions {
  registry?: RegistryRaw[];
  upstreamRedirectHost?: string[];
  upstreamRealmHost?: string[];
  metricsPath: string;
  tlsCert?: string;
  tlsKey?: string;
  htpasswd?: string;
  config?: string;
  printConfig?: boolean;
  listen: string;
  upstream: string;
  data: string;
  upstreamUsername?: string;
  upstreamPassword?: string;
  upstreamPasswordFile?: string;
  tagTtl: number;
  upstreamConcurrency: number;
  connectTimeout: number;
  headersTimeout: number;
  idleTimeout: number;
  memoryCacheMb: number;
  clientHeaderTimeout: number;
  expandLibrary: boolean;
  logLevel: string;
  tagTtlRule?: TagTtlRule[];
  maxSize?: number;
  minFreeSpace: number;
  offline?: boolean;
  anonymousPull?: boolean;
  anonymousPush?: AnonymousPush;
  publicUrl?: string;
  push: boolean;
  hosted?: string[];
  allowDelete?: boolean;
  uploadExpiry: number;
  gcGrace: number;
  s3Bucket?: string;
  s3Endpoint?: string;
  s3Region: string;
  s3PathStyle?: boolean;
  s3Prefix: string;
  redis?: string;
}

/** Parses flags and environment into a Config; throws (via commander) with the flag named. */
export function parseConfig(
  argv: string[],
  command: Command = buildCommand(),
  env: NodeJS.ProcessEnv = process.env,
): Config {
  command.parse(argv, { from: 'user' });
  const raw = command.opts<RawOptions>();
  if (raw.config) applyConfigFile(command, raw);
  // Booleans and lists from the environment are parsed here, not by commander's .env(): it reads any
  // value of a boolean's variable, "false" included, as "set".
  const envBoolean = (
    option: 'expandLibrary' | 'offline' | 'anonymousPull' | 'push' | 'allowDelete' | 's3PathStyle',
    name: string,
  ) => {
    const value = env[name];
    if (command.getOptionValueSource(option) === 'cli' || value === undefined) return;
    const parsed = parseBoolean(value);
    if (parsed === undefined) command.error(`error: ${name} must be true or false`);
    raw[option] = parsed;
  };
  envBoolean('expandLibrary', 'HUBCACHE_EXPAND_LIBRARY');
  envBoolean('offline', 'HUBCACHE_OFFLINE');
  envBoolean('anonymousPull', 'HUBCACHE_ANONYMOUS_PULL');
  envBoolean('push', 'HUBCACHE_PUSH');
  envBoolean('allowDelete', 'HUBCACHE_ALLOW_DELETE');
  envBoolean('s3PathStyle', 'HUBCACHE_S3_PATH_STYLE');
  if (raw.redis && !raw.s3Bucket)
    command.error('error: --redis needs --s3-bucket (replicas share blobs through S3)');
  let hostedPatterns = raw.hosted ?? [];
  if (command.getOptionValueSource('hosted') !== 'cli' && env.HUBCACHE_HOSTED !== undefined) {
    hostedPatterns = env.HUBCACHE_HOSTED.split(',')
      .map((p) => p.trim())
      .filter(Boolean);
  }
  if (raw.anonymousPull && !raw.htpasswd) command.error('error: --anonymous-pull needs --htpasswd');
  let rules = raw.tagTtlRule ?? [];
  if (command.getOptionValueSource('tagTtlRule') !== 'cli' && env.HUBCACHE_TAG_TTL_RULES) {
    rules = [];
    try {
      for (const part of env.HUBCACHE_TAG_TTL_RULES.split(',').filter((p) => p.trim()))
        rules = ttlRule(part, rules);
    } catch (err) {
      command.error(`error: HUBCACHE_TAG_TTL_RULES: ${(err as Error).message}`);
    }
  }
  let password = raw.upstreamPassword;
  if (raw.upstreamPasswordFile && raw.upstreamPassword) {
    command.error('error: give --upstream-password or --upstream-password-file, not both');
  }
  if (raw.upstreamPasswordFile) {
    try {
      password = readFileSync(raw.upstreamPasswordFile, 'utf8').trim();
    } catch (err) {
      command.error(`--upstream-password-file: ${(err as Error).message}`);
    }
  }
  if (password && !raw.upstreamUsername) command.error('--upstream-password needs --upstream-username');
  if (Boolean(raw.tlsCert) !== Boolean(raw.tlsKey))
    command.error('error: --tls-cert and --tls-key go together');
  let listen: Config['listen'];
  let url: URL;
  let publicUrl: URL | undefined;
  try {
    listen = listenAddress(raw.listen);
    url = upstreamUrl(raw.upstream);
    publicUrl = raw.publicUrl === undefined ? undefined : mirrorUrl(raw.publicUrl);
  } catch (err) {
    command.error(`error: ${(err as Error).message}`);
  }
  return {
    listen,
    dataDir: path.resolve(raw.data),
    upstream: {
      url,
      ...(raw.upstreamUsername ? { username: raw.upstreamUsername } : {}),
      ...(password ? { password } : {}),
      expandLibrary: raw.expandLibrary,
      concurrency: Math.max(1, raw.upstreamConcurrency),
      connectTimeoutMs: raw.connectTimeout * 1000,
      headersTimeoutMs: raw.headersTimeout * 1000,
      idleTimeoutMs: raw.idleTimeout * 1000,
      redirectHosts: raw.upstreamRedirectHost ?? DOCKER_HUB_REDIRECT_HOSTS,
      realmHosts: raw.upstreamRealmHost ?? [],
    },
    tagTtlMs: raw.tagTtl * 1000,
    tagTtlRules: rules,
    offline: raw.offline ?? false,
    anonymousPull: raw.anonymousPull ?? false,
    publicUrl,
    hosted: {
      push: raw.push,
      patterns: hostedPatterns,
      allowDelete: raw.allowDelete ?? false,
      uploadExpiryMs: Math.max(1, raw.uploadExpiry) * 1000,
      gcGraceMs: raw.gcGrace * 1000,
      anonymousPush: raw.anonymousPush ?? (raw.htpasswd ? 'never' : 'loopback'),
    },
    shared: raw.s3Bucket
      ? {
          s3: {
            bucket: raw.s3Bucket,
            ...(raw.s3Endpoint ? { endpoint: raw.s3Endpoint } : {}),
            region: raw.s3Region,
            pathStyle: raw.s3PathStyle ?? false,
            prefix: raw.s3Prefix,
          },
          redisUrl: raw.redis,
        }
      : undefined,
    maxSizeBytes: raw.maxSize,
    minFreeBytes: raw.minFreeSpace,
    memoryCacheBytes: raw.memoryCacheMb * 1024 * 1024,
    clientHeaderTimeoutMs: Math.max(1, raw.clientHeaderTimeout) * 1000,
    logLevel: raw.logLevel,
    metricsPath: raw.metricsPath,
    registries: (raw.registry ?? []).map((r) => {
      let url: URL;
      try {
        url = upstreamUrl(r.url);
      } catch (err) {
        command.error(`error: registry ${r.host}: ${(err as Error).message}`);
      }
      const password = r.passwordFile ? readFileSync(r.passwordFile, 'utf8').trim() : r.password;
      return {
        host: r.host,
        upstream: {
          url,
          ...(r.username ? { username: r.username } : {}),
          ...(password ? { password } : {}),
          expandLibrary: false,
          concurrency: Math.max(1, raw.upstreamConcurrency),
          connectTimeoutMs: raw.connectTimeout * 1000,
          headersTimeoutMs: raw.headersTimeout * 1000,
          idleTimeoutMs: raw.idleTimeout * 1000,
          redirectHosts: r.redirectHosts ?? [],
          realmHosts: r.realmHosts ?? [],
        },
      };
    }),
    ...(raw.printConfig ? { printConfig: true as const } : {}),
    ...(raw.tlsCert && raw.tlsKey
      ? { tls: { cert: path.resolve(raw.tlsCert), key: path.resolve(raw.tlsKey) } }
      : {}),
    ...(raw.htpasswd ? { htpasswd: path.resolve(raw.htpasswd) } : {}),
  };
}

/** --public-url: where clients reach the mirror; only scheme, host and port count. */
function mirrorUrl(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError('--public-url: expected a URL such as https://mirror.example:5000');
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password) {
    throw new InvalidArgumentError('--public-url: an http(s) URL without credentials');
  }
  return new URL(url.origin);
}

function parseBoolean(value: string): boolean | undefined {
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  return undefined;
}

/** Config for embedding (tests, benchmarks): defaults with overrides. */
export function configWith(overrides: {
  upstream: string;
  dataDir: string;
  listen?: string;
  tagTtlSeconds?: number;
  extraArgs?: string[];
}): Config {
  const args = ['--upstream', overrides.upstream, '--data', overrides.dataDir, '--log-level', 'silent'];
  if (overrides.listen) args.push('--listen', overrides.listen);
  if (overrides.tagTtlSeconds !== undefined) args.push('--tag-ttl', String(overrides.tagTtlSeconds));
  return parseConfig([...args, ...(overrides.extraArgs ?? [])]);
}
