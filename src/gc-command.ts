import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { removeOrphanMarkers, removeStaleTemps } from './cache/gc.js';

/**
 * `hubcache gc`: what a crash or a hand edit can leave behind, removed while the mirror runs or not:
 * temp files no download has touched for --temp-age, and repository markers for manifests no longer
 * stored. Stored blobs are never touched here: they are correct by construction (verified, renamed).
 */
export async function runGc(argv: string[]): Promise<void> {
  const command = new Command('hubcache gc')
    .description('remove crash leftovers (stale temp files) and orphaned repository markers')
    .option('--data <dir>', 'cache directory', process.env.HUBCACHE_DATA ?? './data')
    .option(
      '--temp-age <seconds>',
      'temp files untouched this long are leftovers',
      (v) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('a whole number of seconds');
        return n;
      },
      3600,
    );
  command.parse(argv, { from: 'user' });
  const opts = command.opts<{ data: string; tempAge: number }>();
  const data = path.resolve(opts.data);
  const temps = await removeStaleTemps(path.join(data, 'tmp'), opts.tempAge * 1000);
  const markers = await removeOrphanMarkers(data);
  process.stdout.write(
    `${JSON.stringify({ data, tempFiles: temps.files, tempBytes: temps.bytes, orphanMarkers: markers })}\n`,
  );
}
