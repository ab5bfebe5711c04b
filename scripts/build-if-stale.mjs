#!/usr/bin/env node
// `npm start`'s prestart: build dist/ only when it is missing or older than what it is built from
// (src/, package.json, the tsconfigs), so starting the mirror or printing --help takes no tsc run.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '..');
const built = path.join(root, 'dist', 'main.js');
const inputs = ['package.json', 'tsconfig.json', 'tsconfig.build.json'].map((f) => path.join(root, f));

/** Every file under dir. */
function files(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath ?? e.path, e.name));
}

const newest = Math.max(...[...inputs, ...files(path.join(root, 'src'))].map((f) => statSync(f).mtimeMs));
if (existsSync(built) && statSync(built).mtimeMs >= newest) process.exit(0);
process.stderr.write('hubcache: dist/ is missing or older than src/: building (npm run build)\n');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const { status } = spawnSync(npm, ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
process.exit(status ?? 1);
