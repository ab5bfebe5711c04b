import { RegistryError } from '../oci/errors.js';
import type { V2Route } from '../oci/names.js';
import type { ClientAuth } from './client-auth.js';
import { isLoopback } from './loopback.js';
import type { Action, TokenService } from './token-service.js';

/** Who may do what, from the configuration: built once by the Mirror. */
export interface AccessPolicy {
  /** Client authentication (--htpasswd); without it, reads are open and writes follow anonymousPush. */
  readonly auth: Pick<ClientAuth, 'check' | 'realm'> | undefined;
  /** Bearer tokens from /_hubcache/token (accepted whenever auth is on). */
  readonly tokens: Pick<TokenService, 'allows'> | undefined;
  /** --anonymous-pull */
  readonly anonymousPull: boolean;
  /** --anonymous-push: writes without credentials from the mirror host, from anywhere, or never. */
  readonly anonymousPush: 'loopback' | 'anywhere' | 'never';
  /** --public-url: where challenges send clients for a token. */
  readonly publicUrl: URL | undefined;
  /** Whether clients reach the listener over TLS, and its configured port (the realm's fallbacks). */
  readonly tls: boolean;
  readonly port: number;
}

/** What a request asks for: a repository ('*' for the catalog, none for `/v2/`) and an action. */
export interface AccessRequest {
  readonly name: string | undefined;
  readonly action: Action;
  /** `/v2/` itself, the endpoint clients learn the authentication scheme from. */
  readonly base: boolean;
}

/** Who asks: the credentials sent and the connection's two ends. */
export interface Caller {
  readonly authorization: string | undefined;
  readonly remoteAddress: string;
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
}

/** A /v2 endpoint and method as the access they need: reads pull; uploads and writes push; deletes delete. */
export function requestedAccess(endpoint: V2Route, method: string, write: boolean): AccessRequest {
  const name = 'name' in endpoint ? endpoint.name : endpoint.kind === 'catalog' ? '*' : undefined;
  const action: Action = !write
    ? 'pull'
    : method === 'DELETE' && endpoint.kind !== 'upload'
      ? 'delete'
      : 'push';
  return { name, action, base: endpoint.kind === 'base' };
}

/**
 * Whether every read is allowed without looking at the request: no htpasswd file. The hit path then
 * skips `authorize` (which would allow it) and the objects it takes.
 */
export function readsAreOpen(policy: AccessPolicy): boolean {
  return !policy.auth;
}

/**
 * Who may do what (docs/SECURITY.md). With an htpasswd file: Basic credentials or a token from
 * /_hubcache/token; with --anonymous-pull, reads need neither, but `/v2/` still answers 401 with a
 * Bearer challenge, which is how Docker learns where to get a push token. Writes (pushes, deletes)
 * without credentials only from where --anonymous-push allows: by default the mirror host itself.
 * Resolves when allowed; throws the RegistryError to answer otherwise.
 */
export async function authorize(policy: AccessPolicy, access: AccessRequest, caller: Caller): Promise<void> {
  const { auth, tokens } = policy;
  const { name, action } = access;
  const write = action !== 'pull';
  const header = caller.authorization;
  const bearer = /^Bearer\s/i.test(header ?? '');
  if (auth && header) {
    if (bearer ? tokens?.allows(header, name, action) : await auth.check(header, caller.remoteAddress))
      return;
  }
  if (!write) {
    if (!auth || (policy.anonymousPull && !access.base)) return;
  } else if (anonymousWriteAllowed(policy, caller)) {
    return;
  } else if (!auth) {
    throw new RegistryError(
      'DENIED',
      policy.anonymousPush === 'never'
        ? 'pushes are not accepted without credentials here'
        : 'pushes without credentials are accepted from the mirror host only: give the mirror --htpasswd for pushes from the network',
      { anonymousPush: policy.anonymousPush },
    );
  }
  if (!policy.anonymousPull) {
    throw new RegistryError('UNAUTHORIZED', 'authentication required', null, {
      'WWW-Authenticate': `Basic realm="${auth.realm}"`,
    });
  }
  const scope =
    name && name !== '*'
      ? `,scope="repository:${name}:${write ? (action === 'delete' ? 'delete' : 'pull,push') : 'pull'}"`
      : '';
  const error = bearer ? ',error="insufficient_scope"' : '';
  throw new RegistryError('UNAUTHORIZED', 'authentication required', null, {
    'WWW-Authenticate': `Bearer realm="${tokenRealm(policy, caller)}",service="hubcache"${scope}${error}`,
  });
}

/** --anonymous-push: pushes and deletes without credentials from the mirror host, from anywhere, or never. */
function anonymousWriteAllowed(policy: AccessPolicy, caller: Caller): boolean {
  const who = policy.anonymousPush;
  return who === 'anywhere' || (who === 'loopback' && isLoopback(caller.remoteAddress));
}

/**
 * The token endpoint clients are sent to: --public-url, else the address and port this connection
 * arrived on. Never the client's Host header: a challenge must not tell a client to send its
 * credentials wherever a request (or a proxy in between) claimed to be going.
 */
function tokenRealm(policy: AccessPolicy, caller: Caller): string {
  if (policy.publicUrl) return `${policy.publicUrl.origin}/_hubcache/token`;
  const local = (caller.localAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
  const host = local.includes(':') ? `[${local}]` : local;
  const scheme = policy.tls ? 'https' : 'http';
  return `${scheme}://${host}:${caller.localPort ?? policy.port}/_hubcache/token`;
}
