import { isUpstreamOutage } from '../cache/manifest-cache.js';
import type { Target } from '../routing.js';
import type { HandlerContext } from './context.js';
import type { Exchange } from './exchange.js';
import { nextPage, paginate } from './paginate.js';
import { sendBody, sendJson } from './respond.js';

/**
 * GET /v2/<name>/tags/list: the upstream's answer passed through (its `n`/`last` and Link header
 * kept), since a tag list is only as good as it is current. When the upstream is down, the tags
 * this mirror holds, marked STALE.
 */
export async function tagsHandler(ex: Exchange, ctx: HandlerContext, target: Target): Promise<void> {
  const { name } = target;
  try {
    const { body, link } = await target.route.api.tags(name, ex.query.get('n'), ex.query.get('last'));
    ex.outcome = 'MISS';
    const headers: Record<string, string> = { 'Content-Type': 'application/json' };
    if (link) headers.Link = clientLink(link, ex);
    return sendBody(ex, 200, headers, body);
  } catch (err) {
    const local = isUpstreamOutage(err) ? await ctx.tags.tags(target.key) : [];
    if (local.length === 0) throw err;
    ex.outcome = 'STALE';
    const page = paginate(local, ex.query, ex.path);
    return sendJson(ex, 200, { name, tags: page.items }, page.headers);
  }
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
