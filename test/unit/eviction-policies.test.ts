import { describe, expect, it } from 'vitest';
import { GdsfPolicy } from '../../src/cache/eviction/gdsf.js';
import { LruPolicy } from '../../src/cache/eviction/lru.js';
import { OversizeFirst } from '../../src/cache/eviction/oversize-first.js';
import type { EvictionPolicy } from '../../src/cache/eviction/policy.js';
import { WhoFetched } from '../../src/cache/eviction/who-fetched.js';

const all = () => true;

/** A byte-bounded store driven by a policy the way the live store drives it: store every miss, then evict while over. */
class Cache {
  readonly stored = new Map<string, number>();
  used = 0;
  constructor(
    readonly policy: EvictionPolicy,
    readonly capacity: number,
  ) {}

  request(key: string, size: number): 'hit' | 'miss' {
    if (this.stored.has(key)) {
      this.policy.hit(key);
      return 'hit';
    }
    this.stored.set(key, size);
    this.used += size;
    this.policy.insert(key, size);
    while (this.used > this.capacity) {
      const victim = this.policy.victim(all);
      if (victim === undefined) throw new Error('no victim in a full cache');
      this.used -= this.stored.get(victim) ?? Number.NaN;
      this.stored.delete(victim);
    }
    return 'miss';
  }
}

const live: [string, () => EvictionPolicy][] = [
  ['lru', () => new LruPolicy()],
  ['gdsf', () => new GdsfPolicy()],
];

// What every live policy owes the evictor (cache/evictor.ts), whatever order it chooses.
describe.each(live)('eviction policy contract: %s', (_, make) => {
  it('gives every stored key exactly once, then nothing', () => {
    const p = make();
    for (const k of ['a', 'b', 'c', 'd']) p.insert(k, 10);
    p.hit('b');
    const out = [p.victim(all), p.victim(all), p.victim(all), p.victim(all)];
    expect(new Set(out)).toEqual(new Set(['a', 'b', 'c', 'd']));
    expect(p.victim(all)).toBeUndefined();
  });

  it('never offers a key it may not evict, and offers it once it may', () => {
    const p = make();
    for (const k of ['a', 'b', 'c']) p.insert(k, 10);
    const open = new Set(['a', 'b']);
    expect(p.victim((k) => !open.has(k))).toBe('c');
    expect(p.victim((k) => !open.has(k))).toBeUndefined();
    open.clear();
    expect(new Set([p.victim(all), p.victim(all)])).toEqual(new Set(['a', 'b']));
  });

  it('forgets a removed key, and ignores hits and removals of unknown ones', () => {
    const p = make();
    p.insert('a', 10);
    p.insert('b', 10);
    p.remove('a');
    p.hit('zz');
    p.remove('zz');
    expect(p.victim(all)).toBe('b');
    expect(p.victim(all)).toBeUndefined();
  });
});

describe('lru', () => {
  it('evicts the least recently used first; a hit makes a blob the most recent', () => {
    const p = new LruPolicy();
    for (const k of ['a', 'b', 'c']) p.insert(k, 10);
    p.hit('a');
    expect([p.victim(all), p.victim(all), p.victim(all)]).toEqual(['b', 'c', 'a']);
  });
});

describe('gdsf (the default)', () => {
  it('keeps a blob used many times through a burst of one-shot big blobs (LRU does not)', () => {
    const run = (policy: EvictionPolicy) => {
      const cache = new Cache(policy, 100);
      cache.request('hot', 10);
      for (let i = 0; i < 4; i++) cache.request('hot', 10);
      for (let i = 0; i < 10; i++) cache.request(`big${i}`, 40);
      return cache.request('hot', 10);
    };
    expect(run(new GdsfPolicy())).toBe('hit');
    expect(run(new LruPolicy())).toBe('miss');
  });

  it('a scan of one-shot blobs, ten times the cache, does not flush blobs used now and then (LRU does)', () => {
    const run = (policy: EvictionPolicy) => {
      const cache = new Cache(policy, 100);
      const hot = ['h0', 'h1', 'h2', 'h3', 'h4'];
      for (let round = 0; round < 3; round++) for (const h of hot) cache.request(h, 10);
      const misses = new Set<string>();
      // Between two uses of the hot blobs, 150 bytes of blobs used once: more than the cache holds.
      for (let i = 0; i < 200; i++) {
        cache.request(`scan${i}`, 5);
        if (i % 30 === 29) for (const h of hot) if (cache.request(h, 10) === 'miss') misses.add(h);
      }
      return misses.size;
    };
    expect(run(new GdsfPolicy())).toBe(0);
    expect(run(new LruPolicy())).toBe(5);
  });

  it('ages old frequencies: a blob used often long ago goes once newer blobs are used more', () => {
    const cache = new Cache(new GdsfPolicy(), 100);
    for (let i = 0; i < 5; i++) cache.request('old', 10);
    // Each round: a new working set used twice, so the inflation rises past the old blob's count.
    for (let round = 0; round < 20; round++)
      for (let pass = 0; pass < 2; pass++) for (let i = 0; i < 9; i++) cache.request(`r${round}-${i}`, 10);
    expect(cache.stored.has('old')).toBe(false);
  });

  it('evicts the least frequently used first, and among equals the one used longest ago', () => {
    const p = new GdsfPolicy();
    for (const k of ['a', 'b', 'c']) p.insert(k, 10);
    p.hit('a');
    p.hit('a');
    p.hit('b');
    expect([p.victim(all), p.victim(all), p.victim(all)]).toEqual(['c', 'b', 'a']);
    p.insert('x', 10);
    p.insert('y', 10);
    expect(p.victim(all)).toBe('x');
  });

  it('puts first, at its next use, a blob every client has fetched, however often it was used', () => {
    const clients = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];
    /** a, b, c, each fetched by one client; then `a` used thrice, fetched by the first `fetchers`. */
    const victimWith = (fetchers: number) => {
      const p = new GdsfPolicy({ fetched: new WhoFetched() });
      ['a', 'b', 'c'].forEach((k, i) => {
        p.asked?.(k, clients[i] as string);
        p.insert(k, 10);
      });
      for (let i = 1; i < 4; i++) {
        if (i < fetchers) p.asked?.('a', clients[i] as string);
        p.hit('a');
      }
      return p.victim(all);
    };
    expect(victimWith(2)).toBe('b'); // one client lacks 'a' yet: its uses keep it
    expect(victimWith(3)).toBe('a');
  });

  it('keeps the order right after many hits without an eviction (old heap items compacted)', () => {
    const p = new GdsfPolicy();
    for (let i = 0; i < 50; i++) p.insert(`k${i}`, 10);
    for (let n = 0; n < 20_000; n++) p.hit(`k${1 + (n % 49)}`);
    expect(p.victim(all)).toBe('k0');
  });

  it('counts a hit on the blob used last like any other (the repeated-hit shortcut keeps the order)', () => {
    // Two blobs of one size, a then b inserted.
    const twoBlobs = (maxFrequency: number) => {
      const policy = new GdsfPolicy({ maxFrequency });
      policy.insert('a', 10);
      policy.insert('b', 10);
      return policy;
    };
    const p = twoBlobs(5);
    p.hit('a');
    p.hit('a'); // used last, but its frequency rises to 3: counted
    p.hit('b'); // 2
    expect(p.victim(all)).toBe('b');
    const q = twoBlobs(2);
    q.hit('a');
    q.hit('b');
    q.hit('b'); // already at the bound and used last: nothing changes
    expect(q.victim(all)).toBe('a');
    q.insert('c', 10);
    q.hit('c');
    q.hit('b');
    q.hit('b');
    expect(q.victim(all)).toBe('c'); // equal priorities: c was used before b's hits
    expect(q.victim(all)).toBe('b');
    const r = twoBlobs(2);
    r.hit('a');
    r.hit('b');
    r.hit('a'); // at the bound but not used last: now newer than b
    expect(r.victim(all)).toBe('b');
  });
});

describe('oversize first', () => {
  it('evicts a blob larger than the bound before asking the policy', () => {
    const p = new OversizeFirst(new LruPolicy(), 100);
    p.insert('a', 10);
    p.insert('huge', 150);
    p.insert('b', 10);
    expect(p.victim(all)).toBe('huge');
    expect(p.victim(all)).toBe('a');
  });
});
