/**
 * Hits after a pause early in a process's life, for one or more builds side by side. Each round
 * starts every build fresh and gives it the same history: the readiness check and five more
 * requests (`GET /v2/`), then `--idle` seconds with nothing to do. In that pause V8's memory reducer
 * may run a full collection before the process's seventh response, which once left every later
 * response in a dictionary (docs/benchmarks.md, "Response shapes"). Then the build serves a 1 KiB
 * blob: one cold fill, and hits from wrk (50 connections, core 1; the server on core 0). The figure
 * is the server's CPU per hit, read from /proc. Builds take turns, so a slow moment of the machine
 * hits them all alike. Writes bench/results/idle-hits.json.
 *
 *   npm run build && (cd OTHER_CHECKOUT && npm run build)
 *   npx tsx bench/idle-hits.ts [--build .] [--build OTHER_CHECKOUT] [--rounds 3] [--idle 12]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ImageLayout } from '../test/fixtures/image-layout.js';
import { startRefusingProxy } from '../test/fixtures/proxies.js';
import { pushLayout } from '../test/fixtures/skopeo-cli.js';
import { startRegistry } from '../test/fixtures/upstream-process.js';
import { median, pin, wrk, wrkWithCpu } from './lib/load.js';
import { startMirrorProcess } from './lib/servers.js';
import { commitOf, writeResult } from './results.js';

const { values } = parseArgs({
  options: {
    build: { type: 'string', multiple: true, default: ['.'] },
    rounds: { type: 'string', default: '3' },
    idle: { type: 'string', default: '12' },
  },
});
const BUILDS = values.build ?? ['.'];
const ROUNDS = Number(values.rounds);
const IDLE_MS = Number(values.idle) * 1000;
/** Requests before the pause, the readiness check included: the seventh response comes after it. */
const BEFORE_PAUSE = 6;

const work = mkdtempSync(path.join(tmpdir(), 'hubcache-idle-'));
const refusing = await startRefusingProxy();
const registry = await startRegistry();
const layout = new ImageLayout(path.join(work, 'layout'));
const small = await layout.layer([{ name: 'small', random: 1024 }]);
layout.tag('bench', layout.image([small]).manifest);
await pushLayout(layout.dir, 'bench', `${new URL(registry.url).host}/library/bench:1`, {
  env: refusing.env(),
});

/** One fresh process of a build through the history above: its CPU µs per hit, three windows. */
async function round(checkout: string, n: number): Promise<number[]> {
  // Its readiness check is the first request of the history.
  const mirror = await startMirrorProcess(registry.url, path.join(work, `data-${n}`), [], { checkout });
  try {
    for (let i = 1; i < BEFORE_PAUSE; i++) await (await fetch(`${mirror.url}/v2/`)).arrayBuffer();
    await new Promise((r) => setTimeout(r, IDLE_MS));
    await pin(mirror.pid, 0);
    const blob = `${mirror.url}/v2/library/bench/blobs/${small.digest}`;
    await wrk(blob, 50, 2); // the cold fill, then the hit path compiled
    const windows: number[] = [];
    for (let i = 0; i < 3; i++) windows.push((await wrkWithCpu(mirror.pid, blob, 50, 3)).cpuUsPerRequest);
    return windows;
  } finally {
    await mirror.stop();
  }
}

/** A build's name in the table and the result file: its checkout and commit. */
const label = (checkout: string) =>
  `${checkout} (${execFileSync('git', ['-C', checkout, 'rev-parse', '--short', 'HEAD']).toString().trim()})`;
const perBuild = new Map<string, number[]>(BUILDS.map((b) => [label(b), []]));
let n = 0;
for (let r = 0; r < ROUNDS; r++) {
  for (const b of r % 2 === 0 ? BUILDS : [...BUILDS].reverse()) {
    const windows = await round(b, n++);
    perBuild.get(label(b))?.push(...windows);
    console.error(`round ${r + 1}, ${b}: ${windows.map((w) => w.toFixed(1)).join(' ')} µs/hit`);
  }
}
await registry.stop();
await refusing.close();
rmSync(work, { recursive: true, force: true });

console.log(
  `\n1 KiB hits after ${BEFORE_PAUSE} requests and ${IDLE_MS / 1000} s idle, fresh process per round (${ROUNDS} rounds × 3 windows of 3 s)\n`,
);
console.log('| build | CPU µs per hit, median | range |');
console.log('|---|---|---|');
for (const [b, xs] of perBuild)
  console.log(
    `| ${b} | ${median(xs).toFixed(1)} | ${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)} |`,
  );
writeResult('idle-hits', {
  commit: commitOf(),
  idleSeconds: IDLE_MS / 1000,
  rounds: ROUNDS,
  builds: Object.fromEntries([...perBuild].map(([b, xs]) => [b, { cpuUsPerHit: median(xs), windows: xs }])),
});
