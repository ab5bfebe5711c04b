import { mkdir, readdir, readFile } from 'node:fs/promises';
import { request } from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProgramFailed } from '../fixtures/child-process.js';
import { sha256, sha256File } from '../fixtures/digest.js';
import { type FaultProxy, startFaultProxy } from '../fixtures/fault-proxy.js';
import {
  buildBigImage,
  buildMultiArchIndex,
  buildSharedLayerImages,
  buildSmallImage,
  type Descriptor,
  type ImageDescription,
  type IndexDescription,
  type LayerDescription,
  OciLayout,
} from '../fixtures/images.js';
import { requireProgram } from '../fixtures/programs.js';
import { type RefusingProxy, startRefusingProxy } from '../fixtures/refusing-proxy.js';
import { type Registry, startRegistry } from '../fixtures/registry.js';
import { inspect, pullImage, pushLayout } from '../fixtures/skopeo.js';
import { type TempDir, tempDir } from '../fixtures/temp-dir.js';
import { startTokenServer, type TokenServer } from '../fixtures/token-server.js';

const registryBin = requireProgram('docker-registry');
const skopeoBin = requireProgram('skopeo');
const opensslBin = requireProgram('openssl');
const busybox = requireProgram('busybox');
const BIG_MIB = 64;
const CREDS = 'alice:wonderland';

const hex = (digest: string) => digest.replace(/^sha256:/, '');

/** A blob GET as plain HTTP (for the faults skopeo can't show), with what arrived before the end. */
function getRaw(
  url: string,
  headers: Record<string, string>,
  timeoutMs = 2000,
): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer; error: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      const done = (error: string | undefined) =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), error });
      const timer = setTimeout(() => {
        done('timeout'); // first: destroying emits 'aborted' synchronously
        res.destroy();
      }, timeoutMs);
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        done(undefined);
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        done(err.message);
      });
      res.on('aborted', () => {
        clearTimeout(timer);
        done('aborted');
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** The dir: transport's copy holds manifest.json with the pushed bytes and one file per blob. */
async function expectPulledImage(outDir: string, manifestDigest: string, blobs: Descriptor[]): Promise<void> {
  expect(sha256(await readFile(path.join(outDir, 'manifest.json')))).toBe(manifestDigest);
  for (const blob of blobs) expect(await sha256File(path.join(outDir, hex(blob.digest)))).toBe(blob.digest);
}

describe.skipIf(!registryBin || !skopeoBin || !opensslBin)(
  'test fixtures against docker-registry and skopeo',
  () => {
    let work: TempDir;
    let refusing: RefusingProxy;
    let tokens: TokenServer;
    let registry: Registry;
    let front: FaultProxy | undefined;
    let layout: OciLayout;
    let small: ImageDescription;
    let multi: IndexDescription;
    let big: ImageDescription;
    let shared: { shared: LayerDescription; images: [ImageDescription, ImageDescription] };
    const pulled = (name: string) => path.join(work.path, 'pulled', name);
    const skopeoDefaults = () => ({ proxy: refusing });

    beforeAll(async () => {
      work = await tempDir('hubcache-fixtures-');
      refusing = await startRefusingProxy();
      tokens = await startTokenServer({ users: { alice: 'wonderland' } });
      registry = await startRegistry({ token: tokens });
      layout = await OciLayout.create(path.join(work.path, 'layout'));
      const options = busybox ? { busybox } : {};
      small = await buildSmallImage(layout, 'small', options);
      multi = await buildMultiArchIndex(layout, 'multi', options);
      big = await buildBigImage(layout, 'big', { mib: BIG_MIB });
      shared = await buildSharedLayerImages(layout, ['shared-a', 'shared-b']);
      await mkdir(path.join(work.path, 'pulled'));
    });

    afterAll(async () => {
      await front?.close();
      await registry?.stop();
      await tokens?.close();
      await refusing?.close();
      await work?.remove();
    });

    it('builds deterministic layouts: uncompressed big layer whose digest is its diff_id', async () => {
      const again = await buildBigImage(await OciLayout.create(path.join(work.path, 'again')), 'big', {
        mib: BIG_MIB,
      });
      expect(again.manifest.digest).toBe(big.manifest.digest);
      const layer = big.layers[1];
      expect(layer?.mediaType).toBe('application/vnd.oci.image.layer.v1.tar');
      expect(layer?.digest).toBe(layer?.diffId);
      expect(layer?.size).toBeGreaterThan(BIG_MIB * 1024 * 1024);
      expect(small.layers).toHaveLength(2);
      expect(multi.images.map((i) => i.platform.architecture)).toEqual(['amd64', 'arm64']);
      expect(shared.images[0].layers[0]?.digest).toBe(shared.images[1].layers[0]?.digest);
      expect(shared.images[0].manifest.digest).not.toBe(shared.images[1].manifest.digest);
    });

    it('pushes with credentials the token server grants, and refuses a wrong password', async () => {
      const pushed = await pushLayout(layout.dir, 'small', registry.url, 'library/small:1', {
        ...skopeoDefaults(),
        creds: CREDS,
      });
      expect(pushed.digest).toBe(small.manifest.digest);
      const alice = tokens.requests.filter((r) => r.user === 'alice');
      expect(
        alice.some((r) => r.granted.some((g) => g.name === 'library/small' && g.actions.includes('push'))),
      ).toBe(true);
      expect(alice.every((r) => r.sentAuthorization && r.service === 'registry.docker.io')).toBe(true);

      const refused = pushLayout(layout.dir, 'small', registry.url, 'library/small:wrong', {
        ...skopeoDefaults(),
        creds: 'alice:nope',
      });
      await expect(refused).rejects.toBeInstanceOf(ProgramFailed);
      expect(tokens.requests.some((r) => r.status === 401 && r.sentAuthorization)).toBe(true);
    });

    it('pulls the small image back anonymously with the digests images.ts reported', async () => {
      const before = tokens.requests.length;
      const result = await pullImage(registry.url, 'library/small:1', pulled('small'), skopeoDefaults());
      expect(result.digest).toBe(small.manifest.digest);
      await expectPulledImage(pulled('small'), small.manifest.digest, small.blobs);
      const anonymous = tokens.requests.slice(before);
      expect(anonymous.length).toBeGreaterThan(0);
      expect(anonymous.every((r) => r.user === undefined && !r.sentAuthorization)).toBe(true);
      expect(anonymous.flatMap((r) => r.granted.flatMap((g) => g.actions))).toEqual(
        expect.arrayContaining(['pull']),
      );
      expect(anonymous.flatMap((r) => r.granted.flatMap((g) => g.actions))).not.toContain('push');

      const raw = await inspect(registry.url, 'library/small:1', { ...skopeoDefaults(), raw: true });
      expect(sha256(raw.stdout)).toBe(small.manifest.digest);
    });

    it('converts to Docker schema2 with --format v2s2: new manifest digest, same blobs', async () => {
      const pushed = await pushLayout(layout.dir, 'small', registry.url, 'library/small-v2s2:1', {
        ...skopeoDefaults(),
        creds: CREDS,
        format: 'v2s2',
      });
      expect(pushed.digest).not.toBe(small.manifest.digest);
      const raw = await inspect(registry.url, 'library/small-v2s2:1', { ...skopeoDefaults(), raw: true });
      expect(sha256(raw.stdout)).toBe(pushed.digest);
      const manifest = JSON.parse(raw.stdout) as { mediaType: string; layers: { digest: string }[] };
      expect(manifest.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
      expect(manifest.layers.map((l) => l.digest)).toEqual(small.layers.map((l) => l.digest));
      await pullImage(registry.url, 'library/small-v2s2:1', pulled('small-v2s2'), skopeoDefaults());
      await expectPulledImage(pulled('small-v2s2'), pushed.digest, small.blobs);
    });

    it('pushes and pulls the multi-arch index with --all, every platform intact', async () => {
      const pushed = await pushLayout(layout.dir, 'multi', registry.url, 'library/multi:1', {
        ...skopeoDefaults(),
        creds: CREDS,
        all: true,
      });
      expect(pushed.digest).toBe(multi.index.digest);
      await pullImage(registry.url, 'library/multi:1', pulled('multi'), { ...skopeoDefaults(), all: true });
      expect(sha256(await readFile(path.join(pulled('multi'), 'manifest.json')))).toBe(multi.index.digest);
      const files = await readdir(pulled('multi'));
      for (const image of multi.images) {
        const manifestFile = files.find(
          (f) => f.includes(hex(image.manifest.digest)) && f.endsWith('manifest.json'),
        );
        expect(manifestFile, `${image.platform.architecture} manifest in ${files.join(' ')}`).toBeDefined();
        expect(sha256(await readFile(path.join(pulled('multi'), manifestFile ?? '')))).toBe(
          image.manifest.digest,
        );
        for (const blob of image.blobs)
          expect(await sha256File(path.join(pulled('multi'), hex(blob.digest)))).toBe(blob.digest);
      }
    });

    it('pushes the big uncompressed layer unchanged and the registry serves it with one blob GET', async () => {
      const pushed = await pushLayout(layout.dir, 'big', registry.url, 'library/big:1', {
        ...skopeoDefaults(),
        creds: CREDS,
      });
      expect(pushed.digest).toBe(big.manifest.digest);
      await pullImage(registry.url, 'library/big:1', pulled('big'), skopeoDefaults());
      await expectPulledImage(pulled('big'), big.manifest.digest, big.blobs);
      const layer = big.layers[1]?.digest ?? '';
      const blobGet = new RegExp(`/blobs/${layer}$`);
      await registry.waitForRequests(() => registry.count('GET', blobGet, 200) === 1);
      expect(registry.count('GET', blobGet, 200)).toBe(1);
    });

    it('pushes two images that share a layer; both pull back intact', async () => {
      for (const [i, image] of shared.images.entries()) {
        const ref = image.ref ?? '';
        const pushed = await pushLayout(layout.dir, ref, registry.url, `library/${ref}:1`, {
          ...skopeoDefaults(),
          creds: CREDS,
        });
        expect(pushed.digest).toBe(image.manifest.digest);
        await pullImage(registry.url, `library/${ref}:1`, pulled(`shared-${i}`), skopeoDefaults());
        await expectPulledImage(pulled(`shared-${i}`), image.manifest.digest, image.blobs);
      }
    });

    it('fault proxy forwards and counts a skopeo pull, then injects status and corruption faults', async () => {
      front = await startFaultProxy(registry.url);
      await pullImage(front.url, 'library/small:1', pulled('via-front'), skopeoDefaults());
      await expectPulledImage(pulled('via-front'), small.manifest.digest, small.blobs);
      expect(front.count('GET', /\/manifests\/1$/, 200)).toBe(1);
      expect(front.count('GET', /\/blobs\/sha256:/, 200)).toBe(small.blobs.length);

      const once = front.addFault({
        match: (r) => r.method === 'GET' && r.path.endsWith('/manifests/1'),
        fault: { kind: 'status', status: 503 },
        times: 1,
      });
      await expect(
        pullImage(front.url, 'library/small:1', pulled('via-front-503'), skopeoDefaults()),
      ).rejects.toThrow(/503|unavailable/i);
      expect(once.hits).toBe(1);
      await pullImage(front.url, 'library/small:1', pulled('via-front-after-503'), skopeoDefaults());

      const appLayer = small.layers[1]?.digest ?? '';
      const corrupt = front.addFault({
        match: (r) => r.path.endsWith(`/blobs/${appLayer}`),
        fault: { kind: 'corrupt' },
      });
      await expect(
        pullImage(front.url, 'library/small:1', pulled('via-front-corrupt'), skopeoDefaults()),
      ).rejects.toThrow(/digest/i);
      expect(corrupt.hits).toBeGreaterThan(0);
      front.clearFaults();
    });

    it('fault proxy truncates, stalls, delays and answers 429 with Retry-After', async () => {
      if (!front) throw new Error('needs the fault proxy of the previous test');
      const token = await new Promise<string>((resolve, reject) => {
        request(
          `${tokens.realm}?service=registry.docker.io&scope=repository:library/big:pull`,
          { agent: false },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve((JSON.parse(Buffer.concat(chunks).toString()) as { token: string }).token),
            );
          },
        )
          .on('error', reject)
          .end();
      });
      const layer = big.layers[1];
      const url = `${front.url}/v2/library/big/blobs/${layer?.digest}`;
      const auth = { Authorization: `Bearer ${token}` };
      const isBig = (r: { path: string }) => r.path.endsWith(`/blobs/${layer?.digest}`);

      const whole = await getRaw(url, auth, 20_000);
      expect(whole.status).toBe(200);
      expect(sha256(whole.body)).toBe(layer?.digest);

      front.addFault({ match: isBig, fault: { kind: 'truncate', after: 1000 }, times: 1 });
      const truncated = await getRaw(url, auth);
      expect(truncated.status).toBe(200);
      expect(truncated.error).toBeDefined();
      expect(truncated.body.length).toBe(1000);

      front.addFault({ match: isBig, fault: { kind: 'stall', after: 10 }, times: 1 });
      const stalled = await getRaw(url, auth, 500);
      expect(stalled.status).toBe(200);
      expect(stalled.error).toBe('timeout');
      expect(stalled.body.length).toBe(10);

      front.addFault({
        match: isBig,
        fault: { kind: 'status', status: 429, headers: { 'Retry-After': '2' } },
        times: 2,
      });
      for (let i = 0; i < 2; i++) {
        const limited = await getRaw(url, auth);
        expect(limited.status).toBe(429);
        expect(limited.headers['retry-after']).toBe('2');
      }

      front.addFault({ match: isBig, fault: { kind: 'delay', ms: 300 }, times: 1 });
      const started = Date.now();
      const delayed = await getRaw(`${url}`, { ...auth, Range: 'bytes=0-99' }, 5000);
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
      expect(delayed.status).toBe(206);
      expect(delayed.body.length).toBe(100);
      expect(front.requests.filter(isBig).map((r) => r.fault)).toEqual([
        undefined,
        'truncate',
        'stall',
        'status',
        'status',
        'delay',
      ]);
    });

    it('CDN mode: blob GETs are redirected to localhost, skopeo follows without Authorization', async () => {
      if (!front) throw new Error('needs the fault proxy of the previous tests');
      front.setCdn(true);
      const blobGets = () =>
        registry.requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/')).length;
      const before = blobGets();
      await pullImage(front.url, 'library/small:1', pulled('via-cdn'), skopeoDefaults());
      await expectPulledImage(pulled('via-cdn'), small.manifest.digest, small.blobs);
      expect(front.count('GET', /\/blobs\/sha256:/, 307)).toBe(small.blobs.length);
      expect(front.cdnRequests).toHaveLength(small.blobs.length);
      expect(front.cdnRequests.every((r) => r.status === 200 && !r.authorization)).toBe(true);
      await registry.waitForRequests(() => blobGets() - before === small.blobs.length);
      front.setCdn(false);
    });

    it('refusing proxy saw none of the above, and refuses and counts what would leave', async () => {
      expect(refusing.requests).toEqual([]);
      await expect(
        inspect('https://registry-1.docker.io', 'library/alpine:3.20', { proxy: refusing }),
      ).rejects.toBeInstanceOf(ProgramFailed);
      expect(refusing.requests.map((r) => `${r.method} ${r.target}`)).toContain(
        'CONNECT registry-1.docker.io:443',
      );

      // With --tls-verify=false skopeo also tries http:// and the v1 ping: several attempts, all refused.
      const beforePlain = refusing.requests.length;
      // A plain-HTTP proxy request: absolute URI in the request line, as curl or Go send it.
      const proxy = new URL(refusing.url);
      const status = await new Promise<number | undefined>((resolve, reject) => {
        request(
          { host: proxy.hostname, port: proxy.port, path: 'http://registry-1.docker.io/v2/', agent: false },
          (res) => {
            res.resume();
            resolve(res.statusCode);
          },
        )
          .on('error', reject)
          .end();
      });
      expect(status).toBe(403);
      expect(refusing.requests.at(-1)).toMatchObject({
        method: 'GET',
        target: 'http://registry-1.docker.io/v2/',
      });
      expect(refusing.requests).toHaveLength(beforePlain + 1);
    });
  },
);
