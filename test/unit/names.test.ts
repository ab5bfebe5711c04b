import { describe, expect, it } from 'vitest';
import { RegistryError } from '../../src/oci/errors.js';
import {
  lookupReference,
  parseReference,
  parseV2Path,
  referenceString,
  validateName,
} from '../../src/oci/names.js';

const HEX = 'a'.repeat(64);
const DIGEST = `sha256:${HEX}`;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof RegistryError ? err.code : `not a RegistryError: ${String(err)}`;
  }
  return undefined;
}

describe('validateName', () => {
  it.each([
    'alpine',
    'library/alpine',
    'a/b/c/d',
    'my.app',
    'my_app',
    'my__app',
    'my-app',
    'my---app',
    '0x/1.2_3__4-5',
    'registry.example.com/team/app',
  ])('accepts %s, which the spec grammar allows', (name) => {
    expect(validateName(name)).toBe(name);
  });

  it.each([
    ['an empty name', ''],
    ['upper case', 'Alpine'],
    ['upper case in a later component', 'library/Alpine'],
    ['a leading separator', '-alpine'],
    ['a trailing separator', 'alpine-'],
    ['a leading dot', '.alpine'],
    ['a trailing underscore', 'alpine_'],
    ['three underscores', 'my___app'],
    ['two dots', 'my..app'],
    ['mixed separators', 'my.-app'],
    ['a leading slash', '/alpine'],
    ['a trailing slash', 'alpine/'],
    ['an empty component', 'library//alpine'],
    ['a colon', 'host:5000/alpine'],
    ['a space', 'my app'],
  ])('rejects %s with NAME_INVALID', (_what, name) => {
    expect(codeOf(() => validateName(name))).toBe('NAME_INVALID');
  });

  it('accepts a name of exactly 255 characters', () => {
    const name = `${'a'.repeat(127)}/${'b'.repeat(127)}`;
    expect(name).toHaveLength(255);
    expect(validateName(name)).toBe(name);
  });

  it('rejects a name of 256 characters', () => {
    const name = `${'a'.repeat(128)}/${'b'.repeat(127)}`;
    expect(name).toHaveLength(256);
    expect(codeOf(() => validateName(name))).toBe('NAME_INVALID');
  });

  it('answers NAME_INVALID with HTTP 400 and the name in the detail', () => {
    try {
      validateName('Bad');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(RegistryError);
      expect((err as RegistryError).status).toBe(400);
      expect((err as RegistryError).detail).toEqual({ name: 'Bad' });
    }
  });
});

describe('parseReference', () => {
  it('parses a tag', () => {
    expect(parseReference('3.20')).toEqual({ kind: 'tag', tag: '3.20' });
  });

  it.each(['latest', 'v1.2.3-rc.1', '_underscore_first', 'UPPER_case', 'a'])('accepts tag %s', (tag) => {
    expect(parseReference(tag)).toEqual({ kind: 'tag', tag });
  });

  it('accepts a tag of 128 characters', () => {
    const tag = `v${'1'.repeat(127)}`;
    expect(parseReference(tag)).toEqual({ kind: 'tag', tag });
  });

  it('rejects a tag of 129 characters with TAG_INVALID', () => {
    expect(codeOf(() => parseReference(`v${'1'.repeat(128)}`))).toBe('TAG_INVALID');
  });

  it.each([
    ['a leading dot', '.hidden'],
    ['a leading dash', '-v1'],
    ['a slash', 'a/b'],
    ['a plus sign', 'v1+build'],
    ['an empty string', ''],
  ])('rejects a tag with %s with TAG_INVALID', (_what, tag) => {
    expect(codeOf(() => parseReference(tag))).toBe('TAG_INVALID');
  });

  it('parses a sha256 digest reference', () => {
    expect(parseReference(DIGEST)).toEqual({
      kind: 'digest',
      digest: { algorithm: 'sha256', hex: HEX, value: DIGEST },
    });
  });

  it.each([
    ['a short hex', `sha256:${'a'.repeat(63)}`],
    ['a long hex', `sha256:${'a'.repeat(65)}`],
    ['upper-case hex', `sha256:${'A'.repeat(64)}`],
    ['a non-hex character', `sha256:${'g'.repeat(64)}`],
    ['no algorithm', `:${HEX}`],
    ['no hex', 'sha256:'],
  ])('rejects a digest with %s with DIGEST_INVALID', (_what, ref) => {
    expect(codeOf(() => parseReference(ref))).toBe('DIGEST_INVALID');
  });

  it('answers a well-formed sha512 digest with DIGEST_INVALID in a push, MANIFEST_UNKNOWN in a lookup', () => {
    expect(codeOf(() => parseReference(`sha512:${'b'.repeat(128)}`))).toBe('DIGEST_INVALID');
    expect(codeOf(() => lookupReference(`sha512:${'b'.repeat(128)}`))).toBe('MANIFEST_UNKNOWN');
    expect(codeOf(() => lookupReference(`sha256:${'B'.repeat(64)}`))).toBe('DIGEST_INVALID');
  });

  it('writes a reference back as the string it came from', () => {
    expect(referenceString(parseReference('latest'))).toBe('latest');
    expect(referenceString(parseReference(DIGEST))).toBe(DIGEST);
  });
});

describe('parseV2Path', () => {
  it.each(['/v2/', '/v2'])('routes %s to the base endpoint', (path) => {
    expect(parseV2Path(path)).toEqual({ kind: 'base' });
  });

  it('routes /v2/_catalog to the catalog', () => {
    expect(parseV2Path('/v2/_catalog')).toEqual({ kind: 'catalog' });
  });

  it('routes a manifest by tag', () => {
    expect(parseV2Path('/v2/library/alpine/manifests/3.20')).toEqual({
      kind: 'manifest',
      name: 'library/alpine',
      reference: '3.20',
    });
  });

  it('routes a manifest by digest', () => {
    expect(parseV2Path(`/v2/alpine/manifests/${DIGEST}`)).toEqual({
      kind: 'manifest',
      name: 'alpine',
      reference: DIGEST,
    });
  });

  it('keeps every component of a deeply nested name', () => {
    expect(parseV2Path(`/v2/a/b/c/d/blobs/${DIGEST}`)).toEqual({
      kind: 'blob',
      name: 'a/b/c/d',
      digest: DIGEST,
    });
  });

  it('decides the endpoint from the right when the name contains an endpoint word', () => {
    expect(parseV2Path('/v2/team/manifests/app/manifests/latest')).toEqual({
      kind: 'manifest',
      name: 'team/manifests/app',
      reference: 'latest',
    });
    expect(parseV2Path('/v2/blobs/tags/list')).toEqual({ kind: 'tags', name: 'blobs' });
  });

  it('routes tags/list', () => {
    expect(parseV2Path('/v2/library/alpine/tags/list')).toEqual({ kind: 'tags', name: 'library/alpine' });
  });

  it.each([
    ['/v2/library/alpine/blobs/uploads', undefined],
    ['/v2/library/alpine/blobs/uploads/', undefined],
    ['/v2/library/alpine/blobs/uploads/3f1b5c2e-uuid', '3f1b5c2e-uuid'],
  ])('routes %s to the upload endpoint, not to a blob', (path, session) => {
    expect(parseV2Path(path)).toEqual({ kind: 'upload', name: 'library/alpine', session });
  });

  it('routes referrers', () => {
    expect(parseV2Path(`/v2/library/alpine/referrers/${DIGEST}`)).toEqual({
      kind: 'referrers',
      name: 'library/alpine',
      digest: DIGEST,
    });
  });

  it('does not validate the name (that is the handler’s job)', () => {
    expect(parseV2Path('/v2/Not_Valid/manifests/latest')).toEqual({
      kind: 'manifest',
      name: 'Not_Valid',
      reference: 'latest',
    });
  });

  it.each([
    '',
    '/',
    '/v1/',
    '/v3/alpine/manifests/latest',
    '/v2x/alpine/manifests/latest',
    '/v2/alpine',
    '/v2/alpine/manifests',
    '/v2/alpine/manifests/',
    '/v2/alpine/manifests/latest/extra',
    '/v2/manifests/latest',
    '/v2//manifests/latest',
    '/v2/alpine/tags/list/',
    '/v2/alpine/tags',
    '/v2/alpine/unknown/latest',
    '/v2/_catalog/extra',
  ])('answers undefined for %j, which is no endpoint', (path) => {
    expect(parseV2Path(path)).toBeUndefined();
  });
});
