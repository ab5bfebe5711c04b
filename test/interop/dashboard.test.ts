import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hitCountsOf, hitRatio } from '../../src/observe/metrics.js';
import { requireProgram } from '../fixtures/require-program.js';
import { pullImage, pushLayout } from '../fixtures/skopeo-cli.js';
import { bedPrograms, startTestBed, type TestBed } from '../fixtures/test-bed.js';

const chromiumBin = requireProgram('chromium');
const SCREENSHOT = path.resolve(import.meta.dirname, '../../docs/dashboard.png');

/** The hit ratio from /metrics by the one definition (observe/metrics.ts HIT_RATIO), as `hubcache stats` reads it. */
function hitRatioOf(metrics: string): number | null {
  return hitRatio(hitCountsOf(metrics));
}

/** The dashboard in a real headless Chromium, its numbers checked against /metrics. */
describe.skipIf(!bedPrograms() || !chromiumBin)('dashboard', () => {
  let bed: TestBed;
  const profile = mkdtempSync(path.join(tmpdir(), 'hubcache-chromium-'));

  beforeAll(async () => {
    bed = await startTestBed({ bigMiB: 4 });
  }, 300_000);

  afterAll(async () => {
    await bed?.stop();
    rmSync(profile, { recursive: true, force: true });
  });

  it('shows at load the figures /metrics reports, pushes, errors and evictions, a chart with axes, and no refused push', async () => {
    const host = new URL(bed.mirror.url).host;
    for (const ref of ['library/alpine:3.20', 'library/alpine:3.20', 'library/big:1', 'library/big:1']) {
      await pullImage(`${host}/${ref}`, path.join(bed.work, `ui-${Math.random()}`), { env: bed.env });
    }
    const layout = path.join(bed.work, 'layout');
    // A push the mirror takes (a hosted repository), and one it refuses: library/multi is served
    // upstream (hosted/takeover.ts), and the upstream has none of alpine's blobs there (404 probes).
    await pushLayout(layout, 'alpine', `${host}/team/app:1`, { env: bed.env, format: 'v2s2' });
    await expect(
      pushLayout(layout, 'alpine', `${host}/library/multi:refused`, { env: bed.env, format: 'v2s2' }),
    ).rejects.toThrow();
    const browser = await chromium.launch({
      executablePath: chromiumBin as string,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--proxy-server=${bed.refusing.url}`,
        '--proxy-bypass-list=127.0.0.1;localhost',
      ],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 600 } });
      const text = async (p: Page, selector: string) => (await p.textContent(selector)) ?? '';
      // At load, before any refresh: the summary never answers, the figures are there anyway.
      let polled = 0;
      await page.route('**/_hubcache/summary', (route) => {
        polled++;
        return route.abort();
      });
      await page.goto(`${bed.mirror.url}/ui/`);
      await page.waitForSelector('body[data-ready="true"]');
      const metrics = await (await fetch(`${bed.mirror.url}/metrics`)).text();
      const sample = (prefix: string) =>
        metrics
          .split('\n')
          .filter((l) => l.startsWith(prefix))
          .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
      const ratio = hitRatioOf(metrics);
      expect(ratio).not.toBeNull();
      expect(polled).toBe(0);
      expect(await text(page, '#hit-ratio')).toBe(`${((ratio ?? 0) * 100).toFixed(1)} %`);
      const fromCache = sample('hubcache_served_bytes_total{source="cache"}');
      expect(await text(page, '#bytes-saved')).toBe(`${(fromCache / 1024 / 1024).toFixed(1)} MiB`);
      expect(await text(page, '#pushes')).toBe('1');
      expect(await text(page, '#hosted')).toBe('1');
      expect(await text(page, '#uploads')).toBe(String(sample('hubcache_upload_sessions')));
      expect(await text(page, '#downloads')).toBe('0');
      expect(await text(page, '#evictions')).toBe(String(sample('hubcache_evictions_total')));
      const errors = sample('hubcache_requests_total{') - sumOk(metrics);
      expect(Number(await text(page, '#errors'))).toBe(errors);
      expect(errors).toBeGreaterThan(0);
      const top = await text(page, '#top');
      expect(top).toContain('library/alpine');
      expect(top).toContain('library/big');
      expect(top).toContain('team/app');
      expect(top).not.toContain('library/multi');
      // The chart's scale and axes.
      expect(await page.locator('#chart .y-tick').allTextContents()).toEqual([
        '0 %',
        '25 %',
        '50 %',
        '75 %',
        '100 %',
      ]);
      expect(await text(page, '#y-title')).toBe('hit ratio (%)');
      expect(await page.locator('#chart .x-tick').allTextContents()).toEqual(
        expect.arrayContaining(['−4 min', '−1 min', expect.stringMatching(/^now \d\d:\d\d:\d\d$/)]),
      );
      expect(await text(page, '#x-title')).toContain('time');
      // Then it polls: a few samples on the chart, and the screenshot for docs/.
      await page.unroute('**/_hubcache/summary');
      await page.waitForSelector('body[data-samples="4"]', { timeout: 15_000 });
      await page.screenshot({ path: SCREENSHOT });
    } finally {
      await browser.close();
    }
  });
});

/** Registry API requests answered below 400. */
function sumOk(metrics: string): number {
  return metrics
    .split('\n')
    .filter((l) => l.startsWith('hubcache_requests_total{') && /code="[123]\d\d"/.test(l))
    .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}
