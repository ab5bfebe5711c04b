/**
 * Issue 18's targets, judged from bench/results/*.json (bench/targets.ts): prints each target with
 * its figures, the anchors from the same run, holds / misses, and the runs (time, commit, machine).
 * `npm run bench` ends with the quick set, `npm run bench:full` with the full set and --write, which
 * regenerates the section between the bench:targets markers in README.md and docs/benchmarks.md
 * from the full set's files (test/unit/bench-targets-pages.test.ts fails when they differ).
 *
 *   npx tsx bench/report.ts [--quick] [--write]        (npm run bench:report)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { readResults } from './lib/read-results.js';
import { evaluate, fullTable, RESULT_FILES, type ResultSet, TARGET_PAGES, withSection } from './targets.js';

const { values } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, write: { type: 'boolean', default: false } },
});
if (values.quick && values.write) {
  console.error('--write regenerates the pages from the full set only: run it without --quick');
  process.exit(2);
}
const set: ResultSet = values.quick ? 'quick' : 'full';
const report = evaluate(readResults(Object.values(RESULT_FILES[set])), set);

console.log(`\nIssue 18's targets, ${set} set (bench/results/):\n`);
console.log(fullTable(report));
const count = (v: string) => report.rows.filter((r) => r.verdict === v).length;
console.log(`\n${count('holds')} hold, ${count('misses')} miss, ${count('not measured')} not measured`);

if (values.write) {
  const root = path.join(import.meta.dirname, '..');
  for (const { page, render } of TARGET_PAGES) {
    const file = path.join(root, page);
    const before = readFileSync(file, 'utf8');
    const after = withSection(before, render(report));
    if (after !== before) writeFileSync(file, after);
    console.log(`${after === before ? 'unchanged' : 'updated'}: ${page}`);
  }
}
