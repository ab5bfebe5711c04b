import { randomBytes } from 'node:crypto';
import { access, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { siblingTemp } from './layout.js';

/** A folder's entries without dot files (temp files); empty when the folder does not exist. */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((n) => !n.startsWith('.'));
  } catch {
    return [];
  }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** Writes `file` whole or not at all: a temp file beside it, then rename. */
export async function atomicWrite(file: string, content: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const temp = siblingTemp(file, randomBytes(4).toString('hex'));
  try {
    await writeFile(temp, content);
    await rename(temp, file);
  } catch (err) {
    // A full disk may leave a partial temp file: it must not stay behind.
    await rm(temp, { force: true }).catch(() => {});
    throw err;
  }
}
