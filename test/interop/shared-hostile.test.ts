import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Redis as IORedis } from 'ioredis';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SHARED_CHECKED_FIRST_BYTES } from '../../src/cache/blob-cache.js';
import { configWith } from '../../src/config.js';
import { type RunningMirror, startMirror } from '../../src/listen.js';
import { StartupError } from '../../src/startup-errors.js';
import { type Rgw, startRgw } from '../fixtures/ceph-rgw.js';
import { ImageLayout, type Layer } from '../fixtures/image-layout.js';
import { type Redis, startRedis } from '../fixtures/redis.js';
import { requireProgram } from '../fixtures/require-program.js';
import { inspectRaw, pushLayout } from '../fixtures/skopeo-cli.js';
import { bedPrograms, PUSHER, startTestBed, type TestBed } from '../fixtures/test-bed.js';
import { freePort } from '../fixtures/upstream-process.js';

const haveScale = Boolean(
  requireProgram('ceph-mon') &&
    requireProgram('ceph-osd') &&
    requireProgram('radosgw') &&
    requireProgram('redis-server'),
);
const BUCKET = 'hubcache';
/** Above the size up to which a shared copy is checked before any client sees it (16 MiB). */
const BIG_BYTES = 24 * 1024 * 1024;

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const keyOf = (digest: string) => `blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}`;

interface Pulled {
  status: number;
  /** The Content-Length the mirror announced. */
  declared: number;
  bytes: number;
  digest: string;
  /** The body ended early (the connection was cut). */
  cut: boolean;
}

async function pull(url: string): Promise<Pulled> {
  const res = await request(url);
  const hash = createHash('sha256');
  let bytes = 0;
  let cut = false;
  try {
    for await (const chunk of res.body) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
  } catch {
    cut = true;
  }
  const declared = Number(res.headers['content-length'] ?? -1);
  return { status: res.statusCode, declared, bytes, digest: `sha256:${hash.digest('hex')}`, cut };
}

interface Front {
  url: string;
  /** Matching 200 GETs whose bodies are being held. */
  held: number;
  /** Writes (PUT, POST) refused from now on, as a bucket this replica may read but not fill. */
  readOnly: boolean;
  open(): void;
  close(): Promise<void>;
}

/**
 * A forwarding front. `hold`: the bodies of matching 200 GETs (headers go out at once) wait until
 * `open()`, so a replica fetching them is visibly in the middle of its download. `readOnly`: writes
 * (PUT, POST) are refused with S3's AccessDenied, as a bucket this replica may read but not fill
 * (settable later: `front.readOnly`).
 */
async function startFront(
  target: string,
  options: { hold?: (path: string) => boolean; readOnly?: boolean },
): Promise<Front> {
  const upstream = new URL(target);
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  const server: Server = createServer((req, res) => {
    if (front.readOnly && (req.method === 'PUT' || req.method === 'POST')) {
      req.resume();
      res.writeHead(403, { 'content-type': 'application/xml' });
      return void res.end('<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>');
    }
    const out = httpRequest(
      // The Host header is forwarded as sent: S3 signatures cover it.
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        if (req.method === 'GET' && upRes.statusCode === 200 && options.hold?.(req.url ?? '')) {
          front.held++;
          res.flushHeaders();
          void opened.then(() => upRes.pipe(res));
        } else upRes.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const front: Front = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    held: 0,
    readOnly: options.readOnly === true,
    open,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return front;
}

const until = async (done: () => boolean) => {
  for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 50));
};

/**
 * Issue 13, "safe on a network": an object in the shared bucket, or an entry in Redis, may be wrong
 * (hostile or corrupt). It is checked like an upstream body: never served as it is, removed, and the
 * blob fetched from the upstream instead. And a bucket that is down must not make replicas take
 * turns at the upstream behind each other's download lock.
 */
describe.skipIf(!bedPrograms() || !haveScale)('a hostile or failing shared store', () => {
  let bed: TestBed;
  let rgw: Rgw;
  let redis: Redis;
  const replicas: RunningMirror[] = [];
  const savedEnv = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  let layout: ImageLayout;
  let small: Layer[] = [];
  let big: Layer;
  let gated: Layer;
  let readOnly: Layer;
  let misnamedBucket: Layer;
  let manifestDigest = '';
  let oldDigest = '';

  async function startReplica(
    s3Endpoint: string,
    upstream = bed.front.url,
    bucket = BUCKET,
    extra: string[] = [],
  ): Promise<RunningMirror> {
    const replica = await startMirror(
      configWith({
        upstream,
        dataDir: mkdtempSync(path.join(bed.work, 'replica-')),
        listen: '127.0.0.1:0',
        extraArgs: [
          '--s3-bucket',
          bucket,
          '--s3-endpoint',
          s3Endpoint,
          '--s3-path-style',
          '--s3-region',
          rgw.region,
          '--redis',
          redis.url,
          // Through a gating front, the registry's token realm (the bed's front) is on another
          // port: the operator lists it, as for a token server beside the registry.
          ...(upstream === bed.front.url ? [] : ['--upstream-realm-host', '127.0.0.1']),
          ...extra,
        ],
      }),
    );
    replicas.push(replica);
    return replica;
  }

  const s3 = () =>
    new S3Client({
      endpoint: rgw.endpoint,
      region: rgw.region,
      forcePathStyle: true,
      credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });

  /** Puts bytes under a digest's key, as a hostile or broken writer of the bucket would. */
  async function plant(digest: string, body: Buffer): Promise<void> {
    const client = s3();
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: keyOf(digest), Body: body }));
    client.destroy();
  }

  /** The object under a digest's key, undefined when there is none. */
  async function objectAt(digest: string): Promise<Buffer | undefined> {
    const client = s3();
    try {
      const out = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: keyOf(digest) }));
      return Buffer.from(
        await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      );
    } catch (err) {
      if ((err as { name?: string }).name === 'NoSuchKey') return undefined;
      throw err;
    } finally {
      client.destroy();
    }
  }

  /** Waits (bounded) until the key holds no object or the right bytes; returns what it holds. */
  async function settled(digest: string): Promise<Buffer | undefined> {
    let found = await objectAt(digest);
    for (let i = 0; i < 100 && found && sha256(found) !== digest; i++) {
      await new Promise((r) => setTimeout(r, 100));
      found = await objectAt(digest);
    }
    return found;
  }

  const blobGets = (digest: string) => bed.front.count('GET', new RegExp(`/blobs/${digest}$`));

  beforeAll(async () => {
    bed = await startTestBed({ bigMiB: 1 });
    layout = new ImageLayout(path.join(bed.work, 'hostile'));
    small = [
      await layout.layer([{ name: 'a.bin', random: 200_000 }]),
      await layout.layer([{ name: 'b.bin', random: 300_000 }]),
      await layout.layer([{ name: 'c.bin', random: 400_000 }]),
    ];
    big = await layout.layer([{ name: 'big.bin', random: BIG_BYTES }]);
    gated = await layout.layer([{ name: 'gated.bin', random: 500_000 }]);
    readOnly = await layout.layer([{ name: 'read-only.bin', random: 600_000 }]);
    misnamedBucket = await layout.layer([{ name: 'misnamed.bin', random: 700_000 }]);
    layout.tag('hostile', layout.image([...small, big]).manifest);
    layout.tag('old', layout.image([small[0] as Layer]).manifest);
    layout.tag('gated', layout.image([gated, readOnly, misnamedBucket]).manifest);
    const host = new URL(bed.registry.url).host;
    const push = { env: bed.env, creds: PUSHER };
    await pushLayout(layout.dir, 'hostile', `${host}/library/hostile:1`, push);
    await pushLayout(layout.dir, 'old', `${host}/library/hostile:old`, push);
    await pushLayout(layout.dir, 'gated', `${host}/library/gated:1`, push);
    manifestDigest = sha256(Buffer.from(await inspectRaw(`${host}/library/hostile:1`, push)));
    oldDigest = sha256(Buffer.from(await inspectRaw(`${host}/library/hostile:old`, push)));
    [rgw, redis] = await Promise.all([startRgw(), startRedis()]);
    await rgw.createBucket(BUCKET);
    // In-process replicas: their S3 clients take the credentials from the environment.
    process.env.AWS_ACCESS_KEY_ID = rgw.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = rgw.secretAccessKey;
    for (let i = 0; i < 2; i++) await startReplica(rgw.endpoint);
  }, 600_000);

  afterAll(async () => {
    for (const r of replicas) await r.close().catch(() => {});
    await redis?.stop();
    await rgw?.stop();
    await bed?.stop();
    process.env.AWS_ACCESS_KEY_ID = savedEnv.id;
    process.env.AWS_SECRET_ACCESS_KEY = savedEnv.secret;
    if (savedEnv.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
    if (savedEnv.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
  });

  afterEach(() => {
    expect(bed.refusing.attempts).toEqual([]);
  });

  it('wrong objects under small blobs’ keys: both replicas serve the right bytes, from the upstream, and the bad objects are gone', async () => {
    const [a, b] = replicas as [RunningMirror, RunningMirror];
    const [other, longer, flipped] = small as [Layer, Layer, Layer];
    const right = (l: Layer) => layout.read(l.digest);
    // Other bytes of another length; the right bytes with a trailing byte; one byte flipped.
    await plant(other.digest, Buffer.from('not this blob at all'));
    await plant(longer.digest, Buffer.concat([right(longer), Buffer.from('\n')]));
    const bad = Buffer.from(right(flipped));
    bad[bad.length >> 1] = (bad[bad.length >> 1] ?? 0) ^ 0xff;
    await plant(flipped.digest, bad);

    for (const layer of [other, longer, flipped]) {
      const results = await Promise.all(
        [a, b].map((r) => pull(`${r.url}/v2/library/hostile/blobs/${layer.digest}`)),
      );
      for (const r of results) {
        expect(r).toEqual({
          status: 200,
          declared: layer.size,
          bytes: layer.size,
          digest: layer.digest,
          cut: false,
        });
      }
      expect(blobGets(layer.digest)).toBeGreaterThanOrEqual(1);
      const now = await settled(layer.digest);
      if (now) expect(sha256(now)).toBe(layer.digest);
    }
    expect(a.mirror.blobs.sharedDiscarded + b.mirror.blobs.sharedDiscarded).toBeGreaterThanOrEqual(3);
  });

  it('a wrong object under a big blob’s key (streamed as it is read): never a complete wrong body; it is removed and the next request is right', async () => {
    const [a, b] = replicas as [RunningMirror, RunningMirror];
    expect(big.size).toBeGreaterThan(SHARED_CHECKED_FIRST_BYTES);
    const discarded = a.mirror.blobs.sharedDiscarded;
    const bad = Buffer.from(layout.read(big.digest));
    bad[bad.length >> 1] = (bad[bad.length >> 1] ?? 0) ^ 0xff;
    await plant(big.digest, bad);
    const first = await pull(`${a.url}/v2/library/hostile/blobs/${big.digest}`);
    // Served while it was read: the most a client may see is a cut connection, once.
    if (!first.cut) expect(first.digest).toBe(big.digest);
    expect(a.mirror.blobs.sharedDiscarded).toBe(discarded + 1);
    for (const r of [a, b, a]) {
      const again = await pull(`${r.url}/v2/library/hostile/blobs/${big.digest}`);
      expect(again).toEqual({
        status: 200,
        declared: big.size,
        bytes: big.size,
        digest: big.digest,
        cut: false,
      });
    }
    expect(blobGets(big.digest)).toBeGreaterThanOrEqual(1);
    const now = await settled(big.digest);
    if (now) expect(sha256(now)).toBe(big.digest);
  });

  it('a wrong object under a manifest’s key is not served: the manifest comes from the upstream', async () => {
    const [, b] = replicas as [RunningMirror, RunningMirror];
    await plant(manifestDigest, Buffer.from('{"schemaVersion":2,"layers":[]}'));
    const res = await request(`${b.url}/v2/library/hostile/manifests/${manifestDigest}`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    expect(res.statusCode).toBe(200);
    expect(sha256(body)).toBe(manifestDigest);
    const now = await settled(manifestDigest);
    if (now) expect(sha256(now)).toBe(manifestDigest);
  });

  it('tag entries in Redis that cannot be right (not a digest; checked in the future) are not trusted', async () => {
    const [a] = replicas as [RunningMirror, RunningMirror];
    const accept = { accept: 'application/vnd.oci.image.manifest.v1+json' };
    // The old image is known to the fleet (its manifest in the bucket).
    expect((await request(`${a.url}/v2/library/hostile/manifests/old`, { headers: accept })).statusCode).toBe(
      200,
    );
    const client = new IORedis(redis.url);
    try {
      const pin = (digest: string, checkedAt: number) =>
        client.hset(
          'hubcache:tags:library/hostile',
          '1',
          JSON.stringify({ digest, mediaType: 'application/vnd.oci.image.manifest.v1+json', checkedAt }),
        );
      for (const [digest, checkedAt] of [
        ['not a digest', Date.now()],
        // Pinned to another manifest "for ever": it would never be revalidated.
        [oldDigest, Date.now() + 10 * 365 * 24 * 3600 * 1000],
      ] as const) {
        await pin(digest, checkedAt);
        const res = await request(`${a.url}/v2/library/hostile/manifests/1`, { headers: accept });
        await res.body.arrayBuffer();
        expect(res.statusCode).toBe(200);
        expect(res.headers['docker-content-digest']).toBe(manifestDigest);
      }
    } finally {
      client.disconnect();
    }
  });

  /**
   * Three new replicas on `s3Endpoint`'s `bucket`, asked for one cold blob at once through a front
   * that holds its body: each pull's outcome checked, and how many downloads the front held at once
   * (3: none waited for another's lock).
   */
  async function threeAtOnce(s3Endpoint: string, layer: Layer, bucket = BUCKET) {
    const gate = await startFront(bed.front.url, { hold: (p) => p.endsWith(`/blobs/${layer.digest}`) });
    try {
      // Told to start without a working bucket: by default the start-up check refuses it.
      const three = [
        await startReplica(s3Endpoint, gate.url, bucket, ['--shared-degraded']),
        await startReplica(s3Endpoint, gate.url, bucket, ['--shared-degraded']),
        await startReplica(s3Endpoint, gate.url, bucket, ['--shared-degraded']),
      ];
      const pulls = three.map((r) => pull(`${r.url}/v2/library/gated/blobs/${layer.digest}`));
      // While the gate holds the first download's body, the others must have started theirs.
      await until(() => gate.held >= 3);
      const heldAtOnce = gate.held;
      gate.open();
      for (const r of await Promise.all(pulls)) {
        expect(r).toEqual({
          status: 200,
          declared: layer.size,
          bytes: layer.size,
          digest: layer.digest,
          cut: false,
        });
      }
      return { heldAtOnce, replicas: three };
    } finally {
      gate.open();
      await gate.close();
    }
  }

  it('bucket down, Redis up: a cold blob asked of three replicas at once is fetched by all three at once, none waiting on another’s lock', async () => {
    const { heldAtOnce, replicas: down } = await threeAtOnce(`http://127.0.0.1:${await freePort()}`, gated);
    expect(heldAtOnce).toBe(3);
    expect(down.map((r) => r.mirror.blobs.sharedWaits)).toEqual([0, 0, 0]);
  });

  it('a bucket that does not exist, or one that refuses writes, stops the start of a replica with one line; Redis reachable passes', async () => {
    const misnamed = await startReplica(rgw.endpoint, bed.front.url, 'no-such-bucket').catch(
      (e: unknown) => e,
    );
    expect(misnamed).toBeInstanceOf(StartupError);
    expect((misnamed as Error).message).toBe(
      '--s3-bucket no-such-bucket: the bucket does not exist (NoSuchBucket)',
    );
    const bucket = await startFront(rgw.endpoint, { readOnly: true });
    try {
      const readOnlyStart = await startReplica(bucket.url).catch((e: unknown) => e);
      expect((readOnlyStart as Error).message).toMatch(
        /^--s3-bucket \S+: access denied \(PutObject: AccessDenied\)/,
      );
    } finally {
      await bucket.close();
    }
  });

  it('a bucket that does not exist (a misnamed one) is a bucket down, not an empty one: three replicas fetch a cold blob at once, none waiting on another’s lock', async () => {
    const { heldAtOnce, replicas: misnamed } = await threeAtOnce(
      rgw.endpoint,
      misnamedBucket,
      'no-such-bucket',
    );
    expect(heldAtOnce).toBe(3);
    expect(misnamed.map((r) => r.mirror.blobs.sharedWaits)).toEqual([0, 0, 0]);
    expect(misnamed.map((r) => r.mirror.sharedStore?.down)).toEqual([true, true, true]);
  });

  it('a bucket that refuses writes: replicas waiting for the holder fetch at once when it could not publish, instead of taking the lock in turn', async () => {
    const gate = await startFront(bed.front.url, { hold: (p) => p.endsWith(`/blobs/${readOnly.digest}`) });
    const bucket = await startFront(rgw.endpoint, {});
    try {
      const fleet = [
        await startReplica(bucket.url, gate.url),
        await startReplica(bucket.url, gate.url),
        await startReplica(bucket.url, gate.url),
      ];
      // Writes refused after the start-up check passed (a policy changed under running replicas).
      bucket.readOnly = true;
      const waits = () => fleet.reduce((n, r) => n + r.mirror.blobs.sharedWaits, 0);
      const url = (r: RunningMirror) => `${r.url}/v2/library/gated/blobs/${readOnly.digest}`;
      const first = pull(url(fleet[0] as RunningMirror));
      await until(() => gate.held === 1);
      // The bucket can be read: the others find no copy and wait for the holder's.
      const others = fleet.slice(1).map((r) => pull(url(r)));
      await until(() => waits() === 2);
      expect(waits()).toBe(2);
      gate.open();
      for (const r of await Promise.all([first, ...others])) {
        expect(r).toEqual({
          status: 200,
          declared: readOnly.size,
          bytes: readOnly.size,
          digest: readOnly.digest,
          cut: false,
        });
      }
      // Told that nothing was published, each fetched on its own: no second round of waiting.
      expect(waits()).toBe(2);
      expect(blobGets(readOnly.digest)).toBe(3);
    } finally {
      gate.open();
      await gate.close();
      await bucket.close();
    }
  });
});
