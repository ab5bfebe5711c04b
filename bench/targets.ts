/**
 * Issue 18's targets (and the older ones the scripts state), judged from bench/results/*.json: one
 * row per target with the figure, the anchors measured in the same run (a ratio to nginx or to a
 * bare node:http server moves with the machine, so a figure without its anchor says little),
 * holds / misses, and the run it comes from. Pure: the caller reads the files (bench/report.ts, the
 * docs' test), so the judging is tested on small fixed inputs.
 */
import { median } from './lib/load.js';
import { replicasTargets } from './lib/replicas-targets.js';

export type Verdict = 'holds' | 'misses' | 'not measured';
export type ResultSet = 'quick' | 'full';

export interface TargetRow {
  target: string;
  /** The key figure with its anchor, short enough for the README. */
  key: string;
  /** Every figure of the row with the anchors from the same run. */
  figures: string;
  verdict: Verdict;
  /** The result file (bench/results/<file>.json) it was judged from. */
  file: string;
}

export interface Run {
  file: string;
  /** ISO time of the run, commit and machine; undefined: the file is missing. */
  at?: string;
  commit?: string;
  machine?: string;
}

export interface Report {
  set: ResultSet;
  rows: TargetRow[];
  runs: Run[];
}

/** The result file of each script, per set: `npm run bench` writes the quick ones. */
export const RESULT_FILES = {
  quick: {
    hitPath: 'hit-path-quick',
    soak: 'soak-quick',
    coldPull: 'cold-pull-quick',
    pullCore: 'pull-core-quick',
    eviction: 'eviction-quick',
    memory: 'memory-quick',
  },
  full: {
    hitPath: 'hit-path',
    soak: 'soak',
    coldPull: 'cold-pull',
    pullCore: 'pull-core',
    eviction: 'eviction',
    memory: 'memory',
    // Issue 19's (bench/replicas.ts): one run, no quick variant.
    replicas: 'replicas',
  },
} as const satisfies Record<ResultSet, Record<string, string>>;

/** Issue 18's figures. */
export const TARGETS = {
  hitOfBare: 0.85,
  bigOfNginx: 0.9,
  smallP99Ms: 10,
  soakPeakRssMiB: 200,
  coldPullOfDirect: 0.8,
  coldMissOfDirect: 1.05,
  evictionOfBelady: 0.95,
  evictionShares: [0.3, 0.6, 0.9],
  /** bench/memory.ts's own target. */
  memoryPeakRssMiB: 150,
} as const;

const MiB = 1024 * 1024;

// --- reading untyped JSON -------------------------------------------------------------------------

type Json = Record<string, unknown>;
const isObject = (x: unknown): x is Json => typeof x === 'object' && x !== null && !Array.isArray(x);
const obj = (x: unknown): Json | undefined => (isObject(x) ? x : undefined);
const arr = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);
const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
const str = (x: unknown): string | undefined => (typeof x === 'string' ? x : undefined);
const find = (list: unknown, key: string, test: (v: string) => boolean): Json | undefined =>
  arr(list)
    .map(obj)
    .find((o) => o !== undefined && test(str(o[key]) ?? ''));

/** A result file's machine: a string (bench/results.ts) or an object (older cold-pull.ts). */
export function machineOf(data: Json): string | undefined {
  const m = data.machine;
  if (typeof m === 'string') return m;
  const o = obj(m);
  if (!o) return undefined;
  const cpus = num(o.cpus);
  const model = str(o.model)?.trim();
  const node = str(o.node);
  return [cpus !== undefined ? `${cpus} × ${model ?? 'unknown CPU'}` : model, node && `Node ${node}`]
    .filter(Boolean)
    .join(', ');
}

// --- formatting -----------------------------------------------------------------------------------

const int = (x: number) => Math.round(x).toLocaleString('en-US');
const ratio = (x: number) => `${x.toFixed(2)}×`;
const ms = (x: number) => `${x.toFixed(1)} ms`;
const secs = (x: number) => `${(x / 1000).toFixed(2)} s`;
const mib = (bytes: number) => `${int(bytes / MiB)} MiB`;
const pct = (x: number) => `${Math.round(x * 100)} %`;
const verdict = (ok: boolean): Verdict => (ok ? 'holds' : 'misses');

function notMeasured(target: string, file: string, why = 'not measured'): TargetRow {
  return { target, key: why, figures: why, verdict: 'not measured', file };
}

// --- the targets ----------------------------------------------------------------------------------

interface HitRow {
  server: string;
  row: Json;
}

/** Target 1 (bench/hit-path.ts): hits at the runtime's ceiling, big blobs near sendfile, p99. */
function hitPath(data: Json | undefined, file: string): TargetRow[] {
  const names = {
    small: 'hits: 1 KiB blobs, 50 conns ≥ 0.85× bare node:http',
    get: 'hits: manifest GET, 50 conns ≥ 0.85× bare node:http',
    head: 'hits: manifest HEAD, 50 conns ≥ 0.85× bare node:http',
    p99: 'hits: p99 < 10 ms, small objects, 50 conns',
    big: 'hits: 256 MiB blob, 1 client ≥ 0.9× nginx sendfile',
    medium: 'hits: 4 MiB blobs, 16 conns ≥ 0.9× nginx',
  };
  if (!data) return Object.values(names).map((t) => notMeasured(t, file));
  const server = (prefix: string): HitRow | undefined => {
    const row = find(data.rows, 'server', (s) => s.startsWith(prefix));
    return row && { server: str(row.server) ?? prefix, row };
  };
  const hub = server('hubcache');
  const bare = server('bare node');
  const nginx = server('nginx');
  const load = (h: HitRow | undefined, path: string, field: string) => num(obj(h?.row[path])?.[field]);

  const ofBare = (target: string, path: string): TargetRow => {
    const [a, b] = [load(hub, path, 'requestsPerSecond'), load(bare, path, 'requestsPerSecond')];
    if (a === undefined || b === undefined)
      return notMeasured(target, file, bare ? 'not measured' : 'no bare node:http anchor in this run');
    const r = a / b;
    const key = `${int(a)} vs ${int(b)} req/s (bare node:http) = ${ratio(r)}`;
    const n = load(nginx, path, 'requestsPerSecond');
    const cpu = [load(hub, path, 'cpuUsPerRequest'), load(bare, path, 'cpuUsPerRequest')];
    const extra = [
      n !== undefined ? `nginx ${int(n)} req/s` : undefined,
      cpu[0] !== undefined && cpu[1] !== undefined
        ? `CPU ${cpu[0].toFixed(0)} vs ${cpu[1].toFixed(0)} µs/req`
        : undefined,
    ].filter(Boolean);
    return {
      target,
      key,
      figures: `hubcache ${int(a)} req/s vs bare node:http ${int(b)} req/s = ${ratio(r)}${extra.length ? ` (${extra.join('; ')})` : ''}`,
      verdict: verdict(r >= TARGETS.hitOfBare),
      file,
    };
  };

  const ofNginx = (target: string, pick: (h: HitRow | undefined) => number | undefined): TargetRow => {
    const [a, b] = [pick(hub), pick(nginx)];
    if (a === undefined || b === undefined) return notMeasured(target, file);
    const r = a / b;
    const key = `${int(a)} vs ${int(b)} MiB/s (nginx) = ${ratio(r)}`;
    return {
      target,
      key,
      figures: `hubcache ${int(a)} MiB/s vs nginx ${int(b)} MiB/s = ${ratio(r)}`,
      verdict: verdict(r >= TARGETS.bigOfNginx),
      file,
    };
  };

  const p99 = (): TargetRow => {
    const paths = ['small50', 'manifestGet50', 'manifestHead50'];
    const of = (h: HitRow | undefined) => paths.map((p) => load(h, p, 'p99Ms'));
    const ours = of(hub);
    if (ours.some((x) => x === undefined)) return notMeasured(names.p99, file);
    const values = ours as number[];
    const worst = Math.max(...values);
    const anchor = of(bare);
    const list = (xs: (number | undefined)[]) =>
      xs.map((x) => (x === undefined ? '–' : x.toFixed(1))).join(' / ');
    return {
      target: names.p99,
      key: `worst ${ms(worst)}${anchor.every((x) => x !== undefined) ? ` (bare node:http ${ms(Math.max(...(anchor as number[])))})` : ''}`,
      figures: `hubcache p99 1 KiB / manifest GET / HEAD ${list(values)} ms${anchor.every((x) => x !== undefined) ? ` (bare node:http ${list(anchor)} ms)` : ''}`,
      verdict: verdict(worst < TARGETS.smallP99Ms),
      file,
    };
  };

  // Runs since the paired windows (bench/hit-path.ts) judge the ratios and p99 on them.
  const pairs = obj(data.pairs);
  if (pairs) {
    const ofPairs = (
      target: string,
      key: string,
      anchor: string,
      unit: string,
      pick: string,
      threshold: number,
    ): TargetRow => {
      const x = obj(pairs[key]);
      const ratios = arr(x?.ratios).map(num);
      if (!x || ratios.length === 0 || ratios.some((r) => r === undefined)) return notMeasured(target, file);
      const values = (side: string) => arr(x[side]).map((l) => num(obj(l)?.[pick]) ?? Number.NaN);
      const throughput = median(ratios as number[]);
      const [a, b] = [median(values('ours')), median(values('anchor'))];
      // Runs since the windows sample CPU: the capacity ratio judges too when it is lower (a load
      // generator at its limit makes both servers' requests per second alike, bench/hit-path.ts).
      const capacities = arr(x.capacity).map(num);
      const capacity =
        capacities.length > 0 && capacities.every((c) => c !== undefined)
          ? median(capacities as number[])
          : undefined;
      const r = capacity === undefined ? throughput : Math.min(throughput, capacity);
      const byCapacity = capacity !== undefined && capacity < throughput;
      const cpu = key === 'big' ? undefined : pairedCpu(key, x);
      const span = (xs: number[]) => `${ratio(Math.min(...xs))}–${ratio(Math.max(...xs))}`;
      return {
        target,
        key: `${ratio(r)} of ${anchor}${byCapacity ? ' in CPU per request' : ''}, median of ${ratios.length} pairs`,
        figures: `median of ${ratios.length} paired windows: ${ratio(throughput)} (${span(ratios as number[])}); hubcache ${int(a)} ${unit} vs ${anchor} ${int(b)} ${unit}${capacity === undefined ? '' : `; capacity ${ratio(capacity)} (${span(capacities as number[])})`}${cpu ? `; ${cpu}` : ''}`,
        verdict: verdict(r >= threshold),
        file,
      };
    };
    // The CPU per request: the paired windows' where they sampled it, else the rounds'.
    const pairedCpu = (key: string, x: Json): string | undefined => {
      const cpu = (side: string) =>
        median(arr(x[side]).map((l) => num(obj(l)?.cpuUsPerRequest) ?? Number.NaN));
      const [ours, anchor] = [cpu('ours'), cpu('anchor')];
      if (Number.isFinite(ours) && Number.isFinite(anchor)) {
        return `CPU ${ours.toFixed(1)} vs ${anchor.toFixed(1)} µs/req`;
      }
      const path = { small: 'small50', manifestGet: 'manifestGet50' }[key];
      if (!path) return undefined;
      const [a, b] = [load(hub, path, 'cpuUsPerRequest'), load(bare, path, 'cpuUsPerRequest')];
      return a !== undefined && b !== undefined
        ? `CPU in the rounds ${a.toFixed(0)} vs ${b.toFixed(0)} µs/req`
        : undefined;
    };
    const pairedP99 = (): TargetRow => {
      const of = (side: string) =>
        ['small', 'manifestGet', 'manifestHead'].map((k) =>
          median(arr(obj(pairs[k])?.[side]).map((l) => num(obj(l)?.p99Ms) ?? Number.NaN)),
        );
      const [ours, anchor] = [of('ours'), of('anchor')];
      if (ours.some((v) => !Number.isFinite(v))) return notMeasured(names.p99, file);
      const list = (xs: number[]) => xs.map((v) => v.toFixed(1)).join(' / ');
      const worst = Math.max(...ours);
      return {
        target: names.p99,
        key: `worst ${ms(worst)} (bare node:http ${ms(Math.max(...anchor))})`,
        figures: `hubcache p99 1 KiB / manifest GET / HEAD ${list(ours)} ms (bare node:http ${list(anchor)} ms), medians of the paired windows`,
        verdict: verdict(worst < TARGETS.smallP99Ms),
        file,
      };
    };
    return [
      ofPairs(names.small, 'small', 'bare node:http', 'req/s', 'requestsPerSecond', TARGETS.hitOfBare),
      ofPairs(names.get, 'manifestGet', 'bare node:http', 'req/s', 'requestsPerSecond', TARGETS.hitOfBare),
      ofPairs(names.head, 'manifestHead', 'bare node:http', 'req/s', 'requestsPerSecond', TARGETS.hitOfBare),
      pairedP99(),
      ofPairs(names.big, 'big', 'nginx', 'MiB/s', 'mibPerSecond', TARGETS.bigOfNginx),
      ofNginx(names.medium, (h) => load(h, 'medium16', 'mibPerSecond')),
    ];
  }
  return [
    ofBare(names.small, 'small50'),
    ofBare(names.get, 'manifestGet50'),
    ofBare(names.head, 'manifestHead50'),
    p99(),
    ofNginx(names.big, (h) => num(h?.row.bigMiBs)),
    ofNginx(names.medium, (h) => load(h, 'medium16', 'mibPerSecond')),
  ];
}

/** Target 2 (bench/soak.ts): 500 connections on a warm mix, 0 errors, peak RSS bounded. */
function soak(data: Json | undefined, file: string): TargetRow {
  const target = '500 conns, warm mix: 0 errors, peak RSS < 200 MiB';
  if (!data) return notMeasured(target, file);
  const [peak, before, errors, requests, seconds] = [
    num(data.peakRssBytes),
    num(data.rssBeforeBytes),
    num(data.errors),
    num(data.requests),
    num(data.seconds),
  ];
  if (peak === undefined || errors === undefined) return notMeasured(target, file);
  const conns = num(data.connections);
  const rate =
    requests !== undefined && seconds ? `, ${int(requests / seconds)} req/s over ${int(seconds)} s` : '';
  const alive = data.aliveAfter !== false;
  return {
    target,
    key: `peak ${mib(peak)}, ${int(errors)} errors`,
    figures: `peak RSS ${mib(peak)}${before !== undefined ? ` (before the load ${mib(before)})` : ''}, ${int(errors)} errors${rate}${conns !== undefined ? `, ${int(conns)} conns` : ''}${alive ? '' : ', dead afterwards'}`,
    verdict: verdict(errors === 0 && alive && peak < TARGETS.soakPeakRssMiB * MiB),
    file,
  };
}

/** Target 3 (bench/cold-pull.ts): a cold pull through the mirror against the same client direct. */
function coldPull(data: Json | undefined, file: string): TargetRow[] {
  const clients = [
    ['skopeo', 'skopeo'],
    ['dockerd', 'dockerd'],
    ['ctr', 'containerd ctr'],
  ] as const;
  return clients.map(([client, label]) => {
    const target = `cold pull, internet-shaped upstream, ${label}: ≤ 0.8× direct`;
    const rows = arr(data?.rows)
      .map(obj)
      .filter((r): r is Json => r !== undefined && r.client === client);
    const time = (p: string) => num(rows.find((r) => r.path === p)?.medianMs);
    const [on, direct, off] = [time('mirror, prefetch on'), time('direct'), time('mirror, prefetch off')];
    if (on === undefined || direct === undefined) return notMeasured(target, file);
    const r = on / direct;
    return {
      target,
      key: `${secs(on)} vs ${secs(direct)} direct = ${ratio(r)}`,
      figures: `mirror ${secs(on)} vs direct ${secs(direct)} = ${ratio(r)}${off !== undefined ? ` (prefetch off ${secs(off)} = ${ratio(off / direct)})` : ''}`,
      verdict: verdict(r <= TARGETS.coldPullOfDirect),
      file,
    };
  });
}

/** Target 3, second half (bench/pull-core.ts): a plain cold miss against pulling direct. */
function coldMiss(data: Json | undefined, file: string): TargetRow {
  const target = 'plain cold miss, one big layer, loopback, mirror on its own core: ≤ 1.05× direct';
  const pinned = data?.layout === 'pinned';
  const judged = layoutFigures(data);
  if (judged === undefined) return notMeasured(target, file);
  const { ours, direct, r } = judged;
  const big = num(data?.bigMiB);
  // Runs before 2026-11-27 pinned nothing: their figure is the shared one, said as such.
  const where = pinned
    ? 'mirror on core 0; skopeo, the upstream and its front on core 1: '
    : 'nothing pinned (an older run): ';
  const shared = pinned ? layoutFigures(obj(data?.shared)) : undefined;
  const sharedText =
    shared === undefined
      ? ''
      : `; nothing pinned, the mirror's CPU taken from the client's and the upstream's: ${secs(shared.ours)} vs ${secs(shared.direct)} = ${ratio(shared.r)}${shared.how}${shared.cpuText}`;
  return {
    target,
    key: `${secs(ours)} vs ${secs(direct)} direct = ${ratio(r)}`,
    figures: `${where}hubcache ${secs(ours)} vs direct ${secs(direct)} = ${ratio(r)}${judged.how}${judged.proxy !== undefined ? ` (reference registry's proxy ${secs(judged.proxy)})` : ''}${big !== undefined ? `, ${int(big)} MiB layer` : ''}${judged.cpuText}${sharedText}`,
    verdict: verdict(pinned && r <= TARGETS.coldMissOfDirect),
    file,
  };
}

/** One layout's pulls of bench/pull-core.ts: the cold pulls, the ratio it is judged on, its CPU. */
function layoutFigures(data: Json | undefined) {
  const cold = (test: (p: string) => boolean) => num(find(data?.pulls, 'path', test)?.coldMs);
  const [ours, direct, proxy] = [
    cold((p) => p === 'hubcache'),
    cold((p) => p.startsWith('upstream directly')),
    cold((p) => p.startsWith('reference registry')),
  ];
  if (ours === undefined || direct === undefined) return undefined;
  // Runs with interleaved rounds judge on the median of each round's own ratio.
  const rounds = arr(data?.coldRatios).map(num);
  const paired = rounds.length > 0 && rounds.every((x) => x !== undefined);
  const r = paired ? median(rounds as number[]) : ours / direct;
  // Runs since 79e3418 take each round's direct figure as the mean of two pulls around the mirror's.
  const bracketed =
    arr(data?.roundsMs).length > 0 ? ', each to the mean of the direct pulls before and after it' : '';
  const how = paired ? `, median of ${rounds.length} interleaved rounds' ratios${bracketed}` : '';
  // The CPU the pull needed on the machine's two cores (runs since 2026-11-27): why it is what it is.
  const cpu = obj(data?.cpu);
  const [mDirect, mOurs, own, hash] = [
    cpu?.directMachine,
    cpu?.hubcacheMachine,
    cpu?.hubcacheOwn,
    cpu?.hashSeconds,
  ].map(num);
  const cpuText =
    mDirect !== undefined && mOurs !== undefined && own !== undefined && hash !== undefined
      ? `; CPU of both cores during the pull ${secs(mDirect * 1000)} direct, ${secs(mOurs * 1000)} through hubcache (hubcache's own ${secs(own * 1000)}, sha256 of the layer alone ${secs(hash * 1000)})`
      : '';
  return { ours, direct, proxy, r, how, cpuText };
}

/** Target 4 (bench/eviction.ts): the default policy's byte hit ratio against Belady's. */
function eviction(data: Json | undefined, file: string): TargetRow[] {
  const traces = [
    ['swarm', 'swarm trace'],
    ['layers', 'layer trace'],
  ] as const;
  const policy = obj(
    arr(data?.verdicts).find((v) => isObject(v) && v.live !== undefined && v.live === data?.defaultPolicy),
  );
  const name = str(policy?.policy);
  return traces.map(([trace, label]) => {
    const target = `eviction (default), ${label}: ≥ 95 % of Belady at 30/60/90 %`;
    const cells = arr(find(data?.traces, 'name', (n) => n === trace)?.cells).map(obj);
    const cell = (share: number) => cells.find((c) => c?.share === share);
    const of = (c: Json | undefined, p: string) => obj(obj(obj(c?.policies)?.[p])?.live);
    const shares = TARGETS.evictionShares.map((s) => {
      const c = cell(s);
      return {
        belady: num(c?.belady),
        ours: num(of(c, name ?? '')?.byteHitRatio),
        oursOf: num(of(c, name ?? '')?.ofBelady),
        lruOf: num(of(c, 'LRU')?.ofBelady),
      };
    });
    if (!name || shares.some((s) => s.oursOf === undefined || s.ours === undefined || s.belady === undefined))
      return notMeasured(target, file);
    const list = (xs: (number | undefined)[]) => xs.map((x) => (x === undefined ? '–' : pct(x))).join(' / ');
    const ofBelady = shares.map((s) => s.oursOf as number);
    const lru = shares.every((s) => s.lruOf !== undefined) ? list(shares.map((s) => s.lruOf)) : undefined;
    return {
      target,
      key: `${list(ofBelady)} of Belady${lru ? ` (LRU ${lru})` : ''}`,
      figures: `${name}: byte hit ratio ${list(shares.map((s) => s.ours))} vs Belady ${list(shares.map((s) => s.belady))} = ${list(ofBelady)} of Belady${lru ? ` (LRU ${lru} of Belady)` : ''}`,
      verdict: verdict(ofBelady.every((x) => x >= TARGETS.evictionOfBelady)),
      file,
    };
  });
}

/** bench/memory.ts's target: 20 clients on one big blob, cold and warm. */
function memory(data: Json | undefined, file: string): TargetRow {
  const target = '20 clients on one big blob: peak RSS < 150 MiB';
  const [cold, warm] = [obj(data?.cold), obj(data?.warm)];
  const [c, w, idle] = [num(cold?.peakRss), num(warm?.peakRss), num(data?.idleRss)];
  if (c === undefined || w === undefined) return notMeasured(target, file);
  const ok = cold?.allOk !== false && warm?.allOk !== false;
  const size = num(data?.mib);
  return {
    target,
    key: `cold ${mib(c)}, warm ${mib(w)} (idle ${idle === undefined ? '–' : mib(idle)})`,
    figures: `peak RSS cold ${mib(c)}, warm ${mib(w)}${idle !== undefined ? ` (idle ${mib(idle)})` : ''}${size !== undefined ? `, ${int(size)} MiB blob` : ''}${ok ? '' : ', not every client complete'}`,
    verdict: verdict(ok && Math.max(c, w) < TARGETS.memoryPeakRssMiB * MiB),
    file,
  };
}

/** Every target judged from the result files of a set (name → parsed JSON; missing: not measured). */
export function evaluate(results: Readonly<Record<string, unknown>>, set: ResultSet): Report {
  const files = RESULT_FILES[set];
  const data = (name: string) => obj(results[name]);
  const rows = [
    ...hitPath(data(files.hitPath), files.hitPath),
    soak(data(files.soak), files.soak),
    ...coldPull(data(files.coldPull), files.coldPull),
    coldMiss(data(files.pullCore), files.pullCore),
    ...eviction(data(files.eviction), files.eviction),
    memory(data(files.memory), files.memory),
    ...('replicas' in files ? replicasTargets(data(files.replicas), files.replicas) : []),
  ];
  const runs = Object.values(files).map((file): Run => {
    const d = data(file);
    if (!d) return { file };
    const run: Run = { file };
    const [at, commit, machine] = [str(d.at), str(d.commit), machineOf(d)];
    if (at) run.at = at;
    if (commit) run.commit = commit;
    if (machine) run.machine = machine;
    return run;
  });
  return { set, rows, runs };
}

// --- rendering ------------------------------------------------------------------------------------

const cell = (s: string) => s.replace(/\|/g, '\\|');

/** The full table (every figure and its run) and the runs: what bench/report.ts prints. */
export function fullTable(report: Report): string {
  const lines = [
    '| target | figures, with the anchors from the same run | verdict | run |',
    '|---|---|---|---|',
    ...report.rows.map((r) => `| ${cell(r.target)} | ${cell(r.figures)} | ${r.verdict} | ${r.file}.json |`),
    '',
    'Runs (bench/results/):',
    '',
    ...report.runs.map((r) =>
      r.at === undefined
        ? `- ${r.file}.json: not measured`
        : `- ${r.file}.json: ${r.at.slice(0, 16).replace('T', ' ')} UTC, commit ${r.commit ?? 'not recorded'}, ${r.machine ?? 'machine not recorded'}`,
    ),
  ];
  return lines.join('\n');
}

/** The short table of the README: target, key figure with its anchor, verdict. */
export function shortTable(report: Report): string {
  return [
    '| target | figure (anchor from the same run) | verdict |',
    '|---|---|---|',
    ...report.rows.map((r) => `| ${cell(r.target)} | ${cell(r.key)} | ${r.verdict} |`),
  ].join('\n');
}

export const SECTION_START = '<!-- bench:targets:start -->';
export const SECTION_END = '<!-- bench:targets:end -->';

/** The page with its generated section replaced by `body`; an error if the markers are missing. */
export function withSection(page: string, body: string): string {
  const from = page.indexOf(SECTION_START);
  const to = page.indexOf(SECTION_END);
  if (from < 0 || to < from) throw new Error(`no ${SECTION_START} … ${SECTION_END} section`);
  return `${page.slice(0, from + SECTION_START.length)}\n${body}\n${page.slice(to)}`;
}

/** The pages that carry the full set's targets between the markers, and the table each gets. */
export const TARGET_PAGES = [
  { page: 'README.md', render: shortTable },
  { page: 'docs/benchmarks.md', render: fullTable },
] as const;
