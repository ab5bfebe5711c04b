import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import type { Summary } from '../../src/observe/summary.js';
import { type FakeRegistry, sha256, startFakeRegistry } from './fake-registry.js';
import {
  addImage,
  get,
  imageManifest,
  mirrorFor,
  OCI_MANIFEST,
  pushBlob,
  send,
  tempDataDir,
} from './harness.js';

let upstream: FakeRegistry;
let mirror: RunningMirror;
let data: Awaited<ReturnType<typeof tempDataDir>>;

beforeEach(async () => {
  upstream = await startFakeRegistry();
  data = await tempDataDir();
  mirror = await mirrorFor(upstream, data.dir, ['--max-size', '1GiB']);
});

afterEach(async () => {
  await mirror.close();
  await upstream.close();
  await data.remove();
});

async function summary(): Promise<Summary> {
  return JSON.parse((await get(`${mirror.url}/_hubcache/summary`)).body.toString());
}

describe('top repositories', () => {
  it('counts only requests that were served: a refused push and a failed pull are not listed', async () => {
    const img = addImage(upstream, 'library/alpine', '1', 10_000);
    addImage(upstream, 'library/served-upstream', '1');
    expect((await get(`${mirror.url}/v2/library/alpine/manifests/1`)).status).toBe(200);
    expect((await get(`${mirror.url}/v2/library/alpine/blobs/${img.layerDigest}`)).status).toBe(200);
    // A push as docker makes it: HEAD the layer (the upstream has no such blob there: 404), then
    // open an upload, refused because the upstream serves that name (hosted/takeover.ts).
    const layer = sha256(randomBytes(64));
    const probe = await get(`${mirror.url}/v2/library/served-upstream/blobs/${layer}`, {}, 'HEAD');
    expect(probe.status).toBe(404);
    const push = await send(`${mirror.url}/v2/library/served-upstream/blobs/uploads/`, 'POST');
    expect(push.status).toBeGreaterThanOrEqual(400);
    // A pull of a tag the upstream does not have.
    expect((await get(`${mirror.url}/v2/library/nothing/manifests/1`)).status).toBe(404);
    const top = (await summary()).topRepositories.map((r) => r.repository);
    expect(top).toEqual(['library/alpine']);
  });
});

describe('/_hubcache/summary', () => {
  it('reports pushes, hosted repositories, uploads in progress, errors, evictions and downloads in flight', async () => {
    await mirror.close();
    mirror = await mirrorFor(upstream, data.dir, ['--max-size', '1MiB']);
    const before = await summary();
    expect(before).toMatchObject({
      downloads: { inFlight: 0, waiters: 0 },
      pushes: { manifests: 0, bytes: 0 },
      hostedRepositories: 0,
      uploadsInProgress: 0,
      errors: { total: 0, byStatus: {} },
      evictions: { count: 0, bytes: 0, tooBig: 0 },
    });
    // A push: two blobs and a manifest.
    const config = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers' } }),
    );
    const layer = randomBytes(3000);
    await pushBlob(mirror.url, 'mine', config);
    await pushBlob(mirror.url, 'mine', layer);
    const put = await send(`${mirror.url}/v2/mine/manifests/1`, 'PUT', imageManifest(config, [layer]), {
      'content-type': OCI_MANIFEST,
    });
    expect(put.status).toBe(201);
    // An upload left open.
    expect((await send(`${mirror.url}/v2/mine/blobs/uploads/`, 'POST')).status).toBe(202);
    // Two failures: a name the upstream does not know, a digest that is not one.
    expect((await get(`${mirror.url}/v2/library/nothing/manifests/1`)).status).toBe(404);
    expect((await get(`${mirror.url}/v2/library/alpine/blobs/sha256:nope`)).status).toBe(400);
    // A blob larger than the bound: stored, then evicted.
    const big = addImage(upstream, 'library/big', '1', 2 * 1024 * 1024);
    expect((await get(`${mirror.url}/v2/library/big/blobs/${big.layerDigest}`)).status).toBe(200);
    await mirror.mirror.settled();
    await expect.poll(async () => (await summary()).evictions.count).toBeGreaterThanOrEqual(1);
    const after = await summary();
    expect(after).toMatchObject({
      downloads: { inFlight: 0, waiters: 0 },
      pushes: { manifests: 1, bytes: config.length + layer.length },
      hostedRepositories: 1,
      uploadsInProgress: 1,
      errors: { total: 2, byStatus: { '400': 1, '404': 1 } },
      evictions: { tooBig: 1 },
    });
    expect(after.evictions.bytes).toBeGreaterThanOrEqual(2 * 1024 * 1024);
  });

  it('counts a download in flight while the upstream is still sending', async () => {
    const img = addImage(upstream, 'library/slow', '1', 100_000);
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    upstream.fault = (r) =>
      r.path.includes('/blobs/') ? { kind: 'gate', after: 50_000, open: held } : undefined;
    const pull = get(`${mirror.url}/v2/library/slow/blobs/${img.layerDigest}`);
    await expect.poll(async () => (await summary()).downloads.inFlight).toBe(1);
    release();
    expect((await pull).status).toBe(200);
  });
});

describe('/ui/', () => {
  it('carries the summary of the moment in the page, so the first figures need no request', async () => {
    addImage(upstream, 'library/alpine', '1', 10_000);
    await get(`${mirror.url}/v2/library/alpine/manifests/1`);
    await get(`${mirror.url}/v2/library/alpine/manifests/1`);
    const page = (await get(`${mirror.url}/ui/`)).body.toString();
    const embedded = /<script type="application\/json" id="initial-summary">([^<]*)<\/script>/.exec(page);
    expect(embedded).not.toBeNull();
    const initial = JSON.parse(embedded?.[1] ?? '') as Summary;
    expect(initial).toMatchObject({ requests: 2, hits: 1, hitRatio: 0.5 });
    expect(initial.topRepositories).toEqual([
      { repository: 'library/alpine', requests: 2, bytes: expect.any(Number) },
    ]);
  });
});
