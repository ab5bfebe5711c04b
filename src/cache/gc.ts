import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { blobPath } from '../storage/layout.js';
import { TagIndex } from './tag-index.js';

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
  return new TagIndex(dataDir, 'repositories').removeOrphanMarkers((hex) =>
    stat(blobPath(dataDir, hex)).then(
      () => true,
      () => false,
    ),
  );
}
