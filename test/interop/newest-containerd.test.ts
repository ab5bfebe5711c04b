import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type CriImageClient, criImageClient } from '../fixtures/cri-client.js';
import {
  canUseDebian13,
  type Debian13Mounts,
  debian13Root,
  ensureDebian13,
  mountDebian13,
  unmountDebian13,
} from '../fixtures/debian13.js';
import { type ChrootContainerd, startChrootContainerd } from '../fixtures/debian13-containerd.js';
import { type RequestTap, startRequestTap } from '../fixtures/proxies.js';
import { mirrorRequestCounts } from '../fixtures/request-counts.js';
import { bedPrograms, startTestBed, type TestBed } from '../fixtures/test-bed.js';

const canChroot = canUseDebian13();

const MiB = 1024 * 1024;
/** library/big:1's one layer: at 2 MiB/s from upstream the mirror's fill of it lasts about 8 s. */
const BIG_MIB = 16;

/** What the mirror counted between two reads of /metrics, as `endpoint method outcome code` → n. */
function countsBetween(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const diff: Record<string, number> = {};
  for (const [key, n] of after) {
    const d = n - (before.get(key) ?? 0);
    if (d > 0) diff[key] = d;
  }
  return diff;
}

/**
 * Debian 13's containerd 1.7 (TESTBED.md "The newest clients") in the chroot, against the mirror in
 * front of the token-auth upstream, through certs.d/docker.io/hosts.toml as the README documents it.
 * A tap between containerd and the mirror shows each request as sent (query string, Range).
 */
describe.skipIf(!bedPrograms() || !canChroot)('containerd 1.7 (Debian 13 chroot) through the mirror', () => {
  let bed: TestBed;
  let mounts: Debian13Mounts | undefined;
  let tap: RequestTap;
  let ctrd: ChrootContainerd | undefined;
  const started = Date.now();
  const timings: Record<string, number> = {};
  const table: Record<string, unknown>[] = [];

  const metrics = () => mirrorRequestCounts(bed.mirror.url);

  /** Runs one operation and notes what it cost: wall time, the mirror's counts, upstream blob GETs. */
  async function measured(operation: string, run: () => Promise<unknown>): Promise<Record<string, number>> {
    const before = await metrics();
    const upstreamBefore = bed.front.count('GET', /\/blobs\//);
    const tapBefore = tap.requests.length;
    const t = Date.now();
    await run();
    const seconds = (Date.now() - t) / 1000;
    const mirror = countsBetween(before, await metrics());
    const sent = tap.requests.slice(tapBefore);
    table.push({
      operation,
      seconds,
      upstreamBlobGets: bed.front.count('GET', /\/blobs\//) - upstreamBefore,
      requestsWithNs: `${sent.filter((r) => r.url.includes('ns=docker.io')).length}/${sent.length}`,
      mirror,
    });
    return mirror;
  }

  beforeAll(async () => {
    let t = Date.now();
    const times = await ensureDebian13();
    bed = await startTestBed({ bigMiB: BIG_MIB });
    timings.bedSeconds = (Date.now() - t) / 1000;
    mounts = await mountDebian13(mkdtempSync(path.join(bed.work, 'shared-')));
    tap = await startRequestTap(bed.mirror.url);
    t = Date.now();
    ctrd = await startChrootContainerd(mounts, {
      name: 'ctr',
      mirrorUrl: tap.url,
      proxyUrl: bed.refusing.url,
    });
    timings.containerdStartSeconds = (Date.now() - t) / 1000;
    console.log(`debian13 root ${debian13Root()}`, times, (await ctrd.ctr(['version'])).stdout);
  }, 900_000);

  afterAll(async () => {
    await ctrd?.stop();
    await unmountDebian13(mounts);
    await tap?.close();
    await bed?.stop();
    console.log('timings (s)', { ...timings, total: (Date.now() - started) / 1000 });
    console.table(table.map((row) => ({ ...row, mirror: JSON.stringify(row.mirror) })));
  });

  it('ctr pulls a tag, all platforms of an index, one other platform, and by digest: one upstream GET per blob', async () => {
    const c = ctrd as ChrootContainerd;
    // Each pull in its own namespace: with content sharing isolated, each fetches every blob it needs
    // from the mirror, and the mirror fetches each unique blob from upstream once.
    await measured('ctr pull alpine:3.20', () => c.pull('docker.io/library/alpine:3.20'));
    await measured('ctr pull --all-platforms multi:1 (OCI index)', () =>
      c.pull('docker.io/library/multi:1', { namespace: 'all', args: ['--all-platforms'] }),
    );
    await measured('ctr pull --platform linux/arm64 busybox:latest', () =>
      c.pull('docker.io/library/busybox:latest', { namespace: 'arm', args: ['--platform', 'linux/arm64'] }),
    );
    const { stdout: listed } = await c.ctr(['images', 'ls']);
    const digest = /docker\.io\/library\/alpine:3\.20\s+\S+\s+(sha256:[0-9a-f]{64})/.exec(listed)?.[1];
    expect(digest).toBeDefined();
    await measured('ctr pull small@sha256 (by digest)', () =>
      c.pull(`docker.io/library/small@${digest}`, { namespace: 'digest' }),
    );
    console.log(tap.requests.map((r) => `${r.method} ${r.url} ${r.status} ${r.cache ?? ''}`).join('\n'));

    // amd64 image (config + 2 layers) and arm64 image (config + 1 layer): 5 unique blobs, each
    // fetched from upstream once, however many namespaces asked the mirror for it.
    expect(bed.front.count('GET', /\/blobs\//)).toBe(5);
    const blobRequests = tap.requests.filter((r) => r.method === 'GET' && r.url.includes('/blobs/'));
    expect(blobRequests.length).toBeGreaterThan(5);
    // containerd names the registry a mirror request is for (docs/PROTOCOL.md §1.6).
    expect(tap.requests.every((r) => r.url.includes('ns=docker.io'))).toBe(true);
    expect(bed.refusing.attempts).toEqual([]);
  });

  it('resumes an interrupted pull with Range while the mirror is still downloading: one upstream GET', async () => {
    const c = ctrd as ChrootContainerd;
    const layer = bed.images.bigLayer;
    const layerPath = new RegExp(`/blobs/${layer}`);
    // A slow upstream: the mirror's fill of the layer is still running when the client comes back.
    bed.front.throttle = { match: (p) => p.includes(layer), bytesPerSecond: 2 * MiB };
    const ref = 'docker.io/library/big:1';
    const pullArgs = c.pullArgs(ref, { namespace: 'big' });
    try {
      // First pull: killed (by its PID: chroot execs ctr) once some MiB of the layer have arrived.
      let atKill = 0;
      // A miss, or a join of the download the layer prefetch started when the manifest arrived.
      const missed = (counts: Map<string, number>) =>
        (counts.get('blob GET miss 200') ?? 0) + (counts.get('blob GET coalesced 200') ?? 0);
      const missedBefore = missed(await metrics());
      await measured('ctr pull big:1, killed mid-layer', async () => {
        const first = c.spawnCtr(pullArgs);
        const exited = new Promise<void>((resolve) => first.once('exit', () => resolve()));
        try {
          await vi.waitFor(
            () => {
              if (first.exitCode !== null)
                throw new Error(`ctr exited (${first.exitCode}) before it was killed`);
              if (c.ingestBytes() < 2 * MiB) throw new Error('fewer than 2 MiB of the layer so far');
            },
            { timeout: 60_000, interval: 50 },
          );
          atKill = c.ingestBytes();
        } finally {
          first.kill('SIGKILL');
          await exited;
        }
        // The mirror counts the request it was serving once its client has gone.
        await vi.waitFor(
          async () => {
            if (missed(await metrics()) === missedBefore) throw new Error('not counted yet');
          },
          { timeout: 10_000, interval: 50 },
        );
      });
      timings.killedAtMiB = atKill / MiB;

      const tapBefore = tap.requests.length;
      const mirror = await measured('ctr pull big:1 again after a kill (Range resume)', () =>
        c.ctr(pullArgs),
      );
      const resumed = tap.requests
        .slice(tapBefore)
        .filter((r) => layerPath.test(r.url) && r.method === 'GET');
      console.log('resume requests', resumed);
      // containerd asked for the rest only, and the mirror answered it from the download in progress.
      expect(resumed.length).toBe(1);
      const offset = Number(/^bytes=(\d+)-$/.exec(resumed[0]?.range ?? '')?.[1]);
      expect(offset).toBeGreaterThan(0);
      expect(resumed[0]?.status).toBe(206);
      expect(resumed[0]?.cache).toBe('COALESCED');
      expect(mirror['blob GET coalesced 206']).toBe(1);
      timings.resumedAtMiB = offset / MiB;
      expect(offset).toBeGreaterThanOrEqual(atKill);

      // The pull completed with the layer's digest (containerd verifies it before committing).
      const { stdout: content } = await c.ctr(['-n', 'big', 'content', 'ls', '-q']);
      expect(content.split('\n')).toContain(layer);
      expect((await c.ctr(['-n', 'big', 'images', 'ls', '-q'])).stdout.split('\n')).toContain(ref);
      // Nothing left half-written: the resumed download was committed.
      expect(c.ingestBytes()).toBe(0);
      // One upstream GET for the layer, however the client came back.
      expect(bed.front.count('GET', layerPath)).toBe(1);
      expect(bed.refusing.attempts).toEqual([]);
    } finally {
      bed.front.throttle = undefined;
    }
  });

  /**
   * The Kubernetes path: the kubelet pulls through containerd's CRI plugin, whose registry hosts come
   * from `config_path` (certs.d/docker.io/hosts.toml). The test speaks the kubelet's gRPC
   * (runtime.v1.ImageService) on containerd's socket itself (fixtures/cri-client.ts).
   */
  describe('the CRI image service (what a kubelet calls)', () => {
    let cri: ChrootContainerd | undefined;
    let client: CriImageClient | undefined;

    beforeAll(async () => {
      // An empty mirror cache again, on the same address (the tap forwards there).
      await bed.restartMirror({ listen: new URL(bed.mirror.url).host, fresh: true });
      const t = Date.now();
      cri = await startChrootContainerd(mounts as Debian13Mounts, {
        name: 'cri',
        mirrorUrl: tap.url,
        proxyUrl: bed.refusing.url,
        cri: true,
      });
      client = criImageClient(cri.socket.host);
      timings.criContainerdStartSeconds = (Date.now() - t) / 1000;
    }, 120_000);

    afterAll(async () => {
      await client?.close();
      const notes = (cri?.daemon.output() ?? '')
        .split('\n')
        .filter((l) => /level=(warning|error|fatal)/.test(l));
      console.log(notes.join('\n'));
      await cri?.stop();
    });

    it('PullImage of a tag and of a digest goes through the mirror, one upstream GET per blob', async () => {
      const c = client as CriImageClient;
      const upstreamBefore = bed.front.count('GET', /\/blobs\//);
      const tapBefore = tap.requests.length;
      let pulled = { imageRef: '' };
      await measured('CRI PullImage alpine:3.20', async () => {
        pulled = await c.pullImage('docker.io/library/alpine:3.20');
      });
      expect(pulled.imageRef).toMatch(/^sha256:[0-9a-f]{64}$/);
      const bigRef = `docker.io/library/big@${bed.images.big.digest}`;
      let pulledBig = { imageRef: '' };
      await measured('CRI PullImage big@sha256 (by digest)', async () => {
        pulledBig = await c.pullImage(bigRef);
      });

      // The image service has them, under the digests the mirror served.
      const head = await fetch(`${bed.mirror.url}/v2/library/alpine/manifests/3.20`, {
        method: 'HEAD',
        headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' },
      });
      const alpineDigest = head.headers.get('docker-content-digest');
      const { image } = await c.imageStatus('docker.io/library/alpine:3.20');
      expect(image?.id).toBe(pulled.imageRef);
      expect(image?.repoTags).toContain('docker.io/library/alpine:3.20');
      expect(image?.repoDigests).toContain(`docker.io/library/alpine@${alpineDigest}`);
      const { images } = await c.listImages();
      const big = images.find((i) => i.id === pulledBig.imageRef);
      expect(big?.repoDigests).toContain(bigRef);
      expect(big?.size).toBeGreaterThan(BIG_MIB * MiB);

      // From an empty cache: alpine's config and 2 layers, big's config and layer, each once.
      expect(bed.front.count('GET', /\/blobs\//) - upstreamBefore).toBe(5);
      const sent = tap.requests.slice(tapBefore);
      expect(sent.filter((r) => r.method === 'GET' && r.url.includes('/blobs/')).length).toBe(5);
      expect(sent.every((r) => r.url.includes('ns=docker.io'))).toBe(true);
      expect(bed.refusing.attempts).toEqual([]);
    });
  });
});
