import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configWith } from '../../src/config.js';
import { type RunningMirror, startMirror } from '../../src/listen.js';
import { runClient } from '../fixtures/daemon-process.js';
import {
  type ByteCounter,
  type RefusingProxy,
  startByteCounter,
  startRefusingProxy,
} from '../fixtures/proxies.js';
import { requireProgram } from '../fixtures/require-program.js';
import { type RegistryProcess, startRegistry } from '../fixtures/upstream-process.js';

const havePodman = Boolean(
  requireProgram('podman') && requireProgram('docker-registry') && requireProgram('tar'),
);

/**
 * Issue 14: podman's partial pull of a zstd:chunked update (overlay storage, enable_partial_images)
 * asks for the changed chunks of a layer as several ranges in one request. Through the mirror it
 * must cost what it costs direct (within 10 %), not the whole layer.
 */
describe.skipIf(!havePodman)('podman partial pulls (zstd:chunked) through the mirror', () => {
  let work: string;
  let registry: RegistryProcess;
  let refusing: RefusingProxy;
  let mirror: RunningMirror;
  let direct: ByteCounter;
  let viaMirror: ByteCounter;

  const podman = (store: string, registriesConf: string, args: string[]) => {
    const dir = path.join(work, store);
    mkdirSync(dir, { recursive: true });
    const overlay = store !== 'build';
    writeFileSync(
      path.join(dir, 'storage.conf'),
      [
        '[storage]',
        `driver = "${overlay ? 'overlay' : 'vfs'}"`,
        `graphroot = "${dir}/graph"`,
        `runroot = "${dir}/run"`,
        ...(overlay
          ? [
              '[storage.options]',
              'pull_options = {enable_partial_images = "true", use_hard_links = "false", ostree_repos = ""}',
            ]
          : []),
        '',
      ].join('\n'),
    );
    writeFileSync(path.join(dir, 'registries.conf'), registriesConf);
    return runClient(
      'podman',
      ['--root', `${dir}/graph`, '--runroot', `${dir}/run`, '--log-level', 'debug', ...args],
      refusing.env({
        ...process.env,
        CONTAINERS_STORAGE_CONF: path.join(dir, 'storage.conf'),
        CONTAINERS_REGISTRIES_CONF: path.join(dir, 'registries.conf'),
      }),
    );
  };

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'hubcache-partial-'));
    registry = await startRegistry();
    refusing = await startRefusingProxy();
    mirror = await startMirror(
      configWith({ upstream: registry.url, dataDir: path.join(work, 'cache'), listen: '127.0.0.1:0' }),
    );
    direct = await startByteCounter(registry.url);
    viaMirror = await startByteCounter(mirror.url);

    // v1: 300 files of 64 KiB of random bytes (~19 MiB); v2: three of them rewritten, far apart.
    const root = path.join(work, 'root');
    mkdirSync(root);
    for (let i = 0; i < 300; i++) writeFileSync(path.join(root, `f${i}.bin`), randomBytes(65536));
    const tarOf = (name: string) =>
      runClient(
        'tar',
        ['-C', root, '--mtime=2020-01-01', '--owner=0', '--group=0', '-cf', path.join(work, name), '.'],
        process.env,
      );
    await tarOf('v1.tar');
    for (const i of [10, 150, 290]) writeFileSync(path.join(root, `f${i}.bin`), randomBytes(65536));
    await tarOf('v2.tar');
    const host = new URL(registry.url).host;
    for (const tag of ['v1', 'v2']) {
      await podman('build', '', ['import', path.join(work, `${tag}.tar`), `localhost/app:${tag}`]);
      await podman('build', '', [
        'push',
        '--tls-verify=false',
        '--compression-format',
        'zstd:chunked',
        `localhost/app:${tag}`,
        `docker://${host}/library/app:${tag}`,
      ]);
    }
  }, 600_000);

  afterAll(async () => {
    for (const store of ['build', 'direct', 'mirror'])
      await podman(store, '', ['system', 'reset', '--force']).catch(() => {});
    await mirror?.close();
    await direct?.close();
    await viaMirror?.close();
    await registry?.stop();
    await refusing?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('pulls a zstd:chunked update within 10 % of the bytes of the same pull direct', async () => {
    const directConf = `[[registry]]\nlocation = "${direct.host}"\ninsecure = true\n`;
    const mirrorConf = [
      '[[registry]]',
      'prefix = "docker.io"',
      'location = "registry-1.docker.io"',
      '[[registry.mirror]]',
      `location = "${viaMirror.host}"`,
      'insecure = true',
      '',
    ].join('\n');
    const pull = async (counter: ByteCounter, store: string, conf: string, ref: string) => {
      const before = counter.down;
      const { stderr } = await podman(store, conf, ['pull', ref]);
      expect(stderr, `${store} ${ref} was not a partial pull`).toMatch(/Retrieved partial blob/);
      return counter.down - before;
    };

    const directFirst = await pull(direct, 'direct', directConf, `${direct.host}/library/app:v1`);
    const directUpdate = await pull(direct, 'direct', directConf, `${direct.host}/library/app:v2`);
    const mirrorFirst = await pull(viaMirror, 'mirror', mirrorConf, 'docker.io/library/app:v1');
    const mirrorUpdate = await pull(viaMirror, 'mirror', mirrorConf, 'docker.io/library/app:v2');
    console.log({ directFirst, directUpdate, mirrorFirst, mirrorUpdate });

    expect(Math.abs(mirrorUpdate - directUpdate)).toBeLessThanOrEqual(directUpdate * 0.1);
    expect(Math.abs(mirrorFirst - directFirst)).toBeLessThanOrEqual(directFirst * 0.1);
    // Three rewritten 64 KiB files: far less than the 19 MiB layer.
    expect(mirrorUpdate).toBeLessThan(1024 * 1024);
    // The update asked for several chunks in one request, and the mirror answered as the registry does.
    expect(direct.answers).toContain('206 multipart/byteranges');
    expect(viaMirror.answers.filter((a) => a === '206 multipart/byteranges')).toHaveLength(
      direct.answers.filter((a) => a === '206 multipart/byteranges').length,
    );
    expect(refusing.attempts).toEqual([]);
  }, 600_000);
});
