import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statfsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { request } from 'undici';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { freePort } from '../fixtures/upstream-process.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, OCI_MANIFEST, spawnMirror, tempDataDir } from './harness.js';

/**
 * The hostile-input suite's siege (docs/SECURITY.md "Bounds"): every kind of attack at once,
 * against the mirror in its own process, while a node keeps pulling a cached image. The mirror
 * must stay up, serve every cached pull whole, write nothing outside its data directory, and keep
 * its peak RSS (VmHWM) under PEAK_RSS_BOUND.
 */
const MiB = 1024 * 1024;
/**
 * The bound docs/SECURITY.md states for this siege. Measured, mirror run through tsx: 218 MiB peak on
 * Node 20, 321-338 MiB on Node 24, whose V8 keeps a young generation twice as big (64 MiB; with
 * --max-semi-space-size=16, as Node 20's, 244 MiB). The bound is there to catch memory that grows
 * with the attack, which would pass it by far.
 */
const PEAK_RSS_BOUND = 384 * MiB;

let good: FakeRegistry;
let evil: Server;
let evilPort = 0;
let parent: Awaited<ReturnType<typeof tempDataDir>>;
let dataDir: string;
let child: ChildProcess | undefined;

/**
 * A hostile upstream: an endless token response, endless manifests and blob bodies (no
 * Content-Length), each written as fast as the mirror reads, for as long as it reads.
 */
function startEvil(): Promise<void> {
  const endless = (res: import('node:http').ServerResponse, head: string, unit: Buffer) => {
    res.write(head);
    const pump = () => {
      while (!res.destroyed && res.write(unit)) {}
      if (!res.destroyed) res.once('drain', pump);
    };
    pump();
  };
  evil = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const unit = Buffer.alloc(64 * 1024, 'a');
    if (url.pathname === '/token') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return endless(res, '{"token":"', unit);
    }
    if (url.pathname.startsWith('/v2/tok/') && !req.headers.authorization) {
      res.writeHead(401, {
        'www-authenticate': `Bearer realm="http://127.0.0.1:${evilPort}/token",service="evil"`,
      });
      return void res.end();
    }
    if (url.pathname.includes('/manifests/')) {
      res.writeHead(200, { 'content-type': OCI_MANIFEST });
      return endless(res, '{"schemaVersion":2,"x":"', unit);
    }
    if (url.pathname.includes('/blobs/')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      return endless(res, '', randomBytes(64 * 1024));
    }
    res.writeHead(200).end('{}');
  });
  return new Promise((resolve) =>
    evil.listen(0, '127.0.0.1', () => {
      evilPort = (evil.address() as AddressInfo).port;
      resolve();
    }),
  );
}

beforeEach(async () => {
  good = await startFakeRegistry();
  await startEvil();
  parent = await tempDataDir();
  dataDir = path.join(parent.dir, 'data');
  mkdirSync(dataDir);
});

afterEach(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  child = undefined;
  evil.closeAllConnections();
  await new Promise((r) => evil.close(r));
  await good.close();
  await parent.remove();
});

function startSieged(port: number, extra: string[]): Promise<ChildProcess> {
  return spawnMirror(port, [
    '--upstream',
    good.url,
    '--data',
    dataDir,
    '--log-level',
    'error',
    '--registry',
    `evil.test=http://127.0.0.1:${evilPort}`,
    ...extra,
  ]).then((proc) => {
    child = proc;
    return proc;
  });
}

async function status(url: string, init: Parameters<typeof request>[1] = {}): Promise<number | 'cut'> {
  try {
    const res = await request(url, { ...init, headersTimeout: 60_000, bodyTimeout: 60_000 });
    // A body cut short is the honest end of a stream the mirror could not verify.
    for await (const _ of res.body) {
    }
    return res.statusCode;
  } catch {
    return 'cut';
  }
}

function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1]) * 1024;
}

it('stays up and serves cached pulls whole under every attack at once; writes only its data dir; peak RSS bounded', async () => {
  const port = await freePort();
  // Fills stop 256 MiB below today's free space: an endless upstream body can take that much at most.
  const free = statfsSync(dataDir);
  const minFree = Math.max(0, free.bavail * free.bsize - 256 * MiB);
  const proc = await startSieged(port, ['--min-free-space', String(minFree), '--idle-timeout', '5']);
  const base = `http://127.0.0.1:${port}`;
  const img = addImage(good, 'library/alpine', '1', 256 * 1024);
  const manifestUrl = `${base}/v2/alpine/manifests/1`;
  const blobUrl = `${base}/v2/alpine/blobs/${img.layerDigest}`;
  expect(await status(blobUrl)).toBe(200);
  expect(await status(manifestUrl, { headers: { accept: OCI_MANIFEST } })).toBe(200);

  let sieging = true;
  const pulls: string[] = [];
  const node = (async () => {
    while (sieging) {
      const m = await request(manifestUrl, { headers: { accept: OCI_MANIFEST } });
      const mBody = Buffer.from(await m.body.arrayBuffer());
      const b = await request(blobUrl);
      const bBody = Buffer.from(await b.body.arrayBuffer());
      pulls.push(
        m.statusCode === 200 &&
          mBody.equals(img.manifestBytes) &&
          b.statusCode === 200 &&
          bBody.equals(img.layer)
          ? 'ok'
          : `${m.statusCode}/${b.statusCode}`,
      );
      // Not a wait for anything: a node's think time between pulls, so the honest client is one
      // node pulling now and then, not a second flood competing with the siege for the two cores.
      await new Promise((r) => setTimeout(r, 20));
    }
  })();

  const statuses = new Map<string, (number | 'cut')[]>();
  const record = async (kind: string, attempts: Promise<number | 'cut'>[]) => {
    statuses.set(kind, await Promise.all(attempts));
  };
  const digest = () => `sha256:${randomBytes(32).toString('hex')}`;
  await Promise.all([
    // Upload sessions: far more than the caps allow.
    record(
      'upload sessions',
      Array.from({ length: 1500 }, (_, i) =>
        status(`${base}/v2/team/s${i % 50}/blobs/uploads/`, { method: 'POST' }),
      ),
    ),
    // Oversized manifests.
    record(
      'oversized manifest',
      Array.from({ length: 8 }, (_, i) =>
        status(`${base}/v2/team/m${i}/manifests/1`, {
          method: 'PUT',
          body: Buffer.alloc(6 * MiB, ' '),
          headers: { 'content-type': OCI_MANIFEST },
        }),
      ),
    ),
    // A hostile upstream: endless token response, endless manifest, endless blobs.
    record('endless token', [status(`${base}/v2/evil.test/tok/app/manifests/1`)]),
    record('endless manifest', [status(`${base}/v2/evil.test/big/app/manifests/1`)]),
    record(
      'endless blob',
      Array.from({ length: 3 }, () => status(`${base}/v2/evil.test/big/app/blobs/${digest()}`)),
    ),
    // Path and name tricks.
    record(
      'path tricks',
      [
        '/v2/../../etc/passwd',
        '/v2/%2e%2e/%2e%2e/etc/passwd/manifests/1',
        '/v2/__proto__/manifests/latest',
        '/v2/constructor/tags/list',
        `/v2/${'a'.repeat(300)}/manifests/1`,
        '/v2/team/x/blobs/uploads/..%2F..%2Fescape',
        '/v2/team/x/manifests/..%2F..%2Fescape',
        `/v2/team/x/blobs/sha256:${'A'.repeat(64)}`,
        '/v2/_catalog?n=-1',
        '/v2/team/x/tags/list?n=99999999999&last=%ff',
      ].map((p) => status(`${base}${p}`)),
    ),
  ]);
  sieging = false;
  await node;

  // Every cached pull during the siege was whole and right.
  expect(pulls.length).toBeGreaterThan(0);
  expect(pulls.filter((p) => p !== 'ok')).toEqual([]);
  // Each attack got the spec's refusal, never a 500.
  const sessions = statuses.get('upload sessions') ?? [];
  expect(sessions.filter((s) => s === 429).length, 'upload sessions beyond the caps').toBeGreaterThan(0);
  // 503 once the endless blobs have taken the disk down to --min-free-space: uploads stop too.
  expect(
    sessions.every((s) => s === 202 || s === 429 || s === 503),
    String([...new Set(sessions)]),
  ).toBe(true);
  expect(statuses.get('oversized manifest')?.every((s) => s === 400 || s === 413)).toBe(true);
  for (const kind of ['endless token', 'endless manifest']) {
    expect(statuses.get(kind), kind).toEqual([503]);
  }
  expect(
    statuses.get('endless blob')?.every((s) => s === 503 || s === 'cut'),
    String(statuses.get('endless blob')),
  ).toBe(true);
  for (const s of statuses.get('path tricks') ?? []) expect(s === 'cut' || s < 500, String(s)).toBe(true);
  // Still up and ready; nothing written beside the data directory.
  expect(await status(`${base}/readyz`)).toBe(200);
  expect(readdirSync(parent.dir)).toEqual(['data']);
  expect(peakRss(proc.pid as number)).toBeLessThan(PEAK_RSS_BOUND);
});
