/** Reads of the blob hit path: the size of the largest reusable buffer. */
export const CHUNK = 1024 * 1024;
/** The buffer sizes handed out, largest first; the last is given even over the budget. */
const SIZES = [CHUNK, 256 * 1024, 64 * 1024] as const;
export const SMALL_CHUNK = SIZES[SIZES.length - 1] as number;

/**
 * Reusable read buffers for the blob hit path, their memory bounded whatever the number of
 * connections. A fresh Buffer per chunk (what a file ReadStream does) costs page faults and GC: a
 * new mirror process served a 256 MiB blob at ~1.8 GB/s until the allocator had warmed up, against
 * ~4.5 GB/s with buffers reused (bench/hit-path.ts). So buffers are kept and reused, and sized by
 * what is left of a budget: 1 MiB while few responses are running (fewest reads per blob), 256 KiB
 * and then 64 KiB as more run at once. The smallest is handed out even over the budget rather than
 * making a response wait: a client that stops reading holds its buffers until
 * `--client-idle-timeout`, and waiting for one would let a few such clients stall every other
 * download. Memory for buffers is then at most the budget plus 128 KiB per response beyond it
 * (docs/SECURITY.md, "Bounds").
 */
export class BufferPool {
  readonly #free = new Map<number, Buffer[]>(SIZES.map((size) => [size, []]));
  readonly #budget: number;
  /** Bytes of buffers handed out and not given back. */
  #out = 0;
  /** Bytes of buffers kept for reuse. */
  #kept = 0;

  constructor(budgetBytes = 32 * 1024 * 1024) {
    this.#budget = budgetBytes;
  }

  /** A buffer to read into, as large as the budget allows. */
  take(): Buffer {
    const size = SIZES.find((s) => this.#out + s <= this.#budget) ?? SMALL_CHUNK;
    this.#out += size;
    const kept = this.#free.get(size)?.pop();
    if (kept) {
      this.#kept -= size;
      return kept;
    }
    return Buffer.allocUnsafeSlow(size);
  }

  /** Back to the pool, once nothing (no pending socket write) references it any more. */
  give(buf: Buffer): void {
    this.#out -= buf.length;
    const free = this.#free.get(buf.length);
    // Kept while what is out and what is kept fit the budget; else left to the GC.
    if (free && this.#out + this.#kept + buf.length <= this.#budget) {
      free.push(buf);
      this.#kept += buf.length;
    }
  }

  /** Bytes handed out and not given back (tests). */
  get outstanding(): number {
    return this.#out;
  }
}
