import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readResults } from '../../bench/lib/read-results.js';
import {
  evaluate,
  RESULT_FILES,
  SECTION_END,
  SECTION_START,
  TARGET_PAGES,
  withSection,
} from '../../bench/targets.js';

// The performance targets in README.md and docs/benchmarks.md are made from the committed
// bench/results/ (npm run bench:report -- --write, which npm run bench:full runs last), so no
// figure there is typed by hand or left behind by a new run.
const root = path.resolve(import.meta.dirname, '../..');
const report = evaluate(readResults(Object.values(RESULT_FILES.full)), 'full');

describe.each(TARGET_PAGES)('$page, its performance targets', ({ page, render }) => {
  const text = readFileSync(path.join(root, page), 'utf8');

  it('have one generated section', () => {
    expect(text.split(SECTION_START)).toHaveLength(2);
    expect(text.split(SECTION_END)).toHaveLength(2);
  });

  it('are what bench/results makes (run npm run bench:report -- --write after a benchmark)', () => {
    expect(text).toBe(withSection(text, render(report)));
  });
});
