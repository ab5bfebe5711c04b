import { describe, expect, it } from 'vitest';
import {
  expiryOf,
  parseTokenResponse,
  TokenCache,
  type TokenKey,
  type TokenResponse,
} from '../../src/upstream/token-cache.js';

const T0 = Date.parse('2025-01-01T00:00:00Z');

const HUB: TokenKey = {
  realm: 'https://auth.docker.io/token',
  service: 'registry.docker.io',
  scope: 'repository:library/alpine:pull',
};

/** A controllable clock and a token endpoint that counts its calls. */
function setup(responses: (n: number) => Partial<TokenResponse> = () => ({ expiresIn: 300 })) {
  let now = T0;
  const cache = new TokenCache(() => now);
  let calls = 0;
  const fetchToken = async (): Promise<TokenResponse> => {
    calls++;
    return { token: `token-${calls}`, ...responses(calls) };
  };
  return {
    cache,
    fetchToken,
    calls: () => calls,
    setNow: (t: number) => {
      now = t;
    },
  };
}

describe('TokenCache', () => {
  it('reuses a token until issued_at + expires_in − 10 s', async () => {
    const t = setup(() => ({ expiresIn: 300, issuedAt: new Date(T0).toISOString() }));
    expect(await t.cache.get(HUB, t.fetchToken)).toBe('token-1');
    t.setNow(T0 + 289_999);
    expect(await t.cache.get(HUB, t.fetchToken)).toBe('token-1');
    expect(t.calls()).toBe(1);
    t.setNow(T0 + 290_000);
    expect(await t.cache.get(HUB, t.fetchToken)).toBe('token-2');
    expect(t.calls()).toBe(2);
  });

  it('counts from issued_at when the token was issued before the request', async () => {
    const t = setup(() => ({ expiresIn: 300, issuedAt: new Date(T0 - 100_000).toISOString() }));
    await t.cache.get(HUB, t.fetchToken);
    t.setNow(T0 + 189_999);
    expect(await t.cache.get(HUB, t.fetchToken)).toBe('token-1');
    t.setNow(T0 + 190_000);
    expect(await t.cache.get(HUB, t.fetchToken)).toBe('token-2');
  });

  it('does not extend a token whose issued_at is in the future (server clock ahead)', async () => {
    const t = setup(() => ({ expiresIn: 300, issuedAt: new Date(T0 + 3_600_000).toISOString() }));
    await t.cache.get(HUB, t.fetchToken);
    t.setNow(T0 + 290_000);
    expect(await t.cache.get(HUB, t.fetchToken)).toBe('token-2');
  });

  it('assumes 60 s when expires_in is missing', async () => {
    const t = setup(() => ({}));
    await t.cache.get(HUB, t.fetchToken);
    t.setNow(T0 + 49_999);
    expect(await t.cache.get(HUB, t.fetchToken)).toBe('token-1');
    t.setNow(T0 + 50_000);
    expect(await t.cache.get(HUB, t.fetchToken)).toBe('token-2');
  });

  it('keeps a token per scope', async () => {
    const t = setup();
    const other = { ...HUB, scope: 'repository:library/busybox:pull' };
    expect(await t.cache.get(HUB, t.fetchToken)).toBe('token-1');
    expect(await t.cache.get(other, t.fetchToken)).toBe('token-2');
    expect(await t.cache.get(HUB, t.fetchToken)).toBe('token-1');
    expect(await t.cache.get(other, t.fetchToken)).toBe('token-2');
    expect(t.calls()).toBe(2);
  });

  it('keeps a token per realm and service too', async () => {
    const t = setup();
    await t.cache.get(HUB, t.fetchToken);
    await t.cache.get({ ...HUB, realm: 'https://other.example/token' }, t.fetchToken);
    await t.cache.get({ ...HUB, service: 'other' }, t.fetchToken);
    expect(t.calls()).toBe(3);
  });

  it('makes one token request for many concurrent callers', async () => {
    const t = setup();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let calls = 0;
    const slowFetch = async (): Promise<TokenResponse> => {
      calls++;
      await gate;
      return { token: 'shared', expiresIn: 300 };
    };
    const waiting = Array.from({ length: 10 }, () => t.cache.get(HUB, slowFetch));
    release();
    expect(await Promise.all(waiting)).toEqual(Array(10).fill('shared'));
    expect(calls).toBe(1);
  });

  it('does not cache a failed token request: the next caller asks again', async () => {
    const t = setup();
    let calls = 0;
    const failing = async (): Promise<TokenResponse> => {
      calls++;
      throw new Error('auth server down');
    };
    await expect(t.cache.get(HUB, failing)).rejects.toThrow('auth server down');
    await expect(t.cache.get(HUB, failing)).rejects.toThrow('auth server down');
    expect(calls).toBe(2);
    expect(await t.cache.get(HUB, t.fetchToken)).toBe('token-1');
  });

  it('fails every concurrent caller of a failed request, then recovers', async () => {
    const t = setup();
    let calls = 0;
    const failing = async (): Promise<TokenResponse> => {
      calls++;
      await Promise.resolve();
      throw new Error('503');
    };
    const results = await Promise.allSettled([t.cache.get(HUB, failing), t.cache.get(HUB, failing)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(calls).toBe(1);
    expect(await t.cache.get(HUB, t.fetchToken)).toBe('token-1');
  });

  it('fetches a new token after invalidate (e.g. upstream answered 401 to the cached one)', async () => {
    const t = setup();
    await t.cache.get(HUB, t.fetchToken);
    t.cache.invalidate(HUB);
    expect(await t.cache.get(HUB, t.fetchToken)).toBe('token-2');
  });

  it('invalidates only the given key', async () => {
    const t = setup();
    const other = { ...HUB, scope: 'repository:library/busybox:pull' };
    await t.cache.get(HUB, t.fetchToken);
    await t.cache.get(other, t.fetchToken);
    t.cache.invalidate(HUB);
    expect(await t.cache.get(other, t.fetchToken)).toBe('token-2');
    expect(t.calls()).toBe(2);
  });
});

describe('expiryOf', () => {
  it('counts expires_in seconds from the request when there is no issued_at', () => {
    expect(expiryOf({ token: 't', expiresIn: 300 }, T0)).toBe(T0 + 300_000);
  });

  it.each([0, -5])('falls back to 60 s for expires_in %i', (expiresIn) => {
    expect(expiryOf({ token: 't', expiresIn }, T0)).toBe(T0 + 60_000);
  });

  it('ignores an issued_at that is no date', () => {
    expect(expiryOf({ token: 't', expiresIn: 300, issuedAt: 'yesterday-ish' }, T0)).toBe(T0 + 300_000);
  });
});

describe('parseTokenResponse', () => {
  it('reads token, expires_in and issued_at', () => {
    expect(parseTokenResponse({ token: 'abc', expires_in: 300, issued_at: '2025-01-01T00:00:00Z' })).toEqual({
      token: 'abc',
      expiresIn: 300,
      issuedAt: '2025-01-01T00:00:00Z',
    });
  });

  it('accepts OAuth2’s access_token', () => {
    expect(parseTokenResponse({ access_token: 'xyz' })).toEqual({ token: 'xyz' });
  });

  it('prefers token when both are present', () => {
    expect(parseTokenResponse({ token: 'a', access_token: 'b' }).token).toBe('a');
  });

  it('ignores expires_in and issued_at of the wrong type', () => {
    expect(parseTokenResponse({ token: 'a', expires_in: '300', issued_at: 0 })).toEqual({ token: 'a' });
  });

  it.each([[{}], [{ token: '' }], [{ token: 5 }], [null], ['a string']])(
    'throws for %j, which carries no token',
    (body) => {
      expect(() => parseTokenResponse(body)).toThrow('no token');
    },
  );
});
