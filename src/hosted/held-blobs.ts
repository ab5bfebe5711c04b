/**
 * The blobs hosted content holds, in memory: what the size bound and garbage collection must not
 * remove. Three sets: what is held (rebuilt by each collection, grown by pushes meanwhile), what
 * manifest PUTs under way have reserved, and what got held since the running collection began
 * (its snapshot may miss those).
 */
export class HeldBlobs {
  /** Grows until the next collection replaces it. */
  #held = new Set<string>();
  /** Blobs reserved by manifest PUTs under way, with how many reserve each. */
  readonly #pending = new Map<string, number>();
  /** Blobs held since the running collection began; undefined when none runs. */
  #recent: Set<string> | undefined;

  holds(hex: string): boolean {
    return this.#held.has(hex) || this.#pending.has(hex);
  }

  hold(hex: string): void {
    this.#held.add(hex);
    this.#recent?.add(hex);
  }

  /** What was found on disk at start, with what got held while it was read. */
  loaded(found: Set<string>): void {
    for (const hex of this.#held) found.add(hex);
    this.#held = found;
  }

  /**
   * Holds blobs for a manifest PUT under way until the returned function is called: from before
   * they are checked or fetched (a collection or an eviction cannot take one in between), without
   * keeping them when the PUT fails (a PUT naming thousands of made-up digests once held every one
   * in memory until the next collection).
   */
  reserve(hexes: Iterable<string>): () => void {
    const mine = [...new Set(hexes)];
    for (const hex of mine) this.#pending.set(hex, (this.#pending.get(hex) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const hex of mine) {
        const left = (this.#pending.get(hex) ?? 1) - 1;
        if (left > 0) this.#pending.set(hex, left);
        else this.#pending.delete(hex);
      }
    };
  }

  /** A collection starts: from now on, note what gets held, which its snapshot may miss. */
  beginCollection(): void {
    this.#recent = new Set();
  }

  heldSinceCollectionBegan(hex: string): boolean {
    return (this.#recent?.has(hex) ?? false) || this.#pending.has(hex);
  }

  /** A collection ends: what is held now (deleted manifests no longer hold their blobs). */
  endCollection(snapshot: Set<string> | undefined): void {
    if (snapshot) {
      for (const hex of this.#recent ?? []) snapshot.add(hex);
      this.#held = snapshot;
    }
    this.#recent = undefined;
  }
}
