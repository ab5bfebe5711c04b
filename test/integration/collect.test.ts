import { createHash, randomBytes } from 'node:crypto';
import { utimesSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, get, mirrorFor, OCI_MANIFEST, tempDataDir, waitFor } from './harness.js';

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function send(url: string, method: string, body?: Buffer, headers: Record<string, string> = {}) {
  const res = await request(url, {
    method: method as 'POST',
    headers,
    ...(body === undefined ? {} : { body }),
  });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

async function pushBlob(base: string, name: string, bytes: Buffer): Promise<string> {
  const res = await send(`${base}/v2/${name}/blobs/uploads/?digest=${sha(bytes)}`, 'POST', bytes);
  expect(res.status, res.text).toBe(201);
  return sha(bytes);
}

async function pushManifest(base: string, name: string, tag: string, config: Buffer, layers: Buffer[]) {
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: sha(config),
        size: config.length,
      },
      layers: layers.map((l) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest: sha(l),
        size: l.length,
      })),
    }),
  );
  return send(`${base}/v2/${name}/manifests/${tag}`, 'PUT', manifest, { 'content-type': OCI_MANIFEST });
}

async function gc(base: string) {
  const res = await send(`${base}/_hubcache/gc`, 'POST');
  expect(res.status).toBe(200);
  return JSON.parse(res.text) as { removed: number; referenced: number; keptYoung: number };
}

let hub: FakeRegistry;
let running: RunningMirror;
let data: Awaited<ReturnType<typeof tempDataDir>>;

beforeEach(async () => {
  hub = await startFakeRegistry();
  data = await tempDataDir();
});

afterEach(async () => {
  await running.close();
  await hub.close();
  await data.remove();
});

const blobFile = (digest: string) =>
  path.join(data.dir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));

it('removes blobs no manifest refers to, hosted or cached; keeps everything referenced', async () => {
  running = await mirrorFor(hub, data.dir, ['--gc-grace', '0', '--allow-delete']);
  const base = running.url;
  // Hosted: an image, and an abandoned upload (a blob no manifest names).
  const config = Buffer.from('{"os":"linux"}');
  const layer = randomBytes(4000);
  await pushBlob(base, 'app', config);
  await pushBlob(base, 'app', layer);
  expect((await pushManifest(base, 'app', '1', config, [layer])).status).toBe(201);
  const abandoned = await pushBlob(base, 'app', randomBytes(3000));
  // Mirrored: an image pulled by tag, and a blob fetched by digest alone.
  const img = addImage(hub, 'library/alpine', '3.20', 5000);
  await get(`${base}/v2/library/alpine/manifests/3.20`);
  await get(`${base}/v2/library/alpine/blobs/${img.layerDigest}`);
  const stray = randomBytes(2000);
  hub.addBlob(stray);
  await get(`${base}/v2/library/alpine/blobs/${sha(stray)}`);
  await running.mirror.settled(); // the fills are renamed into place after their last byte

  const result = await gc(base);
  expect(result.removed).toBe(2);
  for (const gone of [abandoned, sha(stray)])
    expect((await get(`${base}/v2/app/blobs/${gone}`, {}, 'HEAD')).status).toBe(404);
  expect((await get(`${base}/v2/app/blobs/${sha(layer)}`)).status).toBe(200);
  expect((await get(`${base}/v2/app/manifests/1`)).status).toBe(200);
  const before = hub.requests.length;
  expect((await get(`${base}/v2/library/alpine/manifests/3.20`)).status).toBe(200);
  expect((await get(`${base}/v2/library/alpine/blobs/${img.layerDigest}`)).headers['x-cache']).toBe('HIT');
  expect(hub.requests.length).toBe(before);

  // A deleted manifest's blobs go at the next collection.
  const manifest = await get(`${base}/v2/app/manifests/1`);
  expect(
    (await send(`${base}/v2/app/manifests/${manifest.headers['docker-content-digest']}`, 'DELETE')).status,
  ).toBe(202);
  await gc(base);
  expect((await get(`${base}/v2/library/alpine/blobs/${sha(layer)}`, {}, 'HEAD')).status).not.toBe(200);
});

it('keeps what pushes under way need: uploads in progress, young blobs, blobs a push HEADed', async () => {
  running = await mirrorFor(hub, data.dir, ['--gc-grace', '60']);
  const base = running.url;
  // An old cached blob nobody refers to... until a push HEADs it.
  const old = randomBytes(3000);
  hub.addBlob(old);
  await get(`${base}/v2/library/x/blobs/${sha(old)}`);
  await running.mirror.settled();
  const past = new Date(Date.now() - 3_600_000);
  utimesSync(blobFile(sha(old)), past, past);
  // (Content is scoped: the HEAD that answers yes is under the name that has it.)
  expect((await get(`${base}/v2/library/x/blobs/${sha(old)}`, {}, 'HEAD')).status).toBe(200);

  // Ten pushes at once, with collections running all the while.
  let collecting = true;
  let collected = 0;
  const collections = (async () => {
    while (collecting) {
      await gc(base);
      collected++;
    }
    return collected;
  })();
  // A whole collection that starts after this call (the one running now may have begun before).
  const collection = () => {
    const after = collected + 2;
    return waitFor(() => collected >= after, 'a collection', { timeoutMs: 30_000 });
  };
  const pushes = Array.from({ length: 10 }, async (_, i) => {
    const name = `team/app${i}`;
    const config = Buffer.from(`{"n":${i}}`);
    const layer = randomBytes(200_000);
    // Chunked, with a collection in between chunks.
    const start = await send(`${base}/v2/${name}/blobs/uploads/`, 'POST');
    const location = start.headers.location as string;
    await send(`${base}${location}`, 'PATCH', layer.subarray(0, 100_000));
    await collection();
    const done = await send(`${base}${location}?digest=${sha(layer)}`, 'PUT', layer.subarray(100_000));
    expect(done.status, done.text).toBe(201);
    await pushBlob(base, name, config);
    return pushManifest(base, name, '1', config, [layer, old]);
  });
  const results = await Promise.all(pushes);
  collecting = false;
  expect(await collections).toBeGreaterThan(0);
  for (const r of results) expect(r.status, r.text).toBe(201);
  await gc(base);
  for (let i = 0; i < 10; i++) {
    const m = JSON.parse((await get(`${base}/v2/team/app${i}/manifests/1`)).body.toString());
    for (const d of [m.config, ...m.layers]) {
      expect((await get(`${base}/v2/team/app${i}/blobs/${d.digest}`, {}, 'HEAD')).status).toBe(200);
    }
  }
});

it('hubcache gc --blobs does the same from the command line, on a stopped mirror', async () => {
  running = await mirrorFor(hub, data.dir);
  const base = running.url;
  const config = Buffer.from('{"os":"linux"}');
  const layer = randomBytes(4000);
  await pushBlob(base, 'app', config);
  await pushBlob(base, 'app', layer);
  expect((await pushManifest(base, 'app', '1', config, [layer])).status).toBe(201);
  const orphan = await pushBlob(base, 'app', randomBytes(1000));
  await running.close();
  const { execFileSync } = await import('node:child_process');
  const run = (grace: string) =>
    JSON.parse(
      execFileSync(
        process.execPath,
        ['--import', 'tsx', 'src/main.ts', 'gc', '--blobs', '--grace', grace, '--data', data.dir],
        {
          encoding: 'utf8',
        },
      ),
    );
  expect(run('3600').blobs.removed).toBe(0); // young: kept
  const out = run('0');
  expect(out.blobs.removed).toBe(1);
  const { existsSync } = await import('node:fs');
  expect(existsSync(blobFile(orphan))).toBe(false);
  expect(existsSync(blobFile(sha(layer)))).toBe(true);
  running = await mirrorFor(hub, data.dir);
  expect((await get(`${running.url}/v2/app/manifests/1`)).status).toBe(200);
});
