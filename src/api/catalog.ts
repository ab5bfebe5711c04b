import type { HandlerContext } from './context.js';
import type { Exchange } from './exchange.js';
import { paginate } from './paginate.js';
import { sendJson } from './respond.js';

/**
 * GET /v2/_catalog: the repositories this registry holds, hosted and mirrored, in one sorted list
 * (not the upstream's: Docker Hub has none). A hosted name that shadows a mirrored one is listed once.
 */
export async function catalogHandler(ex: Exchange, ctx: HandlerContext): Promise<void> {
  const names = new Set([...(await ctx.hosted.repositories()), ...(await ctx.tags.repositories())]);
  const page = paginate([...names].sort(), ex.query, '/v2/_catalog');
  sendJson(ex, 200, { repositories: page.items }, page.headers);
}
