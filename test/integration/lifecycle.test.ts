import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import pino from 'pino';
import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import type { Logger } from '../../src/observe/logger.js';
import { parseDigest } from '../../src/oci/digest.js';
import { metricSample } from '../fixtures/request-counts.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, gate, get, mirrorFor, tempDataDir } from './harness.js';

const MiB = 1024 * 1024;
let upstream: FakeRegistry;
let mirror: RunningMirror;
let data: Awaited<ReturnType<typeof tempDataDir>>;

const blobFile = (digest: string) =>
  path.join(data.dir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));

beforeEach(async () => {
  upstream = await startFakeRegistry();
  data = await tempDataDir();
});

afterEach(async () => {
  await mirror?.close();
  await upstream.close();
  await data.remove();
});

describe('size bound', () => {
  it('--eviction lru evicts least recently used blobs down to the bound, and refetches an evicted one correctly', async () => {
    mirror = await mirrorFor(upstream, data.dir, ['--max-size', '5MiB', '--eviction', 'lru']);
    await mirror.mirror.started;
    const a = addImage(upstream, 'library/a', '1', 2 * MiB);
    const b = addImage(upstream, 'library/b', '1', 2 * MiB);
    const c = addImage(upstream, 'library/c', '1', 2 * MiB);
    // Each fill is committed (renamed into place) just after its client got the last byte.
    const pull = async (name: string, digest: string) => {
      await get(`${mirror.url}/v2/${name}/blobs/${digest}`);
      await expect.poll(() => existsSync(blobFile(digest))).toBe(true);
    };
    await pull('a', a.layerDigest);
    await pull('b', b.layerDigest);
    await get(`${mirror.url}/v2/a/blobs/${a.layerDigest}`); // a is now more recent than b
    await pull('c', c.layerDigest); // 6 MiB > 5 MiB: b goes
    await expect.poll(() => existsSync(blobFile(b.layerDigest))).toBe(false);
    expect(existsSync(blobFile(a.layerDigest))).toBe(true);
    expect(existsSync(blobFile(c.layerDigest))).toBe(true);
    // The store forgets a blob's size only once its file is gone, so the count may trail the poll above.
    await expect.poll(() => mirror.mirror.blobs.store.usage.totalBytes).toBeLessThanOrEqual(5 * MiB);
    const again = await get(`${mirror.url}/v2/b/blobs/${b.layerDigest}`);
    expect(again.headers['x-cache']).toBe('MISS');
    expect(again.body.equals(b.layer)).toBe(true);
  });

  it('by default keeps a blob pulled many times while blobs pulled once go, though it is the least recent', async () => {
    mirror = await mirrorFor(upstream, data.dir, ['--max-size', '8MiB']);
    await mirror.mirror.started;
    const pull = async (name: string, digest: string) => {
      await get(`${mirror.url}/v2/${name}/blobs/${digest}`);
      await expect.poll(() => existsSync(blobFile(digest))).toBe(true);
    };
    const hot = addImage(upstream, 'library/hot', '1', 1 * MiB);
    await pull('hot', hot.layerDigest);
    for (let i = 0; i < 4; i++) await get(`${mirror.url}/v2/hot/blobs/${hot.layerDigest}`);
    // A burst of big blobs pulled once each: 12 MiB through an 8 MiB cache, hot never asked meanwhile.
    const once = ['a', 'b', 'c', 'd'].map((n) => addImage(upstream, `library/${n}`, '1', 3 * MiB));
    for (const [i, image] of once.entries()) await pull('abcd'.charAt(i), image.layerDigest);
    await expect.poll(() => mirror.mirror.blobs.store.usage.totalBytes).toBeLessThanOrEqual(8 * MiB);
    expect(existsSync(blobFile(hot.layerDigest))).toBe(true);
    expect(once.filter((image) => !existsSync(blobFile(image.layerDigest))).length).toBeGreaterThan(0);
    const again = await get(`${mirror.url}/v2/hot/blobs/${hot.layerDigest}`);
    expect(again.headers['x-cache']).toBe('HIT');
  });

  describe('by default, what every client fetched goes first (nodes keep what they pulled)', () => {
    const KiB = 1024;
    const nodes = ['127.0.0.2', '127.0.0.3', '127.0.0.4'].map((localAddress) => new Agent({ localAddress }));
    afterAll(() => Promise.all(nodes.map((n) => n.close())));
    /** `node` GETs a blob whole; resolves once the store holds it. */
    const fetchFrom = async (node: number, name: string, digest: string) => {
      const res = await request(`${mirror.url}/v2/${name}/blobs/${digest}`, {
        dispatcher: nodes[node] as Agent,
      });
      expect(res.statusCode).toBe(200);
      await res.body.arrayBuffer();
      await expect.poll(() => existsSync(blobFile(digest))).toBe(true);
    };
    /**
     * A 48 KiB base every node fetches (its 2nd and 3rd fetches hits, the 3rd answered by the hit
     * lane), two 40 KiB apps one node each, then a third app past the 150 KiB bound: one blob goes.
     */
    const fill = async (baseFetchers: number[], log?: Logger) => {
      mirror = await mirrorFor(upstream, data.dir, ['--max-size', '150KiB'], log);
      const lane = () => metricSample(mirror.url, 'hubcache_hit_lane_answers_total');
      const base = addImage(upstream, 'library/base', '1', 48 * KiB);
      const apps = ['a', 'b', 'c'].map((n) => addImage(upstream, `library/${n}`, '1', 40 * KiB));
      for (const node of baseFetchers) await fetchFrom(node, 'base', base.layerDigest);
      expect(await lane()).toBeGreaterThan(0);
      await fetchFrom(0, 'a', (apps[0] as (typeof apps)[number]).layerDigest);
      await fetchFrom(1, 'b', (apps[1] as (typeof apps)[number]).layerDigest);
      await fetchFrom(2, 'c', (apps[2] as (typeof apps)[number]).layerDigest);
      await expect.poll(() => mirror.mirror.blobs.store.usage.totalBytes).toBeLessThanOrEqual(150 * KiB);
      return { base, apps };
    };

    it('evicts the base all three nodes fetched, though used most, and keeps the apps', async () => {
      const { base, apps } = await fill([0, 1, 2]);
      expect(existsSync(blobFile(base.layerDigest))).toBe(false);
      for (const app of apps) expect(existsSync(blobFile(app.layerDigest))).toBe(true);
    });

    it('stops once an address fetches a blob twice (nodes behind one NAT): plain GDSF keeps the base', async () => {
      const lines: { msg?: string; why?: string }[] = [];
      const sink = new Writable({
        write(chunk, _encoding, done) {
          for (const text of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(text));
          done();
        },
      });
      const { base, apps } = await fill([0, 1, 2, 0], pino({ level: 'info' }, sink));
      expect(existsSync(blobFile(base.layerDigest))).toBe(true);
      expect(existsSync(blobFile((apps[0] as (typeof apps)[number]).layerDigest))).toBe(false);
      // The operator is told why, once.
      const stops = lines.filter((l) => l.msg === 'eviction stops putting first what every client fetched');
      expect(stops.map((l) => l.why)).toEqual(['refetch']);
    });
  });

  it('refetches a manifest whose bytes were evicted, by tag and by digest', async () => {
    mirror = await mirrorFor(upstream, data.dir, ['--max-size', '3MiB']);
    const a = addImage(upstream, 'library/a', '1', 1024);
    await get(`${mirror.url}/v2/a/manifests/1`);
    const big = addImage(upstream, 'library/big', '1', 3 * MiB);
    await get(`${mirror.url}/v2/big/blobs/${big.layerDigest}`);
    await expect.poll(() => existsSync(blobFile(a.manifestDigest))).toBe(false);
    const byTag = await get(`${mirror.url}/v2/a/manifests/1`);
    expect(byTag.status).toBe(200);
    expect(byTag.headers['docker-content-digest']).toBe(a.manifestDigest);
    const byDigest = await get(`${mirror.url}/v2/a/manifests/${a.manifestDigest}`);
    expect(byDigest.body.equals(a.manifestBytes)).toBe(true);
  });

  it('never evicts a blob that is open for a client, and evicts it once it is closed', async () => {
    mirror = await mirrorFor(upstream, data.dir, ['--max-size', '7MiB']);
    const store = mirror.mirror.blobs.store;
    const pull = async (name: string, digest: string) => {
      await get(`${mirror.url}/v2/${name}/blobs/${digest}`);
      await expect.poll(() => existsSync(blobFile(digest))).toBe(true);
    };
    const a = addImage(upstream, 'library/a', '1', 3 * MiB);
    const x = addImage(upstream, 'library/x', '1', 3 * MiB);
    await pull('a', a.layerDigest);
    await pull('x', x.layerDigest);
    const serving = await store.open(parseDigest(a.layerDigest)); // what the hit path holds while it sends
    const b = addImage(upstream, 'library/b', '1', 3 * MiB);
    await pull('b', b.layerDigest); // 9 MiB > 7: a is the coldest, but open; x goes instead
    await expect.poll(() => existsSync(blobFile(x.layerDigest))).toBe(false);
    expect(existsSync(blobFile(a.layerDigest))).toBe(true);
    await serving?.handle.close();
    const c = addImage(upstream, 'library/c', '1', 3 * MiB);
    await pull('c', c.layerDigest); // the next store re-checks the bound: now a can go
    await expect.poll(() => existsSync(blobFile(a.layerDigest))).toBe(false);
    expect(existsSync(blobFile(b.layerDigest))).toBe(true);
  });

  it('serves a whole, correct body to a slow client even when its blob is evicted meanwhile', async () => {
    mirror = await mirrorFor(upstream, data.dir, ['--max-size', '20MiB']);
    const a = addImage(upstream, 'library/a', '1', 16 * MiB);
    await get(`${mirror.url}/v2/a/blobs/${a.layerDigest}`);
    const slow = await request(`${mirror.url}/v2/a/blobs/${a.layerDigest}`);
    const b = addImage(upstream, 'library/b', '1', 8 * MiB);
    await get(`${mirror.url}/v2/b/blobs/${b.layerDigest}`);
    const body = Buffer.from(await slow.body.arrayBuffer());
    expect(body.equals(a.layer)).toBe(true);
  });
});

describe('crash leftovers', () => {
  it('removes stale temp files at start-up and keeps recent ones', async () => {
    const tmp = path.join(data.dir, 'tmp');
    mkdirSync(tmp, { recursive: true });
    writeFileSync(path.join(tmp, 'old.partial'), 'x'.repeat(1000));
    const hourAgo = Date.now() / 1000 - 3600;
    utimesSync(path.join(tmp, 'old.partial'), hourAgo, hourAgo);
    writeFileSync(path.join(tmp, 'fresh.partial'), 'y');
    mirror = await mirrorFor(upstream, data.dir, ['--idle-timeout', '1']);
    await mirror.mirror.started;
    expect(existsSync(path.join(tmp, 'old.partial'))).toBe(false);
    expect(existsSync(path.join(tmp, 'fresh.partial'))).toBe(true);
  });

  it('`hubcache gc` removes stale temps and markers of manifests no longer stored', async () => {
    mirror = await mirrorFor(upstream, data.dir);
    const a = addImage(upstream, 'library/a', '1');
    await get(`${mirror.url}/v2/a/manifests/${a.manifestDigest}`);
    await mirror.close();
    const marker = path.join(
      data.dir,
      'repositories',
      'library',
      'a',
      '_manifests',
      a.manifestDigest.slice(7),
    );
    expect(existsSync(marker)).toBe(true);
    await import('node:fs/promises').then((fs) => fs.rm(blobFile(a.manifestDigest)));
    writeFileSync(path.join(data.dir, 'tmp', 'left.partial'), 'z');
    const { stdout } = await promisify(execFile)('npx', [
      'tsx',
      'src/main.ts',
      'gc',
      '--data',
      data.dir,
      '--temp-age',
      '0',
    ]);
    expect(JSON.parse(stdout)).toMatchObject({ tempFiles: 1, orphanMarkers: 1 });
    expect(existsSync(marker)).toBe(false);
    mirror = await mirrorFor(upstream, data.dir);
    expect(JSON.parse((await get(`${mirror.url}/v2/_catalog`)).body.toString())).toEqual({
      repositories: [],
    });
  });
});

describe('disk full', () => {
  it('passes misses through uncached (still verified) when free disk is below --min-free-space', async () => {
    mirror = await mirrorFor(upstream, data.dir, ['--min-free-space', '1000TiB']);
    const a = addImage(upstream, 'library/a', '1', 3 * MiB);
    const res = await get(`${mirror.url}/v2/a/blobs/${a.layerDigest}`);
    expect(res.status).toBe(200);
    expect(res.body.equals(a.layer)).toBe(true);
    expect(existsSync(blobFile(a.layerDigest))).toBe(false);
    upstream.fault = (r) => (r.path.includes('/blobs/') ? { kind: 'corrupt' } : undefined);
    const bad = await request(`${mirror.url}/v2/a/blobs/${a.layerDigest}`)
      .then(async (r) => (await r.body.arrayBuffer()).byteLength === a.layer.length)
      .catch(() => false);
    expect(bad).toBe(false);
  });

  it('on ENOSPC mid-download leaves nothing half-written, then passes through', async () => {
    const mountPoint = path.join(data.dir, 'small-disk');
    mkdirSync(mountPoint);
    try {
      await promisify(execFile)('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mountPoint]);
    } catch (err) {
      if (process.env.CI === 'true') throw err;
      return; // needs root and mount(2): checked in CI
    }
    try {
      mirror = await mirrorFor(upstream, mountPoint, ['--min-free-space', '0']);
      const a = addImage(upstream, 'library/a', '1', 1536 * 1024);
      // The disk fills up (another writer) while the download is under way.
      const { open, opened } = gate();
      upstream.fault = (r) =>
        r.path.includes('/blobs/') ? { kind: 'gate', after: 256 * 1024, open: opened } : undefined;
      const pending = request(`${mirror.url}/v2/a/blobs/${a.layerDigest}`)
        .then(async (r) => r.statusCode === 200 && (await r.body.arrayBuffer()).byteLength === a.layer.length)
        .catch(() => false);
      await expect.poll(() => readdirSync(path.join(mountPoint, 'tmp')).length).toBe(1);
      writeFileSync(path.join(mountPoint, 'junk'), Buffer.alloc(1536 * 1024));
      open();
      expect(await pending).toBe(false);
      await expect.poll(() => readdirSync(path.join(mountPoint, 'tmp'))).toEqual([]);
      expect(
        existsSync(
          path.join(mountPoint, 'blobs', 'sha256', a.layerDigest.slice(7, 9), a.layerDigest.slice(7)),
        ),
      ).toBe(false);
      // Still full: the next pull is served from upstream without caching.
      upstream.fault = undefined;
      const res = await get(`${mirror.url}/v2/a/blobs/${a.layerDigest}`);
      expect(res.body.equals(a.layer)).toBe(true);
    } finally {
      await mirror?.close();
      await promisify(execFile)('umount', [mountPoint]);
    }
  });
});
