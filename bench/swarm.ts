/**
 * Swarm hit rates: N simulated nodes pull, concurrently and in waves, a set of images that share a
 * few big base layers (like Docker Hub's mix), through one mirror whose upstream is the real
 * docker-registry behind a counting front. Each node keeps what it pulled (as dockerd does) and
 * pulls like dockerd: HEAD the tag, GET the manifest by digest, GET the config and missing layers.
 * Reports requests and bytes by outcome, byte hit ratio, upstream GETs per unique blob, upstream
 * manifest requests per tag, and what Docker Hub's pull limit would have counted. Then again with
 * a cache half the working set, against Belady's offline rule on the same request trace.
 * Writes bench/results/swarm.json.
 *
 *   npx tsx bench/swarm.ts [--quick] [--nodes 10] [--waves 3]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { configWith } from '../src/config.js';
import { startMirror } from '../src/listen.js';
import { ImageLayout } from '../test/fixtures/image-layout.js';
import { startFaultFront, startRefusingProxy } from '../test/fixtures/proxies.js';
import { startRegistry } from '../test/fixtures/upstream-process.js';
import { belady, lru, type TraceEntry } from './lib/belady.js';
import { ACCEPT, pick, pushSwarmImages, rng } from './lib/swarm-images.js';
import { commitOf, writeResult } from './results.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    nodes: { type: 'string', default: '10' },
    waves: { type: 'string', default: '3' },
  },
});
const quick = values.quick ?? false;
const NODES = Number(values.nodes);
const WAVES = Number(values.waves);
const APPS = 12;
const PULLS_PER_WAVE = 4;
const MiB = 1024 * 1024;
const BASES = quick ? [8, 4, 2] : [48, 24, 12];

const work = mkdtempSync(path.join(tmpdir(), 'hubcache-swarm-'));
const refusing = await startRefusingProxy();
const registry = await startRegistry();
const front = await startFaultFront(registry.url);
const layout = new ImageLayout(path.join(work, 'layout'));
const sizes = await pushSwarmImages(layout, new URL(registry.url).host, refusing.env(), BASES, APPS);
const uniqueBytes = [...sizes.values()].reduce((a, b) => a + b, 0);

interface Outcome {
  requests: number;
  bytes: number;
}

async function run(maxSize: number | undefined) {
  const before = front.requests.length;
  const mirror = await startMirror(
    configWith({
      upstream: front.url,
      dataDir: path.join(work, `cache-${maxSize ?? 'unbounded'}`),
      listen: '127.0.0.1:0',
      extraArgs: ['--log-level', 'warn', ...(maxSize ? ['--max-size', String(maxSize)] : [])],
    }),
  );
  const outcomes = new Map<string, Outcome>();
  const trace: TraceEntry[] = [];
  const note = (outcome: string, bytes: number) => {
    const o = outcomes.get(outcome) ?? { requests: 0, bytes: 0 };
    o.requests++;
    o.bytes += bytes;
    outcomes.set(outcome, o);
  };
  // Each node from its own address (all of 127/8 is loopback), as a fleet's nodes reach the mirror:
  // the default eviction policy tells them apart (cache/eviction/who-fetched.ts).
  const agents = Array.from(
    { length: NODES },
    (_, node) => new Agent({ localAddress: `127.0.0.${node + 2}` }),
  );
  const get = async (node: number, urlPath: string, method: 'GET' | 'HEAD' = 'GET', accept?: string) => {
    const res = await request(`${mirror.url}${urlPath}`, {
      method,
      headers: accept ? { accept } : {},
      dispatcher: agents[node] as Agent,
    });
    let bytes = 0;
    for await (const chunk of res.body) bytes += (chunk as Buffer).length;
    note(String(res.headers['x-cache'] ?? 'none'), bytes);
    if (res.statusCode !== 200) throw new Error(`${method} ${urlPath}: ${res.statusCode}`);
    return { headers: res.headers, bytes };
  };
  const held: Set<string>[] = Array.from({ length: NODES }, () => new Set());
  let nodePulls = 0;
  const pull = async (node: number, app: number) => {
    nodePulls++;
    const name = `library/app${app}`;
    const head = await get(node, `/v2/${name}/manifests/1`, 'HEAD', ACCEPT);
    const digest = String(head.headers['docker-content-digest']);
    if (held[node]?.has(digest)) return; // up to date: dockerd stops here
    const res = await request(`${mirror.url}/v2/${name}/manifests/${digest}`, {
      headers: { accept: ACCEPT },
      dispatcher: agents[node] as Agent,
    });
    const manifest = (await res.body.json()) as { config: { digest: string }; layers: { digest: string }[] };
    note(String(res.headers['x-cache']), 0);
    for (const blob of [manifest.config, ...manifest.layers]) {
      if (held[node]?.has(blob.digest)) continue;
      trace.push({ key: blob.digest, size: sizes.get(blob.digest) ?? 0 });
      await get(node, `/v2/${name}/blobs/${blob.digest}`);
      held[node]?.add(blob.digest);
    }
    held[node]?.add(digest);
  };
  const started = performance.now();
  for (let wave = 0; wave < WAVES; wave++) {
    await Promise.all(
      Array.from({ length: NODES }, async (_, node) => {
        const random = rng(1000 * wave + node);
        for (let i = 0; i < PULLS_PER_WAVE; i++) await pull(node, pick(random, APPS));
      }),
    );
  }
  const seconds = (performance.now() - started) / 1000;
  await mirror.close();
  await Promise.all(agents.map((a) => a.close()));
  const upstream = front.requests.slice(before).filter((r) => r.status === 200);
  const blobGets = upstream.filter((r) => r.method === 'GET' && r.path.includes('/blobs/'));
  const uniqueRequested = new Set(trace.map((t) => t.key));
  const upstreamBlobBytes = blobGets.reduce((a, r) => a + (sizes.get(r.path.split('/').pop() ?? '') ?? 0), 0);
  const servedBlobBytes = trace.reduce((a, t) => a + t.size, 0);
  return {
    maxSize,
    seconds,
    nodePulls,
    outcomes: Object.fromEntries(outcomes),
    blobRequests: trace.length,
    servedBlobBytes,
    upstreamBlobGets: blobGets.length,
    uniqueBlobs: uniqueRequested.size,
    upstreamGetsPerUniqueBlob: blobGets.length / uniqueRequested.size,
    byteHitRatio: 1 - upstreamBlobBytes / servedBlobBytes,
    upstreamManifestGets: upstream.filter((r) => r.method === 'GET' && r.path.includes('/manifests/')).length,
    upstreamManifestHeads: upstream.filter((r) => r.method === 'HEAD' && r.path.includes('/manifests/'))
      .length,
    trace,
  };
}

const unbounded = await run(undefined);
// Smaller than the working set, but able to hold the biggest base layer.
const capacity = Math.floor(uniqueBytes * 0.6);
const bounded = await run(capacity);
const optimum = belady(bounded.trace, capacity);
const lruModel = lru(bounded.trace, capacity);
await front.close();
await registry.stop();
await refusing.close();
rmSync(work, { recursive: true, force: true });

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
const mib = (b: number) => `${(b / MiB).toFixed(1)} MiB`;
console.log(
  `\n${NODES} nodes × ${WAVES} waves × ${PULLS_PER_WAVE} pulls of ${APPS} images sharing ${BASES.length} base layers (${BASES.join('/')} MiB); ${uniqueBlobsLine()}\n`,
);
function uniqueBlobsLine() {
  return `${sizes.size} unique blobs, ${mib(uniqueBytes)}`;
}
console.log(
  '| cache | node pulls | blob requests | served | byte hit ratio | upstream blob GETs / unique blobs | upstream manifest GETs / HEADs | pulls Docker Hub would count: without mirror → with |',
);
console.log('|---|---|---|---|---|---|---|---|');
for (const r of [unbounded, bounded]) {
  console.log(
    `| ${r.maxSize ? `bounded to ${mib(r.maxSize)}` : 'unbounded'} | ${r.nodePulls} | ${r.blobRequests} | ${mib(r.servedBlobBytes)} | ${pct(r.byteHitRatio)} | ${r.upstreamBlobGets} / ${r.uniqueBlobs} = ${r.upstreamGetsPerUniqueBlob.toFixed(2)} | ${r.upstreamManifestGets} / ${r.upstreamManifestHeads} | ${r.nodePulls} → ${r.upstreamManifestGets} |`,
  );
}
console.log('\nRequests by outcome (X-Cache), unbounded run:');
console.log('| outcome | requests | bytes |');
console.log('|---|---|---|');
for (const [k, v] of Object.entries(unbounded.outcomes))
  console.log(`| ${k} | ${v.requests} | ${mib(v.bytes)} |`);
console.log(`\nCache bounded to 60 % of the working set (${mib(capacity)}), on the same request trace:`);
console.log('| policy | byte hit ratio |');
console.log('|---|---|');
console.log(
  `| hubcache live (the default eviction policy, plus concurrent requests served by one fill) | ${pct(bounded.byteHitRatio)} |`,
);
console.log(`| LRU, replayed one request at a time | ${pct(lruModel.byteHitRatio)} |`);
console.log(`| Belady (offline optimum), replayed one request at a time | ${pct(optimum.byteHitRatio)} |`);
const strip = ({ trace: _, ...r }: typeof unbounded) => r;
writeResult(quick ? 'swarm-quick' : 'swarm', {
  commit: commitOf(),
  nodes: NODES,
  waves: WAVES,
  pullsPerWave: PULLS_PER_WAVE,
  apps: APPS,
  basesMiB: BASES,
  uniqueBlobs: sizes.size,
  uniqueBytes,
  unbounded: strip(unbounded),
  bounded: strip(bounded),
  belady: optimum,
  lruSimulated: lruModel,
});
