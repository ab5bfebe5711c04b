import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observe/logger.js';
import {
  type BucketCollectOptions,
  BucketCollector,
  type BucketMarks,
  type CollectedBucket,
  type CollectorFleet,
} from '../../src/shared/bucket-gc.js';
import type { ListedObject } from '../../src/shared/s3-store.js';

const HOUR = 3_600_000;
const NOW = Date.UTC(2026, 10, 26, 12);
const hex = (n: number) => n.toString(16).padStart(64, '0');
const blobKey = (h: string) => `blobs/sha256/${h.slice(0, 2)}/${h}`;

/** A bucket in memory: keys → size and LastModified; pages of `pageSize`; the bucket's clock is NOW. */
function fakeBucket(pageSize = 1000) {
  const objects = new Map<string, { size: number; modifiedMs: number }>();
  const removed: string[] = [];
  let failRemove = (_key: string) => false;
  const bucket: CollectedBucket = {
    clock: async () => NOW,
    listPage: async (under, token) => {
      const keys = [...objects.keys()].filter((k) => k.startsWith(under)).sort();
      // Continuation by key, as S3's: removals between pages do not shift the next page.
      const rest = token ? keys.filter((k) => k > token) : keys;
      const page = rest.slice(0, pageSize);
      const out: ListedObject[] = page.map((key) => ({
        key,
        ...(objects.get(key) as { size: number; modifiedMs: number }),
      }));
      return { objects: out, next: rest.length > pageSize ? page[page.length - 1] : undefined };
    },
    removeKey: async (key) => {
      if (failRemove(key)) throw new Error('refused');
      objects.delete(key);
      removed.push(key);
    },
    abortStaleMultipart: async () => 0,
  };
  return {
    bucket,
    objects,
    removed,
    blob(h: string, size: number, ageMs: number) {
      objects.set(blobKey(h), { size, modifiedMs: NOW - ageMs });
    },
    failing(f: (key: string) => boolean) {
      failRemove = f;
    },
  };
}

function fakeFleet(used = new Map<string, number>(), live = new Set<string>()) {
  const forgotten: string[] = [];
  let holder: string | undefined;
  const fleet: CollectorFleet = {
    lease: async () => {
      if (holder) return undefined;
      holder = 'me';
      return async () => {
        holder = undefined;
      };
    },
    uploadLive: async (id) => live.has(id),
    lastUsed: async (hexes) =>
      new Map(hexes.flatMap((h) => (used.has(h) ? [[h, used.get(h) as number]] : []))),
    forget: async (hexes) => {
      forgotten.push(...hexes);
    },
  };
  return {
    fleet,
    forgotten,
    hold() {
      holder = 'another';
    },
  };
}

function collector(
  b: ReturnType<typeof fakeBucket>,
  f: ReturnType<typeof fakeFleet>,
  marks: Partial<BucketMarks> | (() => Promise<BucketMarks>),
  more: Partial<BucketCollectOptions> = {},
) {
  return new BucketCollector({
    bucket: b.bucket,
    fleet: f.fleet,
    mark:
      typeof marks === 'function'
        ? marks
        : async () => ({ hosted: marks.hosted ?? new Set(), mirrored: marks.mirrored ?? new Set() }),
    heldNow: () => false,
    graceMs: HOUR,
    maxBytes: undefined,
    uploadExpiryMs: HOUR,
    log: createLogger('silent'),
    ...more,
  });
}

describe('the bucket collection (shared/bucket-gc.ts)', () => {
  it('removes what nothing names, is older than the grace and unused within it; keeps the rest', async () => {
    const b = fakeBucket(2); // several pages
    const [hosted, mirrored, young, used, held, orphan1, orphan2] = [
      hex(1),
      hex(2),
      hex(3),
      hex(4),
      hex(5),
      hex(6),
      hex(7),
    ];
    b.blob(hosted, 100, 10 * HOUR);
    b.blob(mirrored, 200, 10 * HOUR);
    b.blob(young, 300, HOUR / 2);
    b.blob(used, 400, 10 * HOUR);
    b.blob(held, 500, 10 * HOUR);
    b.blob(orphan1, 600, 10 * HOUR);
    b.blob(orphan2, 700, 2 * HOUR);
    b.objects.set('blobs/sha256/zz/not-a-blob', { size: 1, modifiedMs: 0 });
    b.objects.set(`blobs/sha256/ff/${hex(8)}`, { size: 1, modifiedMs: 0 }); // prefix does not match
    const f = fakeFleet(new Map([[used, Date.now() - 60_000]]));
    const result = await collector(
      b,
      f,
      { hosted: new Set([hosted]), mirrored: new Set([mirrored]) },
      { heldNow: (h) => h === held },
    ).run();
    expect(b.removed.sort()).toEqual([blobKey(orphan1), blobKey(orphan2)].sort());
    expect(f.forgotten.sort()).toEqual([orphan1, orphan2].sort());
    expect(result).toMatchObject({
      listed: 7,
      listedBytes: 2800,
      removed: 2,
      removedBytes: 1300,
      hosted: 1,
      mirrored: 1,
      keptYoung: 1,
      keptRecent: 2,
      foreign: 2,
      bytesAfter: 1500,
      evicted: 0,
      overBound: false,
    });
  });

  it('over --shared-max-size: evicts mirrored blobs least recently used first, down to 90 %; never hosted or young ones', async () => {
    const b = fakeBucket();
    const [hosted, young, oldest, middle, newest] = [hex(1), hex(2), hex(3), hex(4), hex(5)];
    b.blob(hosted, 500, 10 * HOUR);
    b.blob(young, 100, 60_000);
    for (const h of [oldest, middle, newest]) b.blob(h, 200, 10 * HOUR);
    const now = Date.now();
    const f = fakeFleet(
      new Map([
        [oldest, now - 5 * HOUR],
        [middle, now - 3 * HOUR],
        [newest, now - 2 * HOUR],
      ]),
    );
    const marks = { hosted: new Set([hosted]), mirrored: new Set([oldest, middle, newest]) };
    // 1,200 bytes against a bound of 1,000: down to 900, so two mirrored blobs go, oldest use first.
    const result = await collector(b, f, marks, { maxBytes: 1000 }).run();
    expect(b.removed).toEqual([blobKey(oldest), blobKey(middle)]);
    expect(result).toMatchObject({ evicted: 2, evictedBytes: 400, bytesAfter: 800, overBound: false });

    // Hosted content alone over the bound: nothing hosted goes, and the collection says so.
    const tight = await collector(b, fakeFleet(), marks, { maxBytes: 400 }).run();
    expect(b.objects.has(blobKey(hosted))).toBe(true);
    expect(b.objects.has(blobKey(young))).toBe(true);
    expect(tight).toMatchObject({ evicted: 1, overBound: true, bytesAfter: 600 });
  });

  it('a listing that goes on past its bound is stopped there, and the size bound evicts nothing that run', async () => {
    const b = fakeBucket(2);
    for (let i = 1; i <= 10; i++) b.blob(hex(i), 100, 10 * HOUR);
    const mirrored = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(hex));
    const result = await collector(b, fakeFleet(), { mirrored }, { maxListed: 4, maxBytes: 100 }).run();
    expect(result).toMatchObject({ listed: 4, partial: true, evicted: 0 });
    expect(b.removed).toEqual([]);
  });

  it('a failure while marking removes nothing', async () => {
    const b = fakeBucket();
    b.blob(hex(1), 10, 10 * HOUR);
    const c = collector(b, fakeFleet(), async () => {
      throw new Error('redis down');
    });
    await expect(c.run()).rejects.toThrow('redis down');
    expect(b.removed).toEqual([]);
  });

  it('one replica at a time: while another holds the lease, nothing is listed or removed', async () => {
    const b = fakeBucket();
    b.blob(hex(1), 10, 10 * HOUR);
    const f = fakeFleet();
    f.hold();
    const result = await collector(b, f, {}).run();
    expect(result.skipped).toMatch(/another replica/);
    expect(b.removed).toEqual([]);
  });

  it('a blob the bucket refuses to remove is kept and counted as kept', async () => {
    const b = fakeBucket();
    b.blob(hex(1), 10, 10 * HOUR);
    b.blob(hex(2), 20, 10 * HOUR);
    b.failing((key) => key.endsWith(hex(1)));
    const f = fakeFleet();
    const result = await collector(b, f, {}).run();
    expect(result).toMatchObject({ removed: 1, removedBytes: 20, bytesAfter: 10 });
    expect(f.forgotten).toEqual([hex(2)]);
  });

  it('removes staged upload parts only of sessions no record names, older than twice the upload expiry', async () => {
    const b = fakeBucket();
    const part = (id: string, start: number, ageMs: number) =>
      b.objects.set(`uploads/${id}/${start}-${start + 10}`, { size: 10, modifiedMs: NOW - ageMs });
    part('dead', 0, 3 * HOUR);
    part('dead', 10, 3 * HOUR);
    part('live', 0, 3 * HOUR);
    part('recent', 0, 3 * HOUR);
    part('recent', 10, HOUR); // its newest part is within twice the expiry
    b.objects.set('uploads/../x', { size: 1, modifiedMs: 0 });
    const result = await collector(b, fakeFleet(new Map(), new Set(['live'])), {}).run();
    expect(b.removed.sort()).toEqual(['uploads/dead/0-10', 'uploads/dead/10-20']);
    expect(result.uploadParts).toBe(2);
  });
});
