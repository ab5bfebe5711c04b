import type { Redis } from 'ioredis';
import type { Logger } from '../observe/logger.js';
import { type KeyRing, macWarning, seal, unseal } from './fleet-keys.js';

/** The raw record, beside its parsed fields (a takeover compares it): a key no JSON record has. */
const RAW = '\u0000raw';

/** Bytes [start, end) of an upload session staged in the bucket, and the MD5 the bucket gave them. */
export type StagedPart = [number, number, string];

export interface UploadRecord {
  owner: string;
  name: string;
  parts: StagedPart[];
  /** The record as read (what a takeover must still find to write its own). */
  raw: string;
}

/** A replica's record lives this long unless refreshed (every REFRESH_MS): a dead one is gone soon. */
export const REPLICA_TTL_MS = 15_000;
const REFRESH_MS = 5_000;
/** What is read back for a record at most (a replica ~150 bytes, an upload up to MAX_STAGED_PARTS parts; Redis is not trusted). */
const MAX_RECORD_BYTES = 64 * 1024;

const GET_BOUNDED = `local v = redis.call('GET', KEYS[1]) if v and #v > tonumber(ARGV[1]) then return false end return v`;
/** Writes an upload's record only if it holds ARGV[1] (nil: none at all) now; 1 when written. */
const CLAIM_IF = `local v = redis.call('GET', KEYS[1])
if (ARGV[1] == '' and not v) or v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end
return 0`;
/** Writes an upload's record only if it names this owner now (a replica that took it over fences this one out). */
const CLAIM_OWNED = `local v = redis.call('GET', KEYS[1])
if v and string.find(v, ARGV[1], 1, true) then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end
return 0`;
/** Deletes an upload's record only if it still names this owner. */
const RELEASE = `local v = redis.call('GET', KEYS[1]) if v and string.find(v, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end return 0`;

/**
 * Where each replica's peer listener is, and which replica owns each upload session, in Redis:
 * `hubcache:replica:<id>` (its peer URL, refreshed while it runs) and `hubcache:upload:<session>`
 * (owner and repository, for the session's expiry). An upload request that reaches another
 * replica (a load balancer spreads a push's requests) is forwarded to the owner (peer/upload-proxy.ts).
 *
 * Records are MAC'd with the fleet's record key over their key and value: Redis cannot send a
 * replica's upload, and the client's bytes in it, to an address of its choosing.
 */
export class ReplicaRegistry {
  readonly #redis: Redis;
  readonly #key: KeyRing;
  readonly #log: Logger;
  readonly self: string;
  readonly #peerUrl: string | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(redis: Redis, key: KeyRing, self: string, peerUrl: string | undefined, log: Logger) {
    this.#redis = redis;
    this.#key = key;
    this.self = self;
    this.#peerUrl = peerUrl;
    this.#log = log;
    this.#badMac = macWarning(log);
  }

  readonly #badMac: () => void;

  #seal(key: string, value: object): string {
    return seal(this.#key, key, value);
  }

  async #read(key: string): Promise<Record<string, unknown> | undefined> {
    const raw = (await this.#redis.eval(GET_BOUNDED, 1, key, String(MAX_RECORD_BYTES))) as string | null;
    if (!raw) return undefined;
    const opened = unseal(this.#key, key, raw);
    if (!opened) {
      this.#badMac();
      return undefined;
    }
    const value = opened.value;
    return value && typeof value === 'object'
      ? { ...(value as Record<string, unknown>), [RAW]: raw }
      : undefined;
  }

  /** Announces this replica's peer URL now and every few seconds (nothing without a peer listener). */
  start(): void {
    const url = this.#peerUrl;
    if (!url) return;
    const key = `hubcache:replica:${this.self}`;
    const write = () =>
      void this.#redis
        .set(key, this.#seal(key, { peer: url }), 'PX', REPLICA_TTL_MS)
        .catch((err: Error) => this.#log.warn({ err: err.message }, 'redis: replica record not written'));
    write();
    this.#timer = setInterval(write, REFRESH_MS);
    this.#timer.unref();
  }

  /** A live replica's peer URL (another's: never this one's), if its record is there and good. */
  async peerOf(replica: string): Promise<URL | undefined> {
    if (replica === this.self) return undefined;
    const key = `hubcache:replica:${replica}`;
    const record = await this.#read(key).catch(() => undefined);
    if (typeof record?.peer !== 'string') return undefined;
    try {
      return new URL(record.peer);
    } catch {
      return undefined;
    }
  }

  /**
   * Records this replica as the owner of an upload session, with the parts of it staged in the
   * bucket so far (`[start, end, etag]`, in order), until it expires.
   */
  async claimUpload(id: string, name: string, ttlMs: number, parts: StagedPart[] = []): Promise<void> {
    const key = `hubcache:upload:${id}`;
    await this.#redis.set(key, this.#seal(key, { owner: this.self, name, parts }), 'PX', ttlMs);
  }

  /**
   * Updates the record of a session this replica owns; false when another replica took it over
   * meanwhile (this one must then stop writing to it).
   */
  async updateUpload(id: string, name: string, ttlMs: number, parts: StagedPart[]): Promise<boolean> {
    const key = `hubcache:upload:${id}`;
    const value = this.#seal(key, { owner: this.self, name, parts });
    return (
      (await this.#redis.eval(CLAIM_OWNED, 1, key, `"owner":"${this.self}"`, value, String(ttlMs))) === 1
    );
  }

  /**
   * Takes over the record of a session whose owner died: written only if it is still the record
   * read (`seen.raw`), so of two replicas taking it over at once, one wins.
   */
  async takeUpload(id: string, seen: UploadRecord, ttlMs: number): Promise<boolean> {
    const key = `hubcache:upload:${id}`;
    const value = this.#seal(key, { owner: this.self, name: seen.name, parts: seen.parts });
    return (await this.#redis.eval(CLAIM_IF, 1, key, seen.raw, value, String(ttlMs))) === 1;
  }

  /** Whether this replica still owns the session (another took it over when it looked dead). */
  async ownsUpload(id: string): Promise<boolean> {
    return (await this.uploadOwner(id).catch(() => undefined))?.owner === this.self;
  }

  /** An upload session's owner and staged parts, if it is recorded (and the record is good). */
  async uploadOwner(id: string): Promise<UploadRecord | undefined> {
    const record = await this.#read(`hubcache:upload:${id}`);
    if (typeof record?.owner !== 'string' || typeof record.name !== 'string') return undefined;
    const parts: StagedPart[] = [];
    let next = 0;
    for (const p of Array.isArray(record.parts) ? record.parts : []) {
      // Contiguous from 0, each part an MD5: anything else is not a session to rebuild.
      if (!Array.isArray(p) || p[0] !== next || !Number.isSafeInteger(p[1]) || p[1] <= next) return undefined;
      if (typeof p[2] !== 'string' || !/^[a-f0-9]{32}$/.test(p[2])) return undefined;
      parts.push([p[0], p[1], p[2]]);
      next = p[1];
    }
    return { owner: record.owner, name: record.name, parts, raw: record[RAW] as string };
  }

  /** The session ended here (finished, cancelled, expired): its record goes. */
  async releaseUpload(id: string): Promise<void> {
    await this.#redis.eval(RELEASE, 1, `hubcache:upload:${id}`, `"owner":"${this.self}"`).catch(() => {});
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    if (this.#peerUrl) await this.#redis.del(`hubcache:replica:${this.self}`).catch(() => {});
  }
}
