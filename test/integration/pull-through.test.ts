import { access } from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, sha256, startFakeRegistry } from './fake-registry.js';
import {
  addImage,
  DOCKER_MANIFEST,
  gate,
  get,
  mirrorFor,
  OCI_INDEX,
  OCI_MANIFEST,
  tempDataDir,
} from './harness.js';

let upstream: FakeRegistry;
let mirror: RunningMirror;
let data: Awaited<ReturnType<typeof tempDataDir>>;

async function restartMirror(extraArgs: string[] = []): Promise<void> {
  await mirror.close();
  mirror = await mirrorFor(upstream, data.dir, extraArgs);
}

beforeEach(async () => {
  upstream = await startFakeRegistry({ auth: true, cdn: true });
  data = await tempDataDir();
  mirror = await mirrorFor(upstream, data.dir);
});

afterEach(async () => {
  await mirror.close();
  await upstream.close();
  await data.remove();
});

describe('pull API', () => {
  it('answers /v2/ with the API version header', async () => {
    const res = await get(`${mirror.url}/v2/`);
    expect(res.status).toBe(200);
    expect(res.headers['docker-distribution-api-version']).toBe('registry/2.0');
    expect(JSON.parse(res.body.toString())).toEqual({});
  });

  it('serves a cached image with zero upstream requests the second time', async () => {
    // Layer prefetch off: the first blob GET is the client's own miss.
    await restartMirror(['--prefetch-layers', '0']);
    const img = addImage(upstream, 'library/alpine', '3.20');
    const first = await get(`${mirror.url}/v2/library/alpine/manifests/3.20`, { accept: OCI_MANIFEST });
    expect(first.status).toBe(200);
    expect(first.headers['x-cache']).toBe('MISS');
    expect(first.headers['docker-content-digest']).toBe(img.manifestDigest);
    expect(first.headers['content-type']).toBe(OCI_MANIFEST);
    const blob = await get(`${mirror.url}/v2/library/alpine/blobs/${img.layerDigest}`);
    expect(blob.body.equals(img.layer)).toBe(true);
    expect(blob.headers['x-cache']).toBe('MISS');

    const before = upstream.requests.length;
    const again = await get(`${mirror.url}/v2/library/alpine/manifests/3.20`, { accept: OCI_MANIFEST });
    const blobAgain = await get(`${mirror.url}/v2/library/alpine/blobs/${img.layerDigest}`);
    const byDigest = await get(`${mirror.url}/v2/library/alpine/manifests/${img.manifestDigest}`);
    expect(again.headers['x-cache']).toBe('HIT');
    expect(blobAgain.headers['x-cache']).toBe('HIT');
    expect(blobAgain.body.equals(img.layer)).toBe(true);
    expect(byDigest.body.equals(img.manifestBytes)).toBe(true);
    expect(upstream.requests.length).toBe(before);
  });

  it('expands short names and a docker.io/ prefix to one cache entry', async () => {
    const img = addImage(upstream, 'library/busybox', 'latest');
    const spellings = ['busybox', 'library/busybox', 'docker.io/library/busybox', 'docker.io/busybox'];
    for (const name of spellings) {
      const res = await get(`${mirror.url}/v2/${name}/manifests/latest`);
      expect(res.status, name).toBe(200);
      expect(res.headers['docker-content-digest']).toBe(img.manifestDigest);
    }
    expect(upstream.count('GET', /\/manifests\/latest$/)).toBe(1);
    const catalog = JSON.parse((await get(`${mirror.url}/v2/_catalog`)).body.toString());
    expect(catalog).toEqual({ repositories: ['library/busybox'] });
  });

  it('answers HEAD with Docker-Content-Digest and Content-Length and no body', async () => {
    const img = addImage(upstream, 'library/alpine', '1');
    for (const url of [`/v2/alpine/manifests/1`, `/v2/alpine/blobs/${img.layerDigest}`]) {
      const head = await get(`${mirror.url}${url}`, {}, 'HEAD');
      expect(head.status).toBe(200);
      expect(head.headers['docker-content-digest']).toMatch(/^sha256:/);
      expect(Number(head.headers['content-length'])).toBeGreaterThan(0);
      expect(head.body.length).toBe(0);
    }
  });

  it('serves byte ranges of cached blobs and 416 past the end', async () => {
    const img = addImage(upstream, 'library/alpine', '1', 100_000);
    await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
    const part = await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`, { range: 'bytes=10-19' });
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe('bytes 10-19/100000');
    expect(part.body.equals(img.layer.subarray(10, 20))).toBe(true);
    const tail = await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`, { range: 'bytes=99990-' });
    expect(tail.body.equals(img.layer.subarray(99990))).toBe(true);
    const bad = await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`, { range: 'bytes=100000-' });
    expect(bad.status).toBe(416);
    expect(bad.headers['content-range']).toBe('bytes */100000');
  });

  it('serves a range of a blob that is still downloading, ending it once the blob is verified', async () => {
    const { open, opened } = gate();
    const img = addImage(upstream, 'library/big', '1', 4 * 1024 * 1024);
    upstream.fault = (r) =>
      r.path.startsWith('/cdn/') ? { kind: 'gate', after: 1024 * 1024, open: opened } : undefined;
    // Headers go out while the download runs; the range's last byte waits for the digest check
    // (hostile-upstream.test.ts: a complete 206 must never carry unverified bytes).
    const res = await request(`${mirror.url}/v2/big/blobs/${img.layerDigest}`, {
      headers: { range: 'bytes=100-199' },
    });
    expect(res.statusCode).toBe(206);
    const body = res.body.arrayBuffer();
    open();
    expect(Buffer.from(await body).equals(img.layer.subarray(100, 200))).toBe(true);
    const whole = await get(`${mirror.url}/v2/big/blobs/${img.layerDigest}`);
    expect(whole.body.equals(img.layer)).toBe(true);
  });

  it("refuses pushes into Docker Hub's library/ namespace, and deletes of mirrored content", async () => {
    for (const method of ['POST', 'PUT', 'PATCH'] as const) {
      const res = await request(`${mirror.url}/v2/library/alpine/blobs/uploads/`, { method });
      const body = JSON.parse(await res.body.text());
      expect(res.statusCode, method).toBe(403);
      expect(body.errors[0].code).toBe('DENIED');
    }
    const del = await request(`${mirror.url}/v2/library/alpine/manifests/latest`, { method: 'DELETE' });
    expect(del.statusCode).toBe(405);
    expect(JSON.parse(await del.body.text()).errors[0].code).toBe('UNSUPPORTED');
    expect(upstream.requests.length).toBe(0);
  });

  it('rejects bad names, tags and digests with the spec codes before any upstream request', async () => {
    const cases: [string, string][] = [
      ['/v2/Alpine/manifests/latest', 'NAME_INVALID'],
      ['/v2/al..pine/manifests/latest', 'NAME_INVALID'],
      ['/v2/alpine/manifests/-bad', 'TAG_INVALID'],
      ['/v2/alpine/manifests/sha256:1234', 'DIGEST_INVALID'],
      ['/v2/alpine/blobs/sha256:zz', 'DIGEST_INVALID'],
      // Well-formed digests of an algorithm not stored are content this store cannot hold (issue 14).
      ['/v2/alpine/blobs/md5:abc', 'BLOB_UNKNOWN'],
      [`/v2/alpine/manifests/sha512:${'a'.repeat(128)}`, 'MANIFEST_UNKNOWN'],
      [`/v2/${'a'.repeat(256)}/manifests/latest`, 'NAME_INVALID'],
    ];
    for (const [url, code] of cases) {
      const res = await get(`${mirror.url}${url}`);
      expect(JSON.parse(res.body.toString()).errors[0].code, url).toBe(code);
    }
    expect(upstream.requests.length).toBe(0);
  });

  it('accepts the ns query parameter containerd adds', async () => {
    const img = addImage(upstream, 'library/alpine', '3');
    const res = await get(`${mirror.url}/v2/library/alpine/manifests/3?ns=docker.io`);
    expect(res.status).toBe(200);
    expect(res.headers['docker-content-digest']).toBe(img.manifestDigest);
  });

  it('answers 404 MANIFEST_UNKNOWN for a missing manifest by digest, not 500', async () => {
    const res = await get(`${mirror.url}/v2/library/alpine/manifests/sha256:${'0'.repeat(64)}`);
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body.toString()).errors[0].code).toBe('MANIFEST_UNKNOWN');
  });

  it('passes tag lists through with pagination and a relative Link', async () => {
    addImage(upstream, 'library/alpine', 'a');
    addImage(upstream, 'library/alpine', 'b');
    const res = await get(`${mirror.url}/v2/alpine/tags/list?n=1`);
    expect(JSON.parse(res.body.toString()).tags).toEqual(['a', 'b']);
    // The path the client used (alpine, not the upstream's library/alpine), the upstream's n and last.
    expect(res.headers.link).toBe('</v2/alpine/tags/list?last=x&n=1>; rel="next"');
  });
});

describe('upstream token flow and redirects', () => {
  it('asks the token endpoint once per scope and never sends Authorization to the CDN', async () => {
    const img = addImage(upstream, 'library/alpine', '1');
    await get(`${mirror.url}/v2/alpine/manifests/1`);
    await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
    await get(`${mirror.url}/v2/alpine/blobs/${img.configDigest}`);
    expect(upstream.tokenRequests).toBe(1);
    expect(upstream.cdnRequests.length).toBe(2);
    expect(upstream.cdnRequests.every((r) => r.authorization === undefined)).toBe(true);
    // Everything after the first challenge carried the cached token up front.
    expect(upstream.requests.filter((r) => !r.authorization).length).toBe(1);
  });
});

describe('Accept negotiation', () => {
  it('gives a client that accepts no index the linux/amd64 child', async () => {
    const amd = addImage(upstream, 'library/multi', 'amd64-only');
    const arm = addImage(upstream, 'library/multi', 'arm64-only');
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        {
          mediaType: OCI_MANIFEST,
          digest: arm.manifestDigest,
          size: arm.manifestBytes.length,
          platform: { os: 'linux', architecture: 'arm64' },
        },
        {
          mediaType: OCI_MANIFEST,
          digest: amd.manifestDigest,
          size: amd.manifestBytes.length,
          platform: { os: 'linux', architecture: 'amd64' },
        },
      ],
    };
    const indexDigest = upstream.addManifest('library/multi', 'latest', index, OCI_INDEX);
    const full = await get(`${mirror.url}/v2/multi/manifests/latest`, {
      accept: `${OCI_INDEX}, ${OCI_MANIFEST}`,
    });
    expect(full.headers['docker-content-digest']).toBe(indexDigest);
    const single = await get(`${mirror.url}/v2/multi/manifests/latest`, { accept: OCI_MANIFEST });
    expect(single.headers['docker-content-digest']).toBe(amd.manifestDigest);
    expect(single.headers['content-type']).toBe(OCI_MANIFEST);
    const none = await get(`${mirror.url}/v2/multi/manifests/latest`, { accept: DOCKER_MANIFEST });
    expect(none.status).toBe(404);
    expect(JSON.parse(none.body.toString()).errors[0].code).toBe('MANIFEST_UNKNOWN');
  });
});

describe('single flight and streaming', () => {
  it('makes one upstream GET for 20 concurrent cold requests and streams before the upstream finished', async () => {
    const { open, opened } = gate();
    const img = addImage(upstream, 'library/big', '1', 8 * 1024 * 1024);
    upstream.fault = (r) =>
      r.path.startsWith('/cdn/') ? { kind: 'gate', after: 2 * 1024 * 1024, open: opened } : undefined;
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => request(`${mirror.url}/v2/big/blobs/${img.layerDigest}`)),
    );
    // All 20 have status and headers while the upstream is still held at 2 MiB.
    expect(responses.map((r) => r.statusCode)).toEqual(Array(20).fill(200));
    expect(responses.every((r) => r.headers['content-length'] === String(img.layer.length))).toBe(true);
    const metrics = (await get(`${mirror.url}/metrics`)).body.toString();
    expect(metrics).toMatch(/^hubcache_singleflight_waiters 19$/m);
    expect(metrics).toMatch(/^hubcache_inflight_downloads 1$/m);
    const outcomes = responses.map((r) => r.headers['x-cache']).sort();
    expect(outcomes.filter((o) => o === 'MISS').length).toBe(1);
    expect(outcomes.filter((o) => o === 'COALESCED').length).toBe(19);
    open();
    const bodies = await Promise.all(responses.map(async (r) => Buffer.from(await r.body.arrayBuffer())));
    expect(bodies.every((b) => b.equals(img.layer))).toBe(true);
    // One download: one GET of the blob; at 8 MiB it is a ranged fill (cache/ranged-fill.ts), whose
    // other segments are Range GETs of that same download.
    const gets = upstream.cdnRequests.filter((r) => r.method === 'GET');
    expect(gets.filter((r) => r.range === undefined)).toHaveLength(1);
    expect(gets.every((r) => r.range === undefined || /^bytes=\d+-\d+$/.test(r.range))).toBe(true);
  });

  it('finishes and stores a fill when the only client disconnects mid-download', async () => {
    const { open, opened } = gate();
    const img = addImage(upstream, 'library/big', '1', 4 * 1024 * 1024);
    upstream.fault = (r) =>
      r.path.startsWith('/cdn/') ? { kind: 'gate', after: 1024 * 1024, open: opened } : undefined;
    const res = await request(`${mirror.url}/v2/big/blobs/${img.layerDigest}`);
    expect(res.statusCode).toBe(200);
    res.body.destroy();
    open();
    const stored = path.join(
      data.dir,
      'blobs',
      'sha256',
      img.layerDigest.slice(7, 9),
      img.layerDigest.slice(7),
    );
    await expect
      .poll(
        () =>
          access(stored).then(
            () => true,
            () => false,
          ),
        { timeout: 10_000 },
      )
      .toBe(true);
    const before = upstream.cdnRequests.length;
    const again = await get(`${mirror.url}/v2/big/blobs/${img.layerDigest}`);
    expect(again.headers['x-cache']).toBe('HIT');
    expect(again.body.equals(img.layer)).toBe(true);
    expect(upstream.cdnRequests.length).toBe(before);
  });
});

describe('faults: nothing wrong is stored or served', () => {
  it('never stores or completes a corrupted blob, and refetches next time', async () => {
    const img = addImage(upstream, 'library/alpine', '1', 1024 * 1024);
    upstream.fault = (r) => (r.path.startsWith('/cdn/') ? { kind: 'corrupt' } : undefined);
    const bad = request(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`).then((r) => r.body.arrayBuffer());
    await expect(bad).rejects.toThrow();
    upstream.fault = undefined;
    const good = await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
    expect(good.headers['x-cache']).toBe('MISS');
    expect(sha256(good.body)).toBe(img.layerDigest);
    expect(upstream.cdnRequests.length).toBe(2);
  });

  it('gives up on a stalled upstream after the idle timeout and stores nothing', async () => {
    await restartMirror(['--idle-timeout', '1']);
    const img = addImage(upstream, 'library/alpine', '1', 1024 * 1024);
    upstream.fault = (r) => (r.path.startsWith('/cdn/') ? { kind: 'stall', after: 1000 } : undefined);
    await expect(
      request(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`).then((r) => r.body.arrayBuffer()),
    ).rejects.toThrow();
    upstream.fault = undefined;
    const good = await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
    expect(good.headers['x-cache']).toBe('MISS');
    expect(good.body.equals(img.layer)).toBe(true);
  });

  it('serves a cached tag STALE when the upstream answers 429 or 500, and 429 with Retry-After when nothing is cached', async () => {
    await restartMirror(['--tag-ttl', '0']);
    const img = addImage(upstream, 'library/alpine', '1');
    addImage(upstream, 'library/other', '1');
    await get(`${mirror.url}/v2/alpine/manifests/1`);
    for (const status of [429, 500]) {
      upstream.fault = (r) =>
        r.path.includes('/manifests/')
          ? { kind: 'status', status, headers: { 'Retry-After': '60' } }
          : undefined;
      const stale = await get(`${mirror.url}/v2/alpine/manifests/1`);
      expect(stale.status).toBe(200);
      expect(stale.headers['x-cache']).toBe('STALE');
      expect(stale.headers['docker-content-digest']).toBe(img.manifestDigest);
    }
    upstream.fault = (r) =>
      r.path.includes('/manifests/')
        ? { kind: 'status', status: 429, headers: { 'Retry-After': '60' } }
        : undefined;
    const limited = await get(`${mirror.url}/v2/other/manifests/1`);
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toBe('60');
    expect(JSON.parse(limited.body.toString()).errors[0].code).toBe('TOOMANYREQUESTS');
  });

  it('serves everything cached when the upstream is gone, also after a restart', async () => {
    const img = addImage(upstream, 'library/alpine', '1');
    await get(`${mirror.url}/v2/alpine/manifests/1`);
    await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
    await upstream.close();
    await restartMirror(['--tag-ttl', '0']);
    const manifest = await get(`${mirror.url}/v2/alpine/manifests/1`);
    expect(manifest.status).toBe(200);
    expect(manifest.headers['x-cache']).toBe('STALE');
    const byDigest = await get(`${mirror.url}/v2/alpine/manifests/${img.manifestDigest}`);
    expect(byDigest.headers['x-cache']).toBe('HIT');
    const blob = await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
    expect(blob.body.equals(img.layer)).toBe(true);
    const missing = await get(`${mirror.url}/v2/alpine/manifests/2`);
    expect(missing.status).toBe(503);
    expect(JSON.parse(missing.body.toString()).errors[0].code).toBe('UNAVAILABLE');
    upstream = await startFakeRegistry(); // for afterEach
  });
});

describe('tag freshness', () => {
  it('revalidates an expired tag with HEAD and fetches only when the digest moved', async () => {
    await restartMirror(['--tag-ttl', '0']);
    addImage(upstream, 'library/alpine', 'latest');
    await get(`${mirror.url}/v2/alpine/manifests/latest`);
    const same = await get(`${mirror.url}/v2/alpine/manifests/latest`);
    expect(same.headers['x-cache']).toBe('REVALIDATED');
    expect(upstream.count('HEAD', /manifests\/latest$/)).toBe(1);
    expect(upstream.count('GET', /manifests\/latest$/)).toBe(1);
    const moved = addImage(upstream, 'library/alpine', 'latest');
    const fresh = await get(`${mirror.url}/v2/alpine/manifests/latest`);
    expect(fresh.headers['docker-content-digest']).toBe(moved.manifestDigest);
    expect(upstream.count('GET', /manifests\/latest$/)).toBe(2);
  });

  it('trusts a tag within its TTL without asking upstream', async () => {
    addImage(upstream, 'library/alpine', 'latest');
    await get(`${mirror.url}/v2/alpine/manifests/latest`);
    const before = upstream.requests.length;
    addImage(upstream, 'library/alpine', 'latest');
    const res = await get(`${mirror.url}/v2/alpine/manifests/latest`);
    expect(res.headers['x-cache']).toBe('HIT');
    expect(upstream.requests.length).toBe(before);
  });
});

describe('manifests: single flight and conditional requests', () => {
  it('makes one upstream GET for 10 concurrent cold requests of a tag', async () => {
    const img = addImage(upstream, 'library/alpine', 'crowd');
    const replies = await Promise.all(
      Array.from({ length: 10 }, () => get(`${mirror.url}/v2/alpine/manifests/crowd`)),
    );
    expect(replies.every((r) => r.headers['docker-content-digest'] === img.manifestDigest)).toBe(true);
    expect(upstream.count('GET', /manifests\/crowd$/)).toBe(1);
    expect(replies.filter((r) => r.headers['x-cache'] === 'COALESCED').length).toBe(9);
  });

  it('answers If-None-Match with the current digest with 304 and no body', async () => {
    const img = addImage(upstream, 'library/alpine', '1');
    const res = await get(`${mirror.url}/v2/alpine/manifests/1`, {
      'if-none-match': `"${img.manifestDigest}"`,
    });
    expect(res.status).toBe(304);
    expect(res.body.length).toBe(0);
  });
});

describe('only the configured upstream is ever contacted', () => {
  it('refuses another registry named by ?ns= or by a path prefix, with no upstream request', async () => {
    addImage(upstream, 'library/alpine', '1');
    for (const url of [
      '/v2/library/alpine/manifests/1?ns=ghcr.io',
      '/v2/ghcr.io/owner/app/manifests/1',
      `/v2/quay.io/x/y/blobs/sha256:${'a'.repeat(64)}`,
    ]) {
      const res = await get(`${mirror.url}${url}`);
      expect(res.status, url).toBe(404);
      expect(JSON.parse(res.body.toString()).errors[0].code).toBe('NAME_UNKNOWN');
    }
    expect(upstream.requests.length).toBe(0);
    expect((await get(`${mirror.url}/v2/library/alpine/manifests/1?ns=docker.io`)).status).toBe(200);
  });
});

describe('redirects', () => {
  it('refuses a redirect to a host that is neither the upstream nor an allowed CDN, sending it nothing', async () => {
    const { startMirror } = await import('../../src/listen.js');
    const { configWith } = await import('../../src/config.js');
    const strict = await startMirror(
      configWith({ upstream: upstream.url, dataDir: data.dir, listen: '127.0.0.1:0' }),
    );
    try {
      const img = addImage(upstream, 'library/alpine', '1');
      const res = await get(`${strict.url}/v2/alpine/blobs/${img.layerDigest}`);
      expect(res.status).toBe(503);
      expect(upstream.cdnRequests.length).toBe(0);
    } finally {
      await strict.close();
    }
  });
});
