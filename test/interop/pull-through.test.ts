import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configWith } from '../../src/config.js';
import { type RunningMirror, startMirror } from '../../src/listen.js';
import { busyboxEntries, ImageLayout } from '../fixtures/image-layout.js';
import {
  type FaultFront,
  type RefusingProxy,
  startFaultFront,
  startRefusingProxy,
} from '../fixtures/proxies.js';
import { requireProgram } from '../fixtures/require-program.js';
import { inspectRaw, pullImage, pushLayout } from '../fixtures/skopeo-cli.js';
import { startTokenIssuer, type TokenIssuer } from '../fixtures/token-issuer.js';
import { type RegistryProcess, startRegistry } from '../fixtures/upstream-process.js';

const registryBin = requireProgram('docker-registry');
const skopeoBin = requireProgram('skopeo');
const busybox = requireProgram('busybox');
const BIG_MIB = Number(process.env.HUBCACHE_TEST_BIG_MIB ?? 256);
const PUSHER = 'pusher:s3cret';

/**
 * The mirror in front of the REAL reference registry (Debian's docker-registry 2.8) with Docker-Hub
 * style token auth, images built here and pushed with skopeo, pulled through the mirror by skopeo.
 * A counting front between mirror and registry says what reached the upstream.
 */
describe.skipIf(!registryBin || !skopeoBin)('pull-through against the reference registry', () => {
  let work: string;
  let tokens: TokenIssuer;
  let registry: RegistryProcess;
  let front: FaultFront;
  let refusing: RefusingProxy;
  let mirror: RunningMirror;
  let dataDir: string;
  let env: NodeJS.ProcessEnv;
  let bigLayer: string;
  const mirrorHost = () => new URL(mirror.url).host;
  const registryHost = () => new URL(registry.url).host;

  const startTheMirror = async (upstream: string, extra: string[] = []) =>
    startMirror(configWith({ upstream, dataDir, listen: '127.0.0.1:0', extraArgs: extra }));

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hubcache-interop-'));
    dataDir = path.join(work, 'cache');
    tokens = await startTokenIssuer({ pusher: 's3cret' });
    registry = await startRegistry({ token: tokens });
    front = await startFaultFront(registry.url);
    refusing = await startRefusingProxy();
    env = refusing.env();

    // Images, built here (no internet): a 2-layer Docker-format image, a multi-arch OCI index, a
    // big incompressible layer.
    const layout = new ImageLayout(path.join(work, 'layout'));
    const base = await layout.layer(
      busybox ? busyboxEntries(busybox) : [{ name: 'etc/base', content: 'base\n' }],
    );
    const os = await layout.layer([{ name: 'etc/os-release', content: 'ID=hubcache-test\n' }]);
    layout.tag('small', layout.image([base, os]).manifest);
    const amd = layout.image([base, os], { os: 'linux', architecture: 'amd64' });
    const armLayer = await layout.layer([{ name: 'etc/arch', content: 'arm64\n' }]);
    const arm = layout.image([armLayer], { os: 'linux', architecture: 'arm64' });
    layout.tag('multi', layout.index([amd, arm]));
    const big = await layout.layer([{ name: 'big.bin', random: BIG_MIB * 1024 * 1024 }]);
    bigLayer = big.digest;
    layout.tag('big', layout.image([big]).manifest);

    const dest = (repo: string) => `${registryHost()}/${repo}`;
    await pushLayout(layout.dir, 'small', dest('library/small:1'), { env, creds: PUSHER, format: 'v2s2' });
    await pushLayout(layout.dir, 'multi', dest('library/multi:1'), { env, creds: PUSHER, all: true });
    await pushLayout(layout.dir, 'big', dest('library/big:1'), { env, creds: PUSHER });

    mirror = await startTheMirror(front.url);
  }, 600_000);

  afterAll(async () => {
    await mirror?.close();
    await front?.close();
    await registry?.stop();
    await tokens?.close();
    await refusing?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Pulls through the mirror into a fresh dir and checks every file against its digest name. */
  async function pullThroughMirror(ref: string, all = false): Promise<string> {
    const out = path.join(work, 'pulls', `${ref.replace(/[/:@]/g, '_')}-${Date.now()}`);
    mkdirSync(path.dirname(out), { recursive: true });
    await pullImage(`${mirrorHost()}/${ref}`, out, { env, all });
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
      const upstreamManifest = await inspectRaw(`${registryHost()}/${ref}`, { env, creds: PUSHER });
      const viaMirror = await inspectRaw(`${mirrorHost()}/${ref}`, { env });
      expect(viaMirror, ref).toBe(upstreamManifest);
      await pullThroughMirror(ref, all);
    }
    // The mirror went through the registry's token flow, anonymously (no credentials configured).
    expect(tokens.requests).toContainEqual({ scopes: ['repository:library/small:pull'], user: undefined });
    expect(refusing.attempts).toEqual([]);
  });

  it('uses configured upstream credentials for its token requests', async () => {
    const withCreds = await startMirror(
      configWith({
        upstream: front.url,
        dataDir: path.join(work, 'cache-creds'),
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
      expect(tokens.requests.at(-1)).toEqual({ scopes: ['repository:library/small:pull'], user: 'pusher' });
    } finally {
      await withCreds.close();
    }
  });

  it('serves a second pull with zero upstream blob requests', async () => {
    await pullThroughMirror('library/small:1');
    await pullThroughMirror('library/big:1');
    const blobsBefore = front.count('GET', /\/blobs\//);
    const manifestsBefore = front.count('GET', /\/manifests\//);
    await pullThroughMirror('library/small:1');
    await pullThroughMirror('library/big:1');
    expect(front.count('GET', /\/blobs\//)).toBe(blobsBefore);
    expect(front.count('GET', /\/manifests\//)).toBe(manifestsBefore);
  });

  it('expands short names: small and library/small are one cache entry', async () => {
    const before = front.requests.length;
    await pullThroughMirror('small:1');
    expect(front.requests.length).toBe(before);
    const catalog = await request(`${mirror.url}/v2/_catalog`).then((r) => r.body.json());
    expect(catalog).toMatchObject({
      repositories: expect.arrayContaining(['library/small', 'library/big', 'library/multi']),
    });
  });

  it('fetches a cold big blob once for 20 concurrent clients, each getting the right bytes', async () => {
    // A fresh cache, so the big layer is cold.
    await mirror.close();
    rmSync(dataDir, { recursive: true, force: true });
    mirror = await startTheMirror(front.url);
    const before = front.count('GET', new RegExp(`/blobs/${bigLayer}`));
    const digests = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const res = await request(`${mirror.url}/v2/library/big/blobs/${bigLayer}`);
        const hash = createHash('sha256');
        for await (const chunk of res.body) hash.update(chunk as Buffer);
        return { status: res.statusCode, digest: `sha256:${hash.digest('hex')}` };
      }),
    );
    expect(digests.every((d) => d.status === 200 && d.digest === bigLayer)).toBe(true);
    expect(front.count('GET', new RegExp(`/blobs/${bigLayer}`)) - before).toBe(1);
  });

  it('never caches corrupted upstream bytes, and refetches once the upstream is healthy', async () => {
    await mirror.close();
    rmSync(dataDir, { recursive: true, force: true });
    mirror = await startTheMirror(front.url);
    front.corrupt = (p) => p.includes(bigLayer);
    await expect(pullThroughMirror('library/big:1')).rejects.toThrow();
    const stored = path.join(dataDir, 'blobs', 'sha256', bigLayer.slice(7, 9), bigLayer.slice(7));
    expect(existsSync(stored)).toBe(false);
    front.corrupt = undefined;
    const before = front.count('GET', new RegExp(`/blobs/${bigLayer}`));
    await pullThroughMirror('library/big:1');
    expect(front.count('GET', new RegExp(`/blobs/${bigLayer}`)) - before).toBe(1);
    expect(existsSync(stored)).toBe(true);
  });

  it('keeps pulling cached images with the upstream killed, also after a mirror restart', async () => {
    await pullThroughMirror('library/small:1');
    await pullThroughMirror('library/multi:1', true);
    await registry.stop();
    await pullThroughMirror('library/small:1');
    await pullThroughMirror('library/big:1');
    await mirror.close();
    mirror = await startTheMirror(front.url, ['--tag-ttl', '0']);
    await pullThroughMirror('library/small:1');
    await pullThroughMirror('library/multi:1', true);
    await pullThroughMirror('library/big:1');
    expect(refusing.attempts).toEqual([]);
  });
});
