import { describe, expect, it } from 'vitest';
import { RegistryError } from '../../src/oci/errors.js';
import { parseRange } from '../../src/oci/range.js';

const SIZE = 1000;

function unsatisfiable(header: string, size: number): RegistryError {
  try {
    parseRange(header, size);
  } catch (err) {
    if (err instanceof RegistryError) return err;
    throw err;
  }
  throw new Error(`expected ${header} on ${size} bytes to be unsatisfiable`);
}

describe('parseRange (RFC 9110 §14.1.2, single range)', () => {
  it('serves the whole body when there is no Range header', () => {
    expect(parseRange(undefined, SIZE)).toBeUndefined();
    expect(parseRange('', SIZE)).toBeUndefined();
  });

  it('parses a closed range with both ends inclusive', () => {
    expect(parseRange('bytes=0-99', SIZE)).toEqual({ start: 0, end: 99 });
    expect(parseRange('bytes=500-500', SIZE)).toEqual({ start: 500, end: 500 });
  });

  it('parses the open-ended range containerd sends to resume', () => {
    expect(parseRange('bytes=100-', SIZE)).toEqual({ start: 100, end: 999 });
  });

  it('parses a suffix range as the last N bytes', () => {
    expect(parseRange('bytes=-10', SIZE)).toEqual({ start: 990, end: 999 });
  });

  it('serves the whole body for a suffix longer than the body', () => {
    expect(parseRange('bytes=-5000', SIZE)).toEqual({ start: 0, end: 999 });
  });

  it('clamps an end past the body to the last byte', () => {
    expect(parseRange('bytes=900-5000', SIZE)).toEqual({ start: 900, end: 999 });
  });

  it('accepts the last byte as the start', () => {
    expect(parseRange('bytes=999-', SIZE)).toEqual({ start: 999, end: 999 });
  });

  it('treats the range unit case-insensitively and tolerates spaces', () => {
    expect(parseRange('Bytes=0-1', SIZE)).toEqual({ start: 0, end: 1 });
    expect(parseRange(' bytes = 2 - 3 ', SIZE)).toEqual({ start: 2, end: 3 });
  });

  it.each([
    ['a start equal to the size', 'bytes=1000-'],
    ['a start past the size', 'bytes=2000-2100'],
    ['a zero-length suffix', 'bytes=-0'],
  ])('answers %s with RANGE_INVALID 416 and Content-Range bytes */SIZE', (_what, header) => {
    const err = unsatisfiable(header, SIZE);
    expect(err.code).toBe('RANGE_INVALID');
    expect(err.status).toBe(416);
    expect(err.headers).toEqual({ 'Content-Range': 'bytes */1000' });
  });

  it('answers any first-byte range on an empty body with 416 bytes */0', () => {
    const err = unsatisfiable('bytes=0-', 0);
    expect(err.status).toBe(416);
    expect(err.headers['Content-Range']).toBe('bytes */0');
  });

  it('serves an empty body whole for a suffix range, which RFC 9110 §14.1.2 calls satisfiable', () => {
    // "When a selected representation has zero length, the only satisfiable form of range in a
    // byte-range-spec is a suffix-range with a non-zero suffix-length." No 206 can describe zero
    // bytes, so the whole (empty) body is the answer, not a 416.
    expect(parseRange('bytes=-10', 0)).toBeUndefined();
  });

  it.each([
    ['several ranges', 'bytes=0-99,200-299'],
    ['another unit', 'items=0-9'],
    ['no unit', '0-99'],
    ['a bare dash', 'bytes=-'],
    ['a negative start', 'bytes=-5-10'],
    ['letters', 'bytes=a-b'],
    ['a last byte before the first (an invalid range-spec)', 'bytes=100-50'],
    ['plain garbage', 'give me everything'],
  ])('serves the whole body for %s', (_what, header) => {
    expect(parseRange(header, SIZE)).toBeUndefined();
  });
});
