import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../fixtures/upstream-process.js';
import { runCli } from './cli-harness.js';
import { tempDataDir } from './harness.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function dataDir(): Promise<string> {
  const data = await tempDataDir();
  cleanups.push(() => data.remove());
  return data.dir;
}

/** A port of fetch()'s "bad ports" list (fetch refuses them without a connection), free here. */
const BAD_PORTS = [6000, 6665, 6666, 6667, 6668, 6669, 6697, 10080, 4190, 6566];

async function metricsOnBadPort(): Promise<number> {
  const metrics = 'hubcache_cache_size_bytes 1234\nhubcache_cache_objects 5\n';
  for (const port of BAD_PORTS) {
    const server: Server = createServer((_req, res) => res.end(metrics));
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!ok) continue;
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    return port;
  }
  throw new Error('no port of fetch()s bad-port list is free');
}

describe('hubcache stats: reaching the mirror', () => {
  it('reads a mirror on a port fetch() refuses (6000 and the like)', async () => {
    const port = await metricsOnBadPort();
    const { code, stdout, stderr } = await runCli(['stats', '--url', `http://127.0.0.1:${port}`]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ cacheBytes: 1234, cacheObjects: 5 });
  });

  it('a mirror not running: one line naming the URL tried and --url, no stack', async () => {
    const port = await freePort();
    const { code, stderr } = await runCli(['stats', '--url', `http://127.0.0.1:${port}`]);
    expect(code).not.toBe(0);
    expect(stderr.trim().split('\n')).toEqual([expect.stringContaining(`http://127.0.0.1:${port}`)]);
    expect(stderr).toContain('--url http://HOST:PORT');
    expect(stderr).toContain('ECONNREFUSED');
  });
});

describe('--data that does not exist is refused, not read as an empty cache', () => {
  it.each([['stats'], ['gc']])(
    'hubcache %s --data MISSING: one line naming --data and the path',
    async (sub) => {
      const missing = path.join(await dataDir(), 'no-such-folder');
      const { code, stdout, stderr } = await runCli([sub, '--data', missing]);
      expect(code).not.toBe(0);
      expect(stdout).toBe('');
      expect(stderr.trim().split('\n')).toEqual([expect.stringContaining(`--data ${missing}`)]);
      expect(existsSync(missing)).toBe(false);
    },
  );
});

describe('hubcache gc reads the environment as the mirror does (config/options.ts)', () => {
  /** A data folder holding one blob no manifest refers to, just written (younger than any grace > 0). */
  async function withOrphan(): Promise<string> {
    const dir = await dataDir();
    const bytes = Buffer.from('an orphan blob');
    const hex = createHash('sha256').update(bytes).digest('hex');
    mkdirSync(path.join(dir, 'blobs', 'sha256', hex.slice(0, 2)), { recursive: true });
    writeFileSync(path.join(dir, 'blobs', 'sha256', hex.slice(0, 2), hex), bytes);
    return dir;
  }

  it('HUBCACHE_HOSTED_GC_GRACE sets the grace of gc --blobs, and HUBCACHE_DATA the folder', async () => {
    const dir = await withOrphan();
    const kept = await runCli(['gc', '--blobs'], { HUBCACHE_DATA: dir, HUBCACHE_HOSTED_GC_GRACE: '3600' });
    expect(kept.stderr).toBe('');
    expect(JSON.parse(kept.stdout)).toMatchObject({ data: dir, blobs: { removed: 0, keptYoung: 1 } });
    const removed = await runCli(['gc', '--blobs'], { HUBCACHE_DATA: dir, HUBCACHE_HOSTED_GC_GRACE: '0' });
    expect(JSON.parse(removed.stdout)).toMatchObject({ blobs: { removed: 1 } });
  });

  it('the old name HUBCACHE_GC_GRACE still counts; a bad value is refused naming the variable', async () => {
    const dir = await withOrphan();
    const old = await runCli(['gc', '--blobs', '--data', dir], { HUBCACHE_GC_GRACE: '0' });
    expect(JSON.parse(old.stdout)).toMatchObject({ blobs: { removed: 1 } });
    const bad = await runCli(['gc', '--data', dir], { HUBCACHE_HOSTED_GC_GRACE: 'soon' });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim()).toBe(
      'hubcache gc: HUBCACHE_HOSTED_GC_GRACE (--gc-grace): expected a whole number ≥ 0',
    );
  });
});
