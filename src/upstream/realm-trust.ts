import { isIP } from 'node:net';
import { getDomain } from 'tldts';

/**
 * Credentials go only to a token realm inside the upstream's own trust boundary: the same host, or
 * the same registrable domain (eTLD+1, from the public suffix list) for a named host. Docker Hub's
 * realm auth.docker.io is trusted for registry-1.docker.io; a realm on another domain, or another
 * IP address, gets an anonymous token request. Mirrors distribution's `realmAllowed` rule
 * (PROTOCOL.md §1.2 "Realm trust").
 */
export function realmMayReceiveCredentials(realm: URL, upstream: URL): boolean {
  if (realm.protocol !== upstream.protocol && realm.protocol !== 'https:') return false;
  if (realm.hostname === upstream.hostname) return true;
  if (isIP(realm.hostname) || isIP(upstream.hostname)) return false;
  // Private suffixes count (github.io, herokuapp.com): tenants under them are different owners.
  const a = getDomain(realm.hostname, { allowPrivateDomains: true });
  const b = getDomain(upstream.hostname, { allowPrivateDomains: true });
  return a !== null && a === b;
}
