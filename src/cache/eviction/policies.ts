import type { EvictionPolicyName } from '../../config/types.js';
import { GdsfPolicy } from './gdsf.js';
import { LruPolicy } from './lru.js';
import { OversizeFirst } from './oversize-first.js';
import type { EvictionPolicy } from './policy.js';
import { WhoFetched } from './who-fetched.js';

/**
 * The live policy --eviction names, for a store bounded to `maxBytes` (undefined: unbounded, and
 * nothing is recorded of who fetched what: nothing is evicted). `fetched` is the record GDSF weighs.
 */
export function evictionPolicy(
  name: EvictionPolicyName,
  maxBytes: number | undefined,
  fetched = new WhoFetched(),
): EvictionPolicy {
  if (maxBytes === undefined) return name === 'lru' ? new LruPolicy() : new GdsfPolicy();
  return new OversizeFirst(name === 'lru' ? new LruPolicy() : new GdsfPolicy({ fetched }), maxBytes);
}
