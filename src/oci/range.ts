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

function unsatisfiable(size: number): RegistryError {
  return new RegistryError('RANGE_INVALID', undefined, { size }, { 'Content-Range': `bytes */${size}` });
}
