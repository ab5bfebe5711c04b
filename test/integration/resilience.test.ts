import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, get, mirrorFor, tempDataDir } from './harness.js';

let upstream: FakeRegistry;
let mirror: RunningMirror;
let data: Awaited<ReturnType<typeof tempDataDir>>;

async function restart(extraArgs: string[]): Promise<void> {
  await mirror.close();
  mirror = await mirrorFor(upstream, data.dir, extraArgs);
}

beforeEach(async () => {
  upstream = await startFakeRegistry({ auth: true });
  data = await tempDataDir();
  mirror = await mirrorFor(upstream, data.dir);
});

afterEach(async () => {
  await mirror.close();
  await upstream.close();
  await data.remove();
});

describe('offline mode', () => {
  it('serves what is cached and never contacts the upstream', async () => {
    const img = addImage(upstream, 'library/alpine', '1');
    await get(`${mirror.url}/v2/alpine/manifests/1`);
    await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
    await restart(['--offline', '--tag-ttl', '0']);
    const before = upstream.requests.length + upstream.tokenRequests;
    const manifest = await get(`${mirror.url}/v2/alpine/manifests/1`);
    expect(manifest.status).toBe(200);
    expect(manifest.headers['x-cache']).toBe('STALE');
    expect((await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`)).body.equals(img.layer)).toBe(true);
    const missing = await get(`${mirror.url}/v2/alpine/manifests/2`);
    expect(missing.status).toBe(503);
    expect(JSON.parse(missing.body.toString()).errors[0].code).toBe('UNAVAILABLE');
    expect(upstream.requests.length + upstream.tokenRequests).toBe(before);
  });
});

describe('tag TTL by pattern, and invalidation', () => {
  it('rechecks `latest` on every request but trusts version tags', async () => {
    await restart(['--tag-ttl-rule', 'latest=0', '--tag-ttl-rule', 'v*=3600', '--tag-ttl', '3600']);
    addImage(upstream, 'library/app', 'latest');
    addImage(upstream, 'library/app', 'v1');
    for (const tag of ['latest', 'v1']) await get(`${mirror.url}/v2/app/manifests/${tag}`);
    expect((await get(`${mirror.url}/v2/app/manifests/latest`)).headers['x-cache']).toBe('REVALIDATED');
    expect((await get(`${mirror.url}/v2/app/manifests/v1`)).headers['x-cache']).toBe('HIT');
  });

  it('revalidates a tag an operator invalidated, and refuses invalidation from another host', async () => {
    addImage(upstream, 'library/app', 'latest');
    await get(`${mirror.url}/v2/app/manifests/latest`);
    const moved = addImage(upstream, 'library/app', 'latest');
    expect((await get(`${mirror.url}/v2/app/manifests/latest`)).headers['x-cache']).toBe('HIT');
    const res = await request(`${mirror.url}/_hubcache/invalidate?repository=app&tag=latest`, {
      method: 'POST',
    });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toEqual({ repository: 'library/app', tag: 'latest', invalidated: true });
    const after = await get(`${mirror.url}/v2/app/manifests/latest`);
    expect(after.headers['docker-content-digest']).toBe(moved.manifestDigest);
    const bad = await request(`${mirror.url}/_hubcache/invalidate?repository=../etc&tag=latest`, {
      method: 'POST',
    });
    expect(bad.statusCode).toBe(400);
    await bad.body.dump();
  });
});

describe('rate limits', () => {
  it("reads Docker Hub's ratelimit headers, HEADs included", async () => {
    await restart(['--tag-ttl', '0']);
    addImage(upstream, 'library/alpine', '1');
    upstream.manifestHeaders = { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '42;w=21600' };
    await get(`${mirror.url}/v2/alpine/manifests/1`);
    expect(mirror.mirror.routes.default.api.client.rateLimit).toMatchObject({
      limit: 100,
      remaining: 42,
      windowSeconds: 21600,
    });
    upstream.manifestHeaders = { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '41;w=21600' };
    expect((await get(`${mirror.url}/v2/alpine/manifests/1`)).headers['x-cache']).toBe('REVALIDATED');
    expect(upstream.count('HEAD', /manifests\/1$/)).toBe(1);
    expect(mirror.mirror.routes.default.api.client.rateLimit?.remaining).toBe(41);
  });

  it('backs off after a 429 for Retry-After: no upstream request meanwhile, stale served, 429 passed on', async () => {
    await restart(['--tag-ttl', '0']);
    const img = addImage(upstream, 'library/alpine', '1');
    addImage(upstream, 'library/other', '1');
    await get(`${mirror.url}/v2/alpine/manifests/1`);
    upstream.fault = (r) =>
      r.path.includes('/manifests/')
        ? { kind: 'status', status: 429, headers: { 'Retry-After': '120' } }
        : undefined;
    expect((await get(`${mirror.url}/v2/alpine/manifests/1`)).headers['x-cache']).toBe('STALE');
    const during = upstream.requests.length;
    upstream.fault = undefined;
    for (let i = 0; i < 5; i++) {
      const stale = await get(`${mirror.url}/v2/alpine/manifests/1`);
      expect(stale.headers['x-cache']).toBe('STALE');
      expect(stale.headers['docker-content-digest']).toBe(img.manifestDigest);
    }
    const limited = await get(`${mirror.url}/v2/other/manifests/1`);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(100);
    expect(upstream.requests.length).toBe(during);
  });
});

describe('interrupted downloads', () => {
  it('resumes with a Range request from the bytes already received instead of starting over', async () => {
    const img = addImage(upstream, 'library/big', '1', 6 * 1024 * 1024);
    let blobGets = 0;
    upstream.fault = (r) => {
      if (r.method !== 'GET' || !r.path.includes('/blobs/') || !r.authorization) return undefined;
      blobGets++;
      // The first two attempts drop the connection part-way; the third completes. Each cut comes
      // 3 MiB into its body: past the 1 MiB the mirror reads ahead of the fill (upstream/client.ts),
      // which a broken connection loses, so each resume must start past the bytes before it.
      return blobGets <= 2 ? { kind: 'truncate', after: 3 * 1024 * 1024 } : undefined;
    };
    const res = await get(`${mirror.url}/v2/big/blobs/${img.layerDigest}`);
    expect(res.status).toBe(200);
    expect(res.body.equals(img.layer)).toBe(true);
    const ranges = upstream.requests
      .filter((r) => r.path.includes('/blobs/') && r.authorization)
      .map((r) => r.range);
    expect(ranges[0]).toBeUndefined();
    const starts = ranges.slice(1).map((r) => Number(/^bytes=(\d+)-$/.exec(r ?? '')?.[1]));
    expect(starts[0]).toBeGreaterThanOrEqual(1024 * 1024);
    expect(starts[1]).toBeGreaterThanOrEqual((starts[0] ?? 0) + 1024 * 1024);
    expect(ranges.length).toBe(3);
    // Stored: the next request is a hit.
    expect((await get(`${mirror.url}/v2/big/blobs/${img.layerDigest}`)).headers['x-cache']).toBe('HIT');
  });

  it('gives up after a few failed resumes and stores nothing', async () => {
    const img = addImage(upstream, 'library/big', '1', 2 * 1024 * 1024);
    upstream.fault = (r) =>
      r.path.includes('/blobs/') ? { kind: 'truncate', after: 100 * 1024 } : undefined;
    const ok = await request(`${mirror.url}/v2/big/blobs/${img.layerDigest}`)
      .then(async (r) => r.statusCode === 200 && (await r.body.arrayBuffer()).byteLength === img.layer.length)
      .catch(() => false);
    expect(ok).toBe(false);
    upstream.fault = undefined;
    expect((await get(`${mirror.url}/v2/big/blobs/${img.layerDigest}`)).headers['x-cache']).toBe('MISS');
  });
});
