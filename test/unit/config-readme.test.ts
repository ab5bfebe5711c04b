import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { fileValues } from '../../src/config/file.js';
import { REFERENCE_PAGE, withReference } from '../../src/config/reference.js';
import { buildCommand, type Config, parseConfig } from '../../src/config.js';

// docs/configuration.md's option reference and its YAML file of defaults are made from the option
// table (npm run docs:options), so the documentation cannot drift from the options.
const readme = readFileSync(new URL(`../../${REFERENCE_PAGE}`, import.meta.url), 'utf8');
const section = (heading: string) => {
  const from = readme.indexOf(heading);
  return readme.slice(from, readme.indexOf('\n#', from + heading.length));
};
/** The first ```yaml block of the "Configuration file" section. */
const defaultsBlock = () => /```yaml\n([\s\S]*?)```/.exec(section('## Configuration file'))?.[1] ?? '';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'hubcache-reference-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const quietCommand = () =>
  buildCommand()
    .exitOverride()
    .configureOutput({ writeErr: () => {}, writeOut: () => {} });
const plain = (config: Config) => JSON.parse(JSON.stringify(config));

describe("docs/configuration.md's configuration reference", () => {
  it('is what the option table makes (run npm run docs:options after changing an option)', () => {
    expect(readme).toBe(withReference(readme));
  });

  it('lists every flag in the options table', () => {
    const table = section('## Options');
    const missing = buildCommand()
      .options.map((o) => o.long as string)
      .filter((flag) => !table.includes(`\`${flag}`));
    expect(missing).toEqual([]);
  });

  it('has a YAML block that, loaded as a configuration file, is exactly the defaults', () => {
    const file = path.join(dir, 'hubcache.yml');
    writeFileSync(file, defaultsBlock());
    const fromFile = parseConfig(['--config', file], quietCommand(), {});
    expect(plain(fromFile)).toEqual(plain(parseConfig([], quietCommand(), {})));
  });

  it('has commented-out keys that are valid keys once uncommented', () => {
    const uncommented = defaultsBlock().replace(/^(\s*)# /gm, '$1');
    expect(uncommented).not.toContain('#');
    expect(() => fileValues(parse(uncommented))).not.toThrow();
  });
});
