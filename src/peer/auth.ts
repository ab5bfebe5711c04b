import { type KeyRing, sign, verify } from '../shared/fleet-keys.js';

/**
 * How far a peer request's timestamp may be from the receiver's clock, either way. Replicas run NTP;
 * this is the replay window (below) and the skew the fleet tolerates, so it stays small.
 */
export const PEER_CLOCK_SKEW_MS = 30_000;

/** The header is about 110 bytes; anything longer is refused before a regex or an HMAC runs on it. */
export const MAX_PEER_HEADER_BYTES = 200;

/**
 * A replica's id as `randomUUID()` makes it (shared/fleet-locks.ts): lowercase, the RFC 4122 variant
 * (10xx), versions 1–8 (RFC 9562, which replaced 4122, added 6–8 with the same layout).
 */
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}';
export const PEER_REPLICA_ID = new RegExp(`^${UUID}$`);

/** `HubcachePeer v1 <uuid>.<unixMs>.<mac>`: the mac is HMAC-SHA256 in base64url, 43 characters. */
const HEADER = new RegExp(`^HubcachePeer v1 (${UUID})\\.(0|[1-9][0-9]{0,15})\\.([A-Za-z0-9_-]{43})$`);

export interface PeerRequestLine {
  method: string;
  /** Path and query exactly as sent on the request line (Node's `req.url`). */
  path: string;
  /** The Range header, when the request has one. */
  range?: string | undefined;
}

/**
 * What the mac covers, one field a line. No field can hold a newline (HTTP forbids it in the
 * request line and in header values; signPeer refuses one), so no two requests share a text.
 */
function signedText(req: PeerRequestLine, replica: string, unixMs: number): string {
  return ['peer v1', req.method.toUpperCase(), req.path, req.range ?? '', replica, String(unixMs)].join('\n');
}

/**
 * The Authorization header's value for one request from replica `replica` to a peer.
 *
 * What a captured header allows: anyone who sees it (the peer listener may be plain HTTP on the
 * replicas' network) can send the same method, path + query and Range again, to any replica of the
 * fleet, until PEER_CLOCK_SKEW_MS after it was signed (plus the clocks' skew) — and nothing else.
 * The path is bound so that one captured request (a ping, a read of a public blob) cannot be turned
 * into another route or another blob or upload session; the method so a GET cannot become a PUT;
 * the range so a one-byte read cannot become the whole blob; the replica id so a request cannot be
 * passed off as another replica's (logs, and who owns an upload, name it).
 *
 * Not covered: the body and the other headers (Content-Range, Content-Length, Content-Type). A
 * captured PATCH or PUT of an upload session can be replayed within the window with other bytes;
 * the upload's own checks (offsets, and the digest at the final PUT) are what refuse them. Nor is
 * the response signed: a reader of a peer's blob verifies its digest as it would an upstream's.
 */
export function signPeer(
  ring: KeyRing,
  req: PeerRequestLine & { replica: string; now?: number | undefined },
): string {
  if (!PEER_REPLICA_ID.test(req.replica))
    throw new TypeError('a replica id is a lowercase UUID (crypto.randomUUID())');
  if (/[\r\n]/.test(`${req.method}${req.path}${req.range ?? ''}`))
    throw new TypeError('a peer request line or Range header cannot hold a line break');
  const unixMs = Math.trunc(req.now ?? Date.now());
  return `HubcachePeer v1 ${req.replica}.${unixMs}.${sign(ring, signedText(req, req.replica, unixMs))}`;
}

/** Why a peer request was refused, in words fit for a log line (never the header itself). */
export type PeerRefusal = 'missing' | 'too long' | 'malformed' | 'clock skew' | 'bad signature';

/**
 * The verdict on a peer request's Authorization header: the sending replica's id, or why not (with
 * the id it claimed once the header is well formed, so a log can name a replica with a wrong secret).
 */
export function checkPeer(
  ring: KeyRing,
  header: string | undefined,
  req: PeerRequestLine,
  now = Date.now(),
): { replica: string } | { refused: PeerRefusal; claimed?: string } {
  if (header === undefined || header === '') return { refused: 'missing' };
  if (Buffer.byteLength(header) > MAX_PEER_HEADER_BYTES) return { refused: 'too long' };
  const m = HEADER.exec(header);
  if (!m) return { refused: 'malformed' };
  const [, replica, stamp, mac] = m as unknown as [string, string, string, string];
  const unixMs = Number(stamp);
  if (!Number.isSafeInteger(unixMs)) return { refused: 'malformed' };
  if (Math.abs(now - unixMs) > PEER_CLOCK_SKEW_MS) return { refused: 'clock skew', claimed: replica };
  if (!verify(ring, signedText(req, replica, unixMs), mac))
    return { refused: 'bad signature', claimed: replica };
  return { replica };
}

/** The sending replica's id when `header` is a valid signature of this request, else undefined. */
export function verifyPeer(
  ring: KeyRing,
  header: string | undefined,
  req: PeerRequestLine,
  now = Date.now(),
): string | undefined {
  const verdict = checkPeer(ring, header, req, now);
  return 'replica' in verdict ? verdict.replica : undefined;
}
