import { writeFileSync } from 'node:fs';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Containerd, startContainerd } from '../fixtures/containerd.js';
import { ImageLayout } from '../fixtures/image-layout.js';
import { requireProgram } from '../fixtures/require-program.js';
import { pullImage, pushLayout } from '../fixtures/skopeo-cli.js';
import { bedPrograms, startTestBed, type TestBed } from '../fixtures/test-bed.js';
import { type RegistryProcess, startRegistry } from '../fixtures/upstream-process.js';

const haveContainerd = Boolean(requireProgram('containerd') && requireProgram('ctr'));

/**
 * Three real upstreams through one mirror: the token-auth registry standing for docker.io, an open
 * one for ghcr.io, one with htpasswd Basic auth for a private registry. containerd reaches each
 * through its own hosts.toml (all pointing at the mirror); skopeo uses path prefixes.
 */
describe.skipIf(!bedPrograms() || !haveContainerd)('several registries through one mirror', () => {
  let bed: TestBed;
  let open: RegistryProcess;
  let privateReg: RegistryProcess;
  let containerd: Containerd;
  const registryRequests = () =>
    bed.front.requests.length + open.requests.length + privateReg.requests.length;

  beforeAll(async () => {
    bed = await startTestBed({ bigMiB: 2 });
    const htpasswd = path.join(bed.work, 'htpasswd');
    writeFileSync(htpasswd, `team:${bcrypt.hashSync('t3am', 4)}\n`);
    open = await startRegistry();
    privateReg = await startRegistry({ htpasswd });
    const layout = new ImageLayout(path.join(bed.work, 'layout-more'));
    const own = await layout.layer([{ name: 'etc/app', content: 'app\n' }]);
    layout.tag('app', layout.image([own]).manifest);
    await pushLayout(layout.dir, 'app', `${new URL(open.url).host}/owner/app:1`, { env: bed.env });
    await pushLayout(layout.dir, 'app', `${new URL(privateReg.url).host}/team/tool:1`, {
      env: bed.env,
      creds: 'team:t3am',
    });
    const config = path.join(bed.work, 'hubcache.yml');
    writeFileSync(
      config,
      [
        'registries:',
        '  ghcr.io:',
        `    url: ${open.url}`,
        '  private.example:',
        `    url: ${privateReg.url}`,
        '    username: team',
        '    password: t3am',
        '',
      ].join('\n'),
    );
    await bed.restartMirror({ extraArgs: ['--config', config] });
    containerd = await startContainerd(bed.mirror.url, bed.env, [
      'docker.io',
      'ghcr.io',
      'private.example',
      'quay.io',
    ]);
  }, 600_000);

  afterAll(async () => {
    await containerd?.stop();
    await open?.stop();
    await privateReg?.stop();
    await bed?.stop();
  });

  it('pulls from docker.io, ghcr.io and a Basic-auth private registry with containerd', async () => {
    await containerd.pull('docker.io/library/alpine:3.20');
    await containerd.pull('ghcr.io/owner/app:1');
    await containerd.pull('private.example/team/tool:1');
    const list = (await containerd.ctr(['images', 'ls', '-q'])).stdout;
    for (const ref of [
      'docker.io/library/alpine:3.20',
      'ghcr.io/owner/app:1',
      'private.example/team/tool:1',
    ]) {
      expect(list).toContain(ref);
    }
    expect(open.count('GET', /\/manifests\//)).toBeGreaterThan(0);
    expect(privateReg.count('GET', /\/manifests\//)).toBeGreaterThan(0);
    expect(bed.refusing.attempts).toEqual([]);
  });

  it('serves path prefixes to skopeo from the same cache entries', async () => {
    const host = new URL(bed.mirror.url).host;
    const before = registryRequests();
    await pullImage(`${host}/ghcr.io/owner/app:1`, path.join(bed.work, 'prefix-ghcr'), { env: bed.env });
    await pullImage(`${host}/private.example/team/tool:1`, path.join(bed.work, 'prefix-private'), {
      env: bed.env,
    });
    expect(registryRequests()).toBe(before);
    const catalog = (await (await fetch(`${bed.mirror.url}/v2/_catalog`)).json()) as {
      repositories: string[];
    };
    expect(catalog.repositories).toEqual(
      expect.arrayContaining(['ghcr.io/owner/app', 'private.example/team/tool', 'library/alpine']),
    );
  });

  it('refuses a registry it is not configured for, without any outbound request', async () => {
    const before = registryRequests();
    await expect(containerd.pull('quay.io/some/image:1')).rejects.toThrow();
    expect(registryRequests()).toBe(before);
    // ctr fell back to quay.io itself after the mirror's 404: the test proxy refused that.
    expect(bed.refusing.attempts.some((a) => a.includes('quay.io'))).toBe(true);
    bed.refusing.attempts.length = 0;
  });
});
