import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, expect, it } from 'vitest';
import { configWith } from '../../src/config.js';
import { type RunningMirror, startMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, get, tempDataDir } from './harness.js';

let upstream: FakeRegistry | undefined;
let mirror: RunningMirror | undefined;

afterEach(async () => {
  await mirror?.close();
  await upstream?.close();
});

it('never writes upstream credentials or tokens to the log, even at trace level', async () => {
  upstream = await startFakeRegistry({ auth: true, cdn: true });
  const data = await tempDataDir();
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(String(chunk));
      callback();
    },
  });
  const password = 'correct-horse-battery-staple';
  const config = configWith({
    upstream: upstream.url,
    dataDir: data.dir,
    listen: '127.0.0.1:0',
    extraArgs: [
      '--upstream-username',
      'alice',
      '--upstream-password',
      password,
      '--upstream-redirect-host',
      'localhost',
    ],
  });
  mirror = await startMirror(config, pino({ level: 'trace' }, sink));
  const img = addImage(upstream, 'library/alpine', '1');
  expect((await get(`${mirror.url}/v2/alpine/manifests/1`)).status).toBe(200);
  expect((await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`)).status).toBe(200);
  const log = lines.join('');
  expect(log).toContain('/v2/alpine/manifests/1'); // the log did capture the requests
  expect(log).not.toContain(password);
  expect(log).not.toContain(Buffer.from(`alice:${password}`).toString('base64'));
  expect(log).not.toMatch(/tok-\d/);
  expect(log).not.toContain('sig=abc'); // signed CDN URLs are credentials too
  await data.remove();
});
