import { RegistryError } from './errors.js';

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

/**
 * RFC 9110 §14.1.2 byte ranges, single range only (what containerd and every registry client send).
 * Returns undefined when the whole body should be served: no header, a header that is not a
 * bytes range (ignored, as §14.2 allows), or several ranges (served whole rather than multipart).
 * Throws RANGE_INVALID (416) when the range cannot be satisfied for a body of `size` bytes.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return undefined;
  const [, first = '', last = ''] = m;
  if (first === '' && last === '') return undefined;
  let start: number;
  let end: number;
  if (first === '') {
    // Suffix range: the last N bytes.
    const n = Number(last);
    if (n === 0) throw unsatisfiable(size);
    // A suffix range of an empty body is satisfiable (RFC 9110 §14.1.2) but no 206 can describe
    // zero bytes: serve it whole.
    if (size === 0) return undefined;
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
    if (last !== '' && Number(last) < start) return undefined; // invalid range: ignore, serve whole
  }
  if (start >= size || size === 0) throw unsatisfiable(size);
  return { start, end };
}

/**
 * The most ranges one request may list. containers/storage asks for at most 1024 chunks in one
 * request (`maxNumberMissingChunks`, zstd:chunked partial pulls) and cannot take fewer parts than
 * it asked for, so the bound is its number. Beyond it the whole body is served (200): every client
 * takes that (c/image splits a 200 into the chunks it wanted) and it costs no more than a plain GET.
 */
export const MAX_RANGES = 1024;

/**
 * Any Range header: no comma, exactly `parseRange` (the single-range fast path); with commas, a
 * range set (RFC 9110 §14.1.1), answered as multipart/byteranges when it lists several ranges.
 *
 * - one range listed (empty list elements are skipped, §5.6.1.2): as `parseRange`;
 * - any range-spec that does not parse, or more than MAX_RANGES: undefined (the whole body, §14.2);
 * - ranges past the end are dropped; none left: RANGE_INVALID (416, the size in Content-Range);
 * - the parts, in the order asked and never coalesced (c/image maps the n-th part to the n-th
 *   chunk it asked for, without reading Content-Range), but together no longer than the body:
 *   overlapping ranges that add up to more than the blob are served as the whole body, so one
 *   request cannot make the mirror send a blob many times over (the rule of Go's ServeContent,
 *   which the reference registry serves blobs with);
 * - a suffix range on an empty body: undefined (the empty body, as `parseRange`).
 */
export function parseRanges(header: string | undefined, size: number): ByteRange | ByteRange[] | undefined {
  if (!header?.includes(',')) return parseRange(header, size);
  const m = /^\s*bytes\s*=(.*)$/i.exec(header);
  if (!m) return undefined;
  const specs = (m[1] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (specs.length === 0) return undefined;
  if (specs.length === 1) return parseRange(`bytes=${specs[0]}`, size);
  if (specs.length > MAX_RANGES) return undefined;
  const ranges: ByteRange[] = [];
  let total = 0;
  let emptySuffix = false;
  for (const spec of specs) {
    const r = /^(\d*)\s*-\s*(\d*)$/.exec(spec);
    if (!r) return undefined;
    const [, first = '', last = ''] = r;
    if (first === '' && last === '') return undefined;
    let start: number;
    let end: number;
    if (first === '') {
      const n = Number(last);
      if (n === 0) continue; // unsatisfiable (§14.1.2)
      if (size === 0) {
        emptySuffix = true;
        continue;
      }
      start = Math.max(0, size - n);
      end = size - 1;
    } else {
      start = Number(first);
      if (last !== '' && Number(last) < start) return undefined; // an invalid range-spec
      if (start >= size) continue; // unsatisfiable
      end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
    }
    total += end - start + 1;
    if (total > size) return undefined;
    ranges.push({ start, end });
  }
  if (ranges.length === 0) {
    if (emptySuffix) return undefined;
    throw unsatisfiable(size);
  }
  return ranges;
}

function unsatisfiable(size: number): RegistryError {
  return new RegistryError('RANGE_INVALID', undefined, { size }, { 'Content-Range': `bytes */${size}` });
}
