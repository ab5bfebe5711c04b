import { describe, expect, it } from 'vitest';
import { RegistryError } from '../../src/oci/errors.js';
import { canonicalName } from '../../src/upstream/hub-names.js';

describe('canonicalName with library expansion on', () => {
  it.each([
    ['alpine', 'library/alpine'],
    ['library/alpine', 'library/alpine'],
    ['docker.io/alpine', 'library/alpine'],
    ['docker.io/library/alpine', 'library/alpine'],
    ['index.docker.io/alpine', 'library/alpine'],
    ['registry-1.docker.io/library/alpine', 'library/alpine'],
    ['docker.io/bitnami/redis', 'bitnami/redis'],
    ['bitnami/redis', 'bitnami/redis'],
    ['user/repo/sub', 'user/repo/sub'],
  ])('names %s as %s upstream', (raw, expected) => {
    expect(canonicalName(raw, true)).toBe(expected);
  });

  it('does not strip a prefix that only looks like Docker Hub', () => {
    expect(canonicalName('docker.iox/alpine', true)).toBe('docker.iox/alpine');
    expect(canonicalName('mydocker.io/alpine', true)).toBe('mydocker.io/alpine');
  });

  it('strips one Hub prefix only', () => {
    expect(canonicalName('docker.io/docker.io/alpine', true)).toBe('docker.io/alpine');
  });
});

describe('canonicalName with library expansion off', () => {
  it.each(['alpine', 'docker.io/alpine', 'library/alpine', 'user/repo'])('leaves %s unchanged', (raw) => {
    expect(canonicalName(raw, false)).toBe(raw);
  });
});

describe('canonicalName validation', () => {
  it.each([
    ['Alpine', true],
    ['Alpine', false],
    ['bad//name', true],
    ['docker.io/', true],
  ])('rejects %s with NAME_INVALID (expansion %s)', (raw, expand) => {
    let error: unknown;
    try {
      canonicalName(raw, expand);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(RegistryError);
    expect((error as RegistryError).code).toBe('NAME_INVALID');
  });
});
