/**
 * Scaling out, side by side in one run, each setup started cold (fresh data dirs, its own bucket
 * prefix, Redis flushed):
 *   (a) one mirror on local disk,
 *   (b) three replicas sharing a real S3 bucket (Ceph RGW) and Redis, without peer streaming, and
 *   (c) the same with --fleet-secret-file and --peer-listen: a replica that finds another holding a
 *       cold blob's download lock streams the blob from that replica as it arrives (peer streaming).
 * Each setup runs two workloads:
 *   - cold fan-out: a fresh blob (48, 24, 12, 12 MiB, after an 8 MiB one that warms the fresh
 *     processes up and is not counted), the upstream throttled so its download lasts ~1 s, asked by
 *     6 clients at the same moment (2 per replica; all 6 on the one mirror). Reports each client's
 *     first body byte after the first client's (followerLagMs), upstream blob GETs per blob (200: a
 *     download; its other segments are range GETs, --upstream-parallel) and peer fills
 *     (hubcache_shared_peer_fills_total). Issue 19: p95 ≤ 100 ms;
 *   - the swarm: N nodes pulling, in waves, images that share big base layers (each node pulls like
 *     dockerd and keeps what it pulled), nodes spread over the replicas as a load balancer would
 *     (node i → replica i mod 3). Byte hit ratio, upstream blob GETs per unique blob, upstream
 *     manifest GETs, wall time, throughput, and fleetVsSingle = replicas' wall time / one mirror's
 *     (issue 19: ≤ 1.3). Before it, uncounted, the same swarm on other images (--warm-swarm, on by
 *     default; --no-warm-swarm: without), so the setups measured have been running, not starting.
 * The upstream is the real docker-registry behind a counting front (test/fixtures/proxies.ts). The
 * mirrors run on core 0; this process (clients and the front), the registry, RGW and Redis on core 1.
 * Writes bench/results/replicas.json.
 *
 *   npm run build && npx tsx bench/replicas.ts [--nodes 12] [--waves 3] [--rounds 3] [--log-level warn] [--logs DIR] [--unpinned] [--setups single,nopeer,peer]
 *
 * --logs DIR keeps each mirror's log (DIR/<setup>-<replica>.log), e.g. with --log-level debug;
 * --unpinned lets every process use both cores (to see what the pinning costs the fleet).
 * --rounds: each setup runs this many times, interleaved, cold each time; the median swarm is reported.
 * --setups: exploring one or two setups (their swarm time, CPU seconds per process and requests by
 * X-Cache are printed; no result file is written).
 */

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { PARALLEL_MIN_BYTES, segmentBytesFor } from '../src/cache/ranged-fill.js';
import { type Rgw, startRgw } from '../test/fixtures/ceph-rgw.js';
import { ImageLayout, type Layer } from '../test/fixtures/image-layout.js';
import { startFaultFront, startRefusingProxy } from '../test/fixtures/proxies.js';
import { type Redis, redisCommand, startRedis } from '../test/fixtures/redis.js';
import { pushLayout } from '../test/fixtures/skopeo-cli.js';
import { freePort, startRegistry } from '../test/fixtures/upstream-process.js';
import { pin } from './lib/load.js';
import { replicasTargets } from './lib/replicas-targets.js';
import { type ServerProcess, startMirrorProcess } from './lib/servers.js';
import { ACCEPT, pick, pushSwarmImages, rng } from './lib/swarm-images.js';
import { commitOf, writeResult } from './results.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '12' },
    waves: { type: 'string', default: '3' },
    'log-level': { type: 'string', default: 'warn' },
    logs: { type: 'string' },
    unpinned: { type: 'boolean', default: false },
    /** Exploring: only these setups (single, nopeer, peer); the result file is then not written. */
    setups: { type: 'string', default: 'single,nopeer,peer' },
    rounds: { type: 'string', default: '3' },
    /** Each setup first runs the swarm on other images (not counted): see setup(). */
    'warm-swarm': { type: 'boolean', default: true },
  },
  allowNegative: true,
});
const NODES = Number(values.nodes);
const WAVES = Number(values.waves);
const LOG_LEVEL = values['log-level'];
const LOGS = values.logs === undefined ? undefined : path.resolve(values.logs);
const PINNED = !values.unpinned;
const SETUPS = new Set(values.setups.split(','));
const ROUNDS = Number(values.rounds);
const WARM_SWARM = values['warm-swarm'];
const ALL_SETUPS = ['single', 'nopeer', 'peer'].every((x) => SETUPS.has(x));
const APPS = 12;
const PULLS_PER_WAVE = 4;
const MiB = 1024 * 1024;
const BASES = [48, 24, 12];
const REPLICAS = 3;
/** The fan-out's blobs, each asked cold by CLIENTS clients at once, each download lasting DOWNLOAD_MS. */
const FANOUT = [48, 24, 12, 12];
/** Fanned out first and not counted: fresh processes answer their first requests slowly. */
const WARMUP_MIB = 8;
const CLIENTS = 6;
const DOWNLOAD_MS = 1000;
/**
 * The mirrors' default --upstream-parallel: a blob of 8 MiB or more is fetched in segments over
 * this many connections, and the front throttles each response on its own.
 */
const UPSTREAM_PARALLEL = 4;

/** The rate per upstream response that makes a download of `size` last DOWNLOAD_MS. */
function throttleFor(size: number): number {
  if (size < PARALLEL_MIN_BYTES) return size / (DOWNLOAD_MS / 1000);
  const segment = segmentBytesFor(size, UPSTREAM_PARALLEL);
  const rounds = Math.ceil(Math.ceil(size / segment) / UPSTREAM_PARALLEL);
  return (rounds * segment) / (DOWNLOAD_MS / 1000);
}

// Mirrors on core 0 (pinned as each starts), everything else on core 1: what this process spawns
// from now on (registry, skopeo, RGW, Redis) inherits its affinity.
if (PINNED) await pin(process.pid, 1);
if (LOGS) mkdirSync(LOGS, { recursive: true });
const work = mkdtempSync(path.join(tmpdir(), 'hubcache-replicas-'));
const running = new Set<ServerProcess>();
const stops: (() => Promise<unknown>)[] = [];
const refusing = await startRefusingProxy();
stops.push(() => refusing.close());
const registry = await startRegistry();
stops.push(() => registry.stop());
const front = await startFaultFront(registry.url);
stops.push(() => front.close());

/** Stops every process this bench started (mirrors first), whatever happened. */
async function cleanUp(): Promise<void> {
  for (const server of running) await server.stop().catch(() => {});
  running.clear();
  for (const stop of stops.splice(0).reverse()) await stop().catch(() => {});
  rmSync(work, { recursive: true, force: true });
}

/** Counters summed over the mirrors' /metrics. */
const COUNTERS = {
  peerFills: 'hubcache_shared_peer_fills_total',
  sharedFills: 'hubcache_shared_fills_total',
  lockWaits: 'hubcache_shared_lock_waits_total',
  published: 'hubcache_shared_published_total',
} as const;
type Counters = Record<keyof typeof COUNTERS, number>;

async function counters(servers: ServerProcess[]): Promise<Counters> {
  const sum: Counters = { peerFills: 0, sharedFills: 0, lockWaits: 0, published: 0 };
  for (const server of servers) {
    const res = await request(`${server.url}/metrics`);
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`${server.url}/metrics: ${res.statusCode}`);
    for (const line of text.split('\n')) {
      if (line.startsWith('#')) continue;
      const [name, value] = line.split(' ');
      const metric = name?.split('{')[0];
      for (const [key, wanted] of Object.entries(COUNTERS) as [keyof Counters, string][])
        if (metric === wanted) sum[key] += Number(value);
    }
  }
  return sum;
}

const delta = (after: Counters, before: Counters): Counters => ({
  peerFills: after.peerFills - before.peerFills,
  sharedFills: after.sharedFills - before.sharedFills,
  lockWaits: after.lockWaits - before.lockWaits,
  published: after.published - before.published,
});

/** Nearest-rank percentile of `xs` (not empty). */
function percentile(xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] as number;
}
const spread = (xs: number[]) => ({
  p50: percentile(xs, 0.5),
  p95: percentile(xs, 0.95),
  max: Math.max(...xs),
});

/** One client's GET of a blob: first body byte and completion, ms after `t0`. */
async function timedGet(url: string, size: number, t0: number) {
  const res = await request(url);
  let first: number | undefined;
  let bytes = 0;
  for await (const chunk of res.body) {
    first ??= performance.now();
    bytes += (chunk as Buffer).length;
  }
  const done = performance.now();
  if (res.statusCode !== 200 || bytes !== size)
    throw new Error(`${url}: ${res.statusCode}, ${bytes} bytes, expected ${size}`);
  return { firstByteMs: (first ?? done) - t0, doneMs: done - t0 };
}

interface FanoutBlob extends Counters {
  mib: number;
  bytes: number;
  /** The replica whose client had the first byte first: the one downloading. */
  holder: number;
  /** Whole-blob GETs (200): downloads. */
  upstreamBlobGets: number;
  /** Range GETs (206): the other segments of a ranged download (--upstream-parallel). */
  upstreamRangeGets: number;
  holderFirstByteMs: number;
  lastDoneMs: number;
  clients: { replica: number; firstByteMs: number; lagMs: number; doneMs: number }[];
}

/**
 * One blob of the cold fan-out: CLIENTS clients spread over the mirrors ask for it at the same
 * moment while the upstream delivers it in ~DOWNLOAD_MS. The first client's first byte is the
 * holder's (its replica downloads); every other client's lag is counted from it.
 */
async function fanOne(servers: ServerProcess[], blob: Layer): Promise<FanoutBlob> {
  front.throttle = {
    match: (p) => p.includes(blob.digest),
    bytesPerSecond: throttleFor(blob.size),
  };
  const before = front.requests.length;
  const countersBefore = await counters(servers);
  const clients = Array.from({ length: CLIENTS }, (_, i) => ({
    replica: i % servers.length,
    url: `${(servers[i % servers.length] as ServerProcess).url}/v2/library/fanout/blobs/${blob.digest}`,
  }));
  const t0 = performance.now();
  const times = await Promise.all(clients.map((c) => timedGet(c.url, blob.size, t0)));
  front.throttle = undefined;
  // The holder publishes to the bucket after its clients are served: let that end before the
  // next blob starts (it would compete for the cores), and count it.
  let after = await counters(servers);
  for (let i = 0; i < 200 && servers.length > 1 && delta(after, countersBefore).published < 1; i++) {
    await new Promise((r) => setTimeout(r, 50));
    after = await counters(servers);
  }
  const first = Math.min(...times.map((t) => t.firstByteMs));
  const holder = clients[times.findIndex((t) => t.firstByteMs === first)]?.replica ?? 0;
  const upstream = front.requests
    .slice(before)
    .filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${blob.digest}`));
  return {
    mib: Math.round(blob.size / MiB),
    bytes: blob.size,
    holder,
    upstreamBlobGets: upstream.filter((r) => r.status === 200).length,
    upstreamRangeGets: upstream.filter((r) => r.status === 206).length,
    ...delta(after, countersBefore),
    holderFirstByteMs: first,
    lastDoneMs: Math.max(...times.map((t) => t.doneMs)),
    clients: times.map((t, i) => ({
      replica: clients[i]?.replica ?? 0,
      firstByteMs: t.firstByteMs,
      lagMs: t.firstByteMs - first,
      doneMs: t.doneMs,
    })),
  };
}

/** The cold fan-out of `blobs`, after one of `warmup` that is not counted. */
async function fanout(servers: ServerProcess[], warmup: Layer, blobs: Layer[]) {
  const warm = await fanOne(servers, warmup);
  const perBlob: FanoutBlob[] = [];
  for (const blob of blobs) perBlob.push(await fanOne(servers, blob));
  const lags = perBlob.flatMap((b) => b.clients.map((c) => c.lagMs));
  // The clients of the replicas that did not download (for one mirror: none).
  const followers = perBlob.flatMap((b) =>
    b.clients.filter((c) => c.replica !== b.holder).map((c) => c.lagMs),
  );
  const sum = (key: keyof Counters) => perBlob.reduce((a, b) => a + b[key], 0);
  return {
    replicas: servers.length,
    clients: CLIENTS,
    downloadMs: DOWNLOAD_MS,
    lagMs: spread(lags),
    otherReplicasLagMs: followers.length ? spread(followers) : undefined,
    upstreamBlobGets: perBlob.reduce((a, b) => a + b.upstreamBlobGets, 0),
    upstreamRangeGets: perBlob.reduce((a, b) => a + b.upstreamRangeGets, 0),
    peerFills: sum('peerFills'),
    sharedFills: sum('sharedFills'),
    lockWaits: sum('lockWaits'),
    lastDoneMs: spread(perBlob.map((b) => b.lastDoneMs)),
    blobs: perBlob,
    warmup: warm,
  };
}

/** CPU seconds (user + system) so far of the mirrors and of the other servers on this machine, by name. */
function cpuSeconds(servers: ServerProcess[]): Record<string, number> {
  const tick = 100;
  const of = (pid: number) => {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      return (Number(f[11]) + Number(f[12])) / tick;
    } catch {
      return 0;
    }
  };
  const out: Record<string, number> = {
    self: process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6,
  };
  servers.forEach((s, i) => {
    out[`mirror${i}`] = of(s.pid);
  });
  for (const name of ['radosgw', 'ceph-osd', 'ceph-mon', 'redis-server', 'docker-registry']) {
    const pids = spawnSync('pgrep', ['-x', name], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    out[name] = pids.reduce((a, p) => a + of(Number(p)), 0);
  }
  return out;
}

/** The swarm's pulls against these mirrors (node i uses servers[i mod n]). */
async function swarm(servers: ServerProcess[], sizes: Map<string, number>, images = 'app') {
  const urls = servers.map((s) => s.url);
  const countersBefore = await counters(servers);
  const before = front.requests.length;
  const held: Set<string>[] = Array.from({ length: NODES }, () => new Set());
  let served = 0;
  let blobRequests = 0;
  const requested = new Set<string>();
  /** Blob requests by X-Cache: how many, the time clients spent in them, and their MiB. */
  const byOutcome = new Map<string, { n: number; ms: number; mib: number }>();
  const read = async (url: string, method: 'GET' | 'HEAD' = 'GET') => {
    const res = await request(url, { method, headers: { accept: ACCEPT } });
    let bytes = 0;
    const chunks: Buffer[] = [];
    for await (const chunk of res.body) {
      bytes += (chunk as Buffer).length;
      if (method === 'GET' && url.includes('/manifests/')) chunks.push(chunk as Buffer);
    }
    if (res.statusCode !== 200) throw new Error(`${method} ${url}: ${res.statusCode}`);
    return { headers: res.headers, bytes, body: Buffer.concat(chunks) };
  };
  const pull = async (node: number, app: number) => {
    const base = urls[node % urls.length] as string;
    const name = `library/${images}${app}`;
    const head = await read(`${base}/v2/${name}/manifests/1`, 'HEAD');
    const digest = String(head.headers['docker-content-digest']);
    if (held[node]?.has(digest)) return;
    const manifest = JSON.parse((await read(`${base}/v2/${name}/manifests/${digest}`)).body.toString()) as {
      config: { digest: string };
      layers: { digest: string }[];
    };
    for (const blob of [manifest.config, ...manifest.layers]) {
      if (held[node]?.has(blob.digest)) continue;
      const t0 = performance.now();
      const answer = await read(`${base}/v2/${name}/blobs/${blob.digest}`);
      const got = answer.bytes;
      const outcome = String(answer.headers['x-cache'] ?? 'none');
      const o = byOutcome.get(outcome) ?? { n: 0, ms: 0, mib: 0 };
      o.n++;
      o.ms += performance.now() - t0;
      o.mib += got / MiB;
      byOutcome.set(outcome, o);
      if (got !== sizes.get(blob.digest))
        throw new Error(`${blob.digest}: ${got} bytes, expected ${sizes.get(blob.digest)}`);
      served += got;
      blobRequests++;
      requested.add(blob.digest);
      held[node]?.add(blob.digest);
    }
    held[node]?.add(digest);
  };
  const cpuBefore = cpuSeconds(servers);
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
  const cpuAfter = cpuSeconds(servers);
  const cpu = Object.fromEntries(
    Object.entries(cpuAfter).map(([k, v]) => [k, Number((v - (cpuBefore[k] ?? 0)).toFixed(2))]),
  );
  const upstream = front.requests.slice(before).filter((r) => r.status === 200);
  const blobGets = upstream.filter((r) => r.method === 'GET' && r.path.includes('/blobs/'));
  const upstreamBlobBytes = blobGets.reduce((a, r) => a + (sizes.get(r.path.split('/').pop() ?? '') ?? 0), 0);
  const { peerFills, sharedFills, lockWaits } = delta(await counters(servers), countersBefore);
  return {
    replicas: urls.length,
    seconds,
    blobRequests,
    servedMiB: served / MiB,
    mibPerSecond: served / MiB / seconds,
    byteHitRatio: 1 - upstreamBlobBytes / served,
    upstreamBlobGets: blobGets.length,
    uniqueBlobs: requested.size,
    upstreamManifestGets: upstream.filter((r) => r.method === 'GET' && r.path.includes('/manifests/')).length,
    peerFills,
    sharedFills,
    lockWaits,
    cpu,
    byOutcome: Object.fromEntries(
      [...byOutcome].map(([k, v]) => [k, { n: v.n, ms: Math.round(v.ms), mib: Math.round(v.mib) }]),
    ),
  };
}

/** A mirror process pinned to core 0, stopped by cleanUp whatever happens. */
async function mirror(name: string, extra: string[]): Promise<ServerProcess> {
  const server = await startMirrorProcess(
    front.url,
    path.join(work, name),
    ['--log-level', LOG_LEVEL, ...extra],
    LOGS ? { logFile: path.join(LOGS, `${name}.log`) } : {},
  );
  running.add(server);
  if (PINNED) await pin(server.pid, 0);
  return server;
}

/** One setup: started cold, the fan-out, then the swarm, then stopped. */
async function setup(
  start: () => Promise<ServerProcess[]>,
  blobs: { warmup: Layer; fanout: Layer[] },
  sizes: Map<string, number>,
  warmSizes: Map<string, number> | undefined,
) {
  const servers = await start();
  try {
    const fan = await fanout(servers, blobs.warmup, blobs.fanout);
    // A fleet (or a mirror) that has run a while: the same workload on other images first, so the
    // measured swarm does not also pay each fresh process compiling its code (perf: the optimizing
    // compiler took 14-16 % of each fresh replica's CPU; docs/benchmarks.md, "Replicas").
    if (warmSizes) await swarm(servers, warmSizes, 'warm');
    const pulls = await swarm(servers, sizes);
    return { fan, pulls };
  } finally {
    for (const server of servers) {
      await server.stop();
      running.delete(server);
    }
  }
}

/** Three replicas on the bucket under `prefix`, Redis flushed first; with `peer`, peer streaming. */
function replicas(rgw: Rgw, redis: Redis, prefix: string, peer: boolean, secretFile: string) {
  return async () => {
    if ((await redisCommand(redis.port, 'FLUSHALL')) !== '+OK') throw new Error('redis: FLUSHALL failed');
    const started: ServerProcess[] = [];
    for (let i = 0; i < REPLICAS; i++) {
      started.push(
        await mirror(`${prefix}-${i}`, [
          ...['--s3-bucket', 'hubcache', '--s3-endpoint', rgw.endpoint, '--s3-path-style'],
          ...['--s3-region', rgw.region, '--s3-prefix', `${prefix}/`, '--redis', redis.url],
          ...(peer
            ? ['--fleet-secret-file', secretFile, '--peer-listen', `127.0.0.1:${await freePort()}`]
            : []),
        ]),
      );
    }
    return started;
  };
}

const benchStarted = performance.now();
let results: Awaited<ReturnType<typeof run>>;
async function run() {
  const layout = new ImageLayout(path.join(work, 'layout'));
  const host = new URL(registry.url).host;
  const sizes = await pushSwarmImages(layout, host, refusing.env(), BASES, APPS);
  const warmSizes = WARM_SWARM
    ? await pushSwarmImages(
        new ImageLayout(path.join(work, 'warm-layout')),
        host,
        refusing.env(),
        BASES,
        APPS,
        'warm',
      )
    : undefined;
  const blobs = {
    warmup: await layout.layer([{ name: 'fanout-warmup', random: WARMUP_MIB * MiB }]),
    fanout: [] as Layer[],
  };
  for (const [i, mib] of FANOUT.entries())
    blobs.fanout.push(await layout.layer([{ name: `fanout${i}`, random: mib * MiB }]));
  layout.tag('fanout', layout.image([blobs.warmup, ...blobs.fanout]).manifest);
  await pushLayout(layout.dir, 'fanout', `${host}/library/fanout:1`, { env: refusing.env() });

  // Three replicas on S3 (RGW) + Redis, each setup and round under its own prefix.
  const [rgw, redis] = await Promise.all([startRgw(), startRedis()]);
  stops.push(
    () => rgw.stop(),
    () => redis.stop(),
  );
  await rgw.createBucket('hubcache');
  process.env.AWS_ACCESS_KEY_ID = rgw.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = rgw.secretAccessKey;
  delete process.env.AWS_CA_BUNDLE;
  const secretFile = path.join(work, 'fleet.secret');
  writeFileSync(secretFile, randomBytes(48).toString('base64'), { mode: 0o600 });
  // Rounds interleaved (a, b, c, a, b, c, ...), each setup started cold every round: one swarm is a
  // few seconds, and a machine's drift then falls on every setup alike. The round with each
  // setup's median swarm time is the one reported.
  type Round = Awaited<ReturnType<typeof setup>>;
  const all: { local: Round[]; noPeer: Round[]; peer: Round[] } = { local: [], noPeer: [], peer: [] };
  for (let round = 0; round < ROUNDS; round++) {
    // (a) one mirror, local disk.
    if (SETUPS.has('single'))
      all.local.push(
        await setup(async () => [await mirror(`single-r${round}`, [])], blobs, sizes, warmSizes),
      );
    // (b) three replicas without peer streaming, (c) with it.
    if (SETUPS.has('nopeer'))
      all.noPeer.push(
        await setup(replicas(rgw, redis, `nopeer-r${round}`, false, secretFile), blobs, sizes, warmSizes),
      );
    if (SETUPS.has('peer'))
      all.peer.push(
        await setup(replicas(rgw, redis, `peer-r${round}`, true, secretFile), blobs, sizes, warmSizes),
      );
  }
  const median = (rounds: Round[]) =>
    rounds.length === 0
      ? undefined
      : [...rounds].sort((a, b) => a.pulls.seconds - b.pulls.seconds)[Math.floor(rounds.length / 2)];
  const seconds = (rounds: Round[]) => rounds.map((r) => Number(r.pulls.seconds.toFixed(2)));
  return {
    local: median(all.local),
    noPeer: median(all.noPeer),
    peer: median(all.peer),
    swarmRounds: { local: seconds(all.local), noPeer: seconds(all.noPeer), peer: seconds(all.peer) },
  };
}
try {
  results = await run();
} finally {
  await cleanUp();
}
const wallSeconds = (performance.now() - benchStarted) / 1000;

if (!ALL_SETUPS) {
  // Exploring: each setup's swarm, and no result file.
  console.log('swarm rounds (s)', JSON.stringify(results.swarmRounds));
  for (const [label, r] of Object.entries({
    local: results.local,
    noPeer: results.noPeer,
    peer: results.peer,
  }))
    if (r)
      console.log(
        label,
        JSON.stringify({
          seconds: r.pulls.seconds,
          cpu: r.pulls.cpu,
          byOutcome: r.pulls.byOutcome,
          fanLag: r.fan.lagMs,
        }),
      );
  process.exit(0);
}
const { swarmRounds } = results;
const { local, noPeer, peer } = results as {
  [K in 'local' | 'noPeer' | 'peer']: NonNullable<(typeof results)[K]>;
};
const fleetVsSingle = {
  noPeerStreaming: noPeer.pulls.seconds / local.pulls.seconds,
  peerStreaming: peer.pulls.seconds / local.pulls.seconds,
};
const rows = [
  ['1 mirror, local disk', local, undefined],
  ['3 replicas, S3 (Ceph RGW) + Redis, no peer streaming', noPeer, fleetVsSingle.noPeerStreaming],
  ['3 replicas, S3 (Ceph RGW) + Redis, peer streaming', peer, fleetVsSingle.peerStreaming],
] as const;
const ms = (x: number) => `${x.toFixed(0)} ms`;
const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

console.log(
  `\nCold fan-out: ${FANOUT.length} blobs (${FANOUT.join('/')} MiB, after a ${WARMUP_MIB} MiB one not counted), each asked by ${CLIENTS} clients at once (2 per replica), the upstream delivering each in ~${DOWNLOAD_MS} ms over ${UPSTREAM_PARALLEL} connections\n`,
);
console.log(
  "| setup | follower lag p50 / p95 / max | other replicas' clients p50 / p95 / max | upstream blob GETs per blob (+ range GETs) | peer fills | bucket fills | lock waits | last client done (per blob) |",
);
console.log('|---|---|---|---|---|---|---|---|');
for (const [label, { fan }] of rows) {
  const o = fan.otherReplicasLagMs;
  console.log(
    `| ${label} | ${ms(fan.lagMs.p50)} / ${ms(fan.lagMs.p95)} / ${ms(fan.lagMs.max)} | ${o ? `${ms(o.p50)} / ${ms(o.p95)} / ${ms(o.max)}` : '–'} | ${fan.blobs.map((b) => b.upstreamBlobGets).join(' / ')} (+ ${fan.blobs.map((b) => b.upstreamRangeGets).join(' / ')}) | ${fan.peerFills} | ${fan.sharedFills} | ${fan.lockWaits} | ${fan.blobs.map((b) => ms(b.lastDoneMs)).join(' / ')} |`,
  );
}
console.log("\nPer blob: MiB, holder replica, holder's first byte, each client's lag (replica:ms)\n");
for (const [label, { fan }] of rows) {
  for (const b of [fan.warmup, ...fan.blobs])
    console.log(
      `  ${label}, ${b.mib} MiB${b === fan.warmup ? ' (warm-up, not counted)' : ''}: holder r${b.holder} first byte at ${ms(b.holderFirstByteMs)}, lags ${b.clients.map((c) => `r${c.replica}:${c.lagMs.toFixed(0)}`).join(' ')}, done by ${ms(b.lastDoneMs)}`,
    );
}

console.log(
  `\nSwarm: ${NODES} nodes × ${WAVES} waves × ${PULLS_PER_WAVE} pulls of ${APPS} images sharing ${BASES.length} base layers (${BASES.join('/')} MiB); ${ROUNDS} rounds, each setup cold each round${WARM_SWARM ? ' (after an uncounted swarm on other images)' : ''}, the median round's figures (wall times of every round: one mirror ${swarmRounds.local.join(' / ')} s, no peer streaming ${swarmRounds.noPeer.join(' / ')} s, peer streaming ${swarmRounds.peer.join(' / ')} s)\n`,
);
console.log(
  '| setup | blob requests | served | byte hit ratio | upstream blob GETs / unique blobs | upstream manifest GETs | peer fills | wall time | throughput | vs 1 mirror |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const [label, { pulls: r }, ratio] of rows) {
  console.log(
    `| ${label} | ${r.blobRequests} | ${r.servedMiB.toFixed(0)} MiB | ${pct(r.byteHitRatio)} | ${r.upstreamBlobGets} / ${r.uniqueBlobs} | ${r.upstreamManifestGets} | ${r.peerFills} | ${r.seconds.toFixed(2)} s | ${r.mibPerSecond.toFixed(0)} MiB/s | ${ratio === undefined ? '1.00×' : `${ratio.toFixed(2)}×`} |`,
  );
}

const figures = {
  commit: commitOf(),
  nodes: NODES,
  waves: WAVES,
  pinned: PINNED ? 'mirrors on core 0; clients, front, registry, RGW, Redis on core 1' : 'no',
  local: local.pulls,
  shared: peer.pulls,
  sharedNoPeer: noPeer.pulls,
  fanout: { mib: FANOUT, local: local.fan, noPeerStreaming: noPeer.fan, peerStreaming: peer.fan },
  fleetVsSingle,
  rounds: ROUNDS,
  warmSwarm: WARM_SWARM,
  swarmRounds,
  benchSeconds: wallSeconds,
};
console.log("\nIssue 19's targets:\n");
console.log('| target | figures | verdict |');
console.log('|---|---|---|');
for (const t of replicasTargets(JSON.parse(JSON.stringify(figures)) as Record<string, unknown>))
  console.log(`| ${t.target} | ${t.figures} | ${t.verdict} |`);
console.log(`\nbench wall time ${wallSeconds.toFixed(0)} s`);
writeResult('replicas', figures);
process.exit(0);
