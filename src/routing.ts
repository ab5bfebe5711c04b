import { LRUCache } from 'lru-cache';
import type { ManifestCache } from './cache/manifest-cache.js';
import type { ReferrersCache } from './cache/referrers-cache.js';
import { RegistryError } from './oci/errors.js';
import { validateName } from './oci/names.js';
import { canonicalName, servesNamespace } from './upstream/hub-names.js';
import type { RegistryApi } from './upstream/registry-api.js';

/**
 * One mirrored registry, the default upstream as much as a configured one: its API, its manifests
 * and referrers (tags kept apart per registry), and what was last seen of it.
 */
export interface Route {
  /** The host clients name it by (`?ns=`, a path prefix); the default upstream's own host. */
  readonly host: string;
  /** The registry API spoken to it; `api.label` is how errors name it. */
  readonly api: RegistryApi;
  readonly manifests: ManifestCache;
  readonly referrers: ReferrersCache;
  /** The last exchange with it (/readyz and the summary report it; it does not decide readiness). */
  seen: { reachable: boolean; at: number } | undefined;
}

/** A request's registry, its repository name there, and the name the cache lists it under. */
export interface Target {
  route: Route;
  name: string;
  key: string;
}

/**
 * Every registry this mirror serves, and which one a request means. containerd's `?ns=` decides
 * first, then a path prefix naming a configured registry (`ghcr.io/owner/app`), else the default
 * upstream. A registry that is not configured is refused: only configured upstreams are contacted.
 */
export class Routes {
  readonly default: Route;
  /** The default first, then the configured registries. */
  readonly all: readonly Route[];
  readonly #byHost: ReadonlyMap<string, Route>;
  readonly #url: URL;
  readonly #expandLibrary: boolean;
  /** Valid spellings seen → canonical name: the hit path validates a name once, not per request. */
  readonly #names = new LRUCache<string, string>({ max: 10_000 });

  constructor(defaultRoute: Route, others: Route[], upstream: { url: URL; expandLibrary: boolean }) {
    this.default = defaultRoute;
    this.all = [defaultRoute, ...others];
    this.#byHost = new Map(others.map((r) => [r.host, r]));
    this.#url = upstream.url;
    this.#expandLibrary = upstream.expandLibrary;
  }

  resolve(rawName: string, ns: string | null): Target {
    if (!this.namesDefault(ns)) {
      const route = this.#byHost.get(ns as string);
      if (!route) throw new RegistryError('NAME_UNKNOWN', `registry ${ns} is not mirrored here`, { ns });
      return { route, name: validateName(rawName), key: `${ns}/${rawName}` };
    }
    const slash = rawName.indexOf('/');
    const route = slash > 0 ? this.#byHost.get(rawName.slice(0, slash)) : undefined;
    if (route) {
      const name = validateName(rawName.slice(slash + 1));
      return { route, name, key: `${route.host}/${name}` };
    }
    const name = this.repositoryName(rawName);
    return { route: this.default, name, key: name };
  }

  /** Whether `?ns=` (when given) names the default upstream, whose names hosted ones may shadow. */
  namesDefault(ns: string | null): boolean {
    return !ns || servesNamespace(ns, this.#url, this.#expandLibrary);
  }

  /** Where a name would be mirrored from on the default upstream (undefined for another registry's prefix). */
  onDefault(rawName: string): Target | undefined {
    const target = this.resolve(rawName, null);
    return target.route === this.default ? target : undefined;
  }

  /** Why a push may not take `name` without an explicit hosted pattern, if it may not. */
  reserved(name: string): string | undefined {
    const slash = name.indexOf('/');
    const host = slash > 0 ? name.slice(0, slash) : '';
    if (this.#byHost.has(host)) return `names under ${host}/ are mirrored from ${host}`;
    if (this.#expandLibrary && name.startsWith('library/')) {
      return "library/ is Docker Hub's namespace for official images: push under another name, or list it in hosted repositories";
    }
    return undefined;
  }

  /** Validates a repository name from a URL and gives the default upstream's spelling of it. */
  repositoryName(raw: string): string {
    let name = this.#names.get(raw);
    if (name === undefined) {
      name = canonicalName(raw, this.#expandLibrary);
      this.#names.set(raw, name);
    }
    return name;
  }
}
