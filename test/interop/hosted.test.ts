import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runClient } from '../fixtures/daemon-process.js';
import { type Dockerd, startDockerd } from '../fixtures/dockerd.js';
import { requireProgram } from '../fixtures/require-program.js';
import { inspectRaw, pushLayout } from '../fixtures/skopeo-cli.js';
import { bedPrograms, startTestBed, type TestBed } from '../fixtures/test-bed.js';

const haveDocker = Boolean(
  requireProgram('dockerd') && requireProgram('containerd') && requireProgram('runc'),
);
const compose = requireProgram('docker-compose');
const SERVICES = ['hasher', 'rng', 'webui', 'worker'];
const HOSTED = /\/v2\/(library\/)?(busybox|hasher|rng|webui|worker)\//;

/**
 * The seeds' own workflow, as written: one process on 127.0.0.1:5000 is both the Docker Hub mirror
 * (dockerd's registry-mirrors) and the registry the team pushes to. dockerd pulls busybox through
 * the mirror, tags and pushes it, builds images FROM it and pushes them compose-style as
 * `${REGISTRY}/name:${TAG}`, the catalog lists them, and after `docker rmi` every image pulls back
 * and runs. The upstream never sees a request for a hosted name once it is hosted.
 */
describe.skipIf(!bedPrograms() || !haveDocker)('pushing to the mirror: the seeds’ walkthrough', () => {
  let bed: TestBed;
  let dockerd: Dockerd;
  const docker = (args: string[]) => dockerd.docker(args);
  const upstreamSawHosted = () =>
    bed.front.requests.filter((r) => HOSTED.test(r.path) && !r.path.startsWith('/v2/library/busybox/'))
      .length;

  beforeAll(async () => {
    bed = await startTestBed({ listen: '127.0.0.1:5000', bigMiB: 1 });
    dockerd = await startDockerd(bed.mirror.url, bed.env);
  }, 600_000);

  afterAll(async () => {
    await dockerd?.stop();
    await bed?.stop();
  });

  afterEach(() => {
    expect(bed.refusing.attempts).toEqual([]);
  });

  it('docker push, a compose batch, the catalog, then every image pulls back and runs', async () => {
    const registry = '127.0.0.1:5000';
    await docker(['pull', 'busybox']); // through registry-mirrors
    await docker(['tag', 'busybox', `${registry}/busybox`]);
    await docker(['push', `${registry}/busybox`]);

    // The compose project: four services, each an image built FROM the pushed busybox.
    const project = path.join(bed.work, 'dockercoins');
    for (const service of SERVICES) {
      mkdirSync(path.join(project, service), { recursive: true });
      writeFileSync(
        path.join(project, service, 'Dockerfile'),
        `FROM ${registry}/busybox\nCOPY app.txt /app.txt\n`,
      );
      writeFileSync(path.join(project, service, 'app.txt'), `${service} v0.1\n`);
    }
    const yml = [
      'version: "2"',
      'services:',
      ...SERVICES.flatMap((s) => [`  ${s}:`, `    build: ${s}`, `    image: \${REGISTRY}/${s}:\${TAG}`]),
    ].join('\n');
    writeFileSync(path.join(project, 'dockercoins.yml'), `${yml}\n`);
    const env = {
      ...bed.env,
      REGISTRY: registry,
      TAG: 'v0.1',
      DOCKER_HOST: (dockerd.config.hosts as string[])[0],
      DOCKER_BUILDKIT: '0',
      COMPOSE_DOCKER_CLI_BUILD: '0',
    };
    if (compose) {
      const file = path.join(project, 'dockercoins.yml');
      await runClient(compose, ['-f', file, 'build'], env);
      await runClient(compose, ['-f', file, 'push'], env);
    } else {
      // docker-compose missing (off CI only): the same batch by hand.
      for (const s of SERVICES) {
        await runClient(
          '/usr/bin/docker',
          ['build', '-t', `${registry}/${s}:v0.1`, path.join(project, s)],
          env,
        );
        await docker(['push', `${registry}/${s}:v0.1`]);
      }
    }

    const catalog = await (await fetch(`http://${registry}/v2/_catalog`)).json();
    expect(catalog).toEqual({
      repositories: ['busybox', 'hasher', 'library/busybox', 'rng', 'webui', 'worker'],
    });
    const tags = await (await fetch(`http://${registry}/v2/worker/tags/list`)).json();
    expect(tags).toEqual({ name: 'worker', tags: ['v0.1'] });

    // Every node pulls from it: forget the images, pull them back, run one.
    const seen = upstreamSawHosted();
    await docker([
      'rmi',
      '-f',
      `${registry}/busybox`,
      'busybox',
      ...SERVICES.map((s) => `${registry}/${s}:v0.1`),
    ]);
    for (const s of SERVICES) await docker(['pull', `${registry}/${s}:v0.1`]);
    await docker(['pull', `${registry}/busybox`]);
    const out = await docker([
      'run',
      '--rm',
      '--network',
      'none',
      `${registry}/worker:v0.1`,
      'cat',
      '/app.txt',
    ]);
    expect(out.stdout).toBe('worker v0.1\n');
    expect(upstreamSawHosted()).toBe(seen);
  });

  it('skopeo pushes an OCI multi-arch index and copies it between repositories without uploading again', async () => {
    const host = new URL(bed.mirror.url).host;
    const layout = path.join(bed.work, 'layout');
    await pushLayout(layout, 'multi', `${host}/team/multi:1`, { env: bed.env, all: true });
    const raw = await inspectRaw(`${host}/team/multi:1`, { env: bed.env });
    expect(JSON.parse(raw).mediaType).toBe('application/vnd.oci.image.index.v1+json');
    const digestOf = async (ref: string) =>
      (
        await fetch(`http://${host}/v2/${ref.replace(':', '/manifests/')}`, {
          method: 'HEAD',
          headers: { accept: 'application/vnd.oci.image.index.v1+json' },
        })
      ).headers.get('docker-content-digest');
    expect(await digestOf('team/multi:1')).toBe(bed.images.multi.digest);
    const pushedBytes = async () =>
      Number(
        /^hubcache_pushed_bytes_total (\d+)/m.exec(await (await fetch(`http://${host}/metrics`)).text())?.[1],
      );
    const before = await pushedBytes();
    // The first push of a name HEADs its blobs before the name is hosted, so the upstream may have
    // been asked then; from here on it must not be.
    const upstreamBefore = bed.front.requests.length;
    await runClient(
      'skopeo',
      [
        'copy',
        '--all',
        '--src-tls-verify=false',
        '--dest-tls-verify=false',
        `docker://${host}/team/multi:1`,
        `docker://${host}/team/copy:1`,
      ],
      bed.env,
    );
    expect(await digestOf('team/copy:1')).toBe(bed.images.multi.digest);
    expect(await pushedBytes()).toBe(before); // one store: nothing uploaded twice
    expect(bed.front.requests.slice(upstreamBefore).filter((r) => /\/v2\/team\//.test(r.path))).toEqual([]);
  });
});
