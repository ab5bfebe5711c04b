import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { LRUCache } from 'lru-cache';
import { RegistryError } from '../oci/errors.js';
import { BcryptWorker } from './bcrypt-worker.js';

/** bcrypt checks at once: one, in a worker thread (bcrypt-worker.ts); the other core serves requests. */
export const BCRYPT_CONCURRENCY = 1;
/** Checks waiting for a turn, in all and per client address; beyond that, 429 at once. */
export const BCRYPT_QUEUE = 64;
export const BCRYPT_QUEUE_PER_CLIENT = 8;

/**
 * Client authentication from an htpasswd file with bcrypt entries (`htpasswd -B`), as the
 * reference registry's htpasswd auth uses. bcrypt is slow on purpose (~50 ms at cost 10), and
 * dockerd sends credentials with every request: a successful check is remembered (by a hash of the
 * credentials, never the password itself) for a few minutes.
 */
export class ClientAuth {
  readonly realm: string;
  readonly #users: Map<string, string>;
  readonly #verified = new LRUCache<string, true>({ max: 10_000, ttl: 5 * 60_000 });
  /** Credentials found wrong: the same wrong password again costs no bcrypt. */
  readonly #refused = new LRUCache<string, true>({ max: 10_000, ttl: 60_000 });
  readonly #bcrypt = new BcryptWorker();
  #running = 0;
  readonly #queue: { client: string; go: () => void }[] = [];
  readonly #queuedPerClient = new Map<string, number>();

  constructor(file: string, realm = 'hubcache') {
    this.realm = realm;
    this.#users = parseHtpasswd(readFileSync(file, 'utf8'), file);
  }

  /**
   * The user, if the Authorization header carries valid Basic credentials. `client` (its address)
   * bounds how many of its checks may wait: TOOMANYREQUESTS beyond that.
   */
  async check(authorization: string | undefined, client = ''): Promise<string | undefined> {
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization ?? '');
    if (!m?.[1]) return undefined;
    const decoded = Buffer.from(m[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 1) return undefined;
    const user = decoded.slice(0, colon);
    const key = createHash('sha256').update(decoded).digest('hex');
    if (this.#verified.has(key)) return user;
    if (this.#refused.has(key)) return undefined;
    const hash = this.#users.get(user);
    // An unknown user costs nothing; a known one waits for a bcrypt turn.
    if (!hash) return undefined;
    await this.#turn(client);
    try {
      if (!(await this.#bcrypt.compare(decoded.slice(colon + 1), hash))) {
        this.#refused.set(key, true);
        return undefined;
      }
    } finally {
      this.#release();
    }
    this.#verified.set(key, true);
    return user;
  }

  async #turn(client: string): Promise<void> {
    if (this.#running < BCRYPT_CONCURRENCY) {
      this.#running++;
      return;
    }
    const queued = this.#queuedPerClient.get(client) ?? 0;
    if (this.#queue.length >= BCRYPT_QUEUE || queued >= BCRYPT_QUEUE_PER_CLIENT) {
      throw new RegistryError('TOOMANYREQUESTS', 'too many credential checks at once: retry later', null, {
        'Retry-After': '1',
      });
    }
    this.#queuedPerClient.set(client, queued + 1);
    await new Promise<void>((go) => this.#queue.push({ client, go }));
  }

  #release(): void {
    const next = this.#queue.shift();
    if (!next) {
      this.#running--;
      return;
    }
    const left = (this.#queuedPerClient.get(next.client) ?? 1) - 1;
    if (left > 0) this.#queuedPerClient.set(next.client, left);
    else this.#queuedPerClient.delete(next.client);
    next.go(); // the turn passes on: #running stays the same
  }
}

export function parseHtpasswd(text: string, file: string): Map<string, string> {
  const users = new Map<string, string>();
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (colon < 1 || !/^\$2[aby]\$\d\d\$/.test(hash)) {
      throw new Error(`${file}:${i + 1}: only bcrypt entries are supported (htpasswd -B)`);
    }
    users.set(user, hash.replace(/^\$2y\$/, '$2b$'));
  }
  if (users.size === 0) throw new Error(`${file}: no users`);
  return users;
}
