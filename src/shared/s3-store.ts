import { createReadStream } from 'node:fs';
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import type * as S3Sdk from '@aws-sdk/client-s3';
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import type * as S3Storage from '@aws-sdk/lib-storage';
import type { S3Config } from '../config.js';
import type { Logger } from '../observe/logger.js';
import type { Digest } from '../oci/digest.js';

/**
 * The AWS SDK, loaded when a shared store is made: with ioredis it was 13 MiB of a lone mirror's
 * RSS at start (docs/benchmarks.md, "Memory"), and a lone mirror never uses it. Both packages ship
 * CommonJS builds, which `require` loads synchronously.
 */
const load = createRequire(import.meta.url);
let sdk: { s3: typeof S3Sdk; storage: typeof S3Storage } | undefined;
function aws(): { s3: typeof S3Sdk; storage: typeof S3Storage } {
  sdk ??= {
    s3: load('@aws-sdk/client-s3') as typeof S3Sdk,
    storage: load('@aws-sdk/lib-storage') as typeof S3Storage,
  };
  return sdk;
}

/** Parts of a multipart upload: big enough to be few, small enough to stream. */
const PART_BYTES = 16 * 1024 * 1024;
/** S3's bound on one PUT: a bigger blob is published in parts. */
const SINGLE_PUT_MAX_BYTES = 5 * 1024 ** 3;

/**
 * Bounds on the bucket (docs/SECURITY.md: it is not trusted, and it must not stall the mirror). The SDK's
 * defaults wait for ever: a bucket that accepts connections and never answers held every lookup.
 *
 * A TCP connection to the bucket takes this long at most: S3 and an RGW on the LAN answer in
 * milliseconds, so 2 s is a dead or black-holed endpoint, not a slow one.
 */
export const S3_CONNECT_TIMEOUT_MS = 2_000;
/**
 * Answers to reads (HEAD, DELETE, the headers of a GET) arrive within this. S3's own first-byte
 * latency is tens of milliseconds (RGW's first request to a lazy pool ~2 s). Writes carry a body
 * whose length is the blob's, so they have no total bound, only the idle one below.
 */
export const S3_RESPONSE_TIMEOUT_MS = 5_000;
/**
 * A connection that moves no byte for this long fails its call or its streamed body. Idle, not
 * long: a GET of a layer of gigabytes takes minutes and must not be cut for that.
 */
export const S3_IDLE_TIMEOUT_MS = 10_000;
/**
 * Tries per call: one retry, for a pooled keep-alive connection the bucket closed or a 503 SlowDown.
 * The SDK's 3 would make a silent bucket cost 3 × S3_RESPONSE_TIMEOUT_MS per lookup.
 */
export const S3_MAX_ATTEMPTS = 2;
/**
 * After a failure (timeout, refused or reset connection, 5xx), the bucket is skipped this long:
 * every call fails at once, so each miss goes upstream without paying the timeout again. A replica
 * then works as if alone (as with an unreachable bucket). The first call after it tries again, and
 * an answer clears it.
 */
export const S3_DOWN_COOLDOWN_MS = 15_000;

/** An object as the bucket lists it: its key without the prefix, its size, when it was written. */
export interface ListedObject {
  key: string;
  size: number;
  modifiedMs: number;
}

/** The bucket failed a moment ago (S3_DOWN_COOLDOWN_MS): not asked. */
export class SharedStoreDownError extends Error {
  constructor(cause: string) {
    super(`shared store skipped after a failure: ${cause}`);
    this.name = 'SharedStoreDownError';
  }
}

/** Tunable for tests; the mirror uses the constants above. */
export interface S3Bounds {
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  idleTimeoutMs: number;
  maxAttempts: number;
  downCooldownMs: number;
  /** A blob up to this is published in one streamed PUT, a bigger one in parts. */
  singlePutMaxBytes: number;
}

const BOUNDS: S3Bounds = {
  connectTimeoutMs: S3_CONNECT_TIMEOUT_MS,
  responseTimeoutMs: S3_RESPONSE_TIMEOUT_MS,
  idleTimeoutMs: S3_IDLE_TIMEOUT_MS,
  maxAttempts: S3_MAX_ATTEMPTS,
  downCooldownMs: S3_DOWN_COOLDOWN_MS,
  singlePutMaxBytes: SINGLE_PUT_MAX_BYTES,
};

/**
 * The blob store replicas share: the same content-addressed layout as on disk
 * (`<prefix>blobs/sha256/<2 hex>/<hex>`), in an S3 bucket. Replicas only ever write verified content
 * under a digest's key: a replica publishes a blob after its own fill checked the sha256, and an S3
 * object (multipart included) becomes visible whole or not at all. What they read is still checked
 * like an upstream body (docs/SECURITY.md: anything else with write access, or a corruption, may have put
 * other bytes there), and a copy that is not the blob is discarded. Credentials come from the usual
 * AWS chain (environment, shared config and credentials files, instance roles).
 */
export class S3BlobStore {
  readonly #client: S3Client;
  readonly #config: S3Config;
  readonly #bounds: S3Bounds;
  readonly #log: Logger | undefined;
  /** Per-call options of reads: their answer's headers within S3_RESPONSE_TIMEOUT_MS. */
  readonly #read: { requestTimeout: number };
  /** Until when the bucket is skipped (0: it answered last time), and why. */
  #downUntil = 0;
  #downCause = '';
  /** The bucket answered a call since start (a 404 is an answer). */
  #answered = false;

  constructor(config: S3Config, log?: Logger, bounds: Partial<S3Bounds> = {}) {
    this.#config = config;
    this.#log = log;
    this.#bounds = { ...BOUNDS, ...bounds };
    this.#read = { requestTimeout: this.#bounds.responseTimeoutMs };
    const options: S3ClientConfig = {
      region: config.region,
      forcePathStyle: config.pathStyle,
      // Checksums only where S3 requires them: RGW 16 answers a streamed, checksummed PUT with 411.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: this.#bounds.maxAttempts,
      requestHandler: {
        connectionTimeout: this.#bounds.connectTimeoutMs,
        // @smithy/node-http-handler: socketTimeout is the idle bound (reset by every byte, the
        // streamed body's included); requestTimeout (given per read, below) ends when the headers
        // arrive, and throws only with throwOnRequestTimeout (else it merely logs).
        socketTimeout: this.#bounds.idleTimeoutMs,
        throwOnRequestTimeout: true,
      },
    };
    if (config.endpoint) options.endpoint = config.endpoint;
    this.#client = new (aws().s3.S3Client)(options);
    // The request is signed, its body is not: over plain http the SDK would hash every byte
    // published (SigV4's payload hash) only for the bucket to check it in transit, and what is
    // read back is verified against its digest anyway (docs/SECURITY.md). The signer takes the
    // header as the payload's hash when it is set.
    this.#client.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { headers?: Record<string, string> };
        if (request.headers) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        return next(args);
      },
      { step: 'build', name: 'hubcacheUnsignedPayload' },
    );
  }

  /** The bucket in words, for /readyz: down (why), reachable, or not asked since it was down. */
  get state(): string {
    // The cause is the bucket's own words (an error message): bounded before it reaches /readyz.
    const cause = this.#downCause.slice(0, 200);
    if (this.down) return `down: ${cause} (fetching upstream alone for now)`;
    if (this.#answered) return 'reachable';
    // The start-up check contacts it: only a failure since then leaves it unanswered.
    return cause ? `was down: ${cause} (asked again at the next miss)` : 'not contacted yet';
  }

  /** The bucket failed within the cool-down: calls fail at once (SharedStoreDownError). */
  get down(): boolean {
    return this.#downUntil > Date.now();
  }

  /**
   * One call to the bucket, skipped while it is down; a failure of the bucket (not an answer such
   * as 404 or 403) starts the cool-down, any answer ends it.
   */
  async #call<T>(run: () => Promise<T>): Promise<T> {
    if (this.down) throw new SharedStoreDownError(this.#downCause);
    try {
      const out = await run();
      this.#downUntil = 0;
      this.#answered = true;
      return out;
    } catch (err) {
      if (isBucketFailure(err)) this.#failed(err as Error);
      else {
        this.#downUntil = 0;
        this.#answered = true;
      }
      throw err;
    }
  }

  /**
   * The start-up check (shared/start-check.ts): the bucket exists, and a probe object under
   * `<prefix>_hubcache/probe/` can be written, read back the same, and deleted. A bucket that fails
   * it starts the cool-down, so /readyz says why. `problem`: it cannot be used, in an operator's
   * words; `warning`: only the DELETE was refused (replicas share, but cannot remove a bad copy).
   */
  async check(probeId: string): Promise<{ problem?: string; warning?: string }> {
    // The caller says what failed, in one line: the cool-down's own warning would repeat it.
    this.#quiet = true;
    try {
      return await this.#check(probeId);
    } finally {
      this.#quiet = false;
    }
  }

  #quiet = false;

  async #check(probeId: string): Promise<{ problem?: string; warning?: string }> {
    const s3 = aws().s3;
    const key = `${this.#config.prefix}_hubcache/probe/${probeId}`;
    const probe = Buffer.from(`hubcache probe ${probeId}`);
    const Bucket = this.bucket;
    let step = 'HeadBucket';
    try {
      await this.#call(() => this.#client.send(new s3.HeadBucketCommand({ Bucket }), this.#read));
      step = 'PutObject';
      await this.#call(() =>
        this.#client.send(
          new s3.PutObjectCommand({ Bucket, Key: key, Body: probe, ContentLength: probe.length }),
          this.#read,
        ),
      );
      step = 'GetObject';
      const back = await this.#call(async () => {
        // One byte more than was written at most, whatever the bucket holds (it is not trusted).
        const Range = `bytes=0-${probe.length}`;
        const res = await this.#client.send(new s3.GetObjectCommand({ Bucket, Key: key, Range }), this.#read);
        const body = res.Body as { transformToByteArray(): Promise<Uint8Array> };
        return Buffer.from(await body.transformToByteArray());
      });
      if (!back.equals(probe)) throw OTHER_BYTES;
    } catch (err) {
      const problem =
        err === OTHER_BYTES
          ? 'the bucket returned other bytes than were written (GetObject of the probe object)'
          : bucketProblem(err, step);
      this.#failed(new Error(problem));
      return { problem };
    }
    try {
      await this.#call(() => this.#client.send(new s3.DeleteObjectCommand({ Bucket, Key: key }), this.#read));
      return {};
    } catch (err) {
      return {
        warning: `${bucketProblem(err, 'DeleteObject')}: a copy that is not its blob cannot be removed from the bucket`,
      };
    }
  }

  #failed(err: Error): void {
    if (!this.down && !this.#quiet) {
      this.#log?.warn(
        { bucket: this.bucket, err: err.message, ms: this.#bounds.downCooldownMs },
        isMissingBucket(err)
          ? 'shared store: the bucket does not exist (check --s3-bucket): skipped for a while, replicas fetch upstream on their own'
          : 'shared store failed: skipped for a while, replicas fetch upstream on their own',
      );
    }
    this.#downCause = err.message;
    this.#downUntil = Date.now() + this.#bounds.downCooldownMs;
  }

  get bucket(): string {
    return this.#config.bucket;
  }

  key(digest: Digest): string {
    return `${this.#config.prefix}blobs/sha256/${digest.hex.slice(0, 2)}/${digest.hex}`;
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
      const res = await this.#call(() =>
        this.#client.send(
          new (aws().s3.GetObjectCommand)({
            Bucket: this.bucket,
            Key: this.key(digest),
            ...(start > 0 ? { Range: `bytes=${start}-` } : {}),
          }),
          this.#read,
        ),
      );
      const total = /\/(\d+)$/.exec(res.ContentRange ?? '')?.[1];
      const size = total !== undefined ? Number(total) : (res.ContentLength ?? 0);
      const body = res.Body as Readable;
      // A body that went idle (S3_IDLE_TIMEOUT_MS) is the bucket failing, like a call timing out.
      body.on('error', (err: Error) => {
        if (isBucketTimeout(err)) this.#failed(err);
      });
      return { body, size, etag: res.ETag };
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
   * The size of the object under a blob's key (HEAD), or undefined when there is none. Not a
   * checked size: whoever reads the object checks it.
   */
  async size(digest: Digest): Promise<number | undefined> {
    try {
      const res = await this.#call(() =>
        this.#client.send(
          new (aws().s3.HeadObjectCommand)({ Bucket: this.bucket, Key: this.key(digest) }),
          this.#read,
        ),
      );
      return res.ContentLength;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Removes a copy that turned out not to be its blob, if the key still holds that object (same
   * ETag): a good copy another replica published since stays. The look and the delete are two
   * requests; losing a good copy in between only costs one more upstream fetch.
   */
  async discard(digest: Digest, etag: string | undefined): Promise<void> {
    if (etag !== undefined) {
      try {
        const res = await this.#call(() =>
          this.#client.send(
            new (aws().s3.HeadObjectCommand)({ Bucket: this.bucket, Key: this.key(digest) }),
            this.#read,
          ),
        );
        if (res.ETag !== etag) return;
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
    }
    await this.#call(() =>
      this.#client.send(
        new (aws().s3.DeleteObjectCommand)({ Bucket: this.bucket, Key: this.key(digest) }),
        this.#read,
      ),
    );
  }

  /**
   * Publishes a verified file under its digest: streamed from the file in one PUT up to S3's 5 GiB
   * limit for one (the body is not hashed to sign it, see the constructor, so nothing is read ahead
   * or held: the blob never sits in memory whole, which made every publish a burst of garbage for
   * the collector), multipart beyond it.
   */
  async publishFile(digest: Digest, file: string, size: number): Promise<void> {
    if (size <= this.#bounds.singlePutMaxBytes) {
      await this.#call(() =>
        this.#client.send(
          new (aws().s3.PutObjectCommand)({
            Bucket: this.bucket,
            Key: this.key(digest),
            Body: createReadStream(file),
            ContentLength: size,
            ContentType: 'application/octet-stream',
          }),
        ),
      );
      return;
    }
    const upload = new (aws().storage.Upload)({
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
    // Writes have no total bound (their length is the blob's), only connect and idle ones.
    await this.#call(() => upload.done());
  }

  /**
   * Stages bytes [start, end) of an upload session's file under `<prefix>uploads/<id>/<start>-<end>`
   * (fleet-uploads.ts: another replica takes the session over if its owner dies). Returns the
   * object's ETag (the MD5 of a single PUT), which the taker checks the bytes against.
   */
  async stageUpload(id: string, file: string, start: number, end: number): Promise<string> {
    const res = await this.#call(() =>
      this.#client.send(
        new (aws().s3.PutObjectCommand)({
          Bucket: this.bucket,
          Key: this.#uploadKey(id, start, end),
          Body: createReadStream(file, { start, end: end - 1 }),
          ContentLength: end - start,
        }),
      ),
    );
    return String(res.ETag ?? '').replace(/"/g, '');
  }

  /** A staged part of an upload session, or undefined when it is gone. */
  async openUpload(id: string, start: number, end: number): Promise<Readable | undefined> {
    try {
      const res = await this.#call(() =>
        this.#client.send(
          new (aws().s3.GetObjectCommand)({ Bucket: this.bucket, Key: this.#uploadKey(id, start, end) }),
          this.#read,
        ),
      );
      return res.Body as Readable;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Removes an upload session's staged parts (it finished, was cancelled, or expired). */
  async dropUpload(id: string, parts: [number, number][]): Promise<void> {
    for (const [start, end] of parts) {
      await this.#call(() =>
        this.#client.send(
          new (aws().s3.DeleteObjectCommand)({ Bucket: this.bucket, Key: this.#uploadKey(id, start, end) }),
          this.#read,
        ),
      ).catch(() => {});
    }
  }

  #uploadKey(id: string, start: number, end: number): string {
    return `${this.#config.prefix}uploads/${id}/${start}-${end}`;
  }

  /**
   * One page (at most 1,000) of the objects under `<prefix><under>` (ListObjectsV2), for the fleet's
   * garbage collection (shared/bucket-gc.ts): each key without the prefix, its size and when it was
   * written, and the token of the next page. The listing is the bucket's word, checked by the caller.
   */
  async listPage(
    under: 'blobs/sha256/' | 'uploads/',
    token?: string,
  ): Promise<{ objects: ListedObject[]; next: string | undefined }> {
    const prefix = this.#config.prefix;
    const res = await this.#call(() =>
      this.#client.send(
        new (aws().s3.ListObjectsV2Command)({
          Bucket: this.bucket,
          Prefix: `${prefix}${under}`,
          MaxKeys: 1000,
          ...(token ? { ContinuationToken: token } : {}),
        }),
        this.#read,
      ),
    );
    const objects: ListedObject[] = [];
    for (const o of (res.Contents ?? []).slice(0, 1000)) {
      if (!o.Key?.startsWith(prefix)) continue;
      objects.push({
        key: o.Key.slice(prefix.length),
        size: Number(o.Size ?? 0),
        modifiedMs: o.LastModified ? o.LastModified.getTime() : 0,
      });
    }
    return { objects, next: res.IsTruncated ? res.NextContinuationToken : undefined };
  }

  /**
   * The bucket's clock now (ms): the time it gives a probe object written for the purpose. What is
   * "older than the grace period" is judged on the same clock as the objects' LastModified, so a
   * replica whose clock runs ahead never takes a fresh object for an old one. A HEAD's
   * Last-Modified has whole seconds (a listing's has milliseconds): up to a second early, which
   * only keeps an object a moment longer.
   */
  async clock(probeId: string): Promise<number> {
    const s3 = aws().s3;
    const Key = `${this.#config.prefix}_hubcache/probe/${probeId}`;
    const Bucket = this.bucket;
    await this.#call(() =>
      this.#client.send(
        new s3.PutObjectCommand({ Bucket, Key, Body: Buffer.alloc(0), ContentLength: 0 }),
        this.#read,
      ),
    );
    const head = await this.#call(() =>
      this.#client.send(new s3.HeadObjectCommand({ Bucket, Key }), this.#read),
    );
    await this.#call(() => this.#client.send(new s3.DeleteObjectCommand({ Bucket, Key }), this.#read)).catch(
      () => {},
    );
    if (!head.LastModified) throw new Error('the bucket gave the probe object no LastModified');
    return head.LastModified.getTime();
  }

  /**
   * Removes objects by their keys (without the prefix), up to 1,000 in one DeleteObjects; returns
   * the keys the bucket says it could not remove.
   */
  async removeKeys(keys: string[]): Promise<string[]> {
    if (keys.length === 0) return [];
    const prefix = this.#config.prefix;
    const res = await this.#call(() =>
      this.#client.send(
        new (aws().s3.DeleteObjectsCommand)({
          Bucket: this.bucket,
          Delete: { Objects: keys.slice(0, 1000).map((key) => ({ Key: `${prefix}${key}` })), Quiet: true },
        }),
        this.#read,
      ),
    );
    const failed = new Set((res.Errors ?? []).map((e) => String(e.Key ?? '').slice(prefix.length)));
    return [...keys.slice(1000), ...keys.slice(0, 1000).filter((k) => failed.has(k))];
  }

  /** Removes one object by its key (without the prefix), as listed by listPage. */
  async removeKey(key: string): Promise<void> {
    await this.#call(() =>
      this.#client.send(
        new (aws().s3.DeleteObjectCommand)({ Bucket: this.bucket, Key: `${this.#config.prefix}${key}` }),
        this.#read,
      ),
    );
  }

  /**
   * Aborts the multipart uploads under the prefix begun before `before` (ms): a replica that died
   * while publishing a big blob leaves its parts, which no listing of objects shows and which the
   * bucket keeps (and bills) until aborted. At most 1,000 per call. Returns how many were aborted.
   */
  async abortStaleMultipart(before: number): Promise<number> {
    const s3 = aws().s3;
    const res = await this.#call(() =>
      this.#client.send(
        new s3.ListMultipartUploadsCommand({
          Bucket: this.bucket,
          Prefix: this.#config.prefix,
          MaxUploads: 1000,
        }),
        this.#read,
      ),
    );
    let aborted = 0;
    for (const u of (res.Uploads ?? []).slice(0, 1000)) {
      if (!u.Key || !u.UploadId || !u.Initiated || u.Initiated.getTime() >= before) continue;
      if (!u.Key.startsWith(this.#config.prefix)) continue;
      await this.#call(() =>
        this.#client.send(
          new s3.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }),
          this.#read,
        ),
      );
      aborted++;
    }
    return aborted;
  }

  async publishBuffer(digest: Digest, data: Buffer): Promise<void> {
    await this.#call(() =>
      this.#client.send(
        new (aws().s3.PutObjectCommand)({
          Bucket: this.bucket,
          Key: this.key(digest),
          Body: data,
          ContentLength: data.length,
          ContentType: 'application/octet-stream',
        }),
      ),
    );
  }

  close(): void {
    this.#client.destroy();
  }
}

/**
 * The bucket failed rather than answered: skipped already, no answer at all (timeout, refused or
 * reset connection, unreadable reply), or a 5xx. A 4xx (404, 403) is an answer.
 */
export function isBucketFailure(err: unknown): boolean {
  if (err instanceof SharedStoreDownError || isMissingBucket(err)) return true;
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return status === undefined || status >= 500;
}

/** A call or a streamed body that timed out (@smithy/node-http-handler's TimeoutError). */
export function isBucketTimeout(err: unknown): boolean {
  return (err as { name?: string }).name === 'TimeoutError';
}

/**
 * The bucket itself is not there (misnamed, deleted): a 404 like a missing object's, but every call
 * will fail the same way. It is a bucket failure, not "no such blob": taken for the latter, replicas
 * would queue for each other's download lock and publish into nothing, every one of them.
 */
function isMissingBucket(err: unknown): boolean {
  const e = err as { name?: string; Code?: string };
  return e.name === 'NoSuchBucket' || e.Code === 'NoSuchBucket';
}

function isNotFound(err: unknown): boolean {
  if (isMissingBucket(err)) return false;
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404;
}

const OTHER_BYTES = new Error('other bytes');

/**
 * Why a call to the bucket failed, in an operator's words, naming the call (`what`) and the error's
 * code: what the start-up check prints. The bucket's own text is cut (it is not trusted).
 */
export function bucketProblem(err: unknown, what: string): string {
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  const code = (e.name ?? 'Error').slice(0, 60);
  if (err instanceof SharedStoreDownError) return String(e.message).slice(0, 200);
  if (isMissingBucket(err) || (what === 'HeadBucket' && status === 404))
    return 'the bucket does not exist (NoSuchBucket)';
  if (status === 403 || status === 401)
    return `access denied (${what}: ${code}): check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, or the role) and the bucket's policy`;
  if (status === 301 || code === 'PermanentRedirect')
    return `the bucket is in another region than --s3-region says (${what}: ${code})`;
  if (code === 'CredentialsProviderError')
    return 'no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or a role';
  if (status === undefined) return `unreachable (${what}: ${String(e.message ?? code).slice(0, 200)})`;
  return `the bucket failed (${what}: HTTP ${status} ${code})`;
}
