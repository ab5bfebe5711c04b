import type { IncomingHttpHeaders } from 'node:http';
import { type ErrorCode, RegistryError } from '../oci/errors.js';

/**
 * What a client is told when the upstream answered something other than success and nothing
 * cached can stand in. 404 keeps its meaning, so dockerd and containerd report "not found". Docker
 * Hub answers 401 for repositories that do not exist or are private (docs/PROTOCOL.md §1.2): that is a
 * "not found" for our anonymous clients too. 429 keeps Retry-After; anything else is 503.
 */
export function upstreamFailure(
  status: number,
  headers: IncomingHttpHeaders,
  notFound: ErrorCode,
  detail: Record<string, unknown>,
): RegistryError {
  if (status === 404) return new RegistryError(notFound, undefined, { ...detail, upstreamStatus: status });
  if (status === 401 || status === 403) {
    return new RegistryError('NAME_UNKNOWN', 'repository does not exist upstream or requires authorization', {
      ...detail,
      upstreamStatus: status,
    });
  }
  if (status === 429) {
    const retry = headers['retry-after'];
    return new RegistryError(
      'TOOMANYREQUESTS',
      'upstream rate limit reached',
      { ...detail, upstreamStatus: status },
      typeof retry === 'string' ? { 'Retry-After': retry } : {},
    );
  }
  return new RegistryError('UNAVAILABLE', `upstream answered ${status}`, {
    ...detail,
    upstreamStatus: status,
  });
}
