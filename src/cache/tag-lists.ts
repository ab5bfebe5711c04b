import type { RegistryApi } from '../upstream/registry-api.js';
import { isUpstreamOutage } from './manifest-cache.js';
import type { TagIndex } from './tag-index.js';

/** A mirrored repository's tag list: the upstream's page as it sent it, or the tags held here. */
export type TagList =
  | { kind: 'upstream'; body: Buffer; link: string | undefined }
  | { kind: 'stale'; tags: string[] };

/**
 * Tag lists of mirrored repositories: the upstream's answer passed through (its `n`/`last` and
 * Link kept), since a tag list is only as good as it is current. When the upstream is down, the
 * tags this mirror holds, stale; holding none, the upstream's failure.
 */
export class TagLists {
  readonly #tags: Pick<TagIndex, 'tags'>;

  constructor(tags: Pick<TagIndex, 'tags'>) {
    this.#tags = tags;
  }

  async list(
    target: { name: string; key: string; route: { api: RegistryApi } },
    n: string | null,
    last: string | null,
  ): Promise<TagList> {
    try {
      const { body, link } = await target.route.api.tags(target.name, n, last);
      return { kind: 'upstream', body, link };
    } catch (err) {
      const local = isUpstreamOutage(err) ? await this.#tags.tags(target.key) : [];
      if (local.length === 0) throw err;
      return { kind: 'stale', tags: local };
    }
  }
}
