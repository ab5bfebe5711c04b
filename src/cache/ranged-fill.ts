import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { BlobWriter } from './blob-writer.js';
import { SizeMismatchError } from './blob-writer.js';
import type { BlobFill } from './fill.js';

/**
 * A blob at least this big, of a size known up front, is fetched over several upstream connections
 * (--upstream-parallel). It pays when one connection's transfer time is long against a request's
 * round trip: 8 MiB at 16 MiB/s (a per-connection limit as bench/lib/shaped-front.ts injects) is
 * half a second, against ~50 ms per segment request over the internet. Below it, the extra
 * requests would cost about what they bring.
 */
export const PARALLEL_MIN_BYTES = 8 * 1024 * 1024;

/**
 * Segments are the blob split over the connections, within these bounds: at least 2 MiB, so a
 * segment's round trip costs at most ~a third of its transfer at 16 MiB/s; at most 8 MiB, so the
 * window keeps every connection busy on a big layer and a failed segment costs little to fetch
 * again. Segments are written to the temp file as they arrive and hashed by reading them back, so
 * their size costs no memory.
 */
export const MIN_SEGMENT_BYTES = 2 * 1024 * 1024;
export const MAX_SEGMENT_BYTES = 8 * 1024 * 1024;

/** The segment size of a ranged fill of `size` bytes over `parallel` connections. */
export function segmentBytesFor(size: number, parallel: number): number {
  return Math.min(MAX_SEGMENT_BYTES, Math.max(MIN_SEGMENT_BYTES, Math.ceil(size / parallel)));
}

/**
 * Segments pay only when one connection is slow. A connection that delivers the blob's first 4 MiB
 * within 40 ms of its answer (100 MiB/s and more: an upstream on the same host or LAN) is left to
 * bring the whole blob: over segments, the same bytes cost the upstream and the mirror a request
 * each, a read back of every segment for hashing, and a first body cut short after its segment
 * (measured on loopback: about 0.7 s more CPU in the mirror and twice the upstream's for 256 MiB,
 * docs/benchmarks.md). On a link with a round trip of tens of milliseconds the first 4 MiB cannot
 * come that fast, so an upstream on the internet still gets segments (bench/cold-pull.ts). The
 * sample is held in memory while it is taken: 4 MiB per big fill starting, for 40 ms at most.
 */
export const KEEPS_UP_SAMPLE_BYTES = 4 * 1024 * 1024;
export const KEEPS_UP_WINDOW_MS = 40;

/**
 * Whether `body` delivers `sample` bytes within `windowMs`: reads them, then puts them back at the
 * head of the stream (unshift), so its reader sees every byte. Undefined when the body ended or
 * failed meanwhile: the bytes read are then in `replay`, the body to read instead (the caller's
 * checks find it short, or meet the error, as they would have).
 */
export async function keepsUp(
  body: Readable,
  sample = KEEPS_UP_SAMPLE_BYTES,
  windowMs = KEEPS_UP_WINDOW_MS,
): Promise<{ fast: boolean; replay?: Readable }> {
  const chunks: Buffer[] = [];
  let got = 0;
  let stopped: 'ended' | 'failed' | undefined;
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      body.off('readable', onReadable);
      body.off('end', onEnd);
      body.off('error', onError);
      resolve();
    };
    const onReadable = () => {
      for (let chunk = body.read() as Buffer | null; chunk !== null; chunk = body.read() as Buffer | null) {
        chunks.push(chunk);
        got += chunk.length;
        if (got >= sample) return done();
      }
    };
    const onEnd = () => {
      stopped = 'ended';
      done();
    };
    const onError = () => {
      stopped = 'failed';
      done();
    };
    const timer = setTimeout(done, windowMs);
    body.on('readable', onReadable);
    body.once('end', onEnd);
    body.once('error', onError);
  });
  if (stopped === 'failed') {
    // The bytes read are dropped: the caller's reader meets the error and starts again at byte 0.
    return { fast: false, replay: body };
  }
  const head = Buffer.concat(chunks);
  if (stopped === 'ended') return { fast: false, replay: Readable.from([head], { objectMode: false }) };
  if (head.length > 0) body.unshift(head);
  return { fast: got >= sample };
}

/** Read-back for hashing, in this much at a time. */
const HASH_CHUNK = 1024 * 1024;

/** Thrown for a segment that did not come as asked (after its one retry). */
export class SegmentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SegmentError';
  }
}

export interface RangedFillOptions {
  /** The blob's size, known up front (the first answer's Content-Length). */
  size: number;
  segmentBytes: number;
  /** Segments in flight at most (--upstream-parallel); the window runs from the first incomplete one. */
  parallel: number;
  /**
   * Connections wanted now, 1..parallel, asked before each segment starts: the caller narrows it
   * to 1 while other clients' fills wait for a turn, so a parallel fill never starves them.
   */
  width(): number;
  /** Bytes [start, end] from the upstream; anything but exactly those rejects (a 200, a 5xx, another range). */
  fetch(start: number, end: number): Promise<Readable>;
  /** Bodies already answering: the first GET (the blob from byte 0; only its first segment is used) and the probe's. */
  first: Map<number, Readable>;
  /** `checkRoom` is called every this many bytes hashed. */
  roomCheckBytes: number;
  /** Throws to stop the fill (e.g. the disk is nearly full). */
  checkRoom(written: number): Promise<void>;
  onSegment(): void;
  /** A segment failed once and is fetched again. */
  onRetry(index: number, err: Error): void;
}

/**
 * Fetches a blob as segments over up to `parallel` connections, in order through a rolling window:
 * each segment is written at its offset in the temp file as it arrives, and the blob is hashed in
 * order by reading back the contiguous prefix, so the fill's `written` (and so what its readers may
 * send) covers only bytes written and hashed in order, and the last byte stays held back until the
 * digest matched (BlobFill). Memory is a stream buffer per connection and one read-back buffer,
 * whatever the segment size. A segment that fails, is short or long, or comes back as another
 * range is fetched once more; a second failure fails the fill. Resolves when every byte is written
 * and hashed; the caller verifies and commits. `destroy` (shutdown) stops it: `run` rejects.
 */
export class RangedFill {
  readonly #writer: BlobWriter;
  readonly #fill: BlobFill;
  readonly #o: RangedFillOptions;
  readonly #active = new Set<Readable>();
  /** Bytes written of each segment started (complete: its whole length). */
  readonly #got: number[] = [];
  #failure: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(writer: BlobWriter, fill: BlobFill, options: RangedFillOptions) {
    this.#writer = writer;
    this.#fill = fill;
    this.#o = options;
  }

  /** Stops the download: bodies destroyed, `run` rejects with `err`. */
  destroy(err?: Error): void {
    this.#fail(err ?? new Error('ranged fill aborted'));
  }

  async run(): Promise<void> {
    const { size, segmentBytes, parallel } = this.#o;
    const count = Math.ceil(size / segmentBytes);
    const reader = await open(this.#writer.tempPath, 'r');
    const buffer = Buffer.allocUnsafe(Math.min(HASH_CHUNK, size));
    let running = 0;
    let next = 0;
    let nextRoomCheck = this.#o.roomCheckBytes;
    try {
      for (;;) {
        if (this.#failure) throw this.#failure;
        const hashed = this.#writer.written;
        if (hashed >= size) return;
        // The first segment not complete: the window starts there.
        const head = Math.floor(hashed / segmentBytes);
        let first = head;
        while (first < next && this.#got[first] === this.#length(first)) first++;
        while (next < count && next < first + parallel && running < Math.max(1, this.#o.width())) {
          const index = next++;
          running++;
          this.#got[index] = 0;
          void this.#segment(index).then(
            () => {
              running--;
              this.#wake?.();
            },
            (err: Error) => {
              running--;
              this.#fail(err);
            },
          );
        }
        // The contiguous prefix: complete segments from the one being hashed, then the next one's part.
        let contiguous = head * segmentBytes + (this.#got[head] ?? 0);
        for (let i = head; i < next && this.#got[i] === this.#length(i); i++)
          contiguous = i * segmentBytes + this.#length(i) + (this.#got[i + 1] ?? 0);
        if (contiguous > hashed) {
          const length = Math.min(buffer.length, contiguous - hashed);
          const { bytesRead } = await reader.read(buffer, 0, length, hashed);
          if (bytesRead === 0) throw new SegmentError('temp file shorter than written');
          this.#writer.absorb(buffer.subarray(0, bytesRead));
          this.#fill.progress(this.#writer.written);
          if (this.#writer.written >= nextRoomCheck) {
            nextRoomCheck = this.#writer.written + this.#o.roomCheckBytes;
            await this.#o.checkRoom(this.#writer.written);
          }
          continue;
        }
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
      }
    } catch (err) {
      this.#fail(err as Error);
      throw err;
    } finally {
      for (const body of this.#o.first.values()) body.destroy();
      await reader.close();
    }
  }

  #length(index: number): number {
    const { size, segmentBytes } = this.#o;
    return Math.min(size, (index + 1) * segmentBytes) - index * segmentBytes;
  }

  #fail(err: Error): void {
    if (this.#failure) return;
    this.#failure = err;
    for (const body of this.#active) body.destroy();
    this.#active.clear();
    this.#wake?.();
  }

  /**
   * One segment, fetched and written at its offset as it arrives. If it fails, its rest is fetched
   * once more, from where the written bytes end: bytes once written are never written again, as
   * they may be hashed already (a second answer must not replace what the digest covered).
   */
  async #segment(index: number): Promise<void> {
    const start = index * this.#o.segmentBytes;
    const length = this.#length(index);
    for (let attempt = 0; ; attempt++) {
      try {
        const first = this.#o.first.get(index);
        this.#o.first.delete(index);
        const from = start + (this.#got[index] ?? 0);
        const body = first ?? (await this.#o.fetch(from, start + length - 1));
        // Only the first GET's body carries more than its segment (the whole blob from byte 0).
        await this.#write(body, index, start, length, index === 0 && first !== undefined);
        this.#o.onSegment();
        return;
      } catch (err) {
        if (this.#failure || attempt >= 1) throw err;
        this.#o.onRetry(index, err as Error);
      }
    }
  }

  /** Writes exactly `length` bytes of `body` at `start`: shorter or (unless `more`) longer is an error. */
  async #write(body: Readable, index: number, start: number, length: number, more: boolean): Promise<void> {
    if (this.#failure) {
      body.destroy();
      throw this.#failure;
    }
    this.#active.add(body);
    let got = this.#got[index] ?? 0;
    try {
      for await (const data of body) {
        const chunk = data as Buffer;
        if (this.#failure) throw this.#failure;
        const room = length - got;
        if (chunk.length > room && !more) throw new SizeMismatchError(length, got + chunk.length);
        const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
        await this.#writer.writeAt(part, start + got);
        got += part.length;
        this.#got[index] = got;
        this.#wake?.();
        if (got === length && more) break;
      }
      if (this.#failure) throw this.#failure;
      if (got !== length) throw new SegmentError(`segment body ${got} of ${length} bytes`);
    } finally {
      this.#active.delete(body);
      body.destroy();
    }
  }
}
