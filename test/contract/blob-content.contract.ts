import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Digest, parseDigest } from '../../src/oci/digest.js';

/**
 * What a blob content store promises, whichever it is: the local one (cache/blob-store.ts) or the
 * bucket replicas share (shared/s3-store.ts). Their methods are named for their callers (put and
 * remove; publishBuffer and discard), so each implementation is seen through this adapter, and
 * proves itself by passing the same suite.
 */
export interface BlobContent {
  put(digest: Digest, data: Buffer): Promise<void>;
  /** The bytes from `start` on, with the blob's whole size; undefined when it is not stored. */
  open(digest: Digest, start?: number): Promise<{ bytes: Buffer; size: number } | undefined>;
  /** The whole blob; undefined when it is not stored. */
  read(digest: Digest): Promise<Buffer | undefined>;
  /** Removes it; removing what is not stored is no error. */
  discard(digest: Digest): Promise<void>;
}

export interface BlobContentSubject {
  store: BlobContent;
  /**
   * True: a put whose bytes are not the digest's is refused, and nothing is stored (the local
   * store: a file at a digest path is always right). False: the store keeps what it is given and
   * its readers check (the shared bucket, written only by replicas that verified, read as
   * untrusted input, issue 13).
   */
  verifiesOnPut: boolean;
  close(): Promise<void>;
}

export function blobOf(data: Buffer): Digest {
  return parseDigest(`sha256:${createHash('sha256').update(data).digest('hex')}`);
}

export function blobContentContract(name: string, make: () => Promise<BlobContentSubject>): void {
  describe(`blob content store contract: ${name}`, () => {
    let subject: BlobContentSubject;
    let store: BlobContent;
    beforeAll(async () => {
      subject = await make();
      store = subject.store;
    });
    afterAll(async () => {
      await subject?.close();
    });

    it('gives back exactly the bytes put under a digest, with their size', async () => {
      const data = randomBytes(70_000);
      const digest = blobOf(data);
      await store.put(digest, data);
      expect((await store.read(digest))?.equals(data)).toBe(true);
      const opened = await store.open(digest);
      expect(opened?.size).toBe(data.length);
      expect(opened?.bytes.equals(data)).toBe(true);
    });

    it('stores an empty blob', async () => {
      const data = Buffer.alloc(0);
      const digest = blobOf(data);
      await store.put(digest, data);
      expect((await store.read(digest))?.length).toBe(0);
      expect((await store.open(digest))?.size).toBe(0);
    });

    it('answers undefined for a digest never stored, on read and on open', async () => {
      const digest = blobOf(randomBytes(32));
      expect(await store.read(digest)).toBeUndefined();
      expect(await store.open(digest)).toBeUndefined();
      expect(await store.open(digest, 10)).toBeUndefined();
    });

    it('opens from an offset: the bytes from there on, and the whole blob’s size', async () => {
      const data = randomBytes(10_000);
      const digest = blobOf(data);
      await store.put(digest, data);
      const tail = await store.open(digest, 9_000);
      expect(tail?.size).toBe(10_000);
      expect(tail?.bytes.equals(data.subarray(9_000))).toBe(true);
      const last = await store.open(digest, 9_999);
      expect(last?.bytes.equals(data.subarray(9_999))).toBe(true);
    });

    it('forgets a discarded blob, and discarding a missing one is no error', async () => {
      const data = randomBytes(1_000);
      const digest = blobOf(data);
      await store.put(digest, data);
      await store.discard(digest);
      expect(await store.read(digest)).toBeUndefined();
      expect(await store.open(digest)).toBeUndefined();
      await expect(store.discard(digest)).resolves.toBeUndefined();
    });

    it('takes the same blob from concurrent writers, and holds it whole once', async () => {
      const data = randomBytes(300_000);
      const digest = blobOf(data);
      await Promise.all(Array.from({ length: 8 }, () => store.put(digest, data)));
      expect((await store.read(digest))?.equals(data)).toBe(true);
      expect((await store.open(digest))?.size).toBe(data.length);
    });

    it('keeps different blobs apart (content addressing)', async () => {
      const a = randomBytes(2_000);
      const b = randomBytes(2_000);
      await Promise.all([store.put(blobOf(a), a), store.put(blobOf(b), b)]);
      expect((await store.read(blobOf(a)))?.equals(a)).toBe(true);
      expect((await store.read(blobOf(b)))?.equals(b)).toBe(true);
    });

    it('handles bytes that are not their digest as it says: refused, or kept for readers to check', async () => {
      const data = randomBytes(5_000);
      const digest = blobOf(randomBytes(5_000));
      if (subject.verifiesOnPut) {
        await expect(store.put(digest, data)).rejects.toThrow(/does not match its digest/);
        expect(await store.read(digest)).toBeUndefined();
        expect(await store.open(digest)).toBeUndefined();
      } else {
        await store.put(digest, data);
        const back = await store.read(digest);
        // What was put, unchanged: the reader hashes it and finds it is not the blob.
        expect(back?.equals(data)).toBe(true);
        expect(blobOf(back ?? Buffer.alloc(0)).value).not.toBe(digest.value);
        await store.discard(digest);
        expect(await store.read(digest)).toBeUndefined();
      }
    });
  });
}
