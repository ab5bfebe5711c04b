import { Command } from 'commander';
import { UsageIndex } from '../cache/usage-index.js';
import { hitCountsOf, hitRatio } from '../observe/metrics.js';
import { DEFAULT_MIRROR_URL, mirrorRequest, mirrorUrl } from './mirror-client.js';
import { existingDataDir } from './options.js';

/**
 * `hubcache stats`: cache size, object count and hit ratio since start, from a running mirror's
 * /metrics; or, with --data, size and count read from the cache folder (no server needed).
 */
export async function runStats(argv: string[]): Promise<void> {
  const command = new Command('hubcache stats')
    .description('cache size, objects and hit ratio (from a running mirror, or from --data)')
    .option('--url <url>', 'the running mirror', DEFAULT_MIRROR_URL)
    .option('--data <dir>', 'read the cache folder instead of asking a running mirror');
  command.parse(argv, { from: 'user' });
  const opts = command.opts<{ url: string; data?: string }>();
  if (opts.data) {
    const data = existingDataDir(opts.data);
    const usage = new UsageIndex(data);
    await usage.scan();
    print({ source: data, cacheBytes: usage.totalBytes, cacheObjects: usage.count });
    return;
  }
  const url = mirrorUrl(opts.url);
  const res = await mirrorRequest(url, '/metrics');
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${new URL('/metrics', url).href} answered ${res.statusCode}`);
  const sum = (name: string, filter: (labels: string) => boolean = () => true) =>
    text
      .split('\n')
      .filter((l) => l.startsWith(name) && filter(l))
      .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  // The hit ratio as the dashboard computes it (observe/metrics.ts HIT_RATIO), over the counter.
  const counts = hitCountsOf(text);
  print({
    source: opts.url,
    cacheBytes: sum('hubcache_cache_size_bytes'),
    cacheObjects: sum('hubcache_cache_objects'),
    requests: counts.requests,
    hitRatio: hitRatio(counts),
    bytesFromCache: sum('hubcache_served_bytes_total{', (l) => l.includes('source="cache"')),
    bytesFromUpstream: sum('hubcache_served_bytes_total{', (l) => l.includes('source="upstream"')),
  });
}

function print(stats: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(stats, null, 2)}\n`);
}
