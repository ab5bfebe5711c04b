import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import picomatch from 'picomatch';
import { Agent, errors as undiciErrors } from 'undici';
import type { UpstreamConfig } from '../config.js';
import type { Logger } from '../observe/logger.js';
import { type Challenge, parseWwwAuthenticate } from '../oci/www-authenticate.js';
import { UpstreamAuthError, UpstreamBackoffError, UpstreamUnreachableError } from './errors.js';
import { parseRateLimit, type RateLimitReading } from './rate-limit.js';
import { realmTrust } from './realm-trust.js';
import { parseTokenResponse, TokenCache, type TokenKey } from './token-cache.js';

export interface UpstreamRequest {
  method: 'GET' | 'HEAD';
  /** Path and query on the upstream, e.g. `/v2/library/alpine/manifests/3.20`. */
  path: string;
  /** The repository the request is about: it decides the token scope. */
  repository?: string;
  headers?: Record<string, string>;
}

export interface UpstreamResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** Must be consumed or destroyed by the caller. */
  body: Readable;
}

const MAX_REDIRECTS = 5;
/** Bytes of an upstream body read ahead of its reader (undici's `highWaterMark`). */
const BODY_HIGH_WATER_MARK = 1024 * 1024;

/**
 * After the upstream did not answer (no response headers within the timeout, no connection),
 * requests to it fail at once for this long instead of each waiting out the timeout again (an
 * upstream that accepts connections and never answers cost every uncached request 30 s, every
 * time). Cached content is served meanwhile, stale tags included; the first request after the
 * cool-down tries again, and any answer ends it. Long enough that a pull's burst of requests pays
 * one timeout, short enough that a recovered upstream is used again within seconds.
 */
export const UNREACHABLE_COOLDOWN_MS = 15_000;

/** Failures that mean "the upstream does not answer", not "this one request went wrong". */
const NOT_ANSWERING = new Set([
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * A reset before any answer: once can be a keep-alive connection the upstream closed just as a
 * request went out, so it takes two in a row (with no answer between) to start the cool-down.
 */
const RESETS = new Set(['ECONNRESET', 'UND_ERR_SOCKET', 'EPIPE']);

/**
 * A token response is a JWT or an opaque string in a small JSON document (Docker Hub's: ~5 KiB with
 * both `token` and `access_token`). Read whole, so it is bounded: a realm streaming 1.5 GB of JSON
 * took the mirror from 112 MB to 3 GB of RSS.
 */
export const MAX_TOKEN_RESPONSE_BYTES = 64 * 1024;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * Talks to one upstream registry: keep-alive pool, the registry token flow, and redirects followed
 * by hand so Authorization never crosses to another host (Docker Hub answers blob GETs with 307 to a
 * signed CDN URL that refuses double auth, docs/PROTOCOL.md §1.3).
 */
export class UpstreamClient {
  readonly #config: UpstreamConfig;
  readonly #agent: Agent;
  readonly #tokens = new TokenCache();
  readonly #log: Logger;
  /** The last Bearer challenge seen: lets later requests carry a token up front, saving a 401 round trip. */
  #bearer: { realm: string; service: string } | undefined;
  #basicChallenged = false;
  readonly #offline: boolean;
  /** After a 429: no upstream request before this time (ms since epoch). */
  #backoffUntil = 0;
  /** After the upstream did not answer: requests fail at once until this time (ms since epoch). */
  #unreachableUntil = 0;
  /** Resets in a row with no answer between (see RESETS). */
  #resets = 0;
  rateLimit: RateLimitReading | undefined;

  /** Told about every HTTP exchange with the upstream (metrics). */
  onExchange: ((method: string, status: number | 'error', seconds: number) => void) | undefined;

  readonly #redirectAllowed: (host: string) => boolean;
  readonly #realmListed: (host: string) => boolean;

  constructor(config: UpstreamConfig, log: Logger, offline = false) {
    this.#config = config;
    this.#redirectAllowed = picomatch(config.redirectHosts, { nocase: true });
    this.#realmListed = picomatch(config.realmHosts, { nocase: true });
    this.#log = log;
    this.#offline = offline;
    this.#agent = new Agent({
      connect: { timeout: config.connectTimeoutMs },
      headersTimeout: config.headersTimeoutMs,
      bodyTimeout: config.idleTimeoutMs,
      keepAliveTimeout: 30_000,
      connections: 64,
    });
  }

  get origin(): string {
    return this.#config.url.origin;
  }

  /** Seconds left of the cool-down after the upstream did not answer; undefined when there is none. */
  get retryInSeconds(): number | undefined {
    const wait = this.#unreachableUntil - Date.now();
    return wait > 0 ? Math.ceil(wait / 1000) : undefined;
  }

  /**
   * Why a request to this upstream would fail at once now, without going out: a 429's back-off, or
   * the cool-down after it did not answer (offline counts as that). Undefined when requests go out.
   * Work nobody asked for yet (layer prefetch, cache/layer-prefetch.ts) waits for neither.
   */
  get paused(): 'rate_limited' | 'unreachable' | undefined {
    if (this.#backoffUntil > Date.now()) return 'rate_limited';
    if (this.#offline || this.retryInSeconds !== undefined) return 'unreachable';
    return undefined;
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    if (this.#offline)
      throw new UpstreamUnreachableError('offline mode: the upstream is never contacted', 'EOFFLINE');
    const wait = this.#backoffUntil - Date.now();
    if (wait > 0) throw new UpstreamBackoffError(Math.ceil(wait / 1000));
    const retryIn = this.retryInSeconds;
    if (retryIn !== undefined) {
      throw new UpstreamUnreachableError(`upstream did not answer: retrying in ${retryIn} s`, 'ECOOLDOWN');
    }
    let auth = await this.#authorizationFor(req.repository, undefined, false);
    let res = await this.#follow(req, auth);
    if (res.status === 401) {
      const challenges = parseWwwAuthenticate(String(res.headers['www-authenticate'] ?? ''));
      const retryAuth = await this.#answerChallenge(challenges, req.repository, auth);
      if (retryAuth !== undefined) {
        res.body.destroy();
        auth = retryAuth;
        res = await this.#follow(req, auth);
      }
    }
    this.#noteRateLimit(res.headers);
    if (res.status === 429) this.#backOff(res.headers);
    return res;
  }

  /** Docker Hub's 429 (pull limit or abuse limit): wait as long as it says, 60 s when it says nothing. */
  #backOff(headers: IncomingHttpHeaders): void {
    const seconds = Math.min(3600, parseRetryAfter(headerValue(headers['retry-after']), Date.now()) ?? 60);
    this.#backoffUntil = Date.now() + seconds * 1000;
    this.#log.warn(
      { retryAfterSeconds: seconds, remaining: this.rateLimit?.remaining },
      'upstream answered 429: backing off',
    );
  }

  /** One request plus its redirects. Authorization is sent to the upstream's own origin only. */
  async #follow(req: UpstreamRequest, auth: string | undefined): Promise<UpstreamResponse> {
    let url = new URL(req.path, this.#config.url);
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'user-agent': 'hubcache/0.1', ...req.headers };
      if (auth && url.origin === this.#config.url.origin) headers.authorization = auth;
      const res = await this.#send(url, req.method, headers);
      const location = res.headers.location;
      if (!REDIRECTS.has(res.status) || typeof location !== 'string') return res;
      res.body.destroy();
      if (hop >= MAX_REDIRECTS)
        throw new UpstreamUnreachableError(`too many redirects from ${url.host}`, 'EREDIRECT');
      const next = new URL(location, url);
      if (next.protocol !== 'https:' && next.protocol !== 'http:') {
        throw new UpstreamUnreachableError(`redirect to unsupported scheme ${next.protocol}`, 'EREDIRECT');
      }
      if (next.host !== this.#config.url.host && !this.#redirectAllowed(next.hostname)) {
        this.#log.warn({ from: url.host, to: next.host }, 'upstream redirect to a host not allowed: refused');
        throw new UpstreamUnreachableError(
          `redirect to ${next.hostname}, which is not an allowed host`,
          'EREDIRECT',
        );
      }
      this.#log.debug({ from: url.host, to: next.host, status: res.status }, 'upstream redirect');
      url = next;
    }
  }

  async #send(url: URL, method: string, headers: Record<string, string>): Promise<UpstreamResponse> {
    const started = performance.now();
    try {
      const res = await this.#agent.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method,
        headers,
        // undici's default (64 KiB) pauses the socket every 64 KiB until the reader takes it: a
        // cold blob then arrives at ~500 MiB/s on loopback where 1 MiB lets it come at ~950
        // (docs/benchmarks.md). At most this much waits in memory per upstream body.
        highWaterMark: BODY_HIGH_WATER_MARK,
      });
      // Callers destroy bodies they don't read; undici then emits an abort error, which must not
      // crash the process when nobody is listening. Readers still see errors (iteration, pipeline).
      res.body.on('error', () => {});
      this.onExchange?.(method, res.statusCode, (performance.now() - started) / 1000);
      if (url.origin === this.#config.url.origin) {
        this.#unreachableUntil = 0;
        this.#resets = 0;
      }
      return { status: res.statusCode, headers: res.headers, body: res.body };
    } catch (err) {
      this.onExchange?.(method, 'error', (performance.now() - started) / 1000);
      const failure = toUnreachable(err, url);
      if (url.origin === this.#config.url.origin) this.#noteNoAnswer(failure);
      throw failure;
    }
  }

  /** The upstream itself (not a CDN it redirected to, not a token realm) failed to answer. */
  #noteNoAnswer(failure: UpstreamUnreachableError): void {
    const reset = RESETS.has(failure.code);
    if (reset) this.#resets++;
    if (!NOT_ANSWERING.has(failure.code) && !(reset && this.#resets >= 2)) return;
    this.#resets = 0;
    this.#unreachableUntil = Date.now() + UNREACHABLE_COOLDOWN_MS;
    this.#log.warn(
      {
        upstream: this.#config.url.host,
        reason: failure.code,
        retryInSeconds: UNREACHABLE_COOLDOWN_MS / 1000,
      },
      'upstream did not answer: failing fast, serving from cache',
    );
  }

  async #authorizationFor(
    repository: string | undefined,
    challengeScope: string | undefined,
    fresh: boolean,
  ): Promise<string | undefined> {
    if (this.#bearer) {
      const scope = challengeScope ?? (repository ? `repository:${repository}:pull` : '');
      const key: TokenKey = { ...this.#bearer, scope };
      if (fresh) this.#tokens.invalidate(key);
      const token = await this.#tokens.get(key, () => this.#fetchToken(key));
      return `Bearer ${token}`;
    }
    if (this.#basicChallenged) return this.#basicCredentials();
    return undefined;
  }

  async #answerChallenge(
    challenges: Challenge[],
    repository: string | undefined,
    sent: string | undefined,
  ): Promise<string | undefined> {
    const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
    if (bearer?.params.realm) {
      // Checked before it is kept: a refused realm is asked for again next time, not remembered.
      this.#realm(bearer.params.realm);
      this.#bearer = { realm: bearer.params.realm, service: bearer.params.service ?? '' };
      return this.#authorizationFor(repository, bearer.params.scope, true);
    }
    if (challenges.some((c) => c.scheme === 'basic')) {
      const basic = this.#basicCredentials();
      if (basic && basic !== sent) {
        this.#basicChallenged = true;
        return basic;
      }
    }
    return undefined;
  }

  #basicCredentials(): string | undefined {
    const { username, password } = this.#config;
    if (!username) return undefined;
    return `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}`;
  }

  /** The realm URL and what it may receive; UpstreamAuthError, before any request, when refused. */
  #realm(value: string): { realm: URL; credentials: boolean } {
    let realm: URL;
    try {
      realm = new URL(value);
    } catch (err) {
      throw new UpstreamAuthError('the upstream named a token realm that is not a URL', { cause: err });
    }
    const trust = realmTrust(realm, this.#config.url, this.#realmListed);
    if (trust === 'refused') {
      this.#log.warn({ realm: realm.origin }, 'token realm outside the upstream and not listed: refused');
      throw new UpstreamAuthError(
        `token realm ${realm.origin} is neither the upstream's own host or domain nor a listed realm host`,
      );
    }
    return { realm, credentials: trust === 'credentials' };
  }

  async #fetchToken(key: TokenKey): Promise<{ token: string; expiresIn?: number; issuedAt?: string }> {
    const { realm, credentials } = this.#realm(key.realm);
    if (key.service) realm.searchParams.set('service', key.service);
    for (const scope of key.scope.split(' ').filter(Boolean)) realm.searchParams.append('scope', scope);
    const headers: Record<string, string> = { 'user-agent': 'hubcache/0.1', accept: 'application/json' };
    const basic = this.#basicCredentials();
    if (basic && credentials) headers.authorization = basic;
    const res = await this.#send(realm, 'GET', headers);
    let text: string;
    try {
      text = (await readBody(res.body, MAX_TOKEN_RESPONSE_BYTES)).toString('utf8');
    } catch (err) {
      // Too big (ETOOBIG), or cut short: either way no token.
      throw new UpstreamAuthError(`token endpoint ${realm.host}: ${(err as Error).message}`, { cause: err });
    }
    if (res.status !== 200) {
      this.#log.warn({ realm: realm.host, status: res.status }, 'token request refused');
      throw new UpstreamAuthError(`token endpoint ${realm.host} answered ${res.status}`);
    }
    try {
      return parseTokenResponse(JSON.parse(text));
    } catch (err) {
      throw new UpstreamAuthError(`token endpoint ${realm.host} answered no token`, { cause: err });
    }
  }

  #noteRateLimit(headers: IncomingHttpHeaders): void {
    const reading = parseRateLimit(
      headerValue(headers['ratelimit-limit']),
      headerValue(headers['ratelimit-remaining']),
      Date.now(),
    );
    if (!reading) return;
    this.rateLimit = reading;
    if (reading.remaining < reading.limit * 0.1) {
      this.#log.warn(
        { limit: reading.limit, remaining: reading.remaining },
        'upstream pull rate limit almost used up',
      );
    }
  }
}

/** Retry-After is delay-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (!value) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, Math.ceil((at - now) / 1000)) : undefined;
}

export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Reads a whole (small) upstream body, refusing more than `limit` bytes. */
export async function readBody(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      body.destroy();
      throw new UpstreamUnreachableError(`upstream body larger than ${limit} bytes`, 'ETOOBIG');
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function toUnreachable(err: unknown, url: URL): UpstreamUnreachableError {
  if (err instanceof UpstreamUnreachableError) return err;
  const code =
    err instanceof undiciErrors.UndiciError
      ? ((err as { code?: string }).code ?? err.name)
      : ((err as { code?: string }).code ?? 'EUPSTREAM');
  return new UpstreamUnreachableError(`upstream ${url.host}: ${(err as Error).message}`, code, {
    cause: err,
  });
}
