import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDigest } from '../../src/oci/digest.js';
import { RegistryError } from '../../src/oci/errors.js';
import { parseReference, parseV2Path, validateName } from '../../src/oci/names.js';
import { MAX_RANGES, parseRange, parseRanges } from '../../src/oci/range.js';
import { parseWwwAuthenticate } from '../../src/oci/www-authenticate.js';
import { canonicalName } from '../../src/upstream/hub-names.js';

// Property tests over the parsers that see raw client input before anything touches the disk or
// the network: they either accept something safe or throw the spec's error, never anything else.
const RUNS = { numRuns: 3000 };

/** Strings biased towards the characters that matter here. */
const hostile = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.stringMatching(/^[a-z0-9._\-/%:]{0,80}$/),
  fc.constantFrom(
    '..',
    '../etc/passwd',
    '%2e%2e',
    '/abs',
    'a//b',
    'a/./b',
    'a/../b',
    '.hidden',
    'A',
    'a\u0000b',
    'a\\b',
  ),
  fc
    .array(fc.constantFrom('a', '0', '.', '_', '-', '/', '..', '%2e', ':', 'A', 'sha256'), { maxLength: 30 })
    .map((p) => p.join('')),
);

function expectSpecError(fn: () => unknown, codes: string[]): unknown {
  try {
    return fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RegistryError);
    expect(codes).toContain((err as RegistryError).code);
    return undefined;
  }
}

describe('parsers under arbitrary input', () => {
  it('validateName accepts only safe relative names', () => {
    fc.assert(
      fc.property(hostile, (name) => {
        const ok = expectSpecError(() => validateName(name), ['NAME_INVALID']);
        if (ok !== undefined) {
          expect(ok).toBe(name);
          expect(name).toMatch(
            /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/,
          );
          expect(name.split('/')).not.toContain('..');
          expect(name.length).toBeLessThanOrEqual(255);
        }
      }),
      RUNS,
    );
  });

  it('canonicalName never yields a path that leaves its folder', () => {
    fc.assert(
      fc.property(hostile, fc.boolean(), (name, expand) => {
        const out = expectSpecError(() => canonicalName(name, expand), ['NAME_INVALID', 'NAME_UNKNOWN']);
        if (typeof out === 'string') {
          expect(out.startsWith('/')).toBe(false);
          expect(out.split('/').some((p) => p === '..' || p === '.' || p === '')).toBe(false);
        }
      }),
      RUNS,
    );
  });

  it('parseReference gives a valid tag or a sha256 digest, or the spec error', () => {
    fc.assert(
      fc.property(hostile, (ref) => {
        const out = expectSpecError(
          () => parseReference(ref),
          ['TAG_INVALID', 'DIGEST_INVALID', 'UNSUPPORTED'],
        ) as ReturnType<typeof parseReference> | undefined;
        if (out?.kind === 'tag') expect(out.tag).toMatch(/^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/);
        if (out?.kind === 'digest') expect(out.digest.value).toMatch(/^sha256:[a-f0-9]{64}$/);
      }),
      RUNS,
    );
  });

  it('parseDigest accepts exactly sha256 and 64 lowercase hex digits', () => {
    const near = fc
      .tuple(
        fc.constantFrom('sha256', 'SHA256', 'sha512', 'md5', ''),
        fc.stringMatching(/^[0-9a-fA-F]{0,70}$/),
      )
      .map(([a, h]) => `${a}:${h}`);
    fc.assert(
      fc.property(fc.oneof(hostile, near), (text) => {
        const out = expectSpecError(() => parseDigest(text), ['DIGEST_INVALID', 'UNSUPPORTED']) as
          | ReturnType<typeof parseDigest>
          | undefined;
        if (out) expect(out.value).toMatch(/^sha256:[a-f0-9]{64}$/);
      }),
      RUNS,
    );
  });

  it('parseRange gives a range inside the body, none, or 416', () => {
    const header = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc
        .tuple(fc.option(fc.nat(2000)), fc.option(fc.nat(2000)))
        .map(([a, b]) => `bytes=${a ?? ''}-${b ?? ''}`),
      fc.constantFrom(
        'bytes=',
        'bytes=-',
        'bytes=0-0,5-6',
        'items=0-1',
        'bytes=-0',
        'bytes=99999999999999999999-',
      ),
    );
    fc.assert(
      fc.property(header, fc.nat(1500), (h, size) => {
        const out = expectSpecError(() => parseRange(h, size), ['RANGE_INVALID']) as ReturnType<
          typeof parseRange
        >;
        if (out) {
          expect(out.start).toBeGreaterThanOrEqual(0);
          expect(out.start).toBeLessThanOrEqual(out.end);
          expect(out.end).toBeLessThan(size);
        }
      }),
      RUNS,
    );
  });

  it('parseRanges gives ranges inside the body, never more bytes than the body, none, or 416', () => {
    const spec = fc
      .tuple(fc.option(fc.nat(2000)), fc.option(fc.nat(2000)))
      .map(([a, b]) => `${a ?? ''}-${b ?? ''}`);
    const header = fc.oneof(
      fc.string({ maxLength: 60 }).map((s) => `bytes=${s},${s}`),
      fc.array(spec, { minLength: 1, maxLength: 12 }).map((l) => `bytes=${l.join(',')}`),
      fc
        .array(fc.constantFrom('0-0', '-1', '', ' ', '5-'), { maxLength: 40 })
        .map((l) => `bytes=${l.join(',')}`),
    );
    fc.assert(
      fc.property(header, fc.nat(1500), (h, size) => {
        const out = expectSpecError(() => parseRanges(h, size), ['RANGE_INVALID']) as ReturnType<
          typeof parseRanges
        >;
        const list = out === undefined ? [] : Array.isArray(out) ? out : [out];
        if (Array.isArray(out)) expect(out.length).toBeGreaterThan(0);
        expect(list.length).toBeLessThanOrEqual(MAX_RANGES);
        let total = 0;
        for (const r of list) {
          expect(r.start).toBeGreaterThanOrEqual(0);
          expect(r.start).toBeLessThanOrEqual(r.end);
          expect(r.end).toBeLessThan(size);
          total += r.end - r.start + 1;
        }
        expect(total).toBeLessThanOrEqual(Math.max(size, 0));
      }),
      RUNS,
    );
  });

  it('parseV2Path and parseWwwAuthenticate never throw', () => {
    fc.assert(
      fc.property(hostile, (text) => {
        parseV2Path(`/v2/${text}`);
        parseV2Path(text);
        parseWwwAuthenticate(text);
        parseWwwAuthenticate(`Bearer ${text}`);
      }),
      RUNS,
    );
  });
});
