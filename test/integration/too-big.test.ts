import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, expect, it } from 'vitest';
import { configWith } from '../../src/config.js';
import { type RunningMirror, startMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, get, tempDataDir } from './harness.js';

let upstream: FakeRegistry | undefined;
let mirror: RunningMirror | undefined;
let data: Awaited<ReturnType<typeof tempDataDir>> | undefined;

afterEach(async () => {
  await mirror?.close();
  await upstream?.close();
  await data?.remove();
});

it('a blob larger than --max-size is fetched on every pull, warned about once per digest and counted each time', async () => {
  upstream = await startFakeRegistry();
  data = await tempDataDir();
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(String(chunk));
      callback();
    },
  });
  const config = configWith({
    upstream: upstream.url,
    dataDir: data.dir,
    listen: '127.0.0.1:0',
    extraArgs: ['--max-size', '1MiB'],
  });
  mirror = await startMirror(config, pino({ level: 'info' }, sink));
  const running = mirror;
  const img = addImage(upstream, 'library/big', '1', 2 * 1024 * 1024);
  const blobGets = () =>
    upstream?.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${img.layerDigest}`))
      .length;
  for (const expected of [1, 2]) {
    const res = await get(`${running.url}/v2/library/big/blobs/${img.layerDigest}`);
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(2 * 1024 * 1024);
    await running.mirror.settled();
    // The size bound removes it (it alone is over the bound): the next pull is a miss again.
    await expect.poll(() => running.mirror.blobs.store.usage.totalBytes).toBeLessThanOrEqual(1024 * 1024);
    expect(blobGets()).toBe(expected);
  }
  const warnings = lines
    .map(
      (l) =>
        JSON.parse(l) as { level: number; msg: string; digest?: string; size?: number; maxBytes?: number },
    )
    .filter((l) => l.level === 40 && l.msg.includes('--max-size'));
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toMatchObject({
    digest: img.layerDigest,
    size: 2 * 1024 * 1024,
    maxBytes: 1024 * 1024,
  });
  expect(warnings[0]?.msg).toContain('raise --max-size');
  const metrics = (await get(`${running.url}/metrics`)).body.toString();
  expect(metrics).toMatch(/^hubcache_blobs_too_big_total 2$/m);
});
