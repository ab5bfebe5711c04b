/**
 * Docker Hub's pull-limit headers: `ratelimit-limit: 100;w=21600`, `ratelimit-remaining: 20;w=21600`
 * (docker docs usage/pulls.md). No headers means unlimited. Kept as the latest reading so logs (and
 * later metrics) can show the headroom.
 */
export interface RateLimitReading {
  limit: number;
  remaining: number;
  windowSeconds: number | undefined;
  at: number;
}

export function parseRateLimit(
  limit: string | undefined,
  remaining: string | undefined,
  now: number,
): RateLimitReading | undefined {
  if (!limit || !remaining) return undefined;
  const l = /^\s*(\d+)(?:\s*;\s*w\s*=\s*(\d+))?/.exec(limit);
  const r = /^\s*(\d+)/.exec(remaining);
  if (!l?.[1] || !r?.[1]) return undefined;
  return {
    limit: Number(l[1]),
    remaining: Number(r[1]),
    windowSeconds: l[2] ? Number(l[2]) : undefined,
    at: now,
  };
}
