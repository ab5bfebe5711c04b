import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, statfs } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { configWith } from '../../src/config.js';
import { type RunningMirror, startMirror } from '../../src/listen.js';
import { parseDigest } from '../../src/oci/digest.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, gate, get, mirrorFor, tempDataDir } from './harness.js';

/**
 * A full disk, simulated: while `full` is set, writes under `under` fail with ENOSPC and statfs
 * reports nothing free, as a real full file system does. While `frozen` is set, statfs under `under`
 * reports the free space of that moment less what the files under `under` grew by since: the real
 * disk's free space moves with every other test process writing or deleting files beside this one.
 * Everything else is the real node:fs.
 */
const disk = vi.hoisted(() => ({
  full: false,
  under: '/nonexistent',
  frozen: undefined as { bavail: number; bsize: number; bytes: number } | undefined,
}));
/** Bytes in the files under `dir` (node:fs's sync calls: not mocked here). */
const bytesUnder = vi.hoisted(() => (dir: string): number => {
  const { readdirSync, statSync } = require('node:fs') as typeof import('node:fs');
  let sum = 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    try {
      sum += statSync(`${entry.parentPath}/${entry.name}`).size;
    } catch {
      // removed meanwhile
    }
  }
  return sum;
});
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  const isFull = (p: unknown) => disk.full && String(p).startsWith(disk.under);
  const enospc = (p: unknown) =>
    Object.assign(new Error(`ENOSPC: no space left on device, open '${String(p)}'`), {
      code: 'ENOSPC',
      errno: -28,
    });
  const writes = (flags: unknown) =>
    typeof flags === 'string' ? /[wa+]/.test(flags) : typeof flags === 'number' && (flags & 3) !== 0;
  const mocked = {
    ...fs,
    writeFile: ((p, ...rest) =>
      isFull(p) ? Promise.reject(enospc(p)) : fs.writeFile(p, ...rest)) as typeof fs.writeFile,
    open: ((p, flags, mode) =>
      isFull(p) && writes(flags) ? Promise.reject(enospc(p)) : fs.open(p, flags, mode)) as typeof fs.open,
    mkdir: ((p, options) =>
      isFull(p) && !existsSync(p) ? Promise.reject(enospc(p)) : fs.mkdir(p, options)) as typeof fs.mkdir,
    statfs: (async (p, options) => {
      const s = await fs.statfs(p, options);
      if (isFull(p)) return { ...s, bavail: 0, bfree: 0 };
      const frozen = disk.frozen;
      if (frozen && String(p).startsWith(disk.under)) {
        const grown = bytesUnder(disk.under) - frozen.bytes;
        return { ...s, bavail: frozen.bavail - Math.ceil(grown / frozen.bsize) };
      }
      return s;
    }) as typeof fs.statfs,
  };
  return { ...mocked, default: mocked };
});

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
  disk.full = false;
  disk.frozen = undefined;
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

/** A hand-written upstream on 127.0.0.1 for attacks the fake registry does not model. */
async function hostileServer(handle: (req: IncomingMessage, res: ServerResponse, base: string) => void) {
  const seen: { path: string; authorization: string | undefined }[] = [];
  const server = createServer((req, res) => {
    seen.push({ path: req.url ?? '', authorization: req.headers.authorization });
    handle(req, res, url);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const MiB = 1024 * 1024;

/**
 * Writes `prefix`, then `chunk` up to `count` times as fast as the reader takes it, then `suffix`;
 * stops when the reader goes away. Resolves with the bytes written. One chunk is reused: the
 * attacker's side costs this process no memory.
 */
async function flood(res: ServerResponse, prefix: string, count: number, suffix: string): Promise<number> {
  const chunk = Buffer.alloc(MiB, 'x');
  res.write(prefix);
  let sent = prefix.length;
  for (let i = 0; i < count && !res.destroyed; i++) {
    sent += chunk.length;
    if (!res.write(chunk)) {
      await new Promise<void>((resolve) => {
        res.once('drain', resolve);
        res.once('close', resolve);
      });
    }
  }
  if (!res.destroyed) res.end(suffix);
  return sent;
}

function rss(): number {
  return process.memoryUsage().rss;
}

describe('upstream bodies the mirror buffers are bounded', () => {
  it('refuses a 50 MiB token response with 503 naming the upstream, without buffering it', async () => {
    let sent: Promise<number> | undefined;
    const evil = await hostileServer((req, res, base) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        sent = flood(res, '{"token":"t","padding":"', 50, '"}');
        return;
      }
      res.writeHead(req.headers.authorization ? 404 : 401, {
        'Content-Type': 'application/json',
        'WWW-Authenticate': `Bearer realm="${base}/token",service="evil"`,
      });
      res.end('{"errors":[]}');
    });
    await mirror.close();
    mirror = await mirrorFor(evil.url, data.dir);
    try {
      const before = rss();
      const res = await request(`${mirror.url}/v2/library/app/manifests/latest`);
      const answer = JSON.parse(await res.body.text());
      const grown = rss() - before;
      expect(res.statusCode).toBe(503);
      expect(answer.errors[0].code).toBe('UNAVAILABLE');
      expect(answer.errors[0].message).toContain(evil.url);
      expect(grown).toBeLessThan(40 * MiB);
      expect(await sent).toBeLessThan(50 * MiB);
    } finally {
      await evil.close();
    }
  });

  it('refuses an endless manifest body with 503, without buffering it', async () => {
    let sent: Promise<number> | undefined;
    const evil = await hostileServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' });
      // Chunked, no Content-Length: "never ends" within the bound of this test (1 GiB).
      sent = flood(res, '{"schemaVersion":2,"padding":"', 1024, '"}');
    });
    await mirror.close();
    mirror = await mirrorFor(evil.url, data.dir);
    try {
      const before = rss();
      const res = await request(`${mirror.url}/v2/library/app/manifests/latest`);
      const answer = JSON.parse(await res.body.text());
      const grown = rss() - before;
      expect(res.statusCode).toBe(503);
      expect(answer.errors[0].message).toContain(evil.url);
      expect(grown).toBeLessThan(40 * MiB);
      expect(await sent).toBeLessThan(64 * MiB);
    } finally {
      await evil.close();
    }
  });
});

describe('a hostile upstream and the disk', () => {
  it('aborts an endless blob body at --min-free-space and keeps nothing of it', async () => {
    const digest = `sha256:${'e'.repeat(64)}`;
    let sent: Promise<number> | undefined;
    // No Content-Length, and (within this test's bound of 256 MiB) no end.
    const evil = await hostileServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      sent = flood(res, '', 256, '');
    });
    // 32 MiB above the floor: the fill may start, and must stop near there. The free space frozen:
    // only this mirror's writes move it (other test files fill and empty the same disk meanwhile).
    const { bavail, bsize } = await statfs(data.dir);
    disk.under = data.dir;
    disk.frozen = { bavail, bsize, bytes: bytesUnder(data.dir) };
    await mirror.close();
    mirror = await mirrorFor(evil.url, data.dir, ['--min-free-space', String(bavail * bsize - 32 * MiB)]);
    try {
      const res = await request(`${mirror.url}/v2/library/app/blobs/${digest}`);
      expect(res.statusCode).toBe(200);
      const outcome = await readAll(res.body).then(
        () => 'complete',
        () => 'cut',
      );
      expect(outcome).toBe('cut');
      // The mirror closed the upstream connection long before the body's (bounded) end...
      expect(await sent).toBeLessThan(128 * MiB);
      // ...and removed what it had written.
      expect(await readdir(mirror.mirror.blobs.store.tmpDir)).toEqual([]);
    } finally {
      await evil.close();
    }
  });

  it('still serves a cached tag past its TTL while the disk is full', async () => {
    await mirror.close();
    mirror = await mirrorFor(upstream, data.dir, ['--tag-ttl', '0']);
    const first = addImage(upstream, 'library/app', 'latest');
    expect((await get(`${mirror.url}/v2/library/app/manifests/latest`)).status).toBe(200);
    disk.under = data.dir;
    disk.full = true;

    const stale = await get(`${mirror.url}/v2/library/app/manifests/latest`);
    expect(stale.status).toBe(200);
    expect(stale.headers['x-cache']).toBe('REVALIDATED');
    expect(stale.body.equals(first.manifestBytes)).toBe(true);
    // The same manifest by digest under another name: a hit, though the index cannot note it.
    const other = await get(`${mirror.url}/v2/library/other/manifests/${first.manifestDigest}`);
    expect(other.status).toBe(200);
    // The tag moved upstream: the new manifest is verified and served, just not cached.
    const moved = addImage(upstream, 'library/app', 'latest');
    const fresh = await get(`${mirror.url}/v2/library/app/manifests/latest`);
    expect(fresh.status).toBe(200);
    expect(fresh.headers['docker-content-digest']).toBe(moved.manifestDigest);
    // Still in the load balancer: a full disk is reported, it does not make the mirror unready.
    const ready = await get(`${mirror.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body.toString()).dataDir).toMatch(/^full/);
  });
});

describe('token realms the upstream names', () => {
  /** An upstream that challenges every request with a Bearer realm of its choosing. */
  function challenging(realm: string) {
    return hostileServer((_req, res) => {
      res.writeHead(401, {
        'Content-Type': 'application/json',
        'WWW-Authenticate': `Bearer realm="${realm}",service="evil"`,
      });
      res.end('{"errors":[{"code":"UNAUTHORIZED","message":"token please"}]}');
    });
  }

  const credentials = ['--upstream-username', 'mirror', '--upstream-password', 's3cret'];

  it('never contacts a realm on another port of the upstream’s host, credentials or not', async () => {
    // Stands for Redis on 127.0.0.1:6379 or a metadata service: what an upstream must not reach.
    const trap = await hostileServer((_req, res) => res.writeHead(200).end('{"token":"t"}'));
    const evil = await challenging(`${trap.url}/token`);
    await mirror.close();
    mirror = await mirrorFor(evil.url, data.dir, credentials);
    try {
      const res = await get(`${mirror.url}/v2/library/app/manifests/latest`);
      expect(trap.seen).toEqual([]);
      expect(res.status).toBe(503);
      const error = JSON.parse(res.body.toString()).errors[0];
      expect(error.code).toBe('UNAVAILABLE');
      expect(error.message).toContain(evil.url);
    } finally {
      await evil.close();
      await trap.close();
    }
  });

  it('contacts a realm host the operator listed, with the credentials', async () => {
    const trap = await hostileServer((_req, res) => res.writeHead(200).end('{"token":"t"}'));
    const evil = await challenging(`${trap.url}/token`);
    await mirror.close();
    const config = configWith({
      upstream: evil.url,
      dataDir: data.dir,
      listen: '127.0.0.1:0',
      extraArgs: [...credentials, '--upstream-realm-host', '127.0.0.1'],
    });
    mirror = await startMirror(config);
    try {
      await get(`${mirror.url}/v2/library/app/manifests/latest`);
      expect(trap.seen[0]?.authorization).toBe(`Basic ${Buffer.from('mirror:s3cret').toString('base64')}`);
    } finally {
      await evil.close();
      await trap.close();
    }
  });
});

describe('an upstream that accepts connections and never answers', () => {
  it('costs one headers timeout; then uncached requests fail fast, cached ones are served, /readyz says so', async () => {
    await mirror.close();
    mirror = await mirrorFor(upstream, data.dir, ['--headers-timeout', '1', '--tag-ttl', '0']);
    const cached = addImage(upstream, 'library/app', 'latest');
    const uncached = addImage(upstream, 'library/app', 'next');
    expect((await get(`${mirror.url}/v2/library/app/manifests/latest`)).status).toBe(200);
    expect((await get(`${mirror.url}/v2/library/app/blobs/${cached.layerDigest}`)).status).toBe(200);
    upstream.fault = () => ({ kind: 'hang' });

    // The first uncached request waits out the (1 s) headers timeout.
    const first = await get(`${mirror.url}/v2/library/app/manifests/next`);
    expect(first.status).toBe(503);
    const connections = upstream.connections;
    const requests = upstream.requests.length;

    // Right after: no new connection, no request, the same answer.
    const again = await get(`${mirror.url}/v2/library/app/manifests/next`);
    const blob = await get(`${mirror.url}/v2/library/app/blobs/${uncached.layerDigest}`);
    for (const res of [again, blob]) {
      expect(res.status).toBe(503);
      const error = JSON.parse(res.body.toString()).errors[0];
      expect(error.code).toBe('UNAVAILABLE');
      expect(error.message).toContain(new URL(upstream.url).origin);
    }
    // Cached content: the tag past its TTL is served stale, the blob from disk.
    const stale = await get(`${mirror.url}/v2/library/app/manifests/latest`);
    expect(stale.status).toBe(200);
    expect(stale.headers['x-cache']).toBe('STALE');
    const layer = await get(`${mirror.url}/v2/library/app/blobs/${cached.layerDigest}`);
    expect(layer.body.equals(cached.layer)).toBe(true);
    expect(upstream.connections).toBe(connections);
    expect(upstream.requests.length).toBe(requests);

    const ready = JSON.parse((await get(`${mirror.url}/readyz`)).body.toString());
    expect(ready.ready).toBe(true);
    expect(ready.upstream).toMatch(/^unreachable, retrying in \d+ s/);
  });
});
