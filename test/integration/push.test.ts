import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import {
  addImage,
  errorCode,
  get,
  mirrorFor,
  OCI_MANIFEST,
  pushBlob,
  send,
  tempDataDir,
  waitFor,
} from './harness.js';

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const code = errorCode;

function imageManifest(configDigest: string, configSize: number, layers: Buffer[], extra: object = {}) {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: configSize,
      },
      layers: layers.map((l) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest: sha(l),
        size: l.length,
      })),
      ...extra,
    }),
  );
}

/** A whole image pushed: blobs, then the manifest under `tag`. */
async function pushImage(base: string, name: string, tag: string, layer = randomBytes(2048)) {
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers' } }),
  );
  const configDigest = await pushBlob(base, name, config);
  await pushBlob(base, name, layer);
  const manifest = imageManifest(configDigest, config.length, [layer]);
  const res = await send(`${base}/v2/${name}/manifests/${tag}`, 'PUT', manifest, {
    'content-type': OCI_MANIFEST,
  });
  expect(res.status, res.body.toString()).toBe(201);
  return { layer, manifest, digest: sha(manifest), configDigest };
}

let hub: FakeRegistry;
let running: RunningMirror;
let data: Awaited<ReturnType<typeof tempDataDir>>;
let base: string;

async function restart(args: string[]): Promise<void> {
  await running?.close();
  running = await mirrorFor(hub, data.dir, args);
  base = running.url;
}

beforeEach(async () => {
  hub = await startFakeRegistry();
  data = await tempDataDir();
  running = await mirrorFor(hub, data.dir);
  base = running.url;
});

afterEach(async () => {
  await running.close();
  await hub.close();
  await data.remove();
});

describe('pushing to a hosted repository', () => {
  it('takes a monolithic push, serves it back by tag and digest, lists it, and never asks upstream', async () => {
    const img = await pushImage(base, 'busybox', 'latest');
    const byTag = await get(`${base}/v2/busybox/manifests/latest`, { accept: OCI_MANIFEST });
    expect(byTag.status).toBe(200);
    expect(byTag.headers['docker-content-digest']).toBe(img.digest);
    expect(byTag.headers['content-type']).toBe(OCI_MANIFEST);
    expect(byTag.headers['x-cache']).toBe('HOSTED');
    expect(byTag.body.equals(img.manifest)).toBe(true);
    expect((await get(`${base}/v2/busybox/manifests/${img.digest}`)).body.equals(img.manifest)).toBe(true);
    const head = await get(`${base}/v2/busybox/blobs/${sha(img.layer)}`, {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(img.layer.length));
    expect((await get(`${base}/v2/busybox/blobs/${sha(img.layer)}`)).body.equals(img.layer)).toBe(true);
    expect(JSON.parse((await get(`${base}/v2/busybox/tags/list`)).body.toString())).toEqual({
      name: 'busybox',
      tags: ['latest'],
    });
    expect(JSON.parse((await get(`${base}/v2/_catalog`)).body.toString())).toEqual({
      repositories: ['busybox'],
    });
    expect(hub.requests).toEqual([]);
    // Stored once, content-addressed, beside the mirror's own blobs.
    const hex = sha(img.layer).slice(7);
    expect(existsSync(path.join(data.dir, 'blobs', 'sha256', hex.slice(0, 2), hex))).toBe(true);
  });

  it('takes a chunked upload with Content-Range, reports progress, refuses an out-of-order chunk', async () => {
    const blob = randomBytes(300_000);
    const start = await send(`${base}/v2/team/app/blobs/uploads/`, 'POST');
    expect(start.status).toBe(202);
    const location = start.headers.location as string;
    expect(location).toMatch(/^\/v2\/team\/app\/blobs\/uploads\/[0-9a-f-]{36}$/);
    expect(start.headers.range).toBe('0-0');
    expect(start.headers['docker-upload-uuid']).toBe(location.split('/').pop());
    const first = await send(`${base}${location}`, 'PATCH', blob.subarray(0, 100_000), {
      'content-range': '0-99999',
      'content-type': 'application/octet-stream',
    });
    expect(first.status).toBe(202);
    expect(first.headers.range).toBe('0-99999');
    // A chunk that does not start where the upload stands: 416, and nothing written.
    const wrong = await send(`${base}${location}`, 'PATCH', blob.subarray(200_000), {
      'content-range': '200000-299999',
    });
    expect(wrong.status).toBe(416);
    expect(wrong.headers.range).toBe('0-99999');
    // A chunk without Content-Range (streamed, as docker does) goes at the current offset.
    const second = await send(`${base}${location}`, 'PATCH', blob.subarray(100_000, 200_000));
    expect(second.headers.range).toBe('0-199999');
    const status = await send(`${base}${location}`, 'GET');
    expect(status.status).toBe(204);
    expect(status.headers.range).toBe('0-199999');
    // The last chunk comes with the closing PUT.
    const done = await send(`${base}${location}?digest=${sha(blob)}`, 'PUT', blob.subarray(200_000), {
      'content-range': '200000-299999',
    });
    expect(done.status, done.body.toString()).toBe(201);
    expect(done.headers['docker-content-digest']).toBe(sha(blob));
    expect((await get(`${base}/v2/team/app/blobs/${sha(blob)}`)).body.equals(blob)).toBe(true);
    // The session is gone.
    expect(code(await send(`${base}${location}`, 'GET'))).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  it('refuses a wrong digest with DIGEST_INVALID and stores nothing', async () => {
    const blob = randomBytes(5000);
    const claimed = sha(randomBytes(10));
    const mono = await send(`${base}/v2/app/blobs/uploads/?digest=${claimed}`, 'POST', blob);
    expect(mono.status).toBe(400);
    expect(code(mono)).toBe('DIGEST_INVALID');
    const start = await send(`${base}/v2/app/blobs/uploads/`, 'POST');
    const location = start.headers.location as string;
    await send(`${base}${location}`, 'PATCH', blob);
    const put = await send(`${base}${location}?digest=${claimed}`, 'PUT');
    expect(code(put)).toBe('DIGEST_INVALID');
    for (const d of [claimed, sha(blob)]) {
      expect((await get(`${base}/v2/app/blobs/${d}`, {}, 'HEAD')).status).toBe(404);
    }
    expect(code(await send(`${base}${location}`, 'GET'))).toBe('BLOB_UPLOAD_UNKNOWN');
    const badDigest = await send(`${base}/v2/app/blobs/uploads/?digest=sha256:nothex`, 'POST', blob);
    expect(code(badDigest)).toBe('DIGEST_INVALID');
    // No stray file anywhere: uploads/ empty, no temp left.
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(path.join(data.dir, 'uploads'))).toEqual([]);
  });

  it('checks manifests: referenced blobs must exist, the digest must match, schema 1 is refused', async () => {
    const layer = randomBytes(100);
    const config = Buffer.from('{}');
    const configDigest = await pushBlob(base, 'app', config);
    const missing = imageManifest(configDigest, config.length, [layer]);
    const r1 = await send(`${base}/v2/app/manifests/1`, 'PUT', missing, { 'content-type': OCI_MANIFEST });
    expect(r1.status).toBe(400);
    expect(code(r1)).toBe('MANIFEST_BLOB_UNKNOWN');
    await pushBlob(base, 'app', layer);
    const ok = imageManifest(configDigest, config.length, [layer]);
    const r2 = await send(`${base}/v2/app/manifests/${sha(randomBytes(4))}`, 'PUT', ok, {
      'content-type': OCI_MANIFEST,
    });
    expect(code(r2)).toBe('DIGEST_INVALID');
    const r3 = await send(`${base}/v2/app/manifests/1`, 'PUT', '{"schemaVersion":1,"fsLayers":[]}', {
      'content-type': 'application/vnd.docker.distribution.manifest.v1+prettyjws',
    });
    expect(code(r3)).toBe('MANIFEST_INVALID');
    const r4 = await send(`${base}/v2/app/manifests/1`, 'PUT', 'not json', { 'content-type': OCI_MANIFEST });
    expect(code(r4)).toBe('MANIFEST_INVALID');
    const r5 = await send(`${base}/v2/app/manifests/1`, 'PUT', ok, {
      'content-type': 'application/vnd.docker.distribution.manifest.v2+json',
    });
    expect(code(r5)).toBe('MANIFEST_INVALID'); // Content-Type disagrees with the body's mediaType
    // By digest, tagged in the same request (end-7b).
    const r6 = await send(`${base}/v2/app/manifests/${sha(ok)}?tag=a&tag=b`, 'PUT', ok, {
      'content-type': OCI_MANIFEST,
    });
    expect(r6.status).toBe(201);
    expect(JSON.parse((await get(`${base}/v2/app/tags/list`)).body.toString()).tags).toEqual(['a', 'b']);
    // An index needs its entries in the repository first.
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: OCI_MANIFEST,
            digest: sha(ok),
            size: ok.length,
            platform: { os: 'linux', architecture: 'amd64' },
          },
        ],
      }),
    );
    const r7 = await send(`${base}/v2/other/manifests/multi`, 'PUT', index, {
      'content-type': 'application/vnd.oci.image.index.v1+json',
    });
    expect(code(r7)).toBe('MANIFEST_BLOB_UNKNOWN');
    const r8 = await send(`${base}/v2/app/manifests/multi`, 'PUT', index, {
      'content-type': 'application/vnd.oci.image.index.v1+json',
    });
    expect(r8.status).toBe(201);
  });

  it('mounts a blob from another repository without an upload, and falls back to a session for an unknown one', async () => {
    const img = await pushImage(base, 'source', '1');
    const layer = sha(img.layer);
    const mount = await send(`${base}/v2/target/blobs/uploads/?mount=${layer}&from=source`, 'POST');
    expect(mount.status).toBe(201);
    expect(mount.headers.location).toBe(`/v2/target/blobs/${layer}`);
    expect(mount.headers['docker-content-digest']).toBe(layer);
    const unknown = await send(`${base}/v2/target/blobs/uploads/?mount=${sha('nope')}&from=source`, 'POST');
    expect(unknown.status).toBe(202);
    expect(unknown.headers.location).toMatch(/\/v2\/target\/blobs\/uploads\//);
    // A blob the mirror cached from upstream mounts too: one store.
    const pulled = addImage(hub, 'library/alpine', '3.20');
    await get(`${base}/v2/library/alpine/blobs/${pulled.layerDigest}`);
    await running.mirror.settled(); // the fill is renamed into place just after the last byte
    const fromCache = await send(
      `${base}/v2/target/blobs/uploads/?mount=${pulled.layerDigest}&from=library/alpine`,
      'POST',
    );
    expect(fromCache.status).toBe(201);
  });

  it('a pushed name shadows the upstream under exactly that name; library/ stays mirrored', async () => {
    const upstreamImg = addImage(hub, 'library/busybox', 'latest');
    const before = await get(`${base}/v2/busybox/manifests/latest`);
    expect(before.headers['docker-content-digest']).toBe(upstreamImg.manifestDigest);
    const pushed = await pushImage(base, 'busybox', 'latest');
    const seen = hub.requests.length;
    const after = await get(`${base}/v2/busybox/manifests/latest`);
    expect(after.headers['docker-content-digest']).toBe(pushed.digest);
    expect(after.headers['x-cache']).toBe('HOSTED');
    // What Docker's registry-mirrors asks for is the official image, still mirrored.
    const official = await get(`${base}/v2/library/busybox/manifests/latest`);
    expect(official.headers['docker-content-digest']).toBe(upstreamImg.manifestDigest);
    expect(hub.requests.length).toBe(seen); // the official tag was cached; the hosted one never goes up
    // A tag the hosted repository lacks is unknown: no fallback to the upstream.
    expect(code(await get(`${base}/v2/busybox/manifests/1.36`))).toBe('MANIFEST_UNKNOWN');
    expect(hub.requests.length).toBe(seen);
    const catalog = JSON.parse((await get(`${base}/v2/_catalog`)).body.toString());
    expect(catalog.repositories).toEqual(['busybox', 'library/busybox']);
    // Hosted after a restart too.
    await restart([]);
    expect((await get(`${base}/v2/busybox/manifests/latest`)).headers['docker-content-digest']).toBe(
      pushed.digest,
    );
  });

  it('answers a push whose HEAD the upstream answered: the blob is fetched when the manifest arrives', async () => {
    // The layer exists upstream under library/base; a first push of `base` HEADs it through the mirror path.
    const upstreamImg = addImage(hub, 'library/base', '1', 4096);
    const head = await get(`${base}/v2/base/blobs/${upstreamImg.layerDigest}`, {}, 'HEAD');
    expect(head.status).toBe(200);
    const config = Buffer.from('{"os":"linux"}');
    const configDigest = await pushBlob(base, 'base', config);
    const manifest = imageManifest(configDigest, config.length, [upstreamImg.layer]);
    const put = await send(`${base}/v2/base/manifests/1`, 'PUT', manifest, { 'content-type': OCI_MANIFEST });
    expect(put.status, put.body.toString()).toBe(201);
    expect(
      (await get(`${base}/v2/base/blobs/${upstreamImg.layerDigest}`)).body.equals(upstreamImg.layer),
    ).toBe(true);
  });

  it('deletes only when allowed; a repository emptied by deletes stays hosted and answers 404', async () => {
    const img = await pushImage(base, 'app', '1');
    const refused = await send(`${base}/v2/app/manifests/${img.digest}`, 'DELETE');
    expect(refused.status).toBe(405);
    await restart(['--allow-delete']);
    expect((await send(`${base}/v2/app/manifests/nope`, 'DELETE')).status).toBe(404);
    expect((await send(`${base}/v2/app/blobs/${sha(img.layer)}`, 'DELETE')).status).toBe(202);
    const del = await send(`${base}/v2/app/manifests/${img.digest}`, 'DELETE');
    expect(del.status).toBe(202);
    expect(code(await get(`${base}/v2/app/manifests/${img.digest}`))).toBe('MANIFEST_UNKNOWN');
    expect(hub.requests).toEqual([]);
    expect(JSON.parse((await get(`${base}/v2/_catalog`)).body.toString()).repositories).not.toContain('app');
  });

  it('lists referrers of a hosted manifest, filtered by artifactType', async () => {
    const img = await pushImage(base, 'app', '1');
    const empty = Buffer.from('{}');
    const emptyDigest = await pushBlob(base, 'app', empty);
    const sbom = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType: 'application/spdx+json',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: emptyDigest, size: 2 },
        layers: [],
        subject: { mediaType: OCI_MANIFEST, digest: img.digest, size: img.manifest.length },
        annotations: { 'org.example': 'sbom' },
      }),
    );
    const put = await send(`${base}/v2/app/manifests/${sha(sbom)}`, 'PUT', sbom, {
      'content-type': OCI_MANIFEST,
    });
    expect(put.status).toBe(201);
    expect(put.headers['oci-subject']).toBe(img.digest);
    const list = await get(`${base}/v2/app/referrers/${img.digest}`);
    expect(list.headers['content-type']).toBe('application/vnd.oci.image.index.v1+json');
    expect(JSON.parse(list.body.toString()).manifests).toEqual([
      {
        mediaType: OCI_MANIFEST,
        digest: sha(sbom),
        size: sbom.length,
        artifactType: 'application/spdx+json',
        annotations: { 'org.example': 'sbom' },
      },
    ]);
    const filtered = await get(`${base}/v2/app/referrers/${img.digest}?artifactType=other`);
    expect(JSON.parse(filtered.body.toString()).manifests).toEqual([]);
    expect(filtered.headers['oci-filters-applied']).toBe('artifactType');
  });

  it('drops an upload session idle past the expiry, with its bytes', async () => {
    const start = await send(`${base}/v2/app/blobs/uploads/`, 'POST');
    const location = start.headers.location as string;
    await send(`${base}${location}`, 'PATCH', randomBytes(1000));
    expect(await running.mirror.uploads.sweep(Date.now() + 3_600_000 + 1)).toBe(1);
    expect(code(await send(`${base}${location}`, 'GET'))).toBe('BLOB_UPLOAD_UNKNOWN');
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(path.join(data.dir, 'uploads'))).toEqual([]);
  });
});

describe('which names take pushes', () => {
  it('--no-push: a read-only mirror, every write 405', async () => {
    await restart(['--no-push']);
    for (const method of ['POST', 'PUT', 'PATCH'] as const) {
      const res = await send(`${base}/v2/app/blobs/uploads/`, method);
      expect(res.status, method).toBe(405);
      expect(code(res)).toBe('UNSUPPORTED');
    }
    expect((await send(`${base}/v2/app/manifests/1`, 'PUT', '{}')).status).toBe(405);
  });

  it('--hosted patterns: only matching names take pushes, and they never go upstream even before one', async () => {
    await restart(['--hosted', 'team/*', '--hosted', 'tools']);
    addImage(hub, 'team/app', '1');
    expect(code(await get(`${base}/v2/team/app/manifests/1`))).toBe('MANIFEST_UNKNOWN');
    expect(hub.requests).toEqual([]);
    const denied = await send(`${base}/v2/someone/else/blobs/uploads/`, 'POST');
    expect(denied.status).toBe(403);
    expect(code(denied)).toBe('DENIED');
    await pushImage(base, 'team/app', '1');
    await pushImage(base, 'tools', '1');
    // With a pattern, library/ is allowed if it matches.
    await restart(['--hosted', 'library/internal']);
    await pushImage(base, 'library/internal', '1');
  });

  it('a name under a mirrored registry prefix is refused', async () => {
    await restart(['--registry', `ghcr.io=${hub.url}`]);
    const res = await send(`${base}/v2/ghcr.io/owner/app/blobs/uploads/`, 'POST');
    expect(res.status).toBe(403);
    expect(code(res)).toBe('DENIED');
  });
});

describe('hosted content and the size bound', () => {
  it('eviction removes cached blobs, never hosted ones', async () => {
    await restart(['--max-size', '200KiB']);
    const hosted = await pushImage(base, 'mine', '1', randomBytes(100 * 1024));
    for (let i = 0; i < 4; i++) {
      const img = addImage(hub, `library/c${i}`, '1', 60 * 1024);
      await get(`${base}/v2/library/c${i}/blobs/${img.layerDigest}`);
      await running.mirror.settled(); // stored, in this order: the least recently used go first
    }
    // Eviction runs in the background once a commit goes over the bound.
    await waitFor(() => running.mirror.blobs.store.evictions.count > 0, 'an eviction');
    const blob = await get(`${base}/v2/mine/blobs/${sha(hosted.layer)}`);
    expect(blob.status).toBe(200);
    expect(blob.body.equals(hosted.layer)).toBe(true);
    expect((await get(`${base}/v2/mine/manifests/1`)).status).toBe(200);
  });
});
