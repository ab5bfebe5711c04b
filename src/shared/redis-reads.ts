import type { Redis } from 'ioredis';

/**
 * Reads from Redis that never take more than they should (Redis is not trusted: docs/SECURITY.md):
 * each bound is checked inside Redis, by a script, so nothing beyond it is ever sent.
 */

/** HGET, or nil when the value is longer than ARGV[2] bytes. */
export const BOUNDED_HGET = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and #v > tonumber(ARGV[2]) then return false end
return v`;

/**
 * A hash's field names (ARGV[3] 'hash'), its fields and values ('all'), or a set's members ('set');
 * an error reply when there are more than ARGV[1] entries or they hold more than ARGV[2] bytes.
 */
const BOUNDED_READ = `
local kind = ARGV[3]
local n = kind == 'set' and redis.call('SCARD', KEYS[1]) or redis.call('HLEN', KEYS[1])
if n > tonumber(ARGV[1]) then return redis.error_reply('too many') end
local all
if kind == 'set' then all = redis.call('SMEMBERS', KEYS[1])
elseif kind == 'all' then all = redis.call('HGETALL', KEYS[1])
else all = redis.call('HKEYS', KEYS[1]) end
local bytes = 0
for i = 1, #all do
  bytes = bytes + #all[i]
  if bytes > tonumber(ARGV[2]) then return redis.error_reply('too big') end
end
return all`;

/** Beyond a bound: nothing was taken from Redis. */
export class RedisBoundError extends Error {}

/**
 * A hash's field names ('hash'), its fields and values flattened ('all': field, value, …), or a
 * set's members ('set'), within `maxEntries` and `maxBytes`; RedisBoundError beyond them.
 */
export async function readBounded(
  redis: Redis,
  key: string,
  kind: 'hash' | 'all' | 'set',
  maxEntries: number,
  maxBytes: number,
): Promise<string[]> {
  let all: unknown;
  try {
    all = await redis.eval(BOUNDED_READ, 1, key, String(maxEntries), String(maxBytes), kind);
  } catch (err) {
    if (/too many|too big/.test((err as Error).message)) throw new RedisBoundError((err as Error).message);
    throw err;
  }
  return Array.isArray(all) ? all.filter((x): x is string => typeof x === 'string') : [];
}
