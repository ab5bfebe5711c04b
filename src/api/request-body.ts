import type { IncomingMessage } from 'node:http';

/**
 * Bytes past a body's limit that are still read, and dropped, so that the client reads the error:
 * when a server closes while the client still sends, the client may see a reset instead of the
 * answer (destroying the request did exactly that). 16 MiB covers the honest mistake (a manifest
 * somewhat over the limit); past it the rest is not read, and the connection closes after the
 * answer. api/respond.ts sendError applies the same bound to any error answered mid-body.
 */
export const MAX_DISCARDED_BODY_BYTES = 16 * 1024 * 1024;

export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`request body larger than ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

/** A whole request body of at most `limit` bytes; BodyTooLargeError past it. */
export async function readRequestBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const announced = Number(req.headers['content-length']);
  if (announced > limit + MAX_DISCARDED_BODY_BYTES) throw new BodyTooLargeError(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  // Leaving the loop early must not destroy the request: its socket carries the answer.
  for await (const chunk of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= limit) chunks.push(chunk);
    else if (size > limit + MAX_DISCARDED_BODY_BYTES) break;
  }
  if (size > limit) throw new BodyTooLargeError(limit);
  return Buffer.concat(chunks);
}
