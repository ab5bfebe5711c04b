/** Reads of the blob hit path, and the size of each reusable buffer. */
export const CHUNK = 1024 * 1024;

/**
 * Reusable 1 MiB read buffers. A fresh Buffer per chunk (what a file ReadStream does) costs page
 * faults and GC: a new mirror process served a 256 MiB blob at ~1.8 GB/s until the allocator had
 * warmed up, against ~4.5 GB/s with buffers reused (bench/hit-path.ts).
 */
export class BufferPool {
  readonly #free: Buffer[] = [];
  readonly #max: number;

  constructor(max = 16) {
    this.#max = max;
  }

  take(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
  }

  give(buf: Buffer): void {
    if (this.#free.length < this.#max) this.#free.push(buf);
  }
}
