import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { Digest } from '../oci/digest.js';

type State = 'connecting' | 'streaming' | 'verified' | 'committed' | 'failed';

/**
 * One upstream download of a blob into a temp file, shared by every client that asks for the blob
 * while it runs (single flight). Clients don't read the upstream stream: each tails the growing
 * file at its own pace (FillReader), so a slow or vanished client never slows or aborts the fill
 * and memory stays flat whatever the blob size.
 *
 * The rule: no response a client can take as complete carries unverified bytes, ranges included.
 * Every reader holds back the last byte it owes (the blob's last byte, or a closed range's last
 * byte) until the whole blob was verified; on a mismatch its connection is cut short instead. A
 * 206 for `bytes=0-1023` of a blob still downloading therefore ends only once the digest matched.
 */
export class BlobFill {
  readonly digest: Digest;
  readonly finalPath: string;
  /** Resolves when the upstream answered 200 (size known if it sent Content-Length). */
  readonly started: Promise<void>;
  /** Resolves when the blob is committed to the store; rejects with the failure. */
  readonly finished: Promise<void>;
  #state: State = 'connecting';
  #size: number | undefined;
  #tempPath = '';
  #written = 0;
  #error: Error | undefined;
  #waiters: (() => void)[] = [];
  #resolveStarted!: () => void;
  #rejectStarted!: (err: Error) => void;
  #resolveFinished!: () => void;
  #rejectFinished!: (err: Error) => void;

  constructor(digest: Digest, finalPath: string) {
    this.digest = digest;
    this.finalPath = finalPath;
    this.started = new Promise((resolve, reject) => {
      this.#resolveStarted = resolve;
      this.#rejectStarted = reject;
    });
    this.finished = new Promise((resolve, reject) => {
      this.#resolveFinished = resolve;
      this.#rejectFinished = reject;
    });
    // Nobody may be listening (all clients gone): a failure must not become an unhandled rejection.
    this.started.catch(() => {});
    this.finished.catch(() => {});
  }

  get state(): State {
    return this.#state;
  }
  get size(): number | undefined {
    return this.#size;
  }
  get written(): number {
    return this.#written;
  }
  get error(): Error | undefined {
    return this.#error;
  }

  /** Bytes a reader may deliver now. */
  get available(): number {
    if (this.#state === 'verified' || this.#state === 'committed') return this.#written;
    return Math.max(0, this.#written - 1);
  }

  /** True when no more bytes will come. */
  get complete(): boolean {
    return this.#state === 'verified' || this.#state === 'committed';
  }

  /** Where a reader opening now finds the bytes. */
  get path(): string {
    return this.#state === 'committed' ? this.finalPath : this.#tempPath;
  }

  streaming(size: number | undefined, tempPath: string): void {
    this.#state = 'streaming';
    this.#size = size;
    this.#tempPath = tempPath;
    this.#resolveStarted();
    this.#notify();
  }

  progress(written: number): void {
    this.#written = written;
    this.#notify();
  }

  verified(): void {
    this.#state = 'verified';
    this.#notify();
  }

  committed(): void {
    this.#state = 'committed';
    this.#resolveFinished();
    this.#notify();
  }

  fail(err: Error): void {
    if (this.#state === 'committed' || this.#state === 'failed') return;
    this.#state = 'failed';
    this.#error = err;
    this.#rejectStarted(err);
    this.#rejectFinished(err);
    this.#notify();
  }

  /** Resolves at the next change (bytes, state). */
  changed(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

/** Tailing reads: 256 KiB keeps 20 readers of one fill within a flat memory budget. */
const CHUNK = 256 * 1024;

/**
 * Reads of a blob that is still being filled, following the file as it grows, bytes up to `end`
 * (undefined: to the end, whatever the size turns out to be). A read waits until bytes at its
 * position may be delivered, holding back the last byte owed until the blob was verified, and
 * throws if the fill fails. The temp file is opened at the first read; `close` closes it and
 * makes a waiting read return 0 (the client went away).
 */
export class FillCursor {
  readonly #fill: BlobFill;
  readonly #end: number | undefined;
  #handle: FileHandle | undefined;
  #closed = false;
  #wake: (() => void) | undefined;

  constructor(fill: BlobFill, end: number | undefined) {
    this.#fill = fill;
    this.#end = end;
  }

  async read(buf: Buffer, length: number, position: number): Promise<number> {
    for (;;) {
      const available = await this.ready(position);
      if (available === 0) return 0;
      const handle = this.#handle ?? (await this.#open());
      if (handle) {
        const { bytesRead } = await handle.read(buf, 0, Math.min(length, available), position);
        if (bytesRead > 0 || this.#closed) return bytesRead;
      }
      await this.#changed();
    }
  }

  /** How many bytes from `position` may be delivered, once there are any: 0 at the end (or closed). */
  async ready(position: number): Promise<number> {
    const fill = this.#fill;
    for (;;) {
      if (this.#closed) return 0;
      if (fill.state === 'failed') throw fill.error ?? new Error('blob fill failed');
      const last = this.#end ?? (fill.complete ? fill.written - 1 : Number.POSITIVE_INFINITY);
      if (position > last) return 0;
      // A closed range ends before the blob does: its own last byte waits for the verification too.
      const available = Math.min(fill.available, fill.complete ? last + 1 : last);
      if (position < available) return available - position;
      await this.#changed();
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#wake?.();
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close().catch(() => {});
  }

  /** The fill's next change, or this cursor's close. */
  #changed(): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
      void this.#fill.changed().then(resolve);
    });
  }

  /**
   * Opens the temp file, or the final one once the fill was committed. Undefined means "renamed
   * while we looked, not yet marked committed": the commit notification will come, wait for it.
   */
  async #open(): Promise<FileHandle | undefined> {
    for (;;) {
      const target = this.#fill.path;
      try {
        const handle = await open(target, constants.O_RDONLY);
        if (this.#closed) {
          await handle.close();
          return undefined;
        }
        this.#handle = handle;
        return handle;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || this.#fill.state === 'failed') throw err;
        if (target === this.#fill.finalPath) throw err;
        // The commit may have happened during the open: then look at the final path right away.
        if (this.#fill.state !== 'committed') return undefined;
      }
    }
  }
}

/**
 * Bytes [start, end] of a blob that is still being filled, as a stream read through a FillCursor.
 * A fresh buffer per read, sized by what is there: reading into the hit path's pooled buffers
 * instead (api/file-sender.ts) left external memory lower but made every later hit of the same
 * process ~40 % dearer in CPU (docs/benchmarks.md, "Memory").
 */
export class FillReader extends Readable {
  readonly #cursor: FillCursor;
  #pos: number;
  #pumping = false;
  #wanted = false;

  constructor(fill: BlobFill, start: number, end: number | undefined) {
    super({ highWaterMark: CHUNK });
    this.#cursor = new FillCursor(fill, end);
    this.#pos = start;
  }

  override _read(): void {
    // _read can arrive (on nextTick) while a pump is still unwinding: remember it, never drop it,
    // or the reader would stall with nobody to wake it.
    this.#wanted = true;
    if (!this.#pumping) void this.#drive();
  }

  async #drive(): Promise<void> {
    this.#pumping = true;
    try {
      while (this.#wanted && !this.destroyed) {
        this.#wanted = false;
        await this.#pump();
      }
    } catch (err) {
      this.destroy(err as Error);
    } finally {
      this.#pumping = false;
    }
  }

  async #pump(): Promise<void> {
    for (;;) {
      if (this.destroyed) return;
      // Sized by what is there: a reader close behind the download reads small pieces.
      const length = Math.min(CHUNK, await this.#cursor.ready(this.#pos));
      const buf = length > 0 ? Buffer.allocUnsafe(length) : undefined;
      const bytesRead = buf ? await this.#cursor.read(buf, length, this.#pos) : 0;
      if (this.destroyed) return;
      if (!buf || bytesRead === 0) {
        this.push(null);
        return;
      }
      this.#pos += bytesRead;
      if (!this.push(bytesRead === length ? buf : buf.subarray(0, bytesRead))) return;
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#cursor.close().then(
      () => callback(err),
      () => callback(err),
    );
  }
}
