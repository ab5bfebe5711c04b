import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { buildCommand, commandLineValues } from './cli.js';
import { environmentValues, unknownEnvironmentNames } from './environment.js';
import { readConfigFile } from './file.js';
import { listenAddress, type RegistryValue, toBytes } from './kinds.js';
import {
  flagName,
  OPTION_LIST,
  OPTIONS,
  type OptionId,
  type OptionSpec,
  type OptionValue,
} from './options.js';
import type { Config, UpstreamConfig } from './types.js';

/**
 * Flags, the HUBCACHE_* environment, the YAML file and the defaults, in that order of precedence,
 * into a Config; throws (via commander) naming the flag, variable or key at fault.
 */
export function parseConfig(
  argv: string[],
  command: Command = buildCommand(),
  env: NodeJS.ProcessEnv = process.env,
): Config {
  command.parse(argv, { from: 'user' });
  const fail = (message: string): never => command.error(message);
  const cli = commandLineValues(command);
  const environment = environmentValues(env, fail);
  const file = (cli.get('config') ?? environment.get('config')) as string | undefined;
  let fromFile = new Map<OptionId, unknown>();
  if (file) {
    try {
      fromFile = readConfigFile(file);
    } catch (err) {
      fail(`error: config file ${(err as Error).message}`);
    }
  }
  for (const name of unknownEnvironmentNames(env)) {
    command.configureOutput().writeErr?.(`hubcache: ${name} is not an option's variable (ignored)\n`);
  }
  const given = (id: OptionId) => cli.get(id) ?? environment.get(id) ?? fromFile.get(id);
  const get = <K extends OptionId>(id: K): OptionValue<K> | undefined => {
    const spec = OPTIONS[id] as OptionSpec<unknown>;
    const fallback = spec.fallbackEnv === undefined ? undefined : env[spec.fallbackEnv];
    return (given(id) ?? fallback ?? spec.default) as OptionValue<K> | undefined;
  };
  checkSections(given, fail);
  return toConfig(get, fail);
}

/** A section that exists only with its required keys (tls, storage.s3): its other keys need them. */
function checkSections(given: (id: OptionId) => unknown, fail: (message: string) => never): void {
  const section = (p: string) => p.slice(0, p.lastIndexOf('.'));
  for (const [id, spec] of OPTION_LIST) {
    if (!spec.path.includes('.') || given(id) === undefined) continue;
    for (const [requiredId, required] of OPTION_LIST) {
      if (required.required && section(required.path) === section(spec.path) && !given(requiredId)) {
        fail(`error: ${flagName(spec)} (${spec.path}) needs ${flagName(required)} (${required.path})`);
      }
    }
  }
}

type Get = <K extends OptionId>(id: K) => OptionValue<K> | undefined;

/** The option's value, which has a default. */
function value<K extends OptionId>(get: Get, id: K): OptionValue<K> {
  const v = get(id);
  if (v === undefined) throw new Error(`option ${id} has no default`);
  return v;
}

/** A password given directly or in a file, never both, and only with a user name. */
function password(
  where: { username: string; password: string; passwordFile: string },
  username: string | undefined,
  direct: string | undefined,
  file: string | undefined,
  fail: (message: string) => never,
): string | undefined {
  if (direct && file) fail(`error: give ${where.password} or ${where.passwordFile}, not both`);
  let secret = direct;
  if (file) {
    try {
      secret = readFileSync(file, 'utf8').trim();
    } catch (err) {
      fail(`error: ${where.passwordFile}: ${(err as Error).message}`);
    }
  }
  if (secret && !username) fail(`error: ${where.password} needs ${where.username}`);
  return secret || undefined;
}

function toConfig(get: Get, fail: (message: string) => never): Config {
  const htpasswd = get('htpasswd');
  if (get('anonymousPull') && !htpasswd) fail('error: --anonymous-pull needs --htpasswd');
  const bucket = get('s3Bucket');
  const redisUrl = get('redis');
  if (redisUrl && !bucket) fail('error: --redis needs --s3-bucket (replicas share blobs through S3)');
  if (get('fleetSecretFile') && !bucket)
    fail('error: --fleet-secret-file needs --s3-bucket (it is what replicas share)');
  const peerListen = get('peerListen');
  if (peerListen && !(redisUrl && get('fleetSecretFile')))
    fail(
      'error: --peer-listen needs --redis and --fleet-secret-file (replicas find each other in Redis, and sign what they send)',
    );
  if (get('peerAdvertise') && !peerListen) fail('error: --peer-advertise needs --peer-listen');
  const peer = peerListen ? peerConfig(peerListen, get('peerAdvertise'), fail) : undefined;
  if (get('sharedDegraded') && !bucket)
    fail('error: --shared-degraded needs --s3-bucket (it says how replicas start)');
  if (get('sharedMaxSize') !== undefined && !(bucket && redisUrl))
    fail(
      'error: --shared-max-size needs --s3-bucket and --redis (one replica at a time collects the bucket)',
    );
  const username = get('upstreamUsername');
  const upstreamPassword = password(
    {
      username: '--upstream-username',
      password: '--upstream-password',
      passwordFile: '--upstream-password-file',
    },
    username,
    get('upstreamPassword'),
    get('upstreamPasswordFile'),
    fail,
  );
  // Registries share the default upstream's limits and timeouts; each has its own hosts and credentials.
  const limits = {
    concurrency: Math.max(1, value(get, 'upstreamConcurrency')),
    connectTimeoutMs: value(get, 'connectTimeout') * 1000,
    headersTimeoutMs: value(get, 'headersTimeout') * 1000,
    idleTimeoutMs: value(get, 'idleTimeout') * 1000,
  };
  const registry = ([host, r]: [string, RegistryValue]): Config['registries'][number] => {
    const key = `registries.${host}`;
    const secret = password(
      { username: `${key}.username`, password: `${key}.password`, passwordFile: `${key}.passwordFile` },
      r.username,
      r.password,
      r.passwordFile,
      fail,
    );
    const upstream: UpstreamConfig = {
      url: new URL(r.url),
      ...(r.username ? { username: r.username } : {}),
      ...(secret ? { password: secret } : {}),
      expandLibrary: false,
      ...limits,
      redirectHosts: r.redirectHosts ?? [],
      realmHosts: r.realmHosts ?? [],
    };
    return { host, upstream };
  };
  const tlsCert = get('tlsCert');
  const tlsKey = get('tlsKey');
  const publicUrl = get('publicUrl');
  const maxSize = get('maxSize');
  return {
    listen: listenAddress(value(get, 'listen')) as Config['listen'],
    dataDir: path.resolve(value(get, 'data')),
    upstream: {
      url: new URL(value(get, 'upstreamUrl')),
      ...(username ? { username } : {}),
      ...(upstreamPassword ? { password: upstreamPassword } : {}),
      expandLibrary: value(get, 'expandLibrary'),
      ...limits,
      redirectHosts: value(get, 'redirectHosts'),
      realmHosts: value(get, 'realmHosts'),
    },
    tagTtlMs: value(get, 'tagTtl') * 1000,
    tagTtlRules: value(get, 'tagTtlRules').map((r) => ({ pattern: r.pattern, ttlMs: r.ttl * 1000 })),
    offline: value(get, 'offline'),
    anonymousPull: value(get, 'anonymousPull'),
    // Only scheme, host and port count: the realm is built from it.
    publicUrl: publicUrl === undefined ? undefined : new URL(new URL(publicUrl).origin),
    hosted: {
      push: value(get, 'push'),
      patterns: value(get, 'hosted'),
      allowDelete: value(get, 'allowDelete'),
      uploadExpiryMs: Math.max(1, value(get, 'uploadExpiry')) * 1000,
      gcGraceMs: value(get, 'gcGrace') * 1000,
      anonymousPush: get('anonymousPush') ?? (htpasswd ? 'never' : 'loopback'),
    },
    shared: bucket
      ? {
          s3: {
            bucket,
            ...(get('s3Endpoint') ? { endpoint: get('s3Endpoint') as string } : {}),
            region: value(get, 's3Region'),
            pathStyle: value(get, 's3PathStyle'),
            prefix: value(get, 's3Prefix'),
          },
          redisUrl,
          degradedStart: value(get, 'sharedDegraded'),
          maxSizeBytes:
            get('sharedMaxSize') === undefined ? undefined : toBytes(get('sharedMaxSize') as string),
          gcIntervalMs: value(get, 'sharedGcInterval') * 1000,
          ...(peer ? { peer } : {}),
          ...(get('fleetSecretFile')
            ? { fleetSecretFile: path.resolve(get('fleetSecretFile') as string) }
            : {}),
        }
      : undefined,
    maxSizeBytes: maxSize === undefined ? undefined : toBytes(maxSize),
    eviction: value(get, 'eviction'),
    minFreeBytes: toBytes(value(get, 'minFreeSpace')),
    memoryCacheBytes: value(get, 'memoryCacheMb') * 1024 * 1024,
    prefetchLayers: value(get, 'prefetchLayers'),
    upstreamParallel: Math.max(1, value(get, 'upstreamParallel')),
    trustedProxies: value(get, 'trustedProxy'),
    clientHeaderTimeoutMs: Math.max(1, value(get, 'clientHeaderTimeout')) * 1000,
    clientIdleTimeoutMs: Math.max(1, value(get, 'clientIdleTimeout')) * 1000,
    logLevel: value(get, 'logLevel'),
    metricsPath: value(get, 'metricsPath'),
    registries: Object.entries(value(get, 'registries')).map(registry),
    ...(get('printConfig') ? { printConfig: true as const } : {}),
    ...(tlsCert && tlsKey ? { tls: { cert: path.resolve(tlsCert), key: path.resolve(tlsKey) } } : {}),
    ...(htpasswd ? { htpasswd: path.resolve(htpasswd) } : {}),
  };
}

/** --peer-listen and the URL other replicas use for it: said, or made from the address when it names one host. */
function peerConfig(
  listenText: string,
  advertise: string | undefined,
  fail: (message: string) => never,
): { listen: { host: string; port: number }; advertise: string } {
  const address = listenAddress(listenText) as { host: string; port: number };
  if (advertise) return { listen: address, advertise: new URL(advertise).origin };
  if (address.host === '0.0.0.0' || address.host === '::' || address.port === 0)
    fail(
      'error: --peer-listen on every interface (or port 0) needs --peer-advertise: the URL other replicas reach it at',
    );
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return { listen: address, advertise: `http://${host}:${address.port}` };
}
