import { afterEach, beforeEach, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { metricSample } from '../fixtures/request-counts.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { bucketArgs, startFakeS3 } from './fake-s3.js';
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
  mirror = await mirrorFor(hub, data.dir, [
    ...bucketArgs('http://127.0.0.1:9'),
    '--redis',
    'redis://127.0.0.1:9',
    '--shared-degraded',
  ]);
  expect((await get(`${mirror.url}/v2/`)).status).toBe(200);
  const img = addImage(hub, 'library/alpine', '1', 10_000);
  const manifest = await get(`${mirror.url}/v2/alpine/manifests/1`);
  expect(manifest.headers['docker-content-digest']).toBe(img.manifestDigest);
  const blob = await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
  expect(blob.status).toBe(200);
  expect(blob.body.equals(img.layer)).toBe(true);
  // Said, not hidden: /readyz names both down (still ready: a replica works alone), /metrics has 0s.
  const ready = await get(`${mirror.url}/readyz`);
  expect(ready.status).toBe(200);
  const shared = JSON.parse(ready.body.toString()).shared;
  expect(shared.bucket).toMatch(/^down: .*fetching upstream alone/);
  expect(shared.redis).toMatch(/^unreachable \(\w+\): working without the fleet lock$/);
  expect(await metricSample(mirror.url, 'hubcache_shared_bucket_up')).toBe(0);
  expect(await metricSample(mirror.url, 'hubcache_shared_redis_up')).toBe(0);
}, 15_000);

it('a replica whose bucket answers says so in /readyz and /metrics; a mirror without replicas has neither', async () => {
  const s3 = await startFakeS3();
  try {
    mirror = await mirrorFor(hub, data.dir, bucketArgs(s3.url));
    // The start-up check asked it already.
    expect(JSON.parse((await get(`${mirror.url}/readyz`)).body.toString()).shared).toEqual({
      bucket: 'reachable',
    });
    const img = addImage(hub, 'library/alpine', '1', 10_000);
    expect((await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`)).status).toBe(200);
    expect(JSON.parse((await get(`${mirror.url}/readyz`)).body.toString()).shared).toEqual({
      bucket: 'reachable',
    });
    expect(await metricSample(mirror.url, 'hubcache_shared_bucket_up')).toBe(1);
    expect(await metricSample(mirror.url, 'hubcache_shared_redis_up')).toBeNaN();
    await mirror.close();
    mirror = await mirrorFor(hub, data.dir);
    expect(JSON.parse((await get(`${mirror.url}/readyz`)).body.toString()).shared).toBeUndefined();
    expect(await metricSample(mirror.url, 'hubcache_shared_bucket_up')).toBeNaN();
  } finally {
    await s3.close();
  }
});
