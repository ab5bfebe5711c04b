import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Redis as IORedis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { parseDigest } from '../../src/oci/digest.js';
import { S3BlobStore } from '../../src/shared/s3-store.js';
import { type Rgw, startRgw } from '../fixtures/ceph-rgw.js';
import { type Redis, startRedis } from '../fixtures/redis.js';
import { metricSample } from '../fixtures/request-counts.js';
import { requireProgram } from '../fixtures/require-program.js';
import { type FakeRegistry, startFakeRegistry } from '../integration/fake-registry.js';
import {
  addImage,
  get,
  imageManifest,
  mirrorFor,
  OCI_MANIFEST,
  send,
  tempDataDir,
} from '../integration/harness.js';

const haveFleet = Boolean(
  requireProgram('ceph-mon') &&
    requireProgram('ceph-osd') &&
    requireProgram('radosgw') &&
    requireProgram('redis-server'),
);
const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const keyOf = (digest: string) => `blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}`;

/**
 * The bucket kept in bounds (issue 19): replicas on a real Ceph RGW bucket and a real Redis collect
 * it, one at a time. What nothing names goes; hosted images, mirrored tags and live upload parts
 * stay (a replica with an empty disk still pulls every one of them); the size bound evicts the
 * mirrored image the fleet used least recently, never a hosted one; abandoned upload parts and
 * multipart uploads go. `--gc-grace 0` makes every object old enough at once.
 */
describe.skipIf(!haveFleet)('the bucket collected by the fleet', () => {
  let rgw: Rgw;
  let redis: Redis;
  let client: IORedis;
  let s3: S3Client;
  let hub: FakeRegistry;
  let data: Awaited<ReturnType<typeof tempDataDir>>;
  let bucket: string;
  const replicas: RunningMirror[] = [];

  beforeAll(async () => {
    [rgw, redis] = await Promise.all([startRgw(), startRedis()]);
    process.env.AWS_ACCESS_KEY_ID = rgw.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = rgw.secretAccessKey;
    client = new IORedis(redis.url);
    s3 = new S3Client({
      endpoint: rgw.endpoint,
      region: rgw.region,
      forcePathStyle: true,
      credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
    });
  }, 120_000);

  afterAll(async () => {
    s3?.destroy();
    client?.disconnect();
    await redis?.stop();
    await rgw?.stop();
  });

  beforeEach(async () => {
    await client.flushall();
    // A bucket per case: nothing left by the one before.
    bucket = `gc-${randomUUID().slice(0, 8)}`;
    await rgw.createBucket(bucket);
    hub = await startFakeRegistry();
    data = await tempDataDir();
  });

  afterEach(async () => {
    for (const r of replicas.splice(0)) await r.close();
    await hub.close();
    await data.remove();
  });

  async function replica(name: string, extra: string[] = []): Promise<RunningMirror> {
    const secretFile = path.join(data.dir, `${name}.secret`);
    writeFileSync(secretFile, 'f'.repeat(48), { mode: 0o600 });
    const r = await mirrorFor(hub, path.join(data.dir, name), [
      ...['--s3-bucket', bucket, '--s3-endpoint', rgw.endpoint, '--s3-region', rgw.region, '--s3-path-style'],
      ...['--redis', redis.url, '--fleet-secret-file', secretFile],
      ...['--gc-grace', '0', '--shared-gc-interval', '0', '--upload-expiry', '1'],
      ...extra,
    ]);
    replicas.push(r);
    return r;
  }

  async function keys(prefix: string): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: prefix,
          ...(token ? { ContinuationToken: token } : {}),
        }),
      );
      for (const o of page.Contents ?? []) if (o.Key) out.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out.sort();
  }

  async function put(key: string, body: Buffer): Promise<void> {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length }));
  }

  async function pushImage(base: string, name: string, tag: string, layerBytes = 300_000) {
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', n: randomUUID() }));
    const layer = randomBytes(layerBytes);
    for (const blob of [config, layer]) {
      expect((await send(`${base}/v2/${name}/blobs/uploads/?digest=${sha(blob)}`, 'POST', blob)).status).toBe(
        201,
      );
    }
    const manifest = imageManifest(config, [layer]);
    const put = await send(`${base}/v2/${name}/manifests/${tag}`, 'PUT', manifest, {
      'content-type': OCI_MANIFEST,
    });
    expect(put.status).toBe(201);
    return { digests: [sha(config), sha(layer), sha(manifest)] };
  }

  /** Pulls an image by tag (manifest, config, layer) and checks every body. */
  async function pull(base: string, name: string, tag: string): Promise<void> {
    const m = await get(`${base}/v2/${name}/manifests/${tag}`, { accept: OCI_MANIFEST });
    expect(m.status).toBe(200);
    const doc = JSON.parse(m.body.toString()) as { config: { digest: string }; layers: { digest: string }[] };
    for (const d of [doc.config.digest, ...doc.layers.map((l) => l.digest)]) {
      const b = await get(`${base}/v2/${name}/blobs/${d}`);
      expect(b.status).toBe(200);
      expect(sha(b.body)).toBe(d);
    }
  }

  async function collect(base: string): Promise<Record<string, unknown>> {
    const res = await send(`${base}/_hubcache/gc`, 'POST');
    expect(res.status).toBe(200);
    return (JSON.parse(res.body.toString()) as { shared: Record<string, unknown> }).shared;
  }

  it('removes what nothing names; hosted images, mirrored tags and live upload parts stay, and a fresh replica pulls them all', async () => {
    const mirrored = addImage(hub, 'library/alpine', 'latest', 200_000);
    const a = await replica('a');
    const b = await replica('b');
    const hosted = await pushImage(a.url, 'team/app', 'v1');
    await pull(b.url, 'library/alpine', 'latest');
    // A blob no manifest names, an upload part of a session nobody records, and one a session still records.
    const stray = randomBytes(50_000);
    await put(keyOf(sha(stray)), stray);
    const [dead, live] = [randomUUID(), randomUUID()];
    await put(`uploads/${dead}/0-10`, randomBytes(10));
    await put(`uploads/${live}/0-10`, randomBytes(10));
    await client.set(`hubcache:upload:${live}`, 'x', 'PX', 60_000);
    // Upload parts go only when older than twice --upload-expiry (1 s) on the bucket's clock.
    await new Promise((r) => setTimeout(r, 3_000));

    const result = await collect(a.url);
    expect(result).toMatchObject({ removed: 1, removedBytes: 50_000, uploadParts: 1, evicted: 0 });
    const blobs = await keys('blobs/');
    expect(blobs).not.toContain(keyOf(sha(stray)));
    for (const d of [
      ...hosted.digests,
      mirrored.manifestDigest,
      mirrored.configDigest,
      mirrored.layerDigest,
    ]) {
      expect(blobs).toContain(keyOf(d));
    }
    expect(await keys('uploads/')).toEqual([`uploads/${live}/0-10`]);

    // Nothing named was taken: a replica with an empty disk serves both images, the mirrored one
    // without asking the upstream for a blob.
    const blobGets = () => hub.downloads(/\/blobs\//);
    const before = blobGets();
    const c = await replica('c');
    await pull(c.url, 'team/app', 'v1');
    await pull(c.url, 'library/alpine', 'latest');
    expect(blobGets()).toBe(before);
    expect(await metricSample(a.url, 'hubcache_shared_gc_runs_total')).toBe(1);
    expect(await metricSample(a.url, 'hubcache_shared_gc_removed_bytes_total')).toBe(50_000);
  });

  it('--shared-max-size evicts the mirrored image the fleet used least recently, never a hosted one; a later pull fetches it again', async () => {
    const old = addImage(hub, 'library/old', 'latest', 400_000);
    const recent = addImage(hub, 'library/recent', 'latest', 400_000);
    // `a` pulls and pushes; `bounded` (the same fleet, with the bound) collects.
    const a = await replica('a');
    const hosted = await pushImage(a.url, 'team/app', 'v1', 400_000);
    await pull(a.url, 'library/old', 'latest');
    await pull(a.url, 'library/recent', 'latest');
    // The fleet's use times (replicas report them in batches): the old image's a day ago.
    await collect(a.url); // flushes this replica's reports
    const dayAgo = Date.now() - 86_400_000;
    for (const d of [old.manifestDigest, old.configDigest, old.layerDigest])
      await client.zadd('hubcache:bucket:used', dayAgo, d.slice(7));
    expect(Number(await client.zscore('hubcache:bucket:used', recent.layerDigest.slice(7)))).toBeGreaterThan(
      dayAgo,
    );

    // The bucket's clock (a HEAD's Last-Modified) has whole seconds: objects of this second are young.
    await new Promise((r) => setTimeout(r, 1_500));
    const bounded = await replica('bounded', ['--shared-max-size', '1200KB']);
    const result = await collect(bounded.url);
    expect(result).toMatchObject({ overBound: false });
    expect(Number(result.evictedBytes)).toBeGreaterThanOrEqual(400_000);
    const blobs = await keys('blobs/');
    expect(blobs).not.toContain(keyOf(old.layerDigest));
    expect(blobs).toContain(keyOf(recent.layerDigest));
    for (const d of hosted.digests) expect(blobs).toContain(keyOf(d));
    expect(await metricSample(bounded.url, 'hubcache_shared_evicted_bytes_total')).toBe(
      Number(result.evictedBytes),
    );

    // Evicted from the bucket only: a fresh replica fetches it upstream again, verified.
    const layerGets = () => hub.downloads(new RegExp(old.layerDigest));
    const before = layerGets();
    const c = await replica('c');
    await pull(c.url, 'library/old', 'latest');
    expect(layerGets()).toBeGreaterThan(before);
  });

  it('an abandoned upload (a blob no manifest names) is unlinked by one collection and removed by the next; a pushed image stays', async () => {
    const a = await replica('a');
    await replica('b');
    const pushed = await pushImage(a.url, 'team/app', 'v1');
    const lone = randomBytes(40_000);
    const put = await send(`${a.url}/v2/team/abandoned/blobs/uploads/?digest=${sha(lone)}`, 'POST', lone);
    expect(put.status).toBe(201);
    const field = `l:${sha(lone).slice(7)}`;
    expect(await client.hexists('hubcache:hosted:r:team/abandoned', field)).toBe(1);
    await new Promise((r) => setTimeout(r, 1_500));

    const first = await collect(a.url);
    expect(first).toMatchObject({ removed: 0 });
    expect(await client.hexists('hubcache:hosted:r:team/abandoned', field)).toBe(0);
    expect(await keys('blobs/')).toContain(keyOf(sha(lone)));
    // The other replicas follow the unlinking (an announcement) before the next collection.
    await new Promise((r) => setTimeout(r, 500));
    const second = await collect(a.url);
    expect(second).toMatchObject({ removed: 1, removedBytes: 40_000 });
    const blobs = await keys('blobs/');
    expect(blobs).not.toContain(keyOf(sha(lone)));
    for (const d of pushed.digests) expect(blobs).toContain(keyOf(d));
    expect((await get(`${a.url}/v2/team/abandoned/blobs/${sha(lone)}`)).status).toBe(404);
  });

  it('a hosted blob whose bucket copy is bad or gone is published again by the replica holding it, and the other serves it', async () => {
    const a = await replica('a');
    const b = await replica('b');
    const pushed = await pushImage(a.url, 'team/app', 'v1');
    const [, layer] = pushed.digests as [string, string, string];
    // Another object under the layer's key (a corruption, or anything else with write access).
    await put(keyOf(layer), randomBytes(300_000));
    const bad = await get(`${b.url}/v2/team/app/blobs/${layer}`);
    expect(bad.status).toBe(200);
    expect(sha(bad.body)).toBe(layer);
    expect(await metricSample(b.url, 'hubcache_shared_discarded_total')).toBe(1);
    expect(await metricSample(a.url, 'hubcache_shared_repaired_total')).toBe(1);

    // Gone from the bucket altogether: asked again, published again.
    const [config] = pushed.digests as [string];
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: keyOf(config) }));
    const gone = await get(`${b.url}/v2/team/app/blobs/${config}`);
    expect(gone.status).toBe(200);
    expect(sha(gone.body)).toBe(config);
    expect(await metricSample(a.url, 'hubcache_shared_repaired_total')).toBe(2);
    expect(await keys('blobs/')).toContain(keyOf(config));
  });

  it('a blob is published streamed in one PUT, or in parts past the single-PUT bound; both read back whole', async () => {
    const dir = path.join(data.dir, 'publish');
    mkdirSync(dir);
    // The bound made small (S3's is 5 GiB): 20 MiB goes in two parts of 16 MiB and 4 MiB.
    const store = new S3BlobStore(
      { bucket, endpoint: rgw.endpoint, region: rgw.region, pathStyle: true, prefix: '' },
      undefined,
      { singlePutMaxBytes: 8 * 1024 * 1024 },
    );
    try {
      for (const size of [3 * 1024 * 1024, 20 * 1024 * 1024]) {
        const bytes = randomBytes(size);
        const file = path.join(dir, String(size));
        writeFileSync(file, bytes);
        const digest = parseDigest(sha(bytes));
        await store.publishFile(digest, file, size);
        const back = await store.open(digest);
        const chunks: Buffer[] = [];
        for await (const c of back?.body ?? []) chunks.push(c as Buffer);
        expect(sha(Buffer.concat(chunks))).toBe(digest.value);
        // A multipart object's ETag says how many parts it has.
        expect(back?.etag?.includes('-2')).toBe(size > 8 * 1024 * 1024);
      }
    } finally {
      store.close();
    }
  });

  it('one replica collects at a time; abandoned multipart uploads are aborted', async () => {
    const a = await replica('a');
    const b = await replica('b');
    // Another replica holds the collection's lease.
    await client.set('hubcache:lock:bucket-gc', randomUUID(), 'PX', 60_000);
    expect(await collect(a.url)).toMatchObject({ skipped: expect.stringMatching(/another replica/) });
    await client.del('hubcache:lock:bucket-gc');

    // A replica died while publishing a big blob: its multipart upload holds parts nobody lists.
    await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: keyOf(sha('big')) }));
    await new Promise((r) => setTimeout(r, 3_000));
    const result = await collect(b.url);
    expect(result).toMatchObject({ multipartAborted: 1 });
    const left = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    expect(left.Uploads ?? []).toEqual([]);
  });
});
