import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { PeerClient } from './client.js';

/** Request headers an upload request carries to its owner: the body's description, nothing else. */
const FORWARDED = ['content-type', 'content-length', 'content-range'] as const;
/** Response headers the owner's answer carries back to the client (spec "Pushing blobs"). */
const RETURNED = [
  'content-type',
  'content-length',
  'location',
  'range',
  'docker-upload-uuid',
  'docker-content-digest',
  'oci-chunk-min-length',
] as const;

/**
 * Forwards an upload request (PATCH, PUT, GET, DELETE of a session) to the replica that owns the
 * session, and its answer back: the client's body streams through as it arrives, the owner checks
 * and stores it as if the client had reached it (its offset and digest checks refuse anything out
 * of turn). Authorization happened on the replica the client reached; the owner trusts the signed
 * peer request. Throws PeerUnavailableError when the owner cannot be reached (the caller answers 503).
 */
export async function forwardUpload(
  client: PeerClient,
  owner: URL,
  path: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const headers: Record<string, string> = {};
  for (const name of FORWARDED) {
    const value = req.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  const method = req.method ?? 'GET';
  const withBody = method === 'PATCH' || method === 'PUT';
  const answer = await client.request(owner, method, path, { headers, ...(withBody ? { body: req } : {}) });
  const out: Record<string, string> = {};
  for (const name of RETURNED) {
    const value = answer.headers[name];
    if (typeof value === 'string') out[name] = value;
  }
  res.writeHead(answer.status, out);
  await pipeline(answer.body, res);
}
