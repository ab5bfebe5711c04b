import { describe, expect, it } from 'vitest';
import {
  digestOf,
  isDigestLike,
  lookupDigest,
  parseDigest,
  sha256Hex,
  UnsupportedAlgorithmError,
} from '../../src/oci/digest.js';
import { RegistryError } from '../../src/oci/errors.js';

// Known SHA-256 vectors (FIPS 180-2 "abc" and the empty string).
const EMPTY_HEX = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const ABC_HEX = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';

function errorOf(fn: () => unknown): RegistryError {
  try {
    fn();
  } catch (err) {
    if (err instanceof RegistryError) return err;
    throw err;
  }
  throw new Error('expected a RegistryError, nothing was thrown');
}

describe('parseDigest', () => {
  it('splits a sha256 digest into algorithm, hex and the original value', () => {
    expect(parseDigest(`sha256:${ABC_HEX}`)).toEqual({
      algorithm: 'sha256',
      hex: ABC_HEX,
      value: `sha256:${ABC_HEX}`,
    });
  });

  it('answers sha512 with DIGEST_INVALID (400, spec end-4c), never 405, and names the digest', () => {
    const text = `sha512:${'0'.repeat(128)}`;
    const err = errorOf(() => parseDigest(text));
    expect(err).toBeInstanceOf(UnsupportedAlgorithmError);
    expect(err.code).toBe('DIGEST_INVALID');
    expect(err.status).toBe(400);
    expect(err.detail).toEqual({ digest: text, supported: ['sha256'] });
  });

  it('answers a lookup of a well-formed sha512 digest with BLOB_UNKNOWN / MANIFEST_UNKNOWN (404)', () => {
    const text = `sha512:${'0'.repeat(128)}`;
    expect(errorOf(() => lookupDigest(text, 'BLOB_UNKNOWN')).status).toBe(404);
    expect(errorOf(() => lookupDigest(text, 'MANIFEST_UNKNOWN')).code).toBe('MANIFEST_UNKNOWN');
    expect(errorOf(() => lookupDigest(`sha256:${'A'.repeat(64)}`, 'BLOB_UNKNOWN')).code).toBe(
      'DIGEST_INVALID',
    );
  });

  it('answers an unregistered but well-formed algorithm like sha512', () => {
    expect(
      errorOf(() => parseDigest('multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8')),
    ).toBeInstanceOf(UnsupportedAlgorithmError);
  });

  it.each([
    ['a 63-character hex', `sha256:${EMPTY_HEX.slice(1)}`],
    ['upper-case hex', `sha256:${EMPTY_HEX.toUpperCase()}`],
    ['a missing algorithm', EMPTY_HEX],
    ['an empty string', ''],
    ['an upper-case algorithm', `SHA256:${EMPTY_HEX}`],
    ['surrounding whitespace', ` sha256:${EMPTY_HEX}`],
    ['two colons', `sha256:${EMPTY_HEX}:x`],
  ])('answers a digest with %s with DIGEST_INVALID (HTTP 400)', (_what, text) => {
    const err = errorOf(() => parseDigest(text));
    expect(err.code).toBe('DIGEST_INVALID');
    expect(err.status).toBe(400);
  });
});

describe('isDigestLike', () => {
  it('tells a digest reference from a tag by the colon tags cannot contain', () => {
    expect(isDigestLike(`sha256:${EMPTY_HEX}`)).toBe(true);
    expect(isDigestLike('sha256-abc')).toBe(false);
    expect(isDigestLike('latest')).toBe(false);
  });
});

describe('sha256Hex and digestOf', () => {
  it('hash the empty input to the known vector', () => {
    expect(sha256Hex('')).toBe(EMPTY_HEX);
    expect(digestOf(new Uint8Array())).toBe(`sha256:${EMPTY_HEX}`);
  });

  it('hash a string and its UTF-8 bytes identically', () => {
    expect(sha256Hex('abc')).toBe(ABC_HEX);
    expect(sha256Hex(new TextEncoder().encode('abc'))).toBe(ABC_HEX);
    expect(digestOf('abc')).toBe(`sha256:${ABC_HEX}`);
  });

  it('produce a digest parseDigest accepts', () => {
    const d = digestOf('{"schemaVersion":2}');
    expect(parseDigest(d).value).toBe(d);
  });
});
