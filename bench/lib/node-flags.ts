import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The Node flags a checkout's mirror runs with, read from its package.json `start` script (the
 * Dockerfile's ENTRYPOINT carries the same, test/unit/node-flags.test.ts): a benchmark measures the
 * mirror as it is run, and the flags are written once.
 */
export function nodeFlagsOf(checkout = '.'): string[] {
  const pkg = JSON.parse(readFileSync(path.join(checkout, 'package.json'), 'utf8')) as {
    scripts: { start: string };
  };
  const words = pkg.scripts.start.split(/\s+/);
  const main = words.indexOf('dist/main.js');
  if (words[0] !== 'node' || main < 0) throw new Error(`unexpected start script: ${pkg.scripts.start}`);
  return words.slice(1, main);
}
