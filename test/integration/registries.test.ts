import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, get, mirrorFor, tempDataDir } from './harness.js';

let hub: FakeRegistry;
let ghcr: FakeRegistry;
let mirror: RunningMirror;
let data: Awaited<ReturnType<typeof tempDataDir>>;

beforeEach(async () => {
  hub = await startFakeRegistry({ auth: true });
  ghcr = await startFakeRegistry({ auth: true });
  data = await tempDataDir();
  // Layer prefetch off: upstream blob GETs counted here are the clients' (layer-prefetch.test.ts
  // shows prefetch asks the route that served the manifest).
  mirror = await mirrorFor(hub, data.dir, ['--registry', `ghcr.io=${ghcr.url}`, '--prefetch-layers', '0']);
});

afterEach(async () => {
  await mirror.close();
  await hub.close();
  await ghcr.close();
  await data.remove();
});

it('routes by ?ns= and by path prefix to the configured registry, keeping tags apart', async () => {
  const fromHub = addImage(hub, 'owner/app', '1');
  const fromGhcr = addImage(ghcr, 'owner/app', '1');
  // The same name and tag in two registries: two different images.
  const viaNs = await get(`${mirror.url}/v2/owner/app/manifests/1?ns=ghcr.io`);
  const viaPrefix = await get(`${mirror.url}/v2/ghcr.io/owner/app/manifests/1`);
  const viaDefault = await get(`${mirror.url}/v2/owner/app/manifests/1?ns=docker.io`);
  expect(viaNs.headers['docker-content-digest']).toBe(fromGhcr.manifestDigest);
  expect(viaPrefix.headers['docker-content-digest']).toBe(fromGhcr.manifestDigest);
  expect(viaPrefix.headers['x-cache']).toBe('HIT'); // ns and prefix name one cache entry
  expect(viaDefault.headers['docker-content-digest']).toBe(fromHub.manifestDigest);
  const blob = await get(`${mirror.url}/v2/ghcr.io/owner/app/blobs/${fromGhcr.layerDigest}`);
  expect(blob.body.equals(fromGhcr.layer)).toBe(true);
  expect(ghcr.count('GET', /\/blobs\//)).toBe(1);
  expect(hub.count('GET', /\/blobs\//)).toBe(0);
  const catalog = JSON.parse((await get(`${mirror.url}/v2/_catalog`)).body.toString());
  expect(catalog.repositories).toEqual(['ghcr.io/owner/app', 'owner/app']);
  // A registry that is not configured is refused, with no request anywhere.
  const before = hub.requests.length + ghcr.requests.length;
  expect((await get(`${mirror.url}/v2/owner/app/manifests/1?ns=quay.io`)).status).toBe(404);
  expect((await get(`${mirror.url}/v2/quay.io/owner/app/manifests/1`)).status).toBe(404);
  expect(hub.requests.length + ghcr.requests.length).toBe(before);
});

it('shares blobs by digest across registries: a layer cached from one is served from the store for the other', async () => {
  const img = addImage(hub, 'library/base', '1', 50_000);
  ghcr.addBlob(img.layer);
  await get(`${mirror.url}/v2/base/blobs/${img.layerDigest}`);
  await mirror.mirror.settled(); // the fill is renamed into place after the last byte
  const res = await get(`${mirror.url}/v2/ghcr.io/x/y/blobs/${img.layerDigest}`);
  expect(res.headers['x-cache']).toBe('HIT');
  expect(res.body.equals(img.layer)).toBe(true);
  // One HEAD asks whether x/y has it there (issue 14: content is scoped to a repository); no download.
  expect(ghcr.count('HEAD', /\/x\/y\/blobs\//)).toBe(1);
  expect(ghcr.requests.filter((r) => r.method !== 'HEAD')).toEqual([]);
});

it('reads registries from the configuration file', async () => {
  await mirror.close();
  const file = path.join(data.dir, 'hubcache.yml');
  writeFileSync(file, `registries:\n  ghcr.io:\n    url: ${ghcr.url}\n`);
  mirror = await mirrorFor(hub, data.dir, ['--config', file]);
  const img = addImage(ghcr, 'owner/app', '2');
  expect((await get(`${mirror.url}/v2/ghcr.io/owner/app/manifests/2`)).headers['docker-content-digest']).toBe(
    img.manifestDigest,
  );
});
