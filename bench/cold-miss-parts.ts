/**
 * Where one cold miss of a big blob spends its time (issue 18, target 3's second half): the parts
 * of the fill path measured alone on this machine (sha256 on the main thread, the temp-file write,
 * the read back for the client, the fsync), then the whole miss through the mirror against the same
 * GET straight from an upstream in its own process (a file served over loopback, no shaping), and
 * the main thread's CPU profile during one cold miss (self time by function). Prints tables.
 *
 *   npx tsx bench/cold-miss-parts.ts [--mib 256] [--rounds 3]
 */

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { configWith } from '../src/config.js';
import { startMirror } from '../src/listen.js';

const { values } = parseArgs({
  options: { mib: { type: 'string', default: '256' }, rounds: { type: 'string', default: '3' } },
});
const MIB = Number(values.mib);
const ROUNDS = Number(values.rounds);
const blob = randomBytes(MIB * 1024 * 1024);
const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
const work = mkdtempSync(path.join(tmpdir(), 'hubcache-miss-'));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const time = async (f: () => Promise<void> | void) => {
  const t = performance.now();
  await f();
  return performance.now() - t;
};
const chunks = (size: number) => {
  const out: Buffer[] = [];
  for (let o = 0; o < blob.length; o += size) out.push(blob.subarray(o, o + size));
  return out;
};

const parts: Record<string, number[]> = {};
const add = (k: string, ms: number) => {
  parts[k] = [...(parts[k] ?? []), ms];
};
for (let r = 0; r < ROUNDS; r++) {
  add(
    'sha256, 64 KiB updates (main thread)',
    await time(() => {
      const h = createHash('sha256');
      for (const c of chunks(64 * 1024)) h.update(c);
      h.digest();
    }),
  );
  const file = path.join(work, `t${r}`);
  const fh = await open(file, 'w+');
  add(
    'temp-file write, 1 MiB writev batches',
    await time(async () => {
      let pos = 0;
      for (const c of chunks(1024 * 1024)) {
        await fh.writev([c], pos);
        pos += c.length;
      }
    }),
  );
  add(
    'read back for the client, 256 KiB reads (page cache)',
    await time(async () => {
      for (let pos = 0; pos < blob.length; pos += 256 * 1024) {
        const buf = Buffer.allocUnsafe(256 * 1024);
        await fh.read(buf, 0, buf.length, pos);
      }
    }),
  );
  add('datasync of the temp file', await time(() => fh.datasync()));
  await fh.close();
  rmSync(file);
}

// The whole miss: an upstream in its own process serving the blob from a file, read direct and
// through a cold mirror (the client reads in this process, alike for both).
const blobFile = path.join(work, 'blob');
writeFileSync(blobFile, blob);
const server = `
  const http = require('node:http'), fs = require('node:fs');
  const s = http.createServer((req, res) => {
    if (req.url === '/v2/') return void res.writeHead(200).end('{}');
    if (!req.url.endsWith(${JSON.stringify(digest)})) return void res.writeHead(404).end();
    res.writeHead(200, { 'Content-Length': ${blob.length}, 'Docker-Content-Digest': ${JSON.stringify(digest)} });
    if (req.method === 'HEAD') return void res.end();
    fs.createReadStream(${JSON.stringify(blobFile)}, { highWaterMark: 1024 * 1024 }).pipe(res);
  });
  s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;
const upstream = spawn(process.execPath, ['-e', server], { stdio: ['ignore', 'pipe', 'inherit'] });
const port = await new Promise<string>((resolve) =>
  upstream.stdout.once('data', (d) => resolve(String(d).trim())),
);
const upstreamUrl = `http://127.0.0.1:${port}`;
const fetchAll = async (url: string) => {
  const res = await request(url);
  for await (const _ of res.body) {
  }
};
const session = new Session();
session.connect();
const selfMs = new Map<string, number>();
for (let r = 0; r < ROUNDS; r++) {
  add(
    'GET direct from the upstream',
    await time(() => fetchAll(`${upstreamUrl}/v2/library/big/blobs/${digest}`)),
  );
  const dataDir = mkdtempSync(path.join(work, 'cache-'));
  const m = await startMirror(
    configWith({ upstream: upstreamUrl, dataDir, listen: '127.0.0.1:0', extraArgs: ['--log-level', 'warn'] }),
  );
  const profiled = r === ROUNDS - 1;
  if (profiled) {
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
  }
  add(
    'GET through the mirror, cold (client sees the last byte)',
    await time(() => fetchAll(`${m.url}/v2/library/big/blobs/${digest}`)),
  );
  if (profiled) {
    const { profile } = await session.post('Profiler.stop');
    const interval = (profile.endTime - profile.startTime) / 1000 / (profile.samples?.length ?? 1);
    for (const node of profile.nodes) {
      const f = node.callFrame;
      const key = `${f.functionName || '(anonymous)'} ${f.url ? path.basename(f.url) : ''}`.trim();
      selfMs.set(key, (selfMs.get(key) ?? 0) + (node.hitCount ?? 0) * interval);
    }
  }
  add('… and until the fill is committed (fsync, rename)', await time(() => m.mirror.settled()));
  add('GET through the mirror, warm', await time(() => fetchAll(`${m.url}/v2/library/big/blobs/${digest}`)));
  await m.close();
  rmSync(dataDir, { recursive: true, force: true });
}
session.disconnect();
upstream.kill();
rmSync(work, { recursive: true, force: true });

console.log(`\nOne ${MIB} MiB blob, medians of ${ROUNDS}, Node ${process.version}\n`);
console.log('| part | ms | MiB/s |');
console.log('|---|---|---|');
for (const [k, v] of Object.entries(parts)) {
  const ms = median(v);
  console.log(`| ${k} | ${ms.toFixed(0)} | ${((MIB * 1000) / ms).toFixed(0)} |`);
}
const d = median(parts['GET direct from the upstream'] ?? []);
const c = median(parts['GET through the mirror, cold (client sees the last byte)'] ?? []);
console.log(`\ncold miss / direct: ${(c / d).toFixed(2)}×`);
console.log('\nMain thread during the last cold miss (this process: mirror and client), self time\n');
console.log('| function | ms |');
console.log('|---|---|');
for (const [k, ms] of [...selfMs].sort((a, b) => b[1] - a[1]).slice(0, 14))
  console.log(`| ${k} | ${ms.toFixed(0)} |`);
