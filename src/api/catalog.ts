import type { Mirror } from '../mirror.js';
import type { Exchange } from './exchange.js';
import { paginate } from './paginate.js';
import { sendJson } from './respond.js';

/** GET /v2/_catalog: the repositories this mirror holds (not the upstream's: Docker Hub has none). */
export async function catalogHandler(ex: Exchange, mirror: Mirror): Promise<void> {
  const page = paginate(await mirror.tags.repositories(), ex.query, '/v2/_catalog');
  sendJson(ex, 200, { repositories: page.items }, page.headers);
}
