#!/usr/bin/env node
// Some npm registry mirrors (this workplace's among them) lack the newest versions of the
// platform-specific optional packages of biome and rollup (darwin, win32, musl, ...). npm then
// writes a package-lock.json without them, and `npm ci` refuses that lock everywhere ("Missing:
// @rollup/rollup-darwin-arm64@... from lock file"). This adds each missing entry with the os/cpu/libc
// its name states, so `npm ci` accepts the lock and, on each platform, installs only the binary that
// matches it (the one for this platform is in the lock already, resolved normally).
// Run after `npm install` changed the lock: node scripts/complete-lockfile.mjs
import { readFileSync, writeFileSync } from 'node:fs';

const OS = [
  'android',
  'darwin',
  'freebsd',
  'linux',
  'openbsd',
  'openharmony',
  'netbsd',
  'sunos',
  'aix',
  'win32',
];
const CPU = ['arm64', 'x64', 'ia32', 'arm', 'riscv64', 's390x', 'ppc64', 'loong64', 'mips64el'];

function platformOf(name) {
  const parts = name.split('/').at(-1).split('-');
  const os = parts.find((p) => OS.includes(p));
  const cpu = parts.find((p) => CPU.includes(p));
  if (!os || !cpu) throw new Error(`cannot tell the platform of ${name}: add it by hand`);
  const constraint = { os: [os], cpu: [cpu] };
  if (os === 'linux' && parts.includes('musl')) constraint.libc = ['musl'];
  else if (os === 'linux' && parts.some((p) => p.startsWith('gnu'))) constraint.libc = ['glibc'];
  return constraint;
}

const lockPath = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(lockPath, 'utf8'));
const packages = lock.packages;
let added = 0;
for (const entry of Object.values(packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const at = `node_modules/${name}`;
    if (packages[at]) continue;
    packages[at] = { version, ...(entry.dev ? { dev: true } : {}), optional: true, ...platformOf(name) };
    added++;
  }
}
const sorted = Object.fromEntries(
  Object.entries(packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1)),
);
lock.packages = sorted;
writeFileSync(lockPath, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`${added} platform entries added to package-lock.json`);
