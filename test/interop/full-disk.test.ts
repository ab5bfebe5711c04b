import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { requireProgram } from '../fixtures/require-program.js';
import { type FakeRegistry, startFakeRegistry } from '../integration/fake-registry.js';
import { addImage, imageManifest, mirrorFor, OCI_MANIFEST } from '../integration/harness.js';

/**
 * A real full disk: the data directory on a 24 MiB tmpfs, `--min-free-space 0` so the mirror
 * writes until the kernel says ENOSPC. What a client then gets must name the disk (503), never
 * `500 UNKNOWN`; what is cached keeps serving; nothing half-written stays behind. (The upstream
 * here is the in-process fake: it only has to exist; the fault under test is the disk.)
 */
const MiB = 1024 * 1024;
const mount = requireProgram('mount');
const root = process.getuid?.() === 0;
if (process.env.CI === 'true' && !root)
  throw new Error('full-disk.test.ts mounts a tmpfs: run as root in CI');

describe.skipIf(!mount || !root)('a real full disk (tmpfs)', () => {
  let dir: string;
  let data: string;
  let hub: FakeRegistry;
  let mirror: RunningMirror;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'hubcache-disk-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', dir]);
    data = path.join(dir, 'data');
    mkdirSync(data);
    hub = await startFakeRegistry();
    mirror = await mirrorFor(hub, data, ['--min-free-space', '0']);
  });

  afterAll(async () => {
    await mirror?.close();
    await hub?.close();
    execFileSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  });

  const body = async (res: Awaited<ReturnType<typeof request>>) => Buffer.from(await res.body.arrayBuffer());
  const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

  it('a full disk answers 503 naming the disk (never 500); cached pulls and readiness carry on', async () => {
    const img = addImage(hub, 'library/alpine', '1', 256 * 1024);
    const blobUrl = `${mirror.url}/v2/alpine/blobs/${img.layerDigest}`;
    expect((await request(blobUrl)).statusCode).toBe(200);

    // Blobs of an image pushed while there is room; its manifest comes once the disk is full.
    const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}');
    const layer = randomBytes(64 * 1024);
    for (const blob of [config, layer]) {
      const res = await request(`${mirror.url}/v2/team/app/blobs/uploads/?digest=${sha(blob)}`, {
        method: 'POST',
        body: blob,
      });
      await res.body.dump();
      expect(res.statusCode).toBe(201);
    }

    // A push bigger than what is left: refused before a byte is stored.
    const big = randomBytes(32 * MiB);
    const monolithic = await request(`${mirror.url}/v2/team/big/blobs/uploads/?digest=${sha(big)}`, {
      method: 'POST',
      body: big,
    });
    expect(monolithic.statusCode).toBe(503);
    expect((await body(monolithic)).toString()).toMatch(/disk/);

    // Fill the disk to the last few KiB, as other data on a shared volume would.
    const filler = path.join(dir, 'filler');
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k', 'count=1000'], { stdio: 'ignore' });
    } catch {
      // dd stops with ENOSPC: that is the point
    }
    const manifest = imageManifest(config, [layer], { annotations: { padding: 'x'.repeat(512 * 1024) } });

    const put = await request(`${mirror.url}/v2/team/app/manifests/1`, {
      method: 'PUT',
      body: manifest,
      headers: { 'content-type': OCI_MANIFEST },
    });
    const text = (await body(put)).toString();
    expect(put.statusCode, text).toBe(503);
    expect(text).toMatch(/data disk is full/);

    // A chunked PATCH (no Content-Length) is cut with 503 too.
    const start = await request(`${mirror.url}/v2/team/big/blobs/uploads/`, { method: 'POST' });
    const startText = (await body(start)).toString();
    if (start.statusCode === 202) {
      const chunks = Readable.from(Array.from({ length: 8 }, () => randomBytes(MiB)));
      const patch = await request(`${mirror.url}${String(start.headers.location)}`, {
        method: 'PATCH',
        body: chunks,
      }).catch((err: Error) => err);
      if (!(patch instanceof Error)) {
        expect(patch.statusCode, (await body(patch)).toString()).toBe(503);
      }
    } else {
      expect(start.statusCode, startText).toBe(503);
    }
    // The session may stay (the client can retry its chunk), but none of the refused bytes.
    const uploads = path.join(data, 'uploads');
    expect(readdirSync(uploads).map((f) => statSync(path.join(uploads, f)).size)).toEqual(
      readdirSync(uploads).map(() => 0),
    );

    // What is cached still serves, whole; the mirror stays ready (it can serve its cache).
    const again = await request(blobUrl);
    expect(again.statusCode).toBe(200);
    expect((await body(again)).equals(img.layer)).toBe(true);
    const cached = await request(`${mirror.url}/v2/alpine/manifests/1`, {
      headers: { accept: OCI_MANIFEST },
    });
    expect(cached.statusCode).toBe(200);
    await cached.body.dump();
    expect((await request(`${mirror.url}/readyz`)).statusCode).toBe(200);
    rmSync(filler);
  });
});
