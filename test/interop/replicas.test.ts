import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ListMultipartUploadsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Rgw, startRgw } from '../fixtures/ceph-rgw.js';
import { ImageLayout } from '../fixtures/image-layout.js';
import { type Redis, startRedis } from '../fixtures/redis.js';
import { requireProgram } from '../fixtures/require-program.js';
import { pullImage, pushLayout } from '../fixtures/skopeo-cli.js';
import { bedPrograms, PUSHER, startTestBed, type TestBed } from '../fixtures/test-bed.js';
import { freePort } from '../fixtures/upstream-process.js';

const haveScale = Boolean(
  requireProgram('ceph-mon') &&
    requireProgram('ceph-osd') &&
    requireProgram('radosgw') &&
    requireProgram('redis-server'),
);
const BUCKET = 'hubcache';

interface Replica {
  url: string;
  child: ChildProcess;
  data: string;
}

/**
 * Three mirror processes on different ports sharing one S3 bucket (a real Ceph RGW) and one Redis,
 * in front of the real token-auth docker-registry behind a counting front. A cold blob asked of all
 * three at once is fetched upstream once for the fleet; a replica killed mid-download leaves
 * nothing partial in the bucket, and the others complete.
 */
describe.skipIf(!bedPrograms() || !haveScale)('replicas on shared S3 storage and Redis', () => {
  let bed: TestBed;
  let rgw: Rgw;
  let redis: Redis;
  const replicas: Replica[] = [];
  let big2 = '';
  let BIG2_BYTES = 0;
  const keyOf = (digest: string) => `blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}`;

  async function startReplica(extra: string[] = [], withRedis = true): Promise<Replica> {
    const port = await freePort();
    const data = mkdtempSync(path.join(bed.work, 'replica-'));
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/main.ts',
        '--listen',
        `127.0.0.1:${port}`,
        '--upstream',
        bed.front.url,
        '--data',
        data,
        '--log-level',
        process.env.TEST_LOG ? 'info' : 'warn',
        '--s3-bucket',
        BUCKET,
        '--s3-endpoint',
        rgw.endpoint,
        '--s3-path-style',
        '--s3-region',
        rgw.region,
        ...(withRedis ? ['--redis', redis.url] : []),
        ...extra,
      ],
      {
        stdio: process.env.TEST_LOG ? 'inherit' : 'ignore',
        env: {
          ...bed.env,
          AWS_ACCESS_KEY_ID: rgw.accessKeyId,
          AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
          AWS_CA_BUNDLE: undefined,
        },
      },
    );
    const replica = { url: `http://127.0.0.1:${port}`, child, data };
    replicas.push(replica);
    for (let i = 0; i < 300; i++) {
      const up = await fetch(`${replica.url}/v2/`).then(
        (r) => r.ok,
        () => false,
      );
      if (up) return replica;
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('replica did not start');
  }

  async function stopReplica(r: Replica, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (r.child.exitCode === null && r.child.signalCode === null) {
      const exited = new Promise((resolve) => r.child.once('exit', resolve));
      r.child.kill(signal);
      await exited;
    }
    rmSync(r.data, { recursive: true, force: true });
  }

  async function sha256Of(url: string): Promise<{ status: number; digest: string; bytes: number }> {
    const res = await request(url);
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of res.body) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
    return { status: res.statusCode, digest: `sha256:${hash.digest('hex')}`, bytes };
  }

  const s3 = () =>
    new S3Client({
      endpoint: rgw.endpoint,
      region: rgw.region,
      forcePathStyle: true,
      credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
    });

  /** Every object in the bucket. */
  async function bucketContents(): Promise<{ key: string; size: number }[]> {
    const client = s3();
    const out = await client.send(new ListObjectsV2Command({ Bucket: BUCKET }));
    client.destroy();
    return (out.Contents ?? []).map((o) => ({ key: o.Key ?? '', size: o.Size ?? 0 }));
  }

  /** Multipart uploads begun and never completed (a killed publisher's leftovers). */
  async function incompleteUploads(): Promise<string[]> {
    const client = s3();
    const out = await client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
    client.destroy();
    return (out.Uploads ?? []).map((u) => u.Key ?? '');
  }

  beforeAll(async () => {
    bed = await startTestBed({ bigMiB: 64 });
    // A second cold big blob upstream, for the kill test.
    const layout = new ImageLayout(path.join(bed.work, 'layout2'));
    const layer = await layout.layer([{ name: 'big2.bin', random: 48 * 1024 * 1024 }]);
    layout.tag('big2', layout.image([layer]).manifest);
    big2 = layer.digest;
    BIG2_BYTES = layer.size;
    await pushLayout(layout.dir, 'big2', `${new URL(bed.registry.url).host}/library/big2:1`, {
      env: bed.env,
      creds: PUSHER,
    });
    [rgw, redis] = await Promise.all([startRgw(), startRedis()]);
    await rgw.createBucket(BUCKET);
    for (let i = 0; i < 3; i++) await startReplica();
  }, 600_000);

  afterAll(async () => {
    for (const r of replicas) await stopReplica(r, 'SIGKILL').catch(() => {});
    await redis?.stop();
    await rgw?.stop();
    await bed?.stop();
  });

  afterEach(() => {
    expect(bed.refusing.attempts).toEqual([]);
  });

  it('a replica killed mid-download: nothing partial becomes visible, the others complete', async () => {
    const digest = big2;
    const key = keyOf(digest);
    // Successful GETs only: the token flow's first try is a 401.
    const blobGets = () => bed.front.count('GET', new RegExp(`/blobs/${digest}$`));
    // A slow upstream keeps the first download in progress.
    bed.front.throttle = { match: (p) => p.includes(digest), bytesPerSecond: 8 * 1024 * 1024 };
    const [a, b, c] = replicas as [Replica, Replica, Replica];
    const first = sha256Of(`${a.url}/v2/library/big2/blobs/${digest}`).catch((err: Error) => err);
    for (let i = 0; i < 100 && blobGets() === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(blobGets()).toBe(1);
    const others = [b, c].map((r) => sha256Of(`${r.url}/v2/library/big2/blobs/${digest}`));
    await new Promise((r) => setTimeout(r, 1000));
    // The lock holder dies mid-download; nothing of its download may appear in the bucket.
    a.child.kill('SIGKILL');
    bed.front.throttle = undefined;
    expect(await first).toBeInstanceOf(Error);
    expect((await bucketContents()).map((o) => o.key)).not.toContain(key);
    // The others wait out the dead holder's lock, then one fetches and the other reads its copy.
    for (const r of await Promise.all(others)) {
      expect(r.status).toBe(200);
      expect(r.digest).toBe(digest);
    }
    expect(blobGets()).toBe(2);
    expect(await bucketContents()).toContainEqual({ key, size: BIG2_BYTES });
    expect(await incompleteUploads()).toEqual([]);
    // Replace the dead replica for the next tests.
    await stopReplica(a);
    replicas.splice(replicas.indexOf(a), 1);
    await startReplica();
  });

  it('3 replicas × 5 clients on one cold blob: one upstream GET for the fleet, 15 correct bodies', async () => {
    const digest = bed.images.bigLayer;
    const blobGets = () => bed.front.count('GET', new RegExp(`/blobs/${digest}`));
    const all = replicas
      .slice(0, 3)
      .flatMap((r) => Array.from({ length: 5 }, () => sha256Of(`${r.url}/v2/library/big/blobs/${digest}`)));
    const results = await Promise.all(all);
    for (const r of results) {
      expect(r.status).toBe(200);
      expect(r.digest).toBe(digest);
    }
    expect(blobGets()).toBe(1);
    const sizes = new Map((await bucketContents()).map((o) => [o.key, o.size]));
    expect(sizes.get(keyOf(digest))).toBe(results[0]?.bytes);
  });

  it('images pulled with skopeo through different replicas: each blob fetched upstream once; a fresh replica pulls from S3 only', async () => {
    const before = bed.front.requests.length;
    const hosts = replicas.slice(0, 3).map((r) => new URL(r.url).host);
    await Promise.all(
      hosts.map((host, i) =>
        pullImage(`${host}/library/alpine:3.20`, path.join(bed.work, `alpine-${i}`), { env: bed.env }),
      ),
    );
    const during = bed.front.requests.slice(before);
    const blobGets = during.filter((r) => r.method === 'GET' && r.status === 200 && /\/blobs\//.test(r.path));
    const unique = new Set(blobGets.map((r) => r.path.split('/').pop()));
    expect(blobGets.length).toBe(unique.size);
    // One replica asks the upstream about the tag; the others take its answer from Redis and S3.
    const tagGets = during.filter(
      (r) => r.method === 'GET' && r.status === 200 && r.path === '/v2/library/alpine/manifests/3.20',
    );
    expect(tagGets.length).toBe(1);
    // A fourth replica with an empty disk: the tag from Redis, manifests and blobs from S3.
    const fresh = await startReplica();
    const mark = bed.front.requests.length;
    await pullImage(`${new URL(fresh.url).host}/library/alpine:3.20`, path.join(bed.work, 'alpine-fresh'), {
      env: bed.env,
    });
    expect(bed.front.requests.slice(mark)).toEqual([]);
    await stopReplica(fresh);
    replicas.splice(replicas.indexOf(fresh), 1);
  });

  it('without Redis the replicas still share the bucket: each may fetch once, a fresh one reads S3', async () => {
    // Its own key prefix: nothing published by the tests above counts.
    const solo = [
      await startReplica(['--s3-prefix', 'solo/'], false),
      await startReplica(['--s3-prefix', 'solo/'], false),
    ];
    const digest = bed.images.bigLayer;
    const before = bed.front.count('GET', new RegExp(`/blobs/${digest}$`));
    const results = await Promise.all(solo.map((r) => sha256Of(`${r.url}/v2/library/big/blobs/${digest}`)));
    for (const r of results) expect(r.digest).toBe(digest);
    const fetched = bed.front.count('GET', new RegExp(`/blobs/${digest}$`)) - before;
    expect(fetched).toBeGreaterThanOrEqual(1);
    expect(fetched).toBeLessThanOrEqual(2);
    // Published once the fetching replica's copy is verified and stored (after its clients got it).
    let published: number | undefined;
    for (let i = 0; i < 100 && published === undefined; i++) {
      published = (await bucketContents()).find((o) => o.key === `solo/${keyOf(digest)}`)?.size;
      if (published === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    expect(published).toBe(results[0]?.bytes);
    // A third replica with an empty disk: from the bucket, not the upstream.
    const fresh = await startReplica(['--s3-prefix', 'solo/'], false);
    const mark = bed.front.requests.length;
    expect((await sha256Of(`${fresh.url}/v2/library/big/blobs/${digest}`)).digest).toBe(digest);
    expect(bed.front.requests.slice(mark)).toEqual([]);
    for (const r of [...solo, fresh]) {
      await stopReplica(r);
      replicas.splice(replicas.indexOf(r), 1);
    }
  });
});
