import { writeFileSync } from 'node:fs';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { metricSample } from '../fixtures/request-counts.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import {
  addImage,
  DOCKER_MANIFEST,
  get,
  mirrorFor,
  OCI_INDEX,
  OCI_MANIFEST,
  pushBlob,
  type Reply,
  tempDataDir,
} from './harness.js';

let upstream: FakeRegistry;
let data: Awaited<ReturnType<typeof tempDataDir>>;
let mirror: RunningMirror;

beforeEach(async () => {
  upstream = await startFakeRegistry();
  data = await tempDataDir();
});

afterEach(async () => {
  vi.useRealTimers();
  await mirror.close();
  await upstream.close();
  await data.remove();
});

const answers = () => metricSample(mirror.url, 'hubcache_hit_lane_answers_total');
const entries = () => metricSample(mirror.url, 'hubcache_hit_lane_entries');

/** The headers a client sees, but the ones that change by themselves (Date) or by connection. */
function stable(reply: Reply): Record<string, unknown> {
  const { date: _date, connection: _connection, 'keep-alive': _keepAlive, ...rest } = reply.headers;
  return rest;
}

/**
 * GETs `url` until the lane answered it (a miss, then a hit read from disk or memory, then one held:
 * how many depends on where the store has it), at most four times. Gives the lane's first answer and
 * the request path's answer before it (the one that offered it to the lane).
 */
async function warm(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ path: Reply; lane: Reply; hits: number }> {
  let path: Reply | undefined;
  let hits = 0;
  for (let i = 0; i < 4; i++) {
    const before = await answers();
    const reply = await get(url, headers);
    expect(reply.status).toBe(200);
    if (reply.headers['x-cache'] === 'HIT') hits++;
    if ((await answers()) > before && path) return { path, lane: reply, hits };
    path = reply;
  }
  throw new Error(`the lane never answered ${url}`);
}

/** One request the lane must answer (its answers counter moves). */
async function throughLane(
  url: string,
  headers: Record<string, string> = {},
  method: 'GET' | 'HEAD' = 'GET',
): Promise<Reply> {
  const before = await answers();
  const reply = await get(url, headers, method);
  expect(await answers()).toBe(before + 1);
  return reply;
}

describe('the hit lane: a hit answered again as it was sent, before routing', () => {
  it('a blob and a manifest: the same status, headers and bytes as the request path sent, GET and HEAD, counted as hits', async () => {
    mirror = await mirrorFor(upstream, data.dir);
    const img = addImage(upstream, 'library/app', '1', 700);
    const blob = `${mirror.url}/v2/library/app/blobs/${img.layerDigest}`;
    const tag = `${mirror.url}/v2/library/app/manifests/1`;
    const byDigest = `${mirror.url}/v2/library/app/manifests/${img.manifestDigest}`;
    const accept = { accept: OCI_MANIFEST };
    const cases: [string, Record<string, string>][] = [
      [blob, {}],
      [tag, accept],
      [byDigest, {}],
    ];
    let blobHits = 0;
    for (const [url, headers] of cases) {
      // A HIT through the request path, then the lane's answer: nothing may differ.
      const { path, lane, hits } = await warm(url, headers);
      if (url === blob) blobHits = hits;
      expect(path.headers['x-cache']).toBe('HIT');
      expect(lane.status).toBe(200);
      expect(stable(lane)).toEqual(stable(path));
      expect(lane.body.equals(path.body)).toBe(true);
      const head = await throughLane(url, headers, 'HEAD');
      expect(head.body.length).toBe(0);
      expect(stable(head)).toEqual(stable(path));
    }
    expect((await get(blob)).body.equals(img.layer)).toBe(true);
    expect(await entries()).toBe(3);
    // Counted like any hit: in hubcache_requests_total, and nothing more upstream. How many of the
    // warm-up's GETs were path hits depends on when the blob reached memory (one from disk first,
    // or not): each hit seen, the lane's included, and the last GET.
    expect(blobHits).toBeGreaterThanOrEqual(2);
    expect(
      await metricSample(
        mirror.url,
        'hubcache_requests_total',
        '{endpoint="blob",method="GET",outcome="hit",code="200"}',
      ),
    ).toBe(blobHits + 1);
    expect(upstream.count('GET', /\/blobs\//)).toBe(2);
  });

  it('asks the request path when Range or If-None-Match could change the answer', async () => {
    mirror = await mirrorFor(upstream, data.dir);
    const img = addImage(upstream, 'library/app', '1', 700);
    const blob = `${mirror.url}/v2/library/app/blobs/${img.layerDigest}`;
    await warm(blob);
    const before = await answers();
    const part = await get(blob, { range: 'bytes=10-19' });
    expect(part.status).toBe(206);
    expect(part.body.equals(img.layer.subarray(10, 20))).toBe(true);
    const tag = `${mirror.url}/v2/library/app/manifests/1`;
    await warm(tag, { accept: OCI_MANIFEST });
    const notModified = await get(tag, { accept: OCI_MANIFEST, 'if-none-match': `"${img.manifestDigest}"` });
    expect(notModified.status).toBe(304);
    expect(await answers()).toBe(before + 1);
  });

  it('a tag by Accept: an OCI client gets the index, a client that cannot read one its platform’s manifest, each from its own entry', async () => {
    mirror = await mirrorFor(upstream, data.dir);
    const img = addImage(upstream, 'library/app', 'single', 500);
    const index = upstream.addManifest(
      'library/app',
      '1',
      {
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [
          {
            mediaType: OCI_MANIFEST,
            digest: img.manifestDigest,
            size: img.manifestBytes.length,
            platform: { os: 'linux', architecture: 'amd64' },
          },
        ],
      },
      OCI_INDEX,
    );
    const tag = `${mirror.url}/v2/library/app/manifests/1`;
    const oci = { accept: `${OCI_INDEX}, ${OCI_MANIFEST}` };
    const single = { accept: `${OCI_MANIFEST}, ${DOCKER_MANIFEST}` };
    await warm(tag, oci);
    await warm(tag, single);
    for (let i = 0; i < 2; i++) {
      const all = await throughLane(tag, oci);
      expect(all.headers['docker-content-digest']).toBe(index);
      expect(all.headers['content-type']).toBe(OCI_INDEX);
      const one = await throughLane(tag, single);
      expect(one.headers['docker-content-digest']).toBe(img.manifestDigest);
      expect(one.headers['content-type']).toBe(OCI_MANIFEST);
    }
  });

  it('a tag past its TTL is asked upstream again: a tag that moved is never answered from the lane', async () => {
    mirror = await mirrorFor(upstream, data.dir, ['--tag-ttl', '60']);
    const first = addImage(upstream, 'library/app', 'latest', 300);
    const tag = `${mirror.url}/v2/library/app/manifests/latest`;
    const accept = { accept: OCI_MANIFEST };
    expect((await warm(tag, accept)).lane.headers['docker-content-digest']).toBe(first.manifestDigest);
    const moved = addImage(upstream, 'library/app', 'latest', 301);
    // Within the TTL the tag is what was checked last; past it, the upstream is asked.
    vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
    vi.setSystemTime(Date.now() + 61_000);
    const before = await answers();
    const after = await get(tag, accept);
    expect(after.headers['docker-content-digest']).toBe(moved.manifestDigest);
    expect(after.headers['x-cache']).toBe('MISS');
    expect(await answers()).toBe(before);
    // The moved tag, once a HIT through the path, is what the lane answers.
    expect((await warm(tag, accept)).lane.headers['docker-content-digest']).toBe(moved.manifestDigest);
  });

  it('a name becoming hosted empties the lane: what was mirrored is answered by the request path again', async () => {
    mirror = await mirrorFor(upstream, data.dir);
    const img = addImage(upstream, 'library/app', '1', 300);
    const blob = `${mirror.url}/v2/library/app/blobs/${img.layerDigest}`;
    await warm(blob);
    expect(await entries()).toBe(1);
    await pushBlob(mirror.url, 'team/new', Buffer.from('pushed here'));
    const before = await answers();
    expect((await get(blob)).body.equals(img.layer)).toBe(true);
    expect(await answers()).toBe(before);
    // The path's answer was offered again: the one entry is the new one.
    expect(await entries()).toBe(1);
    await throughLane(blob);
  });

  it('with credentials required for reads, there is no lane: an anonymous request after a signed-in hit is refused', async () => {
    const file = path.join(data.dir, 'htpasswd');
    writeFileSync(file, `alice:${bcrypt.hashSync('s3cret', 4)}\n`);
    mirror = await mirrorFor(upstream, data.dir, ['--htpasswd', file]);
    const img = addImage(upstream, 'library/app', '1', 300);
    const blob = `${mirror.url}/v2/library/app/blobs/${img.layerDigest}`;
    const alice = { authorization: `Basic ${Buffer.from('alice:s3cret').toString('base64')}` };
    for (let i = 0; i < 3; i++) expect((await get(blob, alice)).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await get(blob)).status).toBe(401);
    expect(await entries()).toBe(0);
    expect(await answers()).toBe(0);
  });
});
