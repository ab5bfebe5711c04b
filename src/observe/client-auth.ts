import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import bcrypt from 'bcryptjs';
import { LRUCache } from 'lru-cache';

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

  constructor(file: string, realm = 'hubcache') {
    this.realm = realm;
    this.#users = parseHtpasswd(readFileSync(file, 'utf8'), file);
  }

  /** The user, if the Authorization header carries valid Basic credentials. */
  async check(authorization: string | undefined): Promise<string | undefined> {
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization ?? '');
    if (!m?.[1]) return undefined;
    const decoded = Buffer.from(m[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 1) return undefined;
    const user = decoded.slice(0, colon);
    const key = createHash('sha256').update(decoded).digest('hex');
    if (this.#verified.has(key)) return user;
    const hash = this.#users.get(user);
    if (!hash || !(await bcrypt.compare(decoded.slice(colon + 1), hash))) return undefined;
    this.#verified.set(key, true);
    return user;
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
