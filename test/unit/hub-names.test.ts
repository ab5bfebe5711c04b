import { describe, expect, it } from 'vitest';
import { RegistryError } from '../../src/oci/errors.js';
import { canonicalName, servesNamespace } from '../../src/upstream/hub-names.js';

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

  it('refuses a name under another registry instead of fetching it from Docker Hub', () => {
    for (const raw of [
      'docker.iox/alpine',
      'mydocker.io/alpine',
      'ghcr.io/owner/app',
      'docker.io/docker.io/alpine',
    ]) {
      expect(() => canonicalName(raw, true), raw).toThrow(expect.objectContaining({ code: 'NAME_UNKNOWN' }));
    }
  });

  it('accepts the Hub aliases and the upstream itself as containerd namespaces, nothing else', () => {
    const hub = new URL('https://registry-1.docker.io');
    for (const ns of ['docker.io', 'index.docker.io', 'registry-1.docker.io'])
      expect(servesNamespace(ns, hub, true)).toBe(true);
    for (const ns of ['ghcr.io', 'quay.io', 'docker.iox', ''])
      expect(servesNamespace(ns, hub, true)).toBe(false);
    expect(servesNamespace('127.0.0.1:5101', new URL('http://127.0.0.1:5101'), true)).toBe(true);
    expect(servesNamespace('docker.io', new URL('http://127.0.0.1:5101'), false)).toBe(false);
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
