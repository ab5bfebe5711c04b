/**
 * A CPU profile of the mirror serving one hit path under wrk (for finding where a hit's time goes):
 *   npx tsx bench/profile-hit.ts [manifest|small] OUT_DIR
 * Writes a .cpuprofile (Chrome DevTools / speedscope) and prints the top self-time functions.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ImageLayout } from '../test/fixtures/image-layout.js';
import { startRefusingProxy } from '../test/fixtures/proxies.js';
import { pushLayout } from '../test/fixtures/skopeo-cli.js';
import { freePort, startRegistry } from '../test/fixtures/upstream-process.js';
import { pin, wrk } from './lib/load.js';
import { nodeFlagsOf } from './lib/node-flags.js';

const which = process.argv[2] ?? 'manifest';
const out = path.resolve(process.argv[3] ?? 'prof');
const work = mkdtempSync(path.join(tmpdir(), 'hubcache-prof-'));
const refusing = await startRefusingProxy();
const registry = await startRegistry();
const layout = new ImageLayout(path.join(work, 'layout'));
const small = await layout.layer([{ name: 'small', random: 512 }]);
const image = layout.image([small]);
layout.tag('bench', image.manifest);
await pushLayout(layout.dir, 'bench', `${new URL(registry.url).host}/library/bench:1`, {
  env: refusing.env(),
});
const port = await freePort();
const child = spawn(
  process.execPath,
  [
    '--cpu-prof',
    '--cpu-prof-dir',
    out,
    ...nodeFlagsOf(),
    'dist/main.js',
    '--listen',
    `127.0.0.1:${port}`,
    '--upstream',
    registry.url,
    '--data',
    path.join(work, 'cache'),
    ...process.argv.slice(4),
  ],
  { stdio: 'ignore' },
);
const url = `http://127.0.0.1:${port}`;
for (let i = 0; i < 100; i++) {
  if (
    await fetch(`${url}/v2/`).then(
      (r) => r.ok,
      () => false,
    )
  )
    break;
  await new Promise((r) => setTimeout(r, 50));
}
await pin(child.pid ?? 0, 0);
const ACCEPT = 'Accept: application/vnd.oci.image.manifest.v1+json';
const target =
  which === 'manifest'
    ? `${url}/v2/library/bench/manifests/1`
    : `${url}/v2/library/bench/blobs/${small.digest}`;
await (await fetch(target, { headers: { accept: ACCEPT.slice(8) } })).arrayBuffer();
await new Promise((r) => setTimeout(r, 500));
const result = await wrk(target, 50, Number(process.env.PROFILE_SECONDS ?? 8), [ACCEPT]);
console.log(`${which}: ${result.requestsPerSecond.toFixed(0)} req/s, p99 ${result.p99Ms} ms`);
child.kill('SIGINT');
await new Promise((r) => child.once('exit', r));
await registry.stop();
await refusing.close();
rmSync(work, { recursive: true, force: true });

// Self time per function, top 25.
const file = readdirSync(out)
  .filter((f) => f.endsWith('.cpuprofile'))
  .map((f) => path.join(out, f))
  .sort()
  .pop() as string;
interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
const prof = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[] };
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map<string, number>();
for (const id of prof.samples) {
  const n = byId.get(id) as Node;
  const key = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${n.callFrame.lineNumber}`;
  self.set(key, (self.get(key) ?? 0) + 1);
}
const total = prof.samples.length;
for (const [k, v] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 30))
  console.log(`${((100 * v) / total).toFixed(1).padStart(5)} %  ${k}`);
console.log(file);
