/**
 * Cold and warm pulls through the mirror, side by side with the same pull straight from the upstream
 * and through the reference registry in proxy mode (Debian's docker-registry 2.8, `proxy.remoteurl`),
 * all against one real token-auth upstream, in one run. Also: 20 clients asking for one cold blob at
 * once. Prints a table and writes bench/results/pull-core.json. The mirror runs as it is run, in
 * its own process (`npm run build` first); every path, the direct one included, goes through the
 * same counting front (in this process), which is part of the upstream they all pull from.
 *
 *   npx tsx bench/pull-core.ts [--big-mib 256] [--rounds 3]
 */

import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { ImageLayout } from '../test/fixtures/image-layout.js';
import { startFaultFront, startRefusingProxy } from '../test/fixtures/proxies.js';
import { pullImage, pushLayout } from '../test/fixtures/skopeo-cli.js';
import { startTokenIssuer } from '../test/fixtures/token-issuer.js';
import { startRegistry } from '../test/fixtures/upstream-process.js';
import { startMirrorProcess } from './lib/servers.js';
import { fetchWarmImage, pushWarmImage } from './lib/warm-image.js';
import { commitOf, writeResult } from './results.js';

const { values } = parseArgs({
  options: { 'big-mib': { type: 'string', default: '256' }, rounds: { type: 'string', default: '3' } },
});
const BIG_MIB = Number(values['big-mib']);
const ROUNDS = Number(values.rounds);

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
async function warmUp(base: string): Promise<void> {
  await fetchWarmImage(base);
  // Fills commit after their last byte went out.
  await new Promise((r) => setTimeout(r, 500));
}

let pullNo = 0;
async function timePull(host: string, creds?: string): Promise<number> {
  const out = path.join(work, 'pulls', String(pullNo++));
  mkdirSync(path.dirname(out), { recursive: true });
  const started = performance.now();
  await pullImage(`${host}/library/big:1`, out, creds ? { env, creds } : { env });
  const ms = performance.now() - started;
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
const rows: Row[] = [];

// Direct from the upstream: the floor for a cold pull.
const direct: number[] = [];
// Through the front as the mirror is: the front is part of the upstream every path pulls from.
for (let i = 0; i < ROUNDS; i++) direct.push(await timePull(new URL(front.url).host, 'pusher:s3cret'));
rows.push({
  path: 'upstream directly',
  coldMs: median(direct),
  warmMs: median(direct),
  upstreamBlobGetsCold: 2,
  upstreamBlobGetsWarm: 2,
  upstreamManifestGets: 1,
  upstreamManifestHeads: 0,
});

async function measure(
  name: string,
  start: () => Promise<{ host: string; stop(): Promise<void> }>,
): Promise<void> {
  const colds: number[] = [];
  const warms: number[] = [];
  let coldGets = 0;
  let warmGets = 0;
  let mGets = 0;
  let mHeads = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const server = await start();
    const [b0, g0, h0] = [blobGets(), manifestGets(), manifestHeads()];
    colds.push(await timePull(server.host));
    const b1 = blobGets();
    warms.push(await timePull(server.host));
    coldGets = b1 - b0;
    warmGets = blobGets() - b1;
    mGets = manifestGets() - g0;
    mHeads = manifestHeads() - h0;
    await server.stop();
  }
  rows.push({
    path: name,
    coldMs: median(colds),
    warmMs: median(warms),
    upstreamBlobGetsCold: coldGets,
    upstreamBlobGetsWarm: warmGets,
    upstreamManifestGets: mGets,
    upstreamManifestHeads: mHeads,
  });
}

// The mirror as it is run: its own process (npm start's Node flags, default settings), not this
// one, whose event loop also carries the front's proxying.
await measure('hubcache', async () => {
  const dataDir = mkdtempSync(path.join(work, 'cache-'));
  const m = await startMirrorProcess(front.url, dataDir);
  await warmUp(m.url);
  return {
    host: new URL(m.url).host,
    stop: async () => {
      await m.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
});

await measure('reference registry, proxy mode', async () => {
  const proxy = await startRegistry({ proxy: { remoteurl: front.url } });
  await warmUp(proxy.url);
  return { host: new URL(proxy.url).host, stop: () => proxy.stop() };
});

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
  const dataDir = mkdtempSync(path.join(work, 'cache-'));
  const m = await startMirrorProcess(front.url, dataDir);
  await crowd('hubcache', m.url);
  await m.stop();
  const proxy = await startRegistry({ proxy: { remoteurl: front.url } });
  await crowd('reference registry, proxy mode', proxy.url);
  await proxy.stop();
}

await front.close();
await upstream.stop();
await tokens.close();
await refusing.close();
rmSync(work, { recursive: true, force: true });

const f = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const ours = rows.find((r) => r.path === 'hubcache');
console.log(
  `\nPull of a ${BIG_MIB} MiB single-layer image with skopeo (median of ${ROUNDS}), token-auth upstream on loopback\n`,
);
console.log(
  '| path | cold pull | warm pull | upstream blob GETs cold / warm | upstream manifest GETs / HEADs |',
);
console.log('|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.path} | ${f(r.coldMs)} | ${f(r.warmMs)} | ${r.upstreamBlobGetsCold} / ${r.upstreamBlobGetsWarm} | ${r.upstreamManifestGets} / ${r.upstreamManifestHeads} |`,
  );
}
const directRow = rows[0];
if (ours && directRow)
  console.log(`\ncold through hubcache / direct: ${(ours.coldMs / directRow.coldMs).toFixed(2)}×`);
console.log('\n20 clients at once on the cold big blob\n');
console.log('| path | upstream GETs | all 20 correct | time to first byte, slowest client | total |');
console.log('|---|---|---|---|---|');
for (const c of crowds)
  console.log(
    `| ${c.path} | ${c.upstreamGets} | ${c.allCorrect} | ${f(c.lastFirstByteMs)} | ${f(c.totalMs)} |`,
  );

writeResult(BIG_MIB === 256 && ROUNDS === 3 ? 'pull-core' : 'pull-core-quick', {
  commit: commitOf(),
  bigMiB: BIG_MIB,
  rounds: ROUNDS,
  pulls: rows,
  crowd: crowds,
});
