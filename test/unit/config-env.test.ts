import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { envName, envNames, OPTION_LIST, type OptionSpec } from '../../src/config/options.js';
import { type Doc, setAt, valueAt } from '../../src/config/paths.js';
import { buildCommand, type Config, parseConfig } from '../../src/config.js';

let dir: string;
let errors: string[];
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'hubcache-env-'));
  errors = [];
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function quietCommand() {
  return buildCommand()
    .exitOverride()
    .configureOutput({ writeErr: (s) => errors.push(s), writeOut: () => {} });
}
const plain = (config: Config) => JSON.parse(JSON.stringify(config));

function run(argv: string[], env: NodeJS.ProcessEnv, doc?: Doc): Config {
  if (!doc) return parseConfig(argv, quietCommand(), env);
  const file = path.join(dir, `hubcache-${Math.random().toString(36).slice(2)}.yml`);
  writeFileSync(file, stringify(doc));
  return parseConfig(['--config', file, ...argv], quietCommand(), env);
}

/** Every file key at its example; registries by URL only, which is what a flag or variable can say. */
function everyOption(): Doc {
  const doc: Doc = {};
  for (const [, spec] of OPTION_LIST) {
    if (!spec.cliOnly) setAt(doc, spec.path, structuredClone(spec.example));
  }
  delete (doc.upstream as Doc).passwordFile; // one password source at a time
  doc.registries = Object.fromEntries(
    Object.entries(doc.registries as Record<string, Doc>).map(([host, r]) => [host, { url: r.url }]),
  );
  return doc;
}

/** The items of a value as a flag or an environment variable writes them. */
function items(value: unknown): string[] {
  if (Array.isArray(value)) {
    return value.map((v) => (typeof v === 'object' ? `${v.pattern}=${v.ttl}` : String(v)));
  }
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value).map(([host, r]) => `${host}=${(r as Doc).url}`);
  }
  return [String(value)];
}

function flagArgs(spec: OptionSpec<unknown>, value: unknown): string[] {
  const flag = spec.flag.split(' ')[0] as string;
  if (spec.kind.isSwitch) return value === spec.default ? [] : [flag];
  return items(value).flatMap((item) => [flag, item]);
}

function withoutKey(doc: Doc, key: string): Doc {
  const copy = structuredClone(doc);
  const keys = key.split('.');
  const last = keys.pop() as string;
  const parent = keys.length ? (valueAt(copy, keys.join('.')) as Doc) : copy;
  delete parent[last];
  return copy;
}

describe('every option from the environment and from a flag', () => {
  it('sets what its file key sets, for every key of the table', () => {
    const doc = everyOption();
    const expected = plain(run([], {}, doc));
    let checked = 0;
    for (const [, spec] of OPTION_LIST) {
      const value = valueAt(doc, spec.path);
      if (spec.cliOnly || value === undefined) continue;
      const rest = withoutKey(doc, spec.path);
      for (const name of envNames(spec)) {
        expect(plain(run([], { [name]: items(value).join(',') }, rest)), name).toEqual(expected);
      }
      expect(plain(run(flagArgs(spec, value), {}, rest)), spec.flag).toEqual(expected);
      checked++;
    }
    // All but --config, --print-config and --upstream-password-file (read into upstream.password).
    expect(checked).toBe(OPTION_LIST.length - 3);
  });

  it('reads HUBCACHE_CONFIG and HUBCACHE_PRINT_CONFIG, the flags that are no file keys', () => {
    const file = path.join(dir, 'hubcache.yml');
    writeFileSync(file, 'listen: 127.0.0.1:5002\n');
    const config = run([], { HUBCACHE_CONFIG: file, HUBCACHE_PRINT_CONFIG: 'true' });
    expect(config.listen.port).toBe(5002);
    expect(config.printConfig).toBe(true);
  });

  it('names each variable HUBCACHE_ and the file key in upper snake case', () => {
    expect(envName('upstream.connectTimeout')).toBe('HUBCACHE_UPSTREAM_CONNECT_TIMEOUT');
    expect(envName('storage.s3.pathStyle')).toBe('HUBCACHE_STORAGE_S3_PATH_STYLE');
    expect(envName('clientHeaderTimeout')).toBe('HUBCACHE_CLIENT_HEADER_TIMEOUT');
  });

  it('still reads every variable name that worked before the names were derived', () => {
    // The names of the release before the table (src/config.ts at 22c22af).
    const before = [
      'CONFIG LISTEN METRICS_PATH TLS_CERT TLS_KEY HTPASSWD ANONYMOUS_PULL PUSH ANONYMOUS_PUSH',
      'PUBLIC_URL HOSTED ALLOW_DELETE UPLOAD_EXPIRY GC_GRACE S3_BUCKET S3_ENDPOINT S3_REGION',
      'S3_PATH_STYLE S3_PREFIX REDIS UPSTREAM DATA UPSTREAM_USERNAME UPSTREAM_PASSWORD',
      'UPSTREAM_PASSWORD_FILE TAG_TTL TAG_TTL_RULES MAX_SIZE MIN_FREE_SPACE OFFLINE',
      'UPSTREAM_CONCURRENCY CONNECT_TIMEOUT HEADERS_TIMEOUT IDLE_TIMEOUT CLIENT_HEADER_TIMEOUT',
      'MEMORY_CACHE_MB EXPAND_LIBRARY LOG_LEVEL',
    ]
      .join(' ')
      .split(' ')
      .map((n) => `HUBCACHE_${n}`);
    const read = new Set(OPTION_LIST.flatMap(([, spec]) => envNames(spec)));
    expect(before.filter((name) => !read.has(name))).toEqual([]);
  });

  it('takes the derived name over an older alias when both are set', () => {
    const config = run([], { HUBCACHE_TAGS_TTL: '7', HUBCACHE_TAG_TTL: '8' });
    expect(config.tagTtlMs).toBe(7000);
  });

  it('refuses a bad value naming the variable and its flag', () => {
    expect(() => run([], { HUBCACHE_UPSTREAM_CONCURRENCY: 'many' })).toThrow(
      /HUBCACHE_UPSTREAM_CONCURRENCY \(--upstream-concurrency\)/,
    );
    expect(() => run([], { HUBCACHE_REGISTRIES: 'ghcr.io' })).toThrow(/HOST=URL/);
  });

  it('reports a HUBCACHE_ variable that names no option, and starts anyway', () => {
    // HUBCACHE_TEST_* are the test suites' own, not a mistyped option.
    const config = run([], {
      HUBCACHE_TAG_TL: '5',
      HUBCACHE_LISTEN: '127.0.0.1:5001',
      HUBCACHE_TEST_DEBIAN13_ROOT: '/x',
    });
    expect(config.listen.port).toBe(5001);
    expect(errors).toEqual(["hubcache: HUBCACHE_TAG_TL is not an option's variable (ignored)\n"]);
  });
});

// These set process.env, as a shell does (the release before the table ignored some of them).
describe('variables of list-valued and nested options', () => {
  let saved: NodeJS.ProcessEnv;
  beforeEach(() => {
    saved = { ...process.env };
    for (const key of Object.keys(process.env)) if (key.startsWith('HUBCACHE_')) delete process.env[key];
  });
  afterEach(() => {
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
  });
  const parse = () => parseConfig([], quietCommand());

  it('HUBCACHE_REGISTRY, the variable of --registry, adds the registries it lists', () => {
    process.env.HUBCACHE_REGISTRY = 'ghcr.io=https://ghcr.io,quay.io=https://quay.io';
    const config = parse();
    expect(config.registries.map((r) => [r.host, r.upstream.url.href])).toEqual([
      ['ghcr.io', 'https://ghcr.io/'],
      ['quay.io', 'https://quay.io/'],
    ]);
  });

  it('HUBCACHE_UPSTREAM_REDIRECT_HOSTS and HUBCACHE_UPSTREAM_REALM_HOSTS, comma-separated', () => {
    process.env.HUBCACHE_UPSTREAM_REDIRECT_HOSTS = 'cdn.example.com, *.blobs.example';
    process.env.HUBCACHE_UPSTREAM_REALM_HOSTS = 'sso.example.com';
    const { upstream } = parse();
    expect(upstream.redirectHosts).toEqual(['cdn.example.com', '*.blobs.example']);
    expect(upstream.realmHosts).toEqual(['sso.example.com']);
  });

  it('HUBCACHE_STORAGE_S3_BUCKET and HUBCACHE_UPSTREAM_CONNECT_TIMEOUT, nested keys', () => {
    process.env.HUBCACHE_STORAGE_S3_BUCKET = 'hubcache';
    process.env.HUBCACHE_UPSTREAM_CONNECT_TIMEOUT = '3';
    const config = parse();
    expect(config.shared?.s3.bucket).toBe('hubcache');
    expect(config.upstream.connectTimeoutMs).toBe(3000);
  });
});
