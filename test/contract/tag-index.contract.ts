import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SharedTagIndex, type TagEntry, TagIndex } from '../../src/cache/tag-index.js';

/**
 * What the tag index promises (cache/tag-index.ts), alone on its files or with the index replicas
 * share (shared/redis-tags.ts). `open` gives an index over the subject's data directory and shared
 * index: called again, it is a restart (or another replica, when shared).
 */
export interface TagIndexSubject {
  open(): TagIndex;
  /** The data directory of the index `open` gave last (to see what is left on disk). */
  lastDir(): string;
  /** Whether the index is shared with other replicas (then tags set elsewhere show here). */
  shared: boolean;
  close(): Promise<void>;
}

export async function localTagIndex(): Promise<TagIndexSubject> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hubcache-tags-'));
  return {
    open: () => new TagIndex(dir, 'repositories'),
    lastDir: () => dir,
    shared: false,
    close: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** An index whose replicas each have their own data directory, and one shared index. */
export async function sharedTagIndex(
  shared: SharedTagIndex,
  close: () => Promise<void>,
): Promise<TagIndexSubject> {
  const dirs: string[] = [];
  return {
    open: () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'hubcache-tags-'));
      dirs.push(dir);
      return new TagIndex(dir, 'repositories', shared);
    },
    lastDir: () => dirs.at(-1) ?? '',
    shared: true,
    close: async () => {
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
      await close();
    },
  };
}

const hex = () => randomBytes(32).toString('hex');
const entry = (digestHex = hex(), checkedAt = Date.now()): TagEntry => ({
  digest: `sha256:${digestHex}`,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  checkedAt,
});

export function tagIndexContract(name: string, make: () => Promise<TagIndexSubject>): void {
  describe(`tag index contract: ${name}`, () => {
    let subject: TagIndexSubject;
    /** A repository name no other test uses (a shared index outlives each test). */
    const repo = (leaf = 'app') => `t${randomBytes(4).toString('hex')}/${leaf}`;
    beforeAll(async () => {
      subject = await make();
    });
    afterAll(async () => {
      await subject?.close();
    });

    it('gives back the entry set for a tag, and lists the tag', async () => {
      const index = subject.open();
      const name = repo();
      const e = entry();
      await index.set(name, 'v1', e);
      expect(await index.get(name, 'v1')).toEqual(e);
      expect(await index.tags(name)).toEqual(['v1']);
      expect(await index.knows(name)).toBe(true);
    });

    it('knows nothing of a tag or repository never set', async () => {
      const index = subject.open();
      const name = repo();
      expect(await index.get(name, 'latest')).toBeUndefined();
      expect(await index.tags(name)).toEqual([]);
      expect(await index.knows(name)).toBe(false);
      expect(await index.hasManifest(name, hex())).toBe(false);
    });

    it('lists tags sorted', async () => {
      const index = subject.open();
      const name = repo();
      const tags = [
        'b',
        'A',
        'a',
        '1.0',
        ...Array.from({ length: 12 }, () => randomBytes(3).toString('hex')),
      ];
      for (const tag of tags) await index.set(name, tag, entry());
      expect(await index.tags(name)).toEqual([...tags].sort());
    });

    it('applies concurrent moves of one tag in call order: the last one wins, also after a restart', async () => {
      const index = subject.open();
      const name = repo();
      const entries = Array.from({ length: 10 }, () => entry());
      await Promise.all(entries.map((e) => index.set(name, 'latest', e)));
      const last = entries.at(-1);
      expect(await index.get(name, 'latest')).toEqual(last);
      expect(await subject.open().get(name, 'latest')).toEqual(last);
    });

    it('keeps what it was told across a restart (or, shared, on another replica)', async () => {
      const name = repo();
      const e = entry();
      const m = hex();
      const first = subject.open();
      await first.set(name, 'v1', e);
      await first.noteManifest(name, m);
      const again = subject.open();
      expect(await again.get(name, 'v1')).toEqual(e);
      expect(await again.tags(name)).toEqual(['v1']);
      expect(await again.repositories()).toContain(name);
      // Manifests noted are this data directory's records: another replica's are not its own.
      expect(await again.hasManifest(name, m)).toBe(!subject.shared);
    });

    it('lists every repository holding a tag or a manifest, nested names included, sorted', async () => {
      const index = subject.open();
      const a = repo('a');
      const nested = `${a.split('/')[0]}/deeper/b`;
      await index.noteManifest(nested, hex());
      await index.set(a, 'v1', entry());
      const listed = (await index.repositories()).filter((n) => n.startsWith(`${a.split('/')[0]}/`));
      expect(listed).toEqual([a, nested].sort());
      const all = await index.repositories();
      expect(all).toEqual([...all].sort());
    });

    it('notes manifests pulled by digest', async () => {
      const index = subject.open();
      const name = repo();
      const m = hex();
      await index.noteManifest(name, m);
      await index.noteManifest(name, m);
      expect(await index.hasManifest(name, m)).toBe(true);
      expect(await index.markedManifests(name)).toEqual([m]);
      expect(await index.knows(name)).toBe(true);
    });

    it('names every tagged or noted manifest for garbage collection, from its own files', async () => {
      const index = subject.open();
      const name = repo();
      const tagged = hex();
      const noted = hex();
      await index.set(name, 'v1', entry(tagged));
      await index.noteManifest(name, noted);
      const named = await index.namedManifests();
      expect(named.has(tagged)).toBe(true);
      expect(named.has(noted)).toBe(true);
    });

    it('removes markers of manifests no longer stored, and the folders they leave empty', async () => {
      const index = subject.open();
      const gone = repo('gone');
      const kept = repo('kept');
      const [g, k] = [hex(), hex()];
      await index.noteManifest(gone, g);
      await index.noteManifest(kept, k);
      // Other tests' markers in this directory are orphans too (their manifests are made up).
      const removed = await index.removeOrphanMarkers(async (h) => h === k);
      expect(removed).toBeGreaterThanOrEqual(1);
      expect(await index.markedManifests(gone)).toEqual([]);
      expect(await index.markedManifests(kept)).toEqual([k]);
      if (!subject.shared) expect(await index.repositories()).not.toContain(gone);
      // `t…/gone` held nothing else: its folders went with the marker (`t…/` too).
      expect(existsSync(path.join(subject.lastDir(), 'repositories', gone))).toBe(false);
      expect(existsSync(path.join(subject.lastDir(), 'repositories', kept))).toBe(true);
    });

    // Only hosted repositories delete tags, and their index is never shared: a shared entry stays.
    it('forgets a deleted tag (on its own files)', async () => {
      const index = subject.open();
      const name = repo();
      await index.set(name, 'v1', entry());
      await index.delete(name, 'v1');
      if (subject.shared) {
        // The shared index still names it: delete is a local operation (see above).
        expect(await index.get(name, 'v1')).toBeDefined();
      } else {
        expect(await index.get(name, 'v1')).toBeUndefined();
        expect(await index.tags(name)).toEqual([]);
        expect(await subject.open().get(name, 'v1')).toBeUndefined();
      }
    });
  });
}
