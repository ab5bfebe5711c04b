import { isIP } from 'node:net';
import { getDomain } from 'tldts';

/**
 * What the mirror may do with a token realm an upstream named in its challenge: fetch a token
 * sending the configured credentials, fetch one anonymously, or not contact it at all.
 */
export type RealmTrust = 'credentials' | 'anonymous' | 'refused';

/**
 * The realm is the upstream's to choose, so a hostile upstream could make the mirror GET anything
 * it can reach: the cloud metadata service (169.254.169.254), Redis on 127.0.0.1:6379, a host in
 * the operator's network. The rule (docs/PROTOCOL.md §1.2 "Realm trust"):
 *
 * - A realm is http(s). It is contacted only when it is inside the upstream's trust boundary: the
 *   upstream's own origin (scheme, host and port), or, for a named upstream, a host of the same
 *   registrable domain (eTLD+1 from the public suffix list, private suffixes included: tenants of
 *   github.io are different owners) on its scheme's default port or the upstream's port. Docker
 *   Hub's auth.docker.io for registry-1.docker.io is the case this allows. An upstream addressed
 *   by IP has no domain: only its own origin. Another port of the same host is another service.
 * - Or its host is one the operator listed (`listed`): a token server elsewhere (Keycloak).
 * - Credentials (Basic) go to the upstream's own origin, or over https to the rest of the above;
 *   never downgraded to plain http. Everything else is refused before any request.
 */
export function realmTrust(realm: URL, upstream: URL, listed: (hostname: string) => boolean): RealmTrust {
  if (realm.protocol !== 'https:' && realm.protocol !== 'http:') return 'refused';
  if (realm.origin === upstream.origin) return 'credentials';
  const secure = realm.protocol === 'https:' || upstream.protocol === 'http:';
  if (sameOwner(realm, upstream)) return realm.protocol === 'https:' ? 'credentials' : 'anonymous';
  if (listed(realm.hostname)) return secure ? 'credentials' : 'anonymous';
  return 'refused';
}

/** A named host of the upstream's registrable domain, on a port that is not some other service. */
function sameOwner(realm: URL, upstream: URL): boolean {
  if (isIP(bare(realm.hostname)) || isIP(bare(upstream.hostname))) return false;
  if (realm.port !== '' && effectivePort(realm) !== effectivePort(upstream)) return false;
  const a = getDomain(realm.hostname, { allowPrivateDomains: true });
  const b = getDomain(upstream.hostname, { allowPrivateDomains: true });
  return a !== null && a === b;
}

function effectivePort(url: URL): string {
  return url.port || (url.protocol === 'https:' ? '443' : '80');
}

/** URL keeps IPv6 hosts in brackets. */
function bare(hostname: string): string {
  return hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
}

/** Whether the configured credentials may be sent to this realm (see realmTrust). */
export function realmMayReceiveCredentials(
  realm: URL,
  upstream: URL,
  listed: (hostname: string) => boolean = () => false,
): boolean {
  return realmTrust(realm, upstream, listed) === 'credentials';
}
