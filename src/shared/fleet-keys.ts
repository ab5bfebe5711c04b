import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

/** A fleet secret shorter than this is refused at start: it is the root of every key below. */
export const FLEET_SECRET_MIN_BYTES = 32;

/**
 * What one key signs and checks: the current secret's key signs, the previous secret's (the
 * second line of the secret file, during a rotation) is still accepted.
 */
export interface KeyRing {
  sign: Buffer;
  verify: Buffer[];
}

/**
 * The keys replicas share, all derived from the fleet secret (`--fleet-secret-file`), each for one
 * use so that one leaking or being misused never serves another: `token` signs the registry tokens
 * (a token one replica issued is good on every one behind a load balancer), `peer` signs requests
 * between replicas, `records` the records they keep in Redis (Redis is not trusted:
 * docs/SECURITY.md).
 */
export interface FleetKeys {
  token: KeyRing;
  peer: KeyRing;
  records: KeyRing;
}

const USES = ['token', 'peer', 'records'] as const;

/**
 * The secret file's text: the current secret on the first line, optionally the previous one on the
 * second. Each must hold at least FLEET_SECRET_MIN_BYTES bytes (whitespace around it ignored).
 * Throws with the reason in words (the caller names the option and the file).
 */
export function fleetKeys(text: string): FleetKeys {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);
  if (lines.length === 0) throw new Error('empty');
  if (lines.length > 2)
    throw new Error('more than two lines (the secret, and the previous one while rotating)');
  for (const line of lines) {
    if (Buffer.byteLength(line) < FLEET_SECRET_MIN_BYTES)
      throw new Error(
        `a secret shorter than ${FLEET_SECRET_MIN_BYTES} bytes (make one: openssl rand -base64 48)`,
      );
  }
  const secrets = lines.map((l) => Buffer.from(l));
  const derive = (use: (typeof USES)[number]): KeyRing => {
    const [sign, ...rest] = secrets.map((s) =>
      Buffer.from(hkdfSync('sha256', s, 'hubcache', `${use} v1`, 32)),
    );
    return { sign: sign as Buffer, verify: [sign as Buffer, ...rest] };
  };
  return { token: derive('token'), peer: derive('peer'), records: derive('records') };
}

/**
 * Says, at most once a minute, that records in Redis fail the fleet's MAC: a replica given another
 * secret than the others sees none of their records, and nothing else would tell the operator.
 */
export function macWarning(log: { warn(obj: object, msg: string): void }): () => void {
  let last = 0;
  return () => {
    const now = Date.now();
    if (now - last < 60_000) return;
    last = now;
    log.warn(
      {},
      "records in Redis fail the fleet's MAC (ignored): is every replica given the same --fleet-secret-file?",
    );
  };
}

/**
 * A record as replicas keep it in Redis: `<mac>.<json>`, the MAC over `context` (what the record is:
 * its key, its field) and the JSON. Redis can drop a sealed record or put one back where it was,
 * never make one or move one to another context.
 */
export function seal(ring: KeyRing, context: string, value: object): string {
  const json = JSON.stringify(value);
  return `${sign(ring, `${context}\n${json}`)}.${json}`;
}

/** The value of a sealed record, or undefined when it is not one of the ring's for this context, or not JSON. */
export function unseal(ring: KeyRing, context: string, raw: string): { value: unknown } | undefined {
  const dot = raw.indexOf('.');
  const json = raw.slice(dot + 1);
  if (dot < 1 || !verify(ring, `${context}\n${json}`, raw.slice(0, dot))) return undefined;
  try {
    return { value: JSON.parse(json) };
  } catch {
    return undefined;
  }
}

/** HMAC-SHA256 of `data` under the ring's signing key, base64url. */
export function sign(ring: KeyRing | Buffer, data: string): string {
  const key = Buffer.isBuffer(ring) ? ring : ring.sign;
  return createHmac('sha256', key).update(data).digest('base64url');
}

/** Whether `mac` is `data`'s under any of the ring's keys (compared in constant time). */
export function verify(ring: KeyRing | Buffer, data: string, mac: string): boolean {
  const given = Buffer.from(mac);
  for (const key of Buffer.isBuffer(ring) ? [ring] : ring.verify) {
    const expected = Buffer.from(sign(key, data));
    if (expected.length === given.length && timingSafeEqual(expected, given)) return true;
  }
  return false;
}
