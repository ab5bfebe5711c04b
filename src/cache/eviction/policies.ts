import type { EvictionPolicyName } from '../../config/types.js';
import { GdsfPolicy } from './gdsf.js';
import { LruPolicy } from './lru.js';
import { OversizeFirst } from './oversize-first.js';
import type { EvictionPolicy } from './policy.js';

/** The live policy --eviction names, for a store bounded to `maxBytes` (undefined: unbounded). */
export function evictionPolicy(name: EvictionPolicyName, maxBytes: number | undefined): EvictionPolicy {
  const policy = name === 'lru' ? new LruPolicy() : new GdsfPolicy();
  return maxBytes === undefined ? policy : new OversizeFirst(policy, maxBytes);
}
