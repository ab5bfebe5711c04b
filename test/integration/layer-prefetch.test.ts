import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { parseDigest } from '../../src/oci/digest.js';
import { metricSample } from '../fixtures/request-counts.js';
import { type FakeRegistry, type Fault, startFakeRegistry } from './fake-registry.js';
import { gate, get, mirrorFor, OCI_INDEX, OCI_MANIFEST, tempDataDir, waitFor } from './harness.js';

let registries: FakeRegistry[] = [];
let mirror: RunningMirror | undefined;
let data: Awaited<ReturnType<typeof tempDataDir>> | undefined;

afterEach(async () => {
  await mirror?.close();
  mirror = undefined;
  for (const r of registries) await r.close();
  registries = [];
  await data?.remove();
  data = undefined;
});

async function setUp(
  extraArgs: string[] = [],
  options: { auth?: boolean } = { auth: true },
): Promise<{ upstream: FakeRegistry; mirror: RunningMirror }> {
  const upstream = await startFakeRegistry(options);
  registries.push(upstream);
  data = await tempDataDir();
  mirror = await mirrorFor(upstream, data.dir, extraArgs);
  return { upstream, mirror };
}

interface Image {
  manifestDigest: string;
  configDigest: string;
  layers: Buffer[];
  layerDigests: string[];
  /** Config first, then the layers: every blob the manifest lists. */
  blobDigests: string[];
}

/** An OCI image of layers of these sizes (random bytes) in the fake upstream. */
function addImage(
  registry: FakeRegistry,
  repository: string,
  tag: string | undefined,
  sizes: number[],
): Image {
  const layers = sizes.map((n) => randomBytes(n));
  const layerDigests = layers.map((l) => registry.addBlob(l));
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: layerDigests },
    }),
  );
  const configDigest = registry.addBlob(config);
  const manifestDigest = registry.addManifest(
    repository,
    tag,
    {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers: layers.map((l, i) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest: layerDigests[i],
        size: l.length,
      })),
    },
    OCI_MANIFEST,
  );
  return { manifestDigest, configDigest, layers, layerDigests, blobDigests: [configDigest, ...layerDigests] };
}

const blobGets = (registry: FakeRegistry, digest?: string) =>
  registry.count('GET', digest ? new RegExp(`/blobs/${digest}$`) : /\/blobs\//);

/** One sample's value from /metrics (NaN when absent). */
const metric = (running: RunningMirror, name: string, labels = '') => metricSample(running.url, name, labels);

describe('layer prefetch', () => {
  it('a manifest GET fetches its config and layers upstream unasked; the client’s blob GETs then ask the upstream nothing', async () => {
    const { upstream, mirror } = await setUp();
    const img = addImage(upstream, 'library/app', '1', [300_000, 50_000, 1_000]);
    const res = await get(`${mirror.url}/v2/library/app/manifests/1`, { accept: OCI_MANIFEST });
    expect(res.status).toBe(200);
    await mirror.mirror.settled();
    for (const d of img.blobDigests) expect(blobGets(upstream, d)).toBe(1);
    expect(await metric(mirror, 'hubcache_prefetch_started_total')).toBe(4);
    expect(await metric(mirror, 'hubcache_prefetch_bytes_total')).toBeGreaterThan(351_000);
    const before = upstream.requests.length;
    for (const [i, d] of img.layerDigests.entries()) {
      const blob = await get(`${mirror.url}/v2/library/app/blobs/${d}`);
      expect(blob.status).toBe(200);
      expect(blob.headers['x-cache']).toBe('HIT');
      expect(blob.body.equals(img.layers[i] as Buffer)).toBe(true);
    }
    expect((await get(`${mirror.url}/v2/library/app/blobs/${img.configDigest}`)).headers['x-cache']).toBe(
      'HIT',
    );
    expect(upstream.requests.length).toBe(before);
  });

  it('a HEAD of a tag prefetches too', async () => {
    const { upstream, mirror } = await setUp();
    const img = addImage(upstream, 'library/app', '1', [2_000]);
    const res = await get(`${mirror.url}/v2/library/app/manifests/1`, { accept: OCI_MANIFEST }, 'HEAD');
    expect(res.status).toBe(200);
    await mirror.mirror.settled();
    for (const d of img.blobDigests) expect(blobGets(upstream, d)).toBe(1);
  });

  it('a client asking for a layer being prefetched is streamed what has arrived, with one upstream GET in all', async () => {
    const { upstream, mirror } = await setUp();
    const img = addImage(upstream, 'library/app', '1', [1024 * 1024]);
    const layer = img.layerDigests[0] as string;
    const held = gate();
    upstream.fault = (r) =>
      r.method === 'GET' && r.path.endsWith(layer)
        ? { kind: 'gate', after: 512 * 1024, open: held.opened }
        : undefined;
    await get(`${mirror.url}/v2/library/app/manifests/1`, { accept: OCI_MANIFEST });
    await waitFor(() => blobGets(upstream, layer) === 1, 'the prefetch of the layer to reach the upstream');
    const res = await request(`${mirror.url}/v2/library/app/blobs/${layer}`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-cache']).toBe('COALESCED');
    const chunks: Buffer[] = [];
    let received = 0;
    const reading = (async () => {
      for await (const chunk of res.body) {
        chunks.push(chunk as Buffer);
        received += (chunk as Buffer).length;
      }
    })();
    // The half the upstream sent so far reaches the client before the rest exists.
    await waitFor(() => received >= 256 * 1024, 'the first bytes to reach the client');
    expect(received).toBeLessThanOrEqual(512 * 1024);
    held.open();
    await reading;
    expect(Buffer.concat(chunks).equals(img.layers[0] as Buffer)).toBe(true);
    await mirror.mirror.settled();
    expect(blobGets(upstream, layer)).toBe(1);
  });

  it('a client leaving mid-layer does not stop its prefetch', async () => {
    const { upstream, mirror } = await setUp();
    const img = addImage(upstream, 'library/app', '1', [1024 * 1024]);
    const layer = img.layerDigests[0] as string;
    const held = gate();
    upstream.fault = (r) =>
      r.method === 'GET' && r.path.endsWith(layer)
        ? { kind: 'gate', after: 512 * 1024, open: held.opened }
        : undefined;
    await get(`${mirror.url}/v2/library/app/manifests/1`, { accept: OCI_MANIFEST });
    await waitFor(() => blobGets(upstream, layer) === 1, 'the prefetch of the layer to reach the upstream');
    const res = await request(`${mirror.url}/v2/library/app/blobs/${layer}`);
    for await (const _ of res.body) break; // one chunk, then the client hangs up
    held.open();
    await mirror.mirror.settled();
    expect(await mirror.mirror.blobs.store.size(parseDigest(layer))).toBe(1024 * 1024);
    expect(blobGets(upstream, layer)).toBe(1);
    expect(mirror.mirror.prefetch.completed).toBe(2);
  });

  it('runs at most --prefetch-layers fills at once', async () => {
    const { upstream, mirror } = await setUp(['--prefetch-layers', '2']);
    const img = addImage(upstream, 'library/app', '1', [40_000, 30_000, 20_000, 10_000, 5_000, 1_000]);
    const gates: ReturnType<typeof gate>[] = [];
    let most = 0;
    upstream.fault = (r): Fault | undefined => {
      if (r.method !== 'GET' || !r.path.includes('/blobs/') || !r.authorization) return undefined;
      const held = gate();
      gates.push(held);
      const done = mirror.mirror.prefetch.completed + mirror.mirror.prefetch.failed;
      most = Math.max(most, gates.length - done);
      return { kind: 'gate', after: 100, open: held.opened };
    };
    await get(`${mirror.url}/v2/library/app/manifests/1`, { accept: OCI_MANIFEST });
    const blobs = img.blobDigests.length;
    for (let k = 0; k < blobs; k++) {
      // Two in flight (fewer at the end), and no third until one of them ended.
      await waitFor(
        () => gates.length === Math.min(blobs, k + 2),
        `${Math.min(blobs, k + 2)} blob GETs upstream`,
      );
      expect(mirror.mirror.prefetch.running).toBe(Math.min(2, blobs - k));
      gates[k]?.open();
      await waitFor(() => mirror.mirror.prefetch.completed === k + 1, `prefetch ${k + 1} to complete`);
    }
    await mirror.mirror.settled();
    expect(most).toBe(2);
    expect(blobGets(upstream)).toBe(blobs);
  });

  it('--prefetch-layers 0: a manifest GET fetches no blob', async () => {
    const { upstream, mirror } = await setUp(['--prefetch-layers', '0']);
    const img = addImage(upstream, 'library/app', '1', [10_000, 2_000]);
    expect((await get(`${mirror.url}/v2/library/app/manifests/1`, { accept: OCI_MANIFEST })).status).toBe(
      200,
    );
    await mirror.mirror.settled();
    expect(blobGets(upstream)).toBe(0);
    // The client's own GET still fills as a miss.
    const blob = await get(`${mirror.url}/v2/library/app/blobs/${img.layerDigests[0]}`);
    expect(blob.headers['x-cache']).toBe('MISS');
  });

  it('skips a layer declared larger than --max-size, and counts it', async () => {
    const { upstream, mirror } = await setUp(['--max-size', '1MiB']);
    const img = addImage(upstream, 'library/app', '1', [2 * 1024 * 1024, 4_000]);
    await get(`${mirror.url}/v2/library/app/manifests/1`, { accept: OCI_MANIFEST });
    await mirror.mirror.settled();
    expect(blobGets(upstream, img.layerDigests[0])).toBe(0);
    expect(blobGets(upstream, img.layerDigests[1])).toBe(1);
    expect(blobGets(upstream, img.configDigest)).toBe(1);
    expect(await metric(mirror, 'hubcache_prefetch_skipped_total', '{reason="too_big"}')).toBe(1);
  });

  it('skips blobs the disk has no room for above --min-free-space, and counts them', async () => {
    const { upstream, mirror } = await setUp(['--min-free-space', '1000000TiB']);
    addImage(upstream, 'library/app', '1', [4_000]);
    expect((await get(`${mirror.url}/v2/library/app/manifests/1`, { accept: OCI_MANIFEST })).status).toBe(
      200,
    );
    await mirror.mirror.settled();
    expect(blobGets(upstream)).toBe(0);
    expect(await metric(mirror, 'hubcache_prefetch_skipped_total', '{reason="no_room"}')).toBe(2);
  });

  it('an index alone fetches no blob; the child manifest the client then asks for does', async () => {
    const { upstream, mirror } = await setUp();
    const img = addImage(upstream, 'library/app', undefined, [3_000]);
    upstream.addManifest(
      'library/app',
      '1',
      {
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [
          {
            mediaType: OCI_MANIFEST,
            digest: img.manifestDigest,
            size: 1,
            platform: { os: 'linux', architecture: 'amd64' },
          },
        ],
      },
      OCI_INDEX,
    );
    const index = await get(`${mirror.url}/v2/library/app/manifests/1`, { accept: OCI_INDEX });
    expect(index.headers['content-type']).toBe(OCI_INDEX);
    await mirror.mirror.settled();
    expect(blobGets(upstream)).toBe(0);
    await get(`${mirror.url}/v2/library/app/manifests/${img.manifestDigest}`, { accept: OCI_MANIFEST });
    await mirror.mirror.settled();
    for (const d of img.blobDigests) expect(blobGets(upstream, d)).toBe(1);
  });

  it('asks the registry that served the manifest, under the same name and token scope', async () => {
    const hub = await startFakeRegistry({ auth: true });
    const ghcr = await startFakeRegistry({ auth: true });
    registries.push(hub, ghcr);
    data = await tempDataDir();
    mirror = await mirrorFor(hub, data.dir, ['--registry', `ghcr.io=${ghcr.url}`]);
    const img = addImage(ghcr, 'owner/app', '1', [5_000]);
    await get(`${mirror.url}/v2/ghcr.io/owner/app/manifests/1`, { accept: OCI_MANIFEST });
    await mirror.mirror.settled();
    for (const d of img.blobDigests)
      expect(ghcr.count('GET', new RegExp(`^/v2/owner/app/blobs/${d}$`))).toBe(1);
    expect(hub.requests.filter((r) => r.path.includes('/blobs/'))).toHaveLength(0);
    const blob = await get(`${mirror.url}/v2/ghcr.io/owner/app/blobs/${img.layerDigests[0]}`);
    expect(blob.headers['x-cache']).toBe('HIT');
  });

  it('a prefetch that fails stores nothing and is counted; the client’s later GET fetches the blob again', async () => {
    const { upstream, mirror } = await setUp();
    const img = addImage(upstream, 'library/app', '1', [100_000]);
    const layer = img.layerDigests[0] as string;
    let corrupted = 0;
    upstream.fault = (r) => {
      if (r.method !== 'GET' || !r.path.endsWith(layer) || !r.authorization || corrupted > 0)
        return undefined;
      corrupted++;
      return { kind: 'corrupt' };
    };
    await get(`${mirror.url}/v2/library/app/manifests/1`, { accept: OCI_MANIFEST });
    await mirror.mirror.settled();
    expect(mirror.mirror.prefetch.failed).toBe(1);
    expect(await metric(mirror, 'hubcache_prefetch_failed_total')).toBe(1);
    expect(await mirror.mirror.blobs.store.size(parseDigest(layer))).toBeUndefined();
    const blob = await get(`${mirror.url}/v2/library/app/blobs/${layer}`);
    expect(blob.status).toBe(200);
    expect(blob.headers['x-cache']).toBe('MISS');
    expect(blob.body.equals(img.layers[0] as Buffer)).toBe(true);
    expect(blobGets(upstream, layer)).toBe(2);
  });

  it('starts no prefetch while a client miss waits for the download budget: clients first', async () => {
    const { upstream, mirror } = await setUp(['--upstream-concurrency', '1']);
    const first = addImage(upstream, 'library/first', undefined, [20_000]);
    const second = addImage(upstream, 'library/second', undefined, [20_000]);
    const img = addImage(upstream, 'library/app', '1', [10_000, 10_000]);
    const held = gate();
    const arrived: string[] = [];
    upstream.fault = (r) => {
      if (r.method !== 'GET' || !r.path.includes('/blobs/') || !r.authorization) return undefined;
      arrived.push(r.path.slice(r.path.lastIndexOf('/') + 1));
      return r.path.endsWith(first.layerDigests[0] as string)
        ? { kind: 'gate', after: 100, open: held.opened }
        : undefined;
    };
    // One client download holds the only turn; a second client miss queues for it.
    const a = get(`${mirror.url}/v2/library/first/blobs/${first.layerDigests[0]}`);
    await waitFor(() => arrived.length === 1, 'the first client download to reach the upstream');
    const b = get(`${mirror.url}/v2/library/second/blobs/${second.layerDigests[0]}`);
    await waitFor(() => mirror.mirror.blobs.clientsQueued === 1, 'the second client miss to queue');
    await get(`${mirror.url}/v2/library/app/manifests/1`, { accept: OCI_MANIFEST });
    // The manifest arrived while a client miss waits: its blobs wait too (a prefetch starts
    // synchronously when it may).
    expect(mirror.mirror.prefetch.running).toBe(0);
    expect(mirror.mirror.prefetch.started).toBe(0);
    held.open();
    expect((await a).status).toBe(200);
    expect((await b).status).toBe(200);
    await mirror.mirror.settled();
    // Then they went out, each once.
    expect(mirror.mirror.prefetch.started).toBe(img.blobDigests.length);
    expect(arrived.slice(0, 1)).toEqual([first.layerDigests[0]]);
    expect(arrived.slice(1).sort()).toEqual([second.layerDigests[0], ...img.blobDigests].sort());
  });

  it('a client miss never queues behind prefetches: they take no turn of the download budget', async () => {
    const { upstream, mirror } = await setUp(['--upstream-concurrency', '1', '--prefetch-layers', '2']);
    const img = addImage(upstream, 'library/app', '1', [50_000]);
    const other = addImage(upstream, 'library/other', undefined, [20_000]);
    const held = gate();
    upstream.fault = (r) =>
      r.method === 'GET' && r.path.includes('/v2/library/app/blobs/')
        ? { kind: 'gate', after: 100, open: held.opened }
        : undefined;
    await get(`${mirror.url}/v2/library/app/manifests/1`, { accept: OCI_MANIFEST });
    await waitFor(() => blobGets(upstream) === 2, 'both prefetches to reach the upstream');
    // Both prefetches hang; the one turn of the clients' budget is still free.
    const blob = await get(`${mirror.url}/v2/library/other/blobs/${other.layerDigests[0]}`);
    expect(blob.status).toBe(200);
    expect(blob.headers['x-cache']).toBe('MISS');
    expect(mirror.mirror.prefetch.running).toBe(2);
    held.open();
    await mirror.mirror.settled();
    expect(mirror.mirror.prefetch.completed).toBe(img.blobDigests.length);
  });
});
