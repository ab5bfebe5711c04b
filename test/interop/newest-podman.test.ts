import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canUseDebian13,
  type Debian13Mounts,
  debian13Root,
  debian13Versions,
  ensureDebian13,
  mountDebian13,
  runInDebian13,
  unmountDebian13,
} from '../fixtures/debian13.js';
import {
  type ContainersHome,
  containersHome,
  mountsUnder,
  type StorageKind,
  ulimitFlags,
} from '../fixtures/debian13-podman.js';
import { mirrorRegistriesConf } from '../fixtures/podman.js';
import { type ByteCounter, startByteCounter } from '../fixtures/proxies.js';
import { deltaSum, mirrorRequestCounts, requestDelta } from '../fixtures/request-counts.js';
import { requireProgram } from '../fixtures/require-program.js';
import { bedPrograms, PUSHER, startTestBed, type TestBed } from '../fixtures/test-bed.js';

const canChroot = canUseDebian13();

/** The sum of one metric's samples whose labels contain every `labels` fragment. */
function metricSum(text: string, name: string, labels: string[]): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (!labels.every((l) => line.includes(l))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

interface Manifest {
  mediaType?: string;
  config: { digest: string };
  layers: { digest: string }[];
}
interface Index {
  mediaType?: string;
  manifests: { digest: string; platform: { architecture: string; os: string } }[];
}

/** One line of the results table: what a client did and what the mirror saw meanwhile. */
interface Row {
  client: string;
  operation: string;
  result: string;
  seconds: number;
  mirror: string;
}

/**
 * Debian 13's podman 5.4, buildah 1.39 and skopeo 1.18 (TESTBED.md "The newest clients") in a chroot
 * sharing the host's network namespace, against the mirror on 127.0.0.1, whose upstream is the real
 * token-auth registry. Each client family starts from an empty mirror cache and must fetch each
 * unique blob from upstream exactly once, with nothing going around the mirror.
 */
describe.skipIf(!bedPrograms() || !canChroot)('podman 5, buildah and skopeo 1.18 (Debian 13 chroot)', () => {
  let bed: TestBed;
  let mounts: Debian13Mounts;
  let shared: string;
  let versions: Record<string, string> = {};
  const homes: ContainersHome[] = [];
  const rows: Row[] = [];
  const findings: Record<string, unknown> = {};
  const startedAt = performance.now();

  const mirrorHost = () => new URL(bed.mirror.url).host;
  const newHome = (name: string, registriesConf: string, storage: StorageKind) => {
    const home = containersHome(mounts, name, { proxyUrl: bed.refusing.url, registriesConf, storage });
    homes.push(home);
    return home;
  };

  /** Runs one client operation, noting its time and the mirror's request counts it caused. */
  async function step<T>(client: string, operation: string, run: () => Promise<T>): Promise<T> {
    const before = await mirrorRequestCounts(bed.mirror.url);
    const t = performance.now();
    const row: Row = { client, operation, result: 'ok', seconds: 0, mirror: '' };
    rows.push(row);
    try {
      return await run();
    } catch (err) {
      row.result = `FAILED: ${(err as Error).message.split('\n').slice(-2).join(' ').slice(0, 200)}`;
      throw err;
    } finally {
      row.seconds = Math.round(performance.now() - t) / 1000;
      const delta = requestDelta(before, await mirrorRequestCounts(bed.mirror.url));
      row.mirror = Object.entries(delta)
        .map(([key, n]) => `${key}×${n}`)
        .join(', ');
    }
  }

  /** The config and layers of a manifest in the bed's image layout: what pulling it fetches. */
  const layoutJson = (digest: string) =>
    JSON.parse(
      readFileSync(path.join(bed.work, 'layout', 'blobs', 'sha256', digest.slice('sha256:'.length)), 'utf8'),
    ) as unknown;
  const blobsOf = (manifest: Manifest) => [manifest.config.digest, ...manifest.layers.map((l) => l.digest)];
  const layoutBlobs = (manifestDigest: string) => blobsOf(layoutJson(manifestDigest) as Manifest);
  const platformOf = (indexDigest: string, architecture: string) => {
    const entry = (layoutJson(indexDigest) as Index).manifests.find(
      (m) => m.platform.architecture === architecture,
    );
    if (!entry) throw new Error(`no ${architecture} in ${indexDigest}`);
    return entry.digest;
  };

  /**
   * A family's start: a fresh mirror (empty cache) on the same upstream; what reached the upstream
   * and the refusing proxy afterwards is the family's own.
   */
  interface Family {
    name: string;
    frontStart: number;
    refusedStart: number;
    /** Config and layer digests of everything the family pulled through the mirror. */
    pulled: string[];
    started: number;
  }
  async function startFamily(name: string): Promise<Family> {
    await bed.restartMirror({ fresh: true });
    return {
      name,
      frontStart: bed.front.requests.length,
      refusedStart: bed.refusing.attempts.length,
      pulled: [],
      started: performance.now(),
    };
  }
  /**
   * Every blob download that reached the upstream since the family started: any status but the 401
   * (a fresh token scope's challenge) and the 206s of a ranged fill (a big blob's further segments,
   * fetched over parallel connections: parts of the one download its first GET started).
   */
  const upstreamBlobGets = (family: Family) =>
    bed.front.requests
      .slice(family.frontStart)
      .filter((r) => r.method === 'GET' && /\/blobs\//.test(r.path) && r.status !== 401 && r.status !== 206)
      .map((r) => r.path.slice(r.path.lastIndexOf('/') + 1))
      .sort();
  function expectEachBlobOnce(family: Family, provoked: string[] = []) {
    const unique = [...new Set(family.pulled)].sort();
    const gets = upstreamBlobGets(family);
    findings[`${family.name}: upstream blob GETs / unique blobs`] = `${gets.length} / ${unique.length}`;
    findings[`${family.name}: seconds`] = Math.round(performance.now() - family.started) / 1000;
    expect(unique.length).toBeGreaterThan(0);
    expect(gets).toEqual(unique);
    expect(bed.refusing.attempts.slice(family.refusedStart)).toEqual(provoked);
  }

  beforeAll(async () => {
    const times = await ensureDebian13();
    bed = await startTestBed({ bigMiB: 1 });
    shared = mkdtempSync(path.join(bed.work, 'shared-'));
    mounts = await mountDebian13(shared);
    // After mounting: podman refuses to start without /proc ("cannot retrieve cmd line").
    versions = await debian13Versions();
    console.log(`debian13 root ${debian13Root()}`, times, versions);
    findings['setup seconds'] = Math.round(performance.now() - startedAt) / 1000;
  }, 900_000);

  afterAll(async () => {
    // podman/buildah mounts (overlay) first: unmountDebian13 must find the shared folder free.
    for (const home of homes.reverse()) await home.reset();
    if (mounts) await unmountDebian13(mounts);
    await bed?.stop();
    console.table(rows);
    console.log({ ...findings, 'file seconds': Math.round(performance.now() - startedAt) / 1000 });
  });

  describe('podman 5.4', () => {
    let family: Family;
    let home: ContainersHome;
    /** The image pulled for linux/amd64 from the index by digest. */
    let amdId = '';

    beforeAll(async () => {
      expect(versions.podman).toMatch(/podman version 5\.4\./);
      family = await startFamily('podman');
      // The registries.conf README documents: docker.io with the mirror in front (insecure: plain HTTP).
      home = newHome('podman', mirrorRegistriesConf(mirrorHost()), 'overlay');
    });

    it('pulls a short name through the registries.conf mirror and runs it', async () => {
      // "alpine" resolves to docker.io/library/alpine (Debian's shortnames.conf alias, and the
      // unqualified-search-registries of our registries.conf), so the docker.io mirror serves it.
      await step('podman', 'pull alpine:3.20 (short name)', () => home.podman(['pull', 'alpine:3.20']));
      family.pulled.push(...layoutBlobs(bed.images.alpine.digest));
      // A short name without an alias: only unqualified-search-registries sends it to docker.io.
      const small = await step('podman', 'pull small:1 (short name, no alias)', () =>
        home.podman(['pull', 'small:1']),
      );
      expect(small.stderr).toContain('Trying to pull docker.io/library/small:1');
      // The bed's image has a shell only when the host has busybox-static (CI does).
      if (!requireProgram('busybox')) return;
      const { stdout } = await step('podman', 'run --rm --network none alpine:3.20', () =>
        home.podman(['run', '--rm', '--network', 'none', 'alpine:3.20', 'cat', '/etc/os-release']),
      );
      expect(stdout).toContain('ID=hubcache-test');
    });

    it('pulls one platform of an OCI index by tag, and the index by digest', async () => {
      const imageId = (stdout: string) => stdout.trim().split('\n').pop() ?? '';
      const arch = async (id: string) =>
        (await home.podman(['image', 'inspect', '--format', '{{.Architecture}}', id])).stdout.trim();
      const arm = await step('podman', 'pull --platform linux/arm64 multi:1 (OCI index)', () =>
        home.podman(['pull', '--platform', 'linux/arm64', 'docker.io/library/multi:1']),
      );
      expect(await arch(imageId(arm.stdout))).toBe('arm64');
      family.pulled.push(...layoutBlobs(platformOf(bed.images.multi.digest, 'arm64')));

      const amd = await step('podman', 'pull --platform linux/amd64 multi@<index digest>', () =>
        home.podman([
          'pull',
          '--platform',
          'linux/amd64',
          `docker.io/library/multi@${bed.images.multi.digest}`,
        ]),
      );
      amdId = imageId(amd.stdout);
      expect(await arch(amdId)).toBe('amd64');
      family.pulled.push(...layoutBlobs(platformOf(bed.images.multi.digest, 'amd64')));
    });

    it('pushes a two-platform list with manifest push --all to a hosted repository and pulls it back by digest', async () => {
      const list = 'localhost/hubcache-list';
      await home.podman(['tag', amdId, 'localhost/multi-amd64:1']);
      await home.podman(['manifest', 'create', list]);
      await home.podman(['manifest', 'add', list, 'containers-storage:docker.io/library/multi:1']);
      await home.podman(['manifest', 'add', list, 'containers-storage:localhost/multi-amd64:1']);
      const target = `${mirrorHost()}/podman-list`;
      // docs/pushing.md: a one-component name is free to push from the mirror host without credentials.
      await step('podman', 'manifest push --all (hosted podman-list:1)', () =>
        home.podman([
          'manifest',
          'push',
          '--all',
          '--tls-verify=false',
          '--digestfile',
          `${home.inside}/list.digest`,
          list,
          `docker://${target}:1`,
        ]),
      );
      const digest = readFileSync(path.join(home.host, 'list.digest'), 'utf8').trim();
      expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);

      // Pull back into another storage: index and both platforms, served as hosted content only.
      const back = newHome('podman-back', mirrorRegistriesConf(mirrorHost()), 'overlay');
      const frontBefore = bed.front.requests.length;
      const before = await mirrorRequestCounts(bed.mirror.url);
      const { stdout } = await step('podman', 'manifest inspect podman-list@<digest>', () =>
        back.podman(['manifest', 'inspect', '--tls-verify=false', `${target}@${digest}`]),
      );
      const index = JSON.parse(stdout) as Index;
      expect(index.manifests.map((m) => m.platform.architecture).sort()).toEqual(['amd64', 'arm64']);
      for (const architecture of ['arm64', 'amd64']) {
        const pulled = await step(
          'podman',
          `pull --platform linux/${architecture} podman-list@<digest>`,
          () =>
            back.podman([
              'pull',
              '--tls-verify=false',
              '--platform',
              `linux/${architecture}`,
              `${target}@${digest}`,
            ]),
        );
        const id = pulled.stdout.trim().split('\n').pop() ?? '';
        const inspected = await back.podman(['image', 'inspect', '--format', '{{.Architecture}}', id]);
        expect(inspected.stdout.trim()).toBe(architecture);
      }
      const delta = requestDelta(before, await mirrorRequestCounts(bed.mirror.url));
      findings['podman pull-back of the pushed list: mirror requests'] = delta;
      // The index (inspect and both pulls) and each platform manifest; configs and layers of both.
      expect(deltaSum(delta, 'manifest GET hosted 200')).toBeGreaterThanOrEqual(3);
      expect(deltaSum(delta, 'blob GET hosted 200')).toBe(5);
      // A hosted name never falls back to the upstream.
      expect(bed.front.requests.slice(frontBefore)).toEqual([]);
    });

    it('fetched each unique blob from upstream once, and nothing went around the mirror', () => {
      expectEachBlobOnce(family);
    });
  });

  describe('podman 5.4 zstd:chunked partial pulls (overlay, enable_partial_images)', () => {
    let family: Family;
    let direct: ByteCounter;
    let viaMirror: ByteCounter;
    const rewritten = [10, 75, 140];

    beforeAll(async () => {
      family = await startFamily('podman zstd:chunked');
      // What the client receives, counted at TCP level on each path.
      direct = await startByteCounter(bed.registry.url);
      viaMirror = await startByteCounter(bed.mirror.url);

      // v1: 150 files of 64 KiB of random bytes (~9.4 MiB); v2: three of them rewritten, far apart.
      const root = path.join(shared, 'zstd-root');
      mkdirSync(root);
      for (let i = 0; i < 150; i++) writeFileSync(path.join(root, `f${i}.bin`), randomBytes(65536));
      const tar = (name: string) =>
        runInDebian13(
          mounts,
          'tar',
          [
            '-C',
            `${mounts.shared.inside}/zstd-root`,
            '--mtime=2020-01-01',
            '--owner=0',
            '--group=0',
            '-cf',
            `${mounts.shared.inside}/${name}`,
            '.',
          ],
          { proxyUrl: bed.refusing.url },
        );
      await tar('v1.tar');
      for (const i of rewritten) writeFileSync(path.join(root, `f${i}.bin`), randomBytes(65536));
      await tar('v2.tar');

      // Pushed straight to the upstream registry (not through the counted front) by podman itself.
      const build = newHome('zstd-build', '', 'vfs');
      const registryHost = new URL(bed.registry.url).host;
      for (const tag of ['v1', 'v2']) {
        await build.podman(['import', `${mounts.shared.inside}/${tag}.tar`, `localhost/zchunk:${tag}`]);
        await build.podman([
          'push',
          '--tls-verify=false',
          '--creds',
          PUSHER,
          '--compression-format',
          'zstd:chunked',
          '--digestfile',
          `${build.inside}/${tag}.digest`,
          `localhost/zchunk:${tag}`,
          `docker://${registryHost}/library/zchunk:${tag}`,
        ]);
        const digest = readFileSync(path.join(build.host, `${tag}.digest`), 'utf8').trim();
        // Its config and layer, read from the registry itself (not through the counted front).
        const { stdout } = await build.skopeo([
          'inspect',
          '--raw',
          '--tls-verify=false',
          '--creds',
          PUSHER,
          `docker://${registryHost}/library/zchunk@${digest}`,
        ]);
        family.pulled.push(...blobsOf(JSON.parse(stdout) as Manifest));
      }
    });

    afterAll(async () => {
      await direct?.close();
      await viaMirror?.close();
    });

    it('pulls the image and its update through the mirror with multi-range requests, within 10 % of the bytes direct', async () => {
      const viaMirrorHome = newHome('zstd-mirror', mirrorRegistriesConf(viaMirror.host), 'overlay-partial');
      const directHome = newHome(
        'zstd-direct',
        `[[registry]]\nlocation = "${direct.host}"\ninsecure = true\n`,
        'overlay-partial',
      );
      const pull = async (counter: ByteCounter, home: ContainersHome, ref: string, label: string) => {
        const before = counter.down;
        const { stderr } = await step('podman', label, () =>
          home.podman(['--log-level', 'debug', 'pull', ref]),
        );
        // podman checks each chunk it fetched against the layer's table of contents.
        expect(stderr, `${label} was not a partial pull`).toMatch(/Retrieved partial blob/);
        return counter.down - before;
      };
      // Through the mirror first: the family's empty cache meets the range requests.
      const mirrorFirst = await pull(
        viaMirror,
        viaMirrorHome,
        'docker.io/library/zchunk:v1',
        'zstd:chunked v1 via mirror',
      );
      const mirrorUpdate = await pull(
        viaMirror,
        viaMirrorHome,
        'docker.io/library/zchunk:v2',
        'zstd:chunked v2 via mirror',
      );
      const directFirst = await pull(
        direct,
        directHome,
        `${direct.host}/library/zchunk:v1`,
        'zstd:chunked v1 direct',
      );
      const directUpdate = await pull(
        direct,
        directHome,
        `${direct.host}/library/zchunk:v2`,
        'zstd:chunked v2 direct',
      );
      findings['zstd:chunked bytes received'] = { mirrorFirst, directFirst, mirrorUpdate, directUpdate };
      const multipart = (counter: ByteCounter) =>
        counter.answers.filter((a) => a === '206 multipart/byteranges');
      findings['zstd:chunked multipart/byteranges answers'] = {
        mirror: multipart(viaMirror).length,
        direct: multipart(direct).length,
      };

      expect(mirrorUpdate).toBeLessThanOrEqual(directUpdate * 1.1);
      expect(mirrorFirst).toBeLessThanOrEqual(directFirst * 1.1);
      // Three rewritten 64 KiB files: far less than the 9.4 MiB layer.
      expect(mirrorUpdate).toBeLessThan(1024 * 1024);
      // Several chunks in one request, answered by the mirror as by the registry.
      expect(multipart(direct).length).toBeGreaterThan(0);
      expect(multipart(viaMirror)).toHaveLength(multipart(direct).length);

      // The update's files, read from podman's overlay mount, are the ones written here.
      const { stdout } = await viaMirrorHome.podman(['image', 'mount', 'docker.io/library/zchunk:v2']);
      const merged = path.join(mounts.dir, stdout.trim());
      try {
        for (const i of [...rewritten, 0, 149]) {
          const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
          expect(sha(path.join(merged, `f${i}.bin`)), `f${i}.bin`).toBe(
            sha(path.join(shared, 'zstd-root', `f${i}.bin`)),
          );
        }
      } finally {
        await viaMirrorHome.podman(['image', 'unmount', 'docker.io/library/zchunk:v2']);
      }
    });

    it('fetched each unique blob from upstream once, and nothing went around the mirror', () => {
      expectEachBlobOnce(family);
    });
  });

  describe('buildah 1.39', () => {
    let family: Family;
    let home: ContainersHome;

    beforeAll(async () => {
      expect(versions.buildah).toMatch(/buildah version 1\.39\./);
      family = await startFamily('buildah');
      home = newHome('buildah', mirrorRegistriesConf(mirrorHost()), 'vfs');
    });

    it('builds on an image pulled through the mirror, pushes it to a hosted repository and pulls it back', async () => {
      const from = await step('buildah', 'from docker.io/library/alpine:3.20', () =>
        home.buildah(['from', ...ulimitFlags(), 'docker.io/library/alpine:3.20']),
      );
      family.pulled.push(...layoutBlobs(bed.images.alpine.digest));
      const container = from.stdout.trim().split('\n').pop() ?? '';
      if (requireProgram('busybox')) {
        // The default (OCI) isolation; no network (netavark needs nft, which the chroot lacks).
        await step('buildah', 'run --network none', () =>
          home.buildah([
            'run',
            '--network',
            'none',
            container,
            '--',
            'sh',
            '-c',
            'echo built by buildah > /etc/built',
          ]),
        );
      } else {
        writeFileSync(path.join(shared, 'built'), 'built by buildah\n');
        await home.buildah(['copy', container, `${mounts.shared.inside}/built`, '/etc/built']);
      }
      await step('buildah', 'commit', () => home.buildah(['commit', container, 'localhost/built:1']));
      const target = `${mirrorHost()}/buildah-built`;
      const push = await step('buildah', 'push (hosted buildah-built:1)', async () => {
        const before = await mirrorRequestCounts(bed.mirror.url);
        await home.buildah([
          'push',
          '--tls-verify=false',
          '--digestfile',
          `${home.inside}/built.digest`,
          'localhost/built:1',
          `docker://${target}:1`,
        ]);
        return requestDelta(before, await mirrorRequestCounts(bed.mirror.url));
      });
      // The new layer and the config are uploaded; the manifest is stored as hosted.
      expect(deltaSum(push, 'upload PUT')).toBeGreaterThanOrEqual(1);
      expect(deltaSum(push, 'manifest PUT hosted 201')).toBe(1);
      const digest = readFileSync(path.join(home.host, 'built.digest'), 'utf8').trim();

      const back = newHome('buildah-back', mirrorRegistriesConf(mirrorHost()), 'vfs');
      await step('buildah', 'pull buildah-built@<digest>', () =>
        back.buildah(['pull', '--tls-verify=false', `${target}@${digest}`]),
      );
      const again = await back.buildah(['from', ...ulimitFlags(), `${target}@${digest}`]);
      const copy = again.stdout.trim().split('\n').pop() ?? '';
      if (requireProgram('busybox')) {
        const { stdout } = await back.buildah(['run', '--network', 'none', copy, '--', 'cat', '/etc/built']);
        expect(stdout).toBe('built by buildah\n');
      }
    });

    it('fetched each unique blob from upstream once, and nothing went around the mirror', () => {
      expectEachBlobOnce(family);
    });
  });

  describe('skopeo 1.18', () => {
    let family: Family;
    let home: ContainersHome;
    /** The refused attempts a test provokes on purpose (skopeo listing tags on the primary). */
    const provoked: string[] = [];

    beforeAll(async () => {
      family = await startFamily('skopeo');
      home = newHome('skopeo', mirrorRegistriesConf(mirrorHost()), 'vfs');
    });

    it('copies an image from the mirror, which serves it and logs it in its metrics', async () => {
      const { stdout: version } = await runInDebian13(mounts, 'skopeo', ['--version'], {
        proxyUrl: bed.refusing.url,
      });
      expect(version).toMatch(/skopeo version 1\.18\./);

      const metricsBefore = await (await fetch(`${bed.mirror.url}/metrics`)).text();
      const blobGetsBefore = bed.front.count('GET', /\/blobs\//);
      const inside = `${mounts.shared.inside}/alpine`;
      await step('skopeo', 'copy alpine:3.20 to dir:', () =>
        runInDebian13(
          mounts,
          'skopeo',
          [
            'copy',
            '--retry-times',
            '0',
            '--src-tls-verify=false',
            `docker://${mirrorHost()}/library/alpine:3.20`,
            `dir:${inside}`,
          ],
          { proxyUrl: bed.refusing.url },
        ),
      );
      family.pulled.push(...layoutBlobs(bed.images.alpine.digest));

      // What skopeo wrote (seen from the host through the shared folder) is the image upstream has.
      const out = path.join(shared, 'alpine');
      const manifest = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')) as Manifest;
      expect(manifest.layers.length).toBe(2);
      for (const layer of manifest.layers) {
        expect(existsSync(path.join(out, layer.digest.replace('sha256:', '')))).toBe(true);
      }

      // The mirror served it: manifest and blob requests counted, fetched from upstream (cold cache).
      const metricsAfter = await (await fetch(`${bed.mirror.url}/metrics`)).text();
      const served = (text: string, endpoint: string) =>
        metricSum(text, 'hubcache_requests_total', [`endpoint="${endpoint}"`, 'method="GET"', 'code="200"']);
      expect(served(metricsAfter, 'manifest')).toBeGreaterThan(served(metricsBefore, 'manifest'));
      expect(served(metricsAfter, 'blob') - served(metricsBefore, 'blob')).toBeGreaterThanOrEqual(3);
      expect(bed.front.count('GET', /\/blobs\//)).toBeGreaterThan(blobGetsBefore);
      // And nothing went around the mirror.
      expect(bed.refusing.attempts.slice(family.refusedStart)).toEqual([]);

      rmSync(out, { recursive: true, force: true });
    });

    it('inspects through the registries.conf mirror with --no-tags (tags are listed on the primary only)', async () => {
      const ref = 'docker://docker.io/library/alpine:3.20';
      const conf = ['--registries-conf', home.registriesConf];
      const { stdout } = await step('skopeo', 'inspect --no-tags alpine:3.20 (registries.conf)', () =>
        home.skopeo([...conf, 'inspect', '--no-tags', ref]),
      );
      const inspected = JSON.parse(stdout) as { Architecture: string; Layers: string[] };
      expect(inspected.Architecture).toBe('amd64');
      expect(inspected.Layers).toEqual(layoutBlobs(bed.images.alpine.digest).slice(1));

      // Without --no-tags skopeo lists the tags on registry-1.docker.io, never on a mirror: refused.
      const refusedBefore = bed.refusing.attempts.length;
      await expect(home.skopeo([...conf, 'inspect', ref])).rejects.toThrow(/registry-1\.docker\.io/);
      const attempts = bed.refusing.attempts.slice(refusedBefore);
      expect(attempts.length).toBeGreaterThan(0);
      expect(new Set(attempts)).toEqual(new Set(['CONNECT registry-1.docker.io:443']));
      provoked.push(...attempts);
    });

    it('inspect --raw of an OCI index by digest gives its exact bytes', async () => {
      const { stdout } = await step('skopeo', 'inspect --raw multi@<index digest> (registries.conf)', () =>
        home.skopeo([
          '--registries-conf',
          home.registriesConf,
          'inspect',
          '--raw',
          `docker://docker.io/library/multi@${bed.images.multi.digest}`,
        ]),
      );
      expect(`sha256:${createHash('sha256').update(stdout).digest('hex')}`).toBe(bed.images.multi.digest);
      const index = JSON.parse(stdout) as Index;
      expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
      expect(index.manifests).toHaveLength(2);
    });

    it('fetched each unique blob from upstream once, and only the provoked tag listing was refused', () => {
      expectEachBlobOnce(family, provoked);
    });
  });

  it('leaves no podman or buildah mount behind once each storage is reset', async () => {
    for (const home of homes) await home.reset();
    expect(mountsUnder([path.join(mounts.dir, mounts.shared.inside), shared])).toEqual([]);
  });
});
