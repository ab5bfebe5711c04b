/**
 * Scaling out, side by side in one run: the swarm workload (N nodes pulling, in waves, images that
 * share big base layers; each node pulls like dockerd and keeps what it pulled) against
 *   (a) one mirror on local disk, and
 *   (b) three replicas sharing a real S3 bucket (Ceph RGW) and Redis, nodes spread over them
 *       as a load balancer would (node i → replica i mod 3).
 * The upstream is the real docker-registry behind a counting front. Reports byte hit ratio,
 * upstream blob GETs per unique blob, upstream manifest GETs, wall time and throughput.
 * Writes bench/results/replicas.json.
 *
 *   npm run build && npx tsx bench/replicas.ts [--nodes 12] [--waves 3]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { startRgw } from '../test/fixtures/ceph-rgw.js';
import { ImageLayout } from '../test/fixtures/image-layout.js';
import { startFaultFront, startRefusingProxy } from '../test/fixtures/proxies.js';
import { startRedis } from '../test/fixtures/redis.js';
import { startRegistry } from '../test/fixtures/upstream-process.js';
import { type ServerProcess, startMirrorProcess } from './lib/servers.js';
import { ACCEPT, pick, pushSwarmImages, rng } from './lib/swarm-images.js';
import { commitOf, writeResult } from './results.js';

const { values } = parseArgs({
  options: { nodes: { type: 'string', default: '12' }, waves: { type: 'string', default: '3' } },
});
const NODES = Number(values.nodes);
const WAVES = Number(values.waves);
const APPS = 12;
const PULLS_PER_WAVE = 4;
const MiB = 1024 * 1024;
const BASES = [48, 24, 12];

const work = mkdtempSync(path.join(tmpdir(), 'hubcache-replicas-'));
const refusing = await startRefusingProxy();
const registry = await startRegistry();
const front = await startFaultFront(registry.url);
const layout = new ImageLayout(path.join(work, 'layout'));
const sizes = await pushSwarmImages(layout, new URL(registry.url).host, refusing.env(), BASES, APPS);

/** The swarm's pulls against these mirror URLs (node i uses urls[i mod n]). */
async function swarm(urls: string[]) {
  const before = front.requests.length;
  const held: Set<string>[] = Array.from({ length: NODES }, () => new Set());
  let served = 0;
  let blobRequests = 0;
  const requested = new Set<string>();
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
    const name = `library/app${app}`;
    const head = await read(`${base}/v2/${name}/manifests/1`, 'HEAD');
    const digest = String(head.headers['docker-content-digest']);
    if (held[node]?.has(digest)) return;
    const manifest = JSON.parse((await read(`${base}/v2/${name}/manifests/${digest}`)).body.toString()) as {
      config: { digest: string };
      layers: { digest: string }[];
    };
    for (const blob of [manifest.config, ...manifest.layers]) {
      if (held[node]?.has(blob.digest)) continue;
      const got = (await read(`${base}/v2/${name}/blobs/${blob.digest}`)).bytes;
      if (got !== sizes.get(blob.digest))
        throw new Error(`${blob.digest}: ${got} bytes, expected ${sizes.get(blob.digest)}`);
      served += got;
      blobRequests++;
      requested.add(blob.digest);
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
  const upstream = front.requests.slice(before).filter((r) => r.status === 200);
  const blobGets = upstream.filter((r) => r.method === 'GET' && r.path.includes('/blobs/'));
  const upstreamBlobBytes = blobGets.reduce((a, r) => a + (sizes.get(r.path.split('/').pop() ?? '') ?? 0), 0);
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
  };
}

// (a) one mirror, local disk.
const single = await startMirrorProcess(front.url, path.join(work, 'single'), ['--log-level', 'warn']);
const local = await swarm([single.url]);
await single.stop();

// (b) three replicas on S3 (RGW) + Redis.
const [rgw, redis] = await Promise.all([startRgw(), startRedis()]);
await rgw.createBucket('hubcache');
process.env.AWS_ACCESS_KEY_ID = rgw.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY = rgw.secretAccessKey;
delete process.env.AWS_CA_BUNDLE;
const replicas: ServerProcess[] = [];
for (let i = 0; i < 3; i++) {
  replicas.push(
    await startMirrorProcess(front.url, path.join(work, `replica${i}`), [
      '--log-level',
      'warn',
      '--s3-bucket',
      'hubcache',
      '--s3-endpoint',
      rgw.endpoint,
      '--s3-path-style',
      '--s3-region',
      rgw.region,
      '--redis',
      redis.url,
    ]),
  );
}
const shared = await swarm(replicas.map((r) => r.url));
for (const r of replicas) await r.stop();
await redis.stop();
await rgw.stop();
await front.close();
await registry.stop();
await refusing.close();
rmSync(work, { recursive: true, force: true });

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
console.log(
  `\n${NODES} nodes × ${WAVES} waves × ${PULLS_PER_WAVE} pulls of ${APPS} images sharing ${BASES.length} base layers (${BASES.join('/')} MiB)\n`,
);
console.log(
  '| setup | blob requests | served | byte hit ratio | upstream blob GETs / unique blobs | upstream manifest GETs | wall time | throughput |',
);
console.log('|---|---|---|---|---|---|---|---|');
for (const [label, r] of [
  ['1 mirror, local disk', local],
  ['3 replicas, S3 (Ceph RGW) + Redis', shared],
] as const) {
  console.log(
    `| ${label} | ${r.blobRequests} | ${r.servedMiB.toFixed(0)} MiB | ${pct(r.byteHitRatio)} | ${r.upstreamBlobGets} / ${r.uniqueBlobs} | ${r.upstreamManifestGets} | ${r.seconds.toFixed(2)} s | ${r.mibPerSecond.toFixed(0)} MiB/s |`,
  );
}
writeResult('replicas', { commit: commitOf(), nodes: NODES, waves: WAVES, local, shared });
process.exit(0);
