import type { FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { type BufferPool, CHUNK } from '../buffer-pool.js';

/**
 * Bytes [start, end] of an open file to the response, double-buffered: the next chunk is read
 * while the previous one is written, and a buffer is reused only once the socket took its bytes
 * (write callback), and its bytes are counted in `sent` then. At most two buffers per response are in
 * memory, large or small as the pool has them (buffer-pool.ts). Closes the handle; resolves false if the client went away.
 */
export async function sendFileRange(
  handle: FileHandle,
  res: ServerResponse,
  start: number,
  end: number,
  pool: BufferPool,
  sent: (bytes: number) => void,
): Promise<boolean> {
  const buffers = [pool.take(), pool.take()] as const;
  const writes: (Promise<boolean> | undefined)[] = [undefined, undefined];
  let pos = start;
  let ok = true;
  try {
    for (let i = 0; pos <= end && ok; i ^= 1) {
      // The buffer we are about to fill must have been handed to the socket.
      if (writes[i] && !(await writes[i])) {
        ok = false;
        break;
      }
      const buf = i === 0 ? buffers[0] : buffers[1];
      const want = Math.min(buf.length, end - pos + 1);
      const { bytesRead } = await handle.read(buf, 0, want, pos);
      if (bytesRead === 0) throw new Error('blob file shorter than its recorded size');
      pos += bytesRead;
      if (res.destroyed) {
        ok = false;
        break;
      }
      const chunk = buf.subarray(0, bytesRead);
      writes[i] = new Promise((resolve) =>
        res.write(chunk, (err) => {
          if (!err) sent(chunk.length);
          resolve(!err);
        }),
      );
    }
    const results = await Promise.all(writes.map((w) => w ?? Promise.resolve(true)));
    ok = ok && results.every(Boolean);
    if (ok) res.end();
    else res.destroy();
    return ok;
  } finally {
    await handle.close().catch(() => {});
    // Only return buffers the socket no longer references.
    await Promise.all(writes.map((w) => w?.catch(() => false)));
    pool.give(buffers[0]);
    pool.give(buffers[1]);
  }
}

/**
 * Bytes [start, end] of an open file as chunks of at most 1 MiB, for multipart bodies (parts are
 * mostly small: zstd:chunked asks for files' chunks). The caller closes the handle.
 */
export async function* fileBytes(handle: FileHandle, start: number, end: number): AsyncGenerator<Buffer> {
  for (let pos = start; pos <= end; ) {
    const want = Math.min(CHUNK, end - pos + 1);
    const buf = Buffer.allocUnsafe(want);
    const { bytesRead } = await handle.read(buf, 0, want, pos);
    if (bytesRead === 0) throw new Error('blob file shorter than its recorded size');
    pos += bytesRead;
    yield bytesRead === want ? buf : buf.subarray(0, bytesRead);
  }
}
