import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, sha256, startFakeRegistry } from './fake-registry.js';
import { addImage, get, mirrorFor, OCI_INDEX, OCI_MANIFEST, tempDataDir } from './harness.js';

// Issue 14 items 3 (sha512 answers 405) and 4 (referrers answer 405): spec end-2/3/4c and end-12a.

const SHA512 = `sha512:${'ab'.repeat(64)}`;
const EMPTY_INDEX = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] };

const errCode = (body: Buffer) => JSON.parse(body.toString()).errors[0].code as string;

async function send(
  url: string,
  method: 'POST' | 'PUT',
  body = '',
): Promise<{ status: number; body: Buffer }> {
  const res = await request(url, { method, body, headers: { 'content-type': 'application/octet-stream' } });
  const chunks: Buffer[] = [];
  for await (const c of res.body) chunks.push(c as Buffer);
  return { status: res.statusCode, body: Buffer.concat(chunks) };
}

function descriptor(artifactType: string, n: number) {
  return { mediaType: OCI_MANIFEST, digest: sha256(`${artifactType}-${n}`), size: 100 + n, artifactType };
}

/** An upstream WITH the referrers API (distribution 3, zot, Docker Hub): pages of 1 via Link. */
interface ReferrersUpstream {
  url: string;
  down: boolean;
  /** Bytes of padding in each page (an oversized answer). */
  pad: number;
  requests: string[];
  referrers: Map<string, object[]>;
  close(): Promise<void>;
}

async function startReferrersUpstream(): Promise<ReferrersUpstream> {
  const up: ReferrersUpstream = {
    url: '',
    down: false,
    pad: 0,
    requests: [],
    referrers: new Map(),
    close: () => new Promise((r) => server.close(() => r())),
  };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    up.requests.push(`${req.method} ${url.pathname}${url.search}`);
    if (up.down) return void res.writeHead(503).end();
    const m = /^\/v2\/(.+)\/referrers\/(sha256:[a-f0-9]{64})$/.exec(url.pathname);
    if (!m?.[1] || !m[2]) return void res.writeHead(404, { 'Content-Type': 'application/json' }).end('{}');
    const all = up.referrers.get(m[2]) ?? [];
    const page = Number(url.searchParams.get('page') ?? '0');
    const headers: Record<string, string> = { 'Content-Type': OCI_INDEX };
    if (page + 1 < all.length) headers.Link = `</v2/${m[1]}/referrers/${m[2]}?page=${page + 1}>; rel="next"`;
    const manifests = all.slice(page, page + 1);
    res.writeHead(200, headers);
    res.end(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests, pad: 'x'.repeat(up.pad) }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  up.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return up;
}

describe('referrers of a mirrored repository, upstream with the referrers API', () => {
  let up: ReferrersUpstream;
  let mirror: RunningMirror;
  let data: { dir: string; remove(): Promise<void> };
  const subject = sha256('the subject');

  beforeEach(async () => {
    up = await startReferrersUpstream();
    data = await tempDataDir();
    mirror = await mirrorFor(up.url, data.dir, ['--tag-ttl', '1']);
  });
  afterEach(async () => {
    await mirror.close();
    await up.close();
    await data.remove();
  });

  it('serves the upstream list (every page), filters by artifactType locally, caches it and serves it stale', async () => {
    const sig = descriptor('application/vnd.dev.cosign.artifact.sig.v1+json', 1);
    const sbom = descriptor('application/spdx+json', 2);
    up.referrers.set(subject, [sig, sbom]);
    const first = await get(`${mirror.url}/v2/team/app/referrers/${subject}`);
    expect(first.status, first.body.toString()).toBe(200);
    expect(first.headers['content-type']).toBe(OCI_INDEX);
    expect(first.headers['oci-filters-applied']).toBeUndefined();
    expect(JSON.parse(first.body.toString())).toEqual({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [sig, sbom],
    });
    expect(up.requests.filter((r) => r.includes('/referrers/'))).toHaveLength(2); // two pages

    const filtered = await get(
      `${mirror.url}/v2/team/app/referrers/${subject}?artifactType=application/spdx%2Bjson`,
    );
    expect(filtered.status).toBe(200);
    expect(filtered.headers['oci-filters-applied']).toBe('artifactType');
    expect(JSON.parse(filtered.body.toString()).manifests).toEqual([sbom]);
    // Within the TTL: from the cache, no upstream request.
    expect(up.requests.filter((r) => r.includes('/referrers/'))).toHaveLength(2);
    expect(filtered.headers['x-cache']).toBe('HIT');

    // Past the 1 s TTL: the clock moves (Date only; timers and I/O run as they do).
    vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
    vi.setSystemTime(Date.now() + 1100);
    up.down = true;
    const stale = await get(`${mirror.url}/v2/team/app/referrers/${subject}`).finally(() =>
      vi.useRealTimers(),
    );
    expect(stale.status).toBe(200);
    expect(stale.headers['x-cache']).toBe('STALE');
    expect(JSON.parse(stale.body.toString()).manifests).toEqual([sig, sbom]);
  });

  it('answers an empty index for a subject without referrers, and for a well-formed sha512 subject', async () => {
    for (const digest of [subject, SHA512]) {
      const res = await get(`${mirror.url}/v2/team/app/referrers/${digest}`);
      expect(res.status, res.body.toString()).toBe(200);
      expect(res.headers['content-type']).toBe(OCI_INDEX);
      expect(JSON.parse(res.body.toString())).toEqual(EMPTY_INDEX);
    }
    const bad = await get(`${mirror.url}/v2/team/app/referrers/sha256:${'A'.repeat(64)}`);
    expect(bad.status).toBe(400);
    expect(errCode(bad.body)).toBe('DIGEST_INVALID');
  });

  it('refuses an upstream referrers answer over 4 MiB (503), without buffering it', async () => {
    up.referrers.set(subject, [descriptor('a/b', 1)]);
    up.pad = 5 * 1024 * 1024;
    const res = await get(`${mirror.url}/v2/team/app/referrers/${subject}`);
    expect(res.status).toBe(503);
  });
});

describe('referrers of a mirrored repository, upstream without the referrers API (404)', () => {
  let upstream: FakeRegistry;
  let mirror: RunningMirror;
  let data: { dir: string; remove(): Promise<void> };

  beforeEach(async () => {
    upstream = await startFakeRegistry();
    data = await tempDataDir();
    mirror = await mirrorFor(upstream, data.dir, ['--hosted', 'team/*']);
  });
  afterEach(async () => {
    await mirror.close();
    await upstream.close();
    await data.remove();
  });

  it('falls back to the referrers tag schema: the tag sha256-<hex> is the index', async () => {
    const img = addImage(upstream, 'library/alpine', 'latest');
    const sig = descriptor('application/vnd.dev.cosign.artifact.sig.v1+json', 1);
    const hex = img.manifestDigest.slice('sha256:'.length);
    upstream.addManifest(
      'library/alpine',
      `sha256-${hex}`,
      { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [sig] },
      OCI_INDEX,
    );
    const res = await get(`${mirror.url}/v2/library/alpine/referrers/${img.manifestDigest}`);
    expect(res.status, res.body.toString()).toBe(200);
    expect(res.headers['content-type']).toBe(OCI_INDEX);
    expect(JSON.parse(res.body.toString())).toEqual({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [sig],
    });
    expect(upstream.count('GET', /\/referrers\//)).toBe(1);
    expect(upstream.count('GET', new RegExp(`/manifests/sha256-${hex}$`))).toBe(1);

    const none = await get(`${mirror.url}/v2/library/alpine/referrers/${sha256('no referrers')}`);
    expect(none.status, none.body.toString()).toBe(200);
    expect(JSON.parse(none.body.toString())).toEqual(EMPTY_INDEX);
  });

  it('answers an empty index for a hosted name before its first push (declared or not), sha512 subjects too', async () => {
    // team/new: declared hosted (--hosted), nothing pushed; worker: a one-component name a push
    // would make hosted, mirrored until then (the upstream has no library/worker).
    for (const path of [
      `/v2/team/new/referrers/${sha256('x')}?artifactType=a%2Fb`,
      `/v2/team/new/referrers/${SHA512}?artifactType=a%2Fb`,
      `/v2/worker/referrers/${sha256('x')}?artifactType=a%2Fb`,
    ]) {
      const res = await get(`${mirror.url}${path}`);
      expect(res.status, `${path}: ${res.body.toString()}`).toBe(200);
      expect(res.headers['content-type']).toBe(OCI_INDEX);
      expect(res.headers['oci-filters-applied']).toBe('artifactType');
      expect(JSON.parse(res.body.toString())).toEqual(EMPTY_INDEX);
    }
  });

  it('answers a lookup of a sha512 digest 404 BLOB_UNKNOWN / MANIFEST_UNKNOWN, mirrored or hosted, without asking the upstream', async () => {
    const before = upstream.requests.length;
    for (const name of ['library/alpine', 'team/app']) {
      for (const method of ['GET', 'HEAD'] as const) {
        const blob = await get(`${mirror.url}/v2/${name}/blobs/${SHA512}`, {}, method);
        expect(blob.status, `${method} ${name} blob`).toBe(404);
        const manifest = await get(`${mirror.url}/v2/${name}/manifests/${SHA512}`, {}, method);
        expect(manifest.status, `${method} ${name} manifest`).toBe(404);
        if (method === 'GET') {
          expect(errCode(blob.body)).toBe('BLOB_UNKNOWN');
          expect(errCode(manifest.body)).toBe('MANIFEST_UNKNOWN');
        }
      }
    }
    expect(upstream.requests.length).toBe(before);
    // Malformed stays a client error.
    const bad = await get(`${mirror.url}/v2/library/alpine/blobs/sha256:${'A'.repeat(64)}`);
    expect(bad.status).toBe(400);
    expect(errCode(bad.body)).toBe('DIGEST_INVALID');
  });

  it('answers an upload naming sha512 400 DIGEST_INVALID (spec end-4c)', async () => {
    const algo = await send(`${mirror.url}/v2/team/app/blobs/uploads/?digest-algorithm=sha512`, 'POST');
    expect(algo.status).toBe(400);
    expect(errCode(algo.body)).toBe('DIGEST_INVALID');
    const mono = await send(`${mirror.url}/v2/team/app/blobs/uploads/?digest=${SHA512}`, 'POST', 'hello');
    expect(mono.status).toBe(400);
    expect(errCode(mono.body)).toBe('DIGEST_INVALID');
    const ok = await send(`${mirror.url}/v2/team/app/blobs/uploads/?digest-algorithm=sha256`, 'POST');
    expect(ok.status).toBe(202);
    const session = await request(`${mirror.url}/v2/team/app/blobs/uploads/`, { method: 'POST' });
    await session.body.dump();
    const location = String(session.headers.location);
    const put = await send(
      `${new URL(location, mirror.url).href}${location.includes('?') ? '&' : '?'}digest=${SHA512}`,
      'PUT',
      'hello',
    );
    expect(put.status).toBe(400);
    expect(errCode(put.body)).toBe('DIGEST_INVALID');
  });
});
