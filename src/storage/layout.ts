import path from 'node:path';

/**
 * The data directory (`--data`), the one place that knows where things live in it, like the
 * reference registry's registry/storage/paths.go. Everything else asks here for its paths:
 *
 *     <data>/
 *       blobs/sha256/<2 hex>/<hex>          content, addressed by its sha256 (cache/blob-store.ts)
 *       tmp/                                writes in progress, renamed into blobs/ once verified
 *       pins.json                           blobs the size bound never removes (prefetch --pin)
 *       uploads/<session id>                pushes' upload sessions (hosted/uploads.ts)
 *       token.key                           the token service's signing key (auth/token-service.ts)
 *       repositories/<name>/                what the mirror cached per name (cache/tag-index.ts)
 *         _tags/<tag>                       JSON: { digest, mediaType, checkedAt }
 *         _manifests/<hex>                  a manifest served for the name (empty file)
 *       hosted/<name>/                      what clients pushed (hosted/)
 *         _tags/<tag>                       as above
 *         _manifests/<hex>                  the file holds the manifest's media type
 *         _layers/<hex>                     a blob uploaded or mounted into it, or one its manifests name
 *         _referrers/<subject hex>/<hex>    a manifest whose subject is that one
 *         _deleted                          its mtime: the repository's last delete
 *
 * The layout is the reference registry's in spirit (docker/registry/v2/blobs, repositories/<name>
 * with `_`-prefixed folders, which no name component can start with), so an operator can see what
 * is stored with `ls`. It must not change: existing data directories keep working.
 */

/** The folders holding one repository tree each: the mirror's own index, and pushed repositories. */
export type RepositoryTree = 'repositories' | 'hosted';

export function blobsDir(data: string): string {
  return path.join(data, 'blobs', 'sha256');
}

/** A two-hex-digit fan-out folder under blobs/sha256. */
export function blobPrefixDir(data: string, prefix: string): string {
  return path.join(blobsDir(data), prefix);
}

export function blobPath(data: string, hex: string): string {
  return path.join(blobsDir(data), hex.slice(0, 2), hex);
}

export function tempDir(data: string): string {
  return path.join(data, 'tmp');
}

/** A file in tmp/ (its name says what it becomes: `<hex>.<random>`, `pins.<random>`). */
export function tempPath(data: string, name: string): string {
  return path.join(tempDir(data), name);
}

export function pinsFile(data: string): string {
  return path.join(data, 'pins.json');
}

export function uploadsDir(data: string): string {
  return path.join(data, 'uploads');
}

export function uploadPath(data: string, id: string): string {
  return path.join(uploadsDir(data), id);
}

export function tokenKeyFile(data: string): string {
  return path.join(data, 'token.key');
}

export function treeRoot(data: string, tree: RepositoryTree): string {
  return path.join(data, tree);
}

/** A folder of a repository tree: a repository, or a namespace above some (`library/`). */
export function repositoryDir(data: string, tree: RepositoryTree, name: string): string {
  return path.join(treeRoot(data, tree), name);
}

export function tagsDir(data: string, tree: RepositoryTree, name: string): string {
  return path.join(repositoryDir(data, tree, name), '_tags');
}

export function tagPath(data: string, tree: RepositoryTree, name: string, tag: string): string {
  return path.join(tagsDir(data, tree, name), tag);
}

export function manifestsDir(data: string, tree: RepositoryTree, name: string): string {
  return path.join(repositoryDir(data, tree, name), '_manifests');
}

export function manifestMarker(data: string, tree: RepositoryTree, name: string, hex: string): string {
  return path.join(manifestsDir(data, tree, name), hex);
}

export function layersDir(data: string, name: string): string {
  return path.join(repositoryDir(data, 'hosted', name), '_layers');
}

export function layerLink(data: string, name: string, hex: string): string {
  return path.join(layersDir(data, name), hex);
}

export function referrersDir(data: string, name: string, subjectHex: string): string {
  return path.join(repositoryDir(data, 'hosted', name), '_referrers', subjectHex);
}

export function referrerLink(data: string, name: string, subjectHex: string, hex: string): string {
  return path.join(referrersDir(data, name, subjectHex), hex);
}

export function deletedMarker(data: string, name: string): string {
  return path.join(repositoryDir(data, 'hosted', name), '_deleted');
}

/**
 * The temp file beside `file` that an atomic write renames over it. It starts with '.', which no
 * tag, digest or name component can (tag grammar: [a-zA-Z0-9_] first), so listings skip it.
 */
export function siblingTemp(file: string, random: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${random}`);
}
