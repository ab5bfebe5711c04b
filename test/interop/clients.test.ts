import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Containerd, startContainerd } from '../fixtures/containerd.js';
import { type Dockerd, startDockerd } from '../fixtures/dockerd.js';
import { type Podman, preparePodman } from '../fixtures/podman.js';
import { requireProgram } from '../fixtures/require-program.js';
import { pullImage } from '../fixtures/skopeo-cli.js';
import { bedPrograms, startTestBed, type TestBed } from '../fixtures/test-bed.js';

const haveDocker = Boolean(
  requireProgram('dockerd') && requireProgram('containerd') && requireProgram('runc'),
);
const haveContainerd = Boolean(requireProgram('containerd') && requireProgram('ctr'));
const havePodman = Boolean(requireProgram('podman'));

/**
 * The real clients, each with its own config under a temp dir, pointed at the mirror, whose
 * upstream is the real token-auth docker-registry. Every client's HTTP(S)_PROXY is a proxy that
 * refuses and counts: a silent fallback to Docker Hub would show up there (and never leave).
 */
describe.skipIf(!bedPrograms())('real clients through the mirror', () => {
  let bed: TestBed;
  const blobGets = () => bed.front.count('GET', /\/blobs\//);
  /** Another client (skopeo) pulls the same image: the mirror must need nothing from upstream. */
  const expectWarmFor = async (ref: string) => {
    const before = blobGets();
    await pullImage(
      `${new URL(bed.mirror.url).host}/${ref}`,
      `${bed.work}/warm-${ref.replace(/\W/g, '_')}-${Date.now()}`,
      {
        env: bed.env,
      },
    );
    expect(blobGets(), ref).toBe(before);
  };

  beforeAll(async () => {
    bed = await startTestBed();
  }, 600_000);

  afterAll(async () => {
    await bed?.stop();
  });

  afterEach(() => {
    // No client may have tried to go around the mirror.
    expect(bed.refusing.attempts).toEqual([]);
  });

  describe.skipIf(!haveDocker)('dockerd with registry-mirrors', () => {
    let dockerd: Dockerd;
    beforeAll(async () => {
      dockerd = await startDockerd(bed.mirror.url, bed.env);
    }, 120_000);
    afterAll(async () => {
      await dockerd?.stop();
    });

    it('pulls an image, a multi-arch index, by digest and the big image, then runs what it pulled', async () => {
      await dockerd.docker(['pull', 'alpine:3.20']);
      await dockerd.docker(['pull', 'busybox']);
      // By digest: the digest library/alpine has upstream (skopeo stored it as Docker schema 2, so
      // not the layout's OCI digest, which only busybox's index names: content is per repository).
      const tagged = await fetch(`${bed.mirror.url}/v2/library/alpine/manifests/3.20`, {
        method: 'HEAD',
        headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' },
      });
      await dockerd.docker(['pull', `alpine@${tagged.headers.get('docker-content-digest')}`]);
      await dockerd.docker(['pull', 'big:1']);
      const images = await dockerd.docker(['images', '--format', '{{.Repository}}:{{.Tag}}']);
      expect(images.stdout).toContain('alpine:3.20');
      expect(images.stdout).toContain('busybox:latest');
      expect(images.stdout).toContain('big:1');
      if (requireProgram('busybox')) {
        const run = await dockerd.docker([
          'run',
          '--rm',
          '--network',
          'none',
          'alpine:3.20',
          'cat',
          '/etc/os-release',
        ]);
        expect(run.stdout).toContain('ID=hubcache-test');
      }
    });

    it('makes no upstream blob request when another client pulls the same images again', async () => {
      await expectWarmFor('library/alpine:3.20');
      await expectWarmFor('library/big:1');
    });

    it('pulls 127.0.0.1:PORT/hello-world directly: the short name is expanded to library/', async () => {
      const host = new URL(bed.mirror.url).host;
      await dockerd.docker(['pull', `${host}/hello-world`]);
      const catalog = (await (await fetch(`${bed.mirror.url}/v2/_catalog`)).json()) as {
        repositories: string[];
      };
      expect(catalog.repositories).toContain('library/hello-world');
    });

    it('reports a missing image as not found (404 MANIFEST_UNKNOWN from the mirror)', async () => {
      const res = await fetch(`${bed.mirror.url}/v2/library/no-such-image/manifests/latest`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code).toBe('MANIFEST_UNKNOWN');
      // dockerd then falls back to Docker Hub: here that fallback is refused by the proxy, not sent.
      await expect(dockerd.docker(['pull', 'no-such-image'])).rejects.toThrow();
      expect(bed.refusing.attempts.some((a) => a.includes('docker.io'))).toBe(true);
      bed.refusing.attempts.length = 0;
    });
  });

  describe.skipIf(!haveContainerd)('containerd (ctr) with a hosts.toml mirror', () => {
    let containerd: Containerd;
    beforeAll(async () => {
      containerd = await startContainerd(bed.mirror.url, bed.env);
    }, 120_000);
    afterAll(async () => {
      await containerd?.stop();
    });

    it('pulls an image, one other platform and all platforms of an index, and the big image', async () => {
      await containerd.pull('docker.io/library/alpine:3.20');
      await containerd.pull('docker.io/library/busybox:latest', ['--platform', 'linux/arm64']);
      await containerd.pull('docker.io/library/multi:1', ['--all-platforms']);
      await containerd.pull('docker.io/library/big:1');
      const list = await containerd.ctr(['images', 'ls', '-q']);
      for (const ref of ['alpine:3.20', 'busybox:latest', 'multi:1', 'big:1']) {
        expect(list.stdout).toContain(`docker.io/library/${ref}`);
      }
      await expectWarmFor('library/multi:1');
      await expectWarmFor('library/big:1');
    });
  });

  describe.skipIf(!havePodman)('podman with a registries.conf mirror', () => {
    let podman: Podman;
    beforeAll(() => {
      podman = preparePodman(new URL(bed.mirror.url).host, bed.env);
    });
    afterAll(async () => {
      await podman?.stop();
    });

    it('pulls a short name and the big image through the mirror', async () => {
      await podman.podman(['pull', 'alpine:3.20']);
      await podman.podman(['pull', 'docker.io/library/big:1']);
      const images = await podman.podman(['images', '--format', '{{.Repository}}:{{.Tag}}']);
      expect(images.stdout).toContain('docker.io/library/alpine:3.20');
      expect(images.stdout).toContain('docker.io/library/big:1');
      await expectWarmFor('library/alpine:3.20');
    });
  });

  describe('upstream outages as clients see them', () => {
    it('keeps serving cached images, and answers 503 naming the upstream for uncached ones', async () => {
      bed.front.fail = 'down';
      try {
        const out = `${bed.work}/outage-pull`;
        await pullImage(`${new URL(bed.mirror.url).host}/library/alpine:3.20`, out, { env: bed.env });
        const res = await fetch(`${bed.mirror.url}/v2/library/never-pulled/manifests/1`);
        const body = (await res.json()) as { errors: { code: string; message: string }[] };
        expect(res.status).toBe(503);
        expect(body.errors[0]?.code).toBe('UNAVAILABLE');
        expect(body.errors[0]?.message).toContain(new URL(bed.front.url).host);
      } finally {
        bed.front.fail = undefined;
      }
    });
  });
});

/**
 * The seeds' walkthrough as written: the mirror on 127.0.0.1:5000 (what swarm nodes reach through
 * the routing mesh), `docker pull 127.0.0.1:5000/hello-world`, `curl …/v2/_catalog`, and a look at
 * the cache folder on disk.
 */
describe.skipIf(!bedPrograms() || !haveDocker)('the walkthrough on 127.0.0.1:5000', () => {
  let bed: TestBed;
  let dockerd: Dockerd;

  beforeAll(async () => {
    bed = await startTestBed({ listen: '127.0.0.1:5000', bigMiB: 1 });
    dockerd = await startDockerd(bed.mirror.url, bed.env);
  }, 600_000);

  afterAll(async () => {
    await dockerd?.stop();
    await bed?.stop();
  });

  it('pulls 127.0.0.1:5000/hello-world, lists it in the catalog and keeps it on disk', async () => {
    expect(bed.mirror.url).toBe('http://127.0.0.1:5000');
    await dockerd.docker(['pull', '127.0.0.1:5000/hello-world']);
    await dockerd.docker(['pull', 'alpine:3.20']); // via registry-mirrors
    const catalog = await (await fetch('http://127.0.0.1:5000/v2/_catalog')).json();
    expect(catalog).toEqual({ repositories: ['library/alpine', 'library/hello-world'] });
    const tag = JSON.parse(
      readFileSync(path.join(bed.dataDir, 'repositories/library/hello-world/_tags/latest'), 'utf8'),
    );
    expect(tag.digest).toMatch(/^sha256:/);
    // Every stored blob is named by its own sha256.
    const blobs = path.join(bed.dataDir, 'blobs', 'sha256');
    for (const prefix of readdirSync(blobs)) {
      for (const file of readdirSync(path.join(blobs, prefix))) {
        const hex = createHash('sha256')
          .update(readFileSync(path.join(blobs, prefix, file)))
          .digest('hex');
        expect(hex).toBe(file);
      }
    }
    expect(bed.refusing.attempts).toEqual([]);
  });
});
