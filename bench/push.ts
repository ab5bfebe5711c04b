/**
 * Pushes, side by side in one run: the same bytes pushed to hubcache (hosted repositories) and to
 * the reference registry (Debian's docker-registry 2.8, filesystem storage), each on fresh storage
 * every round, servers pinned to core 0 and clients to core 1. Measured:
 * - skopeo copy of an image with one big incompressible layer (the whole push flow: HEAD, POST,
 *   PATCH, PUT, manifest PUT), then the same image pulled back with skopeo;
 * - one blob uploaded whole in the closing PUT, and in 16 MiB chunks (PATCH… PUT);
 * - a 20-image batch of small images pushed at once (compose-style), per-request overhead.
 * Prints a table and writes bench/results/push.json (other sizes or rounds: push-quick.json, as in `npm run bench`).
 *
 *   npm run build && npx tsx bench/push.ts [--big-mib 256] [--rounds 3]
 */

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { ImageLayout } from '../test/fixtures/image-layout.js';
import { startRefusingProxy } from '../test/fixtures/proxies.js';
import { pullImage, pushLayout } from '../test/fixtures/skopeo-cli.js';
import { startRegistry } from '../test/fixtures/upstream-process.js';
import { pin } from './lib/load.js';
import { type ServerProcess, startMirrorProcess } from './lib/servers.js';
import { commitOf, writeResult } from './results.js';

const { values } = parseArgs({
  options: { 'big-mib': { type: 'string', default: '256' }, rounds: { type: 'string', default: '3' } },
});
const BIG_MIB = Number(values['big-mib']);
const ROUNDS = Number(values.rounds);
const CHUNK = 16 * 1024 * 1024;
const BATCH = 20;

await pin(process.pid, 1);
const work = mkdtempSync(path.join(tmpdir(), 'hubcache-bench-push-'));
const refusing = await startRefusingProxy();
const env = refusing.env();

const layout = new ImageLayout(path.join(work, 'layout'));
const big = await layout.layer([{ name: 'big.bin', random: BIG_MIB * 1024 * 1024 }]);
layout.tag('big', layout.image([big]).manifest);
for (let i = 0; i < BATCH; i++) {
  const small = await layout.layer([{ name: `svc${i}.bin`, random: 64 * 1024 }]);
  layout.tag(`svc${i}`, layout.image([small]).manifest);
}
const blob = randomBytes(BIG_MIB * 1024 * 1024);
const blobDigest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;

type Target = { name: string; start(): Promise<{ url: string; pid: number; stop(): Promise<void> }> };
const targets: Target[] = [
  {
    name: 'docker-registry 2.8',
    start: async () => {
      const r = await startRegistry();
      return { url: r.url, pid: r.pid, stop: () => r.stop() };
    },
  },
  {
    name: 'hubcache',
    start: async () => {
      const dir = mkdtempSync(path.join(work, 'mirror-'));
      // The upstream is never contacted for hosted names; an unreachable one proves it. The names
      // are declared hosted: a first push to an undeclared two-component name asks the upstream
      // whether it serves it (docs/SECURITY.md), which an unreachable upstream cannot answer.
      const m: ServerProcess = await startMirrorProcess('http://127.0.0.1:9', dir, [
        '--log-level',
        'warn',
        '--hosted',
        'team/*',
        '--hosted',
        'bench/*',
        '--hosted',
        'svc*',
      ]);
      return {
        url: m.url,
        pid: m.pid,
        stop: async () => {
          await m.stop();
          rmSync(dir, { recursive: true });
        },
      };
    },
  },
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** POST, then the whole blob in the closing PUT (docker-registry 2.8 has no single-POST upload). */
async function monolithic(url: string): Promise<void> {
  const start = await request(`${url}/v2/bench/mono/blobs/uploads/`, { method: 'POST' });
  await start.body.dump();
  const location = new URL(start.headers.location as string, url).href;
  const sep = location.includes('?') ? '&' : '?';
  const res = await request(`${location}${sep}digest=${blobDigest}`, {
    method: 'PUT',
    body: blob,
    headers: { 'content-type': 'application/octet-stream' },
  });
  await res.body.dump();
  if (res.statusCode !== 201) throw new Error(`monolithic upload: ${res.statusCode}`);
}

async function chunked(url: string): Promise<void> {
  const start = await request(`${url}/v2/bench/chunked/blobs/uploads/`, { method: 'POST' });
  await start.body.dump();
  let location = new URL(start.headers.location as string, url).href;
  for (let offset = 0; offset < blob.length; offset += CHUNK) {
    const end = Math.min(offset + CHUNK, blob.length) - 1;
    const res = await request(location, {
      method: 'PATCH',
      body: blob.subarray(offset, end + 1),
      headers: { 'content-range': `${offset}-${end}`, 'content-type': 'application/octet-stream' },
    });
    await res.body.dump();
    if (res.statusCode !== 202) throw new Error(`PATCH: ${res.statusCode}`);
    location = new URL(res.headers.location as string, url).href;
  }
  const sep = location.includes('?') ? '&' : '?';
  const done = await request(`${location}${sep}digest=${blobDigest}`, { method: 'PUT' });
  await done.body.dump();
  if (done.statusCode !== 201) throw new Error(`PUT: ${done.statusCode}`);
}

interface Row {
  operation: string;
  registryMs: number;
  hubcacheMs: number;
}
const figures: Record<string, Record<string, number[]>> = {};
const record = (target: string, op: string, ms: number) => {
  const byTarget = figures[op] ?? {};
  figures[op] = byTarget;
  byTarget[target] = [...(byTarget[target] ?? []), ms];
};

for (let round = 0; round < ROUNDS; round++) {
  for (const target of targets) {
    const server = await target.start();
    await pin(server.pid, 0);
    const host = new URL(server.url).host;
    record(
      target.name,
      `skopeo push, ${BIG_MIB} MiB image`,
      await timed(() => pushLayout(layout.dir, 'big', `${host}/team/big:1`, { env })),
    );
    const out = path.join(work, `pull-${round}-${target.name.replace(/\W/g, '')}`);
    mkdirSync(path.dirname(out), { recursive: true });
    record(
      target.name,
      `skopeo pull back, ${BIG_MIB} MiB image`,
      await timed(() => pullImage(`${host}/team/big:1`, out, { env })),
    );
    rmSync(out, { recursive: true, force: true });
    record(target.name, `one ${BIG_MIB} MiB blob, POST + one PUT`, await timed(() => monolithic(server.url)));
    record(target.name, `one ${BIG_MIB} MiB blob, 16 MiB PATCHes`, await timed(() => chunked(server.url)));
    record(
      target.name,
      `${BATCH} small images at once (skopeo)`,
      await timed(() =>
        Promise.all(
          Array.from({ length: BATCH }, (_, i) =>
            pushLayout(layout.dir, `svc${i}`, `${host}/svc${i}:v0.1`, { env }),
          ),
        ),
      ),
    );
    await server.stop();
  }
}

const rows: Row[] = Object.entries(figures).map(([operation, byTarget]) => ({
  operation,
  registryMs: Math.round(median(byTarget['docker-registry 2.8'] ?? [])),
  hubcacheMs: Math.round(median(byTarget.hubcache ?? [])),
}));
console.log(`\nPushes, median of ${ROUNDS} rounds (fresh storage each round)\n`);
console.log('| operation | docker-registry 2.8 | hubcache | registry / hubcache |');
console.log('|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.operation} | ${(r.registryMs / 1000).toFixed(2)} s | ${(r.hubcacheMs / 1000).toFixed(2)} s | ${(r.registryMs / r.hubcacheMs).toFixed(2)}× |`,
  );
}
writeResult(BIG_MIB === 256 && ROUNDS === 3 ? 'push' : 'push-quick', {
  commit: commitOf(),
  bigMiB: BIG_MIB,
  rounds: ROUNDS,
  rows,
  raw: figures,
});
await refusing.close();
rmSync(work, { recursive: true, force: true });
process.exit(0);
