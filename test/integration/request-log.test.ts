import { Writable } from 'node:stream';
import pino from 'pino';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { configWith } from '../../src/config.js';
import { type RunningMirror, startMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, gate, get, tempDataDir } from './harness.js';

/**
 * The one line per /v2 request (server.ts logRequest) tells what happened on the wire: the bytes
 * that reached the client's socket, and the request target as the client sent it.
 */
interface RequestLine {
  method: string;
  path: string;
  status: number;
  bytes: number;
  complete: boolean;
}

let upstream: FakeRegistry | undefined;
let mirror: RunningMirror | undefined;
let removeData: (() => Promise<void>) | undefined;

afterEach(async () => {
  await mirror?.close();
  await upstream?.close();
  await removeData?.();
  mirror = upstream = removeData = undefined;
});

async function start(level = 'info'): Promise<{
  lines: RequestLine[];
  summaries: { hits: number; bytes: number }[];
  base: string;
  upstream: FakeRegistry;
}> {
  const fake = await startFakeRegistry();
  upstream = fake;
  const data = await tempDataDir();
  removeData = data.remove;
  const lines: RequestLine[] = [];
  const summaries: { hits: number; bytes: number }[] = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      for (const text of String(chunk).split('\n').filter(Boolean)) {
        const line = JSON.parse(text) as Partial<RequestLine> & { msg?: string };
        if (line.msg === undefined && line.method) lines.push(line as RequestLine);
        const summary = line as { hits?: number; bytes: number };
        if (summary.hits !== undefined) summaries.push({ hits: summary.hits, bytes: summary.bytes });
      }
      callback();
    },
  });
  const config = configWith({
    upstream: fake.url,
    dataDir: data.dir,
    listen: '127.0.0.1:0',
    extraArgs: ['--upstream-redirect-host', 'localhost'],
  });
  mirror = await startMirror(config, pino({ level }, sink));
  return { lines, summaries, base: mirror.url, upstream: fake };
}

async function lineFor(lines: RequestLine[], path: string, nth = 0): Promise<RequestLine> {
  await expect.poll(() => lines.filter((l) => l.path === path).length).toBeGreaterThan(nth);
  return lines.filter((l) => l.path === path)[nth] as RequestLine;
}

/** Reads the first chunk of a body, then leaves: the connection is closed mid-body. */
async function readThenLeave(url: string): Promise<number> {
  const res = await request(url);
  let received = 0;
  for await (const chunk of res.body) {
    received += (chunk as Buffer).length;
    break;
  }
  res.body.destroy();
  return received;
}

describe('the request log', () => {
  it('logs an error reply with the bytes of its JSON body', async () => {
    const { lines, base } = await start();
    const reply = await get(`${base}/v2/nothing/here/manifests/1`);
    expect(reply.status).toBe(404);
    expect(reply.body.length).toBeGreaterThan(0);
    const line = await lineFor(lines, '/v2/nothing/here/manifests/1');
    expect(line).toMatchObject({ status: 404, bytes: reply.body.length, complete: true });
  });

  it('logs an abandoned download from the cache with the bytes the socket took, not the blob size', async () => {
    const { lines, base, upstream } = await start();
    const size = 32 * 1024 * 1024;
    const img = addImage(upstream, 'library/big', '1', size);
    const url = `${base}/v2/big/blobs/${img.layerDigest}`;
    expect((await get(url)).body.length).toBe(size);
    await mirror?.mirror.settled();
    const received = await readThenLeave(url);
    const line = await lineFor(lines, `/v2/big/blobs/${img.layerDigest}`, 1);
    expect(line.complete).toBe(false);
    expect(line.bytes).toBeGreaterThanOrEqual(received);
    expect(line.bytes).toBeLessThan(size);
  });

  it('logs an abandoned download during a fill with the bytes the socket took, not the blob size', async () => {
    const { lines, base, upstream } = await start();
    const size = 8 * 1024 * 1024;
    const img = addImage(upstream, 'library/held', '1', size);
    const held = gate();
    upstream.fault = (req) =>
      req.path.includes(img.layerDigest)
        ? { kind: 'gate', after: 1024 * 1024, open: held.opened }
        : undefined;
    const received = await readThenLeave(`${base}/v2/held/blobs/${img.layerDigest}`);
    const line = await lineFor(lines, `/v2/held/blobs/${img.layerDigest}`);
    held.open();
    expect(line.complete).toBe(false);
    expect(line.bytes).toBeGreaterThanOrEqual(received);
    expect(line.bytes).toBeLessThan(size);
  });

  it('logs the path with its query, the query bounded in length', async () => {
    const { lines, base, upstream } = await start();
    addImage(upstream, 'library/alpine', '1');
    await get(`${base}/v2/alpine/tags/list?n=1&last=0`);
    await lineFor(lines, '/v2/alpine/tags/list?n=1&last=0');
    const long = `/v2/alpine/tags/list?n=1&last=${'a'.repeat(5000)}`;
    await get(`${base}${long}`);
    await expect
      .poll(() => lines.some((l) => l.path.startsWith('/v2/alpine/tags/list?n=1&last=aaa')))
      .toBe(true);
    const line = lines.find((l) => l.path.startsWith('/v2/alpine/tags/list?n=1&last=aaa')) as RequestLine;
    expect(line.path).toBe(long.slice(0, '/v2/alpine/tags/list?'.length + 512));
  });

  it('logs a fast cache hit at debug only, and sums hits up in one line at info', async () => {
    const { lines, summaries, base, upstream } = await start('info');
    const img = addImage(upstream, 'library/alpine', '1', 4096);
    const url = `${base}/v2/alpine/blobs/${img.layerDigest}`;
    await get(url); // a miss: its own line
    await mirror?.mirror.settled();
    await get(url); // hits: summed up
    await get(url);
    const path = `/v2/alpine/blobs/${img.layerDigest}`;
    expect((await lineFor(lines, path)).status).toBe(200);
    await mirror?.close(); // the summary is written at close (and once a minute)
    expect(lines.filter((l) => l.path === path)).toHaveLength(1);
    expect(summaries).toEqual([{ hits: 2, bytes: 2 * 4096 }]);
  });

  it('logs every request, hits included, at debug', async () => {
    const { lines, summaries, base, upstream } = await start('debug');
    const img = addImage(upstream, 'library/alpine', '1', 4096);
    const url = `${base}/v2/alpine/blobs/${img.layerDigest}`;
    await get(url);
    await mirror?.mirror.settled();
    await get(url);
    const path = `/v2/alpine/blobs/${img.layerDigest}`;
    await lineFor(lines, path, 1);
    await mirror?.close();
    expect(summaries).toEqual([]);
  });
});
