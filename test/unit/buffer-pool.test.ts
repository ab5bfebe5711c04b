import { describe, expect, it } from 'vitest';
import { BufferPool, CHUNK, SMALL_CHUNK } from '../../src/buffer-pool.js';

const KIB = 1024;

describe('BufferPool', () => {
  it('hands out smaller buffers as the budget is used, the smallest even over it, never waiting', () => {
    const pool = new BufferPool(2 * CHUNK + 256 * KIB);
    const sizes = Array.from({ length: 6 }, () => pool.take().length);
    expect(sizes).toEqual([CHUNK, CHUNK, 256 * KIB, SMALL_CHUNK, SMALL_CHUNK, SMALL_CHUNK]);
    expect(pool.outstanding).toBe(2 * CHUNK + 256 * KIB + 3 * SMALL_CHUNK);
  });

  it('reuses what is given back', () => {
    const pool = new BufferPool(CHUNK);
    const large = pool.take();
    pool.give(large);
    expect(pool.take()).toBe(large);
    expect(pool.outstanding).toBe(CHUNK);
  });

  it('keeps for reuse only what fits the budget with what is out', () => {
    const pool = new BufferPool(CHUNK);
    const large = pool.take();
    const small = pool.take(); // over the budget
    pool.give(small); // out + kept would exceed the budget: dropped
    pool.give(large);
    expect(pool.outstanding).toBe(0);
    expect(pool.take()).toBe(large);
    expect(pool.take()).not.toBe(small);
  });
});
