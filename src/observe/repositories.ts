import { LRUCache } from 'lru-cache';

export interface RepositoryCount {
  repository: string;
  requests: number;
  bytes: number;
}

/** Requests and bytes per repository since start (the dashboard's top repositories), bounded. */
export class RepositoryCounts {
  readonly #counts = new LRUCache<string, { requests: number; bytes: number }>({ max: 1000 });

  count(repository: string, bytes: number): void {
    const entry = this.#counts.get(repository) ?? { requests: 0, bytes: 0 };
    entry.requests++;
    entry.bytes += bytes;
    this.#counts.set(repository, entry);
  }

  /** The `n` most requested. */
  top(n: number): RepositoryCount[] {
    return [...this.#counts.entries()]
      .map(([repository, v]) => ({ repository, ...v }))
      .sort((a, b) => b.requests - a.requests)
      .slice(0, n);
  }
}
