import { describe, expect, it } from 'vitest';
import { byteranges } from '../../src/oci/byteranges.js';
import { RegistryError } from '../../src/oci/errors.js';
import { MAX_RANGES, parseRange, parseRanges } from '../../src/oci/range.js';

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

function unsatisfiableSet(header: string, size: number): RegistryError {
  try {
    parseRanges(header, size);
  } catch (err) {
    if (err instanceof RegistryError) return err;
    throw err;
  }
  throw new Error(`expected ${header} on ${size} bytes to be unsatisfiable`);
}

describe('parseRanges (RFC 9110 §14.1.1, range sets)', () => {
  it('is parseRange for a header without a comma', () => {
    expect(parseRanges(undefined, SIZE)).toBeUndefined();
    expect(parseRanges('bytes=0-99', SIZE)).toEqual({ start: 0, end: 99 });
    expect(parseRanges('bytes=-10', SIZE)).toEqual({ start: 990, end: 999 });
    expect(parseRanges('bytes=100-50', SIZE)).toBeUndefined();
    expect(unsatisfiableSet('bytes=1000-', SIZE).status).toBe(416);
  });

  it('lists several ranges in the order asked, never coalesced', () => {
    // podman's zstd:chunked partial pull: the table of contents and the tar-split in one request.
    expect(parseRanges('bytes=900-949,0-99', SIZE)).toEqual([
      { start: 900, end: 949 },
      { start: 0, end: 99 },
    ]);
    expect(parseRanges('bytes=0-0,1-1,2-2', SIZE)).toEqual([
      { start: 0, end: 0 },
      { start: 1, end: 1 },
      { start: 2, end: 2 },
    ]);
  });

  it('takes open, suffix and clamped ranges in a set, with spaces and any case', () => {
    expect(parseRanges('Bytes = 10-19 , 990- , -5, 995-5000', SIZE)).toEqual([
      { start: 10, end: 19 },
      { start: 990, end: 999 },
      { start: 995, end: 999 },
      { start: 995, end: 999 },
    ]);
  });

  it('skips empty list elements (§5.6.1.2): one range left is a single range', () => {
    expect(parseRanges('bytes=0-99,', SIZE)).toEqual({ start: 0, end: 99 });
    expect(parseRanges('bytes=,0-99, ,', SIZE)).toEqual({ start: 0, end: 99 });
    expect(parseRanges('bytes=0-1,,2-3', SIZE)).toEqual([
      { start: 0, end: 1 },
      { start: 2, end: 3 },
    ]);
  });

  it('drops the ranges past the end and serves the rest as parts', () => {
    expect(parseRanges('bytes=5000-6000,0-9,-0', SIZE)).toEqual([{ start: 0, end: 9 }]);
  });

  it('answers 416 with Content-Range bytes */SIZE when no range of the set is satisfiable', () => {
    const err = unsatisfiableSet('bytes=1000-1001,2000-,-0', SIZE);
    expect(err.code).toBe('RANGE_INVALID');
    expect(err.status).toBe(416);
    expect(err.headers).toEqual({ 'Content-Range': 'bytes */1000' });
    expect(unsatisfiableSet('bytes=0-1,5-6', 0).headers['Content-Range']).toBe('bytes */0');
  });

  it('serves an empty body whole for a set with a suffix range', () => {
    expect(parseRanges('bytes=0-1,-5', 0)).toBeUndefined();
  });

  it.each([
    ['a range-spec that does not parse', 'bytes=0-1,x-y'],
    ['an invalid range-spec (last before first)', 'bytes=0-1,100-50'],
    ['a bare dash', 'bytes=0-1,-'],
    ['another unit', 'items=0-1,2-3'],
    ['only commas', 'bytes=,,'],
    ['overlapping ranges adding up to more than the body', 'bytes=0-,0-'],
    ['many small overlapping ranges past the size', `bytes=${Array(1001).fill('0-0').join(',')}`],
  ])('serves the whole body for %s', (_what, header) => {
    expect(parseRanges(header, SIZE)).toBeUndefined();
  });

  it(`takes up to MAX_RANGES (${MAX_RANGES}) ranges and serves the whole body beyond`, () => {
    const size = 10_000;
    const specs = (n: number) => Array.from({ length: n }, (_, i) => `${i * 2}-${i * 2}`).join(',');
    expect(parseRanges(`bytes=${specs(MAX_RANGES)}`, size)).toHaveLength(MAX_RANGES);
    expect(parseRanges(`bytes=${specs(MAX_RANGES + 1)}`, size)).toBeUndefined();
  });
});

describe('byteranges (RFC 9110 §14.6 multipart/byteranges framing)', () => {
  it('frames each part with its delimiter, Content-Type and Content-Range, CRLF throughout', () => {
    const blob = Buffer.from('0123456789');
    const body = byteranges(
      [
        { start: 8, end: 9 },
        { start: 0, end: 2 },
      ],
      blob.length,
      'application/octet-stream',
      'B0UND',
    );
    expect(body.contentType).toBe('multipart/byteranges; boundary=B0UND');
    const whole = Buffer.concat([
      ...body.parts.flatMap((p) => [p.head, blob.subarray(p.start, p.end + 1)]),
      body.tail,
    ]).toString();
    expect(whole).toBe(
      '--B0UND\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 8-9/10\r\n\r\n89' +
        '\r\n--B0UND\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-2/10\r\n\r\n012' +
        '\r\n--B0UND--\r\n',
    );
    expect(body.length).toBe(Buffer.byteLength(whole));
  });
});
