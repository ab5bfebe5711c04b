import path from 'node:path';
import { Command } from 'commander';
import { BlobStore } from '../cache/blob-store.js';
import { type CollectResult, collectGarbage } from '../cache/collect.js';
import { removeOrphanMarkers, removeStaleTemps } from '../cache/gc.js';
import { positiveInt } from '../config.js';
import { HostedRepositories } from '../hosted/repositories.js';
import { createLogger } from '../observe/logger.js';
import { tempDir } from '../storage/layout.js';

/**
 * `hubcache gc`: what a crash or a hand edit can leave behind, removed while the mirror runs or not:
 * temp files no download has touched for --temp-age, and repository markers for manifests no longer
 * stored. With --blobs, also blobs no manifest refers to (cache/collect.ts), older than --grace: a
 * running mirror's pushes in progress are younger than that. In a running mirror, prefer
 * `POST /_hubcache/gc`, which also sees the uploads and downloads under way.
 */
export async function runGc(argv: string[]): Promise<void> {
  const command = new Command('hubcache gc')
    .description('remove crash leftovers (stale temp files) and orphaned repository markers')
    .option('--data <dir>', 'cache directory', process.env.HUBCACHE_DATA ?? './data')
    .option(
      '--temp-age <seconds>',
      'temp files untouched this long are leftovers',
      positiveInt('--temp-age'),
      3600,
    )
    .option('--blobs', 'also remove blobs no manifest (hosted or cached) refers to')
    .option(
      '--grace <seconds>',
      'with --blobs: keep blobs newer than this',
      positiveInt('--grace'),
      Number(process.env.HUBCACHE_GC_GRACE ?? 3600),
    );
  command.parse(argv, { from: 'user' });
  const opts = command.opts<{ data: string; tempAge: number; blobs?: boolean; grace: number }>();
  const data = path.resolve(opts.data);
  const temps = await removeStaleTemps(tempDir(data), opts.tempAge * 1000);
  const markers = await removeOrphanMarkers(data);
  let blobs: CollectResult | undefined;
  if (opts.blobs) {
    const log = createLogger('silent');
    const store = new BlobStore(data, 0, undefined, 0, log);
    await store.loadPins();
    const hosted = new HostedRepositories(
      data,
      store,
      { push: false, patterns: [], reserved: () => undefined },
      log,
    );
    await hosted.loadNames();
    blobs = await collectGarbage(store, hosted, data, opts.grace * 1000);
  }
  process.stdout.write(
    `${JSON.stringify({ data, tempFiles: temps.files, tempBytes: temps.bytes, orphanMarkers: markers, ...(blobs ? { blobs } : {}) })}\n`,
  );
}
