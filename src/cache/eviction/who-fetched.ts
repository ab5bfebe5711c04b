/** Clients told apart at most; one more turns the rule off (docs/SECURITY.md, bounds). */
export const MAX_CLIENTS = 256;
/** Blobs whose fetchers are remembered at most, stored or evicted, least recently asked go first. */
export const MAX_RECORDS = 16_384;
/** Fewer clients than this and the rule is off: one address may be a whole fleet behind NAT. */
const MIN_CLIENTS = 3;
/**
 * A stopped rule starts again after this long, with a fresh record: one stray second fetch (an
 * operator's curl) or a fleet that changed its addresses must not end it for the process's life.
 */
export const RESUME_AFTER_MS = 24 * 60 * 60 * 1000;

interface Fetchers {
  /** Bit i of word i >> 5: the client in slot i fetched the blob. */
  words: number[];
  count: number;
}

/** Why the rule stopped: too many addresses, or one that fetched a blob it had fetched before. */
export type WhoFetchedOff = 'clients' | 'refetch';

/** What each stop means, for the log line. */
export const WHY_OFF: Record<WhoFetchedOff, string> = {
  clients: `more than ${MAX_CLIENTS} client addresses`,
  refetch:
    'an address fetched a blob it had fetched before (several nodes behind it, or a node that removed it)',
};

/**
 * Which clients fetched which blobs whole, for one rule of the eviction policy (cache/eviction/gdsf.ts):
 * a blob every client seen has fetched goes first. Nodes keep what they pull, so such a blob is asked
 * for again only by a node new to the fleet (docs/benchmarks.md, "Eviction": on the swarm trace it
 * lifts the cache at 60 % of the working set from 89 % to 108 % of Belady's offline rule).
 *
 * The rule is a bet that each address is one node keeping what it pulled, and it stops as soon as
 * that is seen to be false: an address fetching a blob it fetched before (several nodes behind one
 * NAT or proxy, or a node that removed it), or more than MAX_CLIENTS addresses. It starts again,
 * with nothing remembered, RESUME_AFTER_MS later, and stops again if the cause is still there. It
 * is off while fewer than three clients were seen. Who fetched a blob is remembered past its
 * eviction (forgetting it cost up to 8 points on held-out swarms), for the MAX_RECORDS blobs asked
 * for last; a blob not remembered counts as fetched by nobody.
 *
 * What a client can do with it: make a blob go first only if every other client has fetched it
 * too, and turn the rule off (a second fetch, or new addresses), which leaves plain GDSF.
 */
export class WhoFetched {
  readonly #slots = new Map<string, number>();
  /** By blob, least recently asked first. */
  readonly #records = new Map<string, Fetchers>();
  readonly #maxClients: number;
  readonly #maxRecords: number;
  readonly #now: () => number;
  #off: WhoFetchedOff | undefined;
  #offSince = 0;
  /** Told when the rule stops (why) and when it starts again (undefined); logged by the store. */
  onChange: ((off: WhoFetchedOff | undefined) => void) | undefined;

  constructor(options: { maxClients?: number; maxRecords?: number; now?: () => number } = {}) {
    this.#maxClients = options.maxClients ?? MAX_CLIENTS;
    this.#maxRecords = options.maxRecords ?? MAX_RECORDS;
    this.#now = options.now ?? Date.now;
  }

  /** Undefined while the rule holds. */
  get off(): WhoFetchedOff | undefined {
    return this.#off;
  }

  /** `client` is fetching `key` whole: told before the request's use is counted. */
  asked(key: string, client: string): void {
    if (this.#off) {
      if (this.#now() - this.#offSince < RESUME_AFTER_MS) return;
      this.#off = undefined;
      this.onChange?.(undefined);
    }
    let slot = this.#slots.get(client);
    if (slot === undefined) {
      if (this.#slots.size >= this.#maxClients) {
        this.#stop('clients');
        return;
      }
      slot = this.#slots.size;
      this.#slots.set(client, slot);
    }
    let record = this.#records.get(key);
    if (record) {
      this.#records.delete(key);
    } else {
      record = { words: [], count: 0 };
      if (this.#records.size >= this.#maxRecords) {
        for (const oldest of this.#records.keys()) {
          this.#records.delete(oldest);
          break;
        }
      }
    }
    this.#records.set(key, record);
    const word = slot >> 5;
    const bit = 1 << (slot & 31);
    const had = record.words[word] ?? 0;
    if (had & bit) {
      this.#stop('refetch');
      return;
    }
    record.words[word] = had | bit;
    record.count++;
  }

  /** Every client seen has fetched `key` (and the rule holds). */
  everyone(key: string): boolean {
    if (this.#off || this.#slots.size < MIN_CLIENTS) return false;
    return (this.#records.get(key)?.count ?? 0) >= this.#slots.size;
  }

  #stop(why: WhoFetchedOff): void {
    this.#off = why;
    this.#offSince = this.#now();
    this.#slots.clear();
    this.#records.clear();
    this.onChange?.(why);
  }
}
