import type { IncomingMessage } from 'node:http';
import type { HttpBindings } from '@hono/node-server';
import { Hono, type MiddlewareHandler } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ClientAuth } from '../auth/client-auth.js';
import { isLoopback } from '../auth/loopback.js';
import type { TokenService } from '../auth/token-service.js';
import type { BlobStore } from '../cache/blob-store.js';
import { toRegistryError } from '../errors.js';
import { dashboardHtml } from '../observe/dashboard.js';
import type { Logger } from '../observe/logger.js';
import type { Readiness } from '../observe/readiness.js';
import type { Summary } from '../observe/summary.js';
import { RegistryError } from '../oci/errors.js';
import { parseReference } from '../oci/names.js';
import type { Routes } from '../routing.js';

/**
 * What the operator routes (everything outside /v2) work with: built once by the Mirror (the
 * composition root), like the /v2 handlers' context (context.ts).
 */
export interface OperatorContext {
  readonly log: Logger;
  /** Who a request comes from (auth/client-address.ts: behind --trusted-proxy, the forwarded client). */
  readonly clientOf: (req: IncomingMessage) => string;
  /** Which registry and repository a name means: invalidation resolves names as /v2 does. */
  readonly routes: Pick<Routes, 'resolve'>;
  /** How an error names the upstream when a request reaches no particular registry. */
  readonly defaultUpstream: string;
  /** Client authentication (--htpasswd): what names repositories is private to its users. */
  readonly auth: Pick<ClientAuth, 'check' | 'realm'> | undefined;
  /** The token flow (auth/token-service.ts), when client authentication is on. */
  readonly tokens: Pick<TokenService, 'issue'> | undefined;
  /** Blobs the size bound must keep. */
  readonly pins: Pick<BlobStore, 'pin' | 'unpinAll'>;
  /** Garbage collection of blobs nothing refers to, one at a time (cache/garbage-collection.ts). */
  /** Collects garbage: this replica's files, and with replicas the bucket's (`shared`). */
  readonly gc: { run(): Promise<object> };
  /** What the dashboard shows (observe/summary.ts). */
  summary(): Promise<Summary>;
  /** /readyz (observe/readiness.ts). */
  readiness(): Promise<Readiness>;
  /** Where Prometheus scrapes, and what it gets there. */
  readonly metricsPath: string;
  readonly metrics: { readonly contentType: string; metrics(): Promise<string> };
}

type Env = { Bindings: HttpBindings };

const loopbackOnly =
  (clientOf: OperatorContext['clientOf']): MiddlewareHandler<Env> =>
  async (c, next) => {
    if (!isLoopback(clientOf(c.env.incoming))) {
      return c.json(
        { errors: [{ code: 'DENIED', message: 'only from the mirror host', detail: null }] },
        403,
      );
    }
    await next();
  };

/**
 * What names repositories (the dashboard and its summary) is as private as the repositories: with
 * client authentication, only from the mirror host or with valid credentials.
 */
function privateToUsers(
  auth: OperatorContext['auth'],
  clientOf: OperatorContext['clientOf'],
): MiddlewareHandler<Env> {
  return async (c, next) => {
    const address = clientOf(c.env.incoming);
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

/** Routes outside the registry API: operator actions, the dashboard, metrics and health. */
export function createOperatorApp(ctx: OperatorContext): Hono<Env> {
  const app = new Hono<Env>();
  // Operator actions, from the mirror host only until the mirror has operator authentication.
  const local = loopbackOnly(ctx.clientOf);
  app.use('/_hubcache/invalidate', local);
  app.use('/_hubcache/pins', local);
  app.use('/_hubcache/gc', local);
  app.use('/ui/', privateToUsers(ctx.auth, ctx.clientOf));
  app.use('/_hubcache/summary', privateToUsers(ctx.auth, ctx.clientOf));
  // "Recheck this tag now" (e.g. after pushing a new `latest` upstream). The repository is resolved
  // as a request's name is: a registry's path prefix (ghcr.io/owner/app) or `ns`, else the default.
  app.post('/_hubcache/invalidate', async (c) => {
    const tag = c.req.query('tag') ?? '';
    const target = ctx.routes.resolve(c.req.query('repository') ?? '', c.req.query('ns') ?? null);
    const ref = parseReference(tag);
    if (ref.kind !== 'tag')
      throw new RegistryError('TAG_INVALID', 'a tag, not a digest: digests never change');
    const invalidated = await target.route.manifests.invalidate(target.name, ref.tag);
    const repository = target.key;
    ctx.log.info({ repository, tag, invalidated }, 'tag invalidated by operator');
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
    const pinned = await ctx.pins.pin(digests.map((d) => d.replace(/^sha256:/, '')));
    return c.json({ pinned });
  });
  app.delete('/_hubcache/pins', async (c) => {
    await ctx.pins.unpinAll();
    return c.json({ pinned: 0 });
  });
  // Garbage collection of blobs nothing refers to; safe while serving (cache/collect.ts).
  app.post('/_hubcache/gc', async (c) => c.json(await ctx.gc.run()));
  // The token endpoint of --anonymous-pull's token flow (auth/token-service.ts).
  app.get('/_hubcache/token', async (c) => {
    if (!ctx.tokens)
      return c.json(
        { errors: [{ code: 'NOT_FOUND', message: 'no authentication configured', detail: null }] },
        404,
      );
    const issued = await ctx.tokens.issue(
      c.req.header('authorization'),
      c.req.queries('scope') ?? [],
      ctx.clientOf(c.env.incoming),
    );
    if (!issued) {
      c.header('WWW-Authenticate', `Basic realm="${ctx.auth?.realm ?? 'hubcache'}"`);
      return c.json({ errors: [{ code: 'UNAUTHORIZED', message: 'wrong credentials', detail: null }] }, 401);
    }
    return c.json(issued);
  });
  app.get('/ui', (c) => c.redirect('/ui/'));
  app.get('/ui/', async (c) => c.html(dashboardHtml(await ctx.summary())));
  app.get('/_hubcache/summary', async (c) => c.json(await ctx.summary()));
  app.get(ctx.metricsPath, async (c) => {
    c.header('Content-Type', ctx.metrics.contentType);
    return c.body(await ctx.metrics.metrics());
  });
  // Liveness: the process answers. Readiness: the cache can take writes (the upstream may be down:
  // a mirror that can serve its cache is ready).
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const r = await ctx.readiness();
    return c.json(r, r.ready ? 200 : 503);
  });
  app.notFound((c) => c.json({ errors: [{ code: 'NOT_FOUND', message: 'not found', detail: null }] }, 404));
  // The operator routes' one error handler: the same mapping as /v2's (toRegistryError), spec JSON.
  app.onError((err, c) => {
    const e = toRegistryError(err, ctx.defaultUpstream);
    if (e.status >= 500 || !(err instanceof RegistryError)) {
      ctx.log.warn({ method: c.req.method, path: c.req.path, err: err.message }, 'operator request failed');
    }
    for (const [k, v] of Object.entries(e.headers)) c.header(k, v);
    return c.json(e.toJSON(), e.status as ContentfulStatusCode);
  });
  return app;
}
