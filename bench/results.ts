import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The commit the figures were measured on, so a result file says what it describes. */
export function commitOf(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD']).toString().trim();
  } catch {
    return 'unknown';
  }
}

/** The machine a figure was measured on: ratios to nginx move with it (docs/PERFORMANCE.md). */
export function machine(): string {
  const cpus = os.cpus();
  return `${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}, Linux ${os.release()}`;
}

/** bench/results/<name>.json with a timestamp and the machine. */
export function writeResult(name: string, figures: Record<string, unknown>): void {
  const file = path.join(import.meta.dirname, 'results', `${name}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ at: new Date().toISOString(), machine: machine(), ...figures }, null, 2)}\n`,
  );
  console.log(`\nwritten: ${path.relative(process.cwd(), file)}`);
}
