import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Comments in src/ cite the project's docs by path and section (`docs/PROTOCOL.md §1.2`,
 * `docs/PROTOCOL.md §2 item 16`, `docs/PERFORMANCE.md lessons 1, 4, 5`). Every one must name a
 * file, section, item and lesson that exist in this repository, and nothing may point outside it.
 */

const root = path.resolve(import.meta.dirname, '../..');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sources(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

const files = sources(path.join(root, 'src')).map((file) => ({
  file: path.relative(root, file),
  text: readFileSync(file, 'utf8'),
}));

interface Citation {
  where: string;
  doc: string;
  /** `§1.2`, `§2 item 16`, `lesson 5`, ... as written. */
  refs: string[];
}

/** Every `docs/NAME.md` citation in src/, with the sections, items and lessons after it. */
function citations(): Citation[] {
  const found: Citation[] = [];
  const cite =
    /docs\/([\w-]+\.md)((?:,? ?(?:§\d+(?:\.\d+)*(?: items? \d+(?:, \d+)*)?|lessons? \d+(?:, \d+)*))*)/g;
  for (const { file, text } of files) {
    for (const m of text.matchAll(cite)) {
      const line = text.slice(0, m.index).split('\n').length;
      const refs =
        (m[2] ?? '').match(/§\d+(?:\.\d+)*(?: items? \d+(?:, \d+)*)?|lessons? \d+(?:, \d+)*/g) ?? [];
      found.push({ where: `${file}:${line}`, doc: m[1] as string, refs });
    }
  }
  return found;
}

/** The lines of `doc` under the heading numbered `section` (`2`, `1.2`), up to the next heading. */
function sectionOf(doc: string, section: string): string[] | undefined {
  const lines = doc.split('\n');
  const start = lines.findIndex((l) => new RegExp(`^#{2,} ${section.replace('.', '\\.')}[.\\s]`).test(l));
  if (start < 0) return undefined;
  const depth = (lines[start] as string).indexOf(' ');
  const rest = lines.slice(start + 1);
  const end = rest.findIndex((l) => /^#+ /.test(l) && l.indexOf(' ') <= depth);
  return end < 0 ? rest : rest.slice(0, end);
}

const numbered = (lines: string[], n: string) => lines.some((l) => l.startsWith(`${n}. `));

/** What is wrong with one citation (undefined: it holds). */
function check(c: Citation): string | undefined {
  const file = path.join(root, 'docs', c.doc);
  if (!existsSync(file)) return `${c.where}: docs/${c.doc} does not exist`;
  const doc = readFileSync(file, 'utf8');
  for (const ref of c.refs) {
    const lesson = /^lessons? (.+)$/.exec(ref);
    if (lesson) {
      const lessons = sectionOfTitle(doc, /^## Lessons/);
      for (const n of (lesson[1] as string).split(', '))
        if (!lessons || !numbered(lessons, n)) return `${c.where}: docs/${c.doc} has no lesson ${n}`;
      continue;
    }
    const [, section, items] = /^§([\d.]+)(?: items? (.+))?$/.exec(ref) ?? [];
    const body = sectionOf(doc, section as string);
    if (!body) return `${c.where}: docs/${c.doc} has no §${section}`;
    for (const n of items ? items.split(', ') : [])
      if (!numbered(body, n)) return `${c.where}: docs/${c.doc} §${section} has no item ${n}`;
  }
  return undefined;
}

function sectionOfTitle(doc: string, title: RegExp): string[] | undefined {
  const lines = doc.split('\n');
  const start = lines.findIndex((l) => title.test(l));
  if (start < 0) return undefined;
  const rest = lines.slice(start + 1);
  const end = rest.findIndex((l) => /^#{1,2} /.test(l));
  return end < 0 ? rest : rest.slice(0, end);
}

/** What is wrong with a citation by section name (undefined: the page has a heading starting so). */
function namedSectionMissing(c: { file: string; page: string; section: string }): string | undefined {
  const file = path.join(root, c.page);
  if (!existsSync(file)) return `${c.file}: ${c.page} does not exist`;
  const headings = readFileSync(file, 'utf8')
    .replace(/^```[\s\S]*?^```/gm, '')
    .split('\n')
    .filter((l) => /^#+ /.test(l))
    .map((l) => l.replace(/^#+ /, ''));
  if (!headings.some((h) => h.startsWith(c.section)))
    return `${c.file}: ${c.page} has no heading "${c.section}"`;
  return undefined;
}

describe('citations of docs/ in src/', () => {
  const all = citations();

  it('finds the citations (the pattern still matches how comments cite)', () => {
    expect(all.filter((c) => c.doc === 'PROTOCOL.md').length).toBeGreaterThan(3);
    expect(all.some((c) => c.refs.some((r) => r.startsWith('lesson')))).toBe(true);
    expect(all.some((c) => c.refs.some((r) => r.includes('item')))).toBe(true);
  });

  it('every cited file, section, item and lesson exists in the repository', () => {
    expect(all.map(check).filter((e) => e !== undefined)).toEqual([]);
  });

  it('a citation that names a missing section, item or lesson is caught', () => {
    expect(check({ where: 'x', doc: 'PROTOCOL.md', refs: ['§9.9'] })).toMatch(/no §9\.9/);
    expect(check({ where: 'x', doc: 'PROTOCOL.md', refs: ['§2 item 99'] })).toMatch(/no item 99/);
    expect(check({ where: 'x', doc: 'PERFORMANCE.md', refs: ['lessons 1, 9'] })).toMatch(/no lesson 9/);
    expect(check({ where: 'x', doc: 'NOPE.md', refs: [] })).toMatch(/does not exist/);
    expect(check({ where: 'x', doc: 'PROTOCOL.md', refs: ['§1.2', '§3 item 12'] })).toBeUndefined();
  });

  it('every section cited by name (`README.md, "Quick start"`, `docs/scaling-out.md, "Scaling out"`) is a heading of that page', () => {
    const cited = files.flatMap(({ file, text }) =>
      [...text.matchAll(/\b((?:docs\/[\w-]+|README)\.md), "([^"]+)"/g)].map((m) => ({
        file,
        page: m[1] as string,
        section: m[2] as string,
      })),
    );
    expect(cited.length).toBeGreaterThan(0);
    expect(cited.some((c) => c.page.startsWith('docs/'))).toBe(true);
    expect(cited.map(namedSectionMissing).filter((e) => e !== undefined)).toEqual([]);
  });

  it('a citation by name of a missing page or heading is caught', () => {
    expect(namedSectionMissing({ file: 'x', page: 'README.md', section: 'Quick start' })).toBeUndefined();
    expect(namedSectionMissing({ file: 'x', page: 'README.md', section: 'No such section' })).toMatch(
      /no heading/,
    );
    expect(namedSectionMissing({ file: 'x', page: 'docs/nope.md', section: 'Any' })).toMatch(
      /does not exist/,
    );
  });

  it('a doc is cited by its path in the repository, and nothing points outside it', () => {
    const outside: string[] = [];
    for (const { file, text } of files) {
      text.split('\n').forEach((line, i) => {
        const bare = /(?<!docs\/)\b(PROTOCOL|PERFORMANCE|SECURITY|STYLE|TESTBED)\.md/.exec(line);
        const away = /shared\/docs|\/work\/|TESTBED|\bissue \d+|\(issue:|the \w+ issue\b/i.exec(line);
        if (bare || away) outside.push(`${file}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(outside).toEqual([]);
  });
});
