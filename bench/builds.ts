/**
 * Two builds of the mirror side by side on the hit path, in one run, on the same bytes: a refactor
 * must not slow the hits. Each build serves a warm cache of the same image (its own data directory,
 * filled from one docker-registry); both are pinned to core 0 and take turns under wrk on core 1.
 * Besides requests per second (which move with whatever else the machine runs), each figure carries
 * the server's CPU time per request, read from /proc: the cost of one hit in this build, which
 * holds steady when the machine is busy.
 *
 *   npm run build && (cd OTHER_CHECKOUT && npm run build)
 *   npx tsx bench/builds.ts --before OTHER_CHECKOUT [--after .] [--rounds 3] [--seconds 5]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ImageLayout } from '../test/fixtures/image-layout.js';
import { startRefusingProxy } from '../test/fixtures/proxies.js';
import { pushLayout } from '../test/fixtures/skopeo-cli.js';
import { freePort, startRegistry } from '../test/fixtures/upstream-process.js';
import { cpuMicros, type LoadResult, median, pin, wrk } from './lib/load.js';
import { nodeFlagsOf } from './lib/node-flags.js';
import { commitOf, writeResult } from './results.js';

const { values } = parseArgs({
  options: {
    before: { type: 'string' },
    after: { type: 'string', default: '.' },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '5' },
    // Where each build's stdout (its log) goes: a file is what a log collector reads; /dev/null
    // hides what a log line costs.
    'log-to': { type: 'string', default: 'file' },
  },
});
if (!values.before) throw new Error('--before DIR: a checkout of the other build (with dist/ built)');
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CONNECTIONS = 50;
const ACCEPT = 'Accept: application/vnd.oci.image.manifest.v1+json';

const work = mkdtempSync(path.join(tmpdir(), 'hubcache-builds-'));
const refusing = await startRefusingProxy();
const registry = await startRegistry();
const layout = new ImageLayout(path.join(work, 'layout'));
const small = await layout.layer([{ name: 'small', random: 512 }]);
const medium = await layout.layer([{ name: 'medium', random: 1024 * 1024 }]);
const image = layout.image([small, medium]);
layout.tag('bench', image.manifest);
await pushLayout(layout.dir, 'bench', `${new URL(registry.url).host}/library/bench:1`, {
  env: refusing.env(),
});

async function startBuild(name: string, dir: string) {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      ...nodeFlagsOf(dir),
      'dist/main.js',
      '--listen',
      `127.0.0.1:${port}`,
      '--upstream',
      registry.url,
      '--data',
      path.join(work, name),
    ],
    {
      cwd: path.resolve(dir),
      stdio:
        values['log-to'] === 'file'
          ? ['ignore', openSync(path.join(work, `${name}.log`), 'w'), 'ignore']
          : 'ignore',
    },
  );
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if (
      await fetch(`${url}/v2/`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 50));
  }
  // Warm: the manifest and every blob, then wait until the fills are committed (a hit answers).
  await (await fetch(`${url}/v2/library/bench/manifests/1`, { headers: { accept: ACCEPT.slice(8) } })).text();
  for (const l of [small, medium, image.config]) {
    await (await fetch(`${url}/v2/library/bench/blobs/${l.digest}`)).arrayBuffer();
  }
  for (let i = 0; i < 100; i++) {
    const r = await fetch(`${url}/v2/library/bench/blobs/${small.digest}`, { method: 'HEAD' });
    if (r.headers.get('x-cache') === 'HIT') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await pin(child.pid ?? 0, 0);
  return { name, url, pid: child.pid ?? 0, stop: () => child.kill('SIGTERM') };
}

const builds = [await startBuild('before', values.before), await startBuild('after', values.after ?? '.')];
const paths = {
  'small blob (512 B)': `/v2/library/bench/blobs/${small.digest}`,
  'blob (1 MiB)': `/v2/library/bench/blobs/${medium.digest}`,
  'manifest GET': '/v2/library/bench/manifests/1',
};
type Figures = { rps: number[]; cpuUs: number[]; p99: number[]; errors: number };
const results = new Map<string, Figures>();
for (let round = 0; round < ROUNDS; round++) {
  for (const [what, p] of Object.entries(paths)) {
    // Alternate which build goes first, so neither always meets a warmer machine.
    const order = round % 2 === 0 ? builds : [...builds].reverse();
    for (const b of order) {
      const cpu0 = cpuMicros(b.pid);
      const r: LoadResult = await wrk(`${b.url}${p}`, CONNECTIONS, SECONDS, [ACCEPT]);
      const cpu = cpuMicros(b.pid) - cpu0;
      const key = `${what}|${b.name}`;
      const f = results.get(key) ?? { rps: [], cpuUs: [], p99: [], errors: 0 };
      f.rps.push(r.requestsPerSecond);
      f.cpuUs.push(cpu / (r.requestsPerSecond * SECONDS));
      f.p99.push(r.p99Ms);
      f.errors += r.errors;
      results.set(key, f);
    }
  }
}
for (const b of builds) b.stop();
await registry.stop();
await refusing.close();
rmSync(work, { recursive: true, force: true });

const rows: Record<string, unknown>[] = [];
console.log(
  `\n${CONNECTIONS} connections, ${SECONDS} s × ${ROUNDS} rounds, medians; servers on core 0, wrk on core 1\n`,
);
console.log(
  '| path | before req/s | after req/s | after/before | before CPU µs/req | after CPU µs/req | after/before | errors |',
);
console.log('|---|---|---|---|---|---|---|---|');
for (const what of Object.keys(paths)) {
  const b = results.get(`${what}|before`) as Figures;
  const a = results.get(`${what}|after`) as Figures;
  const row = {
    path: what,
    beforeRps: median(b.rps),
    afterRps: median(a.rps),
    beforeCpuUs: median(b.cpuUs),
    afterCpuUs: median(a.cpuUs),
    errors: a.errors + b.errors,
  };
  rows.push(row);
  console.log(
    `| ${what} | ${row.beforeRps.toFixed(0)} | ${row.afterRps.toFixed(0)} | ${(row.afterRps / row.beforeRps).toFixed(2)}× | ${row.beforeCpuUs.toFixed(1)} | ${row.afterCpuUs.toFixed(1)} | ${(row.afterCpuUs / row.beforeCpuUs).toFixed(2)}× | ${row.errors} |`,
  );
}
writeResult('builds', { commit: commitOf(), before: path.resolve(values.before), rows });
