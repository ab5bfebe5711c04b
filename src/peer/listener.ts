import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../observe/logger.js';
import type { KeyRing } from '../shared/fleet-keys.js';
import { checkPeer, PEER_REPLICA_ID } from './auth.js';

/** Every peer route lives under this prefix; anything else is 404 on the peer listener. */
export const PEER_PATH_PREFIX = '/_peer/v1/';

/**
 * Peer requests in progress at once, across all peers: each can hold a blob stream (a file, buffers,
 * a socket) for as long as a pull takes. Beyond it, 503 with Retry-After: 1, and the asking replica
 * falls back to its own route (the upstream, or its own copy).
 */
export const MAX_PEER_STREAMS = 64;

/** A peer dribbling its request headers is cut off after this long (slowloris, as on the public port). */
export const PEER_HEADERS_TIMEOUT_MS = 10_000;

/** A socket on which no byte moved either way for this long is destroyed (a stalled reader or writer). */
export const PEER_IDLE_TIMEOUT_MS = 60_000;

/**
 * One peer route. `pattern` is tested against the path without the query and must be anchored
 * (`^…$`): the handler reads the query from `req.url`. `replica` is the verified sender's id.
 */
export interface PeerRoute {
  method: string;
  pattern: RegExp;
  handle(req: IncomingMessage, res: ServerResponse, match: RegExpExecArray, replica: string): Promise<void>;
}

export type PeerRoutes = readonly PeerRoute[];

export interface PeerListenerOptions {
  ring: KeyRing;
  /** This replica's own id: the ping answers with it, so a caller knows whom it reached. */
  self: string;
  log: Logger;
  routes: PeerRoutes;
  maxStreams?: number | undefined;
  headersTimeoutMs?: number | undefined;
  idleTimeoutMs?: number | undefined;
}

/**
 * `GET /_peer/v1/ping` → 204 naming this replica: a caller checks that the address it advertises
 * reaches the replica it means (not a previous one that had the address) and that the keys agree.
 */
function pingRoute(self: string): PeerRoute {
  return {
    method: 'GET',
    pattern: /^\/_peer\/v1\/ping$/,
    async handle(_req, res) {
      res.writeHead(204, { 'x-hubcache-replica': self });
      res.end();
    },
  };
}

/**
 * The listener replicas talk to each other on, never the public port: a bare node:http server, not
 * yet listening (the caller listens). Every request is signed by a replica of the fleet
 * (peer/auth.ts) or refused with 401 before anything else is looked at, so a stranger learns
 * nothing, not even which paths exist.
 */
export function createPeerListener(options: PeerListenerOptions): Server {
  const { ring, self, log } = options;
  if (!PEER_REPLICA_ID.test(self)) throw new TypeError('a replica id is a lowercase UUID');
  const maxStreams = options.maxStreams ?? MAX_PEER_STREAMS;
  const headersTimeout = options.headersTimeoutMs ?? PEER_HEADERS_TIMEOUT_MS;
  const idleTimeout = options.idleTimeoutMs ?? PEER_IDLE_TIMEOUT_MS;
  for (const route of options.routes) {
    const { source, flags } = route.pattern;
    // An unanchored pattern would match a route's path inside another; g and y make exec() stateful.
    if (!source.startsWith('^') || !source.endsWith('$') || /[gy]/.test(flags))
      throw new TypeError(`peer route ${route.method} ${source}: anchor it (^…$), without the g or y flag`);
  }
  const routes = [pingRoute(self), ...options.routes];
  let streams = 0;

  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const url = req.url ?? '';
    const range = req.headers.range;
    const verdict = checkPeer(ring, req.headers.authorization, { method, path: url, range });
    // The path is logged, never the header: it is replayable for PEER_CLOCK_SKEW_MS (auth.ts).
    const where = { remote: req.socket.remoteAddress, method, path: url.slice(0, 300) };
    if ('refused' in verdict) {
      log.warn({ ...where, reason: verdict.refused, claimed: verdict.claimed }, 'peer request refused');
      refuse(req, res, 401, 'unauthorized', { 'www-authenticate': 'HubcachePeer' });
      return;
    }
    const { replica } = verdict;
    if (!url.startsWith(PEER_PATH_PREFIX)) {
      log.warn({ ...where, replica }, 'peer request outside /_peer/v1/');
      refuse(req, res, 404, 'not found');
      return;
    }
    if (streams >= maxStreams) {
      log.warn({ ...where, replica, streams }, 'peer request refused: too many in progress');
      refuse(req, res, 503, 'busy', { 'retry-after': '1' });
      return;
    }
    const pathname = url.split('?', 1)[0] as string;
    let match: RegExpExecArray | null = null;
    let route: PeerRoute | undefined;
    let otherMethod = false;
    for (const r of routes) {
      const m = r.pattern.exec(pathname);
      if (!m) continue;
      if (r.method !== method) {
        otherMethod = true;
        continue;
      }
      route = r;
      match = m;
      break;
    }
    if (!route || !match) {
      log.warn({ ...where, replica }, 'peer request for no route');
      refuse(req, res, otherMethod ? 405 : 404, otherMethod ? 'method not allowed' : 'not found');
      return;
    }
    // The slot is held until the response is over, however it ends (finished, or the socket gone):
    // a handler may return before its stream has drained.
    streams++;
    res.once('close', () => {
      streams--;
    });
    try {
      await route.handle(req, res, match, replica);
    } catch (err) {
      log.error({ ...where, replica, err }, 'peer handler failed');
      if (!res.headersSent) refuse(req, res, 500, 'internal error');
      // Mid-body there is no way to say so but to cut the response short: the reader sees a
      // truncated body (and a blob reader a digest mismatch), never a well-formed partial one.
      else res.destroy();
    }
  };

  const server = createServer(
    {
      // Keep-alive between replicas for as long as an idle socket may live: undici honours the hint.
      keepAliveTimeout: idleTimeout,
      headersTimeout,
      // A whole request, body included (a proxied upload chunk): the same bound as the public port.
      requestTimeout: Math.max(300_000, headersTimeout + 1000),
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
    },
    (req, res) => {
      void serve(req, res);
    },
  );
  // Without a 'timeout' listener, Node destroys the socket: the idle bound of the public server.
  server.setTimeout(idleTimeout);
  return server;
}

/**
 * A short JSON answer. A request with a body we will not read (a refused upload chunk) also closes
 * the connection, so Node does not read and discard gigabytes to keep it alive.
 */
function refuse(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  error: string,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify({ error });
  const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length']) > 0;
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    ...(hasBody ? { connection: 'close' } : {}),
  });
  res.end(body);
}
