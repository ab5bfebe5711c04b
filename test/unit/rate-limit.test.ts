import { describe, expect, it } from 'vitest';
import { parseRateLimit } from '../../src/upstream/rate-limit.js';

const NOW = 1_700_000_000_000;

describe('parseRateLimit', () => {
  it('reads Docker Hub’s limit, remaining and window', () => {
    expect(parseRateLimit('100;w=21600', '20;w=21600', NOW)).toEqual({
      limit: 100,
      remaining: 20,
      windowSeconds: 21600,
      at: NOW,
    });
  });

  it('reads a limit without a window', () => {
    expect(parseRateLimit('200', '199', NOW)).toEqual({
      limit: 200,
      remaining: 199,
      windowSeconds: undefined,
      at: NOW,
    });
  });

  it('tolerates spaces around the window parameter', () => {
    expect(parseRateLimit(' 100 ; w = 21600', ' 0', NOW)).toEqual({
      limit: 100,
      remaining: 0,
      windowSeconds: 21600,
      at: NOW,
    });
  });

  it('answers undefined when either header is missing (no headers = unlimited)', () => {
    expect(parseRateLimit(undefined, undefined, NOW)).toBeUndefined();
    expect(parseRateLimit('100;w=21600', undefined, NOW)).toBeUndefined();
    expect(parseRateLimit(undefined, '20;w=21600', NOW)).toBeUndefined();
    expect(parseRateLimit('', '', NOW)).toBeUndefined();
  });

  it.each([
    ['unlimited', '20'],
    ['100;w=21600', 'many'],
    ['-1', '20'],
  ])('answers undefined for unreadable values %j / %j', (limit, remaining) => {
    expect(parseRateLimit(limit, remaining, NOW)).toBeUndefined();
  });
});
