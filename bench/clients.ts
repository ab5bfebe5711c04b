import path from 'node:path';
import { parseArgs } from 'node:util';
import { startContainerd } from '../test/fixtures/containerd.js';
import { startDockerd } from '../test/fixtures/dockerd.js';
import { preparePodman } from '../test/fixtures/podman.js';
import { pullImage } from '../test/fixtures/skopeo-cli.js';
import { startTestBed } from '../test/fixtures/test-bed.js';
import { commitOf, writeResult } from './results.js';

const { values } = parseArgs({ options: { 'big-mib': { type: 'string', default: '256' } } });
const bed = await startTestBed({ bigMiB: Number(values['big-mib']) });
const host = () => new URL(bed.mirror.url).host;

/** One pull by a fresh client: returns its wall time. */
type Client = { name: string; pull(): Promise<number> };
let n = 0;
const clients: Client[] = [
  {
    name: 'dockerd 20.10 (registry-mirrors)',
    async pull() {
      const d = await startDockerd(bed.mirror.url, bed.env);
      try {
        return (await d.docker(['pull', 'big:1'])).ms;
      } finally {
        await d.stop();
      }
    },
  },
  {
    name: 'containerd 1.6 ctr (hosts.toml)',
    async pull() {
      const c = await startContainerd(bed.mirror.url, bed.env);
      try {
        return (await c.pull('docker.io/library/big:1')).ms;
      } finally {
        await c.stop();
      }
    },
  },
  {
    name: 'podman 4.3 (registries.conf)',
    async pull() {
      const p = preparePodman(host(), bed.env);
      try {
        return (await p.podman(['pull', 'docker.io/library/big:1'])).ms;
      } finally {
        await p.stop();
      }
    },
  },
  {
    name: 'skopeo 1.9 (copy to dir:)',
    async pull() {
      const started = performance.now();
      await pullImage(`${host()}/library/big:1`, path.join(bed.work, `skopeo-${n++}`), { env: bed.env });
      return performance.now() - started;
    },
  },
];

interface Row {
  client: string;
  coldMs: number;
  warmMs: number;
  cold: Counts;
  warm: Counts;
}
interface Counts {
  blobGets: number;
  manifestGets: number;
  manifestHeads: number;
}
const counts = (): Counts => ({
  blobGets: bed.front.count('GET', /\/blobs\//),
  manifestGets: bed.front.count('GET', /\/manifests\//),
  manifestHeads: bed.front.count('HEAD', /\/manifests\//),
});
const diff = (a: Counts, b: Counts): Counts => ({
  blobGets: b.blobGets - a.blobGets,
  manifestGets: b.manifestGets - a.manifestGets,
  manifestHeads: b.manifestHeads - a.manifestHeads,
});

const rows: Row[] = [];
for (const client of clients) {
  await bed.restartMirror({ fresh: true });
  const c0 = counts();
  const coldMs = await client.pull();
  const c1 = counts();
  const warmMs = await client.pull();
  rows.push({ client: client.name, coldMs, warmMs, cold: diff(c0, c1), warm: diff(c1, counts()) });
}
const leaked = bed.refusing.attempts.length;
await bed.stop();

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const c = (x: Counts) => `${x.blobGets} / ${x.manifestGets} / ${x.manifestHeads}`;
console.log(
  `\n${values['big-mib']} MiB single-layer image through hubcache; upstream: docker-registry 2.8 + token auth, loopback\n`,
);
console.log(
  '| client | cold pull | warm pull | upstream blob GETs / manifest GETs / HEADs, cold | same, warm |',
);
console.log('|---|---|---|---|---|');
for (const r of rows)
  console.log(`| ${r.client} | ${s(r.coldMs)} | ${s(r.warmMs)} | ${c(r.cold)} | ${c(r.warm)} |`);
console.log(`\nrequests refused at the clients' proxy (fallbacks around the mirror): ${leaked}`);

writeResult('clients', { commit: commitOf(), bigMiB: Number(values['big-mib']), rows, leaked });
