/**
 * The bucket's collection (src/shared/bucket-gc.ts) on a real S3 (Ceph RGW) and Redis: a bucket of
 * N small blobs, half of them named by the marks, the other half named by nothing and older than
 * the grace period; one collection lists every page, asks Redis for the use times of each page's
 * candidates, and removes the unnamed half. Then the same bucket with --shared-max-size at half of
 * what is left: the size bound evicts the mirrored blobs least recently used. Reports the time of
 * each and objects per second, and the collector's RSS growth. Writes bench/results/bucket-gc.json.
 *
 *   npx tsx bench/bucket-gc.ts [--objects 10000]
 *
 * The collector runs in this process (the mirror's own classes, not a copy); RGW and Redis are
 * pinned to core 1, this process to core 0.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Redis as IORedis } from 'ioredis';
import { createLogger } from '../src/observe/logger.js';
import { BucketCollector, type BucketCollectResult } from '../src/shared/bucket-gc.js';
import { BucketUse } from '../src/shared/bucket-use.js';
import { S3BlobStore } from '../src/shared/s3-store.js';
import { startRgw } from '../test/fixtures/ceph-rgw.js';
import { startRedis } from '../test/fixtures/redis.js';
import { pin } from './lib/load.js';
import { commitOf, writeResult } from './results.js';

const { values } = parseArgs({ options: { objects: { type: 'string', default: '10000' } } });
const OBJECTS = Number(values.objects);
const BYTES = 1024;

await pin(process.pid, 1);
const [rgw, redis] = await Promise.all([startRgw(), startRedis()]);
await pin(process.pid, 0);
const client = new IORedis(redis.url);
const s3 = new S3Client({
  endpoint: rgw.endpoint,
  region: rgw.region,
  forcePathStyle: true,
  credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
});
process.env.AWS_ACCESS_KEY_ID = rgw.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY = rgw.secretAccessKey;
const bucket = 'gc-bench';
let figures: Record<string, unknown> = {};
try {
  await rgw.createBucket(bucket);
  const hexes = Array.from({ length: OBJECTS }, () => randomBytes(32).toString('hex'));
  const body = randomBytes(BYTES);
  const fillStarted = performance.now();
  for (let i = 0; i < hexes.length; i += 32) {
    await Promise.all(
      hexes.slice(i, i + 32).map((hex) =>
        s3.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: `blobs/sha256/${hex.slice(0, 2)}/${hex}`,
            Body: body,
            ContentLength: BYTES,
          }),
        ),
      ),
    );
  }
  const fillSeconds = (performance.now() - fillStarted) / 1000;
  // Old enough for a grace of 0 on the bucket's clock (whole seconds).
  await new Promise((r) => setTimeout(r, 1500));
  const store = new S3BlobStore({
    bucket,
    endpoint: rgw.endpoint,
    region: rgw.region,
    pathStyle: true,
    prefix: '',
  });
  const use = new BucketUse(client);
  const named = new Set(hexes.slice(0, OBJECTS / 2));
  // The fleet's use times for the named half, oldest first, as replicas would have reported them.
  const now = Date.now();
  const members = hexes.slice(0, OBJECTS / 2).flatMap((hex, i) => [String(now - 86_400_000 + i), hex]);
  for (let i = 0; i < members.length; i += 2000)
    await client.zadd('hubcache:bucket:used', ...members.slice(i, i + 2000));
  const collector = (maxBytes: number | undefined) =>
    new BucketCollector({
      bucket: store,
      fleet: {
        lease: async () => async () => {},
        uploadLive: async () => false,
        lastUsed: (h) => use.lastUsed(h),
        forget: (h) => use.forget(h),
      },
      mark: async () => ({ hosted: new Set(), mirrored: named }),
      heldNow: () => false,
      graceMs: 0,
      maxBytes,
      uploadExpiryMs: 3_600_000,
      log: createLogger(process.env.GC_LOG ?? 'silent'),
    });
  const timed = async (maxBytes: number | undefined) => {
    const rss = process.memoryUsage().rss;
    const started = performance.now();
    const result: BucketCollectResult = await collector(maxBytes).run();
    const seconds = (performance.now() - started) / 1000;
    return { seconds, result, rssGrowthMiB: (process.memoryUsage().rss - rss) / 2 ** 20 };
  };
  const sweep = await timed(undefined);
  const bound = await timed((OBJECTS / 4) * BYTES);
  figures = {
    commit: commitOf(),
    objects: OBJECTS,
    objectBytes: BYTES,
    fillSeconds,
    sweep: {
      seconds: sweep.seconds,
      listedPerSecond: sweep.result.listed / sweep.seconds,
      removedPerSecond: sweep.result.removed / sweep.seconds,
      listed: sweep.result.listed,
      removed: sweep.result.removed,
      rssGrowthMiB: sweep.rssGrowthMiB,
    },
    bound: {
      seconds: bound.seconds,
      listed: bound.result.listed,
      evicted: bound.result.evicted,
      bytesAfter: bound.result.bytesAfter,
      rssGrowthMiB: bound.rssGrowthMiB,
    },
  };
  console.log(
    `\nBucket collection on Ceph RGW + Redis, ${OBJECTS} blobs of ${BYTES} B (filled in ${fillSeconds.toFixed(1)} s)\n`,
  );
  console.log(
    '| run | listed | removed / evicted | time | listed per second | removed per second | RSS growth |',
  );
  console.log('|---|---|---|---|---|---|---|');
  console.log(
    `| sweep (half named) | ${sweep.result.listed} | ${sweep.result.removed} removed | ${sweep.seconds.toFixed(2)} s | ${(sweep.result.listed / sweep.seconds).toFixed(0)} | ${(sweep.result.removed / sweep.seconds).toFixed(0)} | ${sweep.rssGrowthMiB.toFixed(1)} MiB |`,
  );
  console.log(
    `| size bound (to half of the rest) | ${bound.result.listed} | ${bound.result.evicted} evicted | ${bound.seconds.toFixed(2)} s | ${(bound.result.listed / bound.seconds).toFixed(0)} | ${(bound.result.evicted / bound.seconds).toFixed(0)} | ${bound.rssGrowthMiB.toFixed(1)} MiB |`,
  );
  store.close();
} finally {
  s3.destroy();
  client.disconnect();
  await redis.stop();
  await rgw.stop();
}
writeResult('bucket-gc', figures);
process.exit(0);
