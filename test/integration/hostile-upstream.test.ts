import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { parseDigest } from '../../src/oci/digest.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { gate, mirrorFor, tempDataDir } from './harness.js';

/**
 * Issue 13, "Safe on a network": the upstream may be broken or hostile. It must never exhaust the
 * mirror, steer its requests or credentials, or get bytes served that were not verified.
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

/** Resolves once the mirror's running fill of `digest` holds at least `bytes` bytes. */
async function fillHolds(digest: string, bytes: number): Promise<void> {
  const fill = mirror.mirror.blobs.inflight(parseDigest(digest));
  if (!fill) throw new Error('no fill running');
  while (fill.written < bytes && fill.state !== 'failed') await fill.changed();
}

/** Reads a body to its end; rejects when the connection is cut before Content-Length bytes. */
async function readAll(body: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('a Range asked while the blob is still downloading', () => {
  // The first 1500 of 2000 bytes come at once, the rest is held: the range 0-1023 is on disk long
  // before the digest can be checked, and a lying upstream's flipped byte (the middle, 1000) is in it.
  const SIZE = 2000;
  const SENT = 1500;

  async function rangeDuringFill(corrupt: boolean) {
    const blob = randomBytes(SIZE);
    const digest = upstream.addBlob(blob);
    const held = gate();
    upstream.fault = (r) =>
      r.path.includes('/blobs/') ? { kind: 'gate', after: SENT, open: held.opened, corrupt } : undefined;
    const res = await request(`${mirror.url}/v2/library/app/blobs/${digest}`, {
      headers: { range: 'bytes=0-1023' },
    });
    const body = readAll(res.body).then(
      (bytes) => ({ complete: true as const, bytes }),
      (err: Error) => ({ complete: false as const, err }),
    );
    await fillHolds(digest, SENT);
    held.open();
    return { blob, status: res.statusCode, headers: res.headers, result: await body };
  }

  it('never completes a 206 of a blob that turns out corrupt: the connection is cut', async () => {
    const { status, result } = await rangeDuringFill(true);
    expect(status).toBe(206);
    expect(result.complete).toBe(false);
    expect(mirror.mirror.blobs.digestMismatches).toBe(1);
  });

  it('delivers the range of a correct blob once it is verified', async () => {
    const { blob, status, headers, result } = await rangeDuringFill(false);
    expect(status).toBe(206);
    expect(headers['content-range']).toBe(`bytes 0-1023/${SIZE}`);
    expect(result.complete && result.bytes.equals(blob.subarray(0, 1024))).toBe(true);
  });
});
