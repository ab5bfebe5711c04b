/**
 * Issue 18, target 3: a cold pull through the mirror against the same pull straight from the
 * upstream, on an upstream shaped like the internet (bench/lib/shaped-front.ts, in this process: a round trip per
 * request, one more per new connection, a bandwidth limit per TCP connection), for a multi-layer
 * image. The mirror (`npm run build` first) is started cold, in its own process, for every pull, with layer prefetch on (--prefetch-layers) and
 * off, and with prefetch on and big blobs in one stream (--upstream-parallel 1) against ranged
 * fills over --parallel connections (the default configuration). Clients: skopeo, with --dockerd dockerd (three layers at a time, config first), with
 * --containerd containerd's ctr (three at a time). Target: mirror / direct ≤ 0.8. Medians of --rounds; prints a table and writes
 * bench/results/cold-pull.json (other than 3 rounds: cold-pull-quick.json, as in `npm run bench`).
 *
 *   npx tsx bench/cold-pull.ts [--rounds 3] [--rtt-ms 50] [--mib-per-s 16] [--prefetch 4] [--parallel 4] [--dockerd] [--containerd]
 */

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type Containerd, startContainerd } from '../test/fixtures/containerd.js';
import { type Dockerd, startDockerd } from '../test/fixtures/dockerd.js';
import { ImageLayout } from '../test/fixtures/image-layout.js';
import { startRefusingProxy } from '../test/fixtures/proxies.js';
import { pullImage, pushLayout } from '../test/fixtures/skopeo-cli.js';
import { startTokenIssuer } from '../test/fixtures/token-issuer.js';
import { freePort, startRegistry } from '../test/fixtures/upstream-process.js';
import { startMirrorProcess } from './lib/servers.js';
import { startShapedFront } from './lib/shaped-front.js';
import { fetchWarmImage, pushWarmImage } from './lib/warm-image.js';
import { commitOf, writeResult } from './results.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    'rtt-ms': { type: 'string', default: '50' },
    'mib-per-s': { type: 'string', default: '16' },
    prefetch: { type: 'string', default: '4' },
    parallel: { type: 'string', default: '4' },
    dockerd: { type: 'boolean', default: false },
    containerd: { type: 'boolean', default: false },
  },
});
const ROUNDS = Number(values.rounds);
const RTT_MS = Number(values['rtt-ms']);
const MIB_PER_S = Number(values['mib-per-s']);
const PREFETCH = Number(values.prefetch);
const PARALLEL = Number(values.parallel);
const TARGET = 0.8;
/** Layer sizes in MiB, base layer first as images are usually built: 43 MiB in all. */
const LAYERS_MIB = [16, 12, 8, 4, 2, 1];

const work = mkdtempSync(path.join(tmpdir(), 'hubcache-bench-'));
const refusing = await startRefusingProxy();
const env = refusing.env();
const tokens = await startTokenIssuer({ pusher: 's3cret' });
const upstream = await startRegistry({ token: tokens });
const layout = new ImageLayout(path.join(work, 'layout'));
const layers = [];
for (const [i, mib] of LAYERS_MIB.entries())
  layers.push(await layout.layer([{ name: `layer${i}.bin`, random: mib * 1024 * 1024 }]));
layout.tag('app', layout.image(layers).manifest);
// Pushed past the front: only pulls are shaped.
await pushLayout(layout.dir, 'app', `${new URL(upstream.url).host}/library/app:1`, {
  env,
  creds: 'pusher:s3cret',
  format: 'v2s2',
});
await pushWarmImage(work, new URL(upstream.url).host, env, 'v2s2');
const front = await startShapedFront(upstream.url, tokens.realm, {
  rttMs: RTT_MS,
  bytesPerSecond: MIB_PER_S * 1024 * 1024,
});
const frontHost = new URL(front.url).host;
const mirrorPort = await freePort();

/**
 * A cold mirror as it is run: its own process (`npm start`'s Node flags, default settings), not
 * this one, whose event loop carries the shaped front's pacing of every connection.
 */
async function coldMirror(
  prefetch: number,
  parallel: number,
): Promise<{ settled(): Promise<void>; stop(): Promise<void> }> {
  const dataDir = mkdtempSync(path.join(work, 'cache-'));
  const mirror = await startMirrorProcess(
    front.url,
    dataDir,
    ['--prefetch-layers', String(prefetch), '--upstream-parallel', String(parallel)],
    { port: mirrorPort },
  );
  const settled = async () => {
    for (let i = 0; i < 600; i++) {
      const text = await (await fetch(`${mirror.url}/metrics`)).text();
      const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
      if (value('hubcache_inflight_downloads') === 0 && value('hubcache_prefetch_running') === 0) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await fetchWarmImage(mirror.url);
  await settled();
  return {
    // Downloads still running (a prefetch the client did not ask for) end before the next pull.
    settled,
    stop: async () => {
      await mirror.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

type Client = 'skopeo' | 'dockerd' | 'ctr';
type Path = 'direct' | 'mirror, prefetch on' | 'mirror, prefetch on, one stream' | 'mirror, prefetch off';
const PATHS: Path[] = [
  'direct',
  'mirror, prefetch on',
  'mirror, prefetch on, one stream',
  'mirror, prefetch off',
];
const times = new Map<string, number[]>();
const blobGets = new Map<string, number>();
const note = (client: Client, p: Path, ms: number, gets: number) => {
  const key = `${client}|${p}`;
  times.set(key, [...(times.get(key) ?? []), ms]);
  blobGets.set(key, gets);
};

let pullNo = 0;
async function skopeoPull(host: string): Promise<number> {
  const out = path.join(work, 'pulls', String(pullNo++));
  mkdirSync(path.dirname(out), { recursive: true });
  const started = performance.now();
  await pullImage(`${host}/library/app:1`, out, { env });
  const ms = performance.now() - started;
  rmSync(out, { recursive: true, force: true });
  return ms;
}

let dockerd: Dockerd | undefined;
async function dockerPull(ref: string): Promise<number> {
  const docker = dockerd as Dockerd;
  const started = performance.now();
  await docker.docker(['pull', '-q', ref]);
  const ms = performance.now() - started;
  await docker.docker(['rmi', '-f', ref]);
  return ms;
}

let containerd: Containerd | undefined;
async function ctrPull(ref: string, direct: boolean): Promise<number> {
  const c = containerd as Containerd;
  const started = performance.now();
  await (direct ? c.ctr(['images', 'pull', '--plain-http', ref]) : c.pull(ref));
  const ms = performance.now() - started;
  // --sync: the content goes now, or the next pull would find it and ask nobody.
  await c.ctr(['images', 'rm', '--sync', ref]);
  return ms;
}

async function directPull(client: Client): Promise<number> {
  if (client === 'skopeo') return skopeoPull(frontHost);
  if (client === 'dockerd') return dockerPull(`${frontHost}/library/app:1`);
  return ctrPull(`${frontHost}/library/app:1`, true);
}

async function mirrorPull(client: Client): Promise<number> {
  if (client === 'skopeo') return skopeoPull(`127.0.0.1:${mirrorPort}`);
  if (client === 'dockerd') return dockerPull('docker.io/library/app:1');
  return ctrPull('docker.io/library/app:1', false);
}

async function pull(client: Client, p: Path): Promise<void> {
  // 200s and the 206s of ranged fills (--upstream-parallel): every blob GET that moved bytes.
  const blobs = () => front.count('GET', /\/blobs\//) + front.count('GET', /\/blobs\//, 206);
  if (p === 'direct') {
    const before = blobs();
    const ms = await directPull(client);
    note(client, p, ms, blobs() - before);
    return;
  }
  const m = await coldMirror(
    p === 'mirror, prefetch off' ? 0 : PREFETCH,
    p.endsWith('one stream') ? 1 : PARALLEL,
  );
  const before = blobs();
  try {
    const ms = await mirrorPull(client);
    await m.settled();
    note(client, p, ms, blobs() - before);
  } finally {
    await m.stop();
  }
}

const clients: Client[] = ['skopeo'];
try {
  if (values.dockerd) {
    dockerd = await startDockerd(`http://127.0.0.1:${mirrorPort}`, env);
    clients.push('dockerd');
  }
  if (values.containerd) {
    containerd = await startContainerd(`http://127.0.0.1:${mirrorPort}`, env);
    clients.push('ctr');
  }
  // Rounds interleave the paths, so a busy moment of the (shared) machine hits all of them alike.
  for (let round = 0; round < ROUNDS; round++)
    for (const client of clients) for (const p of PATHS) await pull(client, p);
} finally {
  await dockerd?.stop();
  await containerd?.stop();
  await front.close();
  await upstream.stop();
  await tokens.close();
  await refusing.close();
  rmSync(work, { recursive: true, force: true });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const f = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const totalMiB = LAYERS_MIB.reduce((a, b) => a + b, 0);
console.log(
  `\nCold pull of a ${LAYERS_MIB.length}-layer image (${LAYERS_MIB.join(' + ')} = ${totalMiB} MiB), upstream shaped: ` +
    `${RTT_MS} ms per request (+1 per new connection), ${MIB_PER_S} MiB/s per connection; ` +
    `--prefetch-layers ${PREFETCH}, --upstream-parallel ${PARALLEL} (one stream: 1); medians of ${ROUNDS}`,
);
console.log(
  `machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, Node ${process.version}, load ${os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')} (shared: preliminary)\n`,
);
console.log(
  '| client | path | cold pull (median) | all rounds | upstream blob GETs | mirror / direct | ≤ 0.8× |',
);
console.log('|---|---|---|---|---|---|---|');
const rows = [];
for (const client of clients) {
  const direct = median(times.get(`${client}|direct`) ?? []);
  for (const p of PATHS) {
    const all = times.get(`${client}|${p}`) ?? [];
    const ms = median(all);
    const ratio = p === 'direct' ? undefined : ms / direct;
    const verdict = ratio === undefined ? '' : ratio <= TARGET ? 'holds' : 'misses';
    rows.push({ client, path: p, medianMs: Math.round(ms), roundsMs: all.map(Math.round), ratio, verdict });
    console.log(
      `| ${client} | ${p} | ${f(ms)} | ${all.map(f).join(', ')} | ${blobGets.get(`${client}|${p}`)} | ${
        ratio === undefined ? '' : `${ratio.toFixed(2)}×`
      } | ${verdict} |`,
    );
  }
}

writeResult(ROUNDS === 3 ? 'cold-pull' : 'cold-pull-quick', {
  commit: commitOf(),
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, load: os.loadavg() },
  shape: { rttMs: RTT_MS, mibPerSecondPerConnection: MIB_PER_S },
  layersMiB: LAYERS_MIB,
  prefetchLayers: PREFETCH,
  upstreamParallel: PARALLEL,
  rounds: ROUNDS,
  target: TARGET,
  rows,
});
