import { getOrAdd } from '../maps.js';
import type { Exchange } from './exchange.js';
import { endWith, type Headers, sentHeaders } from './respond.js';

/**
 * The largest body kept: a hit's cost is per request for manifests and small blobs (routing,
 * validation, header building measured ~2.7× a bare node:http answer, docs/benchmarks.md "Hit
 * lane"); a bigger body's is per byte, which the lane would not change.
 */
export const LANE_MAX_BODY_BYTES = 64 * 1024;
/** Entries kept at most, and their bodies' bytes at most (bodies are the store's own buffers). */
const MAX_ENTRIES = 4096;
const MAX_BYTES = 16 * 1024 * 1024;
/**
 * The longest key kept (request target, and Accept for a tag). Registry targets and clients' Accept
 * headers are a few hundred characters; a client padding its query or Accept (up to the 32 KiB of
 * headers) would otherwise make 4,096 keys of ~32 KiB: 128 MiB beside the bodies' bound.
 */
const MAX_KEY_CHARS = 2048;

/** What a handler says of an answer it just sent, for the lane to send again. */
export interface LaneOffer {
  /** The answer depends on the request's Accept (a manifest by tag, negotiated). */
  readonly byAccept: boolean;
  /**
   * Whether the request path would still send these exact bytes (still held in memory, a tag still
   * fresh and pointing at the same manifest), doing a hit's bookkeeping when it would (the eviction
   * policy's use count and who fetched the blob, a HEAD's promise to a push), for `ex`, the request
   * the lane would answer. Synchronous and cheap: it runs on every lane hit.
   */
  readonly stillServed: (head: boolean, ex: Exchange) => boolean;
}

interface Entry extends LaneOffer {
  /** The request target, and for an answer negotiated on Accept the header as sent (its key: keyOf). */
  readonly url: string;
  readonly accept: string | undefined;
  /** Name, value, name, value: see flat(). */
  readonly headers: string[];
  readonly body: Buffer;
  readonly endpoint: string;
  readonly repository: string;
  readonly upstream: string;
}

/**
 * Answers already sent, ready to send again: a hit on a manifest or small blob held in memory is
 * answered straight from the request target, before parsing, routing or building headers. Only
 * what the request path itself just served as a HIT is offered, and only for requests whose
 * answer nothing else changes: GET/HEAD, no Range, no If-None-Match, reads open to anyone (the
 * path would not ask for credentials), a mirrored name (a push that makes any name hosted empties
 * the lane). Every lane hit asks the handler's `stillServed` first; a no drops the entry and the
 * request takes the path. Counted and logged like any request (server.ts).
 */
export class HitLane {
  /** By key, oldest first: what the bounds drop. */
  readonly #entries = new Map<string, Entry>();
  /** Answers negotiated on Accept, by target then Accept: found without joining the two per hit. */
  readonly #byAccept = new Map<string, Map<string, Entry>>();
  readonly #enabled: boolean;
  /** Changes whenever a name becomes hosted (hosted/repositories.ts): entries for mirrored names go. */
  readonly #hostedGeneration: () => number;
  #seenGeneration: number;
  #bytes = 0;
  /** Requests the lane answered (metrics: hubcache_hit_lane_answers_total). */
  answers = 0;

  constructor(options: { enabled: boolean; hostedGeneration: () => number }) {
    this.#enabled = options.enabled;
    this.#hostedGeneration = options.hostedGeneration;
    this.#seenGeneration = options.hostedGeneration();
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Sends the kept answer to this request, if there is one still served: true when it did. */
  serve(ex: Exchange): boolean {
    if (this.#entries.size === 0) return false;
    const method = ex.method;
    if (method !== 'GET' && method !== 'HEAD') return false;
    const generation = this.#hostedGeneration();
    if (generation !== this.#seenGeneration) {
      this.#seenGeneration = generation;
      this.clear();
      return false;
    }
    const url = ex.req.url as string;
    const headers = ex.req.headers;
    const entry = this.#entries.get(url) ?? this.#byAccept.get(url)?.get(headers.accept ?? '');
    if (entry === undefined || headers.range !== undefined || headers['if-none-match'] !== undefined) {
      return false;
    }
    const head = method === 'HEAD';
    if (!entry.stillServed(head, ex)) {
      this.#drop(entry);
      return false;
    }
    ex.endpoint = entry.endpoint;
    ex.repository = entry.repository;
    ex.upstream = entry.upstream;
    ex.outcome = 'HIT';
    this.answers++;
    ex.res.writeHead(200, entry.headers);
    if (head) {
      ex.res.end();
    } else {
      ex.bytes = entry.body.length;
      endWith(ex, entry.body);
    }
    return true;
  }

  /**
   * Keeps the answer just sent for `ex` (status 200, these headers as the handler gave them, this
   * body whether or not it was sent: a HEAD's answer serves later GETs), when the lane may.
   */
  offer(ex: Exchange, headers: Headers, body: Buffer, offer: LaneOffer): void {
    if (!this.#enabled || ex.outcome !== 'HIT' || body.length > LANE_MAX_BODY_BYTES) return;
    if (ex.method !== 'GET' && ex.method !== 'HEAD') return;
    const request = ex.req.headers;
    if (request.range !== undefined || request['if-none-match'] !== undefined) return;
    // Mirrored answers only: their repository and upstream are what the request is counted under.
    const { repository, upstream } = ex;
    if (repository === undefined || upstream === undefined) return;
    if (this.#hostedGeneration() !== this.#seenGeneration) return;
    const url = ex.req.url as string;
    const accept = offer.byAccept ? (request.accept ?? '') : undefined;
    const key = keyOf(url, accept);
    if (key.length > MAX_KEY_CHARS) return;
    const old = this.#entries.get(key);
    if (old) this.#drop(old);
    const all = sentHeaders(ex, headers, body);
    const ns = ex.res.getHeader('OCI-Namespace');
    if (typeof ns === 'string') all['OCI-Namespace'] = ns;
    const entry: Entry = {
      ...offer,
      url,
      accept,
      headers: flat(all),
      body,
      endpoint: ex.endpoint,
      repository,
      upstream,
    };
    this.#entries.set(key, entry);
    if (accept !== undefined) {
      getOrAdd(this.#byAccept, url, () => new Map()).set(accept, entry);
    }
    this.#bytes += body.length;
    // Oldest first: a hot entry dropped here is offered again by its next request.
    for (const oldest of this.#entries.values()) {
      if (this.#entries.size <= MAX_ENTRIES && this.#bytes <= MAX_BYTES) break;
      this.#drop(oldest);
    }
  }

  clear(): void {
    this.#entries.clear();
    this.#byAccept.clear();
    this.#bytes = 0;
  }

  #drop(entry: Entry): void {
    const key = keyOf(entry.url, entry.accept);
    if (this.#entries.get(key) !== entry) return;
    this.#entries.delete(key);
    if (entry.accept !== undefined) {
      const byAccept = this.#byAccept.get(entry.url);
      byAccept?.delete(entry.accept);
      if (byAccept?.size === 0) this.#byAccept.delete(entry.url);
    }
    this.#bytes -= entry.body.length;
  }
}

/**
 * An answer's key in #entries: the target, and for one negotiated on Accept the header as sent
 * after it (a newline cannot be in either).
 */
function keyOf(url: string, accept: string | undefined): string {
  return accept === undefined ? url : `${url}\n${accept}`;
}

/**
 * Headers as one flat list, as Node's writeHead also takes them. Node reads a headers object
 * with a for-in loop, whose speed depends on how many object shapes that loop has met in the
 * process: every answer of the mirror passes through it, with its own set of headers. A list is
 * read by index whatever its names. Measured: a few `GET /v2/` answers made every later lane hit
 * cost ~2.5 µs more CPU (docs/benchmarks.md, "Response shapes").
 */
function flat(headers: Headers): string[] {
  const list: string[] = [];
  for (const [name, value] of Object.entries(headers)) list.push(name, String(value));
  return list;
}
