import { describe, expect, it } from 'vitest';
import { ifNoneMatch } from '../../src/oci/conditional.js';

const ETAG = '"sha256:abc"';

describe('ifNoneMatch (RFC 9110 §13.1.2)', () => {
  it('matches the same entity tag', () => {
    expect(ifNoneMatch(ETAG, ETAG)).toBe(true);
  });

  it('does not match without the header, or with another tag', () => {
    expect(ifNoneMatch(undefined, ETAG)).toBe(false);
    expect(ifNoneMatch('', ETAG)).toBe(false);
    expect(ifNoneMatch('"sha256:abd"', ETAG)).toBe(false);
  });

  it('matches any member of a list, with or without spaces', () => {
    expect(ifNoneMatch(`"x", ${ETAG}`, ETAG)).toBe(true);
    expect(ifNoneMatch(`"x",${ETAG},"y"`, ETAG)).toBe(true);
    expect(ifNoneMatch(' "x" ,\t"y" ', ETAG)).toBe(false);
  });

  it('compares weakly: W/ on either side still matches', () => {
    expect(ifNoneMatch(`W/${ETAG}`, ETAG)).toBe(true);
    expect(ifNoneMatch(ETAG, `W/${ETAG}`)).toBe(true);
    expect(ifNoneMatch(`W/"x", W/${ETAG}`, ETAG)).toBe(true);
  });

  it('matches * whatever the tag', () => {
    expect(ifNoneMatch('*', ETAG)).toBe(true);
  });

  it('reads several header lines as one list', () => {
    expect(ifNoneMatch(['"x"', ETAG], ETAG)).toBe(true);
    expect(ifNoneMatch(['"x"', '"y"'], ETAG)).toBe(false);
  });

  it('keeps a comma inside an entity tag as part of it', () => {
    expect(ifNoneMatch('"a,b"', '"a,b"')).toBe(true);
    expect(ifNoneMatch('"a,b"', '"a"')).toBe(false);
    expect(ifNoneMatch('"a,b"', '"b"')).toBe(false);
  });

  it('is case-sensitive in the opaque part and needs the quotes', () => {
    expect(ifNoneMatch('"SHA256:ABC"', ETAG)).toBe(false);
    expect(ifNoneMatch('sha256:abc', ETAG)).toBe(false);
    expect(ifNoneMatch('w/"sha256:abc"', ETAG)).toBe(false);
  });

  it('skips members that are not entity tags and goes on', () => {
    expect(ifNoneMatch(`bogus, ${ETAG}`, ETAG)).toBe(true);
    expect(ifNoneMatch(`"unterminated, ${ETAG}`, ETAG)).toBe(false);
    expect(ifNoneMatch('W/', ETAG)).toBe(false);
  });
});
