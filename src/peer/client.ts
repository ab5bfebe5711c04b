import type { Readable } from 'node:stream';
import { type Dispatcher, Pool } from 'undici';
import type { KeyRing } from '../shared/fleet-keys.js';
import { PEER_REPLICA_ID, signPeer } from './auth.js';

/** Connections to one peer at most: blob streams between two replicas, not a pull's fan-out. */
export const PEER_CONNECTIONS = 8;

/** Failures that mean "the peer did not answer", as opposed to an answer it gave. */
const UNAVAILABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_SOCKET',
]);

/**
 * The peer could not be asked: not a peer URL, or no answer (refused, timed out, reset before the
 * response headers). The caller does the work itself (the upstream, its own copy) instead.
 */
export class PeerUnavailableError extends Error {
  readonly code: string;
  /** `http(s)://host:port` of the peer, never with userinfo. */
  readonly peer: string;
  constructor(peer: string, code: string, reason: string, options?: { cause?: unknown }) {
    super(`peer ${peer} unavailable: ${reason}`, options);
    this.name = 'PeerUnavailableError';
    this.code = code;
    this.peer = peer;
  }
}

export interface PeerClientOptions {
  connectTimeoutMs?: number | undefined;
  /** From the request sent to the response headers: a peer that stalls this long is given up on. */
  headersTimeoutMs?: number | undefined;
  /** Between two chunks of a response body: the body stream errors after this long without one. */
  idleTimeoutMs?: number | undefined;
}

export interface PeerRequestOptions {
  range?: string | undefined;
  /** Other request headers; `authorization` and `range` are the client's own (and signed). */
  headers?: Record<string, string> | undefined;
  body?: Dispatcher.DispatchOptions['body'];
}

export interface PeerResponse {
  status: number;
  headers: Dispatcher.ResponseData['headers'];
  /** Must be consumed or destroyed by the caller: it holds one of the pool's connections. */
  body: Readable;
}

/**
 * Requests to other replicas' peer listeners (peer/listener.ts), each signed as this replica
 * (peer/auth.ts), over one keep-alive pool per peer.
 */
export class PeerClient {
  readonly #ring: KeyRing;
  readonly #self: string;
  readonly #connectTimeoutMs: number;
  readonly #headersTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #pools = new Map<string, Pool>();
  #closed = false;

  constructor(ring: KeyRing, self: string, options: PeerClientOptions = {}) {
    if (!PEER_REPLICA_ID.test(self)) throw new TypeError('a replica id is a lowercase UUID');
    this.#ring = ring;
    this.#self = self;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 1000;
    this.#headersTimeoutMs = options.headersTimeoutMs ?? 5000;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 10_000;
  }

  /**
   * `path` is the path and query on the peer (`/_peer/v1/…`). Resolves at the response headers,
   * whatever the status; throws PeerUnavailableError when there is none to be had.
   */
  async request(
    peerUrl: URL,
    method: string,
    path: string,
    options: PeerRequestOptions = {},
  ): Promise<PeerResponse> {
    if (this.#closed) throw new Error('PeerClient is closed');
    const origin = peerOrigin(peerUrl);
    if (!path.startsWith('/')) throw new TypeError(`a peer request path starts with /: ${path}`);
    for (const name of Object.keys(options.headers ?? {})) {
      const lower = name.toLowerCase();
      if (lower === 'authorization' || lower === 'range' || lower === 'host')
        throw new TypeError(`the ${lower} header of a peer request is the client's own`);
    }
    const { range } = options;
    // Signed as it is handed to the pool: a request queued behind PEER_CONNECTIONS busy ones for
    // longer than the clock skew allowance (30 s) would be refused, and is then better retried.
    const authorization = signPeer(this.#ring, { method, path, range, replica: this.#self });
    const headers: Record<string, string> = {
      ...options.headers,
      authorization,
      ...(range !== undefined ? { range } : {}),
    };
    try {
      const res = await this.#pool(origin).request({
        method: method as Dispatcher.HttpMethod,
        path,
        headers,
        body: options.body ?? null,
      });
      // Callers destroy bodies they don't read; undici then emits an abort error, which must not
      // crash the process when nobody listens. Readers still see errors (iteration, pipeline).
      res.body.on('error', () => {});
      return { status: res.statusCode, headers: res.headers, body: res.body };
    } catch (err) {
      const code = errorCode(err);
      if (code !== undefined && UNAVAILABLE.has(code))
        throw new PeerUnavailableError(origin, code, (err as Error).message || code, { cause: err });
      throw err;
    }
  }

  /** Closes every pool, after the requests in progress (their bodies read or destroyed). */
  async close(): Promise<void> {
    this.#closed = true;
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => p.close()));
  }

  #pool(origin: string): Pool {
    let pool = this.#pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, {
        connections: PEER_CONNECTIONS,
        connect: { timeout: this.#connectTimeoutMs },
        headersTimeout: this.#headersTimeoutMs,
        bodyTimeout: this.#idleTimeoutMs,
      });
      this.#pools.set(origin, pool);
    }
    return pool;
  }
}

/**
 * A peer's origin from its advertised URL (`--peer-advertise`): http or https, no userinfo, no path
 * but `/`, no query or fragment. Anything else is a misconfiguration or a poisoned record, refused
 * without connecting; the message names the origin only (userinfo would be a credential).
 */
export function peerOrigin(url: URL): string {
  const named =
    url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : `${url.protocol}//${url.host}`;
  const bad = (why: string) => new PeerUnavailableError(named, 'EPEERURL', `not a peer URL (${why})`);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad('http: or https: only');
  if (url.username !== '' || url.password !== '') throw bad('userinfo');
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') throw bad('a path, query or fragment');
  return url.origin;
}

/** The code of a failure; Node reports an AggregateError when it tried several addresses. */
function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; errors?: { code?: unknown }[] };
  const code = e.code ?? e.errors?.[0]?.code;
  return typeof code === 'string' ? code : undefined;
}
