import { Redis as IORedis } from 'ioredis';
import { describe } from 'vitest';
import { RedisTagIndex } from '../../src/shared/redis-tags.js';
import { blobContentContract } from '../contract/blob-content.contract.js';
import { s3BlobStore } from '../contract/blob-content.subjects.js';
import { sharedTagIndex, tagIndexContract } from '../contract/tag-index.contract.js';
import { startRgw } from '../fixtures/ceph-rgw.js';
import { startRedis } from '../fixtures/redis.js';
import { requireProgram } from '../fixtures/require-program.js';

// The store suites against the real servers replicas share: the S3 store on Ceph RGW, the tag
// index with Redis. The same suites run hermetically in test/integration/store-contracts.test.ts.

const haveRgw = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool'].every((p) =>
  requireProgram(p),
);

describe.skipIf(!haveRgw)('on Ceph RGW', () => {
  blobContentContract('S3 (S3BlobStore on Ceph RGW)', async () => {
    const rgw = await startRgw();
    await rgw.createBucket('contract');
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = rgw.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = rgw.secretAccessKey;
    const subject = s3BlobStore({
      bucket: 'contract',
      endpoint: rgw.endpoint,
      region: rgw.region,
      pathStyle: true,
      prefix: 'contract/',
    });
    return {
      ...subject,
      close: async () => {
        await subject.close();
        await rgw.stop();
        for (const [key, value] of [
          ['AWS_ACCESS_KEY_ID', saved.id],
          ['AWS_SECRET_ACCESS_KEY', saved.secret],
        ] as const) {
          if (value === undefined) delete process.env[key];
          else process.env[key] = value;
        }
      },
    };
  });
});

describe.skipIf(!requireProgram('redis-server'))('with Redis', () => {
  tagIndexContract('shared (files and Redis)', async () => {
    const redis = await startRedis();
    const client = new IORedis(redis.url, { maxRetriesPerRequest: 1 });
    return sharedTagIndex(new RedisTagIndex(client), async () => {
      await client.quit();
      await redis.stop();
    });
  });
});
