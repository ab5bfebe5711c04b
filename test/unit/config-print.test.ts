import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { MASK } from '../../src/config/kinds.js';
import { OPTION_LIST } from '../../src/config/options.js';
import { type Doc, setAt, valueAt } from '../../src/config/paths.js';
import { buildCommand, type Config, parseConfig, printableConfig } from '../../src/config.js';

const SECRET = 'hunter2';
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'hubcache-print-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function quietCommand() {
  return buildCommand()
    .exitOverride()
    .configureOutput({ writeErr: () => {}, writeOut: () => {} });
}

/** Loads a document as a --config file, with no HUBCACHE_* or AWS_REGION in the environment. */
function load(doc: Doc | string): Config {
  const file = path.join(dir, `hubcache-${Math.random().toString(36).slice(2)}.yml`);
  writeFileSync(file, typeof doc === 'string' ? doc : stringify(doc));
  return parseConfig(['--config', file], quietCommand(), {});
}

/** URLs compare by what they say (toEqual sees no own properties on a URL). */
const plain = (config: Config) => JSON.parse(JSON.stringify(config));

/**
 * Every key of the table at its example, which is never its default, so a key --print-config
 * forgets comes back as its default and the round trip fails. Adjusted to what one real file holds:
 */
function everyOption(): Doc {
  const doc: Doc = {};
  for (const [, spec] of OPTION_LIST) {
    if (!spec.cliOnly) setAt(doc, spec.path, structuredClone(spec.example));
  }
  const upstream = doc.upstream as Doc;
  // One password source at a time: upstream.password here (it is what Config keeps and
  // --print-config shows); passwordFile is read into it (config.test.ts tests that).
  delete upstream.passwordFile;
  upstream.password = SECRET;
  // The registries' password files must exist.
  const secretFile = path.join(dir, 'secret');
  writeFileSync(secretFile, `${SECRET}\n`);
  for (const registry of Object.values(doc.registries as Record<string, Doc>)) {
    if (registry.passwordFile) registry.passwordFile = secretFile;
  }
  // A password in the Redis URL, which --print-config must mask too.
  doc.redis = `redis://:${SECRET}@redis.example:6379`;
  return doc;
}

function withoutKey(doc: Doc, key: string): Doc {
  const copy = structuredClone(doc);
  const keys = key.split('.');
  const last = keys.pop() as string;
  delete (valueAt(copy, keys.join('.')) as Doc | undefined)?.[last];
  if (keys.length === 0) delete copy[last];
  return copy;
}

describe('--print-config', () => {
  it('prints every option, and the printed file loads back as the same config (passwords aside)', () => {
    const config = load(everyOption());
    const printed = printableConfig(config);
    // Redacted, because stdout ends up in terminals and CI logs: upstream.password, each
    // registry's password (here read from its passwordFile) and the password in the redis URL.
    expect(printed).not.toContain(SECRET);
    const doc = parse(printed) as Doc;
    expect(valueAt(doc, 'upstream.password')).toBe(MASK);
    expect(valueAt(doc, 'registries')).toMatchObject({ 'private.example': { password: MASK } });
    expect(doc.redis).toBe(`redis://:${MASK}@redis.example:6379`);
    expect(printed.split(MASK).length - 1).toBe(3 + 1); // and once in the header comment
    // With the secrets put back, the same Config.
    expect(plain(load(printed.replaceAll(MASK, SECRET)))).toEqual(plain(config));
  });

  it('round-trips a config that sets every option: none of the examples is a default', () => {
    // Each key matters: without it the config differs (or is refused, for keys others need).
    const doc = everyOption();
    const full = plain(load(doc));
    for (const [, spec] of OPTION_LIST) {
      if (spec.cliOnly || valueAt(doc, spec.path) === undefined) continue;
      let without: unknown;
      try {
        without = plain(load(withoutKey(doc, spec.path)));
      } catch {
        continue;
      }
      expect(without, spec.path).not.toEqual(full);
    }
  });

  it('refuses the printed file as it is, naming the masked key, so no mirror starts with "*****"', () => {
    const printed = printableConfig(load(everyOption()));
    expect(() => load(printed)).toThrow(/upstream\.password.*mask/);
  });

  it('keeps TLS, htpasswd, registries and redirect hosts (a saved config kept neither auth nor TLS)', () => {
    const yaml = [
      'listen: "[::1]:5001"',
      'tls: { cert: /etc/hubcache/cert.pem, key: /etc/hubcache/key.pem }',
      'htpasswd: /etc/hubcache/htpasswd',
      'anonymousPull: true',
      'upstream:',
      '  redirectHosts: [cdn.example.com]',
      'registries:',
      '  ghcr.io: { url: "https://ghcr.io/", realmHosts: [sso.example.com], redirectHosts: [b.example] }',
    ].join('\n');
    const config = load(yaml);
    expect(plain(load(printableConfig(config)))).toEqual(plain(config));
  });
});
