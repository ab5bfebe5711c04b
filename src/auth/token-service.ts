import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type KeyRing, sign, verify } from '../shared/fleet-keys.js';
import { tokenKeyFile } from '../storage/layout.js';
import type { ClientAuth } from './client-auth.js';

export type Action = 'pull' | 'push' | 'delete';

interface Claims {
  sub: string;
  /**
   * [repository name, actions granted] pairs; `*` stands for the catalog (registry:catalog:*).
   * Pairs, not an object keyed by name: a repository called `constructor` or `__proto__` must not
   * meet Object.prototype.
   */
  access: [string, Action[]][];
  exp: number;
}

const TTL_SECONDS = 300;
/** Scopes in one token request: Docker asks for one or two; a token's size stays bounded. */
const MAX_SCOPES = 16;

/**
 * The registry token flow, served by the registry itself: pushes for the htpasswd users only, and
 * pulls for them too, or for anyone with --anonymous-pull (never for a request without credentials
 * otherwise: a token is no way around the htpasswd file). Docker learns how to authenticate from the 401 on `/v2/`,
 * and with a Basic challenge it refuses to pull anonymously ("no basic auth credentials", moby
 * #30880); with a Bearer challenge it fetches a token, anonymously for a pull, with the user's
 * credentials for a push, as it does with Docker Hub. Tokens are opaque to clients: an HMAC over
 * the claims with a key kept in the data directory (so a restart does not void them), or, for
 * replicas with a fleet secret, a key derived from it (so a token from one replica is good on all:
 * behind a load balancer, `docker login` and a push meet several).
 */
export class TokenService {
  readonly #auth: ClientAuth;
  readonly #keyFile: string;
  readonly #anonymousPull: boolean;
  #key: KeyRing | Buffer = Buffer.alloc(0);
  readonly #shared: boolean;

  /** `key`: the fleet's token key (shared/fleet-keys.ts); absent, one kept in the data directory. */
  constructor(auth: ClientAuth, dataDir: string, anonymousPull: boolean, key?: KeyRing) {
    this.#auth = auth;
    this.#keyFile = tokenKeyFile(dataDir);
    this.#anonymousPull = anonymousPull;
    this.#shared = key !== undefined;
    if (key) this.#key = key;
  }

  async init(): Promise<void> {
    if (this.#shared) return;
    try {
      this.#key = await readFile(this.#keyFile);
      if (this.#key.length >= 32) return;
    } catch {
      // first start
    }
    this.#key = randomBytes(32);
    await mkdir(path.dirname(this.#keyFile), { recursive: true });
    await writeFile(this.#keyFile, this.#key, { mode: 0o600 });
  }

  /**
   * A token for the scopes asked (`repository:NAME:pull,push`, `registry:catalog:*`): everything
   * for a valid user, pull for anyone with --anonymous-pull. Undefined when credentials are wrong,
   * or missing without --anonymous-pull.
   */
  async issue(
    authorization: string | undefined,
    scopes: string[],
    client = '',
    now = Date.now(),
  ): Promise<{ token: string; access_token: string; expires_in: number; issued_at: string } | undefined> {
    const user = authorization ? await this.#auth.check(authorization, client) : undefined;
    if (!user && (authorization || !this.#anonymousPull)) return undefined;
    const access = new Map<string, Set<Action>>();
    for (const scope of scopes
      .flatMap((s) => s.split(' '))
      .filter(Boolean)
      .slice(0, MAX_SCOPES)) {
      const parsed = parseScope(scope);
      if (!parsed) continue;
      const granted = parsed.actions.filter((a) => a === 'pull' || user !== undefined);
      if (!granted.length) continue;
      const actions = access.get(parsed.name) ?? new Set();
      for (const a of granted) actions.add(a);
      access.set(parsed.name, actions);
    }
    const claims: Claims = {
      sub: user ?? '',
      access: [...access].map(([name, actions]) => [name, [...actions]]),
      exp: Math.floor(now / 1000) + TTL_SECONDS,
    };
    const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
    const token = `${payload}.${this.#sign(payload)}`;
    return { token, access_token: token, expires_in: TTL_SECONDS, issued_at: new Date(now).toISOString() };
  }

  /** Whether a Bearer token grants `action` on `name` (undefined name: only a valid token needed). */
  allows(
    authorization: string | undefined,
    name: string | undefined,
    action: Action,
    now = Date.now(),
  ): boolean {
    const m = /^Bearer\s+([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\s*$/i.exec(authorization ?? '');
    if (!m?.[1] || !m[2]) return false;
    if (!verify(this.#key, m[1], m[2])) return false;
    let claims: Claims;
    try {
      claims = JSON.parse(Buffer.from(m[1], 'base64url').toString('utf8')) as Claims;
    } catch {
      return false;
    }
    if (typeof claims.exp !== 'number' || claims.exp * 1000 < now) return false;
    if (name === undefined) return true;
    if (!Array.isArray(claims.access)) return false;
    return claims.access.some(
      (entry) =>
        Array.isArray(entry) && entry[0] === name && Array.isArray(entry[1]) && entry[1].includes(action),
    );
  }

  #sign(payload: string): string {
    return sign(this.#key, payload);
  }
}

/** `repository:team/app:pull,push` → name and actions; `registry:catalog:*` → name `*`, pull. */
export function parseScope(scope: string): { name: string; actions: Action[] } | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 1 || last <= first) return undefined;
  const type = scope.slice(0, first);
  const name = scope.slice(first + 1, last);
  const actions = scope
    .slice(last + 1)
    .split(',')
    .flatMap((a) => (a === '*' ? ['pull', 'push', 'delete'] : [a]))
    .filter((a): a is Action => a === 'pull' || a === 'push' || a === 'delete');
  if (type === 'registry' && name === 'catalog') return { name: '*', actions: ['pull'] };
  if (type !== 'repository' || !name) return undefined;
  return { name, actions };
}
