/** Reads of the blob hit path: the size of a large reusable buffer. */
export const CHUNK = 1024 * 1024;
/** The size of a buffer handed out once the large ones are all in use. */
export const SMALL_CHUNK = 64 * 1024;

/**
 * Reusable read buffers for the blob hit path, with a bound on their memory whatever the number of
 * connections. A fresh Buffer per chunk (what a file ReadStream does) costs page faults and GC: a
 * new mirror process served a 256 MiB blob at ~1.8 GB/s until the allocator had warmed up, against
 * ~4.5 GB/s with buffers reused (bench/hit-path.ts). So a few large (1 MiB) buffers are kept and
 * reused; they are capped, and once all are in use a response gets a small (64 KiB) one instead of
 * waiting: a client that stops reading holds its buffers until the socket times out, and waiting
 * for a buffer would let a few such clients stall every other download. Memory for buffers is then
 * at most `maxLarge` MiB plus 128 KiB per response in flight (docs/SECURITY.md, "Bounds").
 */
export class BufferPool {
  readonly #large: Buffer[] = [];
  readonly #small: Buffer[] = [];
  readonly #maxLarge: number;
  readonly #maxSmallFree: number;
  #largeAllocated = 0;

  constructor(maxLarge = 16, maxSmallFree = 64) {
    this.#maxLarge = maxLarge;
    this.#maxSmallFree = maxSmallFree;
  }

  /** A buffer to read into: large when one is free or may still be made, else small. */
  take(): Buffer {
    const large = this.#large.pop();
    if (large) return large;
    if (this.#largeAllocated < this.#maxLarge) {
      this.#largeAllocated++;
      return Buffer.allocUnsafeSlow(CHUNK);
    }
    return this.#small.pop() ?? Buffer.allocUnsafeSlow(SMALL_CHUNK);
  }

  /** Back to the pool, once nothing (no pending socket write) references it any more. */
  give(buf: Buffer): void {
    if (buf.length === CHUNK) this.#large.push(buf);
    else if (this.#small.length < this.#maxSmallFree) this.#small.push(buf);
  }

  /** Large buffers made so far (never more than the cap). */
  get largeAllocated(): number {
    return this.#largeAllocated;
  }
}
