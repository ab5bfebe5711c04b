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
 * Streams bytes [start, end] of a blob that is still being filled, following the file as it grows.
 * `end` is undefined for "to the end, whatever the size turns out to be".
 */
export class FillReader extends Readable {
  readonly #fill: BlobFill;
  #pos: number;
  readonly #end: number | undefined;
  #handle: FileHandle | undefined;
  #pumping = false;
  #wanted = false;

  constructor(fill: BlobFill, start: number, end: number | undefined) {
    super({ highWaterMark: CHUNK });
    this.#fill = fill;
    this.#pos = start;
    this.#end = end;
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
    const fill = this.#fill;
    for (;;) {
      if (this.destroyed) return;
      if (fill.state === 'failed') throw fill.error ?? new Error('blob fill failed');
      const last = this.#end ?? (fill.complete ? fill.written - 1 : Number.POSITIVE_INFINITY);
      if (this.#pos > last) {
        this.push(null);
        return;
      }
      // A closed range ends before the blob does: its own last byte waits for the verification too.
      const available = Math.min(fill.available, fill.complete ? last + 1 : last);
      if (this.#pos >= available) {
        await fill.changed();
        continue;
      }
      const handle = this.#handle ?? (await this.#open());
      if (!handle) {
        await fill.changed();
        continue;
      }
      const length = Math.min(CHUNK, available - this.#pos);
      const buf = Buffer.allocUnsafe(length);
      const { bytesRead } = await handle.read(buf, 0, length, this.#pos);
      if (this.destroyed) return;
      if (bytesRead === 0) {
        await fill.changed();
        continue;
      }
      this.#pos += bytesRead;
      if (!this.push(bytesRead === length ? buf : buf.subarray(0, bytesRead))) return;
    }
  }

  /**
   * Opens the temp file, or the final one once the fill was committed. Undefined means "renamed
   * while we looked, not yet marked committed": the commit notification will come, wait for it.
   */
  async #open(): Promise<FileHandle | undefined> {
    for (;;) {
      const target = this.#fill.path;
      try {
        this.#handle = await open(target, constants.O_RDONLY);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || this.#fill.state === 'failed') throw err;
        if (target === this.#fill.finalPath) throw err;
        // The commit may have happened during the open: then look at the final path right away.
        if (this.#fill.state !== 'committed') return undefined;
      }
    }
    if (this.destroyed) {
      await this.#handle.close();
      this.#handle = undefined;
    }
    return this.#handle;
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const handle = this.#handle;
    this.#handle = undefined;
    if (!handle) {
      callback(err);
      return;
    }
    handle.close().then(
      () => callback(err),
      () => callback(err),
    );
  }
}
