import { LRUCache } from 'lru-cache';
import { acceptedTypes } from '../oci/media-types.js';

/** Accept header → the media types it allows; clients repeat theirs, so each is parsed once. */
const parsed = new LRUCache<string, Set<string>>({ max: 1000 });

/** The media types an Accept header allows (oci/media-types.ts), parsed once per distinct header. */
export function accepted(accept: string | string[] | undefined): ReadonlySet<string> {
  const key = Array.isArray(accept) ? accept.join(',') : (accept ?? '');
  let types = parsed.get(key);
  if (!types) {
    types = acceptedTypes(accept);
    parsed.set(key, types);
  }
  return types;
}
