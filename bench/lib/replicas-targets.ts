import type { TargetRow } from '../targets.js';

/**
 * Issue 19's targets, judged from bench/replicas.ts's result file in the style of bench/targets.ts
 * (one row per target: key figure with its anchor from the same run, every figure, verdict). Pure,
 * so the judging is tested on small fixed inputs (test/unit/bench-targets.test.ts).
 */
export const REPLICAS_TARGETS = {
  /** A follower's first byte after the first client's, 95th percentile over every client. */
  followerLagP95Ms: 100,
  /** Swarm wall time, three replicas against one mirror on the same machine. */
  fleetVsSingle: 1.3,
} as const;

type Json = Record<string, unknown>;
const obj = (x: unknown): Json | undefined =>
  typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Json) : undefined;
const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
const arr = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);

const ms = (x: number) => `${x.toFixed(1)} ms`;
const secs = (x: number) => `${x.toFixed(2)} s`;
const ratio = (x: number) => `${x.toFixed(2)}×`;

function notMeasured(target: string, file: string): TargetRow {
  return { target, key: 'not measured', figures: 'not measured', verdict: 'not measured', file };
}

interface Fanout {
  p50: number;
  p95: number;
  max: number;
  blobs: number;
  upstreamGets: number[];
  peerFills: number;
}

function fanoutOf(row: unknown): Fanout | undefined {
  const r = obj(row);
  const lag = obj(r?.lagMs);
  const [p50, p95, max] = [num(lag?.p50), num(lag?.p95), num(lag?.max)];
  const blobs = arr(r?.blobs).map(obj);
  const upstreamGets = blobs.map((b) => num(b?.upstreamBlobGets));
  if (p50 === undefined || p95 === undefined || max === undefined || blobs.length === 0) return undefined;
  if (upstreamGets.some((g) => g === undefined)) return undefined;
  return {
    p50,
    p95,
    max,
    blobs: blobs.length,
    upstreamGets: upstreamGets as number[],
    peerFills: num(r?.peerFills) ?? 0,
  };
}

const lagText = (f: Fanout) =>
  `lag p50 / p95 / max ${ms(f.p50)} / ${ms(f.p95)} / ${ms(f.max)}, upstream blob GETs ${f.upstreamGets.join(' / ')} for ${f.blobs} blobs, ${f.peerFills} peer fills`;

/** bench/replicas.ts: a cold blob's fan-out to the fleet, and the swarm against one mirror. */
export function replicasTargets(data: Json | undefined, file = 'replicas'): TargetRow[] {
  const lagTarget = `replicas, cold blob to 3 replicas × 2 clients: followers' first byte ≤ ${REPLICAS_TARGETS.followerLagP95Ms} ms after the holder's (p95), 1 upstream GET per blob`;
  const wallTarget = `replicas, swarm: 3 replicas' wall time ≤ ${REPLICAS_TARGETS.fleetVsSingle}× one mirror`;
  const fanout = obj(data?.fanout);
  const [peer, noPeer] = [fanoutOf(fanout?.peerStreaming), fanoutOf(fanout?.noPeerStreaming)];
  const lag: TargetRow = peer
    ? {
        target: lagTarget,
        key: `p95 ${ms(peer.p95)}${noPeer ? ` (without peer streaming ${ms(noPeer.p95)})` : ''}`,
        figures: `peer streaming: ${lagText(peer)}${noPeer ? `; without: ${lagText(noPeer)}` : ''}`,
        verdict:
          peer.p95 <= REPLICAS_TARGETS.followerLagP95Ms && peer.upstreamGets.every((g) => g === 1)
            ? 'holds'
            : 'misses',
        file,
      }
    : notMeasured(lagTarget, file);

  const seconds = (name: string) => num(obj(data?.[name])?.seconds);
  const [local, shared, sharedNoPeer] = [seconds('local'), seconds('shared'), seconds('sharedNoPeer')];
  const wall: TargetRow =
    local !== undefined && shared !== undefined
      ? {
          target: wallTarget,
          key: `${secs(shared)} vs ${secs(local)} (1 mirror) = ${ratio(shared / local)}${sharedNoPeer !== undefined ? ` (without peer streaming ${ratio(sharedNoPeer / local)})` : ''}`,
          figures: `3 replicas, peer streaming ${secs(shared)} vs 1 mirror ${secs(local)} = ${ratio(shared / local)}${sharedNoPeer !== undefined ? `; without peer streaming ${secs(sharedNoPeer)} = ${ratio(sharedNoPeer / local)}` : ''}`,
          verdict: shared / local <= REPLICAS_TARGETS.fleetVsSingle ? 'holds' : 'misses',
          file,
        }
      : notMeasured(wallTarget, file);
  return [lag, wall];
}
