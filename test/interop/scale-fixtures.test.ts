import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Rgw, startRgw } from '../fixtures/ceph-rgw.js';
import { type Redis, redisCommand, startRedis } from '../fixtures/redis.js';
import { requireProgram } from '../fixtures/require-program.js';

const haveScale = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'redis-server']
  .map((name) => requireProgram(name))
  .every(Boolean);
const BUCKET = 'scale-fixtures';

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

async function bodyOf(res: GetObjectCommandOutput): Promise<Buffer> {
  if (!res.Body) throw new Error('GetObject returned no body');
  return Buffer.from(await res.Body.transformToByteArray());
}

/** PIDs of the processes under `pid` (children, grand-children...) but this ps itself. */
function descendants(pid: number): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,ppid=,comm='], { encoding: 'utf8' });
  const children = new Map<number, number[]>();
  for (const line of out.trim().split('\n')) {
    const [p, pp, comm] = line.trim().split(/\s+/);
    if (!p || !pp || comm === 'ps') continue;
    children.set(Number(pp), [...(children.get(Number(pp)) ?? []), Number(p)]);
  }
  const found: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      found.push(c);
      walk(c);
    }
  };
  walk(pid);
  return found;
}

const commandOf = (pid: number) => {
  try {
    return execFileSync('ps', ['-o', 'comm=', '-p', String(pid)], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
};

/**
 * The scale-out fixtures themselves: a real S3 server (Ceph RGW) and a real Redis start on free
 * ports, serve what the replicas suite and benchmarks need (plain, ranged and multipart S3; PING),
 * and leave no process behind.
 */
describe.skipIf(!haveScale)('scale-out fixtures: Ceph RGW and Redis', () => {
  let rgw: Rgw;
  let redis: Redis;
  let s3: S3Client;
  let daemonPids: number[] = [];

  beforeAll(async () => {
    const before = new Set(descendants(process.pid));
    const started = performance.now();
    [rgw, redis] = await Promise.all([startRgw(), startRedis()]);
    console.log(`startRgw + startRedis: ${Math.round(performance.now() - started)} ms`);
    daemonPids = descendants(process.pid).filter((p) => !before.has(p));
    s3 = new S3Client({
      endpoint: rgw.endpoint,
      region: rgw.region,
      credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const t = performance.now();
    await rgw.createBucket(BUCKET);
    await rgw.createBucket(BUCKET); // idempotent
    console.log(`createBucket: ${Math.round(performance.now() - t)} ms (twice)`);
  });

  afterAll(async () => {
    s3?.destroy();
    // Normally already stopped by the last test; stop() is idempotent.
    await Promise.all([rgw?.stop(), redis?.stop()]);
  });

  it('starts every daemon as a child of this process', () => {
    expect(rgw.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    const names = daemonPids.map(commandOf).sort();
    expect(names).toEqual(expect.arrayContaining(['ceph-mon', 'ceph-osd', 'radosgw', 'redis-server']));
  });

  it('PUTs, GETs and range-GETs an object', async () => {
    const body = randomBytes(4096);
    const started = performance.now();
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'small', Body: body }));
    const putMs = performance.now() - started;
    console.log(`first small PUT after start: ${Math.round(putMs)} ms`);
    const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'small' }));
    expect((await bodyOf(got)).equals(body)).toBe(true);
    const ranged = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'small', Range: 'bytes=0-99' }));
    expect(ranged.ContentRange).toBe('bytes 0-99/4096');
    const part = await bodyOf(ranged);
    expect(part.length).toBe(100);
    expect(part.equals(body.subarray(0, 100))).toBe(true);
  });

  it('uploads 20 MiB of unknown length through lib-storage (multipart) and reads it back', async () => {
    const data = randomBytes(20 * 1024 * 1024);
    const chunks = Array.from({ length: 20 }, (_, i) =>
      data.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024),
    );
    const started = performance.now();
    const upload = new Upload({
      client: s3,
      params: { Bucket: BUCKET, Key: 'big', Body: Readable.from(chunks) },
      partSize: 5 * 1024 * 1024,
    });
    await upload.done();
    console.log(`20 MiB multipart upload: ${Math.round(performance.now() - started)} ms`);
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'big' }));
    expect(head.ContentLength).toBe(data.length);
    // A multipart ETag is "md5-of-part-md5s-N".
    expect(head.ETag).toMatch(/-4"$/);
    const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'big' }));
    expect(sha256(await bodyOf(got))).toBe(sha256(data));
  });

  it('answers PING on redis', async () => {
    expect(await redisCommand(redis.port, 'PING')).toBe('+PONG');
  });

  it('leaves no process behind once stopped', async () => {
    // Runs last: stop both here and check every PID.
    const started = performance.now();
    await Promise.all([rgw.stop(), redis.stop()]);
    console.log(`stop: ${Math.round(performance.now() - started)} ms`);
    const alive = daemonPids.filter((p) => {
      try {
        process.kill(p, 0);
        return true;
      } catch {
        return false;
      }
    });
    expect(alive.map((p) => `${p} ${commandOf(p)}`)).toEqual([]);
    await expect(fetch(`${rgw.endpoint}/`)).rejects.toThrow();
  });
});
