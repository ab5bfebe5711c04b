import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { BlobStore } from '../../src/cache/blob-store.js';
import type { S3Config } from '../../src/config.js';
import { createLogger } from '../../src/observe/logger.js';
import { S3BlobStore } from '../../src/shared/s3-store.js';
import type { BlobContentSubject } from './blob-content.contract.js';

/** The local store in a fresh data directory, no memory cache (reads go to the files). */
export async function localBlobStore(): Promise<BlobContentSubject> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hubcache-contract-'));
  const store = new BlobStore(dir, 0, undefined, 0, createLogger('silent'));
  await store.init();
  return {
    verifiesOnPut: true,
    store: {
      put: (digest, data) => store.put(digest, data),
      open: async (digest, start = 0) => {
        const found = await store.open(digest);
        if (!found) return undefined;
        try {
          const bytes = Buffer.alloc(Math.max(0, found.size - start));
          let at = 0;
          while (at < bytes.length) {
            const { bytesRead } = await found.handle.read(bytes, at, bytes.length - at, start + at);
            if (bytesRead === 0) break;
            at += bytesRead;
          }
          return { bytes: bytes.subarray(0, at), size: found.size };
        } finally {
          await found.handle.close();
        }
      },
      read: (digest) => store.read(digest),
      discard: (digest) => store.remove(digest),
    },
    close: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The shared store on a bucket (credentials from the AWS chain: set them before). */
export function s3BlobStore(config: S3Config): BlobContentSubject {
  const store = new S3BlobStore(config, createLogger('silent'));
  return {
    verifiesOnPut: false,
    store: {
      put: (digest, data) => store.publishBuffer(digest, data),
      open: async (digest, start = 0) => {
        const found = await store.open(digest, start);
        if (!found) return undefined;
        return { bytes: await drain(found.body), size: found.size };
      },
      read: async (digest) => (await store.read(digest))?.data,
      discard: (digest) => store.discard(digest, undefined),
    },
    close: async () => store.close(),
  };
}

async function drain(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
