import picomatch from 'picomatch';
import { RegistryError } from '../oci/errors.js';

export interface HostedRules {
  /** Pushes accepted at all (false: a read-only mirror, as before). */
  push: boolean;
  /** Globs over repository names: when given, exactly these names are hosted, and only these take pushes. */
  patterns: string[];
  /** Why a name may not be pushed to even so (a registry prefix, Docker Hub's library/), or undefined. */
  reserved: (name: string) => string | undefined;
}

/**
 * Which names may be pushed to (--push, --hosted patterns, reserved prefixes). With patterns,
 * exactly the names they match are hosted; without, a push creates a hosted repository of any
 * name not reserved (docs/SECURITY.md, "Pushes never take over a mirrored name", for the rest).
 */
export class PushPolicy {
  readonly #rules: HostedRules;
  readonly #matches: ((name: string) => boolean) | undefined;

  constructor(rules: HostedRules) {
    this.#rules = rules;
    this.#matches = rules.patterns.length ? picomatch(rules.patterns) : undefined;
  }

  get pushEnabled(): boolean {
    return this.#rules.push;
  }

  /** Whether a push may make a hosted repository of a name not hosted yet (no patterns decide). */
  get createsOnPush(): boolean {
    return this.#rules.push && !this.#matches;
  }

  /** Whether a configured pattern makes `name` hosted, pushed to or not. */
  matches(name: string): boolean {
    return this.#matches?.(name) ?? false;
  }

  /** Throws the spec's error when a push to `name` is not allowed here. */
  checkPushable(name: string): void {
    if (!this.#rules.push) {
      throw new RegistryError('UNSUPPORTED', 'this mirror is read-only: pushes are disabled', {});
    }
    if (this.#matches) {
      if (this.#matches(name)) return;
      throw new RegistryError('DENIED', `${name} is not a hosted repository here`, {
        hosted: this.#rules.patterns,
      });
    }
    const why = this.#rules.reserved(name);
    if (why) throw new RegistryError('DENIED', why, { name });
  }
}
