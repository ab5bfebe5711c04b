import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configWith } from '../../src/config.js';
import { startMirror } from '../../src/listen.js';
import { inspectRaw, pullImage } from '../fixtures/skopeo-cli.js';
import { bedPrograms, PUSHER, startTestBed, type TestBed } from '../fixtures/test-bed.js';

/**
 * The mirror in front of the REAL reference registry (Debian's docker-registry 2.8) with Docker-Hub
 * style token auth, images built here and pushed with skopeo, pulled through the mirror by skopeo.
 * A counting front between mirror and registry says what reached the upstream.
 */
describe.skipIf(!bedPrograms())('pull-through against the reference registry', () => {
  let bed: TestBed;
  const mirrorHost = () => new URL(bed.mirror.url).host;
  const registryHost = () => new URL(bed.registry.url).host;

  beforeAll(async () => {
    bed = await startTestBed();
  }, 600_000);

  afterAll(async () => {
    await bed?.stop();
  });

  /** Pulls through the mirror into a fresh dir and checks every file against its digest name. */
  async function pullThroughMirror(ref: string, all = false): Promise<string> {
    const out = path.join(bed.work, 'pulls', `${ref.replace(/[/:@]/g, '_')}-${Date.now()}`);
    mkdirSync(path.dirname(out), { recursive: true });
    await pullImage(`${mirrorHost()}/${ref}`, out, { env: bed.env, all });
    for (const file of readdirSync(out)) {
      if (!/^[a-f0-9]{64}$/.test(file)) continue;
      const hex = createHash('sha256')
        .update(readFileSync(path.join(out, file)))
        .digest('hex');
      expect(hex, `${ref}: ${file}`).toBe(file);
    }
    return out;
  }

  it('pulls a Docker-format image, a multi-arch index and a big image with the upstream digests', async () => {
    for (const [ref, all] of [
      ['library/small:1', false],
      ['library/multi:1', true],
      ['library/big:1', false],
    ] as const) {
      const upstreamManifest = await inspectRaw(`${registryHost()}/${ref}`, { env: bed.env, creds: PUSHER });
      const viaMirror = await inspectRaw(`${mirrorHost()}/${ref}`, { env: bed.env });
      expect(viaMirror, ref).toBe(upstreamManifest);
      await pullThroughMirror(ref, all);
    }
    // The mirror went through the registry's token flow, anonymously (no credentials configured).
    expect(bed.tokens.requests).toContainEqual({
      scopes: ['repository:library/small:pull'],
      user: undefined,
    });
    expect(bed.refusing.attempts).toEqual([]);
  });

  it('uses configured upstream credentials for its token requests', async () => {
    const withCreds = await startMirror(
      configWith({
        upstream: bed.front.url,
        dataDir: path.join(bed.work, 'cache-creds'),
        listen: '127.0.0.1:0',
        extraArgs: ['--upstream-username', 'pusher', '--upstream-password', 's3cret'],
      }),
    );
    try {
      const res = await request(`${withCreds.url}/v2/library/small/manifests/1`, {
        headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' },
      });
      await res.body.arrayBuffer();
      expect(res.statusCode).toBe(200);
      expect(bed.tokens.requests.at(-1)).toEqual({
        scopes: ['repository:library/small:pull'],
        user: 'pusher',
      });
    } finally {
      await withCreds.close();
    }
  });

  it('serves a second pull with zero upstream blob requests', async () => {
    await pullThroughMirror('library/small:1');
    await pullThroughMirror('library/big:1');
    const blobsBefore = bed.front.count('GET', /\/blobs\//);
    // The registry's own access log agrees with the counting front.
    const registryBlobsBefore = bed.registry.count('GET', /\/blobs\//);
    expect(registryBlobsBefore).toBeGreaterThan(0);
    const manifestsBefore = bed.front.count('GET', /\/manifests\//);
    await pullThroughMirror('library/small:1');
    await pullThroughMirror('library/big:1');
    expect(bed.front.count('GET', /\/blobs\//)).toBe(blobsBefore);
    expect(bed.front.count('GET', /\/manifests\//)).toBe(manifestsBefore);
    expect(bed.registry.count('GET', /\/blobs\//)).toBe(registryBlobsBefore);
  });

  it('expands short names: small and library/small are one cache entry', async () => {
    const before = bed.front.requests.length;
    await pullThroughMirror('small:1');
    expect(bed.front.requests.length).toBe(before);
    const catalog = await request(`${bed.mirror.url}/v2/_catalog`).then((r) => r.body.json());
    expect(catalog).toMatchObject({
      repositories: expect.arrayContaining(['library/small', 'library/big', 'library/multi']),
    });
  });

  it('fetches a cold big blob once for 20 concurrent clients, each getting the right bytes', async () => {
    // A fresh cache, so the big layer is cold.
    await bed.restartMirror({ fresh: true });
    const before = bed.front.count('GET', new RegExp(`/blobs/${bed.images.bigLayer}`));
    const segmentsBefore = bed.front.count('GET', new RegExp(`/blobs/${bed.images.bigLayer}`), 206);
    // A per-connection limit, as over the internet (64 MiB/s): the first 4 MiB cannot come within
    // the 40 ms that keep a fill in one stream (cache/ranged-fill.ts keepsUp), so it uses segments.
    bed.front.throttle = { match: (p) => p.includes(bed.images.bigLayer), bytesPerSecond: 64 * 1024 * 1024 };
    const digests = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const res = await request(`${bed.mirror.url}/v2/library/big/blobs/${bed.images.bigLayer}`);
        const hash = createHash('sha256');
        for await (const chunk of res.body) hash.update(chunk as Buffer);
        return { status: res.statusCode, digest: `sha256:${hash.digest('hex')}` };
      }),
    ).finally(() => {
      bed.front.throttle = undefined;
    });
    expect(digests.every((d) => d.status === 200 && d.digest === bed.images.bigLayer)).toBe(true);
    expect(bed.front.count('GET', new RegExp(`/blobs/${bed.images.bigLayer}`)) - before).toBe(1);
    // A big layer (the bed's is 256 MiB unless HUBCACHE_TEST_BIG_MIB says less) comes in ranged
    // segments: the real registry honours Range; the 200 above is the first GET.
    const segments =
      bed.front.count('GET', new RegExp(`/blobs/${bed.images.bigLayer}`), 206) - segmentsBefore;
    if (Number(process.env.HUBCACHE_TEST_BIG_MIB ?? 256) >= 8) expect(segments).toBeGreaterThan(0);
  });

  it('never caches corrupted upstream bytes, and refetches once the upstream is healthy', async () => {
    await bed.restartMirror({ fresh: true });
    bed.front.corrupt = (p) => p.includes(bed.images.bigLayer);
    await expect(pullThroughMirror('library/big:1')).rejects.toThrow();
    const stored = path.join(
      bed.dataDir,
      'blobs',
      'sha256',
      bed.images.bigLayer.slice(7, 9),
      bed.images.bigLayer.slice(7),
    );
    expect(existsSync(stored)).toBe(false);
    bed.front.corrupt = undefined;
    const before = bed.front.count('GET', new RegExp(`/blobs/${bed.images.bigLayer}`));
    await pullThroughMirror('library/big:1');
    expect(bed.front.count('GET', new RegExp(`/blobs/${bed.images.bigLayer}`)) - before).toBe(1);
    expect(existsSync(stored)).toBe(true);
  });

  it('keeps pulling cached images with the upstream killed, also after a mirror restart', async () => {
    await pullThroughMirror('library/small:1');
    await pullThroughMirror('library/multi:1', true);
    await bed.registry.stop();
    await pullThroughMirror('library/small:1');
    await pullThroughMirror('library/big:1');
    await bed.restartMirror({ extraArgs: ['--tag-ttl', '0'] });
    await pullThroughMirror('library/small:1');
    await pullThroughMirror('library/multi:1', true);
    await pullThroughMirror('library/big:1');
    expect(bed.refusing.attempts).toEqual([]);
  });
});
