import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CommanderError } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OPTIONS } from '../../src/config/options.js';
import {
  buildCommand,
  type Config,
  configWith,
  DOCKER_HUB_REDIRECT_HOSTS,
  parseConfig,
  printableConfig,
} from '../../src/config.js';

/** A command that throws instead of exiting and prints nothing. */
function quietCommand() {
  return buildCommand()
    .exitOverride()
    .configureOutput({ writeErr: () => {}, writeOut: () => {} });
}

const parse = (...argv: string[]): Config => parseConfig(argv, quietCommand());

function parseError(...argv: string[]): CommanderError {
  try {
    parse(...argv);
  } catch (err) {
    if (err instanceof CommanderError) return err;
    throw err;
  }
  throw new Error(`expected ${JSON.stringify(argv)} to be rejected`);
}

// The tests own the HUBCACHE_* environment: save and clear it, then put it back.
let savedEnv: Record<string, string | undefined>;
beforeEach(() => {
  savedEnv = {};
  for (const key of Object.keys(process.env)) {
    if (key.startsWith('HUBCACHE_')) {
      savedEnv[key] = process.env[key];
      delete process.env[key];
    }
  }
});
afterEach(() => {
  for (const key of Object.keys(process.env)) {
    if (key.startsWith('HUBCACHE_')) delete process.env[key];
  }
  Object.assign(process.env, savedEnv);
});

let tempDir: string | undefined;
afterEach(() => {
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  tempDir = undefined;
});
function secretFile(content: string): string {
  tempDir = mkdtempSync(path.join(tmpdir(), 'hubcache-config-'));
  const file = path.join(tempDir, 'password');
  writeFileSync(file, content);
  return file;
}

describe('parseConfig defaults', () => {
  it('listens on 0.0.0.0:5000 and mirrors Docker Hub with no arguments', () => {
    const config = parse();
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 5000 });
    expect(config.upstream.url.href).toBe('https://registry-1.docker.io/');
  });

  it('keeps the cache in ./data, resolved to an absolute path', () => {
    const config = parse();
    expect(path.isAbsolute(config.dataDir)).toBe(true);
    expect(config.dataDir).toBe(path.join(process.cwd(), 'data'));
  });

  it('trusts a tag for 300 s and expands library/ names', () => {
    const config = parse();
    expect(config.tagTtlMs).toBe(300_000);
    expect(config.upstream.expandLibrary).toBe(true);
  });

  it('uses the documented defaults for limits, timeouts, memory and logging', () => {
    const config = parse();
    expect(config.upstream.concurrency).toBe(OPTIONS.upstreamConcurrency.default);
    expect(config.upstream.connectTimeoutMs).toBe(10_000);
    expect(config.upstream.headersTimeoutMs).toBe(30_000);
    expect(config.upstream.idleTimeoutMs).toBe(30_000);
    expect(config.memoryCacheBytes).toBe(128 * 1024 * 1024);
    expect(config.logLevel).toBe('info');
  });

  it('has no upstream credentials by default', () => {
    const { upstream } = parse();
    expect('username' in upstream).toBe(false);
    expect('password' in upstream).toBe(false);
  });

  it('takes pushes without credentials from the mirror host only; with --htpasswd, from nobody', () => {
    expect(parse().hosted.anonymousPush).toBe('loopback');
    expect(parse('--htpasswd', 'x').hosted.anonymousPush).toBe('never');
    expect(parse('--htpasswd', 'x', '--anonymous-push', 'loopback').hosted.anonymousPush).toBe('loopback');
    expect(() => parse('--anonymous-push', 'everyone')).toThrow();
    expect(parse().publicUrl).toBeUndefined();
  });
});

describe('parseConfig flags', () => {
  it('--listen HOST:PORT', () => {
    expect(parse('--listen', '127.0.0.1:8080').listen).toEqual({ host: '127.0.0.1', port: 8080 });
  });

  it('--listen with a bracketed IPv6 address', () => {
    expect(parse('--listen', '[::1]:5001').listen).toEqual({ host: '::1', port: 5001 });
  });

  it('--listen with a port only, or an empty host, binds every interface', () => {
    expect(parse('--listen', '6000').listen).toEqual({ host: '0.0.0.0', port: 6000 });
    expect(parse('--listen', ':6001').listen).toEqual({ host: '0.0.0.0', port: 6001 });
  });

  it('--listen=VALUE works like --listen VALUE', () => {
    expect(parse('--listen=localhost:7000').listen).toEqual({ host: 'localhost', port: 7000 });
  });

  it('--upstream', () => {
    expect(parse('--upstream', 'http://127.0.0.1:5002').upstream.url.href).toBe('http://127.0.0.1:5002/');
  });

  it('--data, resolved against the working directory', () => {
    expect(parse('--data', 'cache/dir').dataDir).toBe(path.resolve('cache/dir'));
    expect(parse('--data', '/var/lib/hubcache').dataDir).toBe('/var/lib/hubcache');
  });

  it('--tag-ttl in seconds, including 0 (always revalidate)', () => {
    expect(parse('--tag-ttl', '60').tagTtlMs).toBe(60_000);
    expect(parse('--tag-ttl', '0').tagTtlMs).toBe(0);
  });

  it('--upstream-concurrency, with 0 raised to 1', () => {
    expect(parse('--upstream-concurrency', '4').upstream.concurrency).toBe(4);
    expect(parse('--upstream-concurrency', '0').upstream.concurrency).toBe(1);
  });

  it('--connect-timeout, --headers-timeout and --idle-timeout in seconds', () => {
    const { upstream } = parse('--connect-timeout', '1', '--headers-timeout', '2', '--idle-timeout', '3');
    expect(upstream.connectTimeoutMs).toBe(1000);
    expect(upstream.headersTimeoutMs).toBe(2000);
    expect(upstream.idleTimeoutMs).toBe(3000);
  });

  it('--prefetch-layers: 4 by default, 0 turns prefetch off', () => {
    expect(parse().prefetchLayers).toBe(4);
    expect(parse('--prefetch-layers', '0').prefetchLayers).toBe(0);
  });

  it('--memory-cache-mb in MiB', () => {
    expect(parse('--memory-cache-mb', '16').memoryCacheBytes).toBe(16 * 1024 * 1024);
  });

  it('--no-expand-library', () => {
    expect(parse('--no-expand-library').upstream.expandLibrary).toBe(false);
  });

  it('--log-level', () => {
    expect(parse('--log-level', 'debug').logLevel).toBe('debug');
  });

  it('--upstream-username with --upstream-password', () => {
    const { upstream } = parse('--upstream-username', 'alice', '--upstream-password', 's3cret');
    expect(upstream.username).toBe('alice');
    expect(upstream.password).toBe('s3cret');
  });

  it('--upstream-username alone (anonymous-looking but named)', () => {
    const { upstream } = parse('--upstream-username', 'alice');
    expect(upstream.username).toBe('alice');
    expect('password' in upstream).toBe(false);
  });
});

describe('parseConfig password file', () => {
  it('reads the password from a file and trims the trailing newline', () => {
    const file = secretFile('dckr_pat_abc123\n');
    const { upstream } = parse('--upstream-username', 'alice', '--upstream-password-file', file);
    expect(upstream.password).toBe('dckr_pat_abc123');
  });

  it('refuses --upstream-password together with --upstream-password-file', () => {
    const file = secretFile('from-file');
    const err = parseError(
      '--upstream-username',
      'alice',
      '--upstream-password',
      'from-flag',
      '--upstream-password-file',
      file,
    );
    expect(err.message).toContain('not both');
  });

  it('reads HUBCACHE_EXPAND_LIBRARY as a boolean, so =false really turns expansion off and =true on', () => {
    process.env.HUBCACHE_EXPAND_LIBRARY = 'true';
    expect(parse().upstream.expandLibrary).toBe(true);
    process.env.HUBCACHE_EXPAND_LIBRARY = 'false';
    expect(parse().upstream.expandLibrary).toBe(false);
    process.env.HUBCACHE_EXPAND_LIBRARY = 'maybe';
    expect(parseError().message).toContain('HUBCACHE_EXPAND_LIBRARY');
    delete process.env.HUBCACHE_EXPAND_LIBRARY;
  });

  it('fails naming the flag when the file cannot be read', () => {
    const err = parseError(
      '--upstream-username',
      'alice',
      '--upstream-password-file',
      '/nonexistent/hubcache-pw',
    );
    expect(err.message).toContain('--upstream-password-file');
  });

  it('fails when a password comes without a username', () => {
    expect(parseError('--upstream-password', 's3cret').message).toContain('--upstream-username');
    const file = secretFile('s3cret');
    expect(parseError('--upstream-password-file', file).message).toContain('--upstream-username');
  });
});

describe('parseConfig environment', () => {
  it('reads every setting from HUBCACHE_* variables', () => {
    const dir = path.resolve('env-data');
    Object.assign(process.env, {
      HUBCACHE_LISTEN: '127.0.0.1:9000',
      HUBCACHE_TRUSTED_PROXIES: '10.0.0.0/8, 127.0.0.1',
      HUBCACHE_UPSTREAM: 'https://mirror.example.com',
      HUBCACHE_DATA: 'env-data',
      HUBCACHE_TAG_TTL: '42',
      HUBCACHE_UPSTREAM_CONCURRENCY: '3',
      HUBCACHE_CONNECT_TIMEOUT: '4',
      HUBCACHE_HEADERS_TIMEOUT: '5',
      HUBCACHE_IDLE_TIMEOUT: '6',
      HUBCACHE_MEMORY_CACHE_MB: '7',
      HUBCACHE_CACHE_PREFETCH_LAYERS: '2',
      HUBCACHE_LOG_LEVEL: 'warn',
      HUBCACHE_UPSTREAM_USERNAME: 'bob',
      HUBCACHE_UPSTREAM_PASSWORD: 'hunter2',
      HUBCACHE_EXPAND_LIBRARY: 'false',
      HUBCACHE_TAG_TTL_RULES: 'latest=60, v*=86400',
      HUBCACHE_MAX_SIZE: '2GiB',
      HUBCACHE_CACHE_EVICTION: 'lru',
      HUBCACHE_MIN_FREE_SPACE: '3MiB',
      HUBCACHE_OFFLINE: 'true',
      HUBCACHE_PUSH: 'false',
      HUBCACHE_HOSTED: 'team/*, tools',
      HUBCACHE_ALLOW_DELETE: 'yes',
      HUBCACHE_UPLOAD_EXPIRY: '600',
      HUBCACHE_GC_GRACE: '120',
      HUBCACHE_ANONYMOUS_PUSH: 'anywhere',
      HUBCACHE_UPSTREAM_PARALLEL: '3',
      HUBCACHE_PUBLIC_URL: 'https://mirror.example:5000/ignored/path',
    });
    const config = parse();
    expect(config).toEqual({
      listen: { host: '127.0.0.1', port: 9000 },
      dataDir: dir,
      upstream: {
        url: new URL('https://mirror.example.com'),
        username: 'bob',
        password: 'hunter2',
        expandLibrary: false,
        concurrency: 3,
        connectTimeoutMs: 4000,
        headersTimeoutMs: 5000,
        idleTimeoutMs: 6000,
        redirectHosts: DOCKER_HUB_REDIRECT_HOSTS,
        realmHosts: [],
      },
      tagTtlMs: 42_000,
      tagTtlRules: [
        { pattern: 'latest', ttlMs: 60_000 },
        { pattern: 'v*', ttlMs: 86_400_000 },
      ],
      offline: true,
      anonymousPull: false,
      publicUrl: new URL('https://mirror.example:5000'),
      hosted: {
        push: false,
        patterns: ['team/*', 'tools'],
        allowDelete: true,
        uploadExpiryMs: 600_000,
        gcGraceMs: 120_000,
        anonymousPush: 'anywhere',
      },
      maxSizeBytes: 2 * 1024 ** 3,
      eviction: 'lru',
      minFreeBytes: 3 * 1024 ** 2,
      memoryCacheBytes: 7 * 1024 * 1024,
      prefetchLayers: 2,
      upstreamParallel: 3,
      trustedProxies: ['10.0.0.0/8', '127.0.0.1'],
      clientHeaderTimeoutMs: 30_000,
      clientIdleTimeoutMs: 120_000,
      logLevel: 'warn',
      metricsPath: '/metrics',
      registries: [],
    });
  });

  it('reads the password file from HUBCACHE_UPSTREAM_PASSWORD_FILE', () => {
    process.env.HUBCACHE_UPSTREAM_USERNAME = 'bob';
    process.env.HUBCACHE_UPSTREAM_PASSWORD_FILE = secretFile('  from-env-file \n');
    expect(parse().upstream.password).toBe('from-env-file');
  });

  it('lets a flag override its environment variable', () => {
    process.env.HUBCACHE_LISTEN = '127.0.0.1:9000';
    process.env.HUBCACHE_TAG_TTL = '42';
    const config = parse('--listen', '127.0.0.1:9001', '--tag-ttl', '43');
    expect(config.listen.port).toBe(9001);
    expect(config.tagTtlMs).toBe(43_000);
  });

  it('validates environment values like flags', () => {
    process.env.HUBCACHE_TAG_TTL = 'soon';
    expect(parseError().message).toContain('--tag-ttl');
  });

  it('rejects a bad HUBCACHE_LISTEN', () => {
    process.env.HUBCACHE_LISTEN = 'not-an-address';
    expect(parseError().message).toContain('HOST:PORT');
  });
});

describe('parseConfig rejects bad values', () => {
  it.each([
    ['a host without a port', 'localhost'],
    ['a port above 65535', '0.0.0.0:65536'],
    ['a missing port', '0.0.0.0:'],
    ['a non-numeric port', '0.0.0.0:http'],
    ['an unbracketed IPv6 address', '::1:5000'],
    ['an empty value', ''],
  ])('--listen with %s', (_what, value) => {
    expect(parseError('--listen', value).message).toContain('HOST:PORT');
  });

  it.each([
    ['no URL at all', 'registry-1.docker.io'],
    ['another scheme', 'ftp://registry.example.com'],
  ])('--upstream with %s', (_what, value) => {
    expect(parseError('--upstream', value).message).toMatch(/http/);
  });

  it('--upstream with credentials in the URL, which would end up in logs', () => {
    expect(parseError('--upstream', 'https://alice:pw@registry.example.com').message).toContain(
      '--upstream-username',
    );
  });

  it.each([
    ['--tag-ttl', '-1'],
    ['--tag-ttl', '1.5'],
    ['--tag-ttl', 'ten'],
    ['--upstream-concurrency', 'many'],
    ['--connect-timeout', '-5'],
    ['--memory-cache-mb', '0x10z'],
  ])('%s=%s, which is no whole number ≥ 0', (flag, value) => {
    expect(parseError(`${flag}=${value}`).message).toContain(flag);
  });

  it('an unknown --log-level', () => {
    expect(parseError('--log-level', 'loud').code).toBe('commander.invalidArgument');
  });

  it('an unknown flag', () => {
    expect(parseError('--upstreams', 'x').code).toBe('commander.unknownOption');
  });
});

describe('configWith', () => {
  it('builds a config for embedding from the given upstream, data dir and TTL', () => {
    const config = configWith({
      upstream: 'http://127.0.0.1:5999',
      dataDir: '/tmp/hubcache-x',
      listen: '127.0.0.1:0',
      tagTtlSeconds: 0,
      extraArgs: ['--no-expand-library'],
    });
    expect(config.upstream.url.href).toBe('http://127.0.0.1:5999/');
    expect(config.dataDir).toBe('/tmp/hubcache-x');
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 0 });
    expect(config.tagTtlMs).toBe(0);
    expect(config.logLevel).toBe('silent');
    expect(config.upstream.expandLibrary).toBe(false);
  });
});

describe('the YAML configuration file', () => {
  function configFile(yaml: string): string {
    tempDir = mkdtempSync(path.join(tmpdir(), 'hubcache-config-'));
    const file = path.join(tempDir, 'hubcache.yml');
    writeFileSync(file, yaml);
    return file;
  }

  const YAML = [
    'listen: 127.0.0.1:5055',
    'upstream:',
    '  url: https://mirror.example.com',
    '  username: bob',
    '  password: hunter2',
    '  expandLibrary: false',
    'tags:',
    '  ttl: 60',
    '  rules:',
    '    - { pattern: latest, ttl: 10 }',
    'cache:',
    '  maxSize: 10GiB',
    'offline: true',
  ].join('\n');

  it('sets every key it names, leaving the rest at their defaults', () => {
    const config = parse('--config', configFile(YAML));
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 5055 });
    expect(config.upstream.url.href).toBe('https://mirror.example.com/');
    expect(config.upstream.username).toBe('bob');
    expect(config.upstream.password).toBe('hunter2');
    expect(config.upstream.expandLibrary).toBe(false);
    expect(config.tagTtlMs).toBe(60_000);
    expect(config.tagTtlRules).toEqual([{ pattern: 'latest', ttlMs: 10_000 }]);
    expect(config.maxSizeBytes).toBe(10 * 1024 ** 3);
    expect(config.offline).toBe(true);
    expect(config.upstream.concurrency).toBe(OPTIONS.upstreamConcurrency.default);
  });

  it('is overridden by environment variables, and those by flags', () => {
    const file = configFile(YAML);
    process.env.HUBCACHE_TAG_TTL = '99';
    process.env.HUBCACHE_OFFLINE = 'false';
    process.env.HUBCACHE_LISTEN = '127.0.0.1:6000';
    const config = parse('--config', file, '--listen', '127.0.0.1:7000');
    expect(config.tagTtlMs).toBe(99_000);
    expect(config.offline).toBe(false);
    expect(config.listen.port).toBe(7000);
  });

  it('refuses an unknown key, a wrong type or a bad value, naming the key', () => {
    expect(parseError('--config', configFile('upstream:\n  urll: x\n')).message).toContain('upstream.urll');
    expect(parseError('--config', configFile('tags:\n  ttl: soon\n')).message).toContain('tags.ttl');
    expect(parseError('--config', configFile('cache:\n  maxSize: lots\n')).message).toContain(
      'cache.maxSize',
    );
    expect(parseError('--config', '/nonexistent/hubcache.yml').message).toContain(
      '/nonexistent/hubcache.yml',
    );
  });

  it('--print-config shows the effective configuration with the password masked', () => {
    const config = parse('--config', configFile(YAML), '--print-config');
    expect(config.printConfig).toBe(true);
    const printed = printableConfig(config);
    expect(printed).toContain('username: bob');
    expect(printed).not.toContain('hunter2');
    expect(printed).toContain('password: "*****"');
  });
});

describe('shared storage for replicas', () => {
  it('reads the S3 and Redis settings', () => {
    const config = parse(
      '--s3-bucket',
      'cache',
      '--s3-endpoint',
      'http://127.0.0.1:7480',
      '--s3-path-style',
      '--s3-region',
      'eu-west-1',
      '--s3-prefix',
      'mirror/',
      '--redis',
      'redis://127.0.0.1:6379',
    );
    expect(config.shared).toEqual({
      s3: {
        bucket: 'cache',
        endpoint: 'http://127.0.0.1:7480',
        region: 'eu-west-1',
        pathStyle: true,
        prefix: 'mirror/',
      },
      redisUrl: 'redis://127.0.0.1:6379',
      degradedStart: false,
      maxSizeBytes: undefined,
      gcIntervalMs: 21_600_000,
    });
    expect(parse().shared).toBeUndefined();
    expect(parse('--s3-bucket', 'b', '--shared-degraded').shared?.degradedStart).toBe(true);
    expect(parseError('--shared-degraded').message).toMatch(/--shared-degraded needs --s3-bucket/);
    const bucketAndRedis = ['--s3-bucket', 'b', '--redis', 'redis://r'];
    expect(
      parse(...bucketAndRedis, '--shared-max-size', '1TiB', '--shared-gc-interval', '0').shared,
    ).toMatchObject({
      maxSizeBytes: 1024 ** 4,
      gcIntervalMs: 0,
    });
    expect(parseError('--s3-bucket', 'b', '--shared-max-size', '1TiB').message).toMatch(
      /--shared-max-size needs --s3-bucket and --redis/,
    );
    const fleet = ['--s3-bucket', 'b', '--redis', 'redis://r', '--fleet-secret-file', '/s'];
    expect(parse(...fleet, '--peer-listen', '10.0.0.5:5001').shared?.peer).toEqual({
      listen: { host: '10.0.0.5', port: 5001 },
      advertise: 'http://10.0.0.5:5001',
    });
    expect(
      parse(...fleet, '--peer-listen', '0.0.0.0:5001', '--peer-advertise', 'http://pod:5001/').shared?.peer,
    ).toEqual({ listen: { host: '0.0.0.0', port: 5001 }, advertise: 'http://pod:5001' });
    expect(parseError(...fleet, '--peer-listen', '0.0.0.0:5001').message).toMatch(/needs --peer-advertise/);
    expect(parseError('--s3-bucket', 'b', '--peer-listen', '10.0.0.5:5001').message).toMatch(
      /--peer-listen needs --redis and --fleet-secret-file/,
    );
  });

  it('refuses the other keys of a section without its required ones (tls, storage.s3), from any source', () => {
    expect(parseError('--tls-key', 'key.pem').message).toContain(
      '--tls-key (tls.key) needs --tls-cert (tls.cert)',
    );
    process.env.HUBCACHE_S3_REGION = 'eu-west-1';
    expect(parseError().message).toContain('needs --s3-bucket (storage.s3.bucket)');
  });

  it('refuses Redis without a bucket, and reads HUBCACHE_S3_PATH_STYLE', () => {
    expect(parseError('--redis', 'redis://x').message).toMatch(/--redis needs --s3-bucket/);
    process.env.HUBCACHE_S3_BUCKET = 'b';
    process.env.HUBCACHE_S3_PATH_STYLE = 'true';
    expect(parse().shared?.s3).toMatchObject({ bucket: 'b', pathStyle: true });
  });
});
