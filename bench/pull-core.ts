/**
 * Cold and warm pulls through the mirror, side by side with the same pull straight from the upstream
 * and through the reference registry in proxy mode (Debian's docker-registry 2.8, `proxy.remoteurl`),
 * all against one real token-auth upstream, in one run. Also: 20 clients asking for one cold blob at
 * once. Prints a table and writes bench/results/pull-core.json. The mirror runs as it is run, in
 * its own process (`npm run build` first); every path, the direct one included, goes through the
 * same counting front (in this process), which is part of the upstream they all pull from.
 *
 * Each round pulls in two layouts. Pinned (the verdict), as push.ts and replicas.ts run: the server
 * under test (hubcache, the reference proxy) on core 0, everything else (this process with the
 * front and the token issuer, the upstream registry, skopeo) on core 1, so a mirror's CPU is its
 * own host's, as deployed, and the client and the upstream do the same work in every path. Shared:
 * nothing pinned, the mirror's CPU taken from the client's and the upstream's. In each layout of a
 * round: a direct pull, hubcache's cold and warm pulls, a direct pull again, the reference proxy's;
 * hubcache's ratio is to the mean of the two direct pulls around it.
 *
 *   npx tsx bench/pull-core.ts [--big-mib 256] [--rounds 7]
 */

import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { ImageLayout } from '../test/fixtures/image-layout.js';
import { startFaultFront, startRefusingProxy } from '../test/fixtures/proxies.js';
import { pullImage, pushLayout } from '../test/fixtures/skopeo-cli.js';
import { startTokenIssuer } from '../test/fixtures/token-issuer.js';
import { startRegistry } from '../test/fixtures/upstream-process.js';
import { cpuMicros, pin } from './lib/load.js';
import { startMirrorProcess } from './lib/servers.js';
import { fetchWarmImage, pushWarmImage } from './lib/warm-image.js';
import { commitOf, writeResult } from './results.js';

const { values } = parseArgs({
  options: {
    'big-mib': { type: 'string', default: '256' },
    // Seven: on one shared core a round's own ratio ranges over ±20 % (docs/benchmarks.md, "Miss path").
    rounds: { type: 'string', default: '7' },
    /** Cold 32 MiB fills each fresh server runs before it is measured (see warmUp). */
    'warm-fills': { type: 'string', default: '4' },
  },
});
const WARM_FILLS = Number(values['warm-fills']);
const BIG_MIB = Number(values['big-mib']);
const ROUNDS = Number(values.rounds);

type Layout = 'pinned' | 'shared';
const LAYOUTS: readonly Layout[] = ['pinned', 'shared'];
const BOTH_CORES = [0, 1];
let current: Layout = 'shared';
/** Moves this process and the upstream to core 1 (pinned) or back to both cores (shared). */
async function enter(next: Layout): Promise<void> {
  current = next;
  const cores = next === 'pinned' ? 1 : BOTH_CORES;
  await pin(process.pid, cores); // skopeo, spawned from here, inherits it
  await pin(upstream.pid, cores);
}
/** A server under test: core 0 of its own when pinned. */
async function place(pid: number): Promise<void> {
  await pin(pid, current === 'pinned' ? 0 : BOTH_CORES);
}

const work = mkdtempSync(path.join(tmpdir(), 'hubcache-bench-'));
const refusing = await startRefusingProxy();
const env = refusing.env();
const tokens = await startTokenIssuer({ pusher: 's3cret' });
const upstream = await startRegistry({ token: tokens });
const front = await startFaultFront(upstream.url, { tokenRealm: tokens.realm });

const layout = new ImageLayout(path.join(work, 'layout'));
const big = await layout.layer([{ name: 'big.bin', random: BIG_MIB * 1024 * 1024 }]);
layout.tag('big', layout.image([big]).manifest);
await pushLayout(layout.dir, 'big', `${new URL(upstream.url).host}/library/big:1`, {
  env,
  creds: 'pusher:s3cret',
});

await pushWarmImage(work, new URL(upstream.url).host, env);
// Blobs each fresh server downloads before the measured pull. A mirror that has run for a while has
// its fill path compiled for good; a fresh one compiles it again during its first fills (perf: V8's
// optimizing compiler took 15-21 % of the mirror's CPU in a 256 MiB fill after one or no earlier
// fill, 7 % after four of 64 MiB: docs/benchmarks.md, "Miss path").
const warmFills = await (async () => {
  const l = new ImageLayout(path.join(work, 'warm-fills'));
  const layers = [];
  for (let i = 0; i < WARM_FILLS; i++)
    layers.push(await l.layer([{ name: `fill${i}.bin`, random: 32 * 1024 * 1024 }]));
  l.tag('fills', l.image(layers).manifest);
  if (layers.length > 0)
    await pushLayout(l.dir, 'fills', `${new URL(upstream.url).host}/library/warm-fills:1`, {
      env,
      creds: 'pusher:s3cret',
    });
  return layers;
})();
async function warmUp(base: string): Promise<void> {
  await fetchWarmImage(base);
  for (const l of warmFills)
    await (await fetch(`${base}/v2/library/warm-fills/blobs/${l.digest}`)).arrayBuffer();
  // Fills commit after their last byte went out.
  await new Promise((r) => setTimeout(r, 500));
}

/**
 * CPU seconds both cores spent so far (/proc/stat: all but idle and iowait). Shared, a pull's wall
 * time on 2 cores is at least the CPU all its processes need, halved: what the mirror adds to that
 * sum is what makes it slower than direct (docs/benchmarks.md, "Miss path").
 */
function machineCpuSeconds(): number {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return (user + nice + system + irq + softirq + steal) / 100; // USER_HZ
}

let pullNo = 0;
/** The last timed pull's CPU: the machine's, and the mirror's own when `pid` was given. */
let lastCpu = { machine: 0, mirror: 0 };
async function timePull(host: string, creds?: string, pid?: number): Promise<number> {
  const out = path.join(work, 'pulls', String(pullNo++));
  mkdirSync(path.dirname(out), { recursive: true });
  const [m0, p0] = [machineCpuSeconds(), pid ? cpuMicros(pid) : 0];
  const started = performance.now();
  await pullImage(`${host}/library/big:1`, out, creds ? { env, creds } : { env });
  const ms = performance.now() - started;
  lastCpu = { machine: machineCpuSeconds() - m0, mirror: pid ? (cpuMicros(pid) - p0) / 1e6 : 0 };
  rmSync(out, { recursive: true, force: true });
  return ms;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const blobGets = () => front.count('GET', /\/blobs\//);
const manifestGets = () => front.count('GET', /\/manifests\//);
const manifestHeads = () => front.count('HEAD', /\/manifests\//);

interface Row {
  path: string;
  coldMs: number;
  warmMs: number;
  upstreamBlobGetsCold: number;
  upstreamBlobGetsWarm: number;
  upstreamManifestGets: number;
  upstreamManifestHeads: number;
}

/** A server a round starts fresh and stops: the host to pull from. */
type Start = () => Promise<{ host: string; pid: number; stop(): Promise<void> }>;
interface Tally {
  colds: number[];
  /** CPU seconds of the whole machine during each cold pull, and of the server's own process. */
  coldCpu: { machine: number; server: number }[];
  warms: number[];
  coldGets: number;
  warmGets: number;
  mGets: number;
  mHeads: number;
}
const tally = (): Tally => ({
  colds: [],
  coldCpu: [],
  warms: [],
  coldGets: 0,
  warmGets: 0,
  mGets: 0,
  mHeads: 0,
});

/** One round of one path: a fresh server, a cold pull, a warm pull. */
async function measureOnce(t: Tally, start: Start): Promise<void> {
  const server = await start();
  const [b0, g0, h0] = [blobGets(), manifestGets(), manifestHeads()];
  t.colds.push(await timePull(server.host, undefined, server.pid));
  t.coldCpu.push({ machine: lastCpu.machine, server: lastCpu.mirror });
  const b1 = blobGets();
  t.warms.push(await timePull(server.host));
  t.coldGets = b1 - b0;
  t.warmGets = blobGets() - b1;
  t.mGets = manifestGets() - g0;
  t.mHeads = manifestHeads() - h0;
  await server.stop();
}

// The mirror as it is run: its own process (npm start's Node flags, default settings), not this
// one, whose event loop also carries the front's proxying.
const startHubcache: Start = async () => {
  const dataDir = mkdtempSync(path.join(work, 'cache-'));
  const m = await startMirrorProcess(front.url, dataDir);
  await place(m.pid);
  await warmUp(m.url);
  return {
    host: new URL(m.url).host,
    pid: m.pid,
    stop: async () => {
      await m.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
};
const startReference: Start = async () => {
  const proxy = await startRegistry({ proxy: { remoteurl: front.url } });
  await place(proxy.pid);
  await warmUp(proxy.url);
  return { host: new URL(proxy.url).host, pid: proxy.pid, stop: () => proxy.stop() };
};

// Rounds interleave the paths (direct, hubcache, reference) and the layouts, and the ratio to direct
// is the median of each round's own ratio: this shared machine's speed drifts within minutes
// (docs/benchmarks.md, "Paired windows"), and a direct pull measured minutes before the mirror's
// compared the machine.
interface LayoutRun {
  /** Per round: the two direct pulls, before and after the mirror's. */
  directPulls: [number, number][];
  directCpu: number[];
  ours: Tally;
  reference: Tally;
}
const newRun = (): LayoutRun => ({
  directPulls: [],
  directCpu: [],
  ours: tally(),
  reference: tally(),
});
const runs: Record<Layout, LayoutRun> = { pinned: newRun(), shared: newRun() };
for (let i = 0; i < ROUNDS; i++) {
  for (const l of LAYOUTS) {
    const run = runs[l];
    await enter(l);
    // Direct through the front as the mirror is: the front is part of the upstream every path pulls from.
    // Two direct pulls bracket the mirror's, and the round's direct figure is their mean: a drift
    // of the machine within the round cancels, and a direct pull has two modes on a shared core
    // (~1.05 or ~1.40 s for 256 MiB), so two samples say more than one (docs/benchmarks.md, "Miss path").
    const directPull = async () => {
      const ms = await timePull(new URL(front.url).host, 'pusher:s3cret');
      return { ms, cpu: lastCpu.machine };
    };
    const before = await directPull();
    await measureOnce(run.ours, startHubcache);
    const after = await directPull();
    run.directPulls.push([before.ms, after.ms]);
    run.directCpu.push((before.cpu + after.cpu) / 2);
    await measureOnce(run.reference, startReference);
    console.error(
      `round ${i + 1} of ${ROUNDS}, ${l}: direct ${before.ms.toFixed(0)} ms, hubcache ${run.ours.colds[i]?.toFixed(0)} ms, direct ${after.ms.toFixed(0)} ms`,
    );
  }
}

/** What one layout's rounds come to: the table's rows, the rounds' own ratios, the CPU. */
function summary(run: LayoutRun) {
  const { directPulls, directCpu, ours, reference } = run;
  // A round's direct figure: the mean of its two direct pulls.
  const direct = directPulls.map(([before, after]) => (before + after) / 2);
  const rows: Row[] = [
    {
      path: 'upstream directly',
      coldMs: median(direct),
      warmMs: median(direct),
      upstreamBlobGetsCold: 2,
      upstreamBlobGetsWarm: 2,
      upstreamManifestGets: 1,
      upstreamManifestHeads: 0,
    },
    ...(
      [
        ['hubcache', ours],
        ['reference registry, proxy mode', reference],
      ] as const
    ).map(([name, t]) => ({
      path: name,
      coldMs: median(t.colds),
      warmMs: median(t.warms),
      upstreamBlobGetsCold: t.coldGets,
      upstreamBlobGetsWarm: t.warmGets,
      upstreamManifestGets: t.mGets,
      upstreamManifestHeads: t.mHeads,
    })),
  ];
  return {
    pulls: rows,
    coldRatios: ours.colds.map((c, i) => c / (direct[i] ?? Number.NaN)),
    // Each round's two direct pulls (before and after the mirror's), its cold pull through hubcache.
    roundsMs: ours.colds.map((c, i) => ({ direct: directPulls[i], hubcache: c })),
    cpu: {
      directMachine: median(directCpu),
      hubcacheMachine: median(ours.coldCpu.map((c) => c.machine)),
      hubcacheOwn: median(ours.coldCpu.map((c) => c.server)),
      hashSeconds,
    },
  };
}

// 20 clients at once on one cold blob.
interface Crowd {
  path: string;
  upstreamGets: number;
  totalMs: number;
  lastFirstByteMs: number;
  allCorrect: boolean;
}
const crowds: Crowd[] = [];
async function crowd(name: string, base: string): Promise<void> {
  const before = front.count('GET', new RegExp(big.digest));
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: 20 }, async () => {
      const res = await request(`${base}/v2/library/big/blobs/${big.digest}`);
      let first = 0;
      const hash = createHash('sha256');
      for await (const chunk of res.body) {
        if (!first) first = performance.now() - started;
        hash.update(chunk as Buffer);
      }
      return { first, ok: res.statusCode === 200 && `sha256:${hash.digest('hex')}` === big.digest };
    }),
  );
  crowds.push({
    path: name,
    upstreamGets: front.count('GET', new RegExp(big.digest)) - before,
    totalMs: performance.now() - started,
    lastFirstByteMs: Math.max(...results.map((r) => r.first)),
    allCorrect: results.every((r) => r.ok),
  });
}
{
  await enter('pinned');
  const dataDir = mkdtempSync(path.join(work, 'cache-'));
  const m = await startMirrorProcess(front.url, dataDir);
  await place(m.pid);
  await crowd('hubcache', m.url);
  await m.stop();
  const proxy = await startRegistry({ proxy: { remoteurl: front.url } });
  await place(proxy.pid);
  await crowd('reference registry, proxy mode', proxy.url);
  await proxy.stop();
}

await front.close();
await upstream.stop();
await tokens.close();
await refusing.close();
rmSync(work, { recursive: true, force: true });

const f = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
// What a verified copy costs at least: sha256 of every byte, measured here on the same bytes.
const hashSeconds = (() => {
  const chunk = Buffer.alloc(64 * 1024 * 1024, 0x5a); // its speed does not depend on the bytes
  const t0 = performance.now();
  createHash('sha256').update(chunk).digest();
  return ((performance.now() - t0) / 1000) * (big.size / chunk.length);
})();
const results = { pinned: summary(runs.pinned), shared: summary(runs.shared) };
const HOW: Record<Layout, string> = {
  pinned: 'server under test on core 0; skopeo, the upstream and its front on core 1',
  shared: 'nothing pinned: every process on both cores',
};
for (const l of LAYOUTS) {
  const r = results[l];
  console.log(
    `\nPull of a ${BIG_MIB} MiB single-layer image with skopeo (median of ${ROUNDS} interleaved rounds), token-auth upstream on loopback; ${l}: ${HOW[l]}\n`,
  );
  console.log(
    '| path | cold pull | warm pull | upstream blob GETs cold / warm | upstream manifest GETs / HEADs |',
  );
  console.log('|---|---|---|---|---|');
  for (const p of r.pulls) {
    console.log(
      `| ${p.path} | ${f(p.coldMs)} | ${f(p.warmMs)} | ${p.upstreamBlobGetsCold} / ${p.upstreamBlobGetsWarm} | ${p.upstreamManifestGets} / ${p.upstreamManifestHeads} |`,
    );
  }
  console.log(
    `\ncold through hubcache / direct, median of the rounds' own ratios: ${median(r.coldRatios).toFixed(2)}× (rounds: ${r.coldRatios.map((x) => x.toFixed(2)).join(', ')})`,
  );
  console.log(
    `CPU during the cold pull (both cores, medians): direct ${r.cpu.directMachine.toFixed(2)} s, through hubcache ${r.cpu.hubcacheMachine.toFixed(2)} s, of which hubcache's own ${r.cpu.hubcacheOwn.toFixed(2)} s (sha256 of the layer alone: ${r.cpu.hashSeconds.toFixed(2)} s)`,
  );
}
console.log(`\n20 clients at once on the cold big blob (${HOW.pinned})\n`);
console.log('| path | upstream GETs | all 20 correct | time to first byte, slowest client | total |');
console.log('|---|---|---|---|---|');
for (const c of crowds)
  console.log(
    `| ${c.path} | ${c.upstreamGets} | ${c.allCorrect} | ${f(c.lastFirstByteMs)} | ${f(c.totalMs)} |`,
  );

writeResult(BIG_MIB === 256 && ROUNDS >= 3 ? 'pull-core' : 'pull-core-quick', {
  commit: commitOf(),
  bigMiB: BIG_MIB,
  rounds: ROUNDS,
  warmFills: WARM_FILLS,
  // The verdict's layout at the top level; the shared one beside it.
  layout: 'pinned',
  pinned: HOW.pinned,
  ...results.pinned,
  shared: results.shared,
  crowd: crowds,
});
