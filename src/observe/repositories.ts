import { LRUCache } from 'lru-cache';

export interface RepositoryCount {
  repository: string;
  requests: number;
  bytes: number;
}

/** Whether a response status means the request was served (2xx, or 3xx such as a redirect). */
export function served(status: number): boolean {
  return status >= 200 && status < 400;
}

/**
 * Requests and bytes per repository since start (the dashboard's top repositories), bounded.
 * Only requests that were served count: a refused push, a 404 for a blob a push probes, a name the
 * upstream does not know, or a failure is not what the repository is used for, and an operator
 * reading the list must not see a name nobody could pull (those show in /metrics as errors).
 */
export class RepositoryCounts {
  readonly #counts = new LRUCache<string, { requests: number; bytes: number }>({ max: 1000 });

  /** One request for `repository` answered with `status`, `bytes` of body sent; ignored unless served. */
  count(repository: string, bytes: number, status: number): void {
    if (!served(status)) return;
    // get() marks the entry used: a count in place needs no set(), the heavier call on every hit.
    const entry = this.#counts.get(repository);
    if (entry === undefined) {
      this.#counts.set(repository, { requests: 1, bytes });
      return;
    }
    entry.requests++;
    entry.bytes += bytes;
  }

  /** The `n` most requested. */
  top(n: number): RepositoryCount[] {
    return [...this.#counts.entries()]
      .map(([repository, v]) => ({ repository, ...v }))
      .sort((a, b) => b.requests - a.requests)
      .slice(0, n);
  }
}
