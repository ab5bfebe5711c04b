import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { parseDigest } from '../../src/oci/digest.js';
import { MAX_RANGES } from '../../src/oci/range.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { gate, get, mirrorFor, tempDataDir, waitFor } from './harness.js';

/**
 * Issue 14, "Multi-range requests": podman's zstd:chunked partial pulls ask for several ranges of a
 * layer in one request (`Range: bytes=a-b,c-d`: the table of contents and the tar-split, then the
 * chunks). The answer is 206 multipart/byteranges (RFC 9110 §14.6, §15.3.7), one part per range in
 * the order asked, from the store and from a download in progress, and never a complete body with
 * unverified bytes.
 */

let upstream: FakeRegistry;
let mirror: RunningMirror;
let data: Awaited<ReturnType<typeof tempDataDir>>;

beforeEach(async () => {
  upstream = await startFakeRegistry();
  data = await tempDataDir();
  mirror = await mirrorFor(upstream, data.dir);
});

afterEach(async () => {
  await mirror?.close();
  await upstream.close();
  await data.remove();
});

interface Part {
  contentType: string;
  start: number;
  end: number;
  size: number;
  bytes: Buffer;
}

/**
 * Parses a multipart/byteranges body strictly: CRLF framing, a delimiter before every part, each
 * part's Content-Type and Content-Range, exactly the bytes its range announces, the close
 * delimiter, and nothing after it. Throws on any deviation.
 */
function parseByteranges(body: Buffer, contentType: string | string[] | undefined): Part[] {
  const m = /^multipart\/byteranges;\s*boundary=("?)([^";]+)\1$/.exec(String(contentType));
  if (!m) throw new Error(`not multipart/byteranges: ${String(contentType)}`);
  const delimiter = `--${m[2]}`;
  const parts: Part[] = [];
  let pos = 0;
  const expect = (text: string) => {
    if (body.toString('latin1', pos, pos + text.length) !== text)
      throw new Error(`expected ${JSON.stringify(text)} at ${pos}`);
    pos += text.length;
  };
  expect(`${delimiter}\r\n`);
  for (;;) {
    const headerEnd = body.indexOf('\r\n\r\n', pos, 'latin1');
    if (headerEnd < 0) throw new Error('part headers never end');
    const headers = new Map(
      body
        .toString('latin1', pos, headerEnd)
        .split('\r\n')
        .map((line) => {
          const colon = line.indexOf(':');
          return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()] as const;
        }),
    );
    pos = headerEnd + 4;
    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(headers.get('content-range') ?? '');
    if (!range) throw new Error(`part without a byte Content-Range: ${headers.get('content-range')}`);
    const [start, end, size] = [Number(range[1]), Number(range[2]), Number(range[3])];
    const bytes = body.subarray(pos, pos + end - start + 1);
    if (bytes.length !== end - start + 1) throw new Error('part shorter than its Content-Range');
    pos += bytes.length;
    parts.push({ contentType: headers.get('content-type') ?? '', start, end, size, bytes });
    expect(`\r\n${delimiter}`);
    if (body.toString('latin1', pos, pos + 2) === '--') {
      expect('--\r\n');
      if (pos !== body.length) throw new Error('bytes after the close delimiter');
      return parts;
    }
    expect('\r\n');
  }
}

/** Checks a 206 multipart answer for `ranges` of `blob` byte for byte. */
function expectParts(
  reply: { status: number; headers: Record<string, unknown>; body: Buffer },
  blob: Buffer,
  ranges: [number, number][],
) {
  expect(reply.status).toBe(206);
  expect(Number(reply.headers['content-length'])).toBe(reply.body.length);
  expect(reply.headers['content-range']).toBeUndefined();
  const parts = parseByteranges(reply.body, reply.headers['content-type'] as string);
  expect(parts.map((p) => [p.start, p.end])).toEqual(ranges);
  for (const p of parts) {
    expect(p.contentType).toBe('application/octet-stream');
    expect(p.size).toBe(blob.length);
    expect(p.bytes.equals(blob.subarray(p.start, p.end + 1))).toBe(true);
  }
}

const blobUrl = (digest: string) => `${mirror.url}/v2/library/app/blobs/${digest}`;

describe('several ranges of a stored blob', () => {
  // Blobs up to 8 MiB are served from memory, bigger ones from their file: both paths.
  it.each([
    ['in memory', 64 * 1024],
    ['on disk', 9 * 1024 * 1024],
  ])('answers 206 multipart/byteranges for a blob %s, byte for byte', async (_where, size) => {
    const blob = randomBytes(size);
    const digest = upstream.addBlob(blob);
    expect((await get(blobUrl(digest))).status).toBe(200);
    await mirror.mirror.blobs.inflight(parseDigest(digest))?.finished;
    const asked = upstream.count('GET', /\/blobs\//);

    // The shape of a zstd:chunked request: the end of the layer first (table of contents, tar-split),
    // then chunks in between; a range reaching past the end is clamped, a suffix counts from the end.
    const reply = await get(blobUrl(digest), {
      range: `bytes=${size - 3000}-${size - 2001},${size - 2000}-${size + 5000},0-0,-10,4096-${4095 + size / 8}`,
    });
    expectParts(reply, blob, [
      [size - 3000, size - 2001],
      [size - 2000, size - 1],
      [0, 0],
      [size - 10, size - 1],
      [4096, 4095 + size / 8],
    ]);
    expect(reply.headers['x-cache']).toBe('HIT');
    expect(reply.headers['docker-content-digest']).toBe(digest);
    expect(upstream.count('GET', /\/blobs\//)).toBe(asked);

    // HEAD: the same status and headers, no body.
    const head = await get(blobUrl(digest), { range: 'bytes=0-9,20-29' }, 'HEAD');
    const full = await get(blobUrl(digest), { range: 'bytes=0-9,20-29' });
    expect(head.status).toBe(206);
    expect(head.headers['content-type']).toMatch(/^multipart\/byteranges; boundary=/);
    expect(head.headers['content-length']).toBe(full.headers['content-length']);
    expect(head.body.length).toBe(0);
    expectParts(full, blob, [
      [0, 9],
      [20, 29],
    ]);
  });

  it('keeps a single range a plain 206 with Content-Range (no multipart)', async () => {
    const blob = randomBytes(4096);
    const digest = upstream.addBlob(blob);
    await get(blobUrl(digest));
    const reply = await get(blobUrl(digest), { range: 'bytes=100-199' });
    expect(reply.status).toBe(206);
    expect(reply.headers['content-type']).toBe('application/octet-stream');
    expect(reply.headers['content-range']).toBe('bytes 100-199/4096');
    expect(reply.body.equals(blob.subarray(100, 200))).toBe(true);
  });

  it('answers 416 with Content-Range bytes */size when no range is satisfiable', async () => {
    const blob = randomBytes(1000);
    const digest = upstream.addBlob(blob);
    await get(blobUrl(digest));
    const reply = await get(blobUrl(digest), { range: 'bytes=1000-1100,5000-' });
    expect(reply.status).toBe(416);
    expect(reply.headers['content-range']).toBe('bytes */1000');
    expect(JSON.parse(reply.body.toString()).errors[0].code).toBe('RANGE_INVALID');
  });

  it(`serves the whole blob (200) beyond ${MAX_RANGES} ranges, or for ranges adding up to more than the blob`, async () => {
    const blob = randomBytes(10_000);
    const digest = upstream.addBlob(blob);
    await get(blobUrl(digest));
    const many = Array.from({ length: MAX_RANGES + 1 }, (_, i) => `${i * 3}-${i * 3}`).join(',');
    for (const range of [`bytes=${many}`, 'bytes=0-,0-,0-']) {
      const reply = await get(blobUrl(digest), { range });
      expect(reply.status).toBe(200);
      expect(reply.body.equals(blob)).toBe(true);
    }
    const most = Array.from({ length: MAX_RANGES }, (_, i) => `${i * 3}-${i * 3}`).join(',');
    const reply = await get(blobUrl(digest), { range: `bytes=${most}` });
    expect(reply.status).toBe(206);
    expect(parseByteranges(reply.body, reply.headers['content-type'])).toHaveLength(MAX_RANGES);
  });
});

describe('a podman-sized Range header', () => {
  it('takes 1,024 ranges with big offsets in one header (~20 KB), and still refuses 100 KB of headers (431)', async () => {
    const blob = randomBytes(4 * 1024 * 1024);
    const digest = upstream.addBlob(blob);
    await get(blobUrl(digest));
    const base = 1_000_000;
    const ranges = Array.from({ length: MAX_RANGES }, (_, i) => `${base + i * 3000}-${base + i * 3000 + 9}`);
    const header = `bytes=${ranges.join(',')}`;
    expect(header.length).toBeGreaterThan(16 * 1024);
    const reply = await get(blobUrl(digest), { range: header });
    expect(reply.status).toBe(206);
    expect(parseByteranges(reply.body, reply.headers['content-type'])).toHaveLength(MAX_RANGES);
    const huge = await get(blobUrl(digest), { 'x-filler': 'a'.repeat(100 * 1024) }).catch(
      (err: { code?: string }) => ({ status: err.code }),
    );
    expect(huge.status === 431 || huge.status === 'UND_ERR_SOCKET').toBe(true);
  });
});

describe('a client that leaves in the middle of a multipart body', () => {
  it('closes the blob file (no descriptor held, the blob evictable again)', async () => {
    const size = 12 * 1024 * 1024;
    const blob = randomBytes(size);
    const digest = upstream.addBlob(blob);
    await get(blobUrl(digest));
    await mirror.mirror.blobs.inflight(parseDigest(digest))?.finished;
    const res = await request(blobUrl(digest), { headers: { range: `bytes=0-${size - 2},${size - 1}-` } });
    expect(res.statusCode).toBe(206);
    const hex = parseDigest(digest).hex;
    expect(mirror.mirror.blobs.store.inUse(hex)).toBe(true);
    for await (const _ of res.body) break; // one chunk, then the client goes away
    // The server learns of the closed socket asynchronously: then the file must be closed.
    await waitFor(() => !mirror.mirror.blobs.store.inUse(hex), 'the blob file to be closed');
  });
});

/** Resolves once the mirror's running fill of `digest` holds at least `bytes` bytes. */
async function fillHolds(digest: string, bytes: number): Promise<void> {
  const fill = mirror.mirror.blobs.inflight(parseDigest(digest));
  if (!fill) throw new Error('no fill running');
  while (fill.written < bytes && fill.state !== 'failed') await fill.changed();
}

describe('several ranges of a blob still downloading', () => {
  // The first 1500 of 2000 bytes come at once, the rest is held: the ranges asked are on disk long
  // before the digest can be checked; a lying upstream flips the byte in the middle (1000).
  const SIZE = 2000;
  const SENT = 1500;

  async function rangesDuringFill(corrupt: boolean, range: string) {
    const blob = randomBytes(SIZE);
    const digest = upstream.addBlob(blob);
    const held = gate();
    upstream.fault = (r) =>
      r.path.includes('/blobs/') ? { kind: 'gate', after: SENT, open: held.opened, corrupt } : undefined;
    const res = await request(blobUrl(digest), { headers: { range } });
    // Everything received, and whether the body reached its Content-Length.
    const chunks: Buffer[] = [];
    const body = (async () => {
      try {
        for await (const chunk of res.body) chunks.push(chunk as Buffer);
        return true;
      } catch {
        return false;
      }
    })();
    await fillHolds(digest, SENT);
    // Nothing that could end a part is out before the blob was verified: no close delimiter yet.
    // What may go out is the first part's head and its bytes short of the last: wait for exactly
    // that, then look at what arrived.
    const [first, last] = (/^bytes=(\d+)-(\d+)/.exec(range) ?? []).slice(1).map(Number);
    await waitFor(() => {
      const text = Buffer.concat(chunks).toString('latin1');
      const head = text.indexOf('\r\n\r\n');
      return head >= 0 && text.length >= head + 4 + (last as number) - (first as number);
    }, "the first part's head and bytes");
    const early = Buffer.concat(chunks).toString('latin1');
    held.open();
    const complete = await body;
    return { blob, res, early, complete, received: Buffer.concat(chunks) };
  }

  it('serves every part once the blob is verified, byte for byte', async () => {
    const { blob, res, early, complete, received } = await rangesDuringFill(
      false,
      'bytes=1200-1299,0-99,950-1049',
    );
    expect(complete).toBe(true);
    expect(res.headers['x-cache']).toBe('MISS');
    // Before verification: the first part's head and bytes short of its last, nothing after it.
    const boundary = String(res.headers['content-type']).split('boundary=')[1];
    expect(early.split(`--${boundary}`)).toHaveLength(2);
    expect(early.length).toBeLessThan(received.indexOf(`\r\n--${boundary}`, 0, 'latin1'));
    expectParts({ status: res.statusCode, headers: res.headers, body: received }, blob, [
      [1200, 1299],
      [0, 99],
      [950, 1049],
    ]);
    expect(upstream.count('GET', /\/blobs\//)).toBe(1);
  });

  it.each([
    ['parts that hold the corrupt byte', 'bytes=900-1099,0-99'],
    ['parts that all lie before the corrupt byte', 'bytes=0-99,200-299'],
  ])(
    'never completes a multipart body of a blob that turns out corrupt (%s): the connection is cut',
    async (_what, range) => {
      const { res, complete, received } = await rangesDuringFill(true, range);
      expect(res.statusCode).toBe(206);
      expect(complete).toBe(false);
      expect(received.length).toBeLessThan(Number(res.headers['content-length']));
      expect(() => parseByteranges(received, res.headers['content-type'])).toThrow();
      expect(received.toString('latin1')).not.toMatch(/--\r\n$/);
      expect(mirror.mirror.blobs.digestMismatches).toBe(1);
    },
  );
});
