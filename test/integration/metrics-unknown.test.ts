import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, get, mirrorFor, tempDataDir } from './harness.js';

/**
 * A gauge whose value is not known has no sample at all: prom-client shows an unset gauge as 0,
 * which an alert reads as "rate-limited" or "bound 0".
 */

let upstream: FakeRegistry;
let data: Awaited<ReturnType<typeof tempDataDir>>;
let mirror: RunningMirror;

beforeEach(async () => {
  upstream = await startFakeRegistry();
  data = await tempDataDir();
});

afterEach(async () => {
  await mirror.close();
  await upstream.close();
  await data.remove();
});

/** The values of `name`'s samples in a Prometheus text exposition. */
const sampled = (text: string, name: string) =>
  text
    .split('\n')
    .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
    .map((l) => ({ value: Number(l.slice(l.lastIndexOf(' ') + 1)) }));

describe('gauges whose value is not known', () => {
  it('the rate-limit headroom is absent until the upstream sent its headers, then reported', async () => {
    mirror = await mirrorFor(upstream, data.dir);
    addImage(upstream, 'library/alpine', '1');
    await get(`${mirror.url}/v2/alpine/manifests/1`);
    let text = (await get(`${mirror.url}/metrics`)).body.toString();
    // Declared (HELP/TYPE), with no sample: not a 0 that reads as "rate-limited".
    expect(text).toContain('# TYPE hubcache_upstream_ratelimit_remaining gauge');
    expect(sampled(text, 'hubcache_upstream_ratelimit_remaining')).toEqual([]);
    expect(sampled(text, 'hubcache_upstream_ratelimit_limit')).toEqual([]);

    upstream.manifestHeaders = { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '0;w=21600' };
    addImage(upstream, 'library/other', '1');
    await get(`${mirror.url}/v2/other/manifests/1`);
    text = (await get(`${mirror.url}/metrics`)).body.toString();
    expect(sampled(text, 'hubcache_upstream_ratelimit_remaining').map((s) => s.value)).toEqual([0]);
    expect(sampled(text, 'hubcache_upstream_ratelimit_limit').map((s) => s.value)).toEqual([100]);
  });

  it('the size bound is absent when the cache is unbounded, and reported when bounded', async () => {
    mirror = await mirrorFor(upstream, data.dir);
    let text = (await get(`${mirror.url}/metrics`)).body.toString();
    expect(sampled(text, 'hubcache_cache_max_size_bytes')).toEqual([]);
    expect(sampled(text, 'hubcache_cache_size_bytes').map((s) => s.value)).toEqual([0]);
    await mirror.close();
    mirror = await mirrorFor(upstream, data.dir, ['--max-size', '1GiB']);
    text = (await get(`${mirror.url}/metrics`)).body.toString();
    expect(sampled(text, 'hubcache_cache_max_size_bytes').map((s) => s.value)).toEqual([1024 ** 3]);
  });
});
