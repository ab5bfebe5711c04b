import type { ImageLayout, Layer } from '../../test/fixtures/image-layout.js';
import { pushLayout } from '../../test/fixtures/skopeo-cli.js';
import type { TraceEntry } from './belady.js';

const MiB = 1024 * 1024;

/** What dockerd sends when it pulls: every manifest type it can read. */
export const ACCEPT =
  'application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';

/** Deterministic PRNG (mulberry32) so every run pulls the same sequence. */
export function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Zipf-like popularity: app k is pulled with weight 1/(k+1). */
export function pick(random: () => number, apps: number): number {
  const weights = Array.from({ length: apps }, (_, k) => 1 / (k + 1));
  let x = random() * weights.reduce((a, b) => a + b, 0);
  for (let k = 0; k < apps; k++) {
    x -= weights[k] as number;
    if (x <= 0) return k;
  }
  return apps - 1;
}

/**
 * The swarm's images, pushed to the upstream as library/<name><k>:1 (`name` "app" unless given):
 * each has one of the shared base layers (`basesMiB`) and two small layers of its own. Returns every
 * blob's size by digest.
 */
export async function pushSwarmImages(
  layout: ImageLayout,
  registryHost: string,
  env: NodeJS.ProcessEnv,
  basesMiB: number[],
  apps: number,
  name = 'app',
): Promise<Map<string, number>> {
  const bases: Layer[] = [];
  // Layer bytes follow their file names (ImageLayout): other names, other blobs.
  for (const [i, mib] of basesMiB.entries())
    bases.push(
      await layout.layer([{ name: name === 'app' ? `base${i}` : `${name}-base${i}`, random: mib * MiB }]),
    );
  const sizes = new Map<string, number>();
  for (let app = 0; app < apps; app++) {
    const random = rng(app + 1);
    const own = [
      await layout.layer([{ name: `${name}${app}/lib`, random: Math.floor((0.25 + random()) * MiB) }]),
      await layout.layer([{ name: `${name}${app}/bin`, random: Math.floor(random() * 256 * 1024) + 1024 }]),
    ];
    const image = layout.image([bases[app % bases.length] as Layer, ...own]);
    for (const l of [...image.layers, image.config]) sizes.set(l.digest, l.size);
    layout.tag(`${name}${app}`, image.manifest);
    await pushLayout(layout.dir, `${name}${app}`, `${registryHost}/library/${name}${app}:1`, { env });
  }
  return sizes;
}

/**
 * The size of a gzip layer holding one file of `bytes` incompressible bytes, as ImageLayout writes
 * it (tar header, padding and end blocks; gzip level 0: 5 bytes per stored block of 64 KiB).
 */
function layerSize(bytes: number): number {
  const tar = 512 + Math.ceil(bytes / 512) * 512 + 1024;
  return tar + 5 * Math.ceil(tar / 65535) + 18;
}

/** The blobs of the swarm's app `app` (as pushSwarmImages builds them), by a stable name, config first. */
export function swarmBlobs(basesMiB: number[], app: number): { key: string; size: number }[] {
  const random = rng(app + 1);
  const base = app % basesMiB.length;
  return [
    { key: `app${app}/config`, size: 420 },
    { key: `base${base}`, size: layerSize((basesMiB[base] as number) * MiB) },
    { key: `app${app}/lib`, size: layerSize(Math.floor((0.25 + random()) * MiB)) },
    { key: `app${app}/bin`, size: layerSize(Math.floor(random() * 256 * 1024) + 1024) },
  ];
}

/**
 * The swarm's blob requests without running it (bench/swarm.ts runs it against a real upstream):
 * the same pulls, nodes taking turns within a wave, each node asking only for blobs it does not
 * hold, each request carrying its node as the client. Deterministic.
 */
export function swarmTrace(
  basesMiB: number[],
  apps: number,
  nodes: number,
  waves: number,
  pullsPerWave: number,
): TraceEntry[] {
  const held = Array.from({ length: nodes }, () => new Set<string>());
  const trace: TraceEntry[] = [];
  for (let wave = 0; wave < waves; wave++) {
    const randoms = Array.from({ length: nodes }, (_, node) => rng(1000 * wave + node));
    for (let i = 0; i < pullsPerWave; i++) {
      for (let node = 0; node < nodes; node++) {
        const app = pick(randoms[node] as () => number, apps);
        const has = held[node] as Set<string>;
        if (has.has(`app${app}`)) continue;
        for (const blob of swarmBlobs(basesMiB, app)) {
          if (has.has(blob.key)) continue;
          trace.push({ ...blob, client: node });
          has.add(blob.key);
        }
        has.add(`app${app}`);
      }
    }
  }
  return trace;
}
