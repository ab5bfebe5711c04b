import { mkdirSync, readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { configWith } from '../../src/config.js';
import { type RunningMirror, startMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, tempDataDir, waitFor } from './harness.js';

let upstream: FakeRegistry;
let mirror: RunningMirror;
let parent: Awaited<ReturnType<typeof tempDataDir>>;
let dataDir: string;

beforeEach(async () => {
  upstream = await startFakeRegistry();
  // The data dir sits alone inside a parent: anything written beside it would show.
  parent = await tempDataDir();
  dataDir = path.join(parent.dir, 'data');
  mkdirSync(dataDir);
  mirror = await startMirror(
    configWith({
      upstream: upstream.url,
      dataDir,
      listen: '127.0.0.1:0',
      extraArgs: ['--client-header-timeout', '1', '--client-idle-timeout', '1'],
    }),
  );
});

afterEach(async () => {
  await mirror.close();
  await upstream.close();
  await parent.remove();
});

/** One raw HTTP/1.1 exchange: what a hostile client can send that no HTTP library would. */
function raw(port: number, text: string | Buffer, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let out = '';
    socket.setTimeout(timeoutMs, () => socket.destroy());
    socket.on('data', (d) => {
      out += d.toString('latin1');
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve(out));
    socket.write(text);
  });
}

const DIGEST = `sha256:${'a'.repeat(64)}`;
const pieces = [
  '..',
  '%2e%2e',
  '%2F',
  '/etc/passwd',
  '//',
  'library',
  'alpine',
  'Alpine',
  'a'.repeat(300),
  'manifests',
  'blobs',
  'tags',
  'list',
  'latest',
  DIGEST,
  `sha256:${'A'.repeat(64)}`,
  `sha256:${'a'.repeat(63)}`,
  `sha512:${'a'.repeat(128)}`,
  'md5:abc',
  '_catalog',
  '.',
  '~',
  '%00',
  '?n=-1',
  '?n=abc&last=%ff',
  '?ns=docker.io',
  '#frag',
];

it('survives thousands of malformed requests: no crash, no 5xx for client errors, nothing written outside the data dir', async () => {
  const port = Number(new URL(mirror.url).port);
  addImage(upstream, 'library/alpine', 'latest', 4096);
  const request = fc.record({
    method: fc.constantFrom(
      'GET',
      'HEAD',
      'GET',
      'HEAD',
      'PUT',
      'DELETE',
      'PATCH',
      'OPTIONS',
      'TRACE',
      'BREW',
    ),
    path: fc
      .array(fc.constantFrom(...pieces), { minLength: 0, maxLength: 7 })
      .map((p) => `/v2/${p.join('/')}`),
    range: fc.option(
      fc.constantFrom(
        'bytes=0-',
        'bytes=-1',
        'bytes=5-1',
        'bytes=a-b',
        'bytes=0-1,2-3',
        'bytes=99999999999999999999-',
        'x'.repeat(5000),
      ),
    ),
    accept: fc.option(
      fc.constantFrom('*/*', 'text/html', ';;;,,,', 'application/vnd.oci.image.index.v1+json;q=0'),
    ),
  });
  const samples = fc.sample(request, { numRuns: 2500, seed: 42 });
  const statuses = new Map<number, number>();
  const fiveHundreds: string[] = [];
  // Bounded concurrency: 25 sockets at a time.
  for (let i = 0; i < samples.length; i += 25) {
    await Promise.all(
      samples.slice(i, i + 25).map(async (r) => {
        const headers = [`${r.method} ${r.path} HTTP/1.1`, 'Host: x', 'Connection: close'];
        if (r.range) headers.push(`Range: ${r.range}`);
        if (r.accept) headers.push(`Accept: ${r.accept}`);
        const reply = await raw(port, `${headers.join('\r\n')}\r\n\r\n`);
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1] ?? 0);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        // 503 is the upstream's failure, not the client's; anything else ≥ 500 is ours.
        if (status >= 500 && status !== 503) fiveHundreds.push(`${r.method} ${r.path} → ${status}`);
        if (status === 0) fiveHundreds.push(`${r.method} ${r.path} → no answer`);
      }),
    );
  }
  // Oversized headers and garbage request lines.
  const huge = await raw(port, `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(100_000)}\r\n\r\n`);
  expect(huge).toMatch(/^HTTP\/1\.1 431/);
  const garbage = await raw(port, Buffer.from([0, 1, 2, 255, 13, 10, 13, 10]));
  expect(garbage === '' || /^HTTP\/1\.1 400/.test(garbage)).toBe(true);

  expect(fiveHundreds).toEqual([]);
  expect(statuses.get(200) ?? 0).toBeGreaterThan(0);
  // Still alive and correct.
  const ok = await raw(port, 'GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  expect(ok).toMatch(/^HTTP\/1\.1 200/);
  // Nothing beside the data dir, and inside it only the store's own layout.
  expect(readdirSync(parent.dir)).toEqual(['data']);
  expect(readdirSync(dataDir).sort()).toEqual(expect.arrayContaining(['blobs', 'tmp']));
  for (const entry of readdirSync(dataDir))
    expect(['blobs', 'tmp', 'repositories', 'hosted', 'uploads']).toContain(entry);
});

it('cuts off a client that dribbles its headers (slowloris)', async () => {
  const port = Number(new URL(mirror.url).port);
  const started = Date.now();
  const closed = await new Promise<boolean>((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n');
    const drip = setInterval(() => socket.write('X-Slow: 1\r\n'), 200);
    socket.on('close', () => {
      clearInterval(drip);
      resolve(true);
    });
    setTimeout(() => {
      clearInterval(drip);
      socket.destroy();
      resolve(false);
    }, 8000);
  });
  expect(closed).toBe(true);
  expect(Date.now() - started).toBeLessThan(8000);
});

/** This process's open files inside `dir` (the mirror runs in it). */
function openFilesUnder(dir: string): string[] {
  const open: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(dir)) open.push(target);
    } catch {
      // Closed between the listing and the readlink.
    }
  }
  return open;
}

it('closes a connection whose client stops reading a blob, and lets go of the file', async () => {
  const port = Number(new URL(mirror.url).port);
  // Bigger than what loopback's socket buffers take in, so the server's writes stall.
  const { layerDigest } = addImage(upstream, 'library/big', 'latest', 32 * 1024 * 1024);
  const url = `${mirror.url}/v2/library/big/blobs/${layerDigest}`;
  await (await fetch(url)).arrayBuffer(); // cached: the next GET is a hit, from the file
  await mirror.mirror.settled();

  // The mirror's end of this client's connection, to watch it go.
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  const accepted: net.Socket[] = [];
  const onConnection = (s: net.Socket) => accepted.push(s);
  mirror.server.on('connection', onConnection);
  let received = 0;
  socket.once('data', (d) => {
    received += d.length;
    socket.pause(); // and never read again
  });
  socket.write(`GET /v2/library/big/blobs/${layerDigest} HTTP/1.1\r\nHost: x\r\n\r\n`);
  await waitFor(() => received > 0, 'the first bytes of the blob');
  mirror.server.off('connection', onConnection);
  const serverSide = accepted.find((s) => s.remotePort === socket.localPort);
  expect(serverSide?.destroyed).toBe(false);
  expect(openFilesUnder(dataDir).length).toBeGreaterThan(0);
  // --client-idle-timeout 1: once nothing moved for a second the mirror drops the connection (the
  // paused client does not notice) and closes the blob's file.
  await waitFor(() => serverSide?.destroyed === true, 'the stalled connection dropped', {
    timeoutMs: 10_000,
  });
  await waitFor(() => openFilesUnder(dataDir).length === 0, 'the blob file closed');
  socket.destroy();
});
