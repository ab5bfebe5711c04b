import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Debian13Mounts,
  debian13Root,
  debian13Versions,
  ensureDebian13,
  mountDebian13,
  runInDebian13,
  unmountDebian13,
} from '../fixtures/debian13.js';
import { requireProgram } from '../fixtures/require-program.js';
import { bedPrograms, startTestBed, type TestBed } from '../fixtures/test-bed.js';

/** Root, chroot and mount on the host (ensureDebian13 installs debootstrap with apt-get if missing). */
const isRoot = process.getuid?.() === 0;
if (!isRoot && process.env.CI === 'true') {
  // CI must never go green by skipping (require-program.ts).
  throw new Error('the Debian 13 chroot needs root (debootstrap, mount, chroot)');
}
const canChroot = isRoot && Boolean(requireProgram('chroot') && requireProgram('mount'));

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

/**
 * Debian 13's clients (TESTBED.md "The newest clients") in a chroot sharing the host's network
 * namespace, against the mirror on 127.0.0.1, whose upstream is the real token-auth registry.
 */
describe.skipIf(!bedPrograms() || !canChroot)('the newest clients (Debian 13 chroot)', () => {
  let bed: TestBed;
  let mounts: Debian13Mounts | undefined;
  let shared: string;

  beforeAll(async () => {
    const times = await ensureDebian13();
    bed = await startTestBed({ bigMiB: 1 });
    shared = mkdtempSync(path.join(bed.work, 'shared-'));
    mounts = await mountDebian13(shared);
    // After mounting: podman refuses to start without /proc ("cannot retrieve cmd line").
    console.log(`debian13 root ${debian13Root()}`, times, await debian13Versions());
  }, 900_000);

  afterAll(async () => {
    await unmountDebian13(mounts);
    await bed?.stop();
  });

  it('skopeo 1.18 copies an image from the mirror, which serves it and logs it in its metrics', async () => {
    const { stdout: version } = await runInDebian13(mounts as Debian13Mounts, 'skopeo', ['--version'], {
      proxyUrl: bed.refusing.url,
    });
    expect(version).toMatch(/skopeo version 1\.18\./);

    const mirrorHost = new URL(bed.mirror.url).host;
    const metricsBefore = await (await fetch(`${bed.mirror.url}/metrics`)).text();
    const blobGetsBefore = bed.front.count('GET', /\/blobs\//);
    const inside = `${(mounts as Debian13Mounts).shared.inside}/alpine`;
    await runInDebian13(
      mounts as Debian13Mounts,
      'skopeo',
      [
        'copy',
        '--retry-times',
        '0',
        '--src-tls-verify=false',
        `docker://${mirrorHost}/library/alpine:3.20`,
        `dir:${inside}`,
      ],
      { proxyUrl: bed.refusing.url },
    );

    // What skopeo wrote (seen from the host through the shared folder) is the image upstream has.
    const out = path.join(shared, 'alpine');
    const manifest = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')) as {
      layers: { digest: string }[];
    };
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
    expect(bed.refusing.attempts).toEqual([]);

    rmSync(out, { recursive: true, force: true });
  });
});
