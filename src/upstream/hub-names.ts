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
  return name.includes('/') ? name : `library/${name}`;
}
