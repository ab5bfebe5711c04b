import { Command, InvalidArgumentError } from 'commander';
import { BlobStore } from '../cache/blob-store.js';
import { type CollectResult, collectGarbage } from '../cache/collect.js';
import { removeOrphanMarkers, removeStaleTemps } from '../cache/gc.js';
import { checked, count } from '../config/kinds.js';
import { positiveInt } from '../config.js';
import { HostedRepositories } from '../hosted/repositories.js';
import { createLogger } from '../observe/logger.js';
import { tempDir } from '../storage/layout.js';
import { envHelp, existingDataDir, fromEnvironment, tableDefault } from './options.js';

/**
 * `hubcache gc`: what a crash or a hand edit can leave behind, removed while the mirror runs or not:
 * temp files no download has touched for --temp-age, and repository markers for manifests no longer
 * stored. With --blobs, also blobs no manifest refers to (cache/collect.ts), older than --grace: a
 * running mirror's pushes in progress are younger than that. In a running mirror, prefer
 * `POST /_hubcache/gc`, which also sees the uploads and downloads under way. --data and --grace
 * default as the mirror's --data and --gc-grace do (config/options.ts: the same variables, checked
 * the same way), so gc and the mirror it cleans agree.
 */
export async function runGc(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const command = new Command('hubcache gc')
    .description('remove crash leftovers (stale temp files) and orphaned repository markers')
    .option(
      '--data <dir>',
      `cache directory (${envHelp('data')})`,
      fromEnvironment('data', env) ?? tableDefault('data'),
    )
    .option(
      '--temp-age <seconds>',
      'temp files untouched this long are leftovers',
      positiveInt('--temp-age'),
      3600,
    )
    .option('--blobs', 'also remove blobs no manifest (hosted or cached) refers to')
    .option(
      '--grace <seconds>',
      `with --blobs: keep blobs newer than this (${envHelp('gcGrace')})`,
      (text: string) => seconds('--grace', text),
      fromEnvironment('gcGrace', env) ?? tableDefault('gcGrace'),
    );
  command.parse(argv, { from: 'user' });
  const opts = command.opts<{ data: string; tempAge: number; blobs?: boolean; grace: number }>();
  const data = existingDataDir(opts.data);
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

/** Seconds as the mirror's --gc-grace takes them (the table's kind), the message naming the flag. */
function seconds(flag: string, text: string): number {
  try {
    return checked(count, count.fromText(text));
  } catch (err) {
    throw new InvalidArgumentError(`${flag}: ${(err as Error).message}`);
  }
}
