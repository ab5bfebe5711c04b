/**
 * Bearer tokens cached per (realm, service, scope) until `issued_at + expires_in` minus a skew, with
 * one token request in flight per key however many upstream requests need it at once (re-asking
 * per request is what got adevinta/noe rate-limited, docs/PROTOCOL.md §2 item 16).
 */
export interface TokenKey {
  realm: string;
  service: string;
  scope: string;
}

interface Entry {
  token: string;
  expiresAt: number;
}

const SKEW_MS = 10_000;
/** Token spec: "When omitted, this defaults to 60 seconds". */
const DEFAULT_EXPIRES_S = 60;

export class TokenCache {
  readonly #tokens = new Map<string, Entry>();
  readonly #pending = new Map<string, Promise<string>>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  async get(key: TokenKey, fetchToken: () => Promise<TokenResponse>): Promise<string> {
    const id = `${key.realm}\n${key.service}\n${key.scope}`;
    const entry = this.#tokens.get(id);
    if (entry && entry.expiresAt > this.#now()) return entry.token;
    let pending = this.#pending.get(id);
    if (!pending) {
      const requestedAt = this.#now();
      pending = fetchToken()
        .then((res) => {
          this.#tokens.set(id, { token: res.token, expiresAt: expiryOf(res, requestedAt) - SKEW_MS });
          return res.token;
        })
        .finally(() => this.#pending.delete(id));
      this.#pending.set(id, pending);
    }
    return pending;
  }

  invalidate(key: TokenKey): void {
    this.#tokens.delete(`${key.realm}\n${key.service}\n${key.scope}`);
  }
}

export interface TokenResponse {
  token: string;
  expiresIn?: number;
  issuedAt?: string;
}

export function expiryOf(res: TokenResponse, requestedAt: number): number {
  const expiresIn = res.expiresIn && res.expiresIn > 0 ? res.expiresIn : DEFAULT_EXPIRES_S;
  const issued = res.issuedAt ? Date.parse(res.issuedAt) : Number.NaN;
  // issued_at from a server with a skewed clock must not make a token look valid for longer.
  const start = Number.isFinite(issued) ? Math.min(issued, requestedAt) : requestedAt;
  return start + expiresIn * 1000;
}

/** Parses the token endpoint's JSON (`token` or OAuth2's `access_token`). */
export function parseTokenResponse(body: unknown): TokenResponse {
  const doc = (body ?? {}) as Record<string, unknown>;
  const token = typeof doc.token === 'string' ? doc.token : doc.access_token;
  if (typeof token !== 'string' || token === '') throw new Error('token response has no token');
  const res: TokenResponse = { token };
  if (typeof doc.expires_in === 'number') res.expiresIn = doc.expires_in;
  if (typeof doc.issued_at === 'string') res.issuedAt = doc.issued_at;
  return res;
}
