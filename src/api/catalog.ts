import type { Mirror } from '../mirror.js';
import type { Exchange } from './exchange.js';
import { paginate } from './paginate.js';
import { sendJson } from './respond.js';

/**
 * GET /v2/_catalog: the repositories this registry holds, hosted and mirrored, in one sorted list
 * (not the upstream's: Docker Hub has none). A hosted name that shadows a mirrored one is listed once.
 */
export async function catalogHandler(ex: Exchange, mirror: Mirror): Promise<void> {
  const names = new Set([...(await mirror.hosted.repositories()), ...(await mirror.tags.repositories())]);
  const page = paginate([...names].sort(), ex.query, '/v2/_catalog');
  sendJson(ex, 200, { repositories: page.items }, page.headers);
}
