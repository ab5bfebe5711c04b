import { afterEach, beforeEach, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, get, mirrorFor, tempDataDir } from './harness.js';

let hub: FakeRegistry;
let mirror: RunningMirror;
let data: Awaited<ReturnType<typeof tempDataDir>>;

beforeEach(async () => {
  hub = await startFakeRegistry();
  data = await tempDataDir();
});

afterEach(async () => {
  await mirror.close();
  await hub.close();
  await data.remove();
});

// The timeout is the check: with Redis down, every request used to wait seconds per Redis command
// (27 s for one manifest) before going on alone.
it('a replica whose S3 and Redis are unreachable starts, and serves pulls on its own, without waiting on them', async () => {
  process.env.AWS_ACCESS_KEY_ID = 'x';
  process.env.AWS_SECRET_ACCESS_KEY = 'y';
  mirror = await mirrorFor(hub, data.dir, [
    '--s3-bucket',
    'cache',
    '--s3-endpoint',
    'http://127.0.0.1:9',
    '--s3-path-style',
    '--redis',
    'redis://127.0.0.1:9',
  ]);
  expect((await get(`${mirror.url}/v2/`)).status).toBe(200);
  const img = addImage(hub, 'library/alpine', '1', 10_000);
  const manifest = await get(`${mirror.url}/v2/alpine/manifests/1`);
  expect(manifest.headers['docker-content-digest']).toBe(img.manifestDigest);
  const blob = await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
  expect(blob.status).toBe(200);
  expect(blob.body.equals(img.layer)).toBe(true);
}, 15_000);
