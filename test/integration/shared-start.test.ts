import { afterEach, beforeEach, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { StartupError } from '../../src/startup-errors.js';
import { metricSample } from '../fixtures/request-counts.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { bucketArgs, type FakeS3, startFakeS3 } from './fake-s3.js';
import { addImage, get, mirrorFor, tempDataDir } from './harness.js';

// The shared tier's start-up check (src/shared/start-check.ts): a bucket or Redis that cannot be
// used stops the start with one line naming the option, unless --shared-degraded says to start
// anyway. The same with the real process: startup-errors.test.ts; on Ceph RGW: interop shared-hostile.

let hub: FakeRegistry;
let s3: FakeS3;
let data: Awaited<ReturnType<typeof tempDataDir>>;
let mirror: RunningMirror | undefined;

beforeEach(async () => {
  hub = await startFakeRegistry();
  s3 = await startFakeS3();
  data = await tempDataDir();
});

afterEach(async () => {
  await mirror?.close();
  mirror = undefined;
  await s3.close();
  await hub.close();
  await data.remove();
});

const bucket = (name: string, endpoint = s3.url) => bucketArgs(endpoint, name);

/** The start's failure: a StartupError (what main.ts prints as one line), or a test failure. */
async function refused(args: string[]): Promise<StartupError> {
  const err = await mirrorFor(hub, data.dir, args).then(
    (m) => {
      mirror = m;
      throw new Error('started');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StartupError);
  return err as StartupError;
}

it('a bucket that works: the probe object is written, read back and deleted before the mirror serves', async () => {
  mirror = await mirrorFor(hub, data.dir, bucket('cache'));
  expect(s3.seen.map((s) => s.replace(/[0-9a-f-]{36}$/, 'ID'))).toEqual([
    'HEAD ',
    'PUT _hubcache/probe/ID',
    'GET _hubcache/probe/ID',
    'DELETE _hubcache/probe/ID',
  ]);
  expect(s3.objects.size).toBe(0);
});

it('a misnamed bucket stops the start: --s3-bucket, its name, "does not exist"', async () => {
  const err = await refused(bucket('cahce'));
  expect(err.message).toBe('--s3-bucket cahce: the bucket does not exist (NoSuchBucket)');
});

it('credentials that may read but not write stop the start: access denied, naming the call', async () => {
  s3.refusePut = true;
  const err = await refused(bucket('cache'));
  expect(err.message).toMatch(
    /^--s3-bucket cache: access denied \(PutObject: AccessDenied\): check the credentials/,
  );
});

it('a bucket endpoint nobody listens on stops the start: unreachable', async () => {
  const err = await refused(bucket('cache', 'http://127.0.0.1:9'));
  expect(err.message).toMatch(/^--s3-bucket cache: unreachable \(HeadBucket: .*ECONNREFUSED/);
});

it('a bucket that returns other bytes than were written stops the start', async () => {
  s3.hook = (req, res, key) => {
    if (req.method !== 'GET' || !key.startsWith('_hubcache/probe/')) return false;
    res.writeHead(200, { 'content-length': 5 }).end('other');
    return true;
  };
  const err = await refused(bucket('cache'));
  expect(err.message).toBe(
    '--s3-bucket cache: the bucket returned other bytes than were written (GetObject of the probe object)',
  );
});

it('a DELETE refused is not fatal: the replica starts and shares (it only cannot remove a bad copy)', async () => {
  s3.refuseDelete = true;
  mirror = await mirrorFor(hub, data.dir, bucket('cache'));
  expect(JSON.parse((await get(`${mirror.url}/readyz`)).body.toString()).shared).toEqual({
    bucket: 'reachable',
  });
});

it('Redis nobody listens on stops the start, its password masked; with the bucket wrong too, both in one line', async () => {
  const redis = ['--redis', 'redis://:hunter2@127.0.0.1:9'];
  const err = await refused([...bucket('cache'), ...redis]);
  expect(err.message).toMatch(/^--redis redis:\/\/:\*\*\*\*\*@127\.0\.0\.1:9: unreachable \(.*ECONNREFUSED/);
  expect(err.message).not.toContain('hunter2');
  expect(err.message).not.toContain('\n');
  const both = await refused([...bucket('cahce'), ...redis]);
  expect(both.message).toMatch(
    /^--s3-bucket cahce: the bucket does not exist \(NoSuchBucket\); and --redis redis:\/\/:\*\*\*\*\*@127\.0\.0\.1:9: unreachable/,
  );
}, 20_000);

it('--shared-degraded: a misnamed bucket is reported, not fatal, and the replica works alone without asking it again', async () => {
  mirror = await mirrorFor(hub, data.dir, [...bucket('cahce'), '--shared-degraded']);
  const shared = JSON.parse((await get(`${mirror.url}/readyz`)).body.toString()).shared;
  expect(shared.bucket).toBe(
    'down: the bucket does not exist (NoSuchBucket) (fetching upstream alone for now)',
  );
  expect(await metricSample(mirror.url, 'hubcache_shared_bucket_up')).toBe(0);
  const asked = s3.seen.length;
  const img = addImage(hub, 'library/alpine', '1', 10_000);
  const blob = await get(`${mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
  expect(blob.body.equals(img.layer)).toBe(true);
  // Within the cool-down: the miss went upstream at once, the bucket was not asked.
  expect(s3.seen).toHaveLength(asked);
});
