import { rmSync, writeFileSync } from 'node:fs';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, get, mirrorFor, tempDataDir } from './harness.js';

/**
 * Routes and tags meeting (issue 14): with two registries configured, whatever a request was
 * routed to is what its errors, readiness, invalidation and pagination links are about.
 */
let hub: FakeRegistry;
let ghcr: FakeRegistry;
let mirror: RunningMirror;
let data: Awaited<ReturnType<typeof tempDataDir>>;

beforeEach(async () => {
  hub = await startFakeRegistry({ auth: true });
  ghcr = await startFakeRegistry({ auth: true });
  data = await tempDataDir();
  mirror = await mirrorFor(hub, data.dir, ['--registry', `ghcr.test=${ghcr.url}`]);
});

afterEach(async () => {
  await mirror.close();
  await hub.close();
  await ghcr.close();
  await data.remove();
});

const json = (body: Buffer) => JSON.parse(body.toString());
const hubHost = () => new URL(hub.url).host;

async function post(
  url: string,
): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  const res = await request(url, { method: 'POST' });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body };
}

describe('an outage of a second registry names that registry', () => {
  it('503 and /readyz name ghcr.test, not the default upstream', async () => {
    addImage(hub, 'owner/app', '1');
    expect((await get(`${mirror.url}/v2/owner/app/manifests/1`)).status).toBe(200);
    const ghcrUrl = ghcr.url;
    await ghcr.close();
    const res = await get(`${mirror.url}/v2/ghcr.test/owner/app/manifests/1`);
    expect(res.status).toBe(503);
    const error = json(res.body).errors[0];
    expect(error.code).toBe('UNAVAILABLE');
    expect(error.message).toBe(`upstream registry ghcr.test (${ghcrUrl}) unreachable`);
    // The same through containerd's ?ns=.
    const viaNs = json((await get(`${mirror.url}/v2/owner/app/manifests/2?ns=ghcr.test`)).body);
    expect(viaNs.errors[0].message).toContain('ghcr.test');
    const ready = json((await get(`${mirror.url}/readyz`)).body);
    expect(ready.upstream).toBe('reachable');
    expect(ready.upstreams[hubHost()]).toBe('reachable');
    expect(ready.upstreams['ghcr.test']).toMatch(/^unreachable, retrying in \d+ s \(serving from cache\)$/);
    ghcr = await startFakeRegistry();
  });

  it('an upstream 429 passed through names the registry that answered it, with its Retry-After', async () => {
    ghcr.fault = () => ({ kind: 'status', status: 429, headers: { 'Retry-After': '120' } });
    addImage(ghcr, 'owner/app', '1');
    const res = await get(`${mirror.url}/v2/ghcr.test/owner/app/manifests/1`);
    expect(res.status).toBe(429);
    expect(res.headers['retry-after']).toBe('120');
    const error = json(res.body).errors[0];
    expect(error.code).toBe('TOOMANYREQUESTS');
    expect(error.message).toBe(`upstream registry ghcr.test (${ghcr.url}) rate limit: retry later`);
    expect(error.message).not.toContain(hubHost());
  });

  it("a registry's rate limit names that registry", async () => {
    ghcr.fault = () => ({ kind: 'status', status: 429, headers: { 'Retry-After': '120' } });
    addImage(ghcr, 'owner/app', '1');
    // The first 429 is passed through; the mirror then backs off that registry only.
    expect((await get(`${mirror.url}/v2/ghcr.test/owner/app/manifests/1`)).status).toBe(429);
    const res = await get(`${mirror.url}/v2/ghcr.test/owner/app/manifests/1`);
    expect(res.status).toBe(429);
    expect(json(res.body).errors[0].message).toBe(
      `upstream registry ghcr.test (${ghcr.url}) rate limit: retry later`,
    );
    addImage(hub, 'owner/app', '1');
    expect((await get(`${mirror.url}/v2/owner/app/manifests/1`)).status).toBe(200);
  });
});

describe('/_hubcache/summary', () => {
  it('reports every registry by host, the default one as `upstream` too', async () => {
    addImage(ghcr, 'owner/app', '1');
    expect((await get(`${mirror.url}/v2/ghcr.test/owner/app/manifests/1`)).status).toBe(200);
    const summary = json((await get(`${mirror.url}/_hubcache/summary`)).body);
    expect(summary.upstream).toMatchObject({ url: hub.url, reachable: null });
    expect(Object.keys(summary.upstreams).sort()).toEqual([hubHost(), 'ghcr.test'].sort());
    expect(summary.upstreams[hubHost()]).toMatchObject({ url: hub.url, reachable: null });
    expect(summary.upstreams['ghcr.test']).toMatchObject({ url: ghcr.url, reachable: true, offline: false });
  });
});

describe('POST /_hubcache/invalidate', () => {
  it("resolves the repository like a request does and rechecks that registry's tag", async () => {
    addImage(ghcr, 'owner/app', '1');
    addImage(hub, 'owner/app', '1');
    await get(`${mirror.url}/v2/ghcr.test/owner/app/manifests/1`);
    await get(`${mirror.url}/v2/owner/app/manifests/1`);
    const heads = () => ghcr.count('HEAD', /\/manifests\/1$/) + ghcr.count('GET', /\/manifests\/1$/);
    const before = heads();
    const byPrefix = await post(`${mirror.url}/_hubcache/invalidate?repository=ghcr.test/owner/app&tag=1`);
    expect(byPrefix.status).toBe(200);
    expect(json(byPrefix.body)).toEqual({ repository: 'ghcr.test/owner/app', tag: '1', invalidated: true });
    const again = await get(`${mirror.url}/v2/ghcr.test/owner/app/manifests/1`);
    expect(again.status).toBe(200);
    expect(heads()).toBe(before + 1);
    const byNs = await post(`${mirror.url}/_hubcache/invalidate?repository=owner/app&tag=1&ns=ghcr.test`);
    expect(json(byNs.body)).toEqual({ repository: 'ghcr.test/owner/app', tag: '1', invalidated: true });
    // The default registry's tag of the same name is its own.
    const hubTag = await post(`${mirror.url}/_hubcache/invalidate?repository=owner/app&tag=1`);
    expect(json(hubTag.body)).toEqual({ repository: 'owner/app', tag: '1', invalidated: true });
    const unknown = await post(
      `${mirror.url}/_hubcache/invalidate?repository=quay.test/a/b&tag=1&ns=quay.test`,
    );
    expect(unknown.status).toBe(404);
    expect(json(unknown.body).errors[0].code).toBe('NAME_UNKNOWN');
  });
});

describe('tags/list pagination keeps the path the client used', () => {
  it('a path-prefixed client gets a Link with the prefix; an ns client keeps its ns', async () => {
    addImage(ghcr, 'owner/app', 'a');
    addImage(ghcr, 'owner/app', 'b');
    const res = await get(`${mirror.url}/v2/ghcr.test/owner/app/tags/list?n=1`);
    expect(res.status).toBe(200);
    expect(res.headers.link).toBe('</v2/ghcr.test/owner/app/tags/list?last=x&n=1>; rel="next"');
    const viaNs = await get(`${mirror.url}/v2/owner/app/tags/list?n=1&ns=ghcr.test`);
    expect(viaNs.headers.link).toBe('</v2/owner/app/tags/list?ns=ghcr.test&last=x&n=1>; rel="next"');
  });

  it('the stale list served while the registry is down links with the prefix too', async () => {
    addImage(ghcr, 'owner/app', 'a');
    addImage(ghcr, 'owner/app', 'b');
    await get(`${mirror.url}/v2/ghcr.test/owner/app/manifests/a`);
    await get(`${mirror.url}/v2/ghcr.test/owner/app/manifests/b`);
    await ghcr.close();
    const res = await get(`${mirror.url}/v2/ghcr.test/owner/app/tags/list?n=1`);
    expect(res.status).toBe(200);
    expect(json(res.body).tags).toEqual(['a']);
    expect(res.headers.link).toBe('</v2/ghcr.test/owner/app/tags/list?n=1&last=a>; rel="next"');
    ghcr = await startFakeRegistry();
  });
});

describe('operator routes answer errors as spec JSON', () => {
  it('a failure is the spec error JSON, not a plain-text 500', async () => {
    // Pins are written through tmp/: make it a file so the write fails.
    rmSync(`${data.dir}/tmp`, { recursive: true, force: true });
    writeFileSync(`${data.dir}/tmp`, 'not a directory');
    const res = await request(`${mirror.url}/_hubcache/pins`, {
      method: 'POST',
      body: JSON.stringify({ digests: [`sha256:${'a'.repeat(64)}`] }),
      headers: { 'content-type': 'application/json' },
    });
    const body = await res.body.text();
    expect(res.statusCode).toBe(500);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(body)).toEqual({
      errors: [{ code: 'UNKNOWN', message: 'internal error', detail: {} }],
    });
  });
});

describe('If-None-Match', () => {
  it('answers 304 for a list, a weak tag or *, and 200 when nothing matches', async () => {
    const img = addImage(ghcr, 'owner/app', '1');
    const url = `${mirror.url}/v2/ghcr.test/owner/app/manifests/1`;
    const etag = `"${img.manifestDigest}"`;
    expect((await get(url, { 'if-none-match': etag })).status).toBe(304);
    expect((await get(url, { 'if-none-match': `"sha256:other", ${etag}` })).status).toBe(304);
    expect((await get(url, { 'if-none-match': `W/${etag}` })).status).toBe(304);
    expect((await get(url, { 'if-none-match': '*' })).status).toBe(304);
    expect((await get(url, { 'if-none-match': '"sha256:other", W/"x"' })).status).toBe(200);
  });

  it('a hosted manifest is matched the same way', async () => {
    const config = Buffer.from('{}');
    const configDigest = await upload(config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: 2 },
        layers: [],
      }),
    );
    const put = await request(`${mirror.url}/v2/team/tool/manifests/1`, {
      method: 'PUT',
      body: manifest,
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    });
    await put.body.dump();
    expect(put.statusCode).toBe(201);
    const etag = `"${put.headers['docker-content-digest']}"`;
    const url = `${mirror.url}/v2/team/tool/manifests/1`;
    expect((await get(url, { 'if-none-match': `W/"a", ${etag}` })).status).toBe(304);
    expect((await get(url, { 'if-none-match': 'W/"a"' })).status).toBe(200);
  });
});

async function upload(bytes: Buffer): Promise<string> {
  const { createHash } = await import('node:crypto');
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const res = await request(`${mirror.url}/v2/team/tool/blobs/uploads/?digest=${digest}`, {
    method: 'POST',
    body: bytes,
    headers: { 'content-type': 'application/octet-stream' },
  });
  await res.body.dump();
  expect(res.statusCode).toBe(201);
  return digest;
}
