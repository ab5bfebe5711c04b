import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';

/**
 * Temp files a crash (kill -9, power loss) left behind. A live download writes at least once per
 * idle timeout, so a file untouched for longer than `olderThanMs` belongs to no running fill, in
 * this process or another one sharing the directory. Never served: only renamed files are.
 */
export async function removeStaleTemps(
  tmpDir: string,
  olderThanMs: number,
): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  let names: string[] = [];
  try {
    names = await readdir(tmpDir);
  } catch {
    return { files, bytes };
  }
  const cutoff = Date.now() - olderThanMs;
  for (const name of names) {
    const file = path.join(tmpDir, name);
    try {
      const s = await stat(file);
      if (s.mtimeMs > cutoff) continue;
      await rm(file, { force: true });
      files++;
      bytes += s.size;
    } catch {
      // gone meanwhile
    }
  }
  return { files, bytes };
}

/**
 * `_manifests/<hex>` markers whose manifest is no longer stored (evicted, or removed by hand): the
 * catalog would list a repository that holds nothing. Empty repository folders go with them.
 */
export async function removeOrphanMarkers(dataDir: string): Promise<number> {
  const blobs = path.join(dataDir, 'blobs', 'sha256');
  let removed = 0;
  const walk = async (dir: string): Promise<boolean> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return false;
    }
    let empty = true;
    for (const e of entries) {
      const full = path.join(dir, e.name);
      if (e.isDirectory() && e.name === '_manifests') {
        let left = 0;
        for (const hex of await readdir(full)) {
          const exists = await stat(path.join(blobs, hex.slice(0, 2), hex)).then(
            () => true,
            () => false,
          );
          if (exists) left++;
          else {
            await rm(path.join(full, hex), { force: true });
            removed++;
          }
        }
        if (left === 0) await rm(full, { recursive: true, force: true });
        else empty = false;
      } else if (e.isDirectory() && !e.name.startsWith('_')) {
        if (!(await walk(full))) empty = false;
        else await rm(full, { recursive: true, force: true });
      } else {
        empty = false;
      }
    }
    return empty;
  };
  await walk(path.join(dataDir, 'repositories'));
  return removed;
}

/** A folder's entries without dot files (temp files); empty when the folder does not exist. */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((n) => !n.startsWith('.'));
  } catch {
    return [];
  }
}
