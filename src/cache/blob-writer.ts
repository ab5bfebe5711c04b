import { createHash, type Hash } from 'node:crypto';
import { type FileHandle, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Digest } from '../oci/digest.js';

export class DigestMismatchError extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
    readonly size: number,
  ) {
    super(`content does not match its digest: expected ${expected}, got ${actual} (${size} bytes)`);
    this.name = 'DigestMismatchError';
  }
}

export class SizeMismatchError extends Error {
  constructor(
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`content length ${actual} does not match the announced ${expected}`);
    this.name = 'SizeMismatchError';
  }
}

/**
 * One blob being written: hashed as it is written; `commit` checks digest and length, then makes
 * it durable and renames it into place. Readers may open `tempPath` while it grows.
 */
export class BlobWriter {
  readonly tempPath: string;
  /** Where the blob goes once committed (storage/layout.ts's blobPath). */
  readonly #finalPath: string;
  readonly #digest: Digest;
  readonly #handle: FileHandle;
  readonly #hash: Hash = createHash('sha256');
  readonly #onCommitted: (size: number) => void;
  #written = 0;
  #closed = false;

  constructor(
    finalPath: string,
    digest: Digest,
    tempPath: string,
    handle: FileHandle,
    onCommitted: (n: number) => void,
  ) {
    this.#finalPath = finalPath;
    this.#digest = digest;
    this.tempPath = tempPath;
    this.#handle = handle;
    this.#onCommitted = onCommitted;
  }

  get written(): number {
    return this.#written;
  }

  async write(chunk: Uint8Array): Promise<void> {
    await this.writev([chunk]);
  }

  /** Appends chunks with one writev(2) where possible: upstream chunks are small (16-64 KiB). */
  async writev(chunks: Uint8Array[]): Promise<void> {
    let total = 0;
    for (const chunk of chunks) {
      this.#hash.update(chunk);
      total += chunk.length;
    }
    await writevAt(this.#handle, chunks, total, this.#written);
    this.#written += total;
  }

  /**
   * Writes a segment at `position` without hashing it or moving `written`: a ranged fill
   * (cache/ranged-fill.ts) lands segments out of order, then hashes them in order with `absorb`.
   */
  async writeAt(bytes: Uint8Array, position: number): Promise<void> {
    await writevAt(this.#handle, [bytes], bytes.length, position);
  }

  /** Hashes the blob's next bytes, already written at `written` by `writeAt`, and counts them written. */
  absorb(bytes: Uint8Array): void {
    this.#hash.update(bytes);
    this.#written += bytes.length;
  }

  /** Checks the content; throws DigestMismatchError / SizeMismatchError (and removes the temp file). */
  verify(expectedSize: number | undefined): void {
    if (expectedSize !== undefined && expectedSize !== this.#written) {
      throw new SizeMismatchError(expectedSize, this.#written);
    }
    const actual = `sha256:${this.#hash.digest('hex')}`;
    if (actual !== this.#digest.value)
      throw new DigestMismatchError(this.#digest.value, actual, this.#written);
  }

  /** Verify (unless already done), fsync, rename into place. */
  async commit(expectedSize?: number, verified = false): Promise<void> {
    if (!verified) this.verify(expectedSize);
    // Durable before visible: a crash must never leave a short file at a digest path.
    await this.#handle.datasync();
    await this.#close();
    const final = this.#finalPath;
    await mkdir(path.dirname(final), { recursive: true });
    await rename(this.tempPath, final);
    this.#onCommitted(this.#written);
  }

  async abort(): Promise<void> {
    await this.#close();
    await rm(this.tempPath, { force: true });
  }

  async #close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#handle.close();
  }
}

/** Writes `chunks` (`total` bytes) at `position` with one writev(2), finishing a short write. */
export async function writevAt(
  handle: FileHandle,
  chunks: Uint8Array[],
  total: number,
  position: number,
): Promise<void> {
  let { bytesWritten } = await handle.writev(chunks, position);
  if (bytesWritten >= total) return;
  // Short write (rare on regular files): finish with plain writes.
  const rest = Buffer.concat(chunks).subarray(bytesWritten);
  let offset = 0;
  while (offset < rest.length) {
    const r = await handle.write(rest, offset, rest.length - offset, position + bytesWritten);
    offset += r.bytesWritten;
    bytesWritten += r.bytesWritten;
  }
}
