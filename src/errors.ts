import { DigestMismatchError, SizeMismatchError } from './cache/blob-store.js';
import { RegistryError } from './oci/errors.js';
import { UpstreamAuthError, UpstreamBackoffError, UpstreamUnreachableError } from './upstream/errors.js';

/*
 * The one mapping from an error to the spec's error (code, HTTP status, message, headers): /v2's
 * dispatch and the operator routes' error handler both answer with what this gives. Upstream
 * answers other than success are UpstreamStatusError (upstream/registry-api.ts), a RegistryError
 * already naming the registry that answered.
 */

/**
 * Upstream failures name the upstream: the operator reading a client's error must know where to
 * look. `upstream` is the registry the request was routed to (with several registries configured,
 * a ghcr.io outage must not read as a Docker Hub one); requests that reach no particular registry
 * name the default.
 */
export function toRegistryError(err: unknown, upstream: string): RegistryError {
  if (err instanceof RegistryError) return err;
  if (err instanceof UpstreamUnreachableError) {
    return new RegistryError('UNAVAILABLE', `upstream registry ${upstream} unreachable`, {
      reason: err.code,
    });
  }
  if (err instanceof UpstreamBackoffError) {
    return new RegistryError(
      'TOOMANYREQUESTS',
      `upstream registry ${upstream} rate limit: retry later`,
      null,
      {
        'Retry-After': String(err.retryAfterSeconds),
      },
    );
  }
  if (err instanceof UpstreamAuthError) {
    return new RegistryError('UNAVAILABLE', `upstream registry ${upstream}: could not get a token`, {
      reason: err.message,
    });
  }
  if (err instanceof DigestMismatchError || err instanceof SizeMismatchError) {
    return new RegistryError('UNAVAILABLE', 'upstream sent content that does not match its digest', {});
  }
  // The spec has no code for a full disk; 503 says "not now" and the message says why.
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new RegistryError('UNAVAILABLE', "the mirror's data disk is full: nothing can be stored now", {
      reason: code,
    });
  }
  if (code === 'EROFS' || code === 'EACCES') {
    return new RegistryError('UNAVAILABLE', "the mirror's data directory cannot be written", {
      reason: code,
    });
  }
  return new RegistryError('UNKNOWN', 'internal error', {});
}
