import type { ServerResponse } from 'node:http';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { SHARED_CHECKED_FIRST_BYTES, SHARED_MAX_BLOB_BYTES } from '../../src/cache/blob-cache.js';
import type { RunningMirror } from '../../src/listen.js';
import { parseDigest } from '../../src/oci/digest.js';
import { type FakeRegistry, sha256, startFakeRegistry } from './fake-registry.js';
import { type FakeS3, keyOf, startFakeS3 } from './fake-s3.js';
import { addImage, get, mirrorFor, tempDataDir, waitFor } from './harness.js';

let hub: FakeRegistry;
let s3: FakeS3;
let mirror: RunningMirror;
let data: Awaited<ReturnType<typeof tempDataDir>>;

beforeEach(async () => {
  process.env.AWS_ACCESS_KEY_ID = 'x';
  process.env.AWS_SECRET_ACCESS_KEY = 'y';
  hub = await startFakeRegistry();
  s3 = await startFakeS3();
  data = await tempDataDir();
  // Layer prefetch off: these pin what a client's own miss reads (layer-prefetch.test.ts covers prefetch).
  mirror = await mirrorFor(hub, data.dir, [
    '--prefetch-layers',
    '0',
    '--s3-bucket',
    'cache',
    '--s3-endpoint',
    s3.url,
    '--s3-path-style',
  ]);
});

afterEach(async () => {
  await mirror.close();
  await s3.close();
  await hub.close();
  await data.remove();
});

/**
 * What the key holds once the mirror's publish landed: it follows the fill's commit in the
 * background, with nothing to await from here.
 */
async function published(digest: string): Promise<Buffer | undefined> {
  await waitFor(() => {
    const now = s3.objects.get(keyOf(digest));
    return now !== undefined && sha256(now) === digest;
  }, 'the publish to the bucket').catch(() => {});
  return s3.objects.get(keyOf(digest));
}

it('a wrong object under a small blob’s key is not served: the upstream’s bytes are, in the same request, and the object is replaced', async () => {
  for (const [tag, wrong] of [
    ['other', () => Buffer.from('not the blob')],
    ['longer', (layer: Buffer) => Buffer.concat([layer, Buffer.from('\n')])],
  ] as const) {
    const img = addImage(hub, 'library/alpine', tag, 100_000);
    s3.objects.set(keyOf(img.layerDigest), wrong(img.layer));
    const res = await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe(String(img.layer.length));
    expect(res.body.equals(img.layer)).toBe(true);
    expect(hub.count('GET', new RegExp(`/blobs/${img.layerDigest}$`))).toBe(1);
    expect(s3.seen).toContain(`DELETE ${keyOf(img.layerDigest)}`);
    expect(sha256((await published(img.layerDigest)) ?? Buffer.alloc(0))).toBe(img.layerDigest);
  }
  expect(mirror.mirror.blobs.sharedDiscarded).toBe(2);
});

it('a wrong object under a big blob’s key that cannot be deleted: at worst one cut connection, never a complete wrong body, then the upstream’s bytes', async () => {
  s3.refuseDelete = true;
  const img = addImage(hub, 'library/big', '1', 17 * 1024 * 1024);
  const bad = Buffer.from(img.layer);
  bad[bad.length >> 1] = (bad[bad.length >> 1] ?? 0) ^ 0xff;
  s3.objects.set(keyOf(img.layerDigest), bad);
  const url = `${mirror.url}/v2/big/blobs/${img.layerDigest}`;
  const first = await get(url).catch((err: Error) => err);
  if (!(first instanceof Error)) expect(sha256(first.body)).toBe(img.layerDigest);
  const second = await get(url);
  expect(second.status).toBe(200);
  expect(second.body.equals(img.layer)).toBe(true);
  expect(hub.downloads(new RegExp(`/blobs/${img.layerDigest}$`))).toBe(1);
});

it('a wrong object under a manifest’s key is not served: the upstream’s manifest is', async () => {
  const img = addImage(hub, 'library/alpine', '1');
  s3.objects.set(keyOf(img.manifestDigest), Buffer.from('{"schemaVersion":2,"layers":[]}'));
  const res = await get(`${mirror.url}/v2/alpine/manifests/${img.manifestDigest}`);
  expect(res.status).toBe(200);
  expect(res.body.equals(img.manifestBytes)).toBe(true);
  expect(s3.seen).toContain(`DELETE ${keyOf(img.manifestDigest)}`);
  expect(sha256((await published(img.manifestDigest)) ?? Buffer.alloc(0))).toBe(img.manifestDigest);
});

it('a right copy in the shared store is served without asking the upstream', async () => {
  const img = addImage(hub, 'library/alpine', '1', 50_000);
  s3.objects.set(keyOf(img.layerDigest), Buffer.from(img.layer));
  const res = await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
  expect(res.body.equals(img.layer)).toBe(true);
  expect(hub.count('GET', /\/blobs\//)).toBe(0);
  expect(mirror.mirror.blobs.sharedFills).toBe(1);
});

/**
 * Answers GETs of `key` with an object claiming `claimed` bytes: junk, sent as fast as the reader
 * takes it, at most `limit` bytes (then the connection stays open). Counts what was taken.
 */
function junkObject(key: string, claimed: number, limit = 48 * 1024 * 1024): { sent: number } {
  const seen = { sent: 0 };
  const chunk = Buffer.alloc(1024 * 1024, 0x5a);
  s3.hook = (req, res: ServerResponse, k) => {
    if (k !== key || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
    res.writeHead(200, { 'content-length': claimed, etag: '"junk"' });
    if (req.method === 'HEAD') {
      res.end();
      return true;
    }
    const pump = () => {
      while (seen.sent < Math.min(claimed, limit) && !res.destroyed) {
        seen.sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
    };
    pump();
    return true;
  };
  return seen;
}

it('a wrong object over SHARED_CHECKED_FIRST_BYTES whose size is not the one the manifest gives: refused unread, the upstream’s bytes served whole in the same request', async () => {
  const img = addImage(hub, 'library/big', '1', SHARED_CHECKED_FIRST_BYTES + 1024);
  const manifest = await get(`${mirror.url}/v2/big/manifests/1`, {
    accept: 'application/vnd.oci.image.manifest.v1+json',
  });
  expect(manifest.headers['docker-content-digest']).toBe(img.manifestDigest);
  const bad = junkObject(keyOf(img.layerDigest), 1024 * 1024 * 1024);
  const res = await get(`${mirror.url}/v2/big/blobs/${img.layerDigest}`);
  expect(res.status).toBe(200);
  expect(res.body.equals(img.layer)).toBe(true);
  expect(hub.downloads(new RegExp(`/blobs/${img.layerDigest}$`))).toBe(1);
  // What socket buffers took before the mirror closed the connection: not the object.
  expect(bad.sent).toBeLessThan(SHARED_CHECKED_FIRST_BYTES);
  expect(s3.seen).toContain(`DELETE ${keyOf(img.layerDigest)}`);
  expect(mirror.mirror.blobs.sharedDiscarded).toBe(1);
});

it('an object claiming more than SHARED_MAX_BLOB_BYTES, with no manifest to tell its size: not read, the blob is fetched upstream and cached', async () => {
  const img = addImage(hub, 'library/alpine', '1', 100_000);
  // 1 TiB: above the bound, and (on most machines) above the free disk, which made the blob
  // uncacheable: every pull of it passed through from the upstream.
  const claimed = 1024 ** 4;
  const huge = junkObject(keyOf(img.layerDigest), claimed);
  const res = await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
  expect(res.status).toBe(200);
  expect(res.body.equals(img.layer)).toBe(true);
  expect(huge.sent).toBeLessThan(SHARED_CHECKED_FIRST_BYTES);
  const digest = parseDigest(img.layerDigest);
  await mirror.mirror.settled();
  expect(await mirror.mirror.blobs.store.size(digest)).toBe(img.layer.length);
  expect(hub.count('GET', new RegExp(`/blobs/${img.layerDigest}$`))).toBe(1);
  expect(claimed).toBeGreaterThan(SHARED_MAX_BLOB_BYTES);
});
