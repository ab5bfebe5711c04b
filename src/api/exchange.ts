import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CacheOutcome } from '../cache/manifest-cache.js';

/**
 * One request and its response, as the handlers see them. Handlers write to Node's response
 * directly: a web-stream Response body measured ~3× slower on big blobs (docs/PERFORMANCE.md lesson 1),
 * and one writing path for every endpoint keeps headers and logging uniform.
 */
export interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  path: string;
  query: URLSearchParams;
  /** The endpoint family (manifest, blob, ...), for metrics. */
  endpoint: string;
  /** The canonical repository, once validated (for the dashboard's top repositories). */
  repository?: string;
  /** The registry a mirrored request was routed to (its RegistryApi.label): its errors name that registry. */
  upstream?: string;
  /** Filled in by handlers for the request log and X-Cache. */
  outcome?: CacheOutcome;
  /** Body bytes of the response, as announced (metrics count them once it completed). */
  bytes: number;
  /**
   * Body bytes the socket took, counted in the write callbacks of bodies sent in chunks (files,
   * streams, error bodies). A body sent whole in one `end()` is not counted here: once the response
   * finished the request log takes `bytes`, and before that nothing of it is known to have arrived.
   */
  sent: number;
}

/** The query of a request without one (most): shared, never written to (handlers only read it). */
const NO_QUERY: URLSearchParams = new URLSearchParams();

export function exchangeOf(req: IncomingMessage, res: ServerResponse): Exchange {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return {
    req,
    res,
    method: req.method ?? 'GET',
    path: q === -1 ? url : url.slice(0, q),
    query: q === -1 ? NO_QUERY : new URLSearchParams(url.slice(q + 1)),
    bytes: 0,
    sent: 0,
    endpoint: 'unknown',
  };
}
