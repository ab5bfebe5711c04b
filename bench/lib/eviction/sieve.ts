import type { EvictionPolicy } from '../../../src/cache/eviction/policy.js';

interface Node {
  key: string;
  visited: boolean;
  newer: Node | undefined;
  older: Node | undefined;
}

/**
 * SIEVE (Zhang et al., NSDI 2024): one FIFO with a visited bit and a hand that moves from the
 * oldest towards the newest, clearing bits, and evicts the first blob not visited since the hand
 * last passed. New blobs enter at the newest end; hits only set the bit.
 */
export class SievePolicy implements EvictionPolicy {
  readonly #nodes = new Map<string, Node>();
  #newest: Node | undefined;
  #oldest: Node | undefined;
  #hand: Node | undefined;

  insert(key: string, _size: number): void {
    if (this.#nodes.has(key)) {
      this.hit(key);
      return;
    }
    const n: Node = { key, visited: false, newer: undefined, older: this.#newest };
    if (this.#newest) this.#newest.newer = n;
    this.#newest = n;
    this.#oldest ??= n;
    this.#nodes.set(key, n);
  }

  hit(key: string): void {
    const n = this.#nodes.get(key);
    if (n) n.visited = true;
  }

  remove(key: string): void {
    const n = this.#nodes.get(key);
    if (!n) return;
    this.#nodes.delete(key);
    if (this.#hand === n) this.#hand = n.newer;
    if (n.older) n.older.newer = n.newer;
    else this.#oldest = n.newer;
    if (n.newer) n.newer.older = n.older;
    else this.#newest = n.older;
  }

  victim(may: (key: string) => boolean): string | undefined {
    let budget = 2 * this.#nodes.size + 1;
    let n = this.#hand ?? this.#oldest;
    while (n && budget-- > 0) {
      if (n.visited) n.visited = false;
      else if (may(n.key)) {
        this.#hand = n.newer;
        const key = n.key;
        this.remove(key);
        return key;
      }
      n = n.newer ?? this.#oldest;
    }
    return undefined;
  }
}
