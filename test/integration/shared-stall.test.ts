import { randomBytes } from 'node:crypto';
import { expect, it, vi } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { parseDigest } from '../../src/oci/digest.js';
import {
  S3_MAX_ATTEMPTS,
  S3_RESPONSE_TIMEOUT_MS,
  S3BlobStore,
  SharedStoreDownError,
} from '../../src/shared/s3-store.js';
import { type FakeRegistry, sha256, startFakeRegistry } from './fake-registry.js';
import { type FakeS3, keyOf, startFakeS3 } from './fake-s3.js';
import { addImage, get, mirrorFor, tempDataDir } from './harness.js';

/**
 * Issue 13: a bucket that stalls (accepts connections and never answers, or stops sending half-way
 * through a body) must not stall the mirror. These wait the real bounds (S3_RESPONSE_TIMEOUT_MS,
 * S3_IDLE_TIMEOUT_MS) once each, so they run side by side; what they assert is counted, not timed.
 */

process.env.AWS_ACCESS_KEY_ID = 'x';
process.env.AWS_SECRET_ACCESS_KEY = 'y';

interface Bed {
  hub: FakeRegistry;
  s3: FakeS3;
  mirror: RunningMirror;
  close(): Promise<void>;
}

async function bed(): Promise<Bed> {
  const hub = await startFakeRegistry();
  const s3 = await startFakeS3();
  const data = await tempDataDir();
  const mirror = await mirrorFor(hub, data.dir, [
    '--s3-bucket',
    'cache',
    '--s3-endpoint',
    s3.url,
    '--s3-path-style',
  ]);
  // From here on: what the mirror asks on its own (the start-up check's probe came before).
  s3.seen.length = 0;
  return {
    hub,
    s3,
    mirror,
    close: async () => {
      await mirror.close();
      await s3.close();
      await hub.close();
      await data.remove();
    },
  };
}

/**
 * Generous: the bounds add up to about S3_MAX_ATTEMPTS × S3_RESPONSE_TIMEOUT_MS (10 s) for a silent
 * bucket, S3_IDLE_TIMEOUT_MS + 3 s (the SDK arms its idle timer late) for a stalled body; without
 * them, each of these waits for ever.
 */
const BOUNDED = 45_000;

it.concurrent(
  'a bucket that accepts connections and never answers: the first miss gives up after S3_MAX_ATTEMPTS requests, later misses skip the bucket',
  async () => {
    const b = await bed();
    try {
      b.s3.hook = () => true;
      const first = addImage(b.hub, 'library/alpine', '1', 10_000);
      const res = await get(`${b.mirror.url}/v2/alpine/blobs/${first.layerDigest}`);
      expect(res.status).toBe(200);
      expect(res.body.equals(first.layer)).toBe(true);
      expect(b.s3.seen).toEqual(Array(S3_MAX_ATTEMPTS).fill(`GET ${keyOf(first.layerDigest)}`));
      expect(b.mirror.mirror.sharedStore?.down).toBe(true);

      // Within the cool-down: a manifest, another blob, and the publish of both, ask the bucket nothing.
      const second = addImage(b.hub, 'library/alpine', '2', 10_000);
      const manifest = await get(`${b.mirror.url}/v2/alpine/manifests/2`, {
        accept: 'application/vnd.oci.image.manifest.v1+json',
      });
      expect(manifest.headers['docker-content-digest']).toBe(second.manifestDigest);
      const blob = await get(`${b.mirror.url}/v2/alpine/blobs/${second.layerDigest}`);
      expect(blob.body.equals(second.layer)).toBe(true);
      expect(b.s3.seen).toHaveLength(S3_MAX_ATTEMPTS);
    } finally {
      await b.close();
    }
  },
  BOUNDED,
);

it.concurrent(
  'a copy whose body stops half-way: the same request is served from the upstream once the body is idle',
  async () => {
    const b = await bed();
    try {
      const img = addImage(b.hub, 'library/alpine', '1', 200_000);
      b.s3.objects.set(keyOf(img.layerDigest), Buffer.from(img.layer));
      b.s3.hook = (req, res, _key, found) => {
        if (req.method !== 'GET' || !found) return false;
        res.writeHead(200, { 'content-length': found.length });
        res.write(found.subarray(0, found.length >> 1));
        return true;
      };
      const res = await get(`${b.mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
      expect(res.status).toBe(200);
      expect(res.body.equals(img.layer)).toBe(true);
      expect(b.hub.count('GET', new RegExp(`/blobs/${img.layerDigest}$`))).toBe(1);
      // A stall is not a wrong copy: nothing is removed; the bucket is skipped for a while.
      expect(b.s3.seen).toEqual([`GET ${keyOf(img.layerDigest)}`]);
      expect(b.mirror.mirror.blobs.sharedDiscarded).toBe(0);
      expect(b.mirror.mirror.sharedStore?.down).toBe(true);
    } finally {
      await b.close();
    }
  },
  BOUNDED,
);

it.concurrent(
  'a copy that arrives slowly but steadily is not cut for taking longer than S3_RESPONSE_TIMEOUT_MS',
  async () => {
    const b = await bed();
    try {
      const img = addImage(b.hub, 'library/alpine', '1', 256 * 1024);
      b.s3.objects.set(keyOf(img.layerDigest), Buffer.from(img.layer));
      const pieces = 16;
      const every = Math.ceil((S3_RESPONSE_TIMEOUT_MS * 1.3) / pieces);
      b.s3.hook = (req, res, _key, found) => {
        if (req.method !== 'GET' || !found) return false;
        res.writeHead(200, { 'content-length': found.length });
        const step = found.length / pieces;
        let i = 0;
        const timer = setInterval(() => {
          res.write(found.subarray(i * step, (i + 1) * step));
          if (++i === pieces) {
            clearInterval(timer);
            res.end();
          }
        }, every);
        res.on('close', () => clearInterval(timer));
        return true;
      };
      const res = await get(`${b.mirror.url}/v2/alpine/blobs/${img.layerDigest}`);
      expect(res.body.equals(img.layer)).toBe(true);
      expect(b.hub.count('GET', /\/blobs\//)).toBe(0);
      expect(b.mirror.mirror.blobs.sharedFills).toBe(1);
      expect(b.mirror.mirror.sharedStore?.down).toBe(false);
    } finally {
      await b.close();
    }
  },
  BOUNDED,
);

it.concurrent(
  'a bucket that failed is skipped for the cool-down (no request), then asked again',
  async () => {
    const s3 = await startFakeS3();
    const store = new S3BlobStore(
      { bucket: 'cache', endpoint: s3.url, region: 'us-east-1', pathStyle: true, prefix: '' },
      undefined,
      { responseTimeoutMs: 1_000, maxAttempts: 1, downCooldownMs: 2_000 },
    );
    try {
      const data = randomBytes(1000);
      const digest = sha256(data);
      const d = parseDigest(digest);
      s3.hook = () => true;
      await expect(store.open(d)).rejects.toMatchObject({ name: 'TimeoutError' });
      expect(store.down).toBe(true);
      const asked = s3.seen.length;
      await expect(store.open(d)).rejects.toBeInstanceOf(SharedStoreDownError);
      await expect(store.publishBuffer(d, data)).rejects.toBeInstanceOf(SharedStoreDownError);
      expect(s3.seen).toHaveLength(asked);
      s3.hook = undefined;
      // Past the 2 s cool-down: the clock moves (Date only; timers and I/O run as they do).
      vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
      vi.setSystemTime(Date.now() + 2_000);
      expect(store.down).toBe(false);
      await store.publishBuffer(d, data);
      expect((await store.read(d))?.data.equals(data)).toBe(true);
      expect(store.down).toBe(false);
    } finally {
      vi.useRealTimers();
      store.close();
      await s3.close();
    }
  },
  BOUNDED,
);
