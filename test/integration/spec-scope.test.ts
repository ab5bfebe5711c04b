import { createHash, randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import {
  addImage,
  errorCode,
  get,
  imageManifest,
  mirrorFor,
  OCI_MANIFEST,
  pushBlob,
  send,
  tempDataDir,
} from './harness.js';

// Issue 14: what a repository answers for is what was pushed, mounted or referenced into it, and
// a delete takes effect at once (OCI distribution spec: Pulling, Deleting, Listing Tags, end-2/8a/9/10).

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const code = errorCode;

/** Blobs, then the manifest under `reference` (a tag, or its own digest for an untagged push). */
async function pushImage(base: string, name: string, tag: string | undefined, layer = randomBytes(2048)) {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux' }));
  await pushBlob(base, name, config);
  await pushBlob(base, name, layer);
  const manifest = imageManifest(config, [layer]);
  const digest = sha(manifest);
  const res = await send(`${base}/v2/${name}/manifests/${tag ?? digest}`, 'PUT', manifest, {
    'content-type': OCI_MANIFEST,
  });
  expect(res.status, res.body.toString()).toBe(201);
  return { layer, layerDigest: sha(layer), manifest, digest };
}

let hub: FakeRegistry;
let running: RunningMirror;
let data: Awaited<ReturnType<typeof tempDataDir>>;
let base: string;

async function restart(args: string[]): Promise<void> {
  await running.close();
  running = await mirrorFor(hub, data.dir, args);
  base = running.url;
}

beforeEach(async () => {
  hub = await startFakeRegistry();
  data = await tempDataDir();
  running = await mirrorFor(hub, data.dir, ['--allow-delete']);
  base = running.url;
});

afterEach(async () => {
  await running.close();
  await hub.close();
  await data.remove();
});

describe('deletes take effect at once (issue 14)', () => {
  it('a deleted blob answers 404 BLOB_UNKNOWN in its repository at once, while another keeps it', async () => {
    const layer = randomBytes(4096);
    const img = await pushImage(base, 'app', '1', layer);
    await pushImage(base, 'other', '1', layer);
    expect((await send(`${base}/v2/app/blobs/${img.layerDigest}`, 'DELETE')).status).toBe(202);
    for (const method of ['GET', 'HEAD'] as const) {
      const res = await send(`${base}/v2/app/blobs/${img.layerDigest}`, method);
      expect(res.status, method).toBe(404);
      if (method === 'GET') expect(code(res)).toBe('BLOB_UNKNOWN');
    }
    expect((await send(`${base}/v2/app/blobs/${img.layerDigest}`, 'DELETE')).status).toBe(404);
    // The store keeps it for the repository that still holds it.
    const kept = await send(`${base}/v2/other/blobs/${img.layerDigest}`, 'GET');
    expect(kept.status).toBe(200);
    expect(kept.body.equals(layer)).toBe(true);
  });

  it('a deleted manifest answers 404 by digest and by tag, and a second DELETE 404 MANIFEST_UNKNOWN', async () => {
    const layer = randomBytes(4096);
    const img = await pushImage(base, 'app', '1', layer);
    // The same manifest in another repository: the store keeps its bytes.
    await pushImage(base, 'other', '1', layer);
    // Its blobs first, as a clean-up script does: then the manifest is the last thing `app` holds.
    const config = JSON.parse(img.manifest.toString()).config.digest as string;
    for (const d of [config, img.layerDigest]) {
      expect((await send(`${base}/v2/app/blobs/${d}`, 'DELETE')).status).toBe(202);
    }
    const del = await send(`${base}/v2/app/manifests/${img.digest}`, 'DELETE');
    expect(del.status).toBe(202);
    for (const ref of [img.digest, '1']) {
      for (const method of ['GET', 'HEAD'] as const) {
        const res = await send(`${base}/v2/app/manifests/${ref}`, method, undefined, {
          accept: OCI_MANIFEST,
        });
        expect(res.status, `${method} ${ref}`).toBe(404);
        if (method === 'GET') expect(code(res)).toBe('MANIFEST_UNKNOWN');
      }
    }
    const again = await send(`${base}/v2/app/manifests/${img.digest}`, 'DELETE');
    expect(again.status).toBe(404);
    expect(code(again)).toBe('MANIFEST_UNKNOWN');
    expect(JSON.parse((await get(`${base}/v2/_catalog`)).body.toString()).repositories).toEqual(['other']);
    // Still so after a restart: the emptied name stays hosted, it does not fall back to the mirror.
    await restart(['--allow-delete']);
    expect((await send(`${base}/v2/app/manifests/${img.digest}`, 'GET')).status).toBe(404);
    expect(hub.requests.filter((r) => r.path.includes('/app/'))).toEqual([]);
  });
});

describe('tag lists (issue 14, end-8a)', () => {
  it('a repository holding only untagged manifests lists no tags (200), a missing one is NAME_UNKNOWN', async () => {
    await pushImage(base, 'app', undefined);
    const res = await get(`${base}/v2/app/tags/list`);
    expect(res.status, res.body.toString()).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ name: 'app', tags: [] });
    await restart(['--allow-delete', '--hosted', 'team/*']);
    const missing = await get(`${base}/v2/team/none/tags/list`);
    expect(missing.status).toBe(404);
    expect(code(missing)).toBe('NAME_UNKNOWN');
  });
});

describe('content is scoped to its repository (issue 14)', () => {
  it('a hosted repository answers only for blobs and manifests pushed or mounted into it', async () => {
    const img = await pushImage(base, 'app', '1');
    await pushImage(base, 'other', '1');
    for (const method of ['GET', 'HEAD'] as const) {
      const blob = await send(`${base}/v2/other/blobs/${img.layerDigest}`, method);
      expect(blob.status, `${method} blob`).toBe(404);
      const manifest = await send(`${base}/v2/other/manifests/${img.digest}`, method);
      expect(manifest.status, `${method} manifest`).toBe(404);
    }
    // A mount names where the blob is: from a repository that does not hold it, or with no `from`,
    // the spec's fallback (an upload session), even though the store has the bytes.
    for (const q of [`mount=${img.layerDigest}&from=third`, `mount=${img.layerDigest}`]) {
      const refused = await send(`${base}/v2/other/blobs/uploads/?${q}`, 'POST');
      expect(refused.status, q).toBe(202);
    }
    expect((await send(`${base}/v2/other/blobs/${img.layerDigest}`, 'HEAD')).status).toBe(404);
    // Mounting it from where it is links it: then `other` answers for it.
    const mount = await send(`${base}/v2/other/blobs/uploads/?mount=${img.layerDigest}&from=app`, 'POST');
    expect(mount.status).toBe(201);
    expect((await send(`${base}/v2/other/blobs/${img.layerDigest}`, 'HEAD')).status).toBe(200);
  });

  it('serving a stored manifest under another name does not add that name to the catalog', async () => {
    const img = await pushImage(base, 'app', '1');
    await get(`${base}/v2/someone/else/manifests/${img.digest}`);
    await get(`${base}/v2/someone/other/blobs/${img.layerDigest}`);
    expect(JSON.parse((await get(`${base}/v2/_catalog`)).body.toString()).repositories).toEqual(['app']);
  });

  it('a mirrored name serves a stored blob or manifest only once the upstream has it under that name', async () => {
    const img = addImage(hub, 'library/alpine', '3');
    // Pulled through under library/alpine: stored once.
    expect((await get(`${base}/v2/library/alpine/manifests/3`, { accept: OCI_MANIFEST })).status).toBe(200);
    expect((await get(`${base}/v2/library/alpine/blobs/${img.layerDigest}`)).status).toBe(200);
    // The upstream has nothing under someone/else.
    hub.fault = (r) => (r.path.includes('/someone/else/') ? { kind: 'status', status: 404 } : undefined);
    for (const method of ['GET', 'HEAD'] as const) {
      expect((await get(`${base}/v2/someone/else/blobs/${img.layerDigest}`, {}, method)).status).toBe(404);
      const m = await get(`${base}/v2/someone/else/manifests/${img.manifestDigest}`, {}, method);
      expect(m.status, `${method} manifest`).toBe(404);
    }
    // Asked once, remembered.
    expect(hub.count('HEAD', /\/someone\/else\/blobs\//)).toBe(1);
    // Under another name the upstream does serve it: one HEAD, then from the store.
    const before = hub.requests.length;
    const other = await get(`${base}/v2/someone/other/blobs/${img.layerDigest}`);
    expect(other.status).toBe(200);
    expect(other.body.equals(img.layer)).toBe(true);
    expect(hub.requests.slice(before).map((r) => r.method)).toEqual(['HEAD']);
    await get(`${base}/v2/someone/other/blobs/${img.layerDigest}`);
    expect(hub.requests.length).toBe(before + 1);
    // The known name's hits ask nothing, and the catalog lists only what the upstream served.
    const known = hub.requests.length;
    expect((await get(`${base}/v2/library/alpine/blobs/${img.layerDigest}`)).status).toBe(200);
    expect(hub.requests.length).toBe(known);
    expect(JSON.parse((await get(`${base}/v2/_catalog`)).body.toString()).repositories).toEqual([
      'library/alpine',
    ]);
  });

  it('after a restart, a name reads its own records before asking the upstream', async () => {
    const img = addImage(hub, 'library/alpine', '3');
    expect((await get(`${base}/v2/library/alpine/manifests/3`, { accept: OCI_MANIFEST })).status).toBe(200);
    expect((await get(`${base}/v2/library/alpine/blobs/${img.layerDigest}`)).status).toBe(200);
    await restart(['--allow-delete']);
    const before = hub.requests.length;
    const res = await get(`${base}/v2/library/alpine/blobs/${img.layerDigest}`);
    expect(res.headers['x-cache']).toBe('HIT');
    expect(hub.requests.length).toBe(before);
  });
});

describe('an emptied hosted repository (issue 14)', () => {
  it('is dropped by a collection once its last delete is older than the grace period', async () => {
    await restart(['--allow-delete', '--gc-grace', '0']);
    const img = await pushImage(base, 'app', '1');
    const config = JSON.parse(img.manifest.toString()).config.digest as string;
    for (const d of [config, img.layerDigest]) await send(`${base}/v2/app/blobs/${d}`, 'DELETE');
    expect((await send(`${base}/v2/app/manifests/${img.digest}`, 'DELETE')).status).toBe(202);
    expect(running.mirror.hosted.isHosted('app')).toBe(true);
    expect((await send(`${base}/_hubcache/gc`, 'POST')).status).toBe(200);
    expect(running.mirror.hosted.isHosted('app')).toBe(false);
  });
});
