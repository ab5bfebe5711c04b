import { afterEach, describe, expect, it, vi } from 'vitest';
import { LruMap } from '../../src/cache/lru-map.js';

describe('LruMap', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('keeps at most max entries, dropping the least recently used (get counts, has does not)', () => {
    const m = new LruMap<string, number>({ max: 3 });
    m.set('a', 1).set('b', 2).set('c', 3);
    expect(m.get('a')).toBe(1); // a is now the most recent: b is the oldest
    expect(m.has('b')).toBe(true); // has does not refresh b
    m.set('d', 4);
    expect(m.has('b')).toBe(false);
    expect([m.get('a'), m.get('c'), m.get('d')]).toEqual([1, 3, 4]);
    expect(m.size).toBe(3);
    m.set('c', 30); // setting again refreshes and replaces
    m.set('e', 5);
    expect(m.has('a')).toBe(false);
    expect(m.get('c')).toBe(30);
  });

  it('keeps the order when the most recently used key is asked again, deleted, or set again', () => {
    const m = new LruMap<string, number>({ max: 3 });
    m.set('a', 1).set('b', 2).set('c', 3);
    expect(m.get('c')).toBe(3); // already the newest
    expect(m.get('a')).toBe(1); // b, c, a
    expect(m.get('a')).toBe(1);
    m.set('d', 4); // b goes
    expect(m.has('b')).toBe(false);
    m.delete('d');
    m.set('b', 2); // c, a, b
    expect(m.get('c')).toBe(3); // a, b, c
    m.set('e', 5); // a goes
    expect([m.has('a'), m.has('b'), m.has('c'), m.has('e')]).toEqual([false, true, true, true]);
  });

  it('forgets an entry ttl ms after it was set', () => {
    vi.useFakeTimers();
    const m = new LruMap<string, true>({ max: 10, ttl: 1000 });
    m.set('a', true);
    vi.advanceTimersByTime(999);
    expect(m.has('a')).toBe(true);
    expect(m.get('a')).toBe(true); // a get does not extend the ttl
    vi.advanceTimersByTime(1);
    expect(m.has('a')).toBe(false);
    expect(m.get('a')).toBeUndefined();
    expect(m.size).toBe(0);
    m.set('a', true);
    vi.advanceTimersByTime(500);
    m.set('a', true); // set again: a new ttl
    vi.advanceTimersByTime(700);
    expect(m.get('a')).toBe(true);
  });

  it('deletes and clears', () => {
    const m = new LruMap<string, number>({ max: 10, ttl: 1000 });
    m.set('a', 1).set('b', 2);
    expect(m.delete('a')).toBe(true);
    expect(m.delete('a')).toBe(false);
    m.clear();
    expect(m.size).toBe(0);
    expect(m.get('b')).toBeUndefined();
  });
});
