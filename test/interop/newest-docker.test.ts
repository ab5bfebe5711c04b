import { mkdtempSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canUseDebian13,
  type Debian13Mounts,
  debian13Root,
  debian13Versions,
  ensureDebian13,
  mountDebian13,
  unmountDebian13,
} from '../fixtures/debian13.js';
import { type Debian13Dockerd, type ImageStore, startDebian13Dockerd } from '../fixtures/debian13-dockerd.js';
import { mirrorRequestCounts } from '../fixtures/request-counts.js';
import { pushLayout } from '../fixtures/skopeo-cli.js';
import { bedPrograms, PUSHER, startTestBed, type TestBed } from '../fixtures/test-bed.js';

const canChroot = canUseDebian13();

const STORES: ImageStore[] = ['classic', 'containerd'];
/** What the pushed image's new layer holds. */
const PUSHED_FILE = '/pushed.txt';

/** What changed between two readings, as `endpoint method code ×n`, sorted. */
/** Manifest requests (HEAD or GET) the mirror answered 200 in an operation. */
function manifestRequests(row: Row): number {
  return (row.mirror['manifest GET 200'] ?? 0) + (row.mirror['manifest HEAD 200'] ?? 0);
}

function countsDelta(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const delta: Record<string, number> = {};
  for (const [key, n] of [...after].sort(([a], [b]) => a.localeCompare(b))) {
    const d = n - (before.get(key) ?? 0);
    if (d > 0) delta[key] = d;
  }
  return delta;
}

interface Row {
  store: ImageStore;
  operation: string;
  result: string;
  seconds: number;
  /** The mirror's hubcache_requests_total, what this operation added. */
  mirror: Record<string, number>;
  /** Blob GETs that reached the upstream, and how many blobs the operation newly needed. */
  upstreamBlobGets: number;
  newBlobs: number;
  /** Did each of the mirror's /v2 requests carry ?ns=docker.io (containerd's way to name the registry)? */
  ns: string;
}

/**
 * Debian 13's dockerd 26 (TESTBED.md "The newest clients") in a chroot, with `registry-mirrors`
 * pointing at the mirror, once per image store: the classic one (vfs) and containerd's (native
 * snapshotter, a containerd of its own). Each store starts from an empty mirror cache, pulls by
 * short name, by user/repo, an OCI index, a Docker manifest list, by digest, runs what it pulled,
 * pushes an image with a new layer over known ones to a hosted repository and pulls it back. For
 * each pull the upstream sees exactly one GET per blob the pull needed (config and layers of the
 * platform pulled), and nothing goes around the mirror.
 */
describe.skipIf(!bedPrograms() || !canChroot)(
  'dockerd 26 (Debian 13) through the mirror, both image stores',
  () => {
    let bed: TestBed;
    let mounts: Debian13Mounts | undefined;
    let dockerd: Debian13Dockerd | undefined;
    /** The /v2 requests the mirror received (method and URL with its query), in order. */
    const seen: string[] = [];
    const rows: Row[] = [];
    /** config + layer digests of each image, read from the layout the bed pushed upstream. */
    let blobsOf: { amd64: string[]; arm64: string[] };
    /** The uncompressed digests of alpine's two layers (what a push may recompress, but not change). */
    let alpineDiffIds: string[];

    const layoutJson = (digest: string) =>
      JSON.parse(readFileSync(path.join(bed.work, 'layout', 'blobs', 'sha256', digest.slice(7)), 'utf8'));
    const imageBlobs = (manifestDigest: string): string[] => {
      const m = layoutJson(manifestDigest) as { config: { digest: string }; layers: { digest: string }[] };
      return [m.config.digest, ...m.layers.map((l) => l.digest)];
    };
    const upstreamBlobDigests = () =>
      bed.front.requests
        .filter((r) => r.method === 'GET' && r.status === 200 && /\/blobs\//.test(r.path))
        .map((r) => r.path.slice(r.path.lastIndexOf('/') + 1));
    const metrics = () => mirrorRequestCounts(bed.mirror.url, false);
    const hookMirror = () => {
      bed.mirror.server.on('request', (req) => {
        if (req.url?.startsWith('/v2')) seen.push(`${req.method} ${req.url}`);
      });
    };

    beforeAll(async () => {
      const times = await ensureDebian13();
      bed = await startTestBed({ bigMiB: 1 });
      // A Docker manifest list too (the bed has the OCI index): the same two platforms, v2s2.
      const registryHost = new URL(bed.registry.url).host;
      await pushLayout(path.join(bed.work, 'layout'), 'multi', `${registryHost}/library/multilist:1`, {
        env: bed.env,
        creds: PUSHER,
        all: true,
        format: 'v2s2',
      });
      const index = layoutJson(bed.images.multi.digest) as {
        manifests: { digest: string; platform: { architecture: string } }[];
      };
      const forArch = (a: string) => index.manifests.find((m) => m.platform.architecture === a)?.digest ?? '';
      blobsOf = { amd64: imageBlobs(forArch('amd64')), arm64: imageBlobs(forArch('arm64')) };
      expect(imageBlobs(bed.images.alpine.digest)).toEqual(blobsOf.amd64);
      alpineDiffIds = (layoutJson(blobsOf.amd64[0] ?? '') as { rootfs: { diff_ids: string[] } }).rootfs
        .diff_ids;
      mounts = await mountDebian13(mkdtempSync(path.join(bed.work, 'shared-')));
      console.log(`debian13 root ${debian13Root()}`, times, await debian13Versions());
    }, 900_000);

    afterAll(async () => {
      await dockerd?.stop();
      await unmountDebian13(mounts);
      await bed?.stop();
      console.log(
        `dockerd 26 results\n${rows
          .map(
            (r) =>
              `${r.store}\t${r.operation}\t${r.result}\t${r.seconds.toFixed(1)} s\tupstream blob GETs ${r.upstreamBlobGets} (new blobs ${r.newBlobs})\tns ${r.ns}\tmirror ${JSON.stringify(r.mirror)}`,
          )
          .join('\n')}`,
      );
    });

    describe.each(STORES)('%s image store', (store) => {
      let started = 0;
      /** Blobs this store's dockerd has pulled so far (its mirror cache started empty). */
      const pulled = new Set<string>();
      const docker = (args: string[]) => (dockerd as Debian13Dockerd).docker(args);
      const hosted = `d26-${store}`;
      const mirrorHost = () => new URL(bed.mirror.url).host;
      /** What the run and the push start from: the tag, then (after the by-digest pull) the digest. */
      let alpine = 'alpine:3.20';

      /**
       * Runs one client operation and records what the mirror and the upstream saw. `blobs`: what the
       * operation pulls from docker.io through the mirror (config and layers of the platform pulled).
       */
      const step = async (operation: string, blobs: string[], body: () => Promise<string>) => {
        const before = await metrics();
        const seenFrom = seen.length;
        const upstreamFrom = upstreamBlobDigests().length;
        const t = performance.now();
        const result = await body();
        const seconds = (performance.now() - t) / 1000;
        const fresh = [...new Set(blobs)].filter((b) => !pulled.has(b));
        for (const b of fresh) pulled.add(b);
        const requests = seen.slice(seenFrom);
        const withNs = requests.filter((r) => r.includes('ns=docker.io')).length;
        const row: Row = {
          store,
          operation,
          result,
          seconds,
          mirror: countsDelta(before, await metrics()),
          upstreamBlobGets: upstreamBlobDigests().length - upstreamFrom,
          newBlobs: fresh.length,
          ns: `${withNs}/${requests.length}`,
        };
        rows.push(row);
        if (store === 'containerd') {
          // Every docker.io request names the registry in the query (routing.ts routes on it).
          const mirrored = requests.filter((r) => r.includes(' /v2/library/'));
          expect(mirrored.filter((r) => !r.includes('ns=docker.io'))).toEqual([]);
        }
        // Exactly the blobs this pull newly needed reached the upstream, once each.
        expect(upstreamBlobDigests().slice(upstreamFrom).sort()).toEqual(fresh.sort());
        // And nothing went around the mirror (dockerd falls back to Docker Hub on a mirror error).
        expect(bed.refusing.attempts).toEqual([]);
        return { row, requests };
      };

      beforeAll(async () => {
        started = performance.now();
        // An empty cache for each store: a new data folder (and port) for the mirror.
        await bed.restartMirror({ fresh: true });
        hookMirror();
        const t = performance.now();
        dockerd = await startDebian13Dockerd(
          mounts as Debian13Mounts,
          bed.mirror.url,
          bed.refusing.url,
          store,
        );
        const version = (await docker(['version', '--format', '{{.Server.Version}}'])).stdout.trim();
        expect(version).toMatch(/^26\./);
        const driver = (await docker(['info', '--format', '{{.Driver}} {{.DriverStatus}}'])).stdout.trim();
        // The containerd store reports its snapshotter as the driver, with a driver-type saying so.
        expect(driver.includes('io.containerd.snapshotter')).toBe(store === 'containerd');
        console.log(
          `dockerd ${version} (${store} store, driver ${driver}) ready in ${((performance.now() - t) / 1000).toFixed(1)} s`,
          JSON.stringify(dockerd.config),
          dockerd.containerdConfig ?? '',
        );
      }, 120_000);

      afterAll(async () => {
        await dockerd?.stop();
        dockerd = undefined;
        console.log(`${store} store: ${((performance.now() - started) / 1000).toFixed(1)} s`);
      });

      it('pulls by short name (alpine:3.20) from an empty cache: the mirror fetches each blob once', async () => {
        const { row, requests } = await step(
          'pull alpine:3.20 (short name, Docker schema2)',
          blobsOf.amd64,
          async () => {
            await docker(['pull', 'alpine:3.20']);
            return 'ok';
          },
        );
        expect(row.upstreamBlobGets).toBe(3);
        expect(row.mirror['manifest GET 200'] ?? 0).toBeGreaterThan(0);
        expect(row.mirror['blob GET 200']).toBe(3);
        // The classic store pings /v2/ before each pull; the containerd store does not (TESTBED.md).
        const pings = requests.filter((r) => /^GET \/v2\/(\?|$)/.test(r)).length;
        expect(pings).toBe(store === 'classic' ? 1 : 0);
      });

      it('pulls by user/repo (library/small:1): same blobs, only the manifest is asked', async () => {
        const { row } = await step(
          'pull library/small:1 (user/repo, same blobs)',
          blobsOf.amd64,
          async () => {
            await docker(['pull', 'library/small:1']);
            return 'ok';
          },
        );
        expect(manifestRequests(row)).toBeGreaterThan(0);
      });

      it('pulls an OCI index (library/multi:1) and a Docker manifest list for arm64 (library/multilist:1)', async () => {
        const oci = await step('pull library/multi:1 (OCI index, amd64)', blobsOf.amd64, async () => {
          await docker(['pull', 'library/multi:1']);
          return 'ok';
        });
        expect(oci.row.mirror['manifest GET 200'] ?? 0).toBeGreaterThanOrEqual(2); // index, then amd64's
        // The arm64 config and layer are new: step() checks the upstream sent exactly those.
        const list = await step(
          'pull --platform linux/arm64 library/multilist:1 (Docker manifest list)',
          blobsOf.arm64,
          async () => {
            await docker(['pull', '--platform', 'linux/arm64', 'library/multilist:1']);
            const arch = await docker([
              'image',
              'inspect',
              '--format',
              '{{.Architecture}}',
              'library/multilist:1',
            ]);
            return `ok, inspect says ${arch.stdout.trim()}`;
          },
        );
        expect(list.row.mirror['manifest GET 200'] ?? 0).toBeGreaterThanOrEqual(2); // list, then arm64's
        expect(list.row.upstreamBlobGets).toBe(2);
      });

      it('pulls by digest (alpine@sha256:…) after rmi -f: served from the cache, the upstream is not asked', async () => {
        const inspect = await docker([
          'image',
          'inspect',
          '--format',
          '{{.Id}} {{index .RepoDigests 0}}',
          'alpine:3.20',
        ]);
        const [id = '', repoDigest = ''] = inspect.stdout.trim().split(' ');
        const digest = repoDigest.slice(repoDigest.indexOf('@') + 1);
        expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
        // Without the rmi the classic store asks only /v2/ (it has the image): nothing to serve.
        await docker(['rmi', '-f', id]);
        const { row, requests } = await step(
          `rmi -f, pull alpine@${digest.slice(0, 19)}…`,
          blobsOf.amd64,
          async () => {
            await docker(['pull', `alpine@${digest}`]);
            return 'ok';
          },
        );
        // The mirror served it, all from the cache. Whether the manifest is asked again varies: once
        // the classic store asked only for the blobs (it still held the manifest after rmi -f).
        const served = Object.entries(row.mirror)
          .filter(([key]) => !key.startsWith('base '))
          .reduce((n, [, count]) => n + count, 0);
        expect(served).toBeGreaterThan(0);
        expect(row.upstreamBlobGets).toBe(0);
        row.result = requests.some((r) => r.includes(`/manifests/${digest}`))
          ? 'ok, manifest asked by digest'
          : 'ok, manifest not asked (dockerd had it), blobs asked';
        alpine = `alpine@${digest}`;
      });

      it('runs what it pulled: docker run --network none alpine@sha256:… cat /etc/os-release', async () => {
        const { row } = await step('run --rm --network none alpine@sha256:…', [], async () => {
          const out = await docker(['run', '--rm', '--network', 'none', alpine, 'cat', '/etc/os-release']);
          return out.stdout.split('\n')[0] ?? '';
        });
        expect(row.result).toBe('ID=hubcache-test');
      });

      it('pushes an image with a new layer over known ones to a hosted repository and pulls it back after rmi', async () => {
        const image = `${mirrorHost()}/${hosted}:1`;
        const text = `pushed by dockerd 26 (${store} store)`;
        const container = `${hosted}-writer`;
        const writer = ['run', '--name', container, '--network', 'none', alpine, 'sh', '-c'];
        await docker([...writer, `echo '${text}' > ${PUSHED_FILE}`]);
        await docker(['commit', container, image]);
        await docker(['rm', container]);
        const upstreamBefore = bed.front.requests.length;
        const push = await step(`push ${hosted}:1 (1 new layer + 2 known)`, [], async () => {
          const out = await docker(['push', image]);
          return /digest: (sha256:[0-9a-f]{64})/.exec(out.stdout)?.[1] ?? out.stdout;
        });
        const digest = push.row.result;
        expect(digest).toMatch(/^sha256:/);
        // Until the push names the repository hosted, a HEAD on one of its blobs may ask the upstream
        // whether it has it (docs/pushing.md); recorded, never a GET.
        const duringPush = bed.front.requests.slice(upstreamBefore).map((r) => `${r.method} ${r.status}`);
        expect(duringPush.filter((r) => !r.startsWith('HEAD '))).toEqual([]);

        // The mirror stored the manifest docker pushed: three layers, the first two alpine's content.
        const accept =
          'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json';
        const res = await fetch(`${bed.mirror.url}/v2/${hosted}/manifests/1`, { headers: { accept } });
        expect(res.status).toBe(200);
        expect(res.headers.get('docker-content-digest')).toBe(digest);
        const manifest = (await res.json()) as { config: { digest: string }; layers: { digest: string }[] };
        expect(manifest.layers.length).toBe(3);
        const config = (await (
          await fetch(`${bed.mirror.url}/v2/${hosted}/blobs/${manifest.config.digest}`)
        ).json()) as { rootfs: { diff_ids: string[] } };
        expect(config.rootfs.diff_ids.slice(0, 2)).toEqual(alpineDiffIds);
        const sameBytes = manifest.layers.slice(0, 2).every((l, i) => l.digest === blobsOf.amd64[i + 1]);
        push.row.result = `${digest.slice(0, 19)}…; known layers ${sameBytes ? 'pushed as pulled' : 'recompressed (new digests)'}; upstream during push: ${duringPush.join(', ') || 'nothing'}`;

        await docker(['rmi', image]);
        const hostedSince = bed.front.requests.length;
        const back = await step(`pull ${hosted}:1 back after rmi, run it`, [], async () => {
          await docker(['pull', image]);
          return (
            await docker(['run', '--rm', '--network', 'none', image, 'cat', PUSHED_FILE])
          ).stdout.trim();
        });
        expect(back.row.result).toBe(text);
        expect(manifestRequests(back.row)).toBeGreaterThan(0);
        // A hosted name never reaches the upstream.
        expect(bed.front.requests.slice(hostedSince)).toEqual([]);
      });

      it('from the empty cache, the upstream saw one GET per unique blob pulled', () => {
        const upstream = rows.filter((r) => r.store === store).reduce((n, r) => n + r.upstreamBlobGets, 0);
        expect(upstream).toBe(pulled.size);
        expect([...pulled].sort()).toEqual([...new Set([...blobsOf.amd64, ...blobsOf.arm64])].sort());
      });
    });
  },
);
