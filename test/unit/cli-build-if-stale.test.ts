import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';

// scripts/build-if-stale.mjs in a project of its own, whose "build" counts its runs.
let root: string;
const builds = () => readFileSync(path.join(root, 'builds.txt'), 'utf8').length;
const prestart = () =>
  execFileSync(process.execPath, [path.join(root, 'scripts', 'build-if-stale.mjs')], { stdio: 'pipe' });

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), 'hubcache-prestart-'));
  for (const dir of ['scripts', 'src']) mkdirSync(path.join(root, dir));
  copyFileSync('scripts/build-if-stale.mjs', path.join(root, 'scripts', 'build-if-stale.mjs'));
  const build =
    "require('fs').mkdirSync('dist',{recursive:true});require('fs').writeFileSync('dist/main.js','');require('fs').appendFileSync('builds.txt','x')";
  writeFileSync(
    path.join(root, 'package.json'),
    JSON.stringify({ name: 'p', scripts: { build: `node -e "${build}"` } }),
  );
  for (const f of ['tsconfig.json', 'tsconfig.build.json', 'builds.txt'])
    writeFileSync(path.join(root, f), '');
  writeFileSync(path.join(root, 'src', 'main.ts'), '');
  // The inputs are older than anything built below.
  const past = Date.now() / 1000 - 60;
  for (const f of ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'src/main.ts'])
    utimesSync(path.join(root, f), past, past);
});

afterEach(() => rmSync(root, { recursive: true, force: true }));

it('npm start builds once: when dist/ is missing, and again only after a source file changed', () => {
  prestart();
  expect(builds()).toBe(1);
  prestart();
  expect(builds()).toBe(1);
  // Edited after that build (and before the next one).
  const edited = statSync(path.join(root, 'dist', 'main.js')).mtimeMs / 1000 + 0.01;
  utimesSync(path.join(root, 'src', 'main.ts'), edited, edited);
  prestart();
  expect(builds()).toBe(2);
  prestart();
  expect(builds()).toBe(2);
  // Four runs of npm and node: seconds on a busy 2-core machine, not a timing under test.
}, 60_000);
