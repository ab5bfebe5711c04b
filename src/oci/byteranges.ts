import type { ByteRange } from './range.js';

/** One body part of a multipart/byteranges body: its header block, then bytes [start, end]. */
export interface BytePart extends ByteRange {
  head: Buffer;
}

export interface Byteranges {
  /** The response's Content-Type, with the boundary. */
  contentType: string;
  parts: BytePart[];
  /** The close delimiter, after the last part's bytes. */
  tail: Buffer;
  /** The whole body's length: the response's Content-Length, known before a byte is read. */
  length: number;
}

/**
 * The framing of a multipart/byteranges body (RFC 9110 §14.6, RFC 2046 §5.1.1), for `ranges` of a
 * representation of `size` bytes served as `partType`. Each part: the delimiter (CRLF before all
 * but the first), its own Content-Type and Content-Range, a blank line, the bytes; then the close
 * delimiter. `boundary` must not occur in the bytes: the caller draws it at random, so neither a
 * client nor an upstream can choose content that contains it.
 */
export function byteranges(
  ranges: ByteRange[],
  size: number,
  partType: string,
  boundary: string,
): Byteranges {
  let length = 0;
  const parts = ranges.map(({ start, end }, i) => {
    const head = Buffer.from(
      `${i === 0 ? '' : '\r\n'}--${boundary}\r\n` +
        `Content-Type: ${partType}\r\n` +
        `Content-Range: bytes ${start}-${end}/${size}\r\n\r\n`,
    );
    length += head.length + end - start + 1;
    return { head, start, end };
  });
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  length += tail.length;
  return { contentType: `multipart/byteranges; boundary=${boundary}`, parts, tail, length };
}
