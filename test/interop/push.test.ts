import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runClient } from '../fixtures/daemon-process.js';
import { type Dockerd, startDockerd } from '../fixtures/dockerd.js';
import { type Descriptor, ImageLayout } from '../fixtures/image-layout.js';
import { requireProgram } from '../fixtures/require-program.js';
import { inspectRaw, pushLayout } from '../fixtures/skopeo-cli.js';
import { bedPrograms, PUSHER, startTestBed, type TestBed } from '../fixtures/test-bed.js';

const haveDocker = Boolean(
  requireProgram('dockerd') && requireProgram('containerd') && requireProgram('runc'),
);
// Debian's `docker-compose` (1.29, Python) drives this dockerd through DOCKER_HOST; CI installs it
// (.ci/run), so under CI=true a missing one fails here. Off CI the batch falls back to a loop.
const compose = haveDocker ? requireProgram('docker-compose') : undefined;

const REGISTRY = '127.0.0.1:5000';
const TAG = 'v0.1';
const SERVICES = ['hasher', 'rng', 'webui', 'worker'] as const;
/** What the worker's build writes (a RUN step: the classic builder runs a container for it). */
const WORKER_FILE = '/srv/worker.txt';
const WORKER_TEXT = 'worker v0.1 built by dockerd';

const sha256 = (bytes: Buffer | string) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** Sum of hubcache_requests_total over the series whose labels include all of `labels`. */
function requestCount(metrics: string, labels: Record<string, string>): number {
  let total = 0;
  for (const line of metrics.split('\n')) {
    const m = /^hubcache_requests_total\{([^}]*)\} (\d+(?:\.\d+)?)$/.exec(line);
    if (!m?.[1] || !m[2]) continue;
    const have = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) total += Number(m[2]);
  }
  return total;
}

/**
 * The seeds' walkthrough, as the issue writes it, with the real programs: one process on
 * 127.0.0.1:5000 is dockerd's Docker Hub mirror (registry-mirrors) and the registry the team pushes
 * to. dockerd pulls busybox through the mirror, tags and pushes it, builds a worker image with a RUN
 * step and pushes it, docker-compose builds and pushes four services as `${REGISTRY}/name:${TAG}`,
 * the catalog lists exactly what is there, and after `docker rmi` the images pull back and run.
 * skopeo then pushes an OCI image and an OCI index, reads them back byte for byte, and copies them
 * to other repositories without uploading anything again. A push to library/… is refused. The upstream (the real registry behind the counting
 * front) never hears of a hosted name once it is hosted, and no client goes around the mirror.
 *
 * The tests run in order and build on each other (one dockerd, one mirror).
 */
describe.skipIf(!bedPrograms() || !haveDocker)(
  'pushing to the mirror with real clients (the seeds’ walkthrough)',
  () => {
    let bed: TestBed;
    let dockerd: Dockerd;
    let clientEnv: NodeJS.ProcessEnv;
    /** Where the upstream's request log stood when each hosted name became hosted. */
    const hostedSince = new Map<string, number>();
    const imageIds = new Map<string, string>();
    const docker = (args: string[]) => dockerd.docker(args);
    const imageId = async (ref: string) =>
      (await docker(['image', 'inspect', '--format', '{{.Id}}', ref])).stdout.trim();
    const catalog = async () =>
      ((await (await fetch(`http://${REGISTRY}/v2/_catalog`)).json()) as { repositories: string[] })
        .repositories;
    const metrics = async () => (await fetch(`http://${REGISTRY}/metrics`)).text();
    const markHosted = (...names: string[]) => {
      for (const n of names) if (!hostedSince.has(n)) hostedSince.set(n, bed.front.requests.length);
    };
    /** The upstream paths a hosted name would have reached, had the mirror sent it there. */
    const upstreamPaths = (name: string) =>
      name.includes('/') ? [`/v2/${name}/`] : [`/v2/${name}/`, `/v2/library/${name}/`];
    const upstreamRequestsFor = (name: string, from = 0) =>
      bed.front.requests
        .slice(from)
        .filter((r) => upstreamPaths(name).some((p) => r.path.startsWith(p)))
        .map((r) => `${r.method} ${r.path} ${r.status}`);

    beforeAll(async () => {
      bed = await startTestBed({ listen: REGISTRY, bigMiB: 1 });
      dockerd = await startDockerd(bed.mirror.url, bed.env);
      clientEnv = {
        ...bed.env,
        DOCKER_HOST: (dockerd.config.hosts as string[])[0],
        // Debian's dockerd 20.10 ships no buildx: the classic builder.
        DOCKER_BUILDKIT: '0',
        COMPOSE_DOCKER_CLI_BUILD: '0',
        REGISTRY,
        TAG,
      };
    }, 600_000);

    afterAll(async () => {
      await dockerd?.stop();
      await bed?.stop();
    });

    afterEach(() => {
      // Nothing went around the mirror (dockerd falls back to Docker Hub on a mirror error).
      expect(bed.refusing.attempts).toEqual([]);
    });

    it('docker pull busybox through registry-mirrors; a push to 127.0.0.1:5000/library/busybox is refused (403 DENIED)', async () => {
      expect(bed.mirror.url).toBe(`http://${REGISTRY}`);
      await docker(['pull', 'busybox']);
      expect(bed.front.count('GET', /^\/v2\/library\/busybox\/manifests\//)).toBeGreaterThan(0);
      // library/ is Docker Hub's namespace for official images: no --hosted pattern allows it here.
      await docker(['tag', 'busybox', `${REGISTRY}/library/busybox:mine`]);
      const failure = await docker(['push', `${REGISTRY}/library/busybox:mine`]).then(
        () => undefined,
        (err: Error) => err.message,
      );
      expect(failure).toMatch(/denied: library\/ is Docker Hub's namespace/);
      await docker(['rmi', `${REGISTRY}/library/busybox:mine`]);
      // Refused before anything was stored: library/busybox is still the mirrored image only.
      expect(await catalog()).toEqual(['library/busybox']);
      const tags = (await (await fetch(`http://${REGISTRY}/v2/library/busybox/tags/list`)).json()) as {
        tags: string[];
      };
      expect(tags.tags).toEqual(['latest']); // the upstream's tags: no `mine`
    });

    it('docker tag busybox 127.0.0.1:5000/busybox && docker push 127.0.0.1:5000/busybox', async () => {
      await docker(['tag', 'busybox', `${REGISTRY}/busybox`]);
      const push = await docker(['push', `${REGISTRY}/busybox`]);
      markHosted('busybox');
      const digest = /digest: (sha256:[0-9a-f]{64})/.exec(push.stdout)?.[1];
      expect(digest, push.stdout).toBeDefined();
      imageIds.set('busybox', await imageId(`${REGISTRY}/busybox`));

      // Served from the hosted repository: the exact manifest docker pushed, under the name as pushed.
      const res = await fetch(`http://${REGISTRY}/v2/busybox/manifests/latest`, {
        headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' },
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('docker-content-digest')).toBe(digest);
      expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(digest);
      expect(await (await fetch(`http://${REGISTRY}/v2/busybox/tags/list`)).json()).toEqual({
        name: 'busybox',
        tags: ['latest'],
      });
    });

    it('docker build (classic builder, a RUN step with --network none) FROM the pushed busybox, tag worker:v0.1, push', async () => {
      const project = path.join(bed.work, 'dockercoins');
      const worker = path.join(project, 'worker');
      mkdirSync(worker, { recursive: true });
      writeFileSync(
        path.join(worker, 'Dockerfile'),
        `FROM ${REGISTRY}/busybox\nRUN mkdir -p ${path.dirname(WORKER_FILE)} && echo '${WORKER_TEXT}' > ${WORKER_FILE}\n`,
      );
      await runClient(
        '/usr/bin/docker',
        ['build', '--network', 'none', '-t', `${REGISTRY}/worker:${TAG}`, worker],
        clientEnv,
      );
      const run = await docker([
        'run',
        '--rm',
        '--network',
        'none',
        `${REGISTRY}/worker:${TAG}`,
        'cat',
        WORKER_FILE,
      ]);
      expect(run.stdout).toBe(`${WORKER_TEXT}\n`);
      await docker(['push', `${REGISTRY}/worker:${TAG}`]);
      markHosted('worker');
      imageIds.set('worker', await imageId(`${REGISTRY}/worker:${TAG}`));
      expect(await (await fetch(`http://${REGISTRY}/v2/worker/tags/list`)).json()).toEqual({
        name: 'worker',
        tags: [TAG],
      });
    });

    it('builds and pushes the compose batch $REGISTRY/{hasher,rng,webui,worker}:$TAG (docker-compose)', async () => {
      const project = path.join(bed.work, 'dockercoins');
      for (const service of SERVICES) {
        if (service === 'worker') continue; // the context built above: rebuilt from the build cache
        mkdirSync(path.join(project, service), { recursive: true });
        writeFileSync(
          path.join(project, service, 'Dockerfile'),
          `FROM ${REGISTRY}/busybox\nCOPY app.txt /app.txt\nCMD ["cat", "/app.txt"]\n`,
        );
        writeFileSync(path.join(project, service, 'app.txt'), `${service} ${TAG}\n`);
      }
      // Compose file format 2.4: `build.network` (the RUN step needs `none`: this dockerd has no bridge).
      const yml = [
        'version: "2.4"',
        'services:',
        ...SERVICES.flatMap((s) => [
          `  ${s}:`,
          '    build:',
          `      context: ${s}`,
          '      network: none',
          `    image: \${REGISTRY}/${s}:\${TAG}`,
        ]),
      ].join('\n');
      const file = path.join(project, 'dockercoins.yml');
      writeFileSync(file, `${yml}\n`);
      if (compose) {
        await runClient(compose, ['-f', file, 'build'], clientEnv);
        await runClient(compose, ['-f', file, 'push'], clientEnv);
      } else {
        // Off CI without docker-compose: the same batch as a build/tag/push loop.
        for (const s of SERVICES) {
          await runClient(
            '/usr/bin/docker',
            ['build', '--network', 'none', '-t', `${REGISTRY}/${s}:${TAG}`, path.join(project, s)],
            clientEnv,
          );
          await docker(['push', `${REGISTRY}/${s}:${TAG}`]);
        }
      }
      markHosted(...SERVICES);
      // The worker's build was cached: the same image, pushed again under the same tag.
      expect(await imageId(`${REGISTRY}/worker:${TAG}`)).toBe(imageIds.get('worker'));
      for (const s of SERVICES) {
        imageIds.set(s, await imageId(`${REGISTRY}/${s}:${TAG}`));
        expect(await (await fetch(`http://${REGISTRY}/v2/${s}/tags/list`)).json()).toEqual({
          name: s,
          tags: [TAG],
        });
      }
    });

    it('curl /v2/_catalog lists the pushed names beside the mirrored library/busybox', async () => {
      expect(await catalog()).toEqual(['busybox', 'hasher', 'library/busybox', 'rng', 'webui', 'worker']);
    });

    it('every node pulls from it: after docker rmi, the images pull back from 127.0.0.1:5000 and run', async () => {
      await docker([
        'rmi',
        '-f',
        'busybox',
        `${REGISTRY}/busybox`,
        ...SERVICES.map((s) => `${REGISTRY}/${s}:${TAG}`),
      ]);
      const left = await docker(['images', '-q']);
      expect(left.stdout.trim()).toBe('');

      await docker(['pull', `${REGISTRY}/worker:${TAG}`]);
      expect(await imageId(`${REGISTRY}/worker:${TAG}`)).toBe(imageIds.get('worker'));
      const out = await docker([
        'run',
        '--rm',
        '--network',
        'none',
        `${REGISTRY}/worker:${TAG}`,
        'cat',
        WORKER_FILE,
      ]);
      expect(out.stdout).toBe(`${WORKER_TEXT}\n`);

      await docker(['pull', `${REGISTRY}/busybox`]);
      expect(await imageId(`${REGISTRY}/busybox`)).toBe(imageIds.get('busybox'));
      for (const s of ['hasher', 'webui'] as const) {
        await docker(['pull', `${REGISTRY}/${s}:${TAG}`]);
        expect(await imageId(`${REGISTRY}/${s}:${TAG}`)).toBe(imageIds.get(s));
        const app = await docker(['run', '--rm', '--network', 'none', `${REGISTRY}/${s}:${TAG}`]);
        expect(app.stdout).toBe(`${s} ${TAG}\n`);
      }
    });

    describe('skopeo', () => {
      let layout: ImageLayout;
      let image: Descriptor;
      let index: Descriptor;

      beforeAll(async () => {
        layout = new ImageLayout(path.join(bed.work, 'skopeo-layout'));
        const base = await layout.layer([{ name: 'app/base.txt', content: 'team app base\n' }]);
        const code = await layout.layer([{ name: 'app/code.bin', random: 256 * 1024 }]);
        const amd = layout.image([base, code], { os: 'linux', architecture: 'amd64' });
        const armCode = await layout.layer([{ name: 'app/code.bin', random: 128 * 1024 }]);
        const arm = layout.image([base, armCode], { os: 'linux', architecture: 'arm64' });
        image = amd.manifest;
        index = layout.index([amd, arm]);
        layout.tag('app', image);
        layout.tag('multi', index);
      });

      /** The manifest digest a HEAD reports (full Accept, as every real client sends). */
      const headDigest = async (name: string, ref: string) => {
        const res = await fetch(`http://${REGISTRY}/v2/${name}/manifests/${ref}`, {
          method: 'HEAD',
          headers: {
            accept: [
              'application/vnd.oci.image.index.v1+json',
              'application/vnd.oci.image.manifest.v1+json',
              'application/vnd.docker.distribution.manifest.list.v2+json',
              'application/vnd.docker.distribution.manifest.v2+json',
            ].join(', '),
          },
        });
        expect(res.status, `${name}:${ref}`).toBe(200);
        return res.headers.get('docker-content-digest');
      };
      /** skopeo copy docker://REGISTRY/… oci:OUT:back, then the digest the copy's index.json names. */
      const copyBack = async (source: string, all: boolean) => {
        const out = path.join(bed.work, `back-${source.replace(/\W/g, '_')}`);
        await runClient(
          'skopeo',
          [
            'copy',
            '--retry-times',
            '0',
            '--src-tls-verify=false',
            ...(all ? ['--all'] : []),
            `docker://${REGISTRY}/${source}`,
            `oci:${out}:back`,
          ],
          bed.env,
        );
        const copied = JSON.parse(readFileSync(path.join(out, 'index.json'), 'utf8')) as {
          manifests: Descriptor[];
        };
        return copied.manifests[0]?.digest;
      };

      it('copies an OCI image and (--all) an OCI index in, and reads both back byte for byte', async () => {
        await pushLayout(layout.dir, 'app', `${REGISTRY}/team/app:1`, { env: bed.env });
        await pushLayout(layout.dir, 'multi', `${REGISTRY}/team/multi:1`, { env: bed.env, all: true });
        markHosted('team/app', 'team/multi');

        const raw = await inspectRaw(`${REGISTRY}/team/app:1`, { env: bed.env });
        expect(sha256(raw)).toBe(image.digest);
        expect(raw).toBe(layout.read(image.digest).toString());
        const rawIndex = await inspectRaw(`${REGISTRY}/team/multi:1`, { env: bed.env });
        expect(sha256(rawIndex)).toBe(index.digest);
        expect(JSON.parse(rawIndex).mediaType).toBe('application/vnd.oci.image.index.v1+json');
        expect(await headDigest('team/app', '1')).toBe(image.digest);
        expect(await headDigest('team/multi', '1')).toBe(index.digest);

        expect(await copyBack('team/app:1', false)).toBe(image.digest);
        expect(await copyBack('team/multi:1', true)).toBe(index.digest);
      });

      it('copies team/app:1 to team/app2:1 (and the index to team/multi2:1) storing nothing twice (blobs mounted, or uploaded and deduplicated)', async () => {
        // skopeo asks the destination for each blob first (HEAD). Content is scoped to repositories
        // (spec): a name not hosted yet does not have another repository's blobs, so the HEAD says
        // no and skopeo mounts what its blob info cache knows a source for, and uploads the rest.
        // Whichever way, the one content-addressed store holds every blob once: nothing new is stored.
        const uploads = (m: string) => ({
          posts: requestCount(m, { endpoint: 'upload', method: 'POST' }),
          mounts: requestCount(m, { endpoint: 'upload', method: 'POST', outcome: 'hit', code: '201' }),
          objects: Number(/^hubcache_cache_objects (\d+)/m.exec(m)?.[1]),
        });
        const before = uploads(await metrics());
        const copy = (all: boolean, from: string, to: string) =>
          runClient(
            'skopeo',
            [
              'copy',
              '--retry-times',
              '0',
              '--src-tls-verify=false',
              '--dest-tls-verify=false',
              ...(all ? ['--all'] : []),
              `docker://${REGISTRY}/${from}`,
              `docker://${REGISTRY}/${to}`,
            ],
            bed.env,
          );
        await copy(false, 'team/app:1', 'team/app2:1');
        markHosted('team/app2');
        await copy(true, 'team/multi:1', 'team/multi2:1');
        markHosted('team/multi2');
        const after = uploads(await metrics());
        expect(after.mounts - before.mounts).toBeGreaterThan(0);
        expect(after.objects).toBe(before.objects);
        expect(await headDigest('team/app2', '1')).toBe(image.digest);
        expect(await headDigest('team/multi2', '1')).toBe(index.digest);
        expect(sha256(await inspectRaw(`${REGISTRY}/team/multi2:1`, { env: bed.env }))).toBe(index.digest);
      });

      it('lists every hosted and mirrored repository in the catalog', async () => {
        expect(await catalog()).toEqual([
          'busybox',
          'hasher',
          'library/busybox',
          'rng',
          'team/app',
          'team/app2',
          'team/multi',
          'team/multi2',
          'webui',
          'worker',
        ]);
      });

      it('a push may not take over a name the upstream serves: skopeo and docker get denied, every node still pulls the upstream image', async () => {
        // other/small exists upstream only (pushed straight to the real registry).
        await pushLayout(layout.dir, 'app', `${new URL(bed.registry.url).host}/other/small:1`, {
          env: bed.env,
          creds: PUSHER,
        });
        const attempt = await pushLayout(layout.dir, 'multi', `${REGISTRY}/other/small:1`, {
          env: bed.env,
          all: true,
        }).then(
          () => 'pushed',
          (err: Error) => err.message,
        );
        expect(attempt).toMatch(/denied: other\/small is mirrored from the upstream/);
        // What every client gets is the upstream's image, by name and with containerd's ?ns=.
        expect(await headDigest('other/small', '1')).toBe(image.digest);
        const ns = await fetch(`http://${REGISTRY}/v2/other/small/manifests/1?ns=docker.io`, {
          headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
        });
        expect(ns.headers.get('docker-content-digest')).toBe(image.digest);
        // dockerd, which now has it cached through the mirror, is refused too.
        await docker(['pull', `${REGISTRY}/other/small:1`]);
        const denied = await docker(['push', `${REGISTRY}/other/small:1`]).then(
          () => 'pushed',
          (err: Error) => err.message,
        );
        expect(denied).toMatch(/denied: other\/small is mirrored/);
        await docker(['rmi', `${REGISTRY}/other/small:1`]);
      });
    });

    it('the upstream never saw a request for a hosted name', () => {
      expect([...hostedSince.keys()].sort()).toEqual([
        'busybox',
        'hasher',
        'rng',
        'team/app',
        'team/app2',
        'team/multi',
        'team/multi2',
        'webui',
        'worker',
      ]);
      // dockerd's pushes never made the mirror ask the upstream about these names, not even before
      // their first push (the only upstream traffic for them is the `docker pull busybox` of the
      // official image, library/busybox, before the push of `busybox`).
      for (const name of ['busybox', ...SERVICES]) {
        const official = (r: string) => r.includes(' /v2/library/busybox/');
        expect(
          upstreamRequestsFor(name).filter((r) => !official(r)),
          name,
        ).toEqual([]);
        expect(upstreamRequestsFor(name, hostedSince.get(name)), name).toEqual([]);
      }
      // skopeo HEADs a blob in the destination (and, from its blob info cache, which persists in
      // /var/lib/containers/cache across runs, in other repositories it saw the blob in) before its
      // first upload: a name not hosted yet is a mirrored name then, and the mirror may ask the
      // upstream. Once hosted, never.
      for (const [name, since] of hostedSince) {
        expect(upstreamRequestsFor(name, since), name).toEqual([]);
      }
    });
  },
);
