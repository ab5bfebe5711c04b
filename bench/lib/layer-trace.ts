import type { TraceEntry } from './belady.js';
import { rng } from './swarm-images.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * A registry mirror's request trace with realistic layer sizes and popularity. Every figure here is
 * a model parameter, printed by bench/eviction.ts and described in docs/benchmarks.md.
 */
export interface LayerTraceModel {
  seed: number;
  /** Image pulls in the trace. */
  pulls: number;
  /** Nodes pulling, each keeping what it pulled in a local store of this many bytes (LRU). */
  nodes: number;
  nodeStoreBytes: number;
  /** Base images (OS and runtimes): chosen by apps with Zipf(baseZipf) popularity. */
  bases: number;
  baseZipf: number;
  /** Layers per base, and their sizes: log-normal with this median and sigma, clamped. */
  baseLayers: [number, number];
  baseLayerMedian: number;
  baseLayerSigma: number;
  baseLayerClamp: [number, number];
  /** App images, pulled with Zipf(appZipf) popularity, each on one base. */
  apps: number;
  appZipf: number;
  /** Own layers per app (dependencies, then code on top), sizes log-normal, clamped. */
  appLayers: [number, number];
  appLayerMedian: number;
  appLayerSigma: number;
  /** The top (code) layer's median: smaller, and replaced by every release. */
  codeLayerMedian: number;
  appLayerClamp: [number, number];
  /** Per pull, the chance that an app (Zipf(releaseZipf): popular apps release more) tags a new version. */
  releaseRate: number;
  releaseZipf: number;
  /** In a release, the chance that each lower own layer (dependencies) changes too. */
  depsChange: number;
  /** Per pull, the chance that a base publishes a new version (its top layer replaced); apps move to it at their next release. */
  baseUpdateRate: number;
  /** Pulls of the latest version; the rest pull older ones (deployments not yet rolled), each older half as often. */
  latestShare: number;
  keepVersions: number;
  configBytes: [number, number];
  manifestBytes: [number, number];
}

export const LAYER_TRACE_MODEL: LayerTraceModel = {
  seed: 18,
  pulls: 20_000,
  nodes: 40,
  nodeStoreBytes: 4 * 1024 * MiB,
  bases: 8,
  baseZipf: 1.0,
  baseLayers: [1, 3],
  baseLayerMedian: 30 * MiB,
  baseLayerSigma: 1.0,
  baseLayerClamp: [2 * MiB, 400 * MiB],
  apps: 400,
  appZipf: 1.0,
  appLayers: [1, 4],
  appLayerMedian: 4 * MiB,
  appLayerSigma: 1.5,
  codeLayerMedian: 512 * KiB,
  appLayerClamp: [4 * KiB, 300 * MiB],
  releaseRate: 0.02,
  releaseZipf: 0.5,
  depsChange: 0.2,
  baseUpdateRate: 0.002,
  latestShare: 0.85,
  keepVersions: 4,
  configBytes: [2 * KiB, 12 * KiB],
  manifestBytes: [512, 3 * KiB],
};

/** Samples rank k (0-based) with weight 1/(k+1)^s. */
function zipf(random: () => number, n: number, s: number): () => number {
  const cumulative: number[] = [];
  let sum = 0;
  for (let k = 0; k < n; k++) {
    sum += 1 / (k + 1) ** s;
    cumulative.push(sum);
  }
  return () => {
    const x = random() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cumulative[mid] as number) < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

interface Version {
  manifest: TraceEntry;
  blobs: TraceEntry[]; // config, then layers bottom up
}

/**
 * Builds the trace: Zipf over apps sharing a few big bases, tag releases replacing top layers over
 * time (older versions fade), a fleet of nodes each asking only for what it does not hold.
 * Deterministic for a model.
 */
export function layerTrace(m: LayerTraceModel = LAYER_TRACE_MODEL): TraceEntry[] {
  const random = rng(m.seed);
  const between = ([lo, hi]: [number, number]) => Math.floor(lo + random() * (hi - lo + 1));
  const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const logNormal = (median: number, sigma: number, [lo, hi]: [number, number]) =>
    Math.round(Math.min(hi, Math.max(lo, median * Math.exp(sigma * normal()))));
  let serial = 0;
  const blob = (kind: string, size: number): TraceEntry => ({ key: `${kind}#${serial++}`, size });

  const bases = Array.from({ length: m.bases }, () =>
    Array.from({ length: between(m.baseLayers) }, () =>
      blob('base', logNormal(m.baseLayerMedian, m.baseLayerSigma, m.baseLayerClamp)),
    ),
  );
  const baseOf = zipf(random, m.bases, m.baseZipf);
  const apps = Array.from({ length: m.apps }, () => {
    const base = baseOf();
    const deps = Array.from({ length: between(m.appLayers) - 1 }, () =>
      blob('layer', logNormal(m.appLayerMedian, m.appLayerSigma, m.appLayerClamp)),
    );
    return { base, deps, versions: [] as Version[] };
  });
  const release = (app: (typeof apps)[number]) => {
    if (app.versions.length > 0)
      app.deps = app.deps.map((d) =>
        random() < m.depsChange
          ? blob('layer', logNormal(m.appLayerMedian, m.appLayerSigma, m.appLayerClamp))
          : d,
      );
    const code = blob('layer', logNormal(m.codeLayerMedian, m.appLayerSigma, m.appLayerClamp));
    const layers = [...(bases[app.base] as TraceEntry[]), ...app.deps, code];
    app.versions.unshift({
      manifest: blob('manifest', between(m.manifestBytes)),
      blobs: [blob('config', between(m.configBytes)), ...layers],
    });
    app.versions.length = Math.min(app.versions.length, m.keepVersions);
  };
  for (const app of apps) release(app);

  const appOf = zipf(random, m.apps, m.appZipf);
  const releasing = zipf(random, m.apps, m.releaseZipf);
  // Each node's store: insertion order is recency, least recent first.
  const nodes = Array.from({ length: m.nodes }, () => ({ held: new Map<string, number>(), bytes: 0 }));
  const trace: TraceEntry[] = [];
  for (let p = 0; p < m.pulls; p++) {
    if (random() < m.baseUpdateRate) {
      const layers = bases[Math.floor(random() * m.bases)] as TraceEntry[];
      layers[layers.length - 1] = blob(
        'base',
        logNormal(m.baseLayerMedian, m.baseLayerSigma, m.baseLayerClamp),
      );
    }
    if (random() < m.releaseRate) release(apps[releasing()] as (typeof apps)[number]);
    const app = apps[appOf()] as (typeof apps)[number];
    let age = 0;
    if (random() >= m.latestShare)
      while (age < app.versions.length - 1 && (age === 0 || random() < 0.5)) age++;
    const version = app.versions[age] as Version;
    const client = Math.floor(random() * m.nodes);
    const node = nodes[client] as (typeof nodes)[number];
    for (const e of [version.manifest, ...version.blobs]) {
      const size = node.held.get(e.key);
      if (size !== undefined) {
        node.held.delete(e.key);
        node.held.set(e.key, size);
        continue;
      }
      // The live rule hears blob GETs only (api/blobs.ts): a manifest by tag is asked at every pull.
      trace.push(e === version.manifest ? e : { ...e, client });
      node.held.set(e.key, e.size);
      node.bytes += e.size;
    }
    for (const [k, size] of node.held) {
      if (node.bytes <= m.nodeStoreBytes) break;
      node.held.delete(k);
      node.bytes -= size;
    }
  }
  return trace;
}
