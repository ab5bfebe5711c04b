import { RegistryError } from '../oci/errors.js';
import { validateName } from '../oci/names.js';

/**
 * Clients spell a Docker Hub repository several ways: dockerd (as a mirror) sends `library/alpine`,
 * `docker pull 127.0.0.1:5000/alpine` sends `alpine`, some tools keep a `docker.io/` prefix. All
 * of them name one upstream repository and share one cache entry (distribution#1058, harbor#15154).
 */
const HUB_PREFIXES = ['docker.io/', 'index.docker.io/', 'registry-1.docker.io/'];

export function canonicalName(raw: string, expandLibrary: boolean): string {
  let name = validateName(raw);
  if (!expandLibrary) return name;
  for (const prefix of HUB_PREFIXES) {
    if (name.startsWith(prefix) && name.length > prefix.length) {
      name = name.slice(prefix.length);
      break;
    }
  }
  // Docker Hub namespaces have no dots: a dotted first component names another registry
  // (`ghcr.io/owner/app`), which this mirror must not fetch from Docker Hub.
  const first = name.split('/')[0] ?? '';
  if (name.includes('/') && first.includes('.')) {
    throw new RegistryError('NAME_UNKNOWN', `registry ${first} is not mirrored here`, { name: raw });
  }
  return name.includes('/') ? name : `library/${name}`;
}

/** The `ns` values (containerd's registry host) that mean "the upstream this mirror serves". */
export function servesNamespace(ns: string, upstream: URL, expandLibrary: boolean): boolean {
  if (ns === upstream.host) return true;
  return expandLibrary && HUB_PREFIXES.some((p) => p === `${ns}/`);
}
