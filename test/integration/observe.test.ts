import { chmodSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, get, mirrorFor, tempDataDir } from './harness.js';

let upstream: FakeRegistry;
let mirror: RunningMirror;
let data: Awaited<ReturnType<typeof tempDataDir>>;

beforeEach(async () => {
  upstream = await startFakeRegistry({ auth: true });
  data = await tempDataDir();
  // Layer prefetch off: the outcomes counted are those of client requests alone.
  mirror = await mirrorFor(upstream, data.dir, ['--max-size', '1GiB', '--prefetch-layers', '0']);
});

afterEach(async () => {
  await mirror.close();
  await upstream.close();
  await data.remove();
});

/** One sample's value from the Prometheus text format. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return Number.NaN;
}

describe('/metrics', () => {
  it('counts requests by endpoint and outcome, bytes by source, upstream exchanges and cache state', async () => {
    const img = addImage(upstream, 'library/alpine', '1', 100_000);
    await get(`${mirror.url}/v2/alpine/manifests/1`);
    await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
    await expect.poll(() => mirror.mirror.blobs.inflightCount).toBe(0);
    await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
    await get(`${mirror.url}/v2/alpine/manifests/1`);
    await get(`${mirror.url}/v2/Bad/manifests/1`);
    upstream.manifestHeaders = { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '77;w=21600' };
    addImage(upstream, 'library/other', '1');
    await get(`${mirror.url}/v2/other/manifests/1`);
    const res = await get(`${mirror.url}/metrics`);
    expect(res.status).toBe(200);
    expect(String(res.headers['content-type'])).toContain('text/plain');
    const text = res.body.toString();
    expect(sample(text, 'hubcache_requests_total', { endpoint: 'blob', outcome: 'miss', code: '200' })).toBe(
      1,
    );
    expect(sample(text, 'hubcache_requests_total', { endpoint: 'blob', outcome: 'hit', code: '200' })).toBe(
      1,
    );
    expect(sample(text, 'hubcache_requests_total', { endpoint: 'manifest', outcome: 'hit' })).toBe(1);
    expect(
      sample(text, 'hubcache_requests_total', { endpoint: 'manifest', outcome: 'error', code: '400' }),
    ).toBe(1);
    expect(sample(text, 'hubcache_served_bytes_total', { source: 'cache' })).toBeGreaterThanOrEqual(100_000);
    expect(sample(text, 'hubcache_served_bytes_total', { source: 'upstream' })).toBeGreaterThanOrEqual(
      100_000,
    );
    expect(
      sample(text, 'hubcache_upstream_requests_total', { method: 'GET', code: '401' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sample(text, 'hubcache_upstream_request_duration_seconds_count', { method: 'GET' }),
    ).toBeGreaterThan(0);
    expect(sample(text, 'hubcache_cache_size_bytes')).toBeGreaterThanOrEqual(100_000);
    expect(sample(text, 'hubcache_cache_objects')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'hubcache_cache_max_size_bytes')).toBe(1024 ** 3);
    expect(sample(text, 'hubcache_upstream_ratelimit_remaining')).toBe(77);
    expect(sample(text, 'hubcache_digest_mismatches_total')).toBe(0);
    expect(text).toContain('hubcache_process_resident_memory_bytes');
  });

  it('counts a digest mismatch', async () => {
    const img = addImage(upstream, 'library/alpine', '1', 100_000);
    upstream.fault = (r) => (r.path.includes('/blobs/') ? { kind: 'corrupt' } : undefined);
    await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`).catch(() => undefined);
    await expect.poll(() => mirror.mirror.blobs.inflightCount).toBe(0);
    const text = (await get(`${mirror.url}/metrics`)).body.toString();
    expect(sample(text, 'hubcache_digest_mismatches_total')).toBe(1);
  });
});

describe('metrics path', () => {
  it('serves the metrics at --metrics-path', async () => {
    await mirror.close();
    mirror = await mirrorFor(upstream, data.dir, ['--metrics-path', '/-/prometheus']);
    expect((await get(`${mirror.url}/-/prometheus`)).body.toString()).toContain('hubcache_requests_total');
    expect((await get(`${mirror.url}/metrics`)).status).toBe(404);
  });
});

describe('health', () => {
  it('/healthz answers while the process runs; /readyz reports the upstream without failing on it', async () => {
    expect((await get(`${mirror.url}/healthz`)).status).toBe(200);
    const before = JSON.parse((await get(`${mirror.url}/readyz`)).body.toString());
    expect(before).toEqual({
      ready: true,
      dataDir: 'writable',
      upstream: 'not contacted yet',
      upstreams: { [new URL(upstream.url).host]: 'not contacted yet' },
    });
    await upstream.close();
    await get(`${mirror.url}/v2/alpine/manifests/1`);
    const down = await get(`${mirror.url}/readyz`);
    expect(down.status).toBe(200);
    // Connection refused: the upstream is given a cool-down before it is tried again.
    expect(JSON.parse(down.body.toString()).upstream).toMatch(
      /^unreachable, retrying in \d+ s \(serving from cache\)$/,
    );
    upstream = await startFakeRegistry();
  });

  it('/readyz fails when the data directory cannot take a write', async () => {
    // Root ignores permission bits, so make tmp/ a non-directory instead.
    const { rmSync, writeFileSync } = await import('node:fs');
    const tmp = `${data.dir}/tmp`;
    rmSync(tmp, { recursive: true, force: true });
    writeFileSync(tmp, 'not a directory');
    chmodSync(tmp, 0o444);
    const res = await get(`${mirror.url}/readyz`);
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body.toString()).ready).toBe(false);
  });
});

describe('hubcache stats', () => {
  it('reports cache size, objects and hit ratio from a running mirror and from the data folder', async () => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const run = (args: string[]) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args]);
    const img = addImage(upstream, 'library/alpine', '1', 50_000);
    await get(`${mirror.url}/v2/alpine/manifests/1`); // miss
    await get(`${mirror.url}/v2/alpine/manifests/1`); // hit
    await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`); // miss
    await expect.poll(() => mirror.mirror.blobs.inflightCount).toBe(0);
    await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`); // hit
    const live = JSON.parse((await run(['stats', '--url', mirror.url])).stdout);
    expect(live).toMatchObject({ requests: 4, hitRatio: 0.5 });
    expect(live.cacheBytes).toBeGreaterThanOrEqual(50_000);
    const offline = JSON.parse((await run(['stats', '--data', data.dir])).stdout);
    expect(offline.cacheObjects).toBe(live.cacheObjects);
    expect(offline.cacheBytes).toBe(live.cacheBytes);
  });
});
