import { LRUCache } from 'lru-cache';
import { RegistryError } from '../oci/errors.js';

/** What the takeover rule needs to know about a name, from the mirror's side. */
export interface MirroredNames {
  /** The mirror cached a tag or manifest under exactly this name. */
  cached(name: string): Promise<boolean>;
  /**
   * The upstream serves this exact name: true or false, or undefined when it cannot say now
   * (unreachable, rate-limited, an error).
   */
  servedUpstream(name: string): Promise<boolean | undefined>;
  /** A one-component name the upstream never serves under that spelling (Docker Hub's library/). */
  neverUpstream(name: string): boolean;
}

/** How long an upstream's answer about a name is trusted: a first push asks once, not per request. */
const VERDICT_TTL_MS = 60_000;

/**
 * The takeover rule (docs/SECURITY.md): a push may create a hosted repository only under a name
 * that nobody can be pulling from the upstream through this mirror. Once hosted, a name shadows
 * the upstream for every client (registry-mirrors and containerd's ?ns=docker.io send the exact
 * name), so a push to `other/small`, which Docker Hub serves, would change what every node runs.
 * Operators who want such a name hosted say so with --hosted patterns; this check does not apply
 * to those. One-component names are safe: Docker's clients ask for `library/NAME`, never `NAME`.
 */
export class TakeoverGuard {
  readonly #names: MirroredNames;
  readonly #verdicts = new LRUCache<string, 'free' | 'mirrored'>({ max: 10_000, ttl: VERDICT_TTL_MS });

  constructor(names: MirroredNames) {
    this.#names = names;
  }

  /** Throws DENIED when `name` is mirrored, UNAVAILABLE when the upstream cannot say. */
  async check(name: string): Promise<void> {
    if (this.#names.neverUpstream(name)) return;
    let verdict = this.#verdicts.get(name);
    if (verdict === undefined) {
      if (await this.#names.cached(name)) verdict = 'mirrored';
      else {
        const upstream = await this.#names.servedUpstream(name);
        if (upstream === undefined) {
          throw new RegistryError(
            'UNAVAILABLE',
            `cannot tell whether the upstream serves ${name}: a first push waits until it can (or list the name in --hosted)`,
            { name },
          );
        }
        verdict = upstream ? 'mirrored' : 'free';
      }
      this.#verdicts.set(name, verdict);
    }
    if (verdict === 'mirrored') {
      throw new RegistryError(
        'DENIED',
        `${name} is mirrored from the upstream: a push may not replace it (list it in --hosted to host it here)`,
        { name },
      );
    }
  }
}
