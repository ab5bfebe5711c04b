import { describe, expect, it } from 'vitest';
import { BufferPool, CHUNK, SMALL_CHUNK } from '../../src/buffer-pool.js';

describe('BufferPool', () => {
  it('makes at most maxLarge large buffers, then hands out small ones instead of waiting', () => {
    const pool = new BufferPool(2);
    const taken = [pool.take(), pool.take(), pool.take(), pool.take()];
    expect(taken.map((b) => b.length)).toEqual([CHUNK, CHUNK, SMALL_CHUNK, SMALL_CHUNK]);
    expect(pool.largeAllocated).toBe(2);
  });

  it('reuses what is given back, large first', () => {
    const pool = new BufferPool(1);
    const large = pool.take();
    const small = pool.take();
    pool.give(small);
    pool.give(large);
    expect(pool.take()).toBe(large);
    expect(pool.take()).toBe(small);
    expect(pool.largeAllocated).toBe(1);
  });

  it('keeps at most maxSmallFree small buffers for reuse', () => {
    const pool = new BufferPool(0, 1);
    const [a, b] = [pool.take(), pool.take()];
    pool.give(a);
    pool.give(b);
    expect(pool.take()).toBe(a);
    expect(pool.take()).not.toBe(b);
  });
});
