import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { S3Config } from '../config.js';
import type { Digest } from '../oci/digest.js';

/** Parts of a multipart upload: big enough to be few, small enough to stream. */
const PART_BYTES = 16 * 1024 * 1024;

/**
 * The blob store replicas share: the same content-addressed layout as on disk
 * (`<prefix>blobs/sha256/<2 hex>/<hex>`), in an S3 bucket. Replicas only ever write verified content
 * under a digest's key: a replica publishes a blob after its own fill checked the sha256, and an S3
 * object (multipart included) becomes visible whole or not at all. What they read is still checked
 * like an upstream body (issue 13: anything else with write access, or a corruption, may have put
 * other bytes there), and a copy that is not the blob is discarded. Credentials come from the usual
 * AWS chain (environment, shared config and credentials files, instance roles).
 */
export class S3BlobStore {
  readonly #client: S3Client;
  readonly #config: S3Config;

  constructor(config: S3Config) {
    this.#config = config;
    const options: S3ClientConfig = {
      region: config.region,
      forcePathStyle: config.pathStyle,
      // Checksums only where S3 requires them: RGW 16 answers a streamed, checksummed PUT with 411.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    };
    if (config.endpoint) options.endpoint = config.endpoint;
    this.#client = new S3Client(options);
  }

  get bucket(): string {
    return this.#config.bucket;
  }

  key(digest: Digest): string {
    return `${this.#config.prefix}blobs/sha256/${digest.hex.slice(0, 2)}/${digest.hex}`;
  }

  /** The size of a published blob, or undefined when there is none. */
  async size(digest: Digest): Promise<number | undefined> {
    try {
      const res = await this.#client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(digest) }),
      );
      return res.ContentLength;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * A published blob's bytes from `start` on (a ranged GET), or undefined when there is none. The
   * size is the object's, not a checked one; the ETag names this object for `discard`.
   */
  async open(
    digest: Digest,
    start = 0,
  ): Promise<{ body: Readable; size: number; etag: string | undefined } | undefined> {
    try {
      const res = await this.#client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.key(digest),
          ...(start > 0 ? { Range: `bytes=${start}-` } : {}),
        }),
      );
      const total = /\/(\d+)$/.exec(res.ContentRange ?? '')?.[1];
      const size = total !== undefined ? Number(total) : (res.ContentLength ?? 0);
      return { body: res.Body as Readable, size, etag: res.ETag };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * A small published blob (a manifest) whole, at most `limit` bytes (whatever the object claims);
   * undefined when there is none or it is bigger.
   */
  async read(
    digest: Digest,
    limit = 4 * 1024 * 1024,
  ): Promise<{ data: Buffer; etag: string | undefined } | undefined> {
    const found = await this.open(digest);
    if (!found) return undefined;
    const chunks: Buffer[] = [];
    let bytes = 0;
    if (found.size <= limit) {
      for await (const chunk of found.body) {
        bytes += (chunk as Buffer).length;
        if (bytes > limit) break;
        chunks.push(chunk as Buffer);
      }
    }
    if (found.size > limit || bytes > limit) {
      found.body.destroy();
      return undefined;
    }
    return { data: Buffer.concat(chunks), etag: found.etag };
  }

  /**
   * Removes a copy that turned out not to be its blob, if the key still holds that object (same
   * ETag): a good copy another replica published since stays. The look and the delete are two
   * requests; losing a good copy in between only costs one more upstream fetch.
   */
  async discard(digest: Digest, etag: string | undefined): Promise<void> {
    if (etag !== undefined) {
      try {
        const res = await this.#client.send(
          new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(digest) }),
        );
        if (res.ETag !== etag) return;
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
    }
    await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(digest) }));
  }

  /** Publishes a verified file under its digest (multipart for big ones). */
  async publishFile(digest: Digest, file: string, size: number): Promise<void> {
    if (size < PART_BYTES) {
      const { readFile } = await import('node:fs/promises');
      await this.publishBuffer(digest, await readFile(file));
      return;
    }
    const upload = new Upload({
      client: this.#client,
      params: {
        Bucket: this.bucket,
        Key: this.key(digest),
        Body: createReadStream(file),
        ContentLength: size,
      },
      partSize: PART_BYTES,
      queueSize: 4,
      leavePartsOnError: false,
    });
    await upload.done();
  }

  async publishBuffer(digest: Digest, data: Buffer): Promise<void> {
    await this.#client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: this.key(digest),
        Body: data,
        ContentLength: data.length,
        ContentType: 'application/octet-stream',
      }),
    );
  }

  close(): void {
    this.#client.destroy();
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404;
}
