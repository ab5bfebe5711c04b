import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, sha256, startFakeRegistry } from './fake-registry.js';
import { addImage, get, mirrorFor, send, tempDataDir } from './harness.js';

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

async function summary(): Promise<Record<string, unknown> & { topRepositories: { repository: string }[] }> {
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
