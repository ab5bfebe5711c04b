import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis as IORedis } from 'ioredis';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { createLogger } from '../../src/observe/logger.js';
import { parseDigest } from '../../src/oci/digest.js';
import { fleetKeys } from '../../src/shared/fleet-keys.js';
import { HostedRecords } from '../../src/shared/hosted-records.js';
import { ReplicaRegistry } from '../../src/shared/replica-registry.js';
import { type Redis, startRedis } from '../fixtures/redis.js';
import { metricSample } from '../fixtures/request-counts.js';
import { requireProgram } from '../fixtures/require-program.js';
import { freePort } from '../fixtures/upstream-process.js';
import { type FakeRegistry, startFakeRegistry } from '../integration/fake-registry.js';
import { type FakeS3, keyOf, startFakeS3 } from '../integration/fake-s3.js';
import {
  addImage,
  gate,
  imageManifest,
  mirrorFor,
  OCI_MANIFEST,
  tempDataDir,
} from '../integration/harness.js';

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

async function send(
  url: string,
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE' | 'PATCH' = 'GET',
  body?: Buffer,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const res = await request(url, { method, headers, ...(body ? { body } : {}) });
  const chunks: Buffer[] = [];
  for await (const c of res.body) chunks.push(c as Buffer);
  return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
}

/**
 * Hosted repositories shared by replicas (issue 19, "push to any replica"): two replicas with the
 * same fleet secret on one Redis (real redis-server) and one bucket (the in-process fake S3, as in
 * shared-locks.test.ts). What one replica took is answered by the other at once, with no wait for
 * the announcement; a record Redis holds without the fleet's MAC is ignored.
 */
describe.skipIf(!requireProgram('redis-server'))('hosted repositories across replicas', () => {
  let redis: Redis;
  let client: IORedis;
  let hub: FakeRegistry;
  let s3: FakeS3;
  let data: Awaited<ReturnType<typeof tempDataDir>>;
  const replicas: RunningMirror[] = [];

  beforeAll(async () => {
    process.env.AWS_ACCESS_KEY_ID = 'x';
    process.env.AWS_SECRET_ACCESS_KEY = 'y';
    redis = await startRedis();
    client = new IORedis(redis.url);
  });

  afterAll(async () => {
    client?.disconnect();
    await redis?.stop();
  });

  beforeEach(async () => {
    await client.flushall();
    hub = await startFakeRegistry();
    s3 = await startFakeS3();
    data = await tempDataDir();
  });

  afterEach(async () => {
    for (const r of replicas.splice(0)) await r.close();
    await s3.close();
    await hub.close();
    await data.remove();
  });

  async function replica(name: string, secret = 'f'.repeat(48)): Promise<RunningMirror> {
    const secretFile = path.join(data.dir, `${name}.secret`);
    writeFileSync(secretFile, secret, { mode: 0o600 });
    const r = await mirrorFor(hub, path.join(data.dir, name), [
      ...['--s3-bucket', 'cache', '--s3-endpoint', s3.url, '--s3-path-style'],
      ...['--redis', redis.url, '--fleet-secret-file', secretFile, '--allow-delete'],
      ...['--peer-listen', `127.0.0.1:${await freePort()}`],
    ]);
    replicas.push(r);
    return r;
  }

  /** A blob pushed whole (POST ?digest=). */
  async function pushBlob(base: string, name: string, blob: Buffer): Promise<number> {
    return (await send(`${base}/v2/${name}/blobs/uploads/?digest=${sha(blob)}`, 'POST', blob)).status;
  }

  async function pushImage(base: string, name: string, tag: string) {
    const config = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers' } }),
    );
    const layer = randomBytes(300_000);
    expect(await pushBlob(base, name, config)).toBe(201);
    expect(await pushBlob(base, name, layer)).toBe(201);
    const manifest = imageManifest(config, [layer]);
    const put = await send(`${base}/v2/${name}/manifests/${tag}`, 'PUT', manifest, {
      'content-type': OCI_MANIFEST,
    });
    expect(put.status).toBe(201);
    return { config, layer, manifest, digest: sha(manifest) };
  }

  it('an image pushed to one replica is served by the other at once: manifest by tag and digest, blobs, tags, catalog', async () => {
    const a = await replica('a');
    const b = await replica('b');
    const img = await pushImage(a.url, 'team/app', 'v1');
    // No wait: b asks Redis before it would answer 404.
    const byTag = await send(`${b.url}/v2/team/app/manifests/v1`, 'GET', undefined, { accept: OCI_MANIFEST });
    expect(byTag.status).toBe(200);
    expect(byTag.body.equals(img.manifest)).toBe(true);
    expect(byTag.headers['docker-content-digest']).toBe(img.digest);
    const byDigest = await send(`${b.url}/v2/team/app/manifests/${img.digest}`);
    expect(byDigest.body.equals(img.manifest)).toBe(true);
    const head = await send(`${b.url}/v2/team/app/blobs/${sha(img.layer)}`, 'HEAD');
    expect([head.status, head.headers['content-length']]).toEqual([200, String(img.layer.length)]);
    const layer = await send(`${b.url}/v2/team/app/blobs/${sha(img.layer)}`);
    expect(layer.status).toBe(200);
    expect(layer.body.equals(img.layer)).toBe(true);
    const config = await send(`${b.url}/v2/team/app/blobs/${sha(img.config)}`);
    expect(config.body.equals(img.config)).toBe(true);
    expect(JSON.parse((await send(`${b.url}/v2/team/app/tags/list`)).body.toString())).toEqual({
      name: 'team/app',
      tags: ['v1'],
    });
    for (const r of [a, b]) {
      expect(JSON.parse((await send(`${r.url}/v2/_catalog`)).body.toString()).repositories).toContain(
        'team/app',
      );
    }
    // Scoped as on one registry: the blob is not another repository's.
    expect((await send(`${b.url}/v2/team/other/blobs/${sha(img.layer)}`)).status).toBe(404);
  });

  it('blobs uploaded to one replica, the manifest put to the other: 201, and both serve it', async () => {
    const a = await replica('a');
    const b = await replica('b');
    const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}');
    const layer = randomBytes(50_000);
    expect(await pushBlob(a.url, 'team/split', config)).toBe(201);
    expect(await pushBlob(a.url, 'team/split', layer)).toBe(201);
    const manifest = imageManifest(config, [layer]);
    const put = await send(`${b.url}/v2/team/split/manifests/v2`, 'PUT', manifest, {
      'content-type': OCI_MANIFEST,
    });
    expect(put.status).toBe(201);
    for (const r of [a, b]) {
      const got = await send(`${r.url}/v2/team/split/manifests/v2`, 'GET', undefined, {
        accept: OCI_MANIFEST,
      });
      expect(got.body.equals(manifest)).toBe(true);
      expect((await send(`${r.url}/v2/team/split/blobs/${sha(layer)}`)).body.equals(layer)).toBe(true);
    }
  });

  it('a tag deleted on one replica is gone on the other; a manifest deleted there too', async () => {
    const a = await replica('a');
    const b = await replica('b');
    const img = await pushImage(a.url, 'team/del', 'v1');
    expect(
      (await send(`${b.url}/v2/team/del/manifests/v1`, 'GET', undefined, { accept: OCI_MANIFEST })).status,
    ).toBe(200);
    expect((await send(`${b.url}/v2/team/del/manifests/v1`, 'DELETE')).status).toBe(202);
    // The announcement reaches a within milliseconds; bounded here.
    const gone = async (url: string) => {
      for (let i = 0; i < 100; i++) {
        if ((await send(url, 'GET', undefined, { accept: OCI_MANIFEST })).status === 404) return true;
        await new Promise((r) => setTimeout(r, 20));
      }
      return false;
    };
    expect(await gone(`${a.url}/v2/team/del/manifests/v1`)).toBe(true);
    expect((await send(`${a.url}/v2/team/del/manifests/${img.digest}`)).status).toBe(200);
    expect((await send(`${a.url}/v2/team/del/manifests/${img.digest}`, 'DELETE')).status).toBe(202);
    expect(await gone(`${b.url}/v2/team/del/manifests/${img.digest}`)).toBe(true);
  });

  it('records in Redis without the fleet MAC (or under another fleet secret) are ignored: no tag, no link', async () => {
    const a = await replica('a');
    const img = await pushImage(a.url, 'team/app', 'v1');
    const hex = img.digest.slice(7);
    // A writer of Redis points a new tag at the pushed manifest, and links the layer into another repository.
    await client.hset(
      'hubcache:hosted:r:team/app',
      't:forged',
      `${'A'.repeat(43)}.${JSON.stringify({ d: hex, mt: OCI_MANIFEST, at: Date.now() })}`,
    );
    await client.hset(
      'hubcache:hosted:r:team/other',
      `l:${sha(img.layer).slice(7)}`,
      JSON.stringify({ at: Date.now() }),
    );
    await client.sadd('hubcache:hosted:names', 'team/other');
    const c = await replica('c', 'z'.repeat(48));
    const b = await replica('b');
    for (const r of [b, c]) {
      expect(
        (await send(`${r.url}/v2/team/app/manifests/forged`, 'GET', undefined, { accept: OCI_MANIFEST }))
          .status,
      ).toBe(404);
      expect((await send(`${r.url}/v2/team/other/blobs/${sha(img.layer)}`)).status).toBe(404);
    }
    expect(await metricSample(b.url, 'hubcache_shared_records_rejected_total')).toBeGreaterThanOrEqual(1);
    // The real records: good under the fleet's secret only.
    expect(
      (await send(`${b.url}/v2/team/app/manifests/v1`, 'GET', undefined, { accept: OCI_MANIFEST })).status,
    ).toBe(200);
    expect(
      (await send(`${c.url}/v2/team/app/manifests/v1`, 'GET', undefined, { accept: OCI_MANIFEST })).status,
    ).not.toBe(200);
  });

  it('a chunked upload whose requests land on both replicas completes: the owner takes every chunk, forwarded', async () => {
    const a = await replica('a');
    const b = await replica('b');
    const blob = randomBytes(700_000);
    const start = await send(`${a.url}/v2/team/chunks/blobs/uploads/`, 'POST');
    expect(start.status).toBe(202);
    const location = String(start.headers.location);
    const at = (r: RunningMirror, query = '') => `${r.url}${location}${query}`;
    const chunk = (from: number, to: number) => ({
      'content-type': 'application/octet-stream',
      'content-range': `${from}-${to - 1}`,
    });
    const first = await send(at(b), 'PATCH', blob.subarray(0, 300_000), chunk(0, 300_000));
    expect([first.status, first.headers.range]).toEqual([202, '0-299999']);
    const second = await send(at(a), 'PATCH', blob.subarray(300_000, 600_000), chunk(300_000, 600_000));
    expect([second.status, second.headers.range]).toEqual([202, '0-599999']);
    const progress = await send(at(b));
    expect([progress.status, progress.headers.range]).toEqual([204, '0-599999']);
    // Out of turn through the other replica: the owner's offset check refuses it.
    expect((await send(at(b), 'PATCH', blob.subarray(0, 10), chunk(0, 10))).status).toBe(416);
    const last = await send(
      at(b, `?digest=${sha(blob)}`),
      'PUT',
      blob.subarray(600_000),
      chunk(600_000, 700_000),
    );
    expect([last.status, last.headers['docker-content-digest']]).toEqual([201, sha(blob)]);
    for (const r of [a, b])
      expect((await send(`${r.url}/v2/team/chunks/blobs/${sha(blob)}`)).body.equals(blob)).toBe(true);
  });

  /** A's death as kill -9 leaves it: its replica record still in Redis, nothing listening. */
  async function kill(a: RunningMirror): Promise<void> {
    const key = `hubcache:replica:${a.mirror.replicaId}`;
    const record = await client.get(key);
    await a.close();
    replicas.splice(replicas.indexOf(a), 1);
    if (record) await client.set(key, record, 'PX', 15_000);
  }

  const chunkHeaders = (from: number, to: number) => ({
    'content-type': 'application/octet-stream',
    'content-range': `${from}-${to - 1}`,
  });

  it('the owner of an upload killed between two PATCHes: the next PATCH, on another replica, takes the session over and the push completes', async () => {
    const a = await replica('a');
    const b = await replica('b');
    const blob = randomBytes(500_000);
    const start = await send(`${a.url}/v2/team/gone/blobs/uploads/`, 'POST');
    const location = String(start.headers.location);
    const first = await send(
      `${a.url}${location}`,
      'PATCH',
      blob.subarray(0, 200_000),
      chunkHeaders(0, 200_000),
    );
    expect(first.status).toBe(202);
    await kill(a);
    const second = await send(
      `${b.url}${location}`,
      'PATCH',
      blob.subarray(200_000, 400_000),
      chunkHeaders(200_000, 400_000),
    );
    expect([second.status, second.headers.range]).toEqual([202, '0-399999']);
    expect(await metricSample(b.url, 'hubcache_upload_takeovers_total')).toBe(1);
    const last = await send(
      `${b.url}${location}?digest=${sha(blob)}`,
      'PUT',
      blob.subarray(400_000),
      chunkHeaders(400_000, 500_000),
    );
    expect(last.status).toBe(201);
    expect((await send(`${b.url}/v2/team/gone/blobs/${sha(blob)}`)).body.equals(blob)).toBe(true);
    // The session's staged parts are gone with it.
    expect([...s3.objects.keys()].filter((k) => k.startsWith('uploads/'))).toEqual([]);
  });

  it('a staged part altered in the bucket: the session is not taken over (BLOB_UPLOAD_UNKNOWN), never a wrong blob', async () => {
    const a = await replica('a');
    const b = await replica('b');
    const start = await send(`${a.url}/v2/team/bad/blobs/uploads/`, 'POST');
    const location = String(start.headers.location);
    expect(
      (await send(`${a.url}${location}`, 'PATCH', randomBytes(1000), chunkHeaders(0, 1000))).status,
    ).toBe(202);
    const [key] = [...s3.objects.keys()].filter((k) => k.startsWith('uploads/'));
    const part = s3.objects.get(key as string) as Buffer;
    part[10] = (part[10] as number) ^ 1;
    await kill(a);
    const patch = await send(`${b.url}${location}`, 'PATCH', randomBytes(10), chunkHeaders(1000, 1010));
    expect(patch.status).toBe(404);
    expect(JSON.parse(patch.body.toString()).errors[0].code).toBe('BLOB_UPLOAD_UNKNOWN');
  });

  it('peer streaming: a replica finding another downloading a cold blob streams it from that replica as it arrives, one upstream GET', async () => {
    const a = await replica('a');
    const b = await replica('b');
    const img = addImage(hub, 'library/alpine', '1', 2 * 1024 * 1024);
    const held = gate();
    const SENT = 1024 * 1024;
    hub.fault = (r) =>
      r.path.includes(img.layerDigest) ? { kind: 'gate', after: SENT, open: held.opened } : undefined;
    const url = (r: RunningMirror) => `${r.url}/v2/library/alpine/blobs/${img.layerDigest}`;
    const first = await request(url(a));
    const digest = parseDigest(img.layerDigest);
    const fill = a.mirror.blobs.inflight(digest) as NonNullable<ReturnType<typeof a.mirror.blobs.inflight>>;
    while (fill.written < SENT) await fill.changed();
    // a holds the download, and the upstream holds the rest of the body: b's client gets what a has.
    const second = await request(url(b));
    expect(second.statusCode).toBe(200);
    let early = 0;
    const chunks: Buffer[] = [];
    for await (const chunk of second.body) {
      chunks.push(chunk as Buffer);
      early += (chunk as Buffer).length;
      // Each replica holds back the last byte it has until the blob is verified: a's, then b's.
      if (early >= SENT - 2) break;
    }
    expect(early).toBe(SENT - 2);
    held.open();
    const [whole] = await Promise.all([first.body.arrayBuffer()]);
    expect(Buffer.from(whole).equals(img.layer)).toBe(true);
    // The rest of b's body (a fresh request: the loop above took the stream's iterator).
    await second.body.dump().catch(() => {});
    await b.mirror.settled();
    expect((await send(url(b))).body.equals(img.layer)).toBe(true);
    expect(hub.downloads(new RegExp(img.layerDigest))).toBe(1);
    expect(await metricSample(b.url, 'hubcache_shared_peer_fills_total')).toBe(1);
    hub.fault = undefined;
  });

  it('an upload record is taken over by one replica only, and its old owner is fenced out (updates refused)', async () => {
    const keys = fleetKeys('k'.repeat(40));
    const log = createLogger('silent');
    const owner = new ReplicaRegistry(client, keys.records, randomUUID(), undefined, log);
    const b = new ReplicaRegistry(client, keys.records, randomUUID(), undefined, log);
    const c = new ReplicaRegistry(client, keys.records, randomUUID(), undefined, log);
    await owner.claimUpload('u1', 'team/app', 60_000);
    expect(await owner.updateUpload('u1', 'team/app', 60_000, [[0, 10, 'a'.repeat(32)]])).toBe(true);
    const seen = (await b.uploadOwner('u1')) as NonNullable<Awaited<ReturnType<typeof b.uploadOwner>>>;
    expect(seen.parts).toEqual([[0, 10, 'a'.repeat(32)]]);
    // Both see the owner dead and take over at once: one wins.
    const taken = await Promise.all([b.takeUpload('u1', seen, 60_000), c.takeUpload('u1', seen, 60_000)]);
    expect(taken.filter(Boolean)).toHaveLength(1);
    // The old owner (only partitioned) can no longer record anything of it.
    expect(await owner.updateUpload('u1', 'team/app', 60_000, [[0, 20, 'b'.repeat(32)]])).toBe(false);
    expect(await owner.ownsUpload('u1')).toBe(false);
    // A record another fleet wrote (another key) is not an upload to take over.
    const other = new ReplicaRegistry(
      client,
      fleetKeys('z'.repeat(40)).records,
      randomUUID(),
      undefined,
      log,
    );
    expect(await other.uploadOwner('u1')).toBeUndefined();
  });

  it('a repository whose first push was not announced yet (or the announcement lost): a read on another replica still finds it', async () => {
    const b = await replica('b');
    // Another replica's push, recorded in Redis and the bucket, its announcement never sent.
    const quiet = new Proxy(client, {
      get: (target, key) => (key === 'publish' ? async () => 0 : Reflect.get(target, key, target)),
    });
    const records = new HostedRecords(
      quiet as IORedis,
      fleetKeys('f'.repeat(48)).records,
      createLogger('silent'),
    );
    const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}');
    const layer = randomBytes(20_000);
    const manifest = imageManifest(config, [layer]);
    for (const body of [config, layer, manifest]) s3.objects.set(keyOf(sha(body)), body);
    const at = Date.now();
    await records.write('team/quiet', {
      manifests: { [sha(manifest).slice(7)]: { mt: OCI_MANIFEST, s: null, at } },
      links: { [sha(config).slice(7)]: { at }, [sha(layer).slice(7)]: { at } },
      tags: { v1: { d: sha(manifest).slice(7), mt: OCI_MANIFEST, at } },
    });
    const got = await send(`${b.url}/v2/team/quiet/manifests/v1`, 'GET', undefined, { accept: OCI_MANIFEST });
    expect([got.status, got.headers['docker-content-digest']]).toEqual([200, sha(manifest)]);
    expect((await send(`${b.url}/v2/team/quiet/blobs/${sha(layer)}`)).body.equals(layer)).toBe(true);
  });
});
