import { afterAll, beforeAll } from 'vitest';
import { blobContentContract } from '../contract/blob-content.contract.js';
import { localBlobStore, s3BlobStore } from '../contract/blob-content.subjects.js';
import { localTagIndex, tagIndexContract } from '../contract/tag-index.contract.js';
import { type FakeS3, startFakeS3 } from './fake-s3.js';

// Every store implementation against the suite of its interface, without servers but in-process
// ones. The same suites run against Ceph RGW and Redis in test/interop/store-contracts.test.ts.

blobContentContract('local disk (BlobStore)', localBlobStore);

let s3: FakeS3;
const savedEnv = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID = 'contract';
  process.env.AWS_SECRET_ACCESS_KEY = 'contract';
  s3 = await startFakeS3();
  s3.bucket = 'contract';
  // The fake answers whole objects only: ranged GETs as S3 answers them (206, Content-Range).
  s3.hook = (req, res, _key, found) => {
    const m = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''));
    if (req.method !== 'GET' || !m || !found) return false;
    const start = Number(m[1]);
    res.writeHead(206, {
      'content-length': found.length - start,
      'content-range': `bytes ${start}-${found.length - 1}/${found.length}`,
    });
    res.end(found.subarray(start));
    return true;
  };
});
afterAll(async () => {
  await s3?.close();
  for (const [key, value] of [
    ['AWS_ACCESS_KEY_ID', savedEnv.id],
    ['AWS_SECRET_ACCESS_KEY', savedEnv.secret],
  ] as const) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
});

blobContentContract('S3 (S3BlobStore on an in-process S3)', async () =>
  s3BlobStore({ bucket: 'contract', endpoint: s3.url, region: 'us-east-1', pathStyle: true, prefix: '' }),
);

tagIndexContract('local (files only)', localTagIndex);
