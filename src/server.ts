import type { IncomingMessage, ServerResponse } from 'node:http';
import { getRequestListener, type HttpBindings } from '@hono/node-server';
import { Hono, type MiddlewareHandler } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { blobHandler } from './api/blobs.js';
import { catalogHandler } from './api/catalog.js';
import { type Exchange, exchangeOf } from './api/exchange.js';
import {
  hostedBlobHandler,
  hostedManifestHandler,
  hostedReferrersHandler,
  hostedTagsHandler,
} from './api/hosted.js';
import { manifestHandler } from './api/manifests.js';
import { referrersHandler } from './api/referrers.js';
import { sendError, sendJson } from './api/respond.js';
import { tagsHandler } from './api/tags.js';
import { uploadHandler } from './api/uploads.js';
import { isLoopback } from './auth/loopback.js';
import type { Action } from './auth/token-service.js';
import { toRegistryError } from './errors.js';
import type { Mirror } from './mirror.js';
import { dashboardHtml } from './observe/dashboard.js';
import { RegistryError } from './oci/errors.js';
import { parseReference, parseV2Path, type V2Route, validateName } from './oci/names.js';

const READ_METHODS = new Set(['GET', 'HEAD']);

type NamedRoute = Extract<V2Route, { name: string }>;

/**
 * The request listener. The registry API (/v2) goes straight to `dispatch` on Node's request and
 * response: hono answers HEAD by running the GET handler and wrapping its Response, which breaks a
 * handler that already wrote to the socket, and the blob hit path must stay free of per-request
 * layers (docs/PERFORMANCE.md lessons 1, 4, 5). Everything else (operator endpoints) is a hono app.
 */
export function createListener(mirror: Mirror): (req: IncomingMessage, res: ServerResponse) => void {
  const hono = getRequestListener(createOperatorApp(mirror).fetch);
  return (req, res) => {
    const url = req.url ?? '/';
    if (url === '/v2' || url.startsWith('/v2/') || url.startsWith('/v2?')) {
      void dispatch(mirror, req, res);
      return;
    }
    void hono(req, res);
  };
}

const loopbackOnly: MiddlewareHandler<{ Bindings: HttpBindings }> = async (c, next) => {
  if (!isLoopback(c.env.incoming.socket.remoteAddress)) {
    return c.json({ errors: [{ code: 'DENIED', message: 'only from the mirror host', detail: null }] }, 403);
  }
  await next();
};

/**
 * What names repositories (the dashboard and its summary) is as private as the repositories: with
 * client authentication, only from the mirror host or with valid credentials.
 */
function privateToUsers(mirror: Mirror): MiddlewareHandler<{ Bindings: HttpBindings }> {
  return async (c, next) => {
    const auth = mirror.auth;
    const address = c.env.incoming.socket.remoteAddress;
    if (!auth || isLoopback(address) || (await auth.check(c.req.header('authorization'), address ?? ''))) {
      await next();
      return;
    }
    c.header('WWW-Authenticate', `Basic realm="${auth.realm}"`);
    return c.json(
      { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: null }] },
      401,
    );
  };
}

/** Routes outside the registry API. */
export function createOperatorApp(mirror: Mirror): Hono<{ Bindings: HttpBindings }> {
  const app = new Hono<{ Bindings: HttpBindings }>();
  // Operator actions, from the mirror host only until the mirror has operator authentication.
  app.use('/_hubcache/invalidate', loopbackOnly);
  app.use('/_hubcache/pins', loopbackOnly);
  app.use('/_hubcache/gc', loopbackOnly);
  app.use('/ui/', privateToUsers(mirror));
  app.use('/_hubcache/summary', privateToUsers(mirror));
  // "Recheck this tag now" (e.g. after pushing a new `latest` upstream). The repository is resolved
  // as a request's name is: a registry's path prefix (ghcr.io/owner/app) or `ns`, else the default.
  app.post('/_hubcache/invalidate', async (c) => {
    const tag = c.req.query('tag') ?? '';
    const target = mirror.routes.resolve(c.req.query('repository') ?? '', c.req.query('ns') ?? null);
    const ref = parseReference(tag);
    if (ref.kind !== 'tag')
      throw new RegistryError('TAG_INVALID', 'a tag, not a digest: digests never change');
    const invalidated = await target.route.manifests.invalidate(target.name, ref.tag);
    const repository = target.key;
    mirror.log.info({ repository, tag, invalidated }, 'tag invalidated by operator');
    return c.json({ repository, tag, invalidated });
  });
  app.get('/', (c) =>
    c.text('hubcache: a pull-through mirror for Docker Hub. The registry API is at /v2/.\n'),
  );
  // Pins: blobs the size bound must keep (prefetch --pin sends the digests of what it fetched).
  app.post('/_hubcache/pins', async (c) => {
    const body = (await c.req.json().catch(() => ({}))) as { digests?: unknown };
    const digests = Array.isArray(body.digests)
      ? body.digests.filter((d): d is string => typeof d === 'string')
      : [];
    const pinned = await mirror.blobs.store.pin(digests.map((d) => d.replace(/^sha256:/, '')));
    return c.json({ pinned });
  });
  app.delete('/_hubcache/pins', async (c) => {
    await mirror.blobs.store.unpinAll();
    return c.json({ pinned: 0 });
  });
  // Garbage collection of blobs nothing refers to; safe while serving (cache/collect.ts).
  app.post('/_hubcache/gc', async (c) => {
    return c.json(await mirror.collectGarbage());
  });
  // The token endpoint of --anonymous-pull's token flow (auth/token-service.ts).
  app.get('/_hubcache/token', async (c) => {
    if (!mirror.tokens)
      return c.json(
        { errors: [{ code: 'NOT_FOUND', message: 'no authentication configured', detail: null }] },
        404,
      );
    const issued = await mirror.tokens.issue(
      c.req.header('authorization'),
      c.req.queries('scope') ?? [],
      c.env.incoming.socket.remoteAddress ?? '',
    );
    if (!issued) {
      c.header('WWW-Authenticate', `Basic realm="${mirror.auth?.realm ?? 'hubcache'}"`);
      return c.json({ errors: [{ code: 'UNAUTHORIZED', message: 'wrong credentials', detail: null }] }, 401);
    }
    return c.json(issued);
  });
  app.get('/ui', (c) => c.redirect('/ui/'));
  app.get('/ui/', async (c) => c.html(dashboardHtml(await mirror.summary())));
  app.get('/_hubcache/summary', async (c) => c.json(await mirror.summary()));
  app.get(mirror.config.metricsPath, async (c) => {
    c.header('Content-Type', mirror.metrics.registry.contentType);
    return c.body(await mirror.metrics.registry.metrics());
  });
  // Liveness: the process answers. Readiness: the cache can take writes (the upstream may be down:
  // a mirror that can serve its cache is ready).
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const r = await mirror.readiness();
    return c.json(r, r.ready ? 200 : 503);
  });
  app.notFound((c) => c.json({ errors: [{ code: 'NOT_FOUND', message: 'not found', detail: null }] }, 404));
  // The operator routes' one error handler: the same mapping as /v2's (toRegistryError), spec JSON.
  app.onError((err, c) => {
    const e = toRegistryError(err, mirror.routes.default.api.label);
    if (e.status >= 500 || !(err instanceof RegistryError)) {
      mirror.log.warn(
        { method: c.req.method, path: c.req.path, err: err.message },
        'operator request failed',
      );
    }
    for (const [k, v] of Object.entries(e.headers)) c.header(k, v);
    return c.json(e.toJSON(), e.status as ContentfulStatusCode);
  });
  return app;
}

/** One /v2 request, top to bottom: parse the endpoint, refuse writes, call the handler, log one line. */
async function dispatch(mirror: Mirror, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const ex = exchangeOf(req, res);
  const started = performance.now();
  res.once('close', () => logRequest(mirror, ex, started));
  try {
    await route(ex, mirror);
  } catch (err) {
    fail(ex, mirror, err);
  }
}

async function route(ex: Exchange, mirror: Mirror): Promise<void> {
  const endpoint = parseV2Path(ex.path);
  if (!endpoint) throw new RegistryError('NAME_UNKNOWN', 'no such endpoint', { path: ex.path });
  ex.endpoint = endpoint.kind;
  const write = !READ_METHODS.has(ex.method) || endpoint.kind === 'upload';
  await authorize(ex, mirror, endpoint, write);
  // containerd adds ?ns=<registry> to every request (spec "Registry Proxying"): echo it, as the spec suggests.
  // Only a registry host is echoed: anything else (control characters) must not reach a header.
  const ns = ex.query.get('ns');
  if (ns && /^[a-zA-Z0-9.-]{1,253}(?::\d{1,5})?$/.test(ns)) ex.res.setHeader('OCI-Namespace', ns);
  if (endpoint.kind === 'base') return sendJson(ex, 200, {});
  if (endpoint.kind === 'catalog') {
    if (write) throw readOnly(ex);
    return catalogHandler(ex, mirror.context);
  }
  // Pushed here, served from here: hosted repositories (hosted/repositories.ts says which names).
  if (write) return routeWrite(ex, mirror, endpoint);
  const ctx = mirror.context;
  const hosted = hostedName(mirror, endpoint.name, ns);
  if (hosted !== undefined) {
    ex.repository = hosted;
    switch (endpoint.kind) {
      case 'manifest':
        return hostedManifestHandler(ex, ctx, hosted, endpoint.reference);
      case 'blob':
        return hostedBlobHandler(ex, ctx, hosted, endpoint.digest);
      case 'tags':
        return hostedTagsHandler(ex, ctx, hosted);
      case 'referrers':
        return hostedReferrersHandler(ex, ctx, hosted, endpoint.digest);
    }
  }
  // Mirrored: which registry (containerd's ?ns=, a path prefix, or the default) and which repository
  // there; a registry that is not configured is refused before any upstream request.
  const target = mirror.routes.resolve(endpoint.name, ns);
  ex.repository = target.key;
  ex.upstream = target.route.api.label;
  switch (endpoint.kind) {
    case 'manifest':
      return manifestHandler(ex, target, endpoint.reference);
    case 'blob':
      return blobHandler(ex, ctx, target, endpoint.digest);
    case 'tags':
      return tagsHandler(ex, ctx, target);
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
function hostedName(mirror: Mirror, rawName: string, ns: string | null): string | undefined {
  if (!mirror.routes.namesDefault(ns) || !mirror.hosted.isHosted(rawName)) return undefined;
  return validateName(rawName);
}

/** Pushes, uploads and deletes: only hosted repositories take them. */
async function routeWrite(ex: Exchange, mirror: Mirror, endpoint: NamedRoute): Promise<void> {
  const name = validateName(endpoint.name);
  ex.repository = name;
  if (ex.method === 'DELETE' && endpoint.kind !== 'upload') {
    // Deleting never creates a hosted repository, and mirrored content is not the client's to delete.
    if (!mirror.hosted.isHosted(name)) {
      throw new RegistryError('UNSUPPORTED', `${name} is mirrored, not hosted: nothing to delete here`, {});
    }
  } else {
    mirror.hosted.checkPushable(name);
    // A push that would create a hosted repository must not take over a name the upstream serves.
    if (!mirror.hosted.isHosted(name)) await mirror.takeover.check(name);
  }
  switch (endpoint.kind) {
    case 'upload':
      return uploadHandler(ex, mirror.context, name, endpoint.session);
    case 'manifest':
      if (ex.method !== 'PUT' && ex.method !== 'DELETE') throw readOnly(ex);
      return hostedManifestHandler(ex, mirror.context, name, endpoint.reference);
    case 'blob':
      if (ex.method !== 'DELETE') throw readOnly(ex);
      return hostedBlobHandler(ex, mirror.context, name, endpoint.digest);
    default:
      throw readOnly(ex);
  }
}

function readOnly(ex: Exchange): RegistryError {
  return new RegistryError('UNSUPPORTED', `${ex.method} is not supported on this endpoint`, {
    method: ex.method,
  });
}

/**
 * Who may do what (docs/SECURITY.md). With an htpasswd file: Basic credentials or a token from
 * /_hubcache/token; with --anonymous-pull, reads need neither, but `/v2/` still answers 401 with a
 * Bearer challenge, which is how Docker learns where to get a push token. Writes (pushes, deletes)
 * without credentials only from where --anonymous-push allows: by default the mirror host itself.
 */
async function authorize(ex: Exchange, mirror: Mirror, endpoint: V2Route, write: boolean): Promise<void> {
  const auth = mirror.auth;
  const name = 'name' in endpoint ? endpoint.name : endpoint.kind === 'catalog' ? '*' : undefined;
  const action: Action = !write
    ? 'pull'
    : ex.method === 'DELETE' && endpoint.kind !== 'upload'
      ? 'delete'
      : 'push';
  const header = ex.req.headers.authorization;
  const bearer = /^Bearer\s/i.test(header ?? '');
  if (auth && header) {
    if (bearer ? mirror.tokens?.allows(header, name, action) : await auth.check(header, clientOf(ex))) return;
  }
  if (!write) {
    if (!auth || (mirror.config.anonymousPull && endpoint.kind !== 'base')) return;
  } else if (anonymousWriteAllowed(ex, mirror)) {
    return;
  } else if (!auth) {
    throw new RegistryError(
      'DENIED',
      mirror.config.hosted.anonymousPush === 'never'
        ? 'pushes are not accepted without credentials here'
        : 'pushes without credentials are accepted from the mirror host only: give the mirror --htpasswd for pushes from the network',
      { anonymousPush: mirror.config.hosted.anonymousPush },
    );
  }
  if (!mirror.config.anonymousPull) {
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
    'WWW-Authenticate': `Bearer realm="${tokenRealm(ex, mirror)}",service="hubcache"${scope}${error}`,
  });
}

/** --anonymous-push: pushes and deletes without credentials from the mirror host, from anywhere, or never. */
function anonymousWriteAllowed(ex: Exchange, mirror: Mirror): boolean {
  const who = mirror.config.hosted.anonymousPush;
  return who === 'anywhere' || (who === 'loopback' && isLoopback(clientOf(ex)));
}

function clientOf(ex: Exchange): string {
  return ex.req.socket.remoteAddress ?? '';
}

/**
 * The token endpoint clients are sent to: --public-url, else the address and port this connection
 * arrived on. Never the client's Host header: a challenge must not tell a client to send its
 * credentials wherever a request (or a proxy in between) claimed to be going.
 */
function tokenRealm(ex: Exchange, mirror: Mirror): string {
  if (mirror.config.publicUrl) return `${mirror.config.publicUrl.origin}/_hubcache/token`;
  const socket = ex.req.socket;
  const local = (socket.localAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
  const host = local.includes(':') ? `[${local}]` : local;
  const scheme = mirror.config.tls ? 'https' : 'http';
  return `${scheme}://${host}:${socket.localPort ?? mirror.config.listen.port}/_hubcache/token`;
}

/** The one place an error becomes a response. */
function fail(ex: Exchange, mirror: Mirror, err: unknown): void {
  const registryError = toRegistryError(err, ex.upstream ?? mirror.routes.default.api.label);
  if (registryError.status >= 500 || !(err instanceof RegistryError)) {
    mirror.log.warn({ method: ex.method, path: ex.path, err: (err as Error).message }, 'request failed');
  }
  if (ex.res.headersSent) {
    // Mid-body: the only honest signal left is a connection cut short.
    ex.res.destroy();
    return;
  }
  sendError(ex, registryError);
}

function logRequest(mirror: Mirror, ex: Exchange, started: number): void {
  const sent = ex.res.writableFinished ? ex.bytes : 0;
  mirror.metrics.request(ex.endpoint, ex.method, ex.outcome, ex.res.statusCode, sent);
  if (ex.repository && ex.outcome) mirror.repositories.count(ex.repository, sent, ex.res.statusCode);
  mirror.log.info({
    method: ex.method,
    path: ex.path,
    status: ex.res.statusCode,
    bytes: ex.bytes,
    complete: ex.res.writableFinished,
    ms: Math.round((performance.now() - started) * 10) / 10,
    cache: ex.outcome,
  });
}
