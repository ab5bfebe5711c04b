import { statfs } from 'node:fs/promises';

/**
 * Whether the disk has room, leaving the configured free space (--min-free-space): a full disk
 * must turn misses into uncached pass-through, not into failed pulls.
 */
export class DiskRoom {
  readonly #dir: string;
  readonly #minFreeBytes: number;
  #free: { bytes: number; at: number } | undefined;

  constructor(dir: string, minFreeBytes: number) {
    this.#dir = dir;
    this.#minFreeBytes = minFreeBytes;
  }

  /**
   * Whether `size` more bytes fit. statfs at most once a second on the request path; a running fill
   * asks with `maxAgeMs` 0, since its own writes move the answer.
   */
  async hasRoomFor(size: number, maxAgeMs = 1000): Promise<boolean> {
    const now = Date.now();
    if (!this.#free || now - this.#free.at > maxAgeMs) {
      try {
        const s = await statfs(this.#dir);
        this.#free = { bytes: s.bavail * s.bsize, at: now };
      } catch {
        return true; // cannot tell: try, the write path fails cleanly if it must
      }
    }
    return this.#free.bytes - size >= this.#minFreeBytes;
  }

  /**
   * Bytes written outside the store's own writers (uploads, as they stream): counted off the last
   * statfs until the next one, so a fast upload cannot outrun the once-a-second check.
   */
  noteWritten(bytes: number): void {
    if (this.#free) this.#free.bytes -= bytes;
  }

  /** A write failed: after ENOSPC, treat the disk as full until the next statfs says otherwise. */
  noteWriteFailure(err: unknown): void {
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') this.#free = { bytes: 0, at: Date.now() };
  }
}
