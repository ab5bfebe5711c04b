import { GdsfPolicy } from '../../../src/cache/eviction/gdsf.js';
import { LruPolicy } from '../../../src/cache/eviction/lru.js';
import type { PolicyFactory } from '../../../src/cache/eviction/policy.js';
import { WhoFetched } from '../../../src/cache/eviction/who-fetched.js';
import { HyperbolicPolicy } from './hyperbolic.js';
import { S3FifoPolicy } from './s3-fifo.js';
import { SievePolicy } from './sieve.js';
import { WTinyLfuPolicy } from './w-tinylfu.js';

/** A policy in the eviction bench: `live` when the mirror runs this very object (--eviction). */
export interface BenchPolicy {
  name: string;
  live?: string;
  make: PolicyFactory;
}

export const BENCH_POLICIES: BenchPolicy[] = [
  { name: 'LRU', live: 'lru', make: () => new LruPolicy() },
  {
    name: 'GDSF, cost size^1.1, frequency ≤ 5, what every client fetched first',
    live: 'gdsf',
    make: () => new GdsfPolicy({ fetched: new WhoFetched() }),
  },
  { name: 'the same GDSF, not told the client', make: () => new GdsfPolicy() },
  {
    name: 'GDSF, cost size (LFU-DA)',
    make: () => new GdsfPolicy({ costExponent: 1, maxFrequency: Number.POSITIVE_INFINITY }),
  },
  {
    name: 'GDSF, cost 1',
    make: () => new GdsfPolicy({ costExponent: 0, maxFrequency: Number.POSITIVE_INFINITY }),
  },
  { name: 'S3-FIFO (10 % small)', make: (c) => new S3FifoPolicy(c) },
  { name: 'W-TinyLFU (1 % window)', make: (c) => new WTinyLfuPolicy(c) },
  { name: 'SIEVE', make: () => new SievePolicy() },
  { name: 'Hyperbolic (sample 64)', make: () => new HyperbolicPolicy() },
];
