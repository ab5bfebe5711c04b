import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireProgram } from '../fixtures/require-program.js';
import { pullImage } from '../fixtures/skopeo-cli.js';
import { bedPrograms, startTestBed, type TestBed } from '../fixtures/test-bed.js';

const chromiumBin = requireProgram('chromium');
const SCREENSHOT = path.resolve(import.meta.dirname, '../../docs/dashboard.png');

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

  it('shows the hit ratio, bytes served from cache and cache size that /metrics reports', async () => {
    const host = new URL(bed.mirror.url).host;
    for (const ref of ['library/alpine:3.20', 'library/alpine:3.20', 'library/big:1', 'library/big:1']) {
      await pullImage(`${host}/${ref}`, path.join(bed.work, `ui-${Math.random()}`), { env: bed.env });
    }
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
      const page = await browser.newPage({ viewport: { width: 1100, height: 620 } });
      await page.goto(`${bed.mirror.url}/ui/`);
      await page.waitForSelector('body[data-ready="true"]');
      await page.screenshot({ path: SCREENSHOT });
      const shown = {
        hitRatio: await page.textContent('#hit-ratio'),
        bytesSaved: await page.textContent('#bytes-saved'),
        top: await page.textContent('#top'),
      };
      const metrics = await (await fetch(`${bed.mirror.url}/metrics`)).text();
      const sum = (filter: (l: string) => boolean) =>
        metrics
          .split('\n')
          .filter(filter)
          .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
      const isServed = (l: string) =>
        l.startsWith('hubcache_requests_total{') && /endpoint="(blob|manifest)"/.test(l);
      const hits = sum((l) => isServed(l) && /outcome="(hit|revalidated|stale)"/.test(l));
      const all = sum((l) => isServed(l) && !/outcome="none"/.test(l));
      const fromCache = sum((l) => l.startsWith('hubcache_served_bytes_total{source="cache"}'));
      expect(all).toBeGreaterThan(0);
      expect(shown.hitRatio).toBe(`${((hits / all) * 100).toFixed(1)} %`);
      expect(shown.bytesSaved).toBe(`${(fromCache / 1024 / 1024).toFixed(1)} MiB`);
      expect(shown.top).toContain('library/alpine');
      expect(shown.top).toContain('library/big');
    } finally {
      await browser.close();
    }
  });
});
