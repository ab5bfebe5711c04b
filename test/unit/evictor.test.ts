import { describe, expect, it } from 'vitest';
import { GdsfPolicy } from '../../src/cache/eviction/gdsf.js';
import type { EvictionPolicy } from '../../src/cache/eviction/policy.js';
import { type Evictable, Evictor } from '../../src/cache/evictor.js';
import { createLogger } from '../../src/observe/logger.js';
import type { Digest } from '../../src/oci/digest.js';

/** The store the evictor bounds, in memory: removals wait for `release` when `hold` is set. */
class FakeStore implements Evictable {
  readonly sizes = new Map<string, number>();
  readonly kept = new Set<string>();
  hold = false;
  #waiting: (() => void)[] = [];
  readonly policy: EvictionPolicy = new GdsfPolicy();
  readonly usage = {
    totalBytes: 0,
    victim: (may: (hex: string) => boolean): [string, number] | undefined => {
      const hex = this.policy.victim(may);
      return hex === undefined ? undefined : [hex, this.sizes.get(hex) ?? 0];
    },
  };

  add(hex: string, size: number): void {
    this.sizes.set(hex, size);
    this.usage.totalBytes += size;
    this.policy.insert(hex, size);
  }

  evictable(hex: string): boolean {
    return !this.kept.has(hex);
  }

  async remove(digest: Digest): Promise<void> {
    if (this.hold) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.usage.totalBytes -= this.sizes.get(digest.hex) ?? 0;
    this.sizes.delete(digest.hex);
  }

  release(): void {
    for (const r of this.#waiting.splice(0)) r();
  }

  get removing(): number {
    return this.#waiting.length;
  }
}

const hex = (n: number) => n.toString(16).padStart(64, '0');

describe('evictor', () => {
  it('evicts just enough to be back within the bound, skipping what may not go', async () => {
    const store = new FakeStore();
    const evictor = new Evictor(store, 100, createLogger('silent'));
    for (let i = 0; i < 12; i++) store.add(hex(i), 10);
    store.kept.add(hex(0));
    evictor.check();
    await expect.poll(() => evictor.evicted).toBe(2);
    expect(store.usage.totalBytes).toBe(100);
    expect(store.sizes.has(hex(0))).toBe(true);
    expect(evictor.evictedBytes).toBe(20);
    // A blob that does not fit exactly: what goes is the policy's next victims until the bytes fit.
    store.add(hex(50), 15);
    evictor.check();
    await expect.poll(() => store.usage.totalBytes).toBeLessThanOrEqual(100);
    expect(store.usage.totalBytes).toBeGreaterThan(85);
  });

  it('a blob stored while a run is removing others is bounded by the same run', async () => {
    const store = new FakeStore();
    const evictor = new Evictor(store, 100, createLogger('silent'));
    for (let i = 0; i < 11; i++) store.add(hex(i), 10);
    store.hold = true;
    evictor.check(); // 110 > 100: the run starts and waits on its first removal
    await expect.poll(() => store.removing).toBe(1);
    store.hold = false;
    store.add(hex(100), 40);
    evictor.check(); // a no-op while the run is going: the run itself must count the new bytes
    store.release();
    await expect.poll(() => store.usage.totalBytes).toBeLessThanOrEqual(100);
  });
});
