/**
 * Bounded soak of the hit path: the mirror (built, as its own process, pinned to core 0) serves a
 * warm mix of manifests (by tag and digest, GET and HEAD) and blobs from 1 KiB to 16 MiB to wrk
 * (pinned to core 1) with 500 connections for 60 s. Records requests, errors and the mirror's peak
 * RSS. Needs `npm run build` and wrk (apt-get install wrk). Writes bench/results/soak.json (another
 * length or number of connections: soak-quick.json, as in `npm run bench`).
 *
 *   npx tsx bench/soak.ts [--connections 500] [--seconds 60] [--build OTHER_CHECKOUT]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startFakeRegistry } from '../test/integration/fake-registry.js';
import { addImage } from '../test/integration/harness.js';
import { nodeFlagsOf } from './lib/node-flags.js';
import { commitOf, writeResult } from './results.js';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '500' },
    seconds: { type: 'string', default: '60' },
    // Another checkout's build (its dist/), to compare two builds on the same machine.
    build: { type: 'string', default: '.' },
  },
});
const work = mkdtempSync(path.join(tmpdir(), 'hubcache-soak-'));
const upstream = await startFakeRegistry();
const sizes = [
  ...Array(10).fill(1024),
  ...Array(5).fill(64 * 1024),
  ...Array(4).fill(1024 * 1024),
  16 * 1024 * 1024,
];
const images = sizes.map((size, i) => ({ i, ...addImage(upstream, `library/img${i}`, 'latest', size) }));

const port = 5600 + Math.floor(Math.random() * 300);
const mirror = spawn(
  'taskset',
  [
    '-c',
    '0',
    process.execPath,
    ...nodeFlagsOf(values.build),
    'dist/main.js',
    '--listen',
    `127.0.0.1:${port}`,
    '--upstream',
    upstream.url,
    '--data',
    path.join(work, 'data'),
    '--log-level',
    'info',
  ],
  { stdio: ['ignore', 'ignore', 'inherit'], cwd: path.resolve(values.build ?? '.') },
);
const base = `http://127.0.0.1:${port}`;
for (let i = 0; i < 100; i++) {
  if (
    await fetch(`${base}/v2/`).then(
      (r) => r.ok,
      () => false,
    )
  )
    break;
  await new Promise((r) => setTimeout(r, 100));
}
// Warm the cache, and list what the load asks for.
const paths: { method: string; path: string }[] = [];
for (const img of images) {
  const name = `library/img${img.i}`;
  for (const p of [
    `/v2/${name}/manifests/latest`,
    `/v2/${name}/blobs/${img.layerDigest}`,
    `/v2/${name}/blobs/${img.configDigest}`,
  ]) {
    await (await fetch(`${base}${p}`)).arrayBuffer();
  }
  // GETs only: wrk's parser does not know a HEAD answer has no body, and waits for one.
  paths.push(
    { method: 'GET', path: `/v2/${name}/manifests/latest` },
    { method: 'GET', path: `/v2/${name}/manifests/${img.manifestDigest}` },
    { method: 'GET', path: `/v2/${name}/blobs/${img.configDigest}` },
    { method: 'GET', path: `/v2/${name}/blobs/${img.layerDigest}` },
  );
}
const lua = path.join(work, 'mix.lua');
writeFileSync(
  lua,
  // Requests are formatted in init(): at load time wrk has no Host header yet (→ 400s).
  `local reqs = {}
local i = 0
init = function(args)
${paths.map((p) => `  table.insert(reqs, wrk.format("${p.method}", "${p.path}", {["Host"]=wrk.headers["Host"], ["Accept"]="application/vnd.oci.image.manifest.v1+json"}))`).join('\n')}
end
request = function() i = i + 1; return reqs[(i % #reqs) + 1] end
done = function(summary, latency, requests)
  io.write(string.format("JSON{\\"requests\\":%d,\\"connect\\":%d,\\"read\\":%d,\\"write\\":%d,\\"timeout\\":%d,\\"status\\":%d,\\"p50\\":%d,\\"p99\\":%d,\\"max\\":%d,\\"bytes\\":%d}\\n",
    summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout, summary.errors.status,
    latency:percentile(50), latency:percentile(99), latency.max, summary.bytes))
end
`,
);

let peakRss = 0;
const rssTimer = setInterval(() => {
  try {
    const status = readFileSync(`/proc/${mirror.pid}/status`, 'utf8');
    // taskset execs node in place: the PID is the mirror's.
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    peakRss = Math.max(peakRss, kb * 1024);
  } catch {
    // exited
  }
}, 200);
const rssBefore =
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${mirror.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
// Asynchronously, so the RSS sampling above keeps running during the load.
const out = await new Promise<string>((resolve, reject) => {
  const wrk = spawn('taskset', [
    '-c',
    '1',
    'wrk',
    '-t1',
    `-c${values.connections}`,
    `-d${values.seconds}s`,
    // Past the fair share of the biggest blob: 16 MiB at 1/500 of ~480 MiB/s takes ~17 s however
    // fair the server is, so a 10 s timeout counts sharing as failures; this one counts stalls.
    '--timeout',
    '30s',
    '-s',
    lua,
    base,
  ]);
  let text = '';
  wrk.stdout.on('data', (d: Buffer) => {
    text += d.toString();
  });
  wrk.on('error', reject);
  wrk.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}: ${text}`))));
});
clearInterval(rssTimer);
const stats = JSON.parse(/JSON(\{.*\})/.exec(out)?.[1] ?? '{}') as Record<string, number>;
const alive = await fetch(`${base}/v2/`).then(
  (r) => r.status,
  () => 0,
);
mirror.kill('SIGTERM');
await new Promise((r) => mirror.once('exit', r));
await upstream.close();
rmSync(work, { recursive: true, force: true });

const errors =
  (stats.connect ?? 0) + (stats.read ?? 0) + (stats.write ?? 0) + (stats.timeout ?? 0) + (stats.status ?? 0);
const seconds = Number(values.seconds);
console.log(
  `\nSoak: ${values.connections} connections for ${seconds} s, warm mix of ${paths.length} manifest/blob requests\n`,
);
console.log(
  '| requests | req/s | errors (connect/read/write/timeout/non-2xx) | p50 | p99 | max | MiB/s | RSS before → peak | alive after |',
);
console.log('|---|---|---|---|---|---|---|---|---|');
console.log(
  `| ${stats.requests} | ${Math.round((stats.requests ?? 0) / seconds)} | ${errors} (${stats.connect}/${stats.read}/${stats.write}/${stats.timeout}/${stats.status}) | ${((stats.p50 ?? 0) / 1000).toFixed(1)} ms | ${((stats.p99 ?? 0) / 1000).toFixed(1)} ms | ${((stats.max ?? 0) / 1000).toFixed(0)} ms | ${((stats.bytes ?? 0) / seconds / 1024 / 1024).toFixed(0)} | ${(rssBefore / 1024 / 1024).toFixed(0)} → ${(peakRss / 1024 / 1024).toFixed(0)} MiB | ${alive === 200} |`,
);
writeResult(seconds === 60 && Number(values.connections) === 500 ? 'soak' : 'soak-quick', {
  commit: values.build === '.' ? commitOf() : `build in ${values.build}`,
  connections: Number(values.connections),
  seconds,
  ...stats,
  errors,
  rssBeforeBytes: rssBefore,
  peakRssBytes: peakRss,
  aliveAfter: alive === 200,
});
