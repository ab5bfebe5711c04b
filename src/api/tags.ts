import type { Target } from '../routing.js';
import type { HandlerContext } from './context.js';
import type { Exchange } from './exchange.js';
import { nextPage, paginate } from './paginate.js';
import { sendBody, sendJson } from './respond.js';

/**
 * GET /v2/<name>/tags/list of a mirrored repository: the upstream's page with its Link pointed back
 * at the mirror, or, while the upstream is down, the tags held here, paginated here and marked
 * STALE (cache/tag-lists.ts decides which).
 */
export async function tagsHandler(ex: Exchange, ctx: HandlerContext, target: Target): Promise<void> {
  const list = await ctx.tagLists.list(target, ex.query.get('n'), ex.query.get('last'));
  if (list.kind === 'stale') {
    ex.outcome = 'STALE';
    const page = paginate(list.tags, ex.query, ex.path);
    return sendJson(ex, 200, { name: target.name, tags: page.items }, page.headers);
  }
  ex.outcome = 'MISS';
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  if (list.link) headers.Link = clientLink(list.link, ex);
  return sendBody(ex, 200, headers, list.body);
}

/**
 * The upstream's Link, pointed back at the mirror: the path the client asked for (a registry prefix
 * such as /v2/ghcr.io/owner/app stays, or page 2 would go to the default registry) and the client's
 * query (its `ns` too), with the upstream's pagination parameters. An absolute Link to the upstream
 * host would send the client around the ctx.
 */
function clientLink(link: string, ex: Exchange): string {
  const m = /<([^>]*)>(.*)/s.exec(link);
  if (!m) return link;
  let page: URLSearchParams;
  try {
    page = new URL(m[1] ?? '', 'http://upstream.invalid').searchParams;
  } catch {
    return link;
  }
  return `<${nextPage(ex.path, ex.query, page)}>${m[2] ?? ''}`;
}
