import { readFileSync } from 'node:fs';
import path from 'node:path';

/** bench/results/. */
export const RESULTS_DIR = path.join(import.meta.dirname, '..', 'results');

/** The named result files that exist in `dir`, parsed (name without .json → JSON). */
export function readResults(names: readonly string[], dir = RESULTS_DIR): Record<string, unknown> {
  const results: Record<string, unknown> = {};
  for (const name of names) {
    let text: string;
    try {
      text = readFileSync(path.join(dir, `${name}.json`), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // not measured
      throw err;
    }
    results[name] = JSON.parse(text);
  }
  return results;
}
