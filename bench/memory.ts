/**
 * Peak RSS of the mirror while 20 clients download a 256 MiB blob at once: first cold (one upstream
 * fill, 20 tailing readers), then warm (20 file streams). Memory must stay flat whatever the blob
 * size (target < 150 MiB). Mirror on core 0, 20 curl processes on core 1. Writes
 * bench/results/memory.json. Needs `npm run build`.
 *
 *   npx tsx bench/memory.ts [--quick]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ImageLayout } from '../test/fixtures/image-layout.js';
import { startRefusingProxy } from '../test/fixtures/proxies.js';
import { pushLayout } from '../test/fixtures/skopeo-cli.js';
import { startRegistry } from '../test/fixtures/upstream-process.js';
import { pin } from './lib/load.js';
import { startMirrorProcess } from './lib/servers.js';
import { commitOf, writeResult } from './results.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const MIB = values.quick ? 128 : 256;
const CLIENTS = 20;
const work = mkdtempSync(path.join(tmpdir(), 'hubcache-memory-'));
const refusing = await startRefusingProxy();
const registry = await startRegistry();
const layout = new ImageLayout(path.join(work, 'layout'));
const big = await layout.layer([{ name: 'big', random: MIB * 1024 * 1024 }]);
layout.tag('big', layout.image([big]).manifest);
await pushLayout(layout.dir, 'big', `${new URL(registry.url).host}/library/big:1`, { env: refusing.env() });
const mirror = await startMirrorProcess(registry.url, path.join(work, 'cache'));
await pin(mirror.pid, 0);
const url = `${mirror.url}/v2/library/big/blobs/${big.digest}`;

async function crowd(): Promise<{ peakRss: number; seconds: number; allOk: boolean; codes: string[] }> {
  let peak = mirror.rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, mirror.rss());
  }, 50);
  const started = performance.now();
  const codes = await Promise.all(
    Array.from(
      { length: CLIENTS },
      () =>
        new Promise<string>((resolve) => {
          const c = spawn('taskset', [
            '-c',
            '1',
            'curl',
            '-s',
            '-o',
            '/dev/null',
            '-w',
            '%{http_code} %{size_download}',
            url,
          ]);
          let out = '';
          c.stdout.on('data', (d: Buffer) => {
            out += d.toString();
          });
          c.on('close', () => resolve(out)); // not 'exit': stdout may not be drained yet
        }),
    ),
  );
  clearInterval(timer);
  return {
    peakRss: Math.max(peak, mirror.rss()),
    seconds: (performance.now() - started) / 1000,
    allOk: codes.every((c) => c === `200 ${big.size}`),
    codes: [...new Set(codes)],
  };
}

const idle = mirror.rss();
const cold = await crowd();
await new Promise((r) => setTimeout(r, 500));
const warm = await crowd();
await mirror.stop();
await registry.stop();
await refusing.close();
rmSync(work, { recursive: true, force: true });

const m = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MiB`;
console.log(
  `\n${CLIENTS} clients at once on one ${MIB} MiB blob; RSS sampled every 50 ms (idle: ${m(idle)})\n`,
);
console.log('| case | peak RSS | all 20 complete | wall time | target < 150 MiB |');
console.log('|---|---|---|---|---|');
for (const [name, r] of [
  ['cold (one fill, 20 readers)', cold],
  ['warm (20 file streams)', warm],
] as const) {
  console.log(
    `| ${name} | ${m(r.peakRss)} | ${r.allOk} | ${r.seconds.toFixed(2)} s | ${r.peakRss < 150 * 1024 * 1024 ? 'yes' : 'NO'} |`,
  );
}
writeResult(values.quick ? 'memory-quick' : 'memory', {
  commit: commitOf(),
  mib: MIB,
  clients: CLIENTS,
  idleRss: idle,
  cold,
  warm,
});
