import type { IncomingMessage, ServerResponse } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { blobHandler } from './api/blobs.js';
import { catalogHandler } from './api/catalog.js';
import type { HandlerContext } from './api/context.js';
import { type Exchange, exchangeOf } from './api/exchange.js';
import type { HitLane } from './api/hit-lane.js';
import {
  hostedBlobHandler,
  hostedManifestHandler,
  hostedReferrersHandler,
  hostedTagsHandler,
} from './api/hosted.js';
import { manifestHandler } from './api/manifests.js';
import { createOperatorApp, type OperatorContext } from './api/operator.js';
import { referrersHandler } from './api/referrers.js';
import { sendError, sendJson } from './api/respond.js';
import { tagsHandler } from './api/tags.js';
import { uploadHandler } from './api/uploads.js';
import {
  type AccessPolicy,
  authorize,
  type Caller,
  readsAreOpen,
  requestedAccess,
} from './auth/authorize.js';
import { toRegistryError } from './errors.js';
import type { HostedRepositories } from './hosted/repositories.js';
import type { TakeoverGuard } from './hosted/takeover.js';
import type { AccessLog } from './observe/access-log.js';
import type { Logger } from './observe/logger.js';
import type { Metrics } from './observe/metrics.js';
import type { RepositoryCounts } from './observe/repositories.js';
import { RegistryError } from './oci/errors.js';
import { parseV2Path, type V2Route, validateName } from './oci/names.js';
import type { Routes } from './routing.js';

const READ_METHODS = new Set(['GET', 'HEAD']);

type NamedRoute = Extract<V2Route, { name: string }>;

/** What the request flow works with: built once by the Mirror (the composition root). */
export interface ServerContext {
  /** What the /v2 handlers get (api/context.ts), and the operator routes (api/operator.ts). */
  readonly handlers: HandlerContext;
  readonly operator: OperatorContext;
  /** Who may do what (auth/authorize.ts). */
  readonly access: AccessPolicy;
  /** Which registry a name means, and whether `?ns=` names the default one (hosted names shadow only it). */
  readonly routes: Pick<Routes, 'resolve' | 'namesDefault'>;
  /** How an error names the upstream when a request reaches no particular registry. */
  readonly defaultUpstream: string;
  /** Which names are pushed here, and whether a push may create one (the takeover rule). */
  readonly hosted: Pick<HostedRepositories, 'isHosted' | 'checkPushable' | 'learnName'>;
  readonly takeover: Pick<TakeoverGuard, 'check'>;
  /** Hits answered again before routing (api/hit-lane.ts). */
  readonly lane: Pick<HitLane, 'serve'>;
  /** Where each request is logged and counted: failures in `log`, every request in `accessLog`. */
  readonly log: Logger;
  readonly accessLog: Pick<AccessLog, 'record' | 'summedUp'>;
  readonly metrics: Pick<Metrics, 'request'>;
  readonly repositories: Pick<RepositoryCounts, 'count'>;
}

/**
 * The request listener. The registry API (/v2) goes straight to `dispatch` on Node's request and
 * response: hono answers HEAD by running the GET handler and wrapping its Response, which breaks a
 * handler that already wrote to the socket, and the blob hit path must stay free of per-request
 * layers (docs/PERFORMANCE.md lessons 1, 4, 5). Everything else (operator endpoints) is a hono app.
 */
export function createListener(ctx: ServerContext): (req: IncomingMessage, res: ServerResponse) => void {
  const hono = getRequestListener(createOperatorApp(ctx.operator).fetch);
  return (req, res) => {
    const url = req.url ?? '/';
    if (url === '/v2' || url.startsWith('/v2/') || url.startsWith('/v2?')) {
      dispatch(ctx, req, res);
      return;
    }
    void hono(req, res);
  };
}

/** One /v2 request, top to bottom: parse the endpoint, refuse writes, call the handler, log one line. */
function dispatch(ctx: ServerContext, req: IncomingMessage, res: ServerResponse): void {
  const ex = exchangeOf(req, res);
  const started = performance.now();
  // 'close' comes once per response (on: no once-wrapper per request on the hit path).
  res.on('close', () => logRequest(ctx, ex, started));
  // A hit answered before (a manifest or small blob held in memory) is sent again as it was, without
  // the promise an async function costs.
  if (ctx.lane.serve(ex)) return;
  void routed(ex, ctx);
}

/** The request path: the handler, and the error it throws answered in one place. */
async function routed(ex: Exchange, ctx: ServerContext): Promise<void> {
  try {
    await route(ex, ctx);
  } catch (err) {
    if (!(await hostedAfterAll(ex, ctx, err))) fail(ex, ctx, err);
  }
}

/**
 * Replicas: a read routed as mirrored that found nothing may name a repository another replica's
 * push created a moment ago, its announcement still on the way. Asked of the fleet then (only on a
 * 404: the hit path pays nothing), and answered as the hosted repository it is.
 */
async function hostedAfterAll(ex: Exchange, ctx: ServerContext, err: unknown): Promise<boolean> {
  if (!(err instanceof RegistryError) || err.status !== 404 || ex.res.headersSent) return false;
  if (!READ_METHODS.has(ex.method)) return false;
  const endpoint = parseV2Path(ex.path);
  if (!endpoint || !('name' in endpoint) || ctx.hosted.isHosted(endpoint.name)) return false;
  if (!(await ctx.hosted.learnName(endpoint.name).catch(() => false))) return false;
  try {
    await route(ex, ctx);
  } catch (again) {
    fail(ex, ctx, again);
  }
  return true;
}

async function route(ex: Exchange, ctx: ServerContext): Promise<void> {
  const endpoint = parseV2Path(ex.path);
  if (!endpoint) throw new RegistryError('NAME_UNKNOWN', 'no such endpoint', { path: ex.path });
  ex.endpoint = endpoint.kind;
  const write = !READ_METHODS.has(ex.method) || endpoint.kind === 'upload';
  if (write || !readsAreOpen(ctx.access)) {
    await authorize(ctx.access, requestedAccess(endpoint, ex.method, write), callerOf(ex, ctx));
  }
  // containerd adds ?ns=<registry> to every request (spec "Registry Proxying"): echo it, as the spec suggests.
  // Only a registry host is echoed: anything else (control characters) must not reach a header.
  const ns = ex.query.get('ns');
  if (ns && /^[a-zA-Z0-9.-]{1,253}(?::\d{1,5})?$/.test(ns)) ex.res.setHeader('OCI-Namespace', ns);
  if (endpoint.kind === 'base') return sendJson(ex, 200, {});
  if (endpoint.kind === 'catalog') {
    if (write) throw readOnly(ex);
    return catalogHandler(ex, ctx.handlers);
  }
  // Pushed here, served from here: hosted repositories (hosted/repositories.ts says which names).
  if (write) return routeWrite(ex, ctx, endpoint);
  const handlers = ctx.handlers;
  const hosted = hostedName(ctx, endpoint.name, ns);
  if (hosted !== undefined) {
    ex.repository = hosted;
    switch (endpoint.kind) {
      case 'manifest':
        return hostedManifestHandler(ex, handlers, hosted, endpoint.reference);
      case 'blob':
        return hostedBlobHandler(ex, handlers, hosted, endpoint.digest);
      case 'tags':
        return hostedTagsHandler(ex, handlers, hosted);
      case 'referrers':
        return hostedReferrersHandler(ex, handlers, hosted, endpoint.digest);
    }
  }
  // Mirrored: which registry (containerd's ?ns=, a path prefix, or the default) and which repository
  // there; a registry that is not configured is refused before any upstream request.
  const target = ctx.routes.resolve(endpoint.name, ns);
  ex.repository = target.key;
  ex.upstream = target.route.api.label;
  switch (endpoint.kind) {
    case 'manifest':
      return manifestHandler(ex, handlers, target, endpoint.reference);
    case 'blob':
      return blobHandler(ex, handlers, target, endpoint.digest);
    case 'tags':
      return tagsHandler(ex, handlers, target);
    case 'referrers':
      return referrersHandler(ex, target, endpoint.digest);
  }
}

/**
 * The hosted repository a request names, if it names one. containerd's `?ns=` naming another
 * registry means that registry; otherwise the name exactly as written (no library/ expansion): a
 * pushed `busybox` is this registry's `busybox`, while Docker's mirror requests for the official
 * image arrive as `library/busybox`.
 */
function hostedName(ctx: ServerContext, rawName: string, ns: string | null): string | undefined {
  if (!ctx.routes.namesDefault(ns) || !ctx.hosted.isHosted(rawName)) return undefined;
  return validateName(rawName);
}

/** Pushes, uploads and deletes: only hosted repositories take them. */
async function routeWrite(ex: Exchange, ctx: ServerContext, endpoint: NamedRoute): Promise<void> {
  const name = validateName(endpoint.name);
  ex.repository = name;
  if (ex.method === 'DELETE' && endpoint.kind !== 'upload') {
    // Deleting never creates a hosted repository, and mirrored content is not the client's to delete.
    if (!ctx.hosted.isHosted(name)) {
      throw new RegistryError('UNSUPPORTED', `${name} is mirrored, not hosted: nothing to delete here`, {});
    }
  } else {
    ctx.hosted.checkPushable(name);
    // A push that would create a hosted repository must not take over a name the upstream serves.
    if (!ctx.hosted.isHosted(name)) await ctx.takeover.check(name);
  }
  switch (endpoint.kind) {
    case 'upload':
      return uploadHandler(ex, ctx.handlers, name, endpoint.session);
    case 'manifest':
      if (ex.method !== 'PUT' && ex.method !== 'DELETE') throw readOnly(ex);
      return hostedManifestHandler(ex, ctx.handlers, name, endpoint.reference);
    case 'blob':
      if (ex.method !== 'DELETE') throw readOnly(ex);
      return hostedBlobHandler(ex, ctx.handlers, name, endpoint.digest);
    default:
      throw readOnly(ex);
  }
}

function readOnly(ex: Exchange): RegistryError {
  return new RegistryError('UNSUPPORTED', `${ex.method} is not supported on this endpoint`, {
    method: ex.method,
  });
}

/** Who asks: the credentials sent and the connection's two ends (never its Host header). */
function callerOf(ex: Exchange, ctx: ServerContext): Caller {
  const socket = ex.req.socket;
  return {
    authorization: ex.req.headers.authorization,
    remoteAddress: ctx.handlers.clientOf(ex.req),
    localAddress: socket.localAddress,
    localPort: socket.localPort,
  };
}

/**
 * An upload request another replica forwarded to this one, the session's owner (fleet-uploads.ts):
 * answered as if its client had sent it here. The replica it reached authorized it, and the peer
 * listener checked that replica's signature.
 */
export async function servePeerUpload(
  ctx: ServerContext,
  req: IncomingMessage,
  res: ServerResponse,
  name: string,
  session: string,
): Promise<void> {
  const ex = exchangeOf(req, res);
  ex.endpoint = 'upload';
  // Logged here too (not counted: the replica the client reached counts it, as forwarded).
  const started = performance.now();
  res.on('close', () => logRequest(ctx, ex, started, false));
  try {
    ex.repository = validateName(name);
    await uploadHandler(ex, ctx.handlers, name, session, true);
  } catch (err) {
    fail(ex, ctx, err);
  }
}

/** The one place an error becomes a response. */
function fail(ex: Exchange, ctx: ServerContext, err: unknown): void {
  const registryError = toRegistryError(err, ex.upstream ?? ctx.defaultUpstream);
  if (registryError.status >= 500 || !(err instanceof RegistryError)) {
    ctx.log.warn({ method: ex.method, path: ex.path, err: (err as Error).message }, 'request failed');
  }
  if (ex.res.headersSent) {
    // Mid-body: the only honest signal left is a connection cut short.
    ex.res.destroy();
    return;
  }
  sendError(ex, registryError);
}

/** A query logged at most (clients choose it; registry queries carry no secrets: ns, n, last, digest, mount). */
const MAX_LOGGED_QUERY = 512;

/** The request target as the client sent it, its query bounded. */
function target(ex: Exchange): string {
  const url = ex.req.url ?? ex.path;
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q + 1 + MAX_LOGGED_QUERY);
}

function logRequest(ctx: ServerContext, ex: Exchange, started: number, counted = true): void {
  const res = ex.res;
  const complete = res.writableFinished;
  const status = res.statusCode;
  const sent = complete ? ex.bytes : 0;
  if (counted) {
    ctx.metrics.request(ex.endpoint, ex.method, ex.outcome, status, sent);
    if (ex.repository && ex.outcome) ctx.repositories.count(ex.repository, sent, status);
  }
  // What the socket took: all that was announced once the response finished (a body sent in one
  // chunk is not counted on its way, respond.ts endWith), else what the write callbacks counted.
  const bytes = complete ? Math.max(ex.sent, ex.bytes) : ex.sent;
  const ms = Math.round((performance.now() - started) * 10) / 10;
  // A routine hit is summed up, not logged one by one (observe/access-log.ts): no line is built.
  if (ctx.accessLog.summedUp(ex.outcome, status, complete, ms, bytes)) return;
  ctx.accessLog.record({
    method: ex.method,
    path: target(ex),
    status,
    bytes,
    complete,
    ms,
    cache: ex.outcome,
  });
}
