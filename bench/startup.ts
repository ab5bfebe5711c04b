/**
 * Start-up with a big cache: writes N blobs (default 100,000) into a data dir, starts the mirror and
 * measures the time until /v2/ answers and until the background scan (the size bound's index) is
 * done. Prints a table; writes bench/results/startup.json.
 *
 *   npx tsx bench/startup.ts [--blobs 100000]
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { configWith } from '../src/config.js';
import { startMirror } from '../src/listen.js';
import { commitOf, writeResult } from './results.js';

const { values } = parseArgs({ options: { blobs: { type: 'string', default: '100000' } } });
const count = Number(values.blobs);
const dir = mkdtempSync(path.join(tmpdir(), 'hubcache-startup-'));
const blobs = path.join(dir, 'blobs', 'sha256');
let bytes = 0;
for (let i = 0; i < count; i++) {
  const data = randomBytes(64 + (i % 512));
  const hex = createHash('sha256').update(data).digest('hex');
  mkdirSync(path.join(blobs, hex.slice(0, 2)), { recursive: true });
  writeFileSync(path.join(blobs, hex.slice(0, 2), hex), data);
  bytes += data.length;
}

const t0 = performance.now();
const mirror = await startMirror(
  configWith({
    upstream: 'http://127.0.0.1:9',
    dataDir: dir,
    listen: '127.0.0.1:0',
    extraArgs: ['--max-size', '1TiB'],
  }),
);
const res = await fetch(`${mirror.url}/v2/`);
const toPing = performance.now() - t0;
const pingStatus = res.status;
await mirror.mirror.started;
const toScanned = performance.now() - t0;
const indexed = mirror.mirror.blobs.store.usage.count;
await mirror.close();
rmSync(dir, { recursive: true, force: true });

console.log(
  `\nStart-up with ${count.toLocaleString('en')} stored blobs (${(bytes / 1024 / 1024).toFixed(0)} MiB)\n`,
);
console.log('| measure | value |');
console.log('|---|---|');
console.log(`| start → first /v2/ answer (${pingStatus}) | ${toPing.toFixed(0)} ms |`);
console.log(
  `| start → background scan done (${indexed.toLocaleString('en')} blobs indexed) | ${toScanned.toFixed(0)} ms |`,
);
writeResult('startup', {
  commit: commitOf(),
  blobs: count,
  toFirstPingMs: toPing,
  toScanDoneMs: toScanned,
  indexed,
});
