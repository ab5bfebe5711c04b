import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { RunningMirror } from '../../src/listen.js';
import { type FakeRegistry, startFakeRegistry } from './fake-registry.js';
import { addImage, get, mirrorFor, OCI_INDEX, OCI_MANIFEST, tempDataDir } from './harness.js';

let upstream: FakeRegistry;
let mirror: RunningMirror;
let data: Awaited<ReturnType<typeof tempDataDir>>;
const prefetch = async (args: string[]) =>
  JSON.parse(
    (
      await promisify(execFile)(process.execPath, [
        '--import',
        'tsx',
        'src/main.ts',
        'prefetch',
        '--url',
        mirror.url,
        ...args,
      ])
    ).stdout,
  );

beforeEach(async () => {
  upstream = await startFakeRegistry();
  data = await tempDataDir();
  // Layer prefetch off: the command's own counts of what it fetched are pinned here.
  mirror = await mirrorFor(upstream, data.dir, ['--prefetch-layers', '0']);
});

afterEach(async () => {
  await mirror.close();
  await upstream.close();
  await data.remove();
});

it('prefetch warms the cache with the chosen platforms, then everything is a hit', async () => {
  const amd = addImage(upstream, 'library/multi', 'amd', 10_000);
  const arm = addImage(upstream, 'library/multi', 'arm', 20_000);
  const single = addImage(upstream, 'library/single', '1', 5_000);
  upstream.addManifest(
    'library/multi',
    'latest',
    {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        {
          mediaType: OCI_MANIFEST,
          digest: amd.manifestDigest,
          size: amd.manifestBytes.length,
          platform: { os: 'linux', architecture: 'amd64' },
        },
        {
          mediaType: OCI_MANIFEST,
          digest: arm.manifestDigest,
          size: arm.manifestBytes.length,
          platform: { os: 'linux', architecture: 'arm64' },
        },
      ],
    },
    OCI_INDEX,
  );
  const list = path.join(data.dir, 'images.txt');
  writeFileSync(list, '# deploy set\nsingle:1\n');
  const first = await prefetch(['multi', '--platform', 'linux/arm64', '--file', list]);
  expect(first).toMatchObject({ images: 2, manifests: 3, blobs: 4, alreadyCached: 0 });
  expect(upstream.count('GET', new RegExp(arm.layerDigest))).toBe(1);
  expect(upstream.count('GET', new RegExp(amd.layerDigest))).toBe(0);
  await expect.poll(() => mirror.mirror.blobs.inflightCount).toBe(0);
  const before = upstream.requests.length;
  // Under the names that reference them (issue 14: a name serves only what it is known to have).
  for (const [name, digest] of [
    ['multi', arm.layerDigest],
    ['multi', arm.configDigest],
    ['single', single.layerDigest],
  ]) {
    expect((await get(`${mirror.url}/v2/library/${name}/blobs/${digest}`)).headers['x-cache']).toBe('HIT');
  }
  expect(upstream.requests.length).toBe(before);
  const all = await prefetch(['multi:latest', '--all-platforms']);
  expect(all).toMatchObject({ images: 1, manifests: 3, blobs: 4 });
  expect(upstream.count('GET', new RegExp(amd.layerDigest))).toBe(1);
});

it('prefetch --pin keeps an image through the size bound, also across a restart', async () => {
  await mirror.close();
  mirror = await mirrorFor(upstream, data.dir, ['--max-size', '7MiB']);
  const MiB = 1024 * 1024;
  const blobFile = (digest: string) =>
    path.join(data.dir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));
  const { existsSync } = await import('node:fs');
  const a = addImage(upstream, 'library/a', '1', 3 * MiB);
  const result = await prefetch(['a:1', '--pin']);
  expect(result.pinnedBlobs).toBe(3); // manifest, config, layer
  await expect.poll(() => existsSync(blobFile(a.layerDigest))).toBe(true);
  await mirror.close();
  mirror = await mirrorFor(upstream, data.dir, ['--max-size', '7MiB']);
  for (const name of ['b', 'c', 'd']) {
    const img = addImage(upstream, `library/${name}`, '1', 3 * MiB);
    await get(`${mirror.url}/v2/${name}/blobs/${img.layerDigest}`);
    await expect.poll(() => existsSync(blobFile(img.layerDigest))).toBe(true);
  }
  // 12 MiB asked of a 7 MiB cache: the coldest (a) is pinned, so others went instead.
  await expect
    .poll(() => mirror.mirror.blobs.store.usage.totalBytes <= 7 * MiB || existsSync(blobFile(a.layerDigest)))
    .toBe(true);
  expect(existsSync(blobFile(a.layerDigest))).toBe(true);
});

it('an image that fails is reported in one line, the others are still fetched, and the exit code says so', async () => {
  const before = addImage(upstream, 'library/before', '1', 4_000);
  const after = addImage(upstream, 'library/after', '1', 6_000);
  const { runCli } = await import('./cli-harness.js');
  const run = await runCli(['prefetch', '--url', mirror.url, 'before:1', 'missing:1', 'after:1']);
  expect(run.code).not.toBe(0);
  const summary = JSON.parse(run.stdout);
  expect(summary).toMatchObject({ images: 2, layers: 2, blobs: 4 });
  expect(summary.failed).toEqual([{ image: 'missing:1', error: expect.stringContaining('404') }]);
  expect(upstream.count('GET', new RegExp(after.layerDigest))).toBe(1);
  expect(upstream.count('GET', new RegExp(before.layerDigest))).toBe(1);
  const lines = run.stderr.trim().split('\n');
  expect(lines.filter((l) => l.includes('missing:1'))).toEqual([
    expect.stringMatching(/^FAILED missing:1: 404/),
    expect.stringMatching(/^prefetch: 2 of 3 images ok, 1 failed \(missing:1\); 2 layers/),
  ]);
  // Not a terminal: one plain line per blob and per image, no control characters.
  expect(run.stderr.includes('\u001b')).toBe(false);
  expect(run.stderr.includes('\r')).toBe(false);
  expect(lines).toContain('ok before:1');
  expect(lines.filter((l) => l.startsWith('after:1: layer sha256:'))).toHaveLength(1);
});
