import type { Redis } from 'ioredis';
import type { Logger } from '../observe/logger.js';
import { isTag, validateName } from '../oci/names.js';
import { type KeyRing, macWarning, seal, unseal } from './fleet-keys.js';
import { RedisBoundError, readBounded } from './redis-reads.js';

/**
 * What Redis may hand back for one hosted repository, at most (it is not trusted: docs/SECURITY.md):
 * fields (tags, manifests, links) and bytes. Beyond it the repository is not taken from Redis and
 * the replica answers from its own files.
 */
export const MAX_HOSTED_FIELDS = 200_000;
export const MAX_HOSTED_BYTES = 64 * 1024 * 1024;
/** One field's value at most (a record is ~150 bytes). */
export const MAX_HOSTED_RECORD_BYTES = 4096;
/** Hosted repository names read from Redis at most, and their bytes. */
export const MAX_HOSTED_NAMES = 100_000;
export const MAX_HOSTED_NAMES_BYTES = 16 * 1024 * 1024;

const NAMES = 'hubcache:hosted:names';
/** Announced after every change of a repository's records: its name. */
export const HOSTED_CHANNEL = 'hubcache:hosted';
const repositoryKey = (name: string) => `hubcache:hosted:r:${name}`;

/** HMGET of the fields ARGV[2..], each nil when longer than ARGV[1] bytes. */
const BOUNDED_HMGET = `
local out = {}
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v and #v > tonumber(ARGV[1]) then v = false end
  out[i - 1] = v
end
return out`;

/** A tag: the manifest it names (hex), its media type, when it was set. */
export interface TagRecord {
  d: string;
  mt: string;
  at: number;
}
/** A manifest the repository holds: its media type, its subject's hex (the referrers API), when pushed. */
export interface ManifestRecord {
  mt: string;
  s: string | null;
  at: number;
}
/** A blob the repository answers for (uploaded, mounted, or named by a manifest pushed to it). */
export interface LinkRecord {
  at: number;
}

/** One repository as Redis holds it, every record checked. */
export interface RepositoryRecords {
  tags: Map<string, TagRecord>;
  manifests: Map<string, ManifestRecord>;
  links: Map<string, LinkRecord>;
  /** When something in it was last deleted (0: never). */
  deletedAt: number;
}

/** A change to one repository's records: a record to write, or null to remove it. */
export interface RecordChange {
  tags?: Record<string, TagRecord | null>;
  manifests?: Record<string, ManifestRecord | null>;
  links?: Record<string, LinkRecord | null>;
  deletedAt?: number;
}

const HEX = /^[a-f0-9]{64}$/;
/** RFC 6838's restricted name, type/subtype with an optional +suffix: what a manifest's media type may be. */
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

/**
 * The hosted repositories replicas share, in Redis: one hash per repository (`t:<tag>`,
 * `m:<manifest hex>`, `l:<blob hex>`, `d`), the set of names, and an announcement on
 * HOSTED_CHANNEL after each change, so every replica's own files (its read model, hosted/) follow.
 *
 * Every value is MAC'd with the fleet's record key over the repository, the field and the value:
 * Redis (or whoever can write to it) can drop a record or put back one it saw before, but cannot
 * make one, so it cannot link a private blob into another repository or point a tag at a manifest
 * nobody pushed there. Reads are bounded (above), and anything malformed or unsigned is ignored
 * and counted.
 */
export class HostedRecords {
  readonly #redis: Redis;
  readonly #key: KeyRing;
  /** Records read from Redis and refused (no MAC, a wrong one, malformed): hubcache_shared_records_rejected_total. */
  rejected = 0;

  readonly #badMac: () => void;

  constructor(redis: Redis, key: KeyRing, log: Logger) {
    this.#redis = redis;
    this.#key = key;
    this.#badMac = macWarning(log);
  }

  #seal(name: string, field: string, value: object): string {
    return seal(this.#key, `hosted v1\n${name}\n${field}`, value);
  }

  #open(name: string, field: string, raw: string): unknown {
    const opened = unseal(this.#key, `hosted v1\n${name}\n${field}`, raw);
    if (opened) return opened.value;
    this.rejected++;
    this.#badMac();
    return undefined;
  }

  /**
   * Writes a change, then announces it. Throws when Redis does not take it: a push must then fail,
   * or the other replicas would never see what this one answered 201 for.
   */
  async write(name: string, change: RecordChange): Promise<void> {
    const set: string[] = [];
    const del: string[] = [];
    const add = (field: string, value: object | null) => {
      if (value === null) del.push(field);
      else set.push(field, this.#seal(name, field, value));
    };
    for (const [tag, v] of Object.entries(change.tags ?? {})) add(`t:${tag}`, v);
    for (const [hex, v] of Object.entries(change.manifests ?? {})) add(`m:${hex}`, v);
    for (const [hex, v] of Object.entries(change.links ?? {})) add(`l:${hex}`, v);
    if (change.deletedAt !== undefined) add('d', { at: change.deletedAt });
    const multi = this.#redis.multi().sadd(NAMES, name);
    if (set.length) multi.hset(repositoryKey(name), ...set);
    if (del.length) multi.hdel(repositoryKey(name), ...del);
    const results = await multi.exec();
    const failed = results?.find(([err]) => err);
    if (!results || failed) throw failed?.[0] ?? new Error('redis: transaction discarded');
    await this.#redis.publish(HOSTED_CHANNEL, name);
  }

  /** A repository's records, or undefined beyond the bounds (a replica then keeps its own files). */
  async read(name: string): Promise<RepositoryRecords | undefined> {
    let all: string[];
    try {
      all = await readBounded(this.#redis, repositoryKey(name), 'all', MAX_HOSTED_FIELDS, MAX_HOSTED_BYTES);
    } catch (err) {
      if (err instanceof RedisBoundError) return undefined;
      throw err;
    }
    const records = emptyRecords();
    for (let i = 0; i + 1 < all.length; i += 2) {
      const field = all[i];
      const raw = all[i + 1];
      if (typeof field !== 'string' || typeof raw !== 'string' || raw.length > MAX_HOSTED_RECORD_BYTES)
        continue;
      this.#take(records, name, field, raw);
    }
    return records;
  }

  /**
   * Only the fields asked for (a replica about to answer 404 asks Redis whether another replica
   * took it meanwhile): `t:<tag>`, `m:<hex>`, `l:<hex>`. What is missing is absent from the result.
   */
  async fields(name: string, fields: string[]): Promise<RepositoryRecords> {
    const records = emptyRecords();
    const values = (await this.#redis.eval(
      BOUNDED_HMGET,
      1,
      repositoryKey(name),
      String(MAX_HOSTED_RECORD_BYTES),
      ...fields,
    )) as unknown[];
    fields.forEach((field, i) => {
      const raw = values[i];
      if (typeof raw === 'string') this.#take(records, name, field, raw);
    });
    return records;
  }

  #take(records: RepositoryRecords, name: string, field: string, raw: string): void {
    const kind = field.slice(0, 2);
    const id = field.slice(2);
    const value = this.#open(name, field, raw) as Record<string, unknown> | undefined;
    if (!value || typeof value !== 'object') return;
    const at = value.at;
    if (typeof at !== 'number' || !Number.isFinite(at)) return void this.rejected++;
    if (field === 'd') {
      records.deletedAt = at;
    } else if (kind === 't:' && isTag(id) && typeof value.d === 'string' && HEX.test(value.d)) {
      if (typeof value.mt !== 'string' || !MEDIA_TYPE.test(value.mt)) return void this.rejected++;
      records.tags.set(id, { d: value.d, mt: value.mt, at });
    } else if (kind === 'm:' && HEX.test(id)) {
      if (typeof value.mt !== 'string' || !MEDIA_TYPE.test(value.mt)) return void this.rejected++;
      const s = typeof value.s === 'string' && HEX.test(value.s) ? value.s : null;
      records.manifests.set(id, { mt: value.mt, s, at });
    } else if (kind === 'l:' && HEX.test(id)) {
      records.links.set(id, { at });
    } else {
      this.rejected++;
    }
  }

  /** Whether a repository of that name was ever pushed to, on any replica. */
  async isName(name: string): Promise<boolean> {
    return (await this.#redis.sismember(NAMES, name)) === 1;
  }

  /** Every hosted repository's name (valid ones only); throws beyond the bounds. */
  async names(): Promise<string[]> {
    const all = await readBounded(this.#redis, NAMES, 'set', MAX_HOSTED_NAMES, MAX_HOSTED_NAMES_BYTES);
    return all.filter(validName);
  }

  /** A repository left empty everywhere is no longer a name (only when its hash holds nothing). */
  async dropName(name: string): Promise<void> {
    await this.#redis.eval(
      `if redis.call('EXISTS', KEYS[2]) == 0 then return redis.call('SREM', KEYS[1], ARGV[1]) end return 0`,
      2,
      NAMES,
      repositoryKey(name),
      name,
    );
  }
}

function emptyRecords(): RepositoryRecords {
  return { tags: new Map(), manifests: new Map(), links: new Map(), deletedAt: 0 };
}

function validName(name: string): boolean {
  try {
    validateName(name);
    return true;
  } catch {
    return false;
  }
}
