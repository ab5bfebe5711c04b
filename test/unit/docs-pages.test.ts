import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { fileValues } from '../../src/config/file.js';
import { envNames, OPTION_LIST } from '../../src/config/options.js';
import { buildCommand } from '../../src/config.js';

/**
 * README.md and every docs/*.md page quote commands, flags, environment variables, npm scripts,
 * repository paths and configuration files, and link to each other: each of those must still exist,
 * so a renamed flag or a moved page fails here instead of misleading a reader.
 */

const root = path.resolve(import.meta.dirname, '../..');
const pages = [
  'README.md',
  ...readdirSync(path.join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const text = (page: string) => readFileSync(path.join(root, page), 'utf8');

/** The page without its fenced blocks (prose and tables). */
const prose = (doc: string) => doc.replace(/^```[\s\S]*?^```/gm, '');
/** Inline code spans of the prose. */
const spans = (doc: string) => [...prose(doc).matchAll(/`([^`\n]+)`/g)].map((m) => m[1] as string);
/** Fenced blocks of a language, their contents. */
const blocks = (doc: string, lang: string) =>
  [...doc.matchAll(new RegExp(`^\`\`\`${lang}\\n([\\s\\S]*?)^\`\`\``, 'gm'))].map((m) => m[1] as string);
/** Command lines: ```sh lines (comments dropped) and inline spans. */
const commandLines = (doc: string) => [
  ...blocks(doc, 'sh').flatMap((b) => b.split('\n').map((l) => l.replace(/\s+#.*$/, ''))),
  ...spans(doc),
];

/** The flags of the main command, and of each subcommand as its source declares them. */
const mainFlags = new Set([...buildCommand().options.map((o) => o.long as string), '--help']);
const subFlags = (sub: string) =>
  new Set([
    ...[...text(`src/commands/${sub}.ts`).matchAll(/'(--[a-z][a-z0-9-]*)/g)].map((m) => m[1] as string),
    '--help',
  ]);
const SUBCOMMANDS = ['prefetch', 'gc', 'stats'];

/** The flags a command line names that its command does not have (undefined: not ours). */
function unknownFlags(line: string): string[] | undefined {
  const invocation = /^(?:hubcache|node dist\/main\.js|npm start --)(?:\s+(\S+))?/.exec(line.trim());
  if (!invocation && !line.startsWith('--')) return undefined;
  const sub = invocation?.[1];
  const known =
    sub && SUBCOMMANDS.includes(sub)
      ? subFlags(sub)
      : invocation
        ? mainFlags
        : new Set([...mainFlags, ...SUBCOMMANDS.flatMap((s) => [...subFlags(s)])]);
  return [...line.matchAll(/--[a-z][a-z0-9-]*/g)].map((m) => m[0]).filter((f) => !known.has(f));
}

const problems = (check: (page: string, doc: string) => string[]) =>
  pages.flatMap((page) => check(page, text(page)).map((p) => `${page}: ${p}`));

/** GitHub's anchor of a heading. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
const anchors = (doc: string) =>
  new Set([...prose(doc).matchAll(/^#+ (.+)$/gm)].map((m) => slug(m[1] as string)));

describe('README.md and docs/*.md', () => {
  it('are found (README and the reference pages)', () => {
    expect(pages).toContain('docs/configuration.md');
    expect(pages).toContain('docs/observing.md');
    expect(pages.length).toBeGreaterThan(8);
  });

  it('name only flags the mirror and its subcommands have', () => {
    // docs/PROTOCOL.md quotes other programs' flags (docker service create's, say).
    const bad = problems((page, doc) =>
      page === 'docs/PROTOCOL.md' ? [] : commandLines(doc).flatMap((l) => unknownFlags(l) ?? []),
    );
    expect(bad).toEqual([]);
    expect(unknownFlags('hubcache gc --blobs --nope')).toEqual(['--nope']);
    expect(unknownFlags('--max-size 50GiB')).toEqual([]);
    expect(unknownFlags('skopeo copy --src-tls-verify=false')).toBeUndefined();
  });

  it('name only HUBCACHE_ environment variables an option reads (tests own HUBCACHE_TEST_*)', () => {
    const known = new Set(OPTION_LIST.flatMap(([, spec]) => envNames(spec)));
    const bad = problems((_, doc) =>
      [...doc.matchAll(/\bHUBCACHE_[A-Z0-9_]*[A-Z0-9]\b/g)]
        .map((m) => m[0])
        .filter((v) => !v.startsWith('HUBCACHE_TEST_') && !known.has(v)),
    );
    expect(bad).toEqual([]);
  });

  it('name only npm scripts package.json has', () => {
    const scripts = JSON.parse(text('package.json')).scripts as Record<string, string>;
    const bad = problems((_, doc) =>
      [...doc.matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1] as string).filter((s) => !(s in scripts)),
    );
    expect(bad).toEqual([]);
  });

  it('quote repository paths (`src/...`, `test/...`, `bench/...`, `scripts/...`, `docs/...`) that exist', () => {
    const bad = problems((_, doc) =>
      spans(doc)
        .map((s) => /^(?:src|test|bench|scripts|docs)\/[^\s`*]*/.exec(s)?.[0])
        .filter((p): p is string => p !== undefined)
        .filter((p) => !existsSync(path.join(root, p))),
    );
    expect(bad).toEqual([]);
  });

  it('quote configuration files (```yaml, but Kubernetes manifests) that load as hubcache.yml', () => {
    const bad = problems((_, doc) =>
      blocks(doc, 'yaml')
        .filter((b) => !b.includes('apiVersion:'))
        .flatMap((b) => {
          try {
            fileValues(parse(b));
            return [];
          } catch (err) {
            return [`${(err as Error).message}\n${b}`];
          }
        }),
    );
    expect(bad).toEqual([]);
    expect(pages.flatMap((p) => blocks(text(p), 'yaml')).length).toBeGreaterThan(2);
  });

  it('link only to files that exist, and to headings that exist (#anchor)', () => {
    const bad = problems((page, doc) =>
      [...prose(doc).matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)]
        .map((m) => m[1] as string)
        .filter((href) => !/^[a-z]+:/.test(href))
        .filter((href) => {
          const [file, anchor] = href.split('#');
          const target = file ? path.join(path.dirname(path.join(root, page)), file) : path.join(root, page);
          if (!existsSync(target)) return true;
          if (anchor === undefined || !target.endsWith('.md')) return false;
          return !anchors(readFileSync(target, 'utf8')).has(anchor);
        }),
    );
    expect(bad).toEqual([]);
    expect(slug('TLS and client authentication')).toBe('tls-and-client-authentication');
    expect(slug('Scaling out: replicas on shared S3 storage')).toBe(
      'scaling-out-replicas-on-shared-s3-storage',
    );
  });

  it("keep README a newcomer's page: the reference lives in docs/", () => {
    expect(text('README.md').length).toBeLessThan(12_000);
  });
});
