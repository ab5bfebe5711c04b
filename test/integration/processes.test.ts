import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { freePort } from '../fixtures/upstream-process.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, gate, get, mirrorFor, spawnMirror, tempDataDir, waitFor } from './harness.js';

const MiB = 1024 * 1024;
let upstream: FakeRegistry;
let data: Awaited<ReturnType<typeof tempDataDir>>;
const children: ChildProcess[] = [];
const mirrors: RunningMirror[] = [];

beforeEach(async () => {
  upstream = await startFakeRegistry();
  data = await tempDataDir();
});

afterEach(async () => {
  for (const child of children.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const m of mirrors.splice(0)) await m.close();
  await upstream.close();
  await data.remove();
});

async function startMirrorProcess(port: number, extra: string[] = []): Promise<ChildProcess> {
  const child = await spawnMirror(port, [
    '--upstream',
    upstream.url,
    '--data',
    data.dir,
    '--log-level',
    'warn',
    ...extra,
  ]);
  children.push(child);
  return child;
}

it('kill -9 mid-download: no partial file is ever served, the temp file is cleaned, the next pull is whole', async () => {
  const port = await freePort();
  // One stream per blob: segments of 2 MiB would each end before the gate, and the whole blob
  // would arrive (and its temp file be renamed) before the poll below could see it half written.
  const child = await startMirrorProcess(port, ['--upstream-parallel', '1']);
  const img = addImage(upstream, 'library/big', '1', 8 * MiB);
  const held = gate();
  upstream.fault = (r) =>
    r.path.includes('/blobs/') ? { kind: 'gate', after: 3 * MiB, open: held.opened } : undefined;
  const client = fetch(`http://127.0.0.1:${port}/v2/big/blobs/${img.layerDigest}`)
    .then((r) => r.arrayBuffer())
    .catch(() => undefined);
  const tmp = path.join(data.dir, 'tmp');
  // A child process under CI's parallel load can take longer than poll's 1 s default to get here.
  await expect
    .poll(() => readdirSync(tmp).map((f) => statSync(path.join(tmp, f)).size)[0] ?? 0, { timeout: 10_000 })
    .toBeGreaterThan(MiB);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  expect(await client).toBeUndefined(); // the client saw a broken download, never a whole wrong one
  held.open();
  upstream.fault = undefined;
  const stored = path.join(
    data.dir,
    'blobs',
    'sha256',
    img.layerDigest.slice(7, 9),
    img.layerDigest.slice(7),
  );
  expect(existsSync(stored)).toBe(false);
  const leftovers = readdirSync(tmp);
  expect(leftovers.length).toBe(1);
  // Time passes: the leftover is older than any live download could leave it.
  const longAgo = Date.now() / 1000 - 3600;
  utimesSync(path.join(tmp, leftovers[0] ?? ''), longAgo, longAgo);
  await startMirrorProcess(port);
  await expect.poll(() => readdirSync(tmp), { timeout: 10_000 }).toEqual([]);
  const res = await get(`http://127.0.0.1:${port}/v2/big/blobs/${img.layerDigest}`);
  expect(res.headers['x-cache']).toBe('MISS');
  expect(res.body.equals(img.layer)).toBe(true);
});

it('two mirrors on one data directory fill the same blobs at once and stay consistent', async () => {
  const one = await mirrorFor(upstream, data.dir);
  const two = await mirrorFor(upstream, data.dir);
  mirrors.push(one, two);
  const images = Array.from({ length: 4 }, (_, i) => addImage(upstream, `library/img${i}`, '1', 2 * MiB));
  const replies = await Promise.all(
    images.flatMap((img, i) => [
      get(`${one.url}/v2/img${i}/blobs/${img.layerDigest}`),
      get(`${two.url}/v2/img${i}/blobs/${img.layerDigest}`),
      get(`${one.url}/v2/img${i}/manifests/1`),
      get(`${two.url}/v2/img${i}/manifests/1`),
    ]),
  );
  expect(replies.every((r) => r.status === 200)).toBe(true);
  images.forEach((img, i) => {
    expect(replies[i * 4]?.body.equals(img.layer)).toBe(true);
    expect(replies[i * 4 + 1]?.body.equals(img.layer)).toBe(true);
  });
  await expect.poll(() => readdirSync(path.join(data.dir, 'tmp'))).toEqual([]);
  // Each served from the other's store afterwards, without the upstream.
  const before = upstream.requests.length;
  for (const [i, img] of images.entries()) {
    const res = await get(`${two.url}/v2/img${i}/blobs/${img.layerDigest}`);
    expect(res.body.equals(img.layer)).toBe(true);
  }
  expect(upstream.requests.length).toBe(before);
});

it('SIGTERM mid-download: the download finishes and is stored, no temp file is left, the process exits', async () => {
  const port = await freePort();
  // One stream per blob: segments of 2 MiB would each end before the gate, and the whole blob
  // would arrive (and its temp file be renamed) before the poll below could see it half written.
  const child = await startMirrorProcess(port, ['--upstream-parallel', '1']);
  const img = addImage(upstream, 'library/big', '1', 8 * MiB);
  const held = gate();
  upstream.fault = (r) =>
    r.path.includes('/blobs/') ? { kind: 'gate', after: 2 * MiB, open: held.opened } : undefined;
  void fetch(`http://127.0.0.1:${port}/v2/big/blobs/${img.layerDigest}`)
    .then((r) => r.arrayBuffer())
    .catch(() => undefined);
  const tmp = path.join(data.dir, 'tmp');
  await expect.poll(() => readdirSync(tmp).length).toBe(1);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  // The process has taken the signal once its listener is closed (the first step of stopping):
  // only then may the download go on, so that it is one a stopping mirror finishes.
  await waitFor(() => refusesConnections(port), 'the stopping mirror to close its listener');
  held.open();
  expect(await exited).toBe(0);
  expect(readdirSync(tmp)).toEqual([]);
  const stored = path.join(
    data.dir,
    'blobs',
    'sha256',
    img.layerDigest.slice(7, 9),
    img.layerDigest.slice(7),
  );
  expect(existsSync(stored)).toBe(true);
});

/** Whether a new connection to 127.0.0.1:`port` is refused (nothing listens there any more). */
function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}
