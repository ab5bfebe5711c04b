import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BufferPool } from '../buffer-pool.js';
import { type Byteranges, byteranges } from '../oci/byteranges.js';
import type { RegistryError } from '../oci/errors.js';
import type { ByteRange } from '../oci/range.js';
import type { Exchange } from './exchange.js';
import { sendFileRange } from './file-sender.js';
import { MAX_DISCARDED_BODY_BYTES } from './request-body.js';

const API_VERSION = 'registry/2.0';

export type Headers = Record<string, string | number>;

function head(ex: Exchange, status: number, headers: Headers): void {
  ex.res.writeHead(status, withOurs(ex, headers));
}

/** A handler's headers and the ones every answer carries: the API version, and X-Cache. */
function withOurs(ex: Exchange, headers: Headers): Headers {
  const all: Headers = { 'Docker-Distribution-API-Version': API_VERSION, ...headers };
  if (ex.outcome) all['X-Cache'] = ex.outcome;
  return all;
}

/** The headers `sendBody` writes for this body (the hit lane keeps them to send again). */
export function sentHeaders(ex: Exchange, headers: Headers, body: Buffer | undefined): Headers {
  return withOurs(ex, { 'Content-Length': body?.length ?? 0, ...headers });
}

/** A whole small body (manifests, JSON, in-memory blobs). HEAD sends the headers only. */
export function sendBody(ex: Exchange, status: number, headers: Headers, body: Buffer | undefined): void {
  ex.res.writeHead(status, sentHeaders(ex, headers, body));
  if (ex.method === 'HEAD' || !body) {
    ex.res.end();
    return;
  }
  ex.bytes = body.length;
  endWith(ex, body);
}

/**
 * The last (or only) chunk of a body. Not counted in `ex.sent` here: a response that finished had
 * all its announced bytes taken by the socket, which the request log reads from `ex.bytes` then
 * (server.ts), and a write callback per hit cost a 'finish' listener on the hit path.
 */
export function endWith(ex: Exchange, body: Buffer): void {
  ex.res.end(body);
}

/** 304: the validators, no Content-Length (a 304 has no body, and clients check the length). */
export function sendNotModified(ex: Exchange, headers: Headers): void {
  head(ex, 304, headers);
  ex.res.end();
}

export function sendJson(ex: Exchange, status: number, value: unknown, headers: Headers = {}): void {
  sendBody(
    ex,
    status,
    { 'Content-Type': 'application/json', ...headers },
    Buffer.from(JSON.stringify(value)),
  );
}

export function sendError(ex: Exchange, err: RegistryError): void {
  const body = Buffer.from(JSON.stringify(err.toJSON()));
  const close: Headers = {};
  if (!ex.req.complete) {
    // Answered before the request's body was all read (an upload cut short, a session refused). A
    // small rest is read and dropped: the connection stays usable, and a client still sending
    // when the server closes may see a reset instead of this answer. A large or unannounced one
    // (a chunked upload, a flood) is not read: the connection closes after the answer.
    if (Number(ex.req.headers['content-length']) <= MAX_DISCARDED_BODY_BYTES) ex.req.resume();
    else close.Connection = 'close';
  }
  head(ex, err.status, {
    'Content-Type': 'application/json',
    'Content-Length': body.length,
    ...close,
    ...err.headers,
  });
  // HEAD gets the status and headers only (RFC 9110 §9.3.2).
  if (ex.method === 'HEAD') ex.res.end();
  // Counted here as it goes: an error body is not in `ex.bytes` (not content served, for metrics).
  else
    ex.res.end(body, () => {
      ex.sent += body.length;
    });
}

const BLOB_TYPE = 'application/octet-stream';

/** Status and headers for (part of) a blob of `size` bytes. */
export function blobHeaders(digest: string, size: number, range: ByteRange | undefined): [number, Headers] {
  // Object literals of one shape, no spreads: this runs for every blob hit.
  if (!range) {
    return [
      200,
      {
        'Content-Type': BLOB_TYPE,
        'Docker-Content-Digest': digest,
        ETag: `"${digest}"`,
        'Accept-Ranges': 'bytes',
        'Content-Length': size,
      },
    ];
  }
  return [
    206,
    {
      'Content-Type': BLOB_TYPE,
      'Docker-Content-Digest': digest,
      ETag: `"${digest}"`,
      'Accept-Ranges': 'bytes',
      'Content-Length': range.end - range.start + 1,
      'Content-Range': `bytes ${range.start}-${range.end}/${size}`,
    },
  ];
}

/**
 * The multipart/byteranges framing for several ranges of a blob (RFC 9110 §14.6), with a boundary
 * drawn at random (128 bits): no blob's bytes, chosen by an upstream or a pusher, can contain it.
 */
export function blobByteranges(ranges: ByteRange[], size: number): Byteranges {
  return byteranges(ranges, size, BLOB_TYPE, randomBytes(16).toString('hex'));
}

/** Status and headers of a multipart/byteranges answer (206; its Content-Length is known). */
export function byterangesHeaders(digest: string, body: Byteranges): [number, Headers] {
  return [
    206,
    {
      'Content-Type': body.contentType,
      'Docker-Content-Digest': digest,
      ETag: `"${digest}"`,
      'Accept-Ranges': 'bytes',
      'Content-Length': body.length,
    },
  ];
}

/** A whole multipart/byteranges body in memory, for a blob held in memory. */
export function joinByteranges(body: Byteranges, blob: Buffer): Buffer {
  const pieces: Buffer[] = [];
  for (const part of body.parts) pieces.push(part.head, blob.subarray(part.start, part.end + 1));
  pieces.push(body.tail);
  return Buffer.concat(pieces, body.length);
}

/**
 * A multipart/byteranges body streamed: each part's head, its bytes as `bytes(start, end)` yields
 * them, then the close delimiter. Whatever holds back `bytes` holds back the response: a part read
 * from a download in progress (FillReader) ends only once the blob was verified, and a failure
 * cuts the connection short of the Content-Length.
 */
export async function sendByteranges(
  ex: Exchange,
  headers: Headers,
  body: Byteranges,
  bytes: (start: number, end: number) => AsyncIterable<Buffer>,
): Promise<void> {
  // Bytes, not objects: the stream buffers one high-water mark, not 16 chunks.
  const stream = Readable.from(byterangesBody(body, bytes), { objectMode: false });
  return sendStream(ex, 206, headers, stream, body.length);
}

async function* byterangesBody(
  body: Byteranges,
  bytes: (start: number, end: number) => AsyncIterable<Buffer>,
): AsyncGenerator<Buffer> {
  for (const part of body.parts) {
    yield part.head;
    yield* bytes(part.start, part.end);
  }
  yield body.tail;
}

/** A stored file (or a range of it) straight to the socket; the handle is always closed. */
export async function sendFile(
  ex: Exchange,
  status: number,
  headers: Headers,
  handle: FileHandle,
  start: number,
  end: number,
  pool: BufferPool,
): Promise<void> {
  head(ex, status, headers);
  if (ex.method === 'HEAD' || end < start) {
    await handle.close();
    ex.res.end();
    return;
  }
  ex.bytes = end - start + 1;
  await sendFileRange(handle, ex.res, start, end, pool, (bytes) => {
    ex.sent += bytes;
  });
}

/** Streams any readable as the body, after headers. */
export async function sendStream(
  ex: Exchange,
  status: number,
  headers: Headers,
  body: Readable,
  bytes: number,
): Promise<void> {
  head(ex, status, headers);
  ex.bytes = bytes;
  await pipeAndSwallow(body, ex);
}

/**
 * A client that goes away mid-body is normal (docker cancels pulls); the pipeline destroys the
 * source (closing its file) and the request log records the response as incomplete, with the bytes
 * the socket took (each chunk counted in its write callback).
 */
async function pipeAndSwallow(body: Readable, ex: Exchange): Promise<void> {
  const res = ex.res;
  // The client leaving stops the pipeline at once, even while the source waits on an upstream.
  const gone = new AbortController();
  const leave = () => gone.abort();
  res.once('close', leave);
  try {
    await pipeline(
      body,
      async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) {
          if (res.destroyed) throw new Error('the client went away');
          const more = res.write(chunk, (err) => {
            if (!err) ex.sent += chunk.length;
          });
          if (!more) await drained(res);
        }
        await new Promise<void>((resolve) => res.end(resolve));
      },
      { signal: gone.signal },
    );
  } catch {
    res.destroy();
  } finally {
    res.off('close', leave);
  }
}

/** Resolves when the response can take more, rejects when it closed first. */
function drained(res: Exchange['res']): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      if (res.destroyed) reject(new Error('the client went away'));
      else resolve();
    };
    if (res.destroyed) reject(new Error('the client went away'));
    res.on('drain', done);
    res.on('close', done);
  });
}
